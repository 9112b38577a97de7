"""Latent codecs: display-encoded images <-> one VAE's normalised latent space.

One small interface, :class:`LatentCodec`:
- ``encode(y)``: y [B, 3, H, W], display-encoded RGB in [0, 1] -> z [B, C, H/d, W/d], the encoder's posterior
  mean in the model's *normalised* latent space (the space a diffusion backbone works in);
- ``decode(z)``: z [B, C, h, w] normalised -> y [B, 3, h*d, w*d] display-encoded in [0, 1], clamped.
Each adapter owns its model's conventions, converted once here: the image range ([0, 1] for ours, [-1, 1] for
diffusers VAEs) and the latent normalisation read from the model (``scaling_factor``/``shift_factor`` in its
config, or the FLUX.2 VAE's stored batch-norm statistics). Nothing else in latenthdr scales latents.

Adapters: :class:`DiffusersKLCodec` (diffusers ``AutoencoderKL``: SD 1.x/2.x, SDXL, SD3, FLUX.1),
:class:`Flux2Codec` (``AutoencoderKLFlux2``) and :class:`TinyCodec` (``AutoencoderTiny``: the TAESD family and
TAEF2). :func:`load_codec` builds one from a spec. diffusers is imported lazily, inside the loaders.

Batches: encode/decode take one leading batch axis and run in chunks of ``chunk_size`` images, so peak memory
does not grow with the batch (a bracket of any length); :func:`encode_bracket`/:func:`decode_bracket` flatten
[B, K, ...] for callers. Panoramas (2:1 equirectangular): ``panorama=True`` pads circularly by
``wrap_columns`` latent columns (``wrap_columns * d`` pixels) on both sides before the network and crops after,
so the result is continuous across the +-180 degree seam. The defaults (8 latent columns for the tiny
codecs, 16 for KL VAEs) cover most of the networks' receptive fields; global layers (attention, GroupNorm)
see slightly different statistics, so the wrap is approximate for them (measured in tests/test_codecs.py).
"""

from __future__ import annotations

import abc
import contextlib
import json
import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from latenthdr.errors import InputError

# (latent_channels, scaling_factor, shift_factor or None) -> latent-space id, for diffusers AutoencoderKL.
# Images larger than this are encoded in bands of rows of about this many pixels (``LatentCodec.encode_radius_px``):
# what bounds the encoder's activations (TAEF2 holds 64 float32 channels per full-resolution pixel).
ENCODE_BAND_PIXELS = 1 << 20

KNOWN_KL_SPACES = {
    (4, 0.18215, None): "sd",
    (4, 0.13025, None): "sdxl",
    (16, 1.5305, 0.0609): "sd3",
    (16, 0.3611, 0.1159): "flux1",
}
CODEC_SPEC_FORMS = ("'taef2'", "'taef2:/dir/with/taef2_*.pth'", "a local diffusers VAE directory (config.json) "
                    "or pipeline directory (vae/config.json)", "a Hugging Face hub id 'org/name' (subfolder 'vae')")


class LatentCodec(abc.ABC):
    """An image <-> latent codec of one latent space (module docstring has the contract).

    Attributes: ``space`` (latent-space id, e.g. "taef2", "flux1", "sdxl"; heads record it), ``latent_channels``
    (C), ``downscale`` (d, 8 for every released model), ``wrap_columns`` (panorama padding, latent columns),
    ``module`` (the wrapped torch module, frozen, eval mode).
    Adapters implement ``_encode_raw``/``_decode_raw`` (model-native latents) and, when the model scales its
    latents, ``normalise``/``denormalise``.
    """

    default_wrap_columns = 8  # latent columns of circular padding per side for panoramas

    def __init__(self, module: nn.Module, space: str, latent_channels: int, downscale: int,
                 wrap_columns: int | None = None):
        self.module = module.eval().requires_grad_(False)
        self.space = space
        self.latent_channels = int(latent_channels)
        self.downscale = int(downscale)
        self.wrap_columns = int(self.default_wrap_columns if wrap_columns is None else wrap_columns)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(space={self.space!r}, latent_channels={self.latent_channels}, "
                f"downscale={self.downscale}, device={self.device}, dtype={self.dtype})")

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.module.parameters()).dtype

    def to(self, device=None, dtype: torch.dtype | None = None) -> "LatentCodec":
        """Move the wrapped model (in place) and return self."""
        nn.Module.to(self.module, device=device, dtype=dtype)  # diffusers' .to() logs a warning for any dtype
        return self

    @abc.abstractmethod
    def _encode_raw(self, y: torch.Tensor) -> torch.Tensor:
        """y [n, 3, H, W] display [0, 1], model dtype/device -> model-native latent [n, C, H/d, W/d]."""

    def _encode_bands(self, x: torch.Tensor, band_pixels: int) -> torch.Tensor:
        """The front over bands of whole rows of ``x`` [n, 3, H, W] (about ``band_pixels`` pixels each, margins
        aside), concatenated at the latent grid: the same features as the front on the whole image, with memory
        set by the band."""
        d, (height, width) = self.downscale, x.shape[-2:]
        margin = -(-self.encode_radius_px // d) * d
        rows = max(d, band_pixels // width // d * d)
        parts = []
        for a in range(0, height, rows):
            b = min(a + rows, height)
            lo, hi = max(a - margin, 0), min(b + margin, height)
            features = self._encode_front(x[..., lo:hi, :])
            parts.append(features[..., (a - lo) // d:(b - lo) // d, :])
        return torch.cat(parts, dim=-2)

    @abc.abstractmethod
    def _decode_raw(self, z_raw: torch.Tensor) -> torch.Tensor:
        """Model-native latent [n, C, h, w] -> display-encoded image [n, 3, h*d, w*d], about [0, 1], unclamped."""

    # Tiled decoding (``decode_cells``): the decoder split into a stem that runs on whole frames at the latent
    # grid (where a model keeps its global layers: TAEF2's GroupNorm pools) and a tail of local layers that runs
    # on windows. ``tail_radius`` is the tail's receptive-field radius in latent cells (a window needs that much
    # latent context on each side to decode its core exactly); None: the model cannot be decoded in windows.
    tail_radius: int | None = None
    # Latent cells times frames that one call of the tail may decode (selective decoding): about 0.5 GB per layer's
    # activations for TAESD-family decoders, whose last blocks hold 64 float32 channels per output pixel (64 pixels
    # per cell). 2^14 (one frame per call of a large window) decoded TAEF2 1.1-1.6x slower than 2^16 on 1 MP.
    tail_cell_frames: int = 1 << 15

    # Banded encoding (``encode`` of large images): the encoder split into a *front* of local layers that runs on
    # bands of whole rows, each widened by ``encode_radius_px`` pixels of context above and below (rounded up to
    # whole latent cells, so every strided layer samples where the whole image's does), and a *back* that runs on
    # the whole latent grid (TAEF2's GroupNorm pools). None: the encoder runs on whole images only.
    encode_radius_px: int | None = None

    def _encode_front(self, y: torch.Tensor) -> torch.Tensor:
        """Image [n, 3, H, W] (model dtype) -> the back's input at the latent grid."""
        return self._encode_raw(y)

    def _encode_back(self, features: torch.Tensor) -> torch.Tensor:
        """The front's output [n, F, h, w] -> model-native latent [n, C, h, w]."""
        return features

    def _decode_stem(self, z_raw: torch.Tensor) -> torch.Tensor:
        """Model-native latent [n, C, h, w] -> the tail's input at the latent grid (model dtype)."""
        return z_raw

    def _decode_tail(self, features: torch.Tensor) -> torch.Tensor:
        """The stem's output [n, F, h, w] -> display image [n, 3, h*d, w*d], unclamped."""
        return self._decode_raw(features)

    def normalise(self, z_raw: torch.Tensor) -> torch.Tensor:
        """Model-native latent -> normalised latent (float32). Identity unless the model scales its latents."""
        return z_raw

    def denormalise(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latent -> model-native latent (float32); inverse of :meth:`normalise`."""
        return z

    def encode(self, y: torch.Tensor, *, chunk_size: int = 4, panorama: bool = False,
               grad: bool = False) -> torch.Tensor:
        """Images -> normalised posterior-mean latents.

        y: [B, 3, H, W] float, display-encoded RGB in [0, 1], H and W multiples of ``downscale``.
        Returns z [B, C, H/d, W/d] with y's dtype and device. ``panorama``: wrap horizontally (2:1 latlong).
        ``grad``: keep autograd (for losses through the encoder); otherwise runs under torch.inference_mode.
        """
        _check_batch(y, "y", 3, self.downscale)
        _check_chunk_size(chunk_size)
        with _autograd(grad):
            chunks = [self._encode_chunk(part, panorama) for part in y.split(chunk_size)]
        return torch.cat(chunks).to(device=y.device, dtype=y.dtype)  # outside inference mode: a normal tensor

    def _encode_chunk(self, y: torch.Tensor, panorama: bool) -> torch.Tensor:
        p = min(self.wrap_columns, y.shape[-1] // self.downscale) if panorama else 0
        x = y.to(device=self.device, dtype=self.dtype)
        if p:
            x = F.pad(x, (p * self.downscale, p * self.downscale, 0, 0), mode="circular")
        if self.encode_radius_px is not None and x.shape[-2] * x.shape[-1] > ENCODE_BAND_PIXELS:
            z_raw = self._encode_back(self._encode_bands(x, ENCODE_BAND_PIXELS)).float()
        else:
            z_raw = self._encode_raw(x).float()
        if p:
            z_raw = z_raw[..., p:-p]
        return self.normalise(z_raw)

    def decode(self, z: torch.Tensor, *, chunk_size: int = 4, panorama: bool = False,
               grad: bool = False) -> torch.Tensor:
        """Normalised latents -> display-encoded images.

        z: [B, C, h, w] float in this codec's normalised latent space. Returns y [B, 3, h*d, w*d] in [0, 1]
        (clamped), display-encoded, with z's dtype and device. Runs ``chunk_size`` latents at a time, so peak
        memory is that of one chunk. ``panorama``: wrap horizontally so the +-180 degree seam is continuous.
        ``grad``: keep autograd (for a decoded-pixel loss); otherwise runs under torch.inference_mode.
        """
        _check_batch(z, "z", self.latent_channels, 1)
        _check_chunk_size(chunk_size)
        with _autograd(grad):
            chunks = [self._decode_chunk(part, panorama) for part in z.split(chunk_size)]
        return torch.cat(chunks).to(device=z.device, dtype=z.dtype)

    def _decode_chunk(self, z: torch.Tensor, panorama: bool) -> torch.Tensor:
        p = min(self.wrap_columns, z.shape[-1]) if panorama else 0
        z_raw = self.denormalise(z.to(device=self.device, dtype=torch.float32))
        if p:
            z_raw = F.pad(z_raw, (p, p, 0, 0), mode="circular")
        y = self._decode_raw(z_raw.to(self.dtype)).float()
        if p:
            y = y[..., p * self.downscale:-p * self.downscale]
        return y.clamp(0.0, 1.0)


class DiffusersKLCodec(LatentCodec):
    """diffusers ``AutoencoderKL`` (SD 1.x/2.x, SDXL, SD3, FLUX.1).

    Images enter the VAE in [-1, 1] (converted here from [0, 1]). Latents: z = (mu - shift) * scale with
    ``scale = vae.config.scaling_factor`` and ``shift = vae.config.shift_factor`` (0 when absent or None),
    mu = ``latent_dist.mean`` (METHOD.md "Symbols": the posterior mean is the target). Decoding inverts it.
    Panorama wrap: 16 latent columns per side, as these VAEs' receptive fields are wide (GroupNorm everywhere,
    attention in the mid block).
    """

    default_wrap_columns = 16

    def __init__(self, vae: nn.Module, space: str | None = None, wrap_columns: int | None = None):
        config = vae.config
        self.scale = float(config.get("scaling_factor", 1.0) or 1.0)
        self.shift = float(config.get("shift_factor", None) or 0.0)
        downscale = 2 ** (len(config["block_out_channels"]) - 1)
        super().__init__(vae, space or kl_space_id(vae), config["latent_channels"], downscale, wrap_columns)

    def _encode_raw(self, y):
        return self.module.encode(y * 2.0 - 1.0).latent_dist.mean

    def _decode_raw(self, z_raw):
        return (self.module.decode(z_raw).sample + 1.0) / 2.0

    def normalise(self, z_raw):
        return (z_raw - self.shift) * self.scale

    def denormalise(self, z):
        return z / self.scale + self.shift


class Flux2Codec(DiffusersKLCodec):
    """diffusers ``AutoencoderKLFlux2`` (the FLUX.2 VAE), normalised the way diffusers' Flux2Pipeline does it.

    The pipeline patchifies mu [C, h, w] into [C*p*p, h/p, w/p] (p = 2) and standardises each of those channels
    with the VAE's stored batch-norm statistics: z = (mu - running_mean) / sqrt(running_var + batch_norm_eps).
    We apply the same per-(channel, position-in-patch) statistics without patchifying, so z stays [C, h, w]
    on the 1/8 grid (a backbone adapter patchifies it for the transformer). The statistics tile from the
    top-left corner, which is also how the pipeline's patchify aligns them.
    """

    def __init__(self, vae: nn.Module, space: str | None = None, wrap_columns: int | None = None):
        super().__init__(vae, space, wrap_columns)
        self.patch = tuple(vae.config.get("patch_size", (2, 2)))
        self.eps = float(vae.config.get("batch_norm_eps", 1e-4))

    def _statistics(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std maps [C, h, w] (float32, z's device) tiled from the batch-norm statistics."""
        ph, pw = self.patch
        c, h, w = z.shape[-3:]
        bn = self.module.bn
        mean = bn.running_mean.float().view(c, ph, pw)
        std = torch.sqrt(bn.running_var.float() + self.eps).view(c, ph, pw)
        reps = (1, -(-h // ph), -(-w // pw))
        tile = lambda s: s.repeat(reps)[:, :h, :w].to(z.device)  # noqa: E731
        return tile(mean), tile(std)

    def normalise(self, z_raw):
        mean, std = self._statistics(z_raw)
        return (z_raw - mean) / std

    def denormalise(self, z):
        mean, std = self._statistics(z)
        return z * std + mean


class TinyCodec(LatentCodec):
    """diffusers ``AutoencoderTiny`` (the TAESD family, and TAEF2 with its pools, see models/taef2.py).

    diffusers' tiny encoder takes [-1, 1] and its decoder returns [-1, 1] (both convert to TAESD's native
    [0, 1] inside); we convert at this boundary. Latents: z = (raw - shift_factor) * scaling_factor from the
    config (1 and 0 for TAESD/TAEF2, whose raw latents are already in their target space).
    Tiled decoding: the stem is the decoder's input clamp and its layers before the first upsampling (TAEF2's
    pools, whose GroupNorm sees the whole frame, sit there); the tail is the rest, 3x3 convolutions only.
    """

    def __init__(self, vae: nn.Module, space: str | None = None, wrap_columns: int | None = None):
        config = vae.config
        self.scale = float(config.get("scaling_factor", 1.0) or 1.0)
        self.shift = float(config.get("shift_factor", None) or 0.0)
        downscale = 2 ** (len(config["num_encoder_blocks"]) - 1)
        channels = config["latent_channels"]
        space = space or _custom_space_id(vae, channels, self.scale, self.shift)
        super().__init__(vae, space, channels, downscale, wrap_columns)

    def _encode_raw(self, y):
        return self.module.encode(y * 2.0 - 1.0).latents

    def _decode_raw(self, z_raw):
        return (self.module.decode(z_raw).sample + 1.0) / 2.0

    @property
    def _encode_split(self) -> int:
        """Index of the encoder's first layer with a global one (a GroupNorm pool) in it: where the front ends."""
        layers = self.module.encoder.layers
        return next((i for i, layer in enumerate(layers) if any(isinstance(m, nn.GroupNorm) for m in layers[i].modules())),
                    len(layers))

    @property
    def encode_radius_px(self) -> int:
        return math.ceil(encoder_stack_radius(self.module.encoder.layers[: self._encode_split]))

    def _encode_front(self, y):
        x = (y * 2.0 - 1.0).add(1).div(2)  # what encode() and EncoderTiny.forward do, to the same bits
        return self.module.encoder.layers[: self._encode_split](x)

    def _encode_back(self, features):
        return self.module.encoder.layers[self._encode_split:](features)

    @property
    def _split(self) -> int:
        """Index of the decoder's first upsampling layer: where the stem ends."""
        layers = self.module.decoder.layers
        return next(i for i, layer in enumerate(layers) if isinstance(layer, nn.Upsample))

    @property
    def tail_radius(self) -> int:
        return math.ceil(conv_stack_radius(self.module.decoder.layers[self._split:]))

    def _decode_stem(self, z_raw):
        return self.module.decoder.layers[: self._split](torch.tanh(z_raw / 3.0) * 3.0)  # DecoderTiny.forward

    def _decode_tail(self, features):
        return self.module.decoder.layers[self._split:](features)  # [0, 1]: forward's [-1, 1] undone

    def normalise(self, z_raw):
        return (z_raw - self.shift) * self.scale

    def denormalise(self, z):
        return z / self.scale + self.shift


def conv_stack_radius(layers: nn.Module) -> float:
    """Receptive-field radius of a stack of local layers, in cells of its input grid: each k x k convolution
    adds (k - 1) / 2 cells of its own resolution; a 2x upsampling (``nn.Upsample`` or a pixel shuffle) halves
    the size of a cell. Walks submodules in registration order, which is their order of use in the TAESD blocks
    and the embedded decoder (a residual skip adds nothing to the radius)."""
    radius, scale = 0.0, 1.0
    for module in layers.modules():
        if isinstance(module, nn.Upsample):
            scale *= float(module.scale_factor)
        elif isinstance(module, nn.PixelShuffle):
            scale *= module.upscale_factor
        elif isinstance(module, nn.Conv2d):
            radius += (module.kernel_size[0] - 1) / 2 * module.dilation[0] / scale
    return radius


def encoder_stack_radius(layers: nn.Module) -> float:
    """Receptive-field radius of a stack of local encoder layers, in input pixels: each k x k convolution adds
    (k - 1) / 2 of its input's pixels, and its stride (or a pixel unshuffle) makes the next layers' pixels larger.
    Walks submodules in registration order, their order of use in the TAESD blocks."""
    radius, scale = 0.0, 1.0
    for module in layers.modules():
        if isinstance(module, nn.Conv2d):
            radius += (module.kernel_size[0] - 1) / 2 * module.dilation[0] * scale
            scale *= module.stride[0]
        elif isinstance(module, nn.PixelUnshuffle):
            scale *= module.downscale_factor
    return radius


class WindowDecoder:
    """Decodes windows of latent cells of N frames on demand, as the whole frames would decode there.

    z: [N, C, h, w] normalised latents. The decoder's stem (``LatentCodec._decode_stem``) runs once per frame, on
    the whole grid with the panorama wrap of :meth:`LatentCodec.decode`, when that frame is first asked for; the
    tail runs on each window widened by ``margin`` cells of latent context per side (default
    ``codec.tail_radius``: exact), or up to the frame's border, where the full decode meets zero padding as the
    window then does; panoramas' windows wrap at +-180 degrees.
    """

    def __init__(self, codec: LatentCodec, z: torch.Tensor, *, panorama: bool = False, margin: int | None = None):
        _check_rank(z, "z", 4)
        margin = codec.tail_radius if margin is None else margin
        if margin is None:
            raise InputError("codec", f"{type(codec).__name__} has global layers after its latent grid; it cannot "
                                      "be decoded in windows")
        self.codec, self.z, self.panorama, self.margin = codec, z, panorama, int(margin)
        self._stems: dict[int, torch.Tensor] = {}

    @torch.inference_mode()
    def decode(self, frames: list[int], r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
        """Cells [r0, r1) x [c0, c1) of ``frames`` -> [len(frames), 3, (r1 - r0) d, (c1 - c0) d] display [0, 1]."""
        h, w = self.z.shape[-2:]
        d = self.codec.downscale
        rows, top = _window_index(r0, r1, self.margin, h, wrap=False)
        cols, left = _window_index(c0, c1, self.margin, w, wrap=self.panorama)
        rows = slice(int(rows[0]), int(rows[-1]) + 1)  # never wraps; a slice, not a gather
        window = torch.stack([self._stem(k)[:, rows].index_select(-1, cols) for k in frames])
        y = self.codec._decode_tail(window).float().clamp(0.0, 1.0)
        return y[..., top * d:(top + r1 - r0) * d, left * d:(left + c1 - c0) * d].to(self.z.device)

    def _stem(self, k: int) -> torch.Tensor:
        if k not in self._stems:
            codec, z = self.codec, self.z[k:k + 1]
            p = min(codec.wrap_columns, z.shape[-1]) if self.panorama else 0
            z_raw = codec.denormalise(z.to(device=codec.device, dtype=torch.float32))
            if p:
                z_raw = F.pad(z_raw, (p, p, 0, 0), mode="circular")
            features = codec._decode_stem(z_raw.to(codec.dtype))[0]
            self._stems[k] = features[..., p:-p] if p else features
        return self._stems[k]


def decode_cells(codec: LatentCodec, z: torch.Tensor, cells: torch.Tensor, out: torch.Tensor, *,
                 panorama: bool = False, tile: int = 16, margin: int | None = None,
                 chunk_size: int = 4) -> torch.Tensor:
    """Decode only the latent cells the caller wants, in every frame, into ``out``; returns the cells decoded.

    z: [N, C, h, w] normalised latents; cells: [h, w] bool; out: [N, 3, h d, w d] float, written where decoded
    (display [0, 1]) and left as it is elsewhere. Each run of adjacent ``tile`` x ``tile`` tiles holding a wanted
    cell (``tile_runs``) is one :class:`WindowDecoder` window, run for ``chunk_size`` frames at a time.
    Returns [h, w] bool: the cells written (whole tiles).
    """
    n, _, h, w = z.shape
    d = codec.downscale
    if cells.shape != (h, w) or out.shape != (n, 3, h * d, w * d):
        raise InputError("cells/out", f"cells {tuple(cells.shape)} and out {tuple(out.shape)} do not match z "
                                      f"{tuple(z.shape)}")
    decoder = WindowDecoder(codec, z, panorama=panorama, margin=margin)
    decoded = torch.zeros(h, w, dtype=torch.bool)
    for r0, r1, c0, c1 in tile_runs(cells, tile):
        for k in range(0, n, chunk_size):
            frames = list(range(k, min(k + chunk_size, n)))
            out[frames, :, r0 * d:r1 * d, c0 * d:c1 * d] = decoder.decode(frames, r0, r1, c0, c1).to(out)
        decoded[r0:r1, c0:c1] = True
    return decoded


def tile_runs(cells: torch.Tensor, tile: int) -> list[tuple[int, int, int, int]]:
    """Windows (r0, r1, c0, c1) of cells covering every ``tile`` x ``tile`` tile that holds a wanted cell: the
    bounding box of each 8-connected group of such tiles, or, where that box would be more than twice the
    group's own tiles, each row of the group's tiles cut into runs of adjacent tiles."""
    h, w = cells.shape
    rows, cols = -(-h // tile), -(-w // tile)
    padded = torch.zeros(rows * tile, cols * tile, dtype=torch.bool)
    padded[:h, :w] = cells
    wanted = padded.view(rows, tile, cols, tile).any(dim=3).any(dim=1).tolist()
    windows = []
    for box, group in tile_groups(wanted):
        if group.size <= 2 * group.sum():
            windows.append((box[0].start, box[0].stop, box[1].start, box[1].stop))
            continue
        for i, row in enumerate(group):
            j = 0
            while j < len(row):
                if row[j]:
                    start = j
                    while j < len(row) and row[j]:
                        j += 1
                    windows.append((box[0].start + i, box[0].start + i + 1, box[1].start + start, box[1].start + j))
                j += 1
    return [(r0 * tile, min(r1 * tile, h), c0 * tile, min(c1 * tile, w)) for r0, r1, c0, c1 in windows]


def tile_groups(wanted: list[list[bool]]) -> list[tuple[tuple[slice, slice], "np.ndarray"]]:
    """The 8-connected groups of True cells of a small grid (rows of bools), numbered as ``scipy.ndimage.label``
    numbers them (raster order of each group's first cell): (bounding box (row slice, column slice), the group's
    cells in its box as a bool array). A flood fill in Python: the grids are of tiles (tens to hundreds of cells),
    and importing scipy.ndimage for them took a fifth of a second of every ``convert``."""
    import numpy as np

    n_rows, n_cols = len(wanted), len(wanted[0]) if wanted else 0
    label = [[0] * n_cols for _ in range(n_rows)]
    groups = []
    for r in range(n_rows):
        for c in range(n_cols):
            if not wanted[r][c] or label[r][c]:
                continue
            index, members, stack = len(groups) + 1, [], [(r, c)]
            label[r][c] = index
            while stack:
                i, j = stack.pop()
                members.append((i, j))
                for a in range(max(i - 1, 0), min(i + 2, n_rows)):
                    for b in range(max(j - 1, 0), min(j + 2, n_cols)):
                        if wanted[a][b] and not label[a][b]:
                            label[a][b] = index
                            stack.append((a, b))
            r0, r1 = min(i for i, _ in members), max(i for i, _ in members) + 1
            c0, c1 = min(j for _, j in members), max(j for _, j in members) + 1
            group = np.zeros((r1 - r0, c1 - c0), dtype=bool)
            for i, j in members:
                group[i - r0, j - c0] = True
            groups.append(((slice(r0, r1), slice(c0, c1)), group))
    return groups


def window_cells(windows, margin: int, h: int, w: int, panorama: bool = False) -> int:
    """Latent cells the decoder's tail runs on for ``windows`` (margins included): their cost against h * w."""
    total = 0
    for r0, r1, c0, c1 in windows:
        total += len(_window_index(r0, r1, margin, h, False)[0]) * len(_window_index(c0, c1, margin, w, panorama)[0])
    return total


def _window_index(a: int, b: int, margin: int, size: int, wrap: bool) -> tuple[torch.Tensor, int]:
    """Indices of a window over cells [a, b) with ``margin`` cells each side, and where [a, b) starts in it:
    modulo ``size`` when ``wrap`` (a panorama's columns, repeated as circular padding repeats them), else cut at
    the borders (where the full decode meets zero padding, as the window then does)."""
    if wrap:
        return torch.arange(a - margin, b + margin) % size, margin
    lo = max(a - margin, 0)
    return torch.arange(lo, min(b + margin, size)), a - lo


def kl_space_id(vae: nn.Module) -> str:
    """Latent-space id of a diffusers KL VAE from its config (class, channels, scaling, shift).

    "sd" (4 ch, 0.18215), "sdxl" (4, 0.13025), "sd3" (16, 1.5305, 0.0609), "flux1" (16, 0.3611, 0.1159),
    "flux2" (AutoencoderKLFlux2, 32 ch, 2x2 patches); anything else "custom:<class>:<channels>:<scale>:<shift>".
    """
    config = vae.config
    channels = int(config["latent_channels"])
    if type(vae).__name__ == "AutoencoderKLFlux2":
        patch = tuple(config.get("patch_size", (2, 2)))
        return "flux2" if (channels, patch) == (32, (2, 2)) else f"custom:AutoencoderKLFlux2:{channels}:{patch[0]}x{patch[1]}"
    scale = float(config.get("scaling_factor", 1.0) or 1.0)
    shift = config.get("shift_factor", None)
    shift = None if shift is None or float(shift) == 0.0 else round(float(shift), 6)
    known = KNOWN_KL_SPACES.get((channels, round(scale, 6), shift))
    return known or _custom_space_id(vae, channels, scale, shift or 0.0)


def _custom_space_id(vae: nn.Module, channels: int, scale: float, shift: float) -> str:
    return f"custom:{type(vae).__name__}:{channels}:{scale:g}:{shift:g}"


def encode_bracket(codec: LatentCodec, y: torch.Tensor, chunk_size: int = 4, panorama: bool = False) -> torch.Tensor:
    """y [B, K, 3, H, W] display-encoded [0, 1] -> z [B, K, C, H/d, W/d] (normalised), in chunks of images."""
    _check_rank(y, "y", 5)
    z = codec.encode(y.flatten(0, 1), chunk_size=chunk_size, panorama=panorama)
    return z.unflatten(0, y.shape[:2])


def decode_bracket(codec: LatentCodec, z: torch.Tensor, chunk_size: int = 4, panorama: bool = False) -> torch.Tensor:
    """z [B, K, C, h, w] normalised latents -> y [B, K, 3, h*d, w*d] display-encoded [0, 1], in chunks."""
    _check_rank(z, "z", 5)
    y = codec.decode(z.flatten(0, 1), chunk_size=chunk_size, panorama=panorama)
    return y.unflatten(0, z.shape[:2])


def channel_display_gains(codec: LatentCodec, size: int = 8, step: float = 0.25) -> torch.Tensor:
    """How much one unit of each normalised latent channel moves the decoded image: float32 [C].

    g_c = RMS over pixels and colours of (decode(z + step e_c) - decode(z - step e_c)) / (2 step) at z = 0 (the
    latent mean, a mid-grey image), on a ``size`` x ``size`` latent grid, ignoring the outer cell of pixels
    (zero padding). Exact for a linear patch codec, a linearisation elsewhere. Normalising latents to unit
    variance per channel makes a latent unit worth very different display changes across channels: in the
    embedded codec channel 0 (the patch mean, the brightness the merge reads) moves the image about 20x more
    than any other, so an unweighted latent MSE hardly sees brightness errors (training/head.py,
    ``display_weight``).
    """
    c, d = codec.latent_channels, codec.downscale
    z = torch.zeros(2 * c, c, size, size, device=codec.device)
    channels = torch.arange(c)
    z[channels, channels], z[c + channels, channels] = step, -step
    y = codec.decode(z)  # [2C, 3, size*d, size*d] display
    slope = (y[:c] - y[c:])[..., d:-d, d:-d] / (2 * step)
    return slope.float().square().mean(dim=(1, 2, 3)).sqrt().cpu()


def load_codec(spec: str, device="cpu", dtype: torch.dtype = torch.float32, space: str | None = None) -> LatentCodec:
    """A codec from a spec (forms in CODEC_SPEC_FORMS); ``space`` overrides the derived latent-space id.

    "taef2" finds its weights as :func:`latenthdr.models.taef2.find_taef2_weights` describes. A diffusers VAE
    whose config asks for ``force_upcast`` is kept in float32 when ``dtype`` is float16 (those VAEs overflow
    in fp16). Hub ids go through diffusers' ``from_pretrained`` (the local Hugging Face cache, or a download).
    """
    from latenthdr.models import taef2

    spec = str(spec)
    if spec == "taef2" or spec.startswith("taef2:"):
        path = spec.split(":", 1)[1] if ":" in spec else None
        return TinyCodec(taef2.load_taef2(path, device, dtype), space=space or "taef2")
    local = Path(spec).expanduser()
    if local.is_dir():
        if (local / taef2.ENCODER_FILE).is_file():
            return TinyCodec(taef2.load_taef2(local, device, dtype), space=space or "taef2")
        if not (local / "config.json").is_file() and (local / "vae" / "config.json").is_file():
            local = local / "vae"
        if (local / "config.json").is_file():
            return codec_from_module(_load_diffusers(str(local), None, device, dtype), space)
    if not local.exists() and re.fullmatch(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*", spec):
        return codec_from_module(_load_hub(spec, device, dtype), space)
    raise InputError("codec", f"cannot load {spec!r}; accepted: {', '.join(CODEC_SPEC_FORMS)}")


def codec_from_module(vae: nn.Module, space: str | None = None) -> LatentCodec:
    """Wrap a diffusers VAE instance in its adapter; InputError for an unsupported class."""
    import diffusers

    if isinstance(vae, diffusers.AutoencoderKLFlux2):
        return Flux2Codec(vae, space)
    if isinstance(vae, diffusers.AutoencoderKL):
        return DiffusersKLCodec(vae, space)
    if isinstance(vae, diffusers.AutoencoderTiny):
        return TinyCodec(vae, space)
    raise InputError("codec", f"unsupported VAE class {type(vae).__name__}; accepted: AutoencoderKL, "
                              "AutoencoderKLFlux2, AutoencoderTiny")


def _load_diffusers(path: str, subfolder: str | None, device, dtype) -> nn.Module:
    from diffusers import AutoModel

    config_path = Path(path) / "config.json"
    if config_path.is_file() and dtype == torch.float16 and json.loads(config_path.read_text()).get("force_upcast"):
        dtype = torch.float32
    kwargs = {"subfolder": subfolder} if subfolder else {}
    vae = AutoModel.from_pretrained(path, torch_dtype=dtype, **kwargs)
    if dtype == torch.float16 and vae.config.get("force_upcast"):
        vae = vae.float()
    return vae.to(device).eval()


def _load_hub(repo_id: str, device, dtype) -> nn.Module:
    """A hub VAE: the repo's ``vae`` subfolder (a pipeline repo), else its root (a VAE-only repo)."""
    try:
        return _load_diffusers(repo_id, "vae", device, dtype)
    except (OSError, ValueError) as first:
        try:
            return _load_diffusers(repo_id, None, device, dtype)
        except (OSError, ValueError) as second:
            raise InputError("codec", f"cannot load hub id {repo_id!r} (subfolder 'vae': {first}; "
                                      f"root: {second})") from second


def _autograd(grad: bool):
    return contextlib.nullcontext() if grad else torch.inference_mode()


def _check_rank(x, argument: str, rank: int) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != rank or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputError(argument, f"expected a float tensor of rank {rank}, got {shape}")


def _check_batch(x, argument: str, channels: int, multiple: int) -> None:
    _check_rank(x, argument, 4)
    if x.shape[1] != channels:
        raise InputError(argument, f"expected {channels} channels in [B, {channels}, H, W], got shape {tuple(x.shape)}")
    if x.shape[-1] % multiple or x.shape[-2] % multiple:
        raise InputError(argument, f"height and width must be multiples of {multiple}, got {tuple(x.shape[-2:])}")


def _check_chunk_size(chunk_size: int) -> None:
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise InputError("chunk_size", f"expected a positive integer, got {chunk_size!r}")
