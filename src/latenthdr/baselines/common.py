"""What every image-to-HDR baseline shares: input checks, per-image iteration and the output's scale.

Contract of a baseline (``latenthdr.baselines``): ``ldr`` is a torch tensor ``[..., 3, H, W]``, display-encoded in
[0, 1] with display curve ``curve`` (the l2h benchmark's 8-bit gamma-2.2 EV-0 frame); the result is linear relative
radiance, float32, ``[..., 3, H, W]``, >= 0 and finite, with 1.0 = the input's clipping level (DESIGN.md
"Conventions"), on the input's device.
"""

from __future__ import annotations

import torch

from latenthdr import metrics, response
from latenthdr.errors import InputError


def check_ldr(ldr, curve: str = "gamma2.2", argument: str = "ldr") -> torch.Tensor:
    """``ldr`` as float32 ``[..., 3, H, W]`` after checking it is finite and display-encoded in [0, 1]."""
    response.check_curve(curve)
    if not isinstance(ldr, torch.Tensor) or ldr.ndim < 3 or ldr.shape[-3] != 3 or ldr.numel() == 0:
        found = tuple(ldr.shape) if isinstance(ldr, torch.Tensor) else type(ldr).__name__
        raise InputError(argument, f"expected a non-empty tensor [..., 3, H, W], got {found}")
    x = ldr if ldr.dtype in (torch.float32, torch.float64) else ldr.float()
    if not torch.isfinite(x).all():
        raise InputError(argument, "contains NaN or Inf values; accepted: finite display values in [0, 1]")
    if x.min() < 0 or x.max() > 1:
        raise InputError(argument, f"values span [{x.min().item():.4g}, {x.max().item():.4g}]; accepted: "
                                   "display-encoded values in [0, 1]")
    return x.float()


def per_image(fn, ldr: torch.Tensor) -> torch.Tensor:
    """Apply ``fn`` ([3, H, W] -> [3, H, W]) to every image of ``ldr`` [..., 3, H, W] (for operators whose
    statistics are per image: min/max, log-mean, connected regions)."""
    flat = ldr.reshape(-1, *ldr.shape[-3:])
    return torch.stack([fn(image) for image in flat]).reshape(ldr.shape)


def change_luminance(rgb: torch.Tensor, Y: torch.Tensor, Y_new: torch.Tensor) -> torch.Tensor:
    """Give linear ``rgb`` [3, H, W] the luminance ``Y_new`` [H, W], keeping each pixel's chromaticity
    (rgb * Y_new / Y; black pixels stay black). Y: the Rec.709 luminance of ``rgb``."""
    ratio = torch.where(Y > 0, Y_new / Y.clamp_min(torch.finfo(Y.dtype).tiny), torch.zeros_like(Y))
    return rgb * ratio.unsqueeze(-3)


def match_input_scale(hdr: torch.Tensor, ldr: torch.Tensor, curve: str = "gamma2.2") -> torch.Tensor:
    """Express a display-referred expansion (cd/m2, or a network's [0, 1]) in the library's relative scale:
    one global factor per image such that, over the input's well-exposed pixels, its luminance matches the
    linearised input (``metrics.align_scale``, the l2h benchmark's own alignment, against the input instead of the
    reference). So 1.0 is again the input's clipping level. All pixels are used when none is well exposed.
    hdr, ldr: [3, H, W]. Returns float32 [3, H, W]."""
    linear = response.decode(ldr.double(), curve)
    mask = metrics.well_exposed_mask(ldr)
    try:
        s = metrics.align_scale(hdr.double(), linear, mask)
    except InputError:
        try:
            s = metrics.align_scale(hdr.double(), linear, None)
        except InputError:  # black input or output: nothing to match, keep the output as it is
            s = 1.0
    return (hdr.double() * s).float()
