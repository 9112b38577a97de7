"""Our own small latent codec ("the embedded codec"): display-encoded RGB <-> a 1/8 latent grid, sized for CPUs.

An autoencoder with an SD-like layout (C latent channels on an H/8 x W/8 grid), deterministic (z is the
encoder's output, so its "posterior mean" is itself). Value ranges at the boundaries:
- encoder input y: [n, 3, H, W] display-encoded RGB in [0, 1] (gamma 2.2 frames; centred to [-0.5, 0.5] inside);
- raw latent: [n, C, H/8, W/8], float; normalised latent z = (raw - latent_mean) / latent_std per channel,
  with the statistics measured on training data after training (buffers ``latent_mean``/``latent_std``), so
  z has about zero mean and unit variance per channel, as the exposure head and a prior expect;
- decoder output: [n, 3, H, W] display-encoded, about [0, 1], unclamped (the adapter clamps).

Design (numbers in docs/codec.md): both networks are a linear 8x8-patch codec (a 1x1 conv on the 8x
pixel-unshuffled image and its transpose, initialised as the PCA of training patches, which alone scores
~37.7 dB on the val frames for C = 16) plus a convolutional residual path that starts at zero and learns what
the linear codec misses (block edges, texture); a plain autoencoder trained from scratch was still below
28 dB after 15 CPU minutes. For speed (DESIGN.md "The embedded default") the decoder, which runs once per
frame (13 per image), has no attention, no normalisation layers and only ReLUs; most of its compute sits at
1/8 and 1/4; each 2x upsampling is a 3x3 conv to 4x the channels followed by a pixel shuffle, and the last
one writes RGB directly (no convolution at full resolution). The encoder runs once per image and starts with a
pixel unshuffle (space-to-depth) instead of a full-resolution convolution. Every convolution pads with zeros;
for panoramas the adapter (``codecs.LatentCodec``) pads circularly by ``wrap_columns`` latent columns, which
this model sets to cover its receptive field, so panorama frames are exactly seamless.

Weights: safetensors with metadata {"format": "latenthdr-tinycodec-v1", "config": JSON, "space": id, ...}.
The latent-space id is ``"latenthdr-" + config.name`` (e.g. "latenthdr-tiny-v1"): retrained weights must get a
new name, since heads are tied to the space.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from latenthdr.errors import InputError
from latenthdr.models.codecs import LatentCodec
from latenthdr.models.weights_file import (RESERVED_METADATA, config_from_dict, load_model_file,  # noqa: F401
                                            read_model_metadata, save_model_file)

CODEC_FORMAT = "latenthdr-tinycodec-v1"
DOWNSCALE = 8  # three 2x levels: 1/2, 1/4, 1/8


@dataclass(frozen=True)
class TinyCodecConfig:
    """Architecture of the embedded codec. Frozen; ``from_dict`` rejects unknown keys.

    name: identifies the trained weights; the latent space is "latenthdr-<name>". latent_channels: C.
    encoder_widths / encoder_blocks: channels and residual blocks at 1/2, 1/4, 1/8. decoder_widths /
    decoder_blocks: channels and residual blocks at 1/8, 1/4, 1/2 (the decoder's order of work).
    """

    name: str = "tiny-v1"
    latent_channels: int = 16
    encoder_widths: tuple[int, int, int] = (32, 64, 128)
    encoder_blocks: tuple[int, int, int] = (1, 1, 2)
    decoder_widths: tuple[int, int, int] = (96, 48, 24)
    decoder_blocks: tuple[int, int, int] = (2, 1, 0)

    def __post_init__(self):
        for key in ("encoder_widths", "encoder_blocks", "decoder_widths", "decoder_blocks"):
            value = tuple(getattr(self, key))
            object.__setattr__(self, key, value)
            low = 1 if key.endswith("widths") else 0
            if len(value) != 3 or any(isinstance(v, bool) or not isinstance(v, int) or v < low for v in value):
                raise InputError(f"TinyCodecConfig.{key}", f"got {value!r}; accepted: 3 integers >= {low}")
        if isinstance(self.latent_channels, bool) or not isinstance(self.latent_channels, int) or self.latent_channels < 1:
            raise InputError("TinyCodecConfig.latent_channels", f"got {self.latent_channels!r}; accepted: an integer >= 1")
        if not isinstance(self.name, str) or not self.name or not all(c.isalnum() or c in "-_." for c in self.name):
            raise InputError("TinyCodecConfig.name", f"got {self.name!r}; accepted: letters, digits, '-', '_', '.'")

    @property
    def space(self) -> str:
        """The latent-space id heads record."""
        return f"latenthdr-{self.name}"

    @classmethod
    def from_dict(cls, data: Mapping) -> "TinyCodecConfig":
        """Build from a mapping (parsed JSON); InputError names unknown keys and lists the accepted ones."""
        return config_from_dict(cls, data, "codec config")

    def to_dict(self) -> dict:
        """JSON-ready dict (tuples as lists); ``from_dict(to_dict())`` round-trips."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_preset(cls, preset: str, **overrides) -> "TinyCodecConfig":
        """A named preset (CODEC_PRESETS) with optional field overrides (e.g. latent_channels, name)."""
        if preset not in CODEC_PRESETS:
            raise InputError("preset", f"unknown codec preset {preset!r}; accepted: {', '.join(CODEC_PRESETS)}")
        return cls.from_dict({**CODEC_PRESETS[preset], **overrides})


# Presets; the widths were chosen by measurement (docs/codec.md "Design measurements").
CODEC_PRESETS: dict[str, dict] = {
    "test": {"name": "test", "latent_channels": 4, "encoder_widths": (8, 8, 8), "encoder_blocks": (0, 0, 1),
             "decoder_widths": (8, 8, 8), "decoder_blocks": (1, 0, 0)},
    "narrow": {"name": "narrow-v1", "decoder_widths": (64, 32, 16), "decoder_blocks": (2, 1, 0)},
    "tiny": {"name": "tiny-v1", "decoder_widths": (96, 48, 24), "decoder_blocks": (2, 1, 0)},
    "wide": {"name": "wide-v1", "decoder_widths": (128, 64, 32), "decoder_blocks": (2, 1, 0)},
}


def conv3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)


class ResBlock(nn.Module):
    """x + conv(ReLU(conv(x))), then ReLU; 3x3 convs, no normalisation. The second conv starts at zero
    so every block starts as the identity (trains stably without normalisation layers)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = conv3(channels, channels)
        self.conv2 = conv3(channels, channels)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.conv2(F.relu(self.conv1(x))))


class Upsample(nn.Module):
    """2x up: 3x3 conv to 4 c_out channels, then pixel shuffle ([n, c_in, h, w] -> [n, c_out, 2h, 2w]).
    Initialised so the four sub-pixels start equal (ICNR, Aitken et al. 2017: no checkerboard at init)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = conv3(c_in, 4 * c_out)
        with torch.no_grad():
            one = torch.empty(c_out, c_in, 3, 3)
            nn.init.kaiming_uniform_(one, a=math.sqrt(5))
            self.conv.weight.copy_(one.repeat_interleave(4, dim=0))
            self.conv.bias.copy_(self.conv.bias.view(c_out, 4)[:, :1].expand(c_out, 4).reshape(-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.conv(x), 2)


class Encoder(nn.Module):
    """y [n, 3, H, W] display [0, 1] -> raw latent [n, C, H/8, W/8].

    z = patch(unshuffle_8(y - 0.5)) + net(y): a linear map of each 8x8x3 patch (fitted as a PCA by
    :meth:`TinyAutoencoder.init_linear_paths`) plus a convolutional path whose last conv starts at zero.
    """

    def __init__(self, config: TinyCodecConfig):
        super().__init__()
        w, b = config.encoder_widths, config.encoder_blocks
        layers: list[nn.Module] = [conv3(3 * 4, w[0]), nn.ReLU()]  # after a 2x pixel unshuffle
        layers += [ResBlock(w[0]) for _ in range(b[0])]
        layers += [conv3(w[0], w[1], stride=2), nn.ReLU()] + [ResBlock(w[1]) for _ in range(b[1])]
        layers += [conv3(w[1], w[2], stride=2), nn.ReLU()] + [ResBlock(w[2]) for _ in range(b[2])]
        layers += [conv3(w[2], config.latent_channels)]
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)
        self.layers = nn.Sequential(*layers)
        self.patch = nn.Conv2d(3 * DOWNSCALE**2, config.latent_channels, 1)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        x = y - 0.5
        return self.patch(F.pixel_unshuffle(x, DOWNSCALE)) + self.layers(F.pixel_unshuffle(x, 2))


class Decoder(nn.Module):
    """raw latent [n, C, h, w] -> display-encoded RGB [n, 3, 8h, 8w], about [0, 1], unclamped.

    y = 0.5 + shuffle_8(patch(z)) + net(z): the linear patch decoder (the PCA's transpose at init; a 1x1 conv
    at 1/8 resolution, nearly free) plus a convolutional path whose last conv starts at zero, so the codec
    starts as the linear patch codec and the network learns what it misses (block edges, texture).
    """

    def __init__(self, config: TinyCodecConfig):
        super().__init__()
        w, b = config.decoder_widths, config.decoder_blocks
        layers: list[nn.Module] = [conv3(config.latent_channels, w[0]), nn.ReLU()]
        layers += [ResBlock(w[0]) for _ in range(b[0])]
        layers += [Upsample(w[0], w[1]), nn.ReLU()] + [ResBlock(w[1]) for _ in range(b[1])]
        layers += [Upsample(w[1], w[2]), nn.ReLU()] + [ResBlock(w[2]) for _ in range(b[2])]
        layers += [Upsample(w[2], 3)]
        nn.init.zeros_(layers[-1].conv.weight)
        nn.init.zeros_(layers[-1].conv.bias)
        self.layers = nn.Sequential(*layers)
        self.patch = nn.Conv2d(config.latent_channels, 3 * DOWNSCALE**2, 1)

    def forward(self, z_raw: torch.Tensor) -> torch.Tensor:
        return self.layers(z_raw) + F.pixel_shuffle(self.patch(z_raw), DOWNSCALE) + 0.5


class TinyAutoencoder(nn.Module):
    """Encoder + decoder + the latent normalisation statistics (buffers, [C] float32)."""

    def __init__(self, config: TinyCodecConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.register_buffer("latent_mean", torch.zeros(config.latent_channels))
        self.register_buffer("latent_std", torch.ones(config.latent_channels))

    @torch.no_grad()
    def init_linear_paths(self, images: list[torch.Tensor]) -> None:
        """Fit both patch paths as the PCA of the 8x8x3 patches of ``images`` (tensors [n, 3, H, W], display
        [0, 1], H and W multiples of 8): the encoder projects a centred patch on the top C principal components,
        the decoder maps back. With the convolutional paths at their zero start, the codec is then the best
        linear patch codec of rank C (in mean squared error)."""
        p = torch.cat([F.pixel_unshuffle(y.double() - 0.5, DOWNSCALE).permute(0, 2, 3, 1).reshape(-1, 3 * DOWNSCALE**2)
                       for y in images])  # [patches, 192]
        mean = p.mean(dim=0)
        _, _, Vh = torch.linalg.svd(p - mean, full_matrices=False)
        V = Vh[: self.config.latent_channels]  # [C, 192] orthonormal rows
        self.encoder.patch.weight.copy_(V[:, :, None, None])
        self.encoder.patch.bias.copy_(-(V @ mean))
        self.decoder.patch.weight.copy_(V.T[:, :, None, None])
        self.decoder.patch.bias.copy_(mean)

    def forward(self, y: torch.Tensor, panorama: bool = False,
                latent_noise: tuple[float, torch.Generator] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pass: y [n, 3, H, W] display [0, 1] (H, W multiples of 8) -> (reconstruction [n, 3, H, W]
        unclamped, raw latent [n, C, H/8, W/8]). ``panorama``: circular padding as the adapter does it.
        ``latent_noise`` (sigma, generator): the decoder reads z_raw + sigma * latent_std * N(0, 1)."""
        p = min(wrap_columns(self.config), y.shape[-1] // DOWNSCALE) if panorama else 0
        if p:
            y = F.pad(y, (p * DOWNSCALE, p * DOWNSCALE, 0, 0), mode="circular")
        z_raw = self.encoder(y)
        z_in = z_raw
        if latent_noise is not None:
            sigma, generator = latent_noise
            noise = torch.randn(z_raw.shape, generator=generator).to(z_raw.device, z_raw.dtype)
            z_in = z_raw + sigma * self.latent_std[:, None, None].to(z_raw.dtype) * noise
        y_hat = self.decoder(z_in)
        if p:
            y_hat, z_raw = y_hat[..., p * DOWNSCALE:-p * DOWNSCALE], z_raw[..., p:-p]
        return y_hat, z_raw


def receptive_radius(config: TinyCodecConfig) -> tuple[int, float]:
    """Receptive-field radii: (encoder, in input pixels; decoder, in latent columns). Each 3x3 conv adds one
    pixel of its own resolution; a zero-padded border farther away than this cannot reach an output."""
    eb, db = config.encoder_blocks, config.decoder_blocks
    encoder_px = 1 + 2 * (1 + 2 * eb[0]) + 2 + 4 * 2 * eb[1] + 4 + 8 * (2 * eb[2] + 1)  # +1: the unshuffle
    decoder_latent = (1 + 2 * db[0] + 1) + (2 * db[1] + 1) / 2 + (2 * db[2] + 1) / 4
    return encoder_px, decoder_latent


def wrap_columns(config: TinyCodecConfig) -> int:
    """Latent columns of circular padding per side for panoramas: enough for both receptive fields."""
    encoder_px, decoder_latent = receptive_radius(config)
    return max(math.ceil(encoder_px / DOWNSCALE), math.ceil(decoder_latent))


class EmbeddedCodec(LatentCodec):
    """:class:`TinyAutoencoder` behind the :class:`~latenthdr.models.codecs.LatentCodec` interface.

    Images stay in [0, 1] (the model's own convention); normalise/denormalise use the model's measured
    per-channel latent statistics. ``space`` is "latenthdr-<config.name>". The model is switched to the
    channels-last memory layout (oneDNN convolutions run about 1.3x faster on CPUs); results come back in the
    usual contiguous layout.
    """

    def __init__(self, model: TinyAutoencoder):
        config = model.config
        super().__init__(model.to(memory_format=torch.channels_last), config.space, config.latent_channels,
                         DOWNSCALE, wrap_columns(config))
        self.tail_radius = math.ceil(receptive_radius(config)[1])  # no global layer: the whole decoder tiles
        self.encode_radius_px = receptive_radius(config)[0]  # nor in the encoder: the whole encoder runs in bands
        self.tail_cell_frames = 1 << 16  # its widest full-resolution layer is 3 channels (24 at half resolution)

    def _encode_raw(self, y):
        return self.module.encoder(y).contiguous()

    def _decode_raw(self, z_raw):
        return self.module.decoder(z_raw).contiguous()

    def normalise(self, z_raw):
        m, s = self.module.latent_mean.float(), self.module.latent_std.float()
        return (z_raw - m[:, None, None]) / s[:, None, None]

    def denormalise(self, z):
        m, s = self.module.latent_mean.float(), self.module.latent_std.float()
        return z * s[:, None, None] + m[:, None, None]


def save_codec(model: TinyAutoencoder, path: str | os.PathLike, *, dtype: torch.dtype = torch.float32,
               extra_metadata: Mapping | None = None) -> Path:
    """Write weights (cast to ``dtype``; the latent statistics stay float32) with the config and space in the
    metadata, atomically. extra_metadata: more keys (non-strings stored as JSON); reserved keys refused."""
    return save_model_file(path, model.state_dict(), format=CODEC_FORMAT, config=model.config.to_dict(),
                           space=model.config.space, extra_metadata=extra_metadata,
                           dtype_of=lambda k, v: torch.float32 if k.startswith("latent_") else dtype)


def read_codec_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata of a codec file; InputError when missing or not a latenthdr tiny codec."""
    return read_model_metadata(path, format=CODEC_FORMAT, argument="codec", what="codec")


def read_codec_config(path: str | os.PathLike) -> TinyCodecConfig:
    """The architecture recorded in a codec file (InputError when it is not one)."""
    return TinyCodecConfig.from_dict(json.loads(read_codec_metadata(path)["config"]))


def load_model(path: str | os.PathLike, device="cpu", dtype: torch.dtype = torch.float32) -> TinyAutoencoder:
    """Load a :func:`save_codec` file strictly, cast to ``dtype`` (float32 for CPU work), in eval mode.
    A damaged file is one InputError naming "codec" and the file."""
    model = load_model_file(path, TinyCodecConfig, TinyAutoencoder, format=CODEC_FORMAT, argument="codec", what="codec")
    return model.to(device=device, dtype=dtype).eval()


def load_embedded_codec(path: str | os.PathLike, device="cpu", dtype: torch.dtype = torch.float32) -> EmbeddedCodec:
    """The codec of a :func:`save_codec` file as a ``LatentCodec`` (the registry calls this for "embedded")."""
    return EmbeddedCodec(load_model(path, device, dtype))
