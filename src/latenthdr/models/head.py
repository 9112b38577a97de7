"""The exposure head (METHOD.md "Exposure head"): one scene latent -> the latents of a whole EV ladder.

    z_e = z0 + f_theta(z0, phi(e))          (METHOD.md "Exposure head", residual form)

- phi(e): EV embedding. e is normalised over the ladder range, e_n = 2 (e - ev_min) / (ev_max - ev_min) - 1,
  then [e, e_n, sin(2^k pi e_n), cos(2^k pi e_n) for k < fourier_frequencies] goes through a 2-layer MLP.
  (Features of the raw e with integer frequencies would be constant over integer EVs: METHOD.md warns.)
  EVs outside [ev_min, ev_max] are accepted (extrapolation); the features stay bounded except e itself.
- f_theta: a U-Net with len(widths) levels whose residual blocks are FiLM-modulated,
  h -> h * (1 + gamma(phi)) + beta(phi).
- Our additions (METHOD.md): zero-initialised output conv and FiLM generators, so the head is exactly the
  identity at init; horizontal circular padding when ``panorama=True``; all EVs in one batched pass.
- Optional (``HeadConfig.unseen_maps``): the head also reads two maps at latent resolution, the fractions of
  each cell's EV-0 pixels that are clipped and black (``exposure.unseen_fractions``). In a latent space that is
  close to linear in display values (the embedded codec's), a clipped patch and an almost clipped one differ by
  a few hundredths of a latent unit, and a head without the maps re-exposes clipped highlights as if the clip
  level were their radiance (docs/embedded.md).
- Optional (``HeadConfig.frame_channels`` > 0): the head also reads the EV-0 frame itself, display-encoded, through
  a small stem: each latent cell's ``frame_patch`` x ``frame_patch`` pixels (pixel-unshuffled: the exact values,
  as a patch embedding) -> 1x1 conv -> SiLU -> 3x3 conv, ``frame_channels`` features per latent cell, computed
  once and shared by every EV. A codec's encoder keeps only part of what its input frame holds (TAEF2: 192
  display values per cell into 32 latents); re-exposing needs what it dropped, most of all the shadows that a
  positive EV brightens (docs/head.md, "the information is there"). In image-to-HDR the frame is the user's input;
  in text-to-HDR, the decoded z0.
- Ablation only (``HeadConfig.ev_conditioning = "input"``, the paper's "without FiLM"): the EV enters once, as
  constant input channels (the same features [e, e_n, sin, cos] that phi's MLP reads) concatenated to z0, and the
  residual blocks are not modulated. The batched pass is the same; conv_in then runs once per EV, not once.
Every 3x3 conv pads at call time (F.pad, then an unpadded conv): zeros, or circular along the width for
panoramas (zeros at the poles either way). GroupNorm runs in float32 whatever the parameter dtype.

Weights are safetensors with metadata {"format": "latenthdr-head-v1", "config": JSON, "space": id, ...}; a head
is tied to one latent space (``HeadConfig.space``, the codec's ``space``) and refuses to load for another.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from latenthdr.errors import InputError
from latenthdr.models.weights_file import (RESERVED_METADATA, config_from_dict, load_model_file,  # noqa: F401
                                            read_model_metadata, save_model_file)

HEAD_FORMAT = "latenthdr-head-v1"
UNSEEN_CHANNELS = 2  # clipped and black fractions (exposure.unseen_fractions)
EV_CONDITIONINGS = ("film", "input")  # how phi(e) reaches the U-Net: FiLM (the method), or input channels (ablation)


@dataclass(frozen=True)
class HeadConfig:
    """Architecture of an exposure head. Frozen; ``from_dict`` rejects unknown keys.

    latent_channels: C of the codec's latents. widths: channels per U-Net level (one downsampling between
    levels). blocks_per_level: FiLM residual blocks per level and path. ev_embed_dim: width of phi(e).
    fourier_frequencies: number of octaves k in the EV features. ev_min/ev_max: the ladder range in stops used
    to normalise e. norm_groups: GroupNorm groups (divides every width). space: the codec latent-space id.
    unseen_maps: the head also reads the EV-0 frame's clipped / black fractions per latent cell (module docstring).
    frame_channels: features per latent cell of the EV-0 frame's stem (module docstring); 0: no frame input.
    frame_patch: pixels per latent cell side (the codec's downscale) for the stem.
    ev_conditioning: "film" (the method) or "input" (ablation: EV features as input channels, no FiLM).
    """

    latent_channels: int
    widths: tuple[int, ...] = (32, 64, 128)
    blocks_per_level: int = 2
    ev_embed_dim: int = 128
    fourier_frequencies: int = 4
    ev_min: float = -7.0
    ev_max: float = 5.0
    norm_groups: int = 8
    unseen_maps: bool = False
    frame_channels: int = 0
    frame_patch: int = 8
    ev_conditioning: str = "film"
    space: str = field(kw_only=True)

    def __post_init__(self):
        object.__setattr__(self, "widths", tuple(self.widths))
        positive = {"latent_channels": self.latent_channels, "blocks_per_level": self.blocks_per_level,
                    "ev_embed_dim": self.ev_embed_dim, "norm_groups": self.norm_groups}
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise InputError(f"HeadConfig.{name}", f"expected a positive integer, got {value!r}")
        for name in ("fourier_frequencies", "frame_channels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InputError(f"HeadConfig.{name}", f"expected an integer >= 0, got {value!r}")
        if isinstance(self.frame_patch, bool) or not isinstance(self.frame_patch, int) or self.frame_patch < 1:
            raise InputError("HeadConfig.frame_patch", f"expected a positive integer, got {self.frame_patch!r}")
        if not self.widths or any(not isinstance(w, int) or w < 1 or w % self.norm_groups for w in self.widths):
            raise InputError("HeadConfig.widths", f"expected positive integers divisible by norm_groups="
                                                  f"{self.norm_groups}, got {self.widths!r}")
        if not (math.isfinite(self.ev_min) and math.isfinite(self.ev_max) and self.ev_max > self.ev_min):
            raise InputError("HeadConfig.ev_max", f"expected finite ev_min < ev_max, got {self.ev_min}, {self.ev_max}")
        if not isinstance(self.unseen_maps, bool):
            raise InputError("HeadConfig.unseen_maps", f"expected true or false, got {self.unseen_maps!r}")
        if self.ev_conditioning not in EV_CONDITIONINGS:
            raise InputError("HeadConfig.ev_conditioning", f"got {self.ev_conditioning!r}; accepted: "
                                                           f"{', '.join(EV_CONDITIONINGS)}")
        if not isinstance(self.space, str) or not self.space:
            raise InputError("HeadConfig.space", f"expected the codec's latent-space id, got {self.space!r}")

    @classmethod
    def from_dict(cls, data: Mapping) -> "HeadConfig":
        """Build from a mapping (parsed JSON/TOML); InputError names unknown keys and lists the accepted ones."""
        return config_from_dict(cls, data, "head config")

    def to_dict(self) -> dict:
        """JSON-ready dict (widths as a list); ``from_dict(to_dict())`` round-trips."""
        data = dataclasses.asdict(self)
        data["widths"] = list(self.widths)
        return data

    @classmethod
    def from_preset(cls, preset: str, latent_channels: int, space: str, **overrides) -> "HeadConfig":
        """A named preset (HEAD_PRESETS) for a codec, with optional field overrides."""
        if preset not in HEAD_PRESETS:
            raise InputError("preset", f"unknown head preset {preset!r}; accepted: {', '.join(HEAD_PRESETS)}")
        return cls.from_dict({**HEAD_PRESETS[preset], "latent_channels": latent_channels, "space": space, **overrides})


# Architecture presets (latent_channels and space come from the codec). Parameter counts for C = 32, checked
# in tests/test_head.py: tiny ~57 k, small ~0.22 M, base ~0.79 M (METHOD.md's reading: widths 32/64/128,
# about 0.8 M), large ~1.3 M (two blocks per level), wide ~2.2 M (a wider full-resolution level: for latent
# spaces such as TAEF2's, where re-exposing a frame is a strongly nonlinear map per latent pixel; docs/head.md).
HEAD_PRESETS: dict[str, dict] = {
    "tiny": {"widths": (8, 16, 32), "blocks_per_level": 1, "ev_embed_dim": 32, "fourier_frequencies": 4,
             "norm_groups": 4},
    "small": {"widths": (16, 32, 64), "blocks_per_level": 1, "ev_embed_dim": 64, "fourier_frequencies": 4,
              "norm_groups": 8},
    "base": {"widths": (32, 64, 128), "blocks_per_level": 1, "ev_embed_dim": 64, "fourier_frequencies": 4,
             "norm_groups": 8},
    "large": {"widths": (32, 64, 128), "blocks_per_level": 2, "ev_embed_dim": 64, "fourier_frequencies": 4,
              "norm_groups": 8},
    "wide": {"widths": (64, 96, 128), "blocks_per_level": 2, "ev_embed_dim": 64, "fourier_frequencies": 4,
             "norm_groups": 8},
}


def side_inputs(frame: torch.Tensor, cell: int, *, unseen_maps: bool, read_frame: bool,
                clipped_level: float | None = None) -> dict:
    """What a head reads besides z0, from its EV-0 frame [B, 3, H, W] display [0, 1] with ``cell`` pixels per
    latent cell, as keyword arguments of :meth:`ExposureHead.forward`: ``unseen`` (``exposure.unseen_fractions``
    at ``clipped_level``, default the 8-bit one) when ``unseen_maps``, ``frame`` itself when ``read_frame``."""
    from latenthdr import exposure

    inputs = {"frame": frame} if read_frame else {}
    if unseen_maps:
        level = exposure.CLIPPED_DISPLAY if clipped_level is None else clipped_level
        inputs["unseen"] = exposure.unseen_fractions(frame, cell, clipped_level=level)
    return inputs


def _wrap(x: torch.Tensor, p: int) -> torch.Tensor:
    """Pad W by p circularly (panorama longitude)."""
    width = x.shape[-1]
    if p <= width:  # slices: a gather (below) cost a fifth of the head's time on CPU
        return torch.cat([x[..., width - p:], x, x[..., :p]], dim=-1)
    return x[..., torch.arange(-p, width + p, device=x.device) % width]  # a narrow latent wraps more than once


class Conv(nn.Conv2d):
    """A conv whose padding is chosen per call: zeros, or (``circular``) circular along W (panorama longitude)
    with zeros along H (the poles)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3, stride: int = 1):
        super().__init__(c_in, c_out, kernel_size, stride=stride, padding=0)

    def forward(self, x: torch.Tensor, circular: bool = False) -> torch.Tensor:
        p = self.kernel_size[0] // 2
        if circular and p:
            x = _wrap(x, p)
        return F.conv2d(x, self.weight, self.bias, self.stride, (p, 0) if circular else (p, p))


class Norm(nn.GroupNorm):
    """GroupNorm computed in float32, returned in the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.group_norm(x.float(), self.num_groups, self.weight.float(), self.bias.float(), self.eps)
        return y.to(x.dtype)


class FiLMBlock(nn.Module):
    """Residual block: GN-SiLU-conv, GN, FiLM h*(1+gamma)+beta (METHOD.md), SiLU-conv, plus skip. With
    ``embed_dim`` 0 (the no-FiLM ablation) the block is not modulated and ``psi`` is ignored."""

    def __init__(self, c_in: int, c_out: int, embed_dim: int, groups: int):
        super().__init__()
        self.norm1, self.conv1 = Norm(groups, c_in), Conv(c_in, c_out)
        self.norm2, self.conv2 = Norm(groups, c_out), Conv(c_out, c_out)
        self.film = nn.Linear(embed_dim, 2 * c_out) if embed_dim else None
        if self.film is not None:
            nn.init.zeros_(self.film.weight)  # gamma = beta = 0 at init
            nn.init.zeros_(self.film.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, psi: torch.Tensor, circular: bool) -> torch.Tensor:
        h = self.norm2(self.conv1(F.silu(self.norm1(x)), circular))  # [N, c_out, h, w]
        if self.film is not None:
            gamma, beta = self.film(psi).to(h.dtype)[..., None, None].chunk(2, dim=1)  # [N, c_out, 1, 1] each
            h = h * (1 + gamma) + beta
        return self.conv2(F.silu(h), circular) + self.skip(x)


class EVEmbedding(nn.Module):
    """phi(e): [e, e_n, sin/cos(2^k pi e_n)] -> Linear-SiLU-Linear-SiLU, e_n = e normalised to [-1, 1]. With
    ``mlp=False`` (the no-FiLM ablation) it returns the features themselves."""

    def __init__(self, config: HeadConfig, mlp: bool = True):
        super().__init__()
        self.ev_min, self.ev_max = config.ev_min, config.ev_max
        # on the CPU even inside a meta-device build (weights_file checks a file's shapes that way): arange on the
        # meta device goes through torch's decompositions, whose first use imports torch._dynamo (1 s of start-up)
        octaves = 2.0 ** torch.arange(config.fourier_frequencies, device="cpu")
        self.register_buffer("octaves", octaves, persistent=False)
        self.n_features = 2 + 2 * config.fourier_frequencies
        d = config.ev_embed_dim
        self.mlp = nn.Sequential(nn.Linear(self.n_features, d), nn.SiLU(), nn.Linear(d, d), nn.SiLU()) if mlp else None

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        """e [N] float, stops -> psi [N, ev_embed_dim] (features in float32, MLP in the parameter dtype), or
        the features [N, n_features] in float32 without the MLP."""
        e = e.float()
        e_n = 2.0 * (e - self.ev_min) / (self.ev_max - self.ev_min) - 1.0
        angles = math.pi * e_n[:, None] * self.octaves.float()  # [N, F]
        features = torch.cat([e[:, None], e_n[:, None], angles.sin(), angles.cos()], dim=1)
        return features if self.mlp is None else self.mlp(features.to(self.mlp[0].weight.dtype))


class FrameStem(nn.Module):
    """The EV-0 frame [B, 3, h p, w p] display [0, 1] -> features [B, F, h, w] at latent resolution: pixel-unshuffle
    by p (every pixel value of a cell), 1x1 conv, SiLU, 3x3 conv (circular for panoramas)."""

    def __init__(self, patch: int, channels: int):
        super().__init__()
        self.patch = patch
        self.embed = nn.Conv2d(3 * patch * patch, channels, 1)
        self.conv = Conv(channels, channels)

    def forward(self, frame: torch.Tensor, circular: bool) -> torch.Tensor:
        x = self.embed(F.pixel_unshuffle(frame, self.patch) * 2.0 - 1.0)
        return self.conv(F.silu(x), circular)


class ExposureHead(nn.Module):
    """z0 [B, C, h, w] + EV ladder [K] -> z_e [B, K, C, h, w] in one batched pass (METHOD.md "Exposure head")."""

    def __init__(self, config: HeadConfig):
        super().__init__()
        self.config = config
        c, widths, groups, d = config.latent_channels, config.widths, config.norm_groups, config.ev_embed_dim
        n = config.blocks_per_level
        film = config.ev_conditioning == "film"
        self.embed = EVEmbedding(config, mlp=film)
        self.frame_stem = FrameStem(config.frame_patch, config.frame_channels) if config.frame_channels else None
        side = (UNSEEN_CHANNELS if config.unseen_maps else 0) + config.frame_channels
        self.conv_in = Conv(c + side + (0 if film else self.embed.n_features), widths[0])
        d = d if film else 0  # no FiLM generators in the ablation
        self.down = nn.ModuleList(Conv(a, b, stride=2) for a, b in zip(widths[:-1], widths[1:]))
        self.enc = nn.ModuleList(nn.ModuleList(FiLMBlock(w, w, d, groups) for _ in range(n)) for w in widths)
        self.up = nn.ModuleList(Conv(b, a) for a, b in zip(widths[:-1], widths[1:]))
        self.dec = nn.ModuleList(
            nn.ModuleList(FiLMBlock(2 * w if i == 0 else w, w, d, groups) for i in range(n)) for w in widths[:-1])
        self.norm_out = Norm(groups, widths[0])
        self.conv_out = Conv(widths[0], c)
        nn.init.zeros_(self.conv_out.weight)  # f_theta = 0 at init: the head starts as the identity
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, z0: torch.Tensor, evs, panorama: bool = False, unseen: torch.Tensor | None = None,
                frame: torch.Tensor | None = None) -> torch.Tensor:
        """z0: [B, C, h, w] float, normalised latents of the codec ``config.space`` (the EV-0 scene latent).
        evs: [K] (shared ladder) or [B, K] (per-sample), stops, tensor or sequence of floats.
        panorama: wrap horizontally (2:1 latlong latents). unseen: [B, 2, h, w] float in [0, 1], the EV-0
        frame's clipped / black fractions per latent cell (``exposure.unseen_fractions``); required exactly when
        ``config.unseen_maps``. frame: [B, 3, h p, w p] the EV-0 frame, display-encoded [0, 1], p =
        ``config.frame_patch``; required exactly when ``config.frame_channels`` > 0. Returns z_e [B, K, C, h, w]
        in z0's dtype.
        """
        self._check_latent(z0)
        e = _ev_matrix(evs, z0)  # [B, K] float32
        batch, k = e.shape
        psi = self.embed(e.flatten())  # [B*K, D]
        unseen = self._check_unseen(unseen, z0)  # None unless config.unseen_maps
        frame = self._check_frame(frame, z0)  # None unless config.frame_channels
        dtype = self.conv_in.weight.dtype
        side = [] if unseen is None else [unseen.to(dtype)]
        if frame is not None:
            side.append(self.frame_stem(frame.to(dtype), panorama))
        x = torch.cat([z0.to(dtype), *side], dim=1)
        x, (h, w) = _pad_to_multiple(x, 2 ** (len(self.config.widths) - 1), panorama)
        if self.embed.mlp is None:  # no-FiLM ablation: the EV features as constant input maps, one conv_in per EV
            maps = psi.to(dtype)[..., None, None].expand(-1, -1, *x.shape[-2:])
            x = self.conv_in(torch.cat([x.repeat_interleave(k, dim=0), maps], dim=1), panorama)
        else:
            x = self.conv_in(x, panorama).repeat_interleave(k, dim=0)  # shared by every EV: [B*K, w0, h', w']
        dz = self._unet(x, psi, panorama)[..., :h, :w]
        return z0[:, None] + dz.unflatten(0, (batch, k)).to(z0.dtype)

    def _unet(self, x: torch.Tensor, psi: torch.Tensor, circular: bool) -> torch.Tensor:
        skips = []
        for level, blocks in enumerate(self.enc):
            if level:
                x = self.down[level - 1](x, circular)
            for block in blocks:
                x = block(x, psi, circular)
            skips.append(x)
        for level in reversed(range(len(self.dec))):
            x = self.up[level](F.interpolate(x, scale_factor=2.0, mode="nearest"), circular)
            x = torch.cat([x, skips[level]], dim=1)
            for block in self.dec[level]:
                x = block(x, psi, circular)
        return self.conv_out(F.silu(self.norm_out(x)), circular)

    def _check_unseen(self, unseen, z0: torch.Tensor) -> torch.Tensor | None:
        if not self.config.unseen_maps:
            if unseen is not None:
                raise InputError("unseen", "this head was trained without unseen maps; pass None")
            return None
        expected = (z0.shape[0], UNSEEN_CHANNELS, *z0.shape[-2:])
        if not isinstance(unseen, torch.Tensor) or tuple(unseen.shape) != expected:
            got = tuple(unseen.shape) if isinstance(unseen, torch.Tensor) else type(unseen).__name__
            raise InputError("unseen", f"this head reads the EV-0 frame's clipped / black fractions per latent "
                                       f"cell: expected a tensor {list(expected)}, got {got}")
        return unseen.to(z0)

    def _check_frame(self, frame, z0: torch.Tensor) -> torch.Tensor | None:
        if not self.config.frame_channels:
            if frame is not None:
                raise InputError("frame", "this head was trained without the EV-0 frame as input; pass None")
            return None
        p = self.config.frame_patch
        expected = (z0.shape[0], 3, z0.shape[-2] * p, z0.shape[-1] * p)
        if not isinstance(frame, torch.Tensor) or tuple(frame.shape) != expected or not frame.is_floating_point():
            got = tuple(frame.shape) if isinstance(frame, torch.Tensor) else type(frame).__name__
            raise InputError("frame", f"this head reads the EV-0 frame (display-encoded, [0, 1]): expected a float "
                                      f"tensor {list(expected)}, got {got}")
        return frame

    def _check_latent(self, z0) -> None:
        c = self.config.latent_channels
        if not isinstance(z0, torch.Tensor) or z0.ndim != 4 or z0.shape[1] != c or not z0.is_floating_point():
            shape = tuple(z0.shape) if isinstance(z0, torch.Tensor) else type(z0).__name__
            raise InputError("z0", f"expected a float tensor [B, {c}, h, w] (latent space "
                                   f"{self.config.space!r}), got {shape}")


def _ev_matrix(evs, z0: torch.Tensor) -> torch.Tensor:
    """EVs as a float32 [B, K] tensor on z0's device; InputError for empty, non-finite or mis-shaped input."""
    e = torch.as_tensor(evs, dtype=torch.float32, device=z0.device) if not isinstance(evs, torch.Tensor) \
        else evs.to(device=z0.device, dtype=torch.float32)
    if e.ndim == 1:
        e = e[None].expand(z0.shape[0], -1)
    if e.ndim != 2 or e.shape[0] != z0.shape[0] or e.shape[1] == 0 or not torch.isfinite(e).all():
        raise InputError("evs", f"expected finite EVs in stops, shape [K] or [B={z0.shape[0]}, K], "
                                f"got shape {tuple(e.shape)}")
    return e


def _pad_to_multiple(x: torch.Tensor, m: int, panorama: bool):
    """Pad bottom/right so h, w are multiples of m (replicate; for panoramas the width continues circularly).

    Returns the padded tensor and the original (h, w) to crop back to. For a panorama whose latent width is
    not a multiple of m the padded ring is m-periodic-padded, so the seam is then only approximately wrapped.
    """
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % m, -w % m
    if pad_w and panorama:
        x = x[..., torch.arange(w + pad_w, device=x.device) % w]
    elif pad_w:
        x = F.pad(x, (0, pad_w, 0, 0), mode="replicate")
    if pad_h:
        x = F.pad(x, (0, 0, 0, pad_h), mode="replicate")
    return x, (h, w)


def save_head(head: ExposureHead, path: str | os.PathLike, extra_metadata: Mapping | None = None) -> Path:
    """Write the head's weights as safetensors with its config and latent space in the metadata (atomic).

    extra_metadata: more string keys (training command, data, metrics); non-string values are stored as JSON.
    The reserved keys ("format", "config", "space") cannot be overridden.
    """
    return save_model_file(path, head.state_dict(), format=HEAD_FORMAT, config=head.config.to_dict(),
                           space=head.config.space, extra_metadata=extra_metadata)


def read_head_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata of a head file; InputError when the file is missing or not a latenthdr head."""
    return read_model_metadata(path, format=HEAD_FORMAT, argument="head", what="exposure head")


def load_head(path: str | os.PathLike, expected_space: str | None = None, device="cpu") -> ExposureHead:
    """Load a head saved by :func:`save_head` (float32, eval mode), strictly.

    expected_space: the codec's latent-space id; a head trained for another space is refused with InputError
    (its latents would be meaningless to the codec). A damaged file is one InputError naming "head" and the file.
    """
    head = load_model_file(path, HeadConfig, ExposureHead, format=HEAD_FORMAT, argument="head", what="exposure head",
                           expected_space=expected_space)
    return head.to(device).eval()
