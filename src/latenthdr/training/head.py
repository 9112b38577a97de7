"""Training the exposure head on cached latents (METHOD.md "Losses"), with validation.

Stages of :func:`train_head`: prepare RUN_DIR -> load the codec -> latent caches (train; val with the
anchored HDR) -> head from a preset -> ``loop.train`` with :class:`HeadStep` and ``head_eval.HeadValidator`` ->
RUN_DIR/head.safetensors (EMA weights) and val_curve.json.

Loss: L_ev = mean over (scene, e) of ||z_e_hat - z_e||^2 (METHOD.md Eq. 4), taken per latent element (the
norm divided by C h w, so crops and panoramas of different sizes weigh alike); every scene runs all K EVs of
the ladder in one batched forward. Optional decoded-pixel loss (weight ``pixel_loss``, default 0): decode
``pixel_evs_per_scene`` predicted frames per scene through the frozen codec decoder (gradients flow through
it), linearise, divide by 2^e, and compare with the true frame's radiance estimate in PU21 units, weighted by
the merge's weight of the true frame (METHOD.md Eq. 9, so only what the merge uses counts). It is reported
as MSE / 256^2, so 10 log10(1 / loss_px) reads as a PU21-PSNR in dB.

Optional weighting of what the EV-0 frame does not show (``unknown_weight``, default 0): a latent pixel's
squared error counts 1 + unknown_weight * u, where u is the fraction of its 8-bit EV-0 pixels clipped (any
channel at the top level; for e < 0) or black (every channel at 0; for e > 0), and the loss is divided by the
mean weight. These are the only pixels whose radiance the head has to infer rather than re-expose, and the
only ones the input-preserving blend takes from the head; unweighted, they are a few per cent of the loss
and the head learns to leave them at the clip level (docs/embedded.md). Needs the cache's anchored HDR.
"""

from __future__ import annotations

import math
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from latenthdr import distributed
from latenthdr.errors import InputError
from latenthdr.training import data, loop, rundir
from latenthdr.training.head_eval import HeadValidator, ev0_unseen, head_inputs

RUN_OUTPUTS = ("config.json", "log.jsonl", "checkpoints", "head.safetensors", "val_curve.json", loop.BEST_FILE)
NITS_AT_CLIP = 100.0  # pixel loss: cd/m2 given to the EV-0 clip level (1.0) before PU21 encoding
# options that change no weight: a resumed run may change them
RESUMABLE_CHANGES = ("minutes", "val_every", "merged_every", "merged_samples", "checkpoint_every", "select")
SELECT_METRIC = "identity_over_head"  # select="best": the validation with the highest identity / head ratio


@dataclass(frozen=True)
class HeadTrainOptions:
    """Everything a head training run depends on (saved as RUN_DIR/config.json).

    codec: a ``load_codec`` spec. data/val: folders of HDR panoramas (val may be None: no validation).
    evs: the ladder (stops). samples/val_samples: cached samples. batch_size: scenes per step (each with all
    K EVs). steps/minutes: limits (at least one). val_every: steps between validations; merged-HDR metrics
    (decode + merge, slow on CPU) every ``merged_every`` validations and at the end, on the first
    ``merged_samples`` val samples. checkpoint_every: steps between checkpoints. cache: cache folder (default
    RUN_DIR/cache). scenes: train on the samples of this many training panoramas only (``data.scene_subset``,
    nested in the count; 0: all), every view of them kept: the cache is shared by every scene count.
    """

    codec: str
    data: str
    val: str | None = None
    evs: tuple[float, ...] = (-7.0, -6.0, -5.0, -4.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0)
    preset: str = "base"
    samples: int = 360
    val_samples: int = 40
    sampling: data.SamplingConfig = field(default_factory=data.SamplingConfig)
    batch_size: int = 8
    lr: float = 1e-3
    steps: int | None = 2000
    minutes: float | None = None
    warmup_steps: int = 50
    weight_decay: float = 0.01
    grad_clip_norm: float = 1.0
    ema_half_life_steps: float = 100.0
    val_every: int = 100
    merged_every: int = 5
    merged_samples: int = 4
    checkpoint_every: int = 100
    pixel_loss: float = 0.0
    pixel_evs_per_scene: int = 2
    unknown_weight: float = 0.0
    display_weight: float = 0.0
    unseen_maps: bool = False
    frame_channels: int = 0
    ev_conditioning: str = "film"
    seed: int = 0
    cache: str | None = None
    select: str = "last"
    scenes: int = 0

    def __post_init__(self):
        from latenthdr import exposure
        from latenthdr.models.head import EV_CONDITIONINGS

        evs = exposure.parse_ev_ladder(self.evs, "evs")
        if len(evs) < 2:
            raise InputError("evs", f"got {evs}; accepted: a ladder of at least 2 EVs")
        object.__setattr__(self, "evs", evs)
        if isinstance(self.scenes, bool) or not isinstance(self.scenes, int) or self.scenes < 0:
            raise InputError("scenes", f"got {self.scenes!r}; accepted: an integer >= 0 (0: every scene)")
        loop.check_positive_ints(self, ("samples", "batch_size", "val_every", "merged_every", "checkpoint_every",
                                        "pixel_evs_per_scene"))
        if isinstance(self.frame_channels, bool) or not isinstance(self.frame_channels, int) or self.frame_channels < 0:
            raise InputError("frame_channels", f"got {self.frame_channels!r}; accepted: an integer >= 0 (0: off)")
        if self.ev_conditioning not in EV_CONDITIONINGS:  # before a run folder is made, not at the head's build
            raise InputError("ev_conditioning", f"got {self.ev_conditioning!r}; accepted: "
                                                f"{', '.join(EV_CONDITIONINGS)}")
        for name in ("pixel_loss", "unknown_weight", "display_weight"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise InputError(name, f"got {getattr(self, name)!r}; accepted: a weight >= 0")
        if self.select not in ("last", "best"):
            raise InputError("select", f"got {self.select!r}; accepted: last, best")
        if self.select == "best" and (self.val is None or self.val_samples <= 0):
            raise InputError("select", "best needs validation data (--val and --val-samples > 0)")

    @property
    def needs_hdr(self) -> bool:
        """Whether the training cache must keep each sample's anchored HDR (pixel loss, unknown weighting,
        unseen maps, the EV-0 frame as a head input)."""
        return self.pixel_loss > 0 or self.unknown_weight > 0 or self.unseen_maps or self.frame_channels > 0

    def loop_config(self) -> loop.LoopConfig:
        return loop.loop_config_of(self)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class HeadTrainResult:
    """Summary of a run: paths, steps, wall time (s, cumulative over resumes), why it stopped, the last
    validation record, and the cache build times (s; 0 when reused)."""

    run_dir: Path
    head_path: Path
    steps: int
    duration_s: float
    stopped_by: str
    final_val: dict
    cache_build_s: dict
    selected_step: int | None = None  # the step whose EMA weights head.safetensors holds


class HeadStep:
    """The training step: batch of step ``step`` from the train cache -> L_ev (+ pixel loss)."""

    def __init__(self, cache: data.LatentCache, batch_size: int, seed: int, pixel_loss: float = 0.0,
                 codec=None, pixel_evs_per_scene: int = 2, unknown_weight: float = 0.0,
                 channel_weights: torch.Tensor | None = None, unseen_maps: bool = False, frame: bool = False):
        if pixel_loss > 0 and (codec is None or cache.groups[0].hdr is None):
            raise InputError("pixel_loss", "a pixel loss needs the codec and a cache built with keep_hdr=True")
        for name, used in (("unknown_weight", unknown_weight > 0), ("unseen_maps", unseen_maps), ("frame", frame)):
            if used and cache.groups[0].hdr is None:
                raise InputError(name, "needs a cache built with keep_hdr=True")
        self.cache, self.batch_size, self.seed = cache, batch_size, seed
        self.pixel_loss, self.codec, self.pixel_evs = pixel_loss, codec, pixel_evs_per_scene
        self.unknown_weight, self.unseen_maps, self.frame = unknown_weight, unseen_maps, frame
        self.evs = torch.tensor(cache.evs, dtype=torch.float32)
        # [C] mean-1 weights, shaped to broadcast over [B, K, C, h, w]; None: every channel alike
        self.channel_weights = None if channel_weights is None else channel_weights.float()[:, None, None]

    def __call__(self, model, step: int, accelerator) -> tuple[torch.Tensor, dict]:
        """This process's part of the loss of step ``step``'s batch (``loop.train``), and its scalars. The batch is
        drawn whole on every process (the same whatever their number); each computes its rows of it."""
        group, rows = data.draw_batch(self.cache, self.batch_size, self.seed, step)  # [B] the global batch
        share = distributed.batch_share(len(rows), accelerator)
        mine, device = rows[share.rows], accelerator.device  # [b] this process's rows
        z0 = group.z0[mine].to(device, torch.float32)  # [b, C, h, w]
        z = group.z[mine].to(device, torch.float32)  # [b, K, C, h, w]
        side = head_inputs(group, mine, device, self.unseen_maps, self.frame)
        z_hat = model(z0, self.evs.to(device), panorama=group.panorama, **side)  # [b, K, C, h, w]
        se = (z_hat - z).square()  # METHOD.md Eq. 4, per latent element
        if self.channel_weights is not None:
            se = self.channel_weights.to(device) * se  # mean-1 weights: the loss keeps its scale
        if self.unknown_weight > 0:
            unseen = side["unseen"] if "unseen" in side else ev0_unseen(group, mine).to(device)
            w = unknown_weights(unseen, self.evs.to(device), self.unknown_weight)
            # divided by the whole batch's mean weight (data only, no gradient), so the parts add up
            w_mean = w.mean() if share.whole else unknown_weights(ev0_unseen(group, rows).to(device),
                                                                  self.evs.to(device), self.unknown_weight).mean()
            loss_ev = (w * se).mean() / w_mean
        else:
            loss_ev = se.mean()
        scalars = {"loss_ev": loss_ev.item()}
        loss = share.part(loss_ev)
        if self.pixel_loss <= 0:
            return loss, scalars
        loss_px = self._pixel_loss(z_hat, group, rows, share, step, device)
        scalars["loss_px"] = loss_px.item()
        return loss + self.pixel_loss * loss_px, scalars

    def _pixel_loss(self, z_hat, group: data.LatentGroup, rows, share: distributed.BatchShare, step: int,
                    device) -> torch.Tensor:
        """This process's part of the pixel loss of the batch ``rows`` (module docstring): z_hat [b, K, C, h, w] of
        its share ``share.rows``; the EVs decoded and the weights' sum are drawn and taken over the whole batch."""
        from latenthdr import merge, metrics, response

        g = torch.Generator().manual_seed(loop.derive_seed(self.seed, step, 0, 1))
        batch, k = len(rows), z_hat.shape[1]
        pick = torch.stack([torch.randperm(k, generator=g)[: self.pixel_evs] for _ in range(batch)])  # [B, m]
        H = group.hdr[rows].to(device)  # [B, 3, H, W] linear, anchored
        e = self.evs[pick].to(H.device)  # [B, m] stops
        mine = pick[share.rows]  # [b, m]
        y_hat = self.codec.decode(z_hat[torch.arange(len(mine))[:, None], mine].flatten(0, 1),
                                  panorama=group.panorama, grad=True).unflatten(0, mine.shape)  # [b, m, 3, H, W]
        gain = torch.exp2(e)[..., None, None, None]
        y = response.quantize(response.encode(H[:, None] * gain, data.CURVE), data.BITS)  # true frames [B, m, ...]
        w = merge.hat_weight(y.mean(dim=-3)) * ((y > 0.02) & (y < 0.98)).all(dim=-3)  # [B, m, H, W]
        gain_b = gain[share.rows]
        V_hat = metrics.pu21_encode(response.decode(y_hat, data.CURVE) / gain_b * NITS_AT_CLIP)
        V = metrics.pu21_encode(response.decode(y[share.rows], data.CURVE) / gain_b * NITS_AT_CLIP)
        se = (V_hat - V).square().mean(dim=-3)  # [b, m, H, W]
        return share.own(((w[share.rows] * se).sum() / w.sum().clamp_min(1.0) / metrics.PU21_PEAK**2).float())


def display_channel_weights(codec, options: HeadTrainOptions) -> torch.Tensor | None:
    """The [C] loss weights of ``display_weight`` (module docstring), mean 1; None when it is 0."""
    if options.display_weight <= 0:
        return None
    from latenthdr.models.codecs import channel_display_gains

    g2 = channel_display_gains(codec).square()
    w = 1.0 + options.display_weight * g2 / g2.mean()
    return w / w.mean()


def unknown_weights(unseen: torch.Tensor, evs: torch.Tensor, weight: float) -> torch.Tensor:
    """Per-latent-pixel loss weights (module docstring): unseen [B, 2, h, w] the EV-0 frame's clipped / black
    fractions per latent cell (``head_eval.ev0_unseen``), evs [K] stops -> [B, K, 1, h, w] float32 = 1 + weight * (clipped
    fraction for e < 0, black fraction for e > 0; 0 for e = 0)."""
    clipped, black = unseen[:, None, 0:1], unseen[:, None, 1:2]  # [B, 1, 1, h, w]
    e = evs.float()[None, :, None, None, None]  # [1, K, 1, 1, 1]
    unknown = torch.where(e < 0, clipped, torch.where(e > 0, black, torch.zeros_like(e)))
    return 1.0 + weight * unknown


def train_head(options: HeadTrainOptions, run_dir: str | Path, *, codec=None, resume: bool = False,
               overwrite: bool = False, progress: bool = False, command: str | None = None,
               accelerator=None) -> HeadTrainResult:
    """Train an exposure head end to end; see the module docstring for the stages.

    codec: an already loaded ``LatentCodec`` (tests, notebooks), else ``registry.load_codec_for(options.codec)`` ("embedded" included). resume:
    continue RUN_DIR's run (same options except RESUMABLE_CHANGES). overwrite: replace RUN_DIR's outputs
    (and rebuild a mismatched cache). RUN_DIR holding anything else raises OutputExistsError.
    """
    from latenthdr import io
    from latenthdr.models import registry
    from latenthdr.models.head import ExposureHead, HeadConfig, save_head

    run_dir = Path(run_dir)
    acc = accelerator or loop.make_accelerator()
    distributed.check_batch_split(options.batch_size, acc)
    if acc.is_main_process:  # data-parallel processes wait while the main one prepares the folder and caches
        rundir.prepare_run_dir(run_dir, options, resume, overwrite, RUN_OUTPUTS, RESUMABLE_CHANGES)
    acc.wait_for_everyone()
    codec = codec or registry.load_codec_for(options.codec, device=acc.device)
    command = command or shlex.join(sys.argv)
    head_config = HeadConfig.from_preset(options.preset, codec.latent_channels, codec.space,
                                         ev_min=min(options.evs), ev_max=max(options.evs),
                                         unseen_maps=options.unseen_maps, frame_channels=options.frame_channels,
                                         ev_conditioning=options.ev_conditioning,
                                         frame_patch=codec.downscale)
    config = {"options": options.to_dict(), "loop": asdict(options.loop_config()), "head": head_config.to_dict(),
              "codec_space": codec.space, "command": command, "processes": acc.num_processes}
    if acc.is_main_process:
        io.write_json(run_dir / "config.json", config, overwrite=True)
    if acc.is_main_process:
        caches, build_s = _build_caches(options, run_dir, codec, overwrite, progress)
    acc.wait_for_everyone()
    if not acc.is_main_process:
        caches, build_s = _open_caches(options, run_dir), {}
    if options.scenes:
        sources = sorted({spec.source for spec in caches["train"].specs})
        caches["train"] = data.restrict_to_scenes(caches["train"],
                                                  data.scene_subset(sources, options.scenes, options.seed))
    step_fn = HeadStep(caches["train"], options.batch_size, options.seed, options.pixel_loss, codec,
                       options.pixel_evs_per_scene, options.unknown_weight, display_channel_weights(codec, options),
                       options.unseen_maps, options.frame_channels > 0)
    validator = None if caches.get("val") is None else HeadValidator(
        caches["val"], codec, options.batch_size, options.val_every, options.merged_every, options.merged_samples,
        options.unseen_maps, options.frame_channels > 0)
    loop.set_seed(options.seed)  # the initial weights depend on the seed only
    best = loop.Best(SELECT_METRIC, "max") if validator is not None else None
    result = loop.train(ExposureHead(head_config), step_fn, options.loop_config(), run_dir, validate=validator,
                        resume=resume, progress=progress, accelerator=acc, best=best)
    module, step, final = result.ema, result.step, (_finite(result.history[-1]) if result.history else {})
    if options.select == "best" and result.best_ema is not None:
        module, step = result.best_ema, result.best["step"]
        final = _finite(next(r for r in reversed(result.history) if r["step"] == step))
    head_path = run_dir / "head.safetensors"
    if acc.is_main_process:
        metadata = {"evs": list(options.evs), "training_command": command, "steps": result.step,
                    "selected_step": step, "duration_s": round(result.elapsed_s, 3), "final_val": final,
                    "options": options.to_dict()}
        save_head(module.to("cpu"), head_path, extra_metadata=metadata)
        io.write_json(run_dir / "val_curve.json", [_finite(r) for r in result.history], overwrite=True)
    return HeadTrainResult(run_dir, head_path, result.step, result.elapsed_s, result.stopped_by, final, build_s,
                           step)


def _build_caches(options: HeadTrainOptions, run_dir: Path, codec, overwrite: bool, progress: bool):
    root = Path(options.cache) if options.cache else run_dir / "cache"
    caches, build_s = {}, {}
    jobs = [("train", options.data, options.samples, options.needs_hdr)]
    if options.val is not None and options.val_samples > 0:
        jobs.append(("val", options.val, options.val_samples, True))
    for name, folder, n, keep_hdr in jobs:
        start = time.monotonic()
        # validation scenes keep their own colours: augmentation is for what the head learns from
        sampling = options.sampling if name == "train" else replace(options.sampling, white_balance_stops=0.0)
        caches[name] = data.build_latent_cache(folder, codec, options.evs, n, root / name, options.seed,
                                               sampling, keep_hdr=keep_hdr, rebuild=overwrite,
                                               progress=progress)
        build_s[name] = round(time.monotonic() - start, 3)
    return caches, build_s


def _open_caches(options: HeadTrainOptions, run_dir: Path) -> dict:
    root = Path(options.cache) if options.cache else run_dir / "cache"
    caches = {"train": data.open_latent_cache(root / "train")}
    if options.val is not None and options.val_samples > 0:
        caches["val"] = data.open_latent_cache(root / "val")
    return caches


def _finite(record):
    """JSON-safe copy: non-finite floats (an infinite PSNR of identical images) become None."""
    if isinstance(record, dict):
        return {k: _finite(v) for k, v in record.items()}
    if isinstance(record, list):
        return [_finite(v) for v in record]
    return None if isinstance(record, float) and not math.isfinite(record) else record
