"""The run folder of a training job: atomic checkpoints with their retention, the jsonl log, and the checks
that decide whether RUN_DIR may be started, replaced or resumed. Used by ``loop.train`` and by the head, codec
and prior jobs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from latenthdr.errors import InputError, OutputExistsError
from latenthdr.io import json_default

CHECKPOINT_GLOB = "step-*.pt"


class Checkpointer:
    """Atomic checkpoints in ``directory`` (``step-00000100.pt``), keeping the newest ``keep``.

    A checkpoint is a dict of tensors and plain values (torch.save; loaded with ``weights_only=True``).
    Writes go to a temporary file in the same directory, then ``os.replace``, so a crash never leaves a
    half-written checkpoint under a final name.
    """

    def __init__(self, directory: str | Path, keep: int = 2):
        self.directory = Path(directory)
        self.keep = keep

    def paths(self) -> list[Path]:
        return sorted(self.directory.glob(CHECKPOINT_GLOB))

    def latest(self) -> Path | None:
        paths = self.paths()
        return paths[-1] if paths else None

    def save(self, step: int, state: dict) -> Path:
        path = save_atomic(state, self.directory / f"step-{step:08d}.pt")
        for old in self.paths()[: -self.keep]:
            old.unlink(missing_ok=True)
        return path

    def load(self, path: str | Path | None = None) -> dict:
        path = Path(path) if path is not None else self.latest()
        if path is None or not path.is_file():
            raise InputError("resume", f"no checkpoint in {self.directory}")
        return torch.load(path, map_location="cpu", weights_only=True)


def save_atomic(state: dict, path: str | Path) -> Path:
    """torch.save ``state`` to ``path`` through a temporary file and ``os.replace`` (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


class JsonlLogger:
    """Appends one JSON object per line to ``path`` (flushed each time). ``keep_until_step``: on resume,
    first drop records with ``step`` greater than the checkpoint's step, so the log reads like one run;
    None starts a fresh file. ``enabled=False`` (non-main processes) writes nothing."""

    def __init__(self, path: str | Path, keep_until_step: int | None = None, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if keep_until_step is not None and self.path.is_file():
            for line in self.path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a crash
                    continue
                if record.get("step", 0) <= keep_until_step:
                    kept.append(line)
        self.path.write_text("".join(line + "\n" for line in kept))

    def log(self, record: dict) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(record, default=json_default) + "\n")


def check_resumable(run_dir: Path, options, resumable: tuple[str, ...]) -> None:
    """Refuse ``--resume`` of RUN_DIR unless it has config.json and a checkpoint and was started with the same
    options as ``options`` (a training options dataclass) up to the ``resumable`` ones, which change no weight.
    An option that the saved run does not record (added to the job since) counts as its default value."""
    import dataclasses

    config_path = Path(run_dir) / "config.json"
    if not config_path.is_file() or Checkpointer(Path(run_dir) / "checkpoints").latest() is None:
        raise InputError("--resume", f"{run_dir}: no run to resume (config.json and a checkpoint are needed)")
    defaults = {f.name: f.default for f in dataclasses.fields(options) if f.default is not dataclasses.MISSING}
    saved = {**json.loads(json.dumps(defaults)), **json.loads(config_path.read_text())["options"]}
    now = json.loads(json.dumps(options.to_dict()))
    differ = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k) and k not in resumable)
    if differ:
        raise InputError("--resume", f"{run_dir} was started with other options ({', '.join(differ)} differ); "
                                     f"resume with the same ones (only {', '.join(resumable)} may change)")


def prepare_run_dir(run_dir: Path, options, resume: bool, overwrite: bool, outputs: tuple[str, ...],
                    resumable: tuple[str, ...]) -> None:
    """Make RUN_DIR ready for a training job: with ``resume``, check that the run can continue with ``options``
    (:func:`check_resumable`); else refuse a non-empty RUN_DIR unless ``overwrite``, and then remove only the
    job's own ``outputs`` (a latent cache inside RUN_DIR stays; its manifest decides whether it is reused)."""
    import shutil

    if resume and overwrite:
        raise InputError("--resume/--overwrite", "give one of the two: continue the run, or replace it")
    if resume:
        check_resumable(run_dir, options, resumable)
        return
    if run_dir.is_dir() and any(run_dir.iterdir()) and not overwrite:
        raise OutputExistsError(run_dir)
    for name in outputs:
        path = run_dir / name
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
