"""Training the embedded prior (``models/prior.py``) on cached latents of captioned HDR panoramas and skies.

Stages of :func:`train_prior`: prepare RUN_DIR -> load the codec -> render the procedural skies once
(``skies.py``, Radiance files with their captions in ``CACHE/skies-hdr``) -> latent caches of the panoramas
and of the skies (``data.build_latent_cache``: random yaw, flips, perspective crops, randomised EV-0
anchoring, every ladder frame encoded once) -> text embeddings of every caption, once -> ``loop.train`` with
:class:`PriorStep` and :class:`PriorValidator` -> RUN_DIR/prior.safetensors (EMA, float32) and
prior-f16.safetensors (float16, the file to ship).

Objective (``models/prior.py``): v-prediction MSE of the DDPM, per latent element, timesteps uniform. Each
sample of a batch: the EV-0 scene latent z0 with probability ``ev0_fraction`` (the normal mode), else the latent
of a uniformly drawn ladder frame with its EV (the multi-pass baseline's mode); one of its captions, uniformly,
replaced by the null embedding with probability ``text_dropout`` (classifier-free guidance); panoramas are
also rolled by a random number of latent columns (the codec and the prior are roll-equivariant, so this is a
free yaw augmentation). Everything random is drawn from generators seeded by (seed, step), so a resumed run
repeats an uninterrupted one.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from latenthdr import distributed
from latenthdr.errors import InputError
from latenthdr.exposure import DEFAULT_LADDER, parse_ev_ladder
from latenthdr.training import data, loop, rundir

RUN_OUTPUTS = ("config.json", "log.jsonl", "checkpoints", "prior.safetensors", "prior-f16.safetensors",
               "val_curve.json")
RESUMABLE_CHANGES = ("minutes", "val_every", "checkpoint_every")
PRIOR_SAMPLING = data.SamplingConfig(crop_size=256, pano_width=512, pano_height=256, pano_fraction=0.5)
VAL_TIMESTEPS = (50, 250, 500, 750, 950)
SKY_FILE = "sky-{:05d}.hdr"
SKIES_JSON = "skies.json"


@dataclass(frozen=True)
class PriorTrainOptions:
    """Everything a prior training run depends on (saved as RUN_DIR/config.json).

    data: folder of HDR panoramas; captions: a captions JSON (None: the packaged ``latenthdr/data/captions.json``);
    skies: procedural skies rendered and added (0: none; needs Mitsuba); sky_width: their panorama width (px).
    codec: a ``registry.load_codec_for`` spec. evs: the ladder the EV conditioning learns. samples: panorama
    samples cached. sampling: crop and panorama sizes (px). batch_size: samples per step. steps/minutes: limits.
    ev0_fraction: probability of an EV-0 target. text_dropout: probability of the null prompt. val_samples:
    fixed samples of the validation loss. cache: cache folder (default RUN_DIR/cache).
    """

    data: str
    captions: str | None = None
    skies: int = 0
    sky_width: int = 1024
    codec: str = "embedded"
    evs: tuple[float, ...] = DEFAULT_LADDER
    preset: str = "small"
    samples: int = 336
    sampling: data.SamplingConfig = field(default_factory=lambda: PRIOR_SAMPLING)
    batch_size: int = 8
    lr: float = 5e-4
    steps: int | None = 4000
    minutes: float | None = None
    warmup_steps: int = 100
    weight_decay: float = 0.01
    grad_clip_norm: float = 1.0
    ema_half_life_steps: float = 200.0
    ev0_fraction: float = 0.6
    text_dropout: float = 0.1
    val_every: int = 250
    val_samples: int = 16
    checkpoint_every: int = 250
    seed: int = 0
    cache: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "evs", parse_ev_ladder(self.evs, "evs"))
        loop.check_positive_ints(self, ("samples", "batch_size", "val_every", "val_samples", "checkpoint_every"))
        for name in ("skies", "seed", "warmup_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InputError(name, f"got {value!r}; accepted: an integer >= 0")
        if self.sky_width < 16 or self.sky_width % 2:
            raise InputError("sky_width", f"got {self.sky_width!r}; accepted: an even number of pixels >= 16")
        for name in ("ev0_fraction", "text_dropout"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InputError(name, f"got {getattr(self, name)!r}; accepted: a probability in [0, 1]")
        if 0.0 not in self.evs:
            raise InputError("evs", f"got {self.evs}; accepted: a ladder that contains EV 0 (the normal mode)")

    def loop_config(self) -> loop.LoopConfig:
        return loop.loop_config_of(self)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PriorTrainResult:
    """Summary of a run: paths, steps, wall time (s, cumulative over resumes), why it stopped, the last
    validation record, and cache build times (s)."""

    run_dir: Path
    prior_path: Path
    prior_f16_path: Path
    steps: int
    duration_s: float
    stopped_by: str
    final_val: dict
    cache_build_s: dict


# ----------------------------------------------------------------------------------------- captions
def read_captions(path: str | Path | None = None) -> dict[str, list[str]]:
    """Captions by file name from a JSON file ({"captions": {NAME: [str, ...]}} or {NAME: [...]}); None: the
    packaged captions of the training panoramas."""
    if path is None:
        path = Path(__file__).resolve().parent.parent / "data" / "captions.json"
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise InputError("captions", f"{path}: cannot read a captions JSON ({error})") from None
    table = raw.get("captions", raw) if isinstance(raw, dict) else None
    ok = isinstance(table, dict) and all(isinstance(v, list) and v and all(isinstance(c, str) and c.strip()
                                                                              for c in v) for v in table.values())
    if not ok:
        raise InputError("captions", f"{path}: accepted: {{\"captions\": {{FILE_NAME: [caption, ...]}}}} with "
                                     "non-empty caption lists")
    return {str(k): [" ".join(c.split()) for c in v] for k, v in table.items()}


def check_captions(captions: dict[str, list[str]], files: list[Path]) -> None:
    """InputError unless every HDR file has captions (by file name or by stem)."""
    missing = [p.name for p in files if p.name not in captions and p.stem not in captions]
    if missing:
        raise InputError("captions", f"no captions for {', '.join(missing[:5])}"
                                     f"{' ...' if len(missing) > 5 else ''}; add them to the captions file")


def _captions_of(captions: dict[str, list[str]], source: str) -> list[str]:
    return captions.get(source) or captions[Path(source).stem]


# ------------------------------------------------------------------------------------------- skies
def render_sky_folder(folder: Path, n: int, seed: int, width: int) -> dict[str, list[str]]:
    """Render ``n`` procedural skies (``skies.draw_sky_params``) as Radiance files in ``folder`` once; files
    already there with the same parameters are kept (their bytes tie the latent cache to them). Returns
    their captions by file name; ``skies.json`` records parameters and captions."""
    from latenthdr import io, skies

    folder.mkdir(parents=True, exist_ok=True)
    params = skies.draw_sky_params(n, seed)
    record_path = folder / SKIES_JSON
    old = json.loads(record_path.read_text()) if record_path.is_file() else {}
    if old.get("width") != width:
        old = {}
    entries = {}
    for i, p in enumerate(params):
        name = SKY_FILE.format(i)
        if not ((folder / name).is_file() and old.get("skies", {}).get(name, {}).get("params") == p.to_dict()):
            H = skies.render_sky(p, width // 2, width)
            io.write_hdr(folder / name, io.to_numpy(H), overwrite=True)
        entries[name] = {"params": p.to_dict(), "captions": skies.sky_captions(p)}
    for stale in set(p.name for p in folder.glob("sky-*.hdr")) - set(entries):
        (folder / stale).unlink()
    io.write_json(record_path, {"width": width, "seed": seed, "skies": entries}, overwrite=True)
    return {name: e["captions"] for name, e in entries.items()}


# -------------------------------------------------------------------------------------------- data
class PriorData:
    """The latent caches as one pool: ``cache`` (a ``data.LatentCache`` whose groups are every cache's groups,
    for ``data.draw_batch``), per-group caption ids per row, and ``text`` [n_captions, 384] embeddings."""

    def __init__(self, caches: list[tuple[data.LatentCache, dict[str, list[str]]]], text_encoder):
        groups, self.caption_ids, texts = [], {}, {}
        for cache, captions in caches:
            specs = cache.specs
            for group in cache.groups:
                rows = []
                for index in group.index.tolist():
                    rows.append([texts.setdefault(c, len(texts)) for c in _captions_of(captions, specs[index].source)])
                self.caption_ids[id(group)] = rows
                groups.append(group)
        self.captions = list(texts)
        self.text = text_encoder.encode(self.captions).float() if self.captions else torch.zeros(0, 384)
        self.cache = data.LatentCache(Path("."), {"identity": {"evs": list(caches[0][0].evs)}}, groups)
        self.evs = torch.tensor(caches[0][0].evs, dtype=torch.float32)

    def fixed_samples(self, n: int) -> list[tuple[data.LatentGroup, int]]:
        """The first ``n`` (group, row) pairs, round-robin over groups: a fixed validation set."""
        out, row = [], 0
        while len(out) < n and any(row < len(g) for g in self.cache.groups):
            out += [(g, row) for g in self.cache.groups if row < len(g)]
            row += 1
        return out[:n]


class PriorStep:
    """The training step: batch of step ``step`` -> v-prediction MSE (module docstring)."""

    def __init__(self, pool: PriorData, config, batch_size: int, seed: int, ev0_fraction: float,
                 text_dropout: float):
        from latenthdr.models.prior import training_scheduler

        self.pool, self.batch_size, self.seed = pool, batch_size, seed
        self.ev0_fraction, self.text_dropout = ev0_fraction, text_dropout
        self.ddpm = training_scheduler(config)
        self.prediction_type, self.T = config.prediction_type, config.num_train_timesteps

    def __call__(self, model, step: int, accelerator) -> tuple[torch.Tensor, dict]:
        """This process's part of the loss of step ``step``'s batch (``loop.train``), and its scalars: the batch and
        every random draw are made whole on every process (the same whatever their number); each process runs
        the network on its share of the rows."""
        group, rows = data.draw_batch(self.pool.cache, self.batch_size, self.seed, step)  # the global batch
        g = torch.Generator().manual_seed(loop.derive_seed(self.seed, step, 0, 1))
        b, evs = len(rows), self.pool.evs
        ev0 = torch.rand(b, generator=g) < self.ev0_fraction
        k = torch.randint(0, len(evs), (b,), generator=g)
        x0 = torch.where(ev0[:, None, None, None], group.z0[rows].float(), group.z[rows, k].float())  # [b, C, h, w]
        ev = torch.where(ev0, torch.zeros(b), evs[k])
        sets = [self.pool.caption_ids[id(group)][r] for r in rows.tolist()]
        pick = torch.randint(0, 2**30, (b,), generator=g).tolist()
        text = self.pool.text[[s[p % len(s)] for s, p in zip(sets, pick)]]  # [b, 384]
        drop = torch.rand(b, generator=g) < self.text_dropout
        if group.panorama:
            x0 = x0.roll(int(torch.randint(0, x0.shape[-1], (1,), generator=g)), dims=-1)
        t = torch.randint(0, self.T, (b,), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        target = self.ddpm.get_velocity(x0, noise, t) if self.prediction_type == "v_prediction" else noise
        x_t = self.ddpm.add_noise(x0, noise, t)
        share = distributed.batch_share(b, accelerator)
        mine, device = share.rows, accelerator.device
        null = accelerator.unwrap_model(model).uncond(len(x_t[mine])).to(device)
        text = torch.where(drop[mine, None].to(device), null, text[mine].to(device))
        out = model(x_t[mine].to(device), t[mine].to(device), text, ev[mine].to(device), panorama=group.panorama)
        loss = (out.float() - target[mine].to(device)).square().mean()
        return share.part(loss), {"loss_diffusion": loss.item(), "ev0_share": ev0.float().mean().item()}


class PriorValidator:
    """Fixed-noise diffusion loss (EMA weights) on fixed samples at timesteps :data:`VAL_TIMESTEPS`, with each
    sample's first caption and with the null prompt: ``val_loss``, ``val_loss_uncond`` and ``text_gain`` (their
    difference; > 0 means the text helps). The samples come from the training pool: a measure of fit and of
    conditioning, not of generalisation (captioned held-out panoramas are too few)."""

    def __init__(self, pool: PriorData, config, n_samples: int, seed: int):
        from latenthdr.models.prior import training_scheduler

        self.pool, self.samples, self.seed = pool, pool.fixed_samples(n_samples), seed
        self.ddpm, self.config = training_scheduler(config), config

    @torch.inference_mode()
    def __call__(self, step: int, module, final: bool) -> dict:
        module.eval()
        device = next(module.parameters()).device
        totals = {"cond": 0.0, "uncond": 0.0}
        for i, (group, row) in enumerate(self.samples):
            x0 = group.z0[row][None].float()  # [1, C, h, w]
            g = torch.Generator().manual_seed(loop.derive_seed(self.seed, i, 7))
            noise = torch.randn((len(VAL_TIMESTEPS), *x0.shape[1:]), generator=g)
            t = torch.tensor(VAL_TIMESTEPS)
            x0 = x0.expand(len(t), -1, -1, -1)
            target = self.ddpm.get_velocity(x0, noise, t) if self.config.prediction_type == "v_prediction" else noise
            x_t = self.ddpm.add_noise(x0, noise, t).to(device)
            text = self.pool.text[self.pool.caption_ids[id(group)][row][0]][None].expand(len(t), -1).to(device)
            for key, cond in (("cond", text), ("uncond", module.uncond(len(t)))):
                out = module(x_t, t.to(device), cond, torch.zeros(len(t), device=device), panorama=group.panorama)
                totals[key] += (out.float().cpu() - target).square().mean().item()
        n = max(len(self.samples), 1)
        cond, uncond = totals["cond"] / n, totals["uncond"] / n
        return {"val_loss": cond, "val_loss_uncond": uncond, "text_gain": uncond - cond}


# ------------------------------------------------------------------------------------------ the job
def train_prior(options: PriorTrainOptions, run_dir: str | Path, *, codec=None, text_encoder=None,
                resume: bool = False, overwrite: bool = False, progress: bool = False, command: str | None = None,
                accelerator=None) -> PriorTrainResult:
    """Train the embedded prior end to end (module docstring). codec / text_encoder: already loaded objects
    (tests), else ``registry.load_codec_for(options.codec)`` and the packaged MiniLM."""
    from latenthdr import io
    from latenthdr.models import registry
    from latenthdr.models.prior import PriorConfig, PriorUNet, save_prior

    run_dir = Path(run_dir)
    acc = accelerator or loop.make_accelerator()
    distributed.check_batch_split(options.batch_size, acc)
    if acc.is_main_process:
        rundir.prepare_run_dir(run_dir, options, resume, overwrite, RUN_OUTPUTS, RESUMABLE_CHANGES)
    acc.wait_for_everyone()
    codec = codec or registry.load_codec_for(options.codec, device=acc.device)
    if text_encoder is None:
        from latenthdr.models.text import load_text_encoder

        text_encoder = load_text_encoder()
    command = command or shlex.join(sys.argv)
    config = PriorConfig.from_preset(options.preset, codec.latent_channels, codec.space,
                                     ev_min=min(options.evs), ev_max=max(options.evs))
    if acc.is_main_process:
        io.write_json(run_dir / "config.json", {"options": options.to_dict(), "loop": asdict(options.loop_config()),
                                                "prior": config.to_dict(), "codec_space": codec.space,
                                                "command": command, "processes": acc.num_processes}, overwrite=True)
        caches, build_s = _build_caches(options, run_dir, codec, overwrite, progress)
    acc.wait_for_everyone()
    if not acc.is_main_process:
        caches, build_s = _build_caches(options, run_dir, codec, False, False)[0], {}  # opens the main's caches
    pool = PriorData(caches, text_encoder)
    step_fn = PriorStep(pool, config, options.batch_size, options.seed, options.ev0_fraction, options.text_dropout)
    validator = PriorValidator(pool, config, options.val_samples, options.seed)
    loop.set_seed(options.seed)
    result = loop.train(PriorUNet(config), step_fn, options.loop_config(), run_dir, validate=validator,
                        resume=resume, progress=progress, accelerator=acc)
    final = result.history[-1] if result.history else {}
    paths = (run_dir / "prior.safetensors", run_dir / "prior-f16.safetensors")
    if acc.is_main_process:
        metadata = {"training_command": command, "steps": result.step, "duration_s": round(result.elapsed_s, 3),
                    "final_val": final, "options": options.to_dict(), "captions": len(pool.captions)}
        ema = result.ema.to("cpu")
        save_prior(ema, paths[0], extra_metadata=metadata)
        save_prior(ema, paths[1], dtype=torch.float16, extra_metadata=metadata)
        io.write_json(run_dir / "val_curve.json", result.history, overwrite=True)
    return PriorTrainResult(run_dir, paths[0], paths[1], result.step, result.elapsed_s, result.stopped_by, final,
                            build_s)


def _build_caches(options: PriorTrainOptions, run_dir: Path, codec, overwrite: bool, progress: bool):
    """[(cache, captions by file name)] for the panoramas and (when ``skies`` > 0) the skies; build seconds."""
    root = Path(options.cache) if options.cache else run_dir / "cache"
    captions = read_captions(options.captions)
    check_captions(captions, data.list_hdr_files(options.data))
    jobs = [("hdri", Path(options.data), options.samples, captions)]
    build_s = {}
    if options.skies:
        start = time.monotonic()
        sky_dir = root / "skies-hdr"
        jobs.append(("skies", sky_dir, options.skies,
                     render_sky_folder(sky_dir, options.skies, options.seed, options.sky_width)))
        build_s["skies_render"] = round(time.monotonic() - start, 3)
    out = []
    for i, (name, folder, n, table) in enumerate(jobs):
        start = time.monotonic()
        cache = data.build_latent_cache(folder, codec, options.evs, n, root / name, options.seed + i,
                                        options.sampling, rebuild=overwrite, progress=progress)
        out.append((cache, table))
        build_s[name] = round(time.monotonic() - start, 3)
    return out, build_s
