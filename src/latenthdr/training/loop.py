"""A model-agnostic training loop: seeds, EMA by half-life, AdamW with warmup + cosine, gradient clipping,
atomic checkpoints with exact resume and a jsonl log (both in ``rundir``), and an optional tqdm bar (stderr).

The loop knows nothing about the model or the data. A job supplies ``step_fn(model, step, accelerator) ->
(loss, scalars)``, which must draw its batch from ``step`` alone (step-indexed seeds), so an interrupted run
resumed from a checkpoint computes exactly the same updates as an uninterrupted one. A step function may
also expose ``state_dict()``/``load_state_dict()``: that "data state" travels in the checkpoint too.

Devices: ``accelerate.Accelerator`` places the model (``cpu=True`` when no GPU is visible, so no accelerate
config file is needed) and, under ``accelerate launch``, runs data-parallel (DDP: gradients averaged over the
processes). The batch size is the global one: every process draws the same batch of step ``step`` and computes
its share of the rows (``distributed.batch_share``), and ``loss`` is that process's part of the batch's loss (the
parts of all processes sum to it; one process: the whole loss), so the updates do not depend on the process count
except through the order of float sums (docs/scale-out.md). With several processes, the main one decides when to
stop and to checkpoint (elapsed time, SIGINT on any process) and every process follows, logged losses are summed
over the processes and other scalars averaged, and only the main process writes. The lr schedule is computed from
the step, not held in a scheduler object, so nothing about it needs saving.
"""

from __future__ import annotations

import json
import math
import random
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from latenthdr import io
from latenthdr.errors import InputError, LatentHDRError
from latenthdr.training.rundir import Checkpointer, JsonlLogger, json_default, save_atomic

BEST_FILE = "best.pt"  # RUN_DIR/best.pt: the EMA weights of the best validation so far (``train(best=...)``)

@dataclass(frozen=True)
class LoopConfig:
    """Options of :func:`train`; units in the names (steps are optimizer updates).

    At least one of ``max_steps`` / ``max_minutes`` must be set. The cosine decay runs over ``max_steps``
    (to ``lr * lr_min_ratio``); without ``max_steps`` the lr stays constant after warmup. ``max_minutes``
    caps the run's cumulative wall time (validation included, summed over resumed sessions).
    ``ema_rampup_ratio``: the EMA half-life is min(half_life, ratio * step) so short runs are not dominated
    by the initial weights (EDM's ``ema_rampup_ratio``); None disables it.
    """

    seed: int = 0
    lr: float = 1e-3
    lr_min_ratio: float = 0.05
    warmup_steps: int = 50
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip_norm: float | None = 1.0
    max_steps: int | None = None
    max_minutes: float | None = None
    ema_half_life_steps: float = 100.0
    ema_rampup_ratio: float | None = 0.1
    val_every_steps: int = 100
    checkpoint_every_steps: int = 100
    checkpoint_every_minutes: float = 5.0
    log_every_steps: int = 10
    keep_checkpoints: int = 2

    def __post_init__(self):
        if self.max_steps is None and self.max_minutes is None:
            raise InputError("max_steps/max_minutes", "give a step limit, a time limit or both")
        _positive("lr", self.lr)
        if self.max_steps is not None:
            _positive_int("max_steps", self.max_steps)
        if self.max_minutes is not None:
            _positive("max_minutes", self.max_minutes)
        for name in ("val_every_steps", "checkpoint_every_steps", "log_every_steps", "keep_checkpoints"):
            _positive_int(name, getattr(self, name))
        if self.warmup_steps < 0 or not 0.0 <= self.lr_min_ratio <= 1.0:
            raise InputError("warmup_steps/lr_min_ratio", "accepted: warmup_steps >= 0, 0 <= lr_min_ratio <= 1")
        if self.grad_clip_norm is not None:
            _positive("grad_clip_norm", self.grad_clip_norm)
        _positive("ema_half_life_steps", self.ema_half_life_steps)


def _positive(name: str, value) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise InputError(name, f"got {value!r}; accepted: a finite number > 0")


def _positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(name, f"got {value!r}; accepted: an integer >= 1")


def check_positive_ints(options, names) -> None:
    """InputError naming the first of ``names`` whose value on ``options`` is not an integer >= 1."""
    for name in names:
        _positive_int(name, getattr(options, name))


def loop_config_of(options) -> LoopConfig:
    """The LoopConfig of a job's options (head, codec, prior): they share these field names."""
    return LoopConfig(seed=options.seed, lr=options.lr, warmup_steps=options.warmup_steps,
                      weight_decay=options.weight_decay, grad_clip_norm=options.grad_clip_norm,
                      max_steps=options.steps, max_minutes=options.minutes,
                      ema_half_life_steps=options.ema_half_life_steps, val_every_steps=options.val_every,
                      checkpoint_every_steps=options.checkpoint_every)


def set_seed(seed: int) -> None:
    """Seed Python, numpy and torch (all devices) global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers (global seed, sample or step index, ...), independent of call order."""
    return int(np.random.SeedSequence([int(p) % 2**63 for p in parts]).generate_state(2, np.uint32).view(np.uint64)[0]
               % 2**63)


def lr_at(step: int, config: LoopConfig) -> float:
    """Learning rate for the update that follows ``step`` completed updates: linear warmup over
    ``warmup_steps``, then cosine decay to ``lr * lr_min_ratio`` at ``max_steps`` (constant without it)."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.max_steps is None or config.max_steps <= config.warmup_steps:
        return config.lr
    progress = min(1.0, (step - config.warmup_steps) / (config.max_steps - config.warmup_steps))
    return config.lr * (config.lr_min_ratio + (1 - config.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


class EMA:
    """Exponential moving average of a model's parameters, parameterised by its half-life in steps:
    after each update theta_ema <- beta theta_ema + (1 - beta) theta, beta = 0.5^(1 / half_life), so a
    weight's influence halves every ``half_life_steps`` updates (EDM's ``ema_halflife``, in steps).
    Buffers are copied. The shadow copy is float32 and never needs gradients.
    """

    def __init__(self, model: nn.Module, half_life_steps: float, rampup_ratio: float | None = None):
        import copy

        self.half_life_steps = float(half_life_steps)
        self.rampup_ratio = rampup_ratio
        self.module = copy.deepcopy(model).float().eval().requires_grad_(False)

    def beta(self, step: int) -> float:
        half_life = self.half_life_steps
        if self.rampup_ratio is not None:
            half_life = min(half_life, self.rampup_ratio * step)
        return 0.5 ** (1.0 / half_life) if half_life > 0 else 0.0

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Fold in ``model``'s current weights after update number ``step`` (1-based)."""
        beta = self.beta(step)
        for p_ema, p in zip(self.module.parameters(), model.parameters()):
            p_ema.lerp_(p.detach().float(), 1.0 - beta)
        for b_ema, b in zip(self.module.buffers(), model.buffers()):
            b_ema.copy_(b)

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state)


def rng_state() -> dict:
    """Global RNG states (Python, numpy, torch CPU and CUDA) as tensors and plain values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                                                    gauss), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(_tuples(state["python"]))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(x):
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


def make_accelerator():
    """An ``accelerate.Accelerator`` for this machine: the GPU(s) when visible, else CPU (no config file)."""
    from accelerate import Accelerator

    from latenthdr.distributed import close_at_exit

    close_at_exit()  # under a launch: the process group this starts is closed as the process exits
    return Accelerator(cpu=not torch.cuda.is_available())


@dataclass
class TrainResult:
    """What :func:`train` returns. ``stopped_by``: "steps" | "time" | "interrupt". ``history``: the
    validation records (each with "step"). ``ema``: the EMA module (float32, eval mode, on CPU)."""

    step: int
    elapsed_s: float
    stopped_by: str
    history: list = field(default_factory=list)
    ema: nn.Module | None = None
    last_loss: float | None = None
    best: dict | None = None  # {"metric", "step", "value"} of RUN_DIR/best.pt; with train(best=...)
    best_ema: nn.Module | None = None  # the EMA module with the best validation's weights


@dataclass(frozen=True)
class Best:
    """Keep the EMA weights of the best validation: ``metric`` (a key of the validation record) and ``mode``
    ("max": higher is better, "min": lower is better)."""

    metric: str
    mode: str = "max"

    def __post_init__(self):
        if self.mode not in ("max", "min"):
            raise InputError("best", f"mode {self.mode!r}; accepted: max, min")

    def better(self, value, than) -> bool:
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        return than is None or (value > than if self.mode == "max" else value < than)


class _StopFlag:
    """SIGINT sets a flag the loop checks between steps (a clean checkpoint); a second SIGINT aborts."""

    def __init__(self):
        self.set = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self._previous = None
        return self

    def _handle(self, signum, frame):
        if self.set:
            raise KeyboardInterrupt
        self.set = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


StepFn = Callable[[nn.Module, int, object], "tuple[torch.Tensor, dict]"]
ValidateFn = Callable[[int, nn.Module, bool], dict]
# LoopConfig fields that change the updates: a resumed run must use the checkpoint's values.
_RESUME_FIXED = ("seed", "lr", "lr_min_ratio", "warmup_steps", "weight_decay", "betas", "grad_clip_norm",
                 "max_steps", "ema_half_life_steps", "ema_rampup_ratio")


@dataclass
class _State:
    step: int = 0
    elapsed_s: float = 0.0
    history: list = field(default_factory=list)
    best: dict | None = None  # {"metric", "step", "value"}


def train(model: nn.Module, step_fn: StepFn, config: LoopConfig, run_dir: str | Path, *,
          validate: ValidateFn | None = None, resume: bool = False, progress: bool = False,
          accelerator=None, best: Best | None = None) -> TrainResult:
    """Train ``model`` with AdamW on ``step_fn``'s loss until ``max_steps`` or ``max_minutes``.

    Each update: lr from :func:`lr_at`; ``loss, scalars = step_fn(model, step, accelerator)`` (``step`` =
    updates done so far, 0-based; draw the batch from it); backward; clip the gradient norm; AdamW step; EMA
    update. Every ``val_every_steps`` and at the end, ``validate(step, ema_module, final)`` returns scalars
    (validation runs on the EMA weights, the ones a job ships). Writes ``run_dir/log.jsonl`` and
    ``run_dir/checkpoints/``. ``resume``: continue from the newest intact checkpoint, bit-identically; SIGINT stops
    cleanly between steps with a checkpoint (stopped_by "interrupt"). ``best``: after each validation whose
    ``best.metric`` beats every earlier one, the EMA weights go to ``run_dir/best.pt`` (survives resumes);
    the result's ``best_ema`` holds them. Build ``model`` after ``set_seed`` so its initial weights depend
    on the seed alone.
    """
    acc = accelerator or make_accelerator()
    run_dir = Path(run_dir)
    set_seed(config.seed)
    model = model.to(acc.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=config.betas,
                                  weight_decay=config.weight_decay)
    model, optimizer = acc.prepare(model, optimizer)
    ema = EMA(acc.unwrap_model(model), config.ema_half_life_steps, config.ema_rampup_ratio)
    checkpointer = Checkpointer(run_dir / "checkpoints", config.keep_checkpoints)
    if acc.is_main_process:
        for folder in (run_dir, checkpointer.directory):  # what a run killed while saving left
            io.recover_outputs(folder)
    state = _State()
    if resume:
        _restore(checkpointer.load(), config, acc.unwrap_model(model), optimizer, ema, step_fn, state)
    logger = JsonlLogger(run_dir / "log.jsonl", state.step if resume else None, acc.is_main_process)

    def validate_and_keep(final: bool) -> None:
        record = _validate(validate, ema, state, logger, final)
        if best is not None and best.better(record.get(best.metric), (state.best or {}).get("value")):
            state.best = {"metric": best.metric, "step": state.step, "value": record[best.metric]}
            if acc.is_main_process:
                save_atomic({**state.best, "ema": ema.state_dict()}, run_dir / BEST_FILE)

    def save():
        if acc.is_main_process:
            checkpointer.save(state.step, _snapshot(config, acc.unwrap_model(model), optimizer, ema, step_fn, state))
        acc.wait_for_everyone()

    session_start, elapsed_before = time.monotonic(), state.elapsed_s
    last_save, saved_step, record = time.monotonic(), state.step, {}
    bar = _progress_bar(config, state.step, progress and acc.is_main_process)
    with _StopFlag() as flag:
        stopped_by = _stop_reason(state, config, flag)
        while not stopped_by:
            record = _one_step(model, optimizer, step_fn, state.step, acc, config)
            state.step += 1
            ema.update(acc.unwrap_model(model), state.step)
            state.elapsed_s = elapsed_before + time.monotonic() - session_start
            flag.set, state.elapsed_s = _main_decides(acc, flag.set, state.elapsed_s, any_process=True)
            bar.update(1)
            if state.step % config.log_every_steps == 0:
                record = _over_processes(record, acc)
                logger.log({"step": state.step, "kind": "train", "elapsed_s": round(state.elapsed_s, 3), **record})
                bar.set_postfix(loss=f"{record['loss']:.4g}")
            stopped_by = _stop_reason(state, config, flag)
            final = stopped_by in ("steps", "time")
            if validate is not None and (final or state.step % config.val_every_steps == 0):
                validate_and_keep(final)
            due, = _main_decides(acc, time.monotonic() - last_save > 60 * config.checkpoint_every_minutes)
            if state.step % config.checkpoint_every_steps == 0 or due:
                save()
                last_save, saved_step = time.monotonic(), state.step
    bar.close()
    if validate is not None and stopped_by != "interrupt" and not _has_final(state):
        validate_and_keep(True)
    state.elapsed_s = elapsed_before + time.monotonic() - session_start  # the last validation included
    due, state.elapsed_s = _main_decides(acc, saved_step != state.step or not checkpointer.latest(), state.elapsed_s)
    if due:
        save()
    last_loss = _over_processes(record, acc).get("loss") if record else None
    return TrainResult(state.step, state.elapsed_s, stopped_by, state.history, ema.module, last_loss,
                       state.best, _best_module(run_dir, ema, state.best))


def _main_decides(acc, *values, any_process: bool = False) -> tuple:
    """``values`` (bools and floats) as the main process has them, so that every process stops, validates and
    checkpoints at the same step (a collective that only some processes enter never returns); with
    ``any_process``, the first value (a flag) is set where any process has it set. One process: ``values``."""
    if acc.num_processes == 1:
        return values
    local = torch.tensor([float(v) for v in values], dtype=torch.float64, device=acc.device)
    every = acc.gather(local[None]).cpu()  # [processes, len(values)]
    main = every[0].tolist()
    if any_process:
        main[0] = every[:, 0].max().item()
    return tuple(type(v)(m) if isinstance(v, bool) else m for v, m in zip(values, main))


def _over_processes(record: dict, acc) -> dict:
    """A training record over every process: the loss parts summed (the loss of the global batch), the other
    numbers averaged (lr and grad_norm are the same everywhere). One process: ``record``."""
    if acc.num_processes == 1:
        return record
    keys = [k for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    local = torch.tensor([float(record[k]) for k in keys], dtype=torch.float64, device=acc.device)
    every = acc.gather(local[None]).cpu()  # [processes, len(keys)]
    merged = every.mean(dim=0)
    merged[keys.index("loss")] = every[:, keys.index("loss")].sum()
    return {**record, **dict(zip(keys, merged.tolist()))}


def _best_module(run_dir: Path, ema: EMA, best: dict | None) -> nn.Module | None:
    import copy

    path = run_dir / BEST_FILE
    if best is None or not path.is_file():
        return None
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if saved.get("step") != best["step"]:  # written by another run in this folder
        return None
    module = copy.deepcopy(ema.module).cpu()
    module.load_state_dict(saved["ema"])
    return module


def _one_step(model, optimizer, step_fn, step: int, acc, config: LoopConfig) -> dict:
    lr = lr_at(step, config)
    for group in optimizer.param_groups:
        group["lr"] = lr
    model.train()
    loss, scalars = step_fn(model, step, acc)  # this process's part of the batch's loss
    if not torch.isfinite(loss.detach()).all():
        raise LatentHDRError(f"training loss is not finite at step {step} ({loss.detach().item()})")
    # DDP averages the processes' gradients: n x the parts gives the gradient of the batch's loss (their sum)
    acc.backward(loss if acc.num_processes == 1 else loss * acc.num_processes)
    max_norm = config.grad_clip_norm if config.grad_clip_norm is not None else math.inf
    grad_norm = acc.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return {"loss": loss.detach().item(), "lr": lr, "grad_norm": float(grad_norm), **scalars}


def _stop_reason(state: _State, config: LoopConfig, flag: _StopFlag) -> str | None:
    if flag.set:
        return "interrupt"
    if config.max_steps is not None and state.step >= config.max_steps:
        return "steps"
    if config.max_minutes is not None and state.elapsed_s >= 60 * config.max_minutes:
        return "time"
    return None


def _validate(validate: ValidateFn, ema: EMA, state: _State, logger: JsonlLogger, final: bool) -> dict:
    start = time.monotonic()
    metrics = validate(state.step, ema.module, final)
    record = {"step": state.step, "kind": "val", "final": final, "elapsed_s": round(state.elapsed_s, 3),
              "val_s": round(time.monotonic() - start, 3), **metrics}
    state.history.append(record)
    logger.log(record)
    return record


def _has_final(state: _State) -> bool:
    return bool(state.history) and state.history[-1]["step"] == state.step and state.history[-1].get("final")


def _snapshot(config, model, optimizer, ema: EMA, step_fn, state: _State) -> dict:
    data = step_fn.state_dict() if hasattr(step_fn, "state_dict") else {}
    return {"format": 1, "step": state.step, "elapsed_s": state.elapsed_s, "config": asdict(config),
            "model": model.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
            "rng": rng_state(), "data": data, "history_json": json.dumps(state.history, default=json_default),
            "best_json": json.dumps(state.best)}


def _restore(ckpt: dict, config: LoopConfig, model, optimizer, ema: EMA, step_fn, state: _State) -> None:
    saved = ckpt["config"]
    for key in _RESUME_FIXED:
        old, new = saved.get(key), asdict(config)[key]
        if (list(old) if isinstance(old, (list, tuple)) else old) != (list(new) if isinstance(new, tuple) else new):
            raise InputError("resume", f"the checkpoint was trained with {key}={old!r}, now {new!r}; "
                                       "resume with the same options or start a new run")
    model.load_state_dict(ckpt["model"])
    ema.load_state_dict(ckpt["ema"])
    optimizer.load_state_dict(ckpt["optimizer"])
    set_rng_state(ckpt["rng"])
    if hasattr(step_fn, "load_state_dict"):
        step_fn.load_state_dict(ckpt["data"])
    state.step, state.elapsed_s = int(ckpt["step"]), float(ckpt["elapsed_s"])
    state.history = json.loads(ckpt["history_json"])
    state.best = json.loads(ckpt.get("best_json", "null"))


def _progress_bar(config: LoopConfig, initial: int, enabled: bool):
    import sys

    from tqdm.auto import tqdm

    return tqdm(total=config.max_steps, initial=initial, disable=not enabled, file=sys.stderr, unit="step",
                dynamic_ncols=True, desc="train")
