"""The run folder of a training job: atomic checkpoints with their retention, the jsonl log, and the checks
that decide whether RUN_DIR may be started, replaced or resumed. Used by ``loop.train`` and by the head, codec
and prior jobs."""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from pathlib import Path

import torch

from latenthdr.errors import InputError, OutputExistsError
from latenthdr import io
from latenthdr.io import json_default

CHECKPOINT_GLOB = "step-*.pt"


class Checkpointer:
    """Atomic checkpoints in ``directory`` (``step-00000100.pt``), keeping the newest ``keep``.

    A checkpoint is a dict of tensors and plain values (torch.save; loaded with ``weights_only=True``).
    Writes go to a temporary file in the same directory, then ``os.replace``, so a crash never leaves a
    half-written checkpoint under a final name. One damaged later (cut short, emptied, overwritten) is
    skipped by :meth:`load`, which resumes from the one before.
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
        """Write the checkpoint of ``step``, then delete all but the newest ``keep`` and any of a later step
        (left by a run that resumed from before them, the newest being damaged)."""
        path = save_atomic(state, self.directory / f"step-{step:08d}.pt")
        paths = self.paths()
        earlier = [p for p in paths if p.name <= path.name]
        for old in [p for p in paths if p.name > path.name] + earlier[: -self.keep]:
            old.unlink(missing_ok=True)
        return path

    def load(self, path: str | Path | None = None) -> dict:
        """The checkpoint at ``path``, else the newest intact one: damaged newer ones are skipped with a warning
        that names them. InputError ("--resume") when none can be read."""
        damaged = []
        for candidate in [Path(path)] if path is not None else self.paths()[::-1]:
            try:
                state = _read_checkpoint(candidate)
            except Exception as exc:  # a damaged file: zipfile and torch.load raise many kinds
                damaged.append(f"{candidate} ({_first_line(exc)})")
                continue
            if damaged:
                warnings.warn(f"--resume: skipped damaged checkpoint {', '.join(damaged)}; resuming from "
                              f"{candidate.name}", stacklevel=2)
            return state
        found = f"no intact checkpoint: {', '.join(damaged)}" if damaged else "no checkpoint"
        raise InputError("--resume", f"{self.directory}: {found}; start the run again with --overwrite")


def _read_checkpoint(path: str | Path) -> dict:
    """torch.load ``path`` (a torch.save zip) once its CRCs check out: torch.load reads flipped bytes without
    noticing. Raises what zipfile or torch.load raise for a damaged file."""
    with zipfile.ZipFile(path) as archive:
        bad = archive.testzip()
    if bad is not None:
        raise ValueError(f"bad CRC in {bad}")
    return torch.load(path, map_location="cpu", weights_only=True)


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]


def save_atomic(state: dict, path: str | Path) -> Path:
    """torch.save ``state`` to ``path`` through a temporary beside it and a rename (``io.atomic_output``: never
    half-written; the temporary is deleted on an error, and one left by a killed process by the next run)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with io.atomic_output(path, overwrite=True) as temp:
        torch.save(state, temp)
    return path


class JsonlLogger:
    """Appends one JSON object per line to ``path`` (flushed each time). ``keep_until_step``: on resume,
    first drop records with ``step`` greater than the checkpoint's step, so the log reads like one run;
    None starts a fresh file. Lines that do not read as a JSON object (cut by a crash, damaged) are dropped.
    ``enabled=False`` (non-main processes) writes nothing."""

    def __init__(self, path: str | Path, keep_until_step: int | None = None, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if keep_until_step is not None and self.path.is_file():
            for line in self.path.read_bytes().splitlines():
                record = _json_object(line)
                if record is not None and record.get("step", 0) <= keep_until_step:
                    kept.append(line.decode())
        self.path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def log(self, record: dict) -> None:
        if self.enabled:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record, default=json_default) + "\n")


def _json_object(line: bytes) -> dict | None:
    try:
        record = json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError):  # not UTF-8, or not JSON (or nested too deep)
        return None
    ok = isinstance(record, dict) and isinstance(record.get("step", 0), (int, float))
    return record if ok else None


def check_writable(run_dir: Path) -> None:
    """InputError ("--out") unless RUN_DIR is a folder this process can write in, or can create."""
    existing = next(p for p in (Path(run_dir), *Path(run_dir).parents) if p.exists())
    if not existing.is_dir():
        raise InputError("--out", f"{existing} is a file, not a folder; accepted: a run folder (existing or new)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError("--out", f"{existing} is not writable; accepted: a run folder you can write in "
                                  "(check its permissions, or choose another)")


def check_resumable(run_dir: Path, options, resumable: tuple[str, ...]) -> None:
    """Refuse ``--resume`` of RUN_DIR unless it has config.json and a checkpoint and was started with the same
    options as ``options`` (a training options dataclass) up to the ``resumable`` ones, which change no weight.
    An option that the saved run does not record (added to the job since) counts as its default value."""
    import dataclasses

    config_path = Path(run_dir) / "config.json"
    if not config_path.is_file() or Checkpointer(Path(run_dir) / "checkpoints").latest() is None:
        raise InputError("--resume", f"{run_dir}: no run to resume (config.json and a checkpoint are needed)")
    defaults = {f.name: f.default for f in dataclasses.fields(options) if f.default is not dataclasses.MISSING}
    saved = {**json.loads(json.dumps(defaults)), **_saved_options(config_path)}
    now = json.loads(json.dumps(options.to_dict()))
    differ = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k) and k not in resumable)
    if differ:
        raise InputError("--resume", f"{run_dir} was started with other options ({', '.join(differ)} differ); "
                                     f"resume with the same ones (only {', '.join(resumable)} may change)")


def _saved_options(config_path: Path) -> dict:
    """The "options" object of a run's config.json; InputError ("--resume") if the file is damaged."""
    try:
        options = json.loads(config_path.read_text(encoding="utf-8"))["options"]
        if isinstance(options, dict):
            return options
        problem = '"options" is not an object'
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:  # ValueError: not UTF-8, or not JSON
        problem = f"{type(exc).__name__}: {_first_line(exc)}"
    raise InputError("--resume", f"{config_path} is not a readable run config ({problem}); accepted: the "
                                 "config.json the run wrote; restore it, or start the run again with --overwrite")


def prepare_run_dir(run_dir: Path, options, resume: bool, overwrite: bool, outputs: tuple[str, ...],
                    resumable: tuple[str, ...]) -> None:
    """Make RUN_DIR ready for a training job: refuse one that cannot be written (:func:`check_writable`); with
    ``resume``, check that the run can continue with ``options`` (:func:`check_resumable`); else refuse a
    non-empty RUN_DIR unless ``overwrite``, and then remove only the job's own ``outputs`` (a latent cache
    inside RUN_DIR stays; its manifest decides whether it is reused)."""
    import shutil

    if resume and overwrite:
        raise InputError("--resume/--overwrite", "give one of the two: continue the run, or replace it")
    check_writable(run_dir)
    if resume:
        check_resumable(run_dir, options, resumable)
        return
    if run_dir.is_dir() and any(run_dir.iterdir()) and not overwrite:
        raise OutputExistsError(run_dir)
    for name in outputs:
        path = run_dir / name
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
