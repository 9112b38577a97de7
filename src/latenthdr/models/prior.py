"""The embedded prior: a small text- and EV-conditioned latent diffusion model over one codec's latents.

DESIGN.md "The embedded default": text -> scene latent z0 on a laptop CPU, for perspective views and 2:1
panoramas, in the latent space of our own codec (any codec space works; the space is recorded). The
denoiser predicts v (Salimans & Ho 2022, "Progressive distillation", v = alpha_t eps - sigma_t x0) of a DDPM
with the cosine schedule (Nichol & Dhariwal 2021, diffusers ``squaredcos_cap_v2``); sampling uses our copies of
diffusers' schedulers (``models/sampling.py``: DPM-Solver++ 2M by default, Lu et al. 2022; bit-identical to diffusers,
without its start-up cost) with noise drawn from an explicit generator.

Conditioning, summed into one vector c that FiLM-modulates every residual block (h -> h (1 + gamma) + beta):
- time: sinusoidal features of the timestep through an MLP;
- text: an all-MiniLM-L6-v2 sentence embedding (``models/text.py``) through an MLP; a learned null embedding
  replaces it for unconditional samples (classifier-free guidance, Ho & Salimans 2022: trained by dropping the
  text ~10% of the time); out = uncond + g (cond - uncond);
- EV: the exposure head's EV embedding (``models/head.py``): the model makes the latent of the frame at
  exposure e of the scene; e = 0 is the normal mode (the scene latent z0), other EVs give the multi-pass
  baseline (one run per EV with the same noise);
- kind: perspective or panorama (learned).
A row-coordinate channel (+1 at the top row, -1 at the bottom; the elevation / 90 degrees for panoramas) is
concatenated to the input: convolutions alone would not know where the sky is. There is no column coordinate,
so with ``panorama=True`` (circular padding along the width, zeros at the poles) the denoiser commutes with
horizontal rolls by multiples of 2^(levels - 1) latent columns, and the seam at +-180 degrees is like any
other column. The lowest level has one self-attention block (no positional encoding, so the same holds).
The 3x3 convs, GroupNorm (float32) and FiLM blocks are the exposure head's (zero-initialised FiLM); the
output conv and attention projections start at zero.

Weights: safetensors (float16 or float32) with metadata {"format": "latenthdr-prior-v1", "config": JSON,
"space": latent-space id, ...}; loading for another codec space is refused.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from latenthdr.errors import InputError
from latenthdr.models.weights_file import (RESERVED_METADATA, config_from_dict, load_model_file,  # noqa: F401
                                            read_model_metadata, save_model_file)
from latenthdr.models.head import Conv, EVEmbedding, FiLMBlock, Norm
from latenthdr.models.sampling import SAMPLERS, DDPMSchedule, make_sampler

PRIOR_FORMAT = "latenthdr-prior-v1"
SCHEDULERS = SAMPLERS


@dataclass(frozen=True)
class PriorConfig:
    """Architecture and diffusion settings of a prior. Frozen; ``from_dict`` rejects unknown keys.

    latent_channels: C of the codec. widths: channels per U-Net level. blocks_per_level: FiLM blocks per level
    and path. attention_heads: heads of the lowest level's self-attention (0: none). cond_dim: width of the
    conditioning vector. text_dim: the sentence-embedding width (384). ev_min/ev_max/fourier_frequencies: the
    EV embedding (as the head's). num_train_timesteps/beta_schedule/prediction_type: the DDPM.
    default_steps/default_guidance: sampling defaults. space: the codec latent-space id.
    """

    latent_channels: int
    widths: tuple[int, ...] = (64, 128, 192)
    blocks_per_level: int = 2
    attention_heads: int = 4
    cond_dim: int = 256
    text_dim: int = 384
    ev_min: float = -7.0
    ev_max: float = 5.0
    fourier_frequencies: int = 4
    norm_groups: int = 8
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "v_prediction"
    default_steps: int = 20
    default_guidance: float = 3.0
    text_encoder: str = "sentence-transformers/all-MiniLM-L6-v2"
    space: str = field(kw_only=True)

    def __post_init__(self):
        object.__setattr__(self, "widths", tuple(self.widths))
        for name in ("latent_channels", "blocks_per_level", "cond_dim", "text_dim", "norm_groups",
                     "num_train_timesteps", "default_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"PriorConfig.{name}", f"expected a positive integer, got {value!r}")
        if isinstance(self.fourier_frequencies, bool) or not isinstance(self.fourier_frequencies, int) \
                or self.fourier_frequencies < 0:
            raise InputError("PriorConfig.fourier_frequencies", f"expected an integer >= 0, "
                                                                f"got {self.fourier_frequencies!r}")
        if not self.widths or any(not isinstance(w, int) or w < 1 or w % self.norm_groups for w in self.widths):
            raise InputError("PriorConfig.widths", f"expected positive integers divisible by norm_groups="
                                                   f"{self.norm_groups}, got {self.widths!r}")
        if self.attention_heads < 0 or (self.attention_heads and self.widths[-1] % self.attention_heads):
            raise InputError("PriorConfig.attention_heads", f"expected 0 or a divisor of {self.widths[-1]}, "
                                                            f"got {self.attention_heads!r}")
        if self.prediction_type not in ("v_prediction", "epsilon"):
            raise InputError("PriorConfig.prediction_type", f"got {self.prediction_type!r}; accepted: "
                                                            "v_prediction, epsilon")
        if not (math.isfinite(self.ev_min) and math.isfinite(self.ev_max) and self.ev_max > self.ev_min):
            raise InputError("PriorConfig.ev_max", f"expected finite ev_min < ev_max, got {self.ev_min}, {self.ev_max}")
        if not isinstance(self.space, str) or not self.space:
            raise InputError("PriorConfig.space", f"expected the codec's latent-space id, got {self.space!r}")

    @property
    def ev_embed_dim(self) -> int:  # the EV embedding's width (read by head.EVEmbedding)
        return self.cond_dim

    @property
    def size_multiple(self) -> int:
        """Latent height and width must be multiples of this (one 2x downsampling between levels)."""
        return 2 ** (len(self.widths) - 1)

    @classmethod
    def from_dict(cls, data: Mapping) -> "PriorConfig":
        return config_from_dict(cls, data, "prior config")

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["widths"] = list(self.widths)
        return data

    @classmethod
    def from_preset(cls, preset: str, latent_channels: int, space: str, **overrides) -> "PriorConfig":
        if preset not in PRIOR_PRESETS:
            raise InputError("preset", f"unknown prior preset {preset!r}; accepted: {', '.join(PRIOR_PRESETS)}")
        return cls.from_dict({**PRIOR_PRESETS[preset], "latent_channels": latent_channels, "space": space,
                              **overrides})


# Presets (latent_channels and space come from the codec). Parameter counts for C = 16 in tests/test_prior.py.
PRIOR_PRESETS: dict[str, dict] = {
    "test": {"widths": (8, 16), "blocks_per_level": 1, "attention_heads": 2, "cond_dim": 16, "norm_groups": 4},
    "small": {"widths": (48, 96, 144), "blocks_per_level": 1, "attention_heads": 4, "cond_dim": 192},
    "base": {"widths": (64, 128, 192), "blocks_per_level": 2, "attention_heads": 4, "cond_dim": 256},
    # four levels: the attention sees a 1/64 grid (4x8 cells for a 512x256 panorama), for whole-scene layout
    "large": {"widths": (64, 128, 192, 256), "blocks_per_level": 2, "attention_heads": 4, "cond_dim": 256},
}


def timestep_features(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features of timesteps t [N] (any numeric dtype) -> [N, dim] float32 (Vaswani et al. 2017)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    out = torch.cat([angles.cos(), angles.sin()], dim=1)
    return F.pad(out, (0, dim % 2))


class SelfAttention(nn.Module):
    """GroupNorm -> multi-head self-attention over all h*w positions -> zero-initialised projection, plus skip."""

    def __init__(self, channels: int, heads: int, groups: int):
        super().__init__()
        self.heads = heads
        self.norm = Norm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, self.heads, c // self.heads, h * w).unbind(1)
        a = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.proj(a.transpose(-1, -2).reshape(n, c, h, w))  # [N, heads, hw, c/heads] -> [N, c, h, w]


class PriorUNet(nn.Module):
    """The denoiser: (x_t [B, C, h, w], t [B], text [B, 384], ev [B], panorama) -> v or eps [B, C, h, w]."""

    def __init__(self, config: PriorConfig):
        super().__init__()
        self.config = config
        c, widths, groups, d = config.latent_channels, config.widths, config.norm_groups, config.cond_dim
        n = config.blocks_per_level
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.text_mlp = nn.Sequential(nn.Linear(config.text_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.null_text = nn.Parameter(torch.zeros(config.text_dim))  # the "no prompt" embedding (CFG)
        self.ev_embed = EVEmbedding(config)
        self.kind_embed = nn.Embedding(2, d)  # 0 perspective, 1 panorama
        self.conv_in = Conv(c + 1, widths[0])  # + the row-coordinate channel
        self.down = nn.ModuleList(Conv(a, b, stride=2) for a, b in zip(widths[:-1], widths[1:]))
        self.enc = nn.ModuleList(nn.ModuleList(FiLMBlock(w, w, d, groups) for _ in range(n)) for w in widths)
        self.mid_attention = (SelfAttention(widths[-1], config.attention_heads, groups)
                              if config.attention_heads else nn.Identity())
        self.mid_block = FiLMBlock(widths[-1], widths[-1], d, groups)
        self.up = nn.ModuleList(Conv(b, a) for a, b in zip(widths[:-1], widths[1:]))
        self.dec = nn.ModuleList(
            nn.ModuleList(FiLMBlock(2 * w if i == 0 else w, w, d, groups) for i in range(n)) for w in widths[:-1])
        self.norm_out = Norm(groups, widths[0])
        self.conv_out = Conv(widths[0], c)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def uncond(self, batch: int) -> torch.Tensor:
        """The null text embedding for ``batch`` samples, [batch, 384]."""
        return self.null_text[None].expand(batch, -1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, ev: torch.Tensor,
                panorama: bool = False) -> torch.Tensor:
        """x: [B, C, h, w] noisy normalised latents (h, w multiples of ``config.size_multiple``); t: [B] or []
        timesteps in [0, num_train_timesteps); text: [B, 384] sentence embeddings (or ``uncond``); ev: [B] or
        [] stops. Returns the model output [B, C, h, w] (v for v_prediction) in x's dtype."""
        self._check(x)
        b = x.shape[0]
        t, ev = t.reshape(-1).expand(b), torch.as_tensor(ev, device=x.device).reshape(-1).expand(b)
        d = self.config.cond_dim
        cond = (self.time_mlp(timestep_features(t, d)) + self.text_mlp(text.float())
                + self.ev_embed(ev) + self.kind_embed.weight[int(bool(panorama))])
        psi = F.silu(cond)  # [B, d]
        rows = torch.linspace(1.0, -1.0, 2 * x.shape[-2] + 1, device=x.device)[1::2]  # row centres
        coord = rows.view(1, 1, -1, 1).expand(b, 1, -1, x.shape[-1]).to(x.dtype)
        h = self.conv_in(torch.cat([x, coord], dim=1), panorama)
        return self._unet(h, psi, panorama).to(x.dtype)

    def _unet(self, x: torch.Tensor, psi: torch.Tensor, circular: bool) -> torch.Tensor:
        skips = []
        for level, blocks in enumerate(self.enc):
            if level:
                x = self.down[level - 1](x, circular)
            for block in blocks:
                x = block(x, psi, circular)
            skips.append(x)
        x = self.mid_block(self.mid_attention(x), psi, circular)
        for level in reversed(range(len(self.dec))):
            x = self.up[level](F.interpolate(x, scale_factor=2.0, mode="nearest"), circular)
            x = torch.cat([x, skips[level]], dim=1)
            for block in self.dec[level]:
                x = block(x, psi, circular)
        return self.conv_out(F.silu(self.norm_out(x)), circular)

    def _check(self, x) -> None:
        c, m = self.config.latent_channels, self.config.size_multiple
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != c or not x.is_floating_point():
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise InputError("x", f"expected a float tensor [B, {c}, h, w], got {shape}")
        if x.shape[-1] % m or x.shape[-2] % m:
            raise InputError("x", f"latent height and width must be multiples of {m}, got {tuple(x.shape[-2:])}")


def make_scheduler(config: PriorConfig, kind: str = "dpmsolver"):
    """A fresh sampler (they hold per-run state) with the prior's DDPM settings (``models/sampling.py``).
    kind: "dpmsolver" (DPM-Solver++ 2M), "ddim" (eta 0) or "euler" (Euler discrete); trailing timesteps; each equal
    bit for bit to the diffusers scheduler of that name and settings."""
    schedule = DDPMSchedule(num_train_timesteps=config.num_train_timesteps, beta_schedule=config.beta_schedule,
                            prediction_type=config.prediction_type)
    return make_sampler(kind, schedule)


def training_scheduler(config: PriorConfig):
    """The DDPM that defines the forward process (``add_noise``, ``get_velocity``) for training."""
    import diffusers

    return diffusers.DDPMScheduler(num_train_timesteps=config.num_train_timesteps,
                                   beta_schedule=config.beta_schedule, prediction_type=config.prediction_type)


class EmbeddedPrior:
    """A scene source over a :class:`PriorUNet` (the same interface as ``models.backbones.SceneSource``).

    text_encoder: an object with ``encode(prompts) -> [B, 384]`` (default: the packaged MiniLM, loaded on first
    use). codec: the codec of ``space`` (returned by :meth:`codec`; the caller supplies it). ``last_timings``
    after each :meth:`generate`: "text_encoding_s", "diffusion_s", "total_s", "steps", "denoiser_calls",
    "diffusion_runs" (1 per call).
    """

    diffusion_runs = 1
    supports_ev = True  # generate(..., ev=e): the multi-pass baseline can run it once per EV

    def __init__(self, model: PriorUNet, text_encoder=None, codec=None, scheduler: str = "dpmsolver"):
        self.model = model.eval().requires_grad_(False)
        self.config = model.config
        self._text_encoder, self._codec = text_encoder, codec
        make_scheduler(self.config, scheduler)  # validates the name now
        self.scheduler = scheduler
        self.last_timings: dict[str, float] = {}

    @property
    def space(self) -> str:
        return self.config.space

    def codec(self):
        if self._codec is None:
            raise InputError("codec", f"no codec attached to this prior (latent space {self.space!r})")
        return self._codec

    @property
    def text_encoder(self):
        if self._text_encoder is None:
            from latenthdr.models.text import load_text_encoder

            self._text_encoder = load_text_encoder()
        return self._text_encoder

    def size_multiple(self, panorama: bool = False) -> int:
        """Image height and width must be multiples of this many pixels."""
        downscale = self._codec.downscale if self._codec is not None else 8
        return downscale * self.config.size_multiple

    @torch.inference_mode()
    def generate(self, prompt: str | Sequence[str], *, height: int, width: int, panorama: bool = False,
                 generator: torch.Generator | Sequence[torch.Generator] | None = None, ev: float = 0.0,
                 num_inference_steps: int | None = None, guidance_scale: float | None = None) -> torch.Tensor:
        """One diffusion run -> z [B, C, height/d, width/d] float32, the normalised latent of the frame at
        exposure ``ev`` (0: the scene latent z0). prompt: str or list of B str. height/width: pixels, multiples
        of :meth:`size_multiple`; panorama: 2:1 with circular padding. generator: one for the batch, or one per
        prompt (then each sample depends on its own generator only). guidance_scale 1 disables CFG."""
        start = time.perf_counter()
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        h, w = self._latent_size(height, width, panorama)
        steps = _positive_int("num_inference_steps", self.config.default_steps if num_inference_steps is None
                              else num_inference_steps)
        g = self.config.default_guidance if guidance_scale is None else float(guidance_scale)
        if not math.isfinite(g) or g < 0:
            raise InputError("guidance_scale", f"got {guidance_scale!r}; accepted: a finite number >= 0")
        if not math.isfinite(float(ev)):
            raise InputError("ev", f"got {ev!r}; accepted: a finite EV in stops")
        text = self.text_encoder.encode(prompts).to(self._device)  # [B, 384]
        text_s = time.perf_counter() - start
        x = _initial_noise(len(prompts), self.config.latent_channels, h, w, generator, self._device)
        x = self.sample(x, text, ev, panorama, steps, g)
        total = time.perf_counter() - start
        self.last_timings = {"text_encoding_s": text_s, "diffusion_s": total - text_s, "total_s": total,
                             "steps": steps, "denoiser_calls": steps, "diffusion_runs": 1}
        return x

    def sample(self, x: torch.Tensor, text: torch.Tensor, ev: float, panorama: bool, steps: int,
               guidance_scale: float) -> torch.Tensor:
        """Integrate from noise x [B, C, h, w] (already scaled by nothing: unit variance) to the clean latent."""
        scheduler = make_scheduler(self.config, self.scheduler)
        scheduler.set_timesteps(steps, device=x.device)
        x = x * scheduler.init_noise_sigma
        b = x.shape[0]
        cfg = guidance_scale != 1.0
        cond = torch.cat([text, self.model.uncond(b)]) if cfg else text
        e = torch.full((cond.shape[0],), float(ev), device=x.device)
        for t in scheduler.timesteps:
            x_in = scheduler.scale_model_input(torch.cat([x, x]) if cfg else x, t)
            out = self.model(x_in, t.reshape(1).to(x.device), cond, e, panorama).float()
            if cfg:
                out_cond, out_uncond = out.chunk(2)
                out = out_uncond + guidance_scale * (out_cond - out_uncond)
            x = scheduler.step(out, t, x)
        return x.float()

    @property
    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _latent_size(self, height, width, panorama: bool) -> tuple[int, int]:
        m = self.size_multiple(panorama)
        for name, value in (("height", height), ("width", width)):
            if isinstance(value, bool) or not isinstance(value, int) or value < m or value % m:
                raise InputError(name, f"got {value!r}; accepted: a positive multiple of {m} pixels")
        if panorama and width != 2 * height:
            raise InputError("width", f"a panorama is 2:1; got {width}x{height}")
        d = m // self.config.size_multiple
        return height // d, width // d


def _initial_noise(batch: int, channels: int, h: int, w: int, generator, device) -> torch.Tensor:
    """Standard normal noise [B, C, h, w] float32 drawn on CPU from the generator(s), so it is the same on
    every device; a list of generators draws sample i from generator i."""
    shape = (channels, h, w)
    if isinstance(generator, (list, tuple)):
        if len(generator) != batch:
            raise InputError("generator", f"got {len(generator)} generators for {batch} prompts")
        x = torch.stack([torch.randn(shape, generator=g) for g in generator])
    else:
        x = torch.randn((batch, *shape), generator=generator)
    return x.to(device)


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(name, f"got {value!r}; accepted: an integer >= 1")
    return value


# ------------------------------------------------------------------------------------------ files
def save_prior(model: PriorUNet, path: str | os.PathLike, *, dtype: torch.dtype = torch.float32,
               extra_metadata: Mapping | None = None) -> Path:
    """Write the weights (cast to ``dtype``, e.g. float16 to ship) with config and space metadata, atomically."""
    return save_model_file(path, model.state_dict(), format=PRIOR_FORMAT, config=model.config.to_dict(),
                           space=model.config.space, extra_metadata=extra_metadata, dtype_of=lambda k, v: dtype)


def read_prior_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata of a prior file; InputError when missing or not a latenthdr prior."""
    return read_model_metadata(path, format=PRIOR_FORMAT, argument="prior", what="prior")


def load_prior(path: str | os.PathLike, expected_space: str | None = None, device="cpu") -> PriorUNet:
    """Load a :func:`save_prior` file strictly, in float32 and eval mode; refuse one of another latent space.
    A damaged file is one InputError naming "prior" and the file."""
    model = load_model_file(path, PriorConfig, PriorUNet, format=PRIOR_FORMAT, argument="prior", what="prior",
                            expected_space=expected_space)
    return model.to(device).eval()


def load_prior_for(codec, path: str | os.PathLike | None = None, device="cpu", text_encoder=None,
                   scheduler: str = "dpmsolver") -> EmbeddedPrior:
    """An :class:`EmbeddedPrior` for ``codec``: the file given, or the prior shipped for ``codec.space``
    (``weights/manifest.json`` entry of kind "prior", sha256-verified). scheduler: one of :data:`SCHEDULERS`."""
    from latenthdr.models import registry

    if path is None:
        name = next((n for n, e in registry.manifest().items() if e["kind"] == "prior" and e["space"] == codec.space),
                    None)
        if name is None:
            raise InputError("prior", f"no shipped prior for latent space {codec.space!r}; train one with "
                                      "`latenthdr train prior` and pass --prior RUN_DIR/prior.safetensors")
        path = registry.shipped_file(name)
    return EmbeddedPrior(load_prior(path, expected_space=codec.space, device=device), text_encoder, codec, scheduler)
