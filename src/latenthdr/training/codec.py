"""Training the embedded codec (models/tinycodec.py) on display-encoded bracket frames, with validation.

Stages of :func:`train_codec`: prepare RUN_DIR -> load the training panoramas into memory -> a pool of sample
specs (``data.draw_specs``: perspective crops and whole panoramas, random yaw, flips, random EV-0 anchoring)
-> codec from a preset, its linear patch paths fitted as the PCA of ``pca_batches`` batches of training frames
(``TinyAutoencoder.init_linear_paths``) -> ``loop.train`` with :class:`CodecStep` and :class:`CodecValidator` -> latent
statistics measured on training frames -> RUN_DIR/codec.safetensors (EMA, float32) and codec-f16.safetensors
(float16, validated again) and val_curve.json.

Frames: each step draws ``batch_size`` specs of one shape (step-indexed, so a resumed run draws the same
batches), renders their anchored HDR (``data.render_sample``, memoised in memory), makes the whole bracket
(``data.sample_bracket``: METHOD.md frames, gamma 2.2, 8 bits) and keeps ``evs_per_sample`` EVs per spec,
drawn among its *informative* frames: fewer than ``TRIVIAL_LIMIT`` of the pixels fully clipped or black
(such frames are trivial for any decoder that saturates; they are used only when a spec has no other).

Loss, per frame y_e (display) and its reconstruction y_hat:
  L = mean |y_hat - y_e|                                                  (display L1)
    + l2_loss * mean (y_hat - y_e)^2                                       (display L2, PSNR's own measure)
    + pu21_loss * mean |V(y_hat) - V(y_e)| / 256                           (perceptual HDR L1)
    + latent_penalty * mean(z_raw^2)                                       (keeps the latent scale bounded)
    + edge_loss * mean |d(y_hat) - d(y_e)| over 8-px block boundaries     (see :func:`block_edge_l1`)
with V(y) = PU21(decode_gamma2.2(y) / 2^e * NITS_AT_CLIP) (METHOD.md "Metrics"): each frame is linearised
and brought back to scene radiance (1.0 = the EV-0 clip level) before PU21 encoding, so an error counts as
much as it would be visible in the merged HDR at that luminance. The EV-0 clip level is placed at
NITS_AT_CLIP = 100 cd/m2 (a typical SDR white; the scale used by the head's pixel loss), so the -7 EV frame's
highlights sit at up to 12800 cd/m2 (PU21 clamps at 10000) and the +5 EV frame's shadows near 0.005 cd/m2.

Decoder fine-tuning (``init`` + ``train_encoder=False``): start from a trained codec file and train only its
decoder. The encoder and the latent statistics stay exactly as they were, so the latent space, and every head
and prior trained in it, stay valid; the weights keep the init's name. ``latent_noise`` (in units of each
channel's latent std) is added to the latent before decoding during training, so the decoder also learns to
turn latents a little off the encoder's manifold (a prior's samples, a head's predictions) into clean images.
``edge_loss`` weighs the error of the step across each latent cell's border (the pixel pairs that two
different latent pixels decode): the linear 8x8 patch path puts every latent error there as a block edge, and
a prior's samples have enough of them to make the decoded frames blocky (docs/t2h.md). The validation reports
``block_edge_excess``: the mean step across cell borders of the decoded frames minus that of the true frames,
in 8-bit levels (0: the decoder adds no block edges).
"""

from __future__ import annotations

import json
import math
import shlex
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from latenthdr import distributed
from latenthdr.errors import InputError
from latenthdr.models.tinycodec import DOWNSCALE
from latenthdr.training import data, loop, rundir

RUN_OUTPUTS = ("config.json", "log.jsonl", "checkpoints", "codec.safetensors", "codec-f16.safetensors",
               "val_curve.json")
NITS_AT_CLIP = 100.0  # cd/m2 given to the EV-0 clip level (1.0) before PU21 encoding
TRIVIAL_LIMIT = 0.99  # a frame with at least this fraction of fully clipped or black pixels is trivial
RESUMABLE_CHANGES = ("minutes", "val_every", "checkpoint_every")  # change no weight
TRAIN_SAMPLING = data.SamplingConfig(crop_size=128, fov_range_deg=(30.0, 60.0))  # ~native panorama pixel size
VAL_SAMPLING = data.SamplingConfig(crop_size=256, pano_fraction=0.0, fov_range_deg=(60.0, 100.0))
VAL_SEED = 20240601  # fixed: the val crops do not depend on the training seed
PCA_STREAM = 1_000_003  # frames() stream of the PCA batches, apart from the training batches' streams


@dataclass(frozen=True)
class CodecTrainOptions:
    """Everything a codec training run depends on (saved as RUN_DIR/config.json).

    data/val: folders of HDR panoramas (val may be None). preset/latent_channels/name: the architecture
    (tinycodec.CODEC_PRESETS; the overrides replace the preset's). evs: the ladder frames are drawn from.
    samples: size of the spec pool. evs_per_sample: frames kept per spec. batch_size: specs per step.
    val_crops: fixed 256x256 val crops (all EVs of each). init / train_encoder / latent_noise: start from a
    trained codec file (its architecture), e.g. for decoder fine-tuning (module docstring); a frozen encoder
    keeps the init's name, a trained one changes the latent space and so needs a new ``name``. bf16: run the
    network under bfloat16 autocast (weights, optimizer and losses stay float32; about 2x faster on CPUs with
    AVX512-BF16, measured in docs/codec.md). Other fields: see the module docstring and LoopConfig.
    """

    data: str
    val: str | None = None
    preset: str = "tiny"
    latent_channels: int | None = None
    name: str | None = None
    evs: tuple[float, ...] = tuple(float(e) for e in range(-7, 6))
    samples: int = 4000
    sampling: data.SamplingConfig = field(default_factory=lambda: TRAIN_SAMPLING)
    evs_per_sample: int = 2
    batch_size: int = 8
    lr: float = 2e-3
    steps: int | None = 3000
    minutes: float | None = None
    warmup_steps: int = 100
    weight_decay: float = 0.0
    grad_clip_norm: float = 1.0
    ema_half_life_steps: float = 200.0
    pu21_loss: float = 1.0
    l2_loss: float = 0.0
    latent_penalty: float = 1e-4
    init: str | None = None
    train_encoder: bool = True
    latent_noise: float = 0.0
    edge_loss: float = 0.0
    bf16: bool = True
    pca_batches: int = 24
    val_crops: int = 10
    val_every: int = 250
    checkpoint_every: int = 250
    seed: int = 0

    def __post_init__(self):
        from latenthdr import exposure

        object.__setattr__(self, "evs", exposure.parse_ev_ladder(self.evs, "evs"))
        loop.check_positive_ints(self, ("samples", "evs_per_sample", "batch_size", "val_every", "checkpoint_every",
                                        "pca_batches"))
        if self.evs_per_sample > len(self.evs):
            raise InputError("evs_per_sample", f"got {self.evs_per_sample}; accepted: at most {len(self.evs)}")
        for name in ("pu21_loss", "l2_loss", "latent_penalty", "latent_noise", "edge_loss"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise InputError(name, f"got {getattr(self, name)!r}; accepted: a weight >= 0")
        if not self.train_encoder and self.init is None:
            raise InputError("train_encoder", "a frozen encoder needs init: the trained codec to fine-tune")
        if self.init is not None and self.latent_channels is not None:
            raise InputError("init", "the architecture comes from the init codec; drop latent_channels")
        if self.init is not None and not self.train_encoder and self.name is not None:
            raise InputError("name", "a decoder fine-tune keeps the init's latent space and so its name; drop name")
        config = self.codec_config()  # validates preset / overrides / the init file
        if self.init is not None and self.train_encoder:
            from latenthdr.models.tinycodec import read_codec_config

            if self.name is None or self.name == read_codec_config(self.init).name:
                raise InputError("name", f"training the encoder of {self.init} changes its latent space "
                                         f"({config.space!r}): give the result a new name")

    def codec_config(self):
        from latenthdr.models.tinycodec import TinyCodecConfig, read_codec_config

        if self.init is not None:
            config = read_codec_config(self.init)
            return TinyCodecConfig.from_dict({**config.to_dict(), "name": self.name or config.name})
        overrides = {k: v for k, v in (("latent_channels", self.latent_channels), ("name", self.name)) if v is not None}
        return TinyCodecConfig.from_preset(self.preset, **overrides)

    def loop_config(self) -> loop.LoopConfig:
        return loop.loop_config_of(self)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))


def load_panoramas(folder: str | Path, argument: str = "data") -> dict[str, torch.Tensor]:
    """Every HDR panorama of ``folder`` in memory: name -> [3, H, W] float32 linear."""
    from latenthdr import io

    return {p.name: data._load_panorama(p) for p in data.list_hdr_files(folder, argument)}


def trivial_fraction(y: torch.Tensor) -> torch.Tensor:
    """Fraction of pixels fully clipped (every channel at the top 8-bit level) or black (every channel at 0).
    y: [..., 3, H, W] display-encoded [0, 1], 8-bit levels. Returns [...] float32."""
    from latenthdr import exposure

    clipped = (y >= exposure.CLIPPED_DISPLAY).all(dim=-3)
    black = (y <= exposure.BLACK_DISPLAY).all(dim=-3)
    return (clipped | black).float().mean(dim=(-2, -1))


class CodecStep:
    """The training step: the frames of step ``step`` -> display L1 + PU21 L1 + latent penalty."""

    def __init__(self, panoramas: dict[str, torch.Tensor], options: CodecTrainOptions):
        self.panoramas, self.options = panoramas, options
        specs = data.draw_specs(sorted(panoramas), options.samples, options.seed, options.sampling)
        shapes = sorted({(s.kind, s.height, s.width) for s in specs})
        self.groups = [[s for s in specs if (s.kind, s.height, s.width) == key] for key in shapes]
        self.evs = torch.tensor(options.evs, dtype=torch.float32)
        self._hdr: dict[int, torch.Tensor] = {}  # spec index -> anchored linear HDR, memoised

    def hdr(self, spec: data.SampleSpec) -> torch.Tensor:
        if spec.index not in self._hdr:
            self._hdr[spec.index] = data.render_sample(self.panoramas[spec.source], spec)[0]
        return self._hdr[spec.index]

    def frames(self, step: int, stream: int = 0) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """(y [n, 3, h, w] display 8-bit levels, e [n] stops, panorama) of step ``step``; n = batch * evs_per_sample."""
        g = torch.Generator().manual_seed(loop.derive_seed(self.options.seed, step, stream))
        sizes = torch.tensor([len(group) for group in self.groups], dtype=torch.float64)
        group = self.groups[int(torch.multinomial(sizes, 1, generator=g))]
        rows = torch.randperm(len(group), generator=g)[: self.options.batch_size].tolist()
        ys, es = [], []
        for row in rows:
            y = data.sample_bracket(self.hdr(group[row]), self.options.evs)  # [K, 3, h, w]
            informative = (trivial_fraction(y) < TRIVIAL_LIMIT).double()
            weights = informative if informative.sum() >= self.options.evs_per_sample else informative + 1e-3
            pick = torch.multinomial(weights, self.options.evs_per_sample, replacement=False, generator=g)
            ys.append(y[pick])
            es.append(self.evs[pick])
        return torch.cat(ys), torch.cat(es), group[0].kind == "panorama"

    def __call__(self, model, step: int, accelerator) -> tuple[torch.Tensor, dict]:
        """This process's part of the loss of step ``step``'s frames (``loop.train``), and its scalars: the frames
        are made whole on every process (the same whatever their number); each computes its share of them. The
        latent noise is drawn per process (its stream): the one thing that changes with the process count."""
        y, e, panorama = self.frames(step)  # [n, 3, h, w], [n]: the global batch
        share = distributed.batch_share(len(y), accelerator)
        y, e = y[share.rows], e[share.rows]
        y, e = y.to(accelerator.device, memory_format=torch.channels_last), e.to(accelerator.device)
        noise = None
        if self.options.latent_noise > 0:
            g = torch.Generator().manual_seed(loop.derive_seed(self.options.seed, step, accelerator.process_index, 2))
            noise = (self.options.latent_noise, g)
        with torch.autocast(accelerator.device.type, dtype=torch.bfloat16, enabled=self.options.bf16):
            y_hat, z_raw = model(y, panorama=panorama, latent_noise=noise)
        y_hat = y_hat.float()
        loss_l1 = (y_hat - y).abs().mean()
        loss_l2 = (y_hat - y).square().mean()
        loss_pu = pu21_l1(y_hat, y, e)
        loss_z = z_raw.float().square().mean()
        loss = (loss_l1 + self.options.l2_loss * loss_l2 + self.options.pu21_loss * loss_pu
                + self.options.latent_penalty * loss_z)
        scalars = {"loss_l1": loss_l1.item(), "loss_l2": loss_l2.item(), "loss_pu21": loss_pu.item(),
                   "latent_rms": loss_z.sqrt().item()}
        if self.options.edge_loss > 0:
            loss_edge = block_edge_l1(y_hat, y)
            loss = loss + self.options.edge_loss * loss_edge
            scalars["loss_edge"] = loss_edge.item()
        return share.part(loss), scalars  # every term is a mean over frames of one size


def _border_steps(y: torch.Tensor, block: int = DOWNSCALE) -> tuple[torch.Tensor, torch.Tensor]:
    """Steps across latent-cell borders: columns (x = k*block - 1 -> k*block) and rows, of [n, 3, H, W]."""
    cols = y[..., block::block] - y[..., block - 1:-1:block]
    rows = y[..., block::block, :] - y[..., block - 1:-1:block, :]
    return cols, rows


def block_edge_l1(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """mean |d(y_hat) - d(y)| over the pixel steps across latent-cell borders (both axes), display units."""
    (c_hat, r_hat), (c, r) = _border_steps(y_hat), _border_steps(y)
    return 0.5 * ((c_hat - c).abs().mean() + (r_hat - r).abs().mean())


def block_edge_excess(y_hat: torch.Tensor, y: torch.Tensor) -> float:
    """Mean |step| across latent-cell borders (both axes) of y_hat minus that of y, in 8-bit levels."""
    def mean_step(x):
        cols, rows = _border_steps(x.double())
        return 0.5 * (cols.abs().mean() + rows.abs().mean()).item()
    return 255.0 * (mean_step(y_hat) - mean_step(y))


def pu21_l1(y_hat: torch.Tensor, y: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """mean |V(y_hat) - V(y)| / 256 (module docstring). y_hat, y: [n, 3, H, W] display (y_hat clamped to [0, 1]
    here); e: [n] stops. Computed in float64 (metrics.pu21_encode), returned float32."""
    from latenthdr import metrics, response

    gain = torch.exp2(-e.double())[:, None, None, None] * NITS_AT_CLIP  # cd/m2 per linear unit of the frame
    V_hat = metrics.pu21_encode(response.decode(y_hat.double().clamp(0.0, 1.0), data.CURVE) * gain)
    V = metrics.pu21_encode(response.decode(y.double(), data.CURVE) * gain)
    return ((V_hat - V).abs().mean() / metrics.PU21_PEAK).float()


class CodecValidator:
    """PSNR of encode -> decode (clamped to [0, 1]) on fixed 256x256 val crops, every EV of the ladder.

    Per frame PSNR = 10 log10(1 / MSE) on display values (capped at PSNR_CAP for identical frames). Reports the
    mean over all frames, the mean over informative frames (< TRIVIAL_LIMIT clipped/black pixels), and both per
    EV with the count of informative frames."""

    PSNR_CAP = 100.0

    def __init__(self, panoramas: dict[str, torch.Tensor], evs, n_crops: int, batch: int = 13):
        specs = data.draw_specs(sorted(panoramas), n_crops, VAL_SEED, VAL_SAMPLING)
        self.evs, self.batch = tuple(evs), batch
        self.frames = torch.stack([data.sample_bracket(data.render_sample(panoramas[s.source], s)[0], self.evs)
                                   for s in specs])  # [N, K, 3, 256, 256] display, 8-bit levels
        self.informative = trivial_fraction(self.frames) < TRIVIAL_LIMIT  # [N, K]

    @torch.inference_mode()
    def measure(self, module) -> tuple[torch.Tensor, float]:
        """Every val frame through ``module`` (a TinyAutoencoder, any device): its [N, K] float64 PSNR (dB), and
        :func:`block_edge_excess` over all frames (8-bit levels)."""
        module.eval()
        device = next(module.parameters()).device
        y = self.frames.flatten(0, 1)
        mse, edges = [], []
        for part in y.split(self.batch):
            y_hat = module(part.to(device))[0].clamp(0, 1).cpu().double()
            mse.append(F.mse_loss(y_hat, part.double(), reduction="none").mean(dim=(1, 2, 3)))
            edges.append(block_edge_excess(y_hat, part) * len(part))  # parts are frames of one size
        mse = torch.cat(mse).clamp_min(10 ** (-self.PSNR_CAP / 10))
        return (10 * torch.log10(1.0 / mse)).view(self.informative.shape), sum(edges) / len(y)

    def __call__(self, step: int, module, final: bool) -> dict:
        (p, edge_excess), inf = self.measure(module), self.informative
        per_ev, per_ev_inf, counts = {}, {}, {}
        for k, e in enumerate(self.evs):
            per_ev[f"{e:g}"] = p[:, k].mean().item()
            per_ev_inf[f"{e:g}"] = p[inf[:, k], k].mean().item() if inf[:, k].any() else None
            counts[f"{e:g}"] = int(inf[:, k].sum())
        return {"psnr": p.mean().item(), "psnr_informative": p[inf].mean().item(), "psnr_per_ev": per_ev,
                "psnr_informative_per_ev": per_ev_inf, "informative_frames_per_ev": counts,
                "block_edge_excess": edge_excess}


@torch.inference_mode()
def calibrate_latents(module, step_fn: CodecStep, n_steps: int = 16) -> None:
    """Set ``module.latent_mean``/``latent_std`` [C] to the per-channel statistics of raw latents over the
    frames of the first ``n_steps`` training batches (informative frames, as trained)."""
    module.eval()
    device = next(module.parameters()).device
    zs = [module.encoder(step_fn.frames(s)[0].to(device)).transpose(0, 1).flatten(1).double().cpu()
          for s in range(n_steps)]  # each [C, n h w]
    z = torch.cat(zs, dim=1)
    module.latent_mean.copy_(z.mean(dim=1).float())
    module.latent_std.copy_(z.std(dim=1).clamp_min(1e-6).float())


@dataclass
class CodecTrainResult:
    """Summary of a run: paths, steps, wall time (s, cumulative over resumes), why it stopped, and the final
    validation of the float32 and float16 weights."""

    run_dir: Path
    codec_path: Path
    codec_f16_path: Path
    steps: int
    duration_s: float
    stopped_by: str
    final_val: dict
    final_val_f16: dict


def train_codec(options: CodecTrainOptions, run_dir: str | Path, *, resume: bool = False, overwrite: bool = False,
                progress: bool = False, command: str | None = None, accelerator=None) -> CodecTrainResult:
    """Train the embedded codec end to end; see the module docstring for the stages. resume: continue
    RUN_DIR's run (same options except RESUMABLE_CHANGES); overwrite: replace RUN_DIR's outputs."""
    from latenthdr import io
    from latenthdr.models import tinycodec

    run_dir = Path(run_dir)
    acc = accelerator or loop.make_accelerator()
    distributed.check_batch_split(options.batch_size, acc)
    if acc.is_main_process:
        rundir.prepare_run_dir(run_dir, options, resume, overwrite, RUN_OUTPUTS, RESUMABLE_CHANGES)
    acc.wait_for_everyone()
    command = command or shlex.join(sys.argv)
    codec_config = options.codec_config()
    if acc.is_main_process:
        io.write_json(run_dir / "config.json", {"options": options.to_dict(), "loop": asdict(options.loop_config()),
                                                "codec": codec_config.to_dict(), "command": command,
                                                "processes": acc.num_processes}, overwrite=True)
    step_fn = CodecStep(load_panoramas(options.data, "data"), options)
    validator = None if options.val is None or options.val_crops < 1 else CodecValidator(
        load_panoramas(options.val, "val"), options.evs, options.val_crops)
    loop.set_seed(options.seed)  # the initial weights depend on the seed only
    if options.init is not None:
        model = tinycodec.load_model(options.init).train()
    else:
        model = tinycodec.TinyAutoencoder(codec_config)
        model.init_linear_paths([step_fn.frames(s, PCA_STREAM)[0] for s in range(options.pca_batches)])
    model.encoder.requires_grad_(options.train_encoder)
    model = model.to(memory_format=torch.channels_last)  # faster CPU convs
    result = loop.train(model, step_fn, options.loop_config(), run_dir,
                        validate=validator, resume=resume, progress=progress, accelerator=acc)
    ema = result.ema.to("cpu")
    if options.train_encoder:  # a frozen encoder keeps its latent space, statistics included
        calibrate_latents(ema, step_fn)
    final = _finite(result.history[-1]) if result.history else {}
    paths = (run_dir / "codec.safetensors", run_dir / "codec-f16.safetensors")
    final_f16 = {}
    if acc.is_main_process:
        metadata = {"evs": list(options.evs), "training_command": command, "steps": result.step,
                    "duration_s": round(result.elapsed_s, 3), "final_val": final, "options": options.to_dict()}
        tinycodec.save_codec(ema, paths[0], extra_metadata=metadata)
        tinycodec.save_codec(ema, paths[1], dtype=torch.float16, extra_metadata=metadata)
        if validator is not None:
            final_f16 = _finite(validator(result.step, tinycodec.load_model(paths[1]), True))
        io.write_json(run_dir / "val_curve.json", [_finite(r) for r in result.history] + [{"f16": final_f16}],
                      overwrite=True)
    return CodecTrainResult(run_dir, paths[0], paths[1], result.step, result.elapsed_s, result.stopped_by, final,
                            final_f16)


def _finite(record):
    """JSON-safe copy: non-finite floats become None."""
    if isinstance(record, dict):
        return {k: _finite(v) for k, v in record.items()}
    if isinstance(record, list):
        return [_finite(v) for v in record]
    return None if isinstance(record, float) and not math.isfinite(record) else record
