"""LatentHDRPipeline: named inference stages over a latent codec, an exposure head and the merge.

Data flow (DESIGN.md): image --codec.encode--> z0 --head, one batched pass--> z_e --codec.decode, chunked-->
y_e --merge (METHOD.md Eq. 9)--> H. Text-to-HDR adds a scene source in front of z0. Every stage is a small
method; ``__call__`` only lists them and records their wall times. Inference only: no training code here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from latenthdr import exposure, merge
from latenthdr import panorama as equirect
from latenthdr.errors import InputError


@dataclass
class LatentHDROutput:
    """What one pipeline call returns.

    hdr: [B, 3, H, W] float32 linear radiance, 1.0 = the EV-0 frame's clipping level.
    brackets: [B, K, 3, H, W] float32 display-encoded (``curve``) decoded frames in [0, 1].
    evs: the K exposure values (stops). z0: [B, C, h, w] scene latent. z: [B, K, C, h, w] bracket latents.
    plow / phigh: per-image fractions of pixels that needed the merge's dark / bright fallback.
    timings: wall seconds per stage (encode, head, decode, merge, ...).
    """

    hdr: torch.Tensor
    brackets: torch.Tensor
    evs: tuple[float, ...]
    z0: torch.Tensor
    z: torch.Tensor
    plow: list[float]
    phigh: list[float]
    panorama: bool
    timings: dict[str, float] = field(default_factory=dict)


class LatentHDRPipeline:
    """Image-to-HDR (and, with a scene source, text-to-HDR) with one latent and one batched head pass.

    codec: a ``latenthdr.models.codecs.LatentCodec``; head: an ``ExposureHead`` trained for ``codec.space``.
    curve: the display curve of the bracket frames the head was trained on (METHOD.md: gamma 2.2).
    """

    def __init__(self, codec, head, curve: str = "gamma2.2", decode_chunk_size: int = 4):
        if head.config.space != codec.space:
            raise InputError(
                "head", f"the head was trained for latent space {head.config.space!r}; the codec is {codec.space!r}"
            )
        self.codec, self.head, self.curve = codec, head.eval(), curve
        self.decode_chunk_size = decode_chunk_size

    @classmethod
    def from_pretrained(cls, codec: str | None = None, head: str | None = None, device: str = "cpu", **kwargs):
        """Build from a codec spec (``models.codecs.load_codec``; None: the embedded default) and a head file
        (None: the head shipped for that codec's latent space, ``models.registry``)."""
        from latenthdr.models import registry

        codec_model = registry.load_codec_for(codec, device=device)
        head_model = registry.load_head_for(codec_model, head, device=device)
        return cls(codec_model, head_model, **kwargs)

    @torch.inference_mode()
    def __call__(
        self,
        image: torch.Tensor,
        evs: str | Sequence[float] = exposure.DEFAULT_LADDER,
        panorama: str | bool = "auto",
        blend: bool = False,
    ) -> LatentHDROutput:
        """Image to HDR. image: [B, 3, H, W] or [3, H, W] float display-encoded (``self.curve``) in [0, 1]
        (the EV-0 frame). panorama: "auto" (2:1 aspect), True or False. blend: keep the input where it is well
        exposed and let the predicted frames speak only where it clips (``merge.merge_with_input``)."""
        evs = exposure.parse_ev_ladder(evs)
        image = _check_image(image)
        is_pano = _resolve_panorama(panorama, image.shape[-2:])
        timings: dict[str, float] = {}
        with _timed(timings, "encode"):
            z0 = self.encode(image, is_pano)
        with _timed(timings, "head"):
            z = self.expose(z0, evs, is_pano)
        with _timed(timings, "decode"):
            y = self.decode(z, is_pano, image.shape[-2:])
        with _timed(timings, "merge"):
            result = self.merge(y, evs, image if blend else None)
        return LatentHDROutput(result.hdr, y, evs, z0, z, _per_image(result.plow), _per_image(result.phigh),
                               is_pano, timings)

    def encode(self, image: torch.Tensor, is_pano: bool) -> torch.Tensor:
        """[B,3,H,W] display [0,1] -> z0 [B,C,h,w], padding H, W up to the codec's grid first."""
        return self.codec.encode(_pad_to_multiple(image, self.codec.downscale, is_pano), panorama=is_pano)

    def expose(self, z0: torch.Tensor, evs: Sequence[float], is_pano: bool) -> torch.Tensor:
        """z0 [B,C,h,w] -> z [B,K,C,h,w]: every EV in one batched head pass."""
        return self.head(z0, torch.tensor(evs, dtype=z0.dtype, device=z0.device), panorama=is_pano)

    def decode(self, z: torch.Tensor, is_pano: bool, size) -> torch.Tensor:
        """z [B,K,C,h,w] -> y [B,K,3,H,W] display [0,1], decoded in chunks, cropped to the input size."""
        from latenthdr.models.codecs import decode_bracket

        y = decode_bracket(self.codec, z, chunk_size=self.decode_chunk_size, panorama=is_pano)
        return y[..., : size[0], : size[1]].clamp(0, 1)

    def merge(self, y: torch.Tensor, evs: Sequence[float], image: torch.Tensor | None) -> merge.MergeResult:
        """METHOD.md Eq. 9 over the decoded bracket, or the input-preserving variant when ``image`` is given."""
        if image is None:
            return merge.merge_bracket(y, evs, curve=self.curve)
        return merge.merge_with_input(image, y, evs, curve=self.curve)


def _check_image(image) -> torch.Tensor:
    if not isinstance(image, torch.Tensor):
        raise InputError("image", f"expected a torch tensor [B,3,H,W], got {type(image).__name__}")
    if image.ndim == 3:
        image = image.unsqueeze(0)
    if image.ndim != 4 or image.shape[1] != 3:
        raise InputError("image", f"expected [B,3,H,W] or [3,H,W], got {tuple(image.shape)}")
    if image.shape[-1] < 8 or image.shape[-2] < 8:
        raise InputError("image", f"image is {image.shape[-1]}x{image.shape[-2]}; at least 8x8 is accepted")
    image = image.float()
    if not torch.isfinite(image).all() or image.min() < 0 or image.max() > 1:
        raise InputError("image", "values must be finite display-encoded values in [0, 1]")
    return image


def _resolve_panorama(panorama, size) -> bool:
    if panorama == "auto":
        return equirect.is_equirectangular(int(size[0]), int(size[1]))
    if panorama in ("on", True):
        return True
    if panorama in ("off", False):
        return False
    raise InputError("panorama", f"got {panorama!r}; accepted: auto, on, off")


def _pad_to_multiple(image: torch.Tensor, multiple: int, wrap: bool) -> torch.Tensor:
    """Pad H and W at the bottom/right to a multiple of the codec grid (circular in W for panoramas)."""
    pad_h, pad_w = (-image.shape[-2]) % multiple, (-image.shape[-1]) % multiple
    if pad_w:
        image = F.pad(image, (0, pad_w, 0, 0), mode="circular" if wrap else "replicate")
    if pad_h:
        image = F.pad(image, (0, 0, 0, pad_h), mode="replicate")
    return image


def _per_image(value) -> list[float]:
    if isinstance(value, torch.Tensor):
        return [float(v) for v in value.flatten()]
    return [float(value)]


@contextmanager
def _timed(timings: dict[str, float], stage: str):
    start = time.perf_counter()
    yield
    timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start
