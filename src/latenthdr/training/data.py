"""HDR panorama folder -> training samples -> brackets -> a latent cache on disk (encoded once).

Stages (DESIGN.md "Training"):
1. :func:`draw_specs`: one :class:`SampleSpec` per sample, drawn from a generator seeded by (seed, sample
   index), so a sample does not depend on how many samples, batches or processes there are. Kinds:
   perspective crops (random yaw, pitch, horizontal FoV) and whole panoramas (random yaw, resized with area
   averaging in linear light); horizontal flips; white-balance jitter (per-channel gains); randomised EV-0 anchoring (METHOD.md "EV-0 anchoring": the
   clipped fraction is log-uniform, by default in [0.001, 0.1]).
2. :func:`render_sample`: the anchored linear HDR of one spec; the bracket is METHOD.md's
   (``exposure.synthesize_bracket``, gamma 2.2, 8 bits).
3. :func:`build_latent_cache`: every frame of every sample encoded once, z [K, C, h, w] plus z0 (the EV-0
   frame's latent, encoded separately when 0 is not on the ladder), float16, in safetensors shards grouped
   by (kind, size), with a manifest that ties the cache to its codec space, ladder, seed, sampling options
   and source files. Shards are written atomically as they finish, so an interrupted build resumes.
   ``keep_hdr`` also stores each sample's anchored linear HDR (float32) for merged-HDR metrics.
Sources must be 2:1 equirectangular panoramas (.hdr/.exr/.pic), as in the paper's data.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from latenthdr import io
from latenthdr.errors import InputError

CACHE_FORMAT = "latenthdr-latent-cache-v1"
MANIFEST = "manifest.json"
KINDS = ("crop", "panorama")
CURVE, BITS = "gamma2.2", 8  # METHOD.md "Bracket frame"


@dataclass(frozen=True)
class SamplingConfig:
    """How samples are drawn. Sizes in pixels (multiples of the codec's downscale); angles in degrees.

    Defaults suit a 2-core CPU: 128x128 crops, 256x128 panoramas. ``pano_fraction``: probability that a
    sample is a whole panorama. FoV is the horizontal field of view, uniform in ``fov_range_deg``; pitch is
    uniform in ``pitch_range_deg``; the EV-0 clipped fraction is log-uniform in ``clipped_fraction_range``.
    ``white_balance_stops``: standard deviation, in stops, of an independent gain per linear RGB channel
    (then normalised to keep Rec.709 luminance), as a camera's white balance or a light's colour would shift
    the scene; 0 turns it off. It acts before anchoring, so it never changes the clipped fraction.
    """

    crop_size: int = 128
    pano_width: int = 256
    pano_height: int = 128
    pano_fraction: float = 0.3
    pitch_range_deg: tuple[float, float] = (-35.0, 35.0)
    fov_range_deg: tuple[float, float] = (50.0, 110.0)
    clipped_fraction_range: tuple[float, float] = (0.001, 0.1)
    flip_probability: float = 0.5
    white_balance_stops: float = 0.0

    def __post_init__(self):
        for name in ("pitch_range_deg", "fov_range_deg", "clipped_fraction_range"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        for name in ("crop_size", "pano_width", "pano_height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 8:
                raise InputError(name, f"got {value!r}; accepted: an integer >= 8 (pixels)")
        if self.pano_width != 2 * self.pano_height:
            raise InputError("pano_size", f"got {self.pano_width}x{self.pano_height}; accepted: width = 2 x height")
        _check_range("pitch_range_deg", self.pitch_range_deg, -90.0, 90.0)
        _check_range("fov_range_deg", self.fov_range_deg, 1.0, 179.0)
        _check_range("clipped_fraction_range", self.clipped_fraction_range, 1e-6, 0.5)
        for name in ("pano_fraction", "flip_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InputError(name, f"got {getattr(self, name)}; accepted: a probability in [0, 1]")
        if not 0.0 <= self.white_balance_stops <= 2.0:
            raise InputError("white_balance_stops", f"got {self.white_balance_stops}; accepted: 0 to 2 stops")

    def check_multiple(self, multiple: int, argument: str = "sampling") -> None:
        """InputError unless every size is a multiple of ``multiple`` (the codec's downscale)."""
        sizes = (("crop_size", self.crop_size), ("pano_size", self.pano_width), ("pano_size", self.pano_height))
        for name, value in sizes:
            if value % multiple:
                raise InputError(name, f"got {value} pixels; accepted: a multiple of the codec's downscale {multiple}")


def _check_range(name: str, value: tuple[float, float], lo: float, hi: float) -> None:
    if len(value) != 2 or not all(math.isfinite(v) for v in value) or not lo <= value[0] <= value[1] <= hi:
        raise InputError(name, f"got {value}; accepted: (low, high) with {lo:g} <= low <= high <= {hi:g}")


@dataclass(frozen=True)
class SampleSpec:
    """One training sample. ``source``: file name inside the data folder. ``kind``: "crop" | "panorama".
    ``yaw_deg``: view direction (crop) or yaw roll (panorama); ``pitch_deg``/``fov_deg``: crops only (0 for
    panoramas). ``flip``: mirror left-right. ``clipped_fraction``: EV-0 anchoring. ``height``/``width``:
    output pixels."""

    index: int
    source: str
    kind: str
    yaw_deg: float
    pitch_deg: float
    fov_deg: float
    flip: bool
    clipped_fraction: float
    height: int
    width: int
    rgb_gains: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self):
        object.__setattr__(self, "rgb_gains", tuple(float(g) for g in self.rgb_gains))  # lists from JSON


def list_hdr_files(directory: str | Path, argument: str = "data") -> list[Path]:
    """HDR files (.hdr, .exr, .pic; case-insensitive) directly in ``directory``, sorted by name."""
    from latenthdr.io import HDR_EXTENSIONS

    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(argument, f"{directory}: not a directory; accepted: a folder of HDR panoramas")
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in HDR_EXTENSIONS)
    if not files:
        raise InputError(argument, f"{directory}: no HDR files; accepted: {', '.join(HDR_EXTENSIONS)}")
    return files


def draw_specs(sources: list[str], n_samples: int, seed: int, sampling: SamplingConfig) -> list[SampleSpec]:
    """``n_samples`` specs; sample i uses source i mod len(sources) and a generator seeded by (seed, i)."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 0:
        raise InputError("n_samples", f"got {n_samples!r}; accepted: an integer >= 0")
    return [_draw_spec(i, sources[i % len(sources)], np.random.default_rng([seed, i]), sampling)
            for i in range(n_samples)]


def _draw_spec(index: int, source: str, rng: np.random.Generator, s: SamplingConfig) -> SampleSpec:
    panorama = rng.random() < s.pano_fraction
    yaw = float(rng.uniform(-180.0, 180.0))
    pitch = float(rng.uniform(*s.pitch_range_deg))
    fov = float(rng.uniform(*s.fov_range_deg))
    flip = bool(rng.random() < s.flip_probability)
    lo, hi = (math.log(v) for v in s.clipped_fraction_range)
    clipped = float(math.exp(rng.uniform(lo, hi)))
    gains = white_balance_gains(rng.standard_normal(3) * s.white_balance_stops)  # drawn last: earlier draws stay
    if panorama:
        return SampleSpec(index, source, "panorama", yaw, 0.0, 0.0, flip, clipped, s.pano_height, s.pano_width,
                          gains)
    return SampleSpec(index, source, "crop", yaw, pitch, fov, flip, clipped, s.crop_size, s.crop_size, gains)


def white_balance_gains(stops: np.ndarray) -> tuple[float, float, float]:
    """Per-channel linear gains 2^stops [3], scaled so a grey of luminance 1 keeps luminance 1 (Rec.709)."""
    from latenthdr.response import REC709_LUMA

    stops = np.asarray(stops, dtype=np.float64)
    if not stops.any():
        return (1.0, 1.0, 1.0)
    gains = np.exp2(stops)
    gains /= float(np.dot(REC709_LUMA, gains))
    return tuple(float(g) for g in gains)


def render_sample(pano: torch.Tensor, spec: SampleSpec) -> tuple[torch.Tensor, float]:
    """The anchored linear HDR of one sample and its EV-0 scale.

    pano: [3, H, W] float32 linear radiance, 2:1 equirectangular. Returns (H [3, height, width] float32,
    linear, 1.0 = the EV-0 clip level with ``spec.clipped_fraction`` of pixels at or above it; scale).
    Crops are sampled bilinearly from the panorama after area-averaging it down to about the crop's angular
    pixel size, so bright small sources (the sun) are integrated, not aliased.
    """
    from latenthdr import exposure, panorama

    if spec.kind == "panorama":
        view = _area_resize(panorama.roll_yaw(pano, spec.yaw_deg), spec.height, spec.width)
    else:
        crop_deg_per_px = spec.fov_deg / spec.width  # at the image centre, the finest sampling of the view
        factor = int(crop_deg_per_px / (360.0 / pano.shape[-1]))
        source = _area_resize(pano, pano.shape[-2] // factor, pano.shape[-1] // factor) if factor >= 2 else pano
        view = panorama.equirect_to_perspective(source, spec.yaw_deg, spec.pitch_deg, spec.fov_deg,
                                                spec.height, spec.width)
    if spec.flip:
        view = view.flip(-1)
    if spec.rgb_gains != (1.0, 1.0, 1.0):
        view = view * torch.tensor(spec.rgb_gains, dtype=view.dtype)[:, None, None]
    try:
        H, scale = exposure.anchor(view.clamp_min(0.0), clipped_fraction=spec.clipped_fraction)
    except InputError:
        raise InputError("data", f"{spec.source}: sample {spec.index} ({spec.kind}) is black; "
                                 "cannot anchor its EV-0 exposure") from None
    return H.float().contiguous(), float(scale)


def _area_resize(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Area-average resize in linear light (exact box filter for integer factors): [3, H, W] -> [3, h, w]."""
    if tuple(x.shape[-2:]) == (height, width):
        return x
    return F.interpolate(x[None].double(), size=(height, width), mode="area")[0].to(x.dtype)


def sample_bracket(H: torch.Tensor, evs) -> torch.Tensor:
    """METHOD.md bracket of an anchored sample: [..., 3, h, w] linear -> [..., K, 3, h, w] 8-bit gamma 2.2."""
    from latenthdr import exposure

    return exposure.synthesize_bracket(H, evs, curve=CURVE, bits=BITS)


# ----------------------------------------------------------------------------------------- latent cache
@dataclass
class LatentGroup:
    """Samples of one (kind, height, width), in cache order.

    index: [N] int64 sample indices. z: [N, K, C, h, w] float16, normalised latents of the bracket frames
    (ladder order). z0: [N, C, h, w] float16, the EV-0 frame's latent. hdr: [N, 3, H, W] float32 anchored
    linear HDR, or None when the cache was built without ``keep_hdr``.
    """

    kind: str
    index: torch.Tensor
    z: torch.Tensor
    z0: torch.Tensor
    hdr: torch.Tensor | None

    @property
    def panorama(self) -> bool:
        return self.kind == "panorama"

    def __len__(self) -> int:
        return int(self.index.numel())


@dataclass
class LatentCache:
    """A built cache loaded in memory: ``evs`` (the ladder), ``space`` (codec latent space), ``specs``, and
    ``groups`` (one :class:`LatentGroup` per sample shape, sorted by kind then size)."""

    directory: Path
    manifest: dict
    groups: list[LatentGroup]

    @property
    def evs(self) -> tuple[float, ...]:
        return tuple(self.manifest["identity"]["evs"])

    @property
    def space(self) -> str:
        return self.manifest["identity"]["codec_space"]

    @property
    def specs(self) -> list[SampleSpec]:
        return [SampleSpec(**s) for s in self.manifest["specs"]]

    def __len__(self) -> int:
        return sum(len(g) for g in self.groups)


def scene_subset(sources: list[str], n_scenes: int, seed: int) -> list[str]:
    """The first ``n_scenes`` of ``sources`` in an order shuffled by ``seed``: nested for growing n (the
    14 scenes of n = 14 are among the 28 of n = 28), so a curve against the scene count compares like with like."""
    if isinstance(n_scenes, bool) or not isinstance(n_scenes, int) or not 1 <= n_scenes <= len(sources):
        raise InputError("scenes", f"got {n_scenes!r}; accepted: 1 to {len(sources)} (the training panoramas)")
    order = np.random.default_rng([seed, 0x5CE7E]).permutation(len(sources))
    return sorted(sorted(sources)[i] for i in order[:n_scenes])


def restrict_to_scenes(cache: LatentCache, sources: list[str]) -> LatentCache:
    """The cache with only the samples drawn from ``sources`` (file names), every view of them kept."""
    keep = {spec.index for spec in cache.specs if spec.source in set(sources)}
    groups = []
    for group in cache.groups:
        rows = torch.tensor([int(i) in keep for i in group.index], dtype=torch.bool)
        if rows.any():
            groups.append(LatentGroup(group.kind, group.index[rows], group.z[rows], group.z0[rows],
                                      None if group.hdr is None else group.hdr[rows]))
    return LatentCache(cache.directory, cache.manifest, groups)


def draw_batch(cache: LatentCache, batch_size: int, seed: int, step: int, stream: int = 0):
    """The batch of training step ``step``: (group, rows [b] int64), b = min(batch_size, group size).

    Step-indexed: a generator seeded by (seed, step, stream) picks a group with probability proportional to
    its size, then rows without replacement; ``stream`` gives an independent draw for the same step. Nothing
    carries over between steps, so a resumed run draws exactly the batches an uninterrupted one would. The
    batch is the global one: data-parallel processes all draw it and each computes its share
    (``loop.batch_share``).
    """
    from latenthdr.training.loop import derive_seed

    g = torch.Generator().manual_seed(derive_seed(seed, step, stream))
    sizes = torch.tensor([len(group) for group in cache.groups], dtype=torch.float64)
    group = cache.groups[int(torch.multinomial(sizes, 1, generator=g))]
    rows = torch.randperm(len(group), generator=g)[:batch_size]
    return group, rows


def build_latent_cache(hdr_dir: str | Path, codec, evs, n_samples: int, out_dir: str | Path, seed: int,
                       sampling: SamplingConfig = SamplingConfig(), *, keep_hdr: bool = False,
                       shard_size: int = 32, encode_batch: int = 16, rebuild: bool = False,
                       progress: bool = False) -> LatentCache:
    """Encode every sample's bracket once and store it in ``out_dir``; reuse a finished or partial cache
    built with the same arguments.

    codec: a ``LatentCodec`` (``space``, ``latent_channels``, ``downscale``, ``encode``). evs: the ladder.
    A cache whose manifest differs (codec space, ladder, seed, sampling, sample count, source files and
    their sizes and contents (sha256), or HDR kept when now asked for) is refused with InputError, or deleted and rebuilt
    with ``rebuild=True``; it is never mixed. A cache with HDR serves a request without it.
    """
    from latenthdr import exposure
    from latenthdr.models.registry import sha256_of  # content, not mtime: a re-copied dataset keeps its cache

    evs = exposure.parse_ev_ladder(evs, "evs")
    sampling.check_multiple(codec.downscale)
    files = list_hdr_files(hdr_dir)
    identity = {"format": CACHE_FORMAT, "codec_space": codec.space, "latent_channels": codec.latent_channels,
                "downscale": codec.downscale, "evs": list(evs), "curve": CURVE, "bits": BITS, "seed": int(seed),
                "n_samples": int(n_samples), "sampling": asdict(sampling), "keep_hdr": bool(keep_hdr),
                "sources": [{"name": p.name, "bytes": p.stat().st_size, "sha256": sha256_of(p)} for p in files]}
    identity = json.loads(json.dumps(identity))  # tuples -> lists, as read back from disk
    out_dir = Path(out_dir)
    manifest = _existing_manifest(out_dir, identity, rebuild)
    if manifest is None:
        specs = draw_specs([p.name for p in files], n_samples, seed, sampling)
        manifest = {"identity": identity, "complete": False, "specs": [asdict(s) for s in specs],
                    "shards": _plan_shards(specs, shard_size)}
        _write_json(out_dir / MANIFEST, manifest)
    if not manifest["complete"]:
        start = time.monotonic()
        _encode_shards(manifest, out_dir, Path(hdr_dir), codec, evs, encode_batch, progress)
        manifest.update(complete=True, build_s=round(time.monotonic() - start, 3))
        _write_json(out_dir / MANIFEST, manifest)
    return open_latent_cache(out_dir)


def _existing_manifest(out_dir: Path, identity: dict, rebuild: bool) -> dict | None:
    path = out_dir / MANIFEST
    if not path.is_file():
        return None
    manifest = json.loads(path.read_text())
    old = manifest.get("identity", {})
    differ = sorted(k for k in set(old) | set(identity) if old.get(k) != identity.get(k)
                    and not (k == "keep_hdr" and old.get(k) and not identity[k]))
    if not differ:
        if old.get("keep_hdr") != identity["keep_hdr"]:
            manifest["identity"]["keep_hdr"] = old["keep_hdr"]
        return manifest
    if not rebuild:
        raise InputError("cache", f"{out_dir} holds latents built with other settings ({', '.join(differ)} "
                                  "differ); use another cache folder or rebuild it (--overwrite)")
    for shard in manifest.get("shards", []):
        (out_dir / shard["file"]).unlink(missing_ok=True)
    path.unlink()
    return None


def _plan_shards(specs: list[SampleSpec], shard_size: int) -> list[dict]:
    """Shards of at most ``shard_size`` samples of one (kind, height, width), sorted by source within a group
    (each source file is read once per shard)."""
    keys = sorted({(s.kind, s.height, s.width) for s in specs})
    shards = []
    for kind, height, width in keys:
        members = sorted((s for s in specs if (s.kind, s.height, s.width) == (kind, height, width)),
                         key=lambda s: (s.source, s.index))
        for j in range(0, len(members), shard_size):
            shards.append({"file": f"{kind}-{width}x{height}-{j // shard_size:04d}.safetensors", "kind": kind,
                           "height": height, "width": width,
                           "indices": [s.index for s in members[j: j + shard_size]]})
    return shards


def _encode_shards(manifest: dict, out_dir: Path, hdr_dir: Path, codec, evs, encode_batch: int,
                   progress: bool) -> None:
    from tqdm.auto import tqdm

    specs = [SampleSpec(**s) for s in manifest["specs"]]
    todo = [sh for sh in manifest["shards"] if not (out_dir / sh["file"]).is_file()]
    keep_hdr = manifest["identity"]["keep_hdr"]
    with tqdm(total=sum(len(sh["indices"]) for sh in todo), disable=not progress, unit="sample",
              desc="latent cache", dynamic_ncols=True) as bar:
        for shard in todo:
            tensors = _encode_shard([specs[i] for i in shard["indices"]], hdr_dir, codec, evs, encode_batch,
                                    keep_hdr, bar)
            _save_shard(out_dir / shard["file"], tensors)


@torch.inference_mode()
def _encode_shard(specs: list[SampleSpec], hdr_dir: Path, codec, evs, encode_batch: int, keep_hdr: bool, bar):
    """Render, bracket and encode one shard's samples -> the shard's tensors (see :class:`LatentGroup`)."""
    loaded: tuple[str, torch.Tensor] | None = None
    frames, hdrs, scales = [], [], []
    need_ev0 = 0.0 not in evs
    ladder = tuple(evs) + ((0.0,) if need_ev0 else ())
    for spec in specs:
        if loaded is None or loaded[0] != spec.source:
            path = hdr_dir / spec.source
            loaded = (spec.source, _load_panorama(path))
        H, scale = render_sample(loaded[1], spec)
        y = sample_bracket(H, ladder)  # [K(+1), 3, h, w] display, 8-bit levels
        frames.append(torch.round(y * 255).to(torch.uint8))
        hdrs.append(H)
        scales.append(scale)
        bar.update(1)
    y = torch.stack(frames).flatten(0, 1)  # [n*(K(+1)), 3, h, w] uint8
    panorama = specs[0].kind == "panorama"
    z = torch.cat([codec.encode(part.float() / 255, chunk_size=encode_batch, panorama=panorama)
                   for part in y.split(encode_batch)]).unflatten(0, (len(specs), len(ladder)))
    z0 = z[:, -1] if need_ev0 else z[:, list(evs).index(0.0)]
    tensors = {"index": torch.tensor([s.index for s in specs], dtype=torch.int64),
               "z": z[:, : len(evs)].half().contiguous(), "z0": z0.half().contiguous(),
               "ev0_scale": torch.tensor(scales, dtype=torch.float64)}
    if keep_hdr:
        tensors["hdr"] = torch.stack(hdrs).float().contiguous()
    return tensors


def _load_panorama(path: Path) -> torch.Tensor:
    from latenthdr import panorama

    pano = io.to_tensor(io.read_hdr(path, "data").pixels)  # [3, H, W] linear
    if not panorama.is_equirectangular(pano.shape[-2], pano.shape[-1]):
        raise InputError("data", f"{path}: {pano.shape[-1]}x{pano.shape[-2]} is not a 2:1 equirectangular "
                                 "panorama; accepted: latlong HDR panoramas")
    return pano


def _save_shard(path: Path, tensors: dict) -> None:
    from safetensors.torch import save_file

    with io.atomic_output(path, overwrite=True) as temp:
        save_file(tensors, str(temp), metadata={"format": CACHE_FORMAT})


def _write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with io.atomic_output(path, overwrite=True) as temp:
        temp.write_text(json.dumps(obj, indent=1) + "\n")


def open_latent_cache(directory: str | Path) -> LatentCache:
    """Load a finished cache into memory, its shards concatenated into one group per (kind, size)."""
    from safetensors.torch import load_file

    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise InputError("cache", f"{directory}: no {MANIFEST}; build the cache first")
    manifest = json.loads(path.read_text())
    if manifest.get("identity", {}).get("format") != CACHE_FORMAT or not manifest.get("complete"):
        raise InputError("cache", f"{directory}: not a finished latent cache ({CACHE_FORMAT})")
    parts: dict[tuple, list[dict]] = {}
    for shard in manifest["shards"]:
        key = (shard["kind"], shard["height"], shard["width"])
        parts.setdefault(key, []).append(load_file(str(directory / shard["file"])))
    groups = []
    for (kind, _, _), shards in sorted(parts.items()):
        cat = {name: torch.cat([s[name] for s in shards]) for name in shards[0]}
        groups.append(LatentGroup(kind, cat["index"], cat["z"], cat["z0"], cat.get("hdr")))
    return LatentCache(directory, manifest, groups)
