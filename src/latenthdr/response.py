"""Display encodings <-> linear light, quantisation and luminance (no models).

Contract: a *display-encoded* value ``y`` is in [0, 1] (what an 8-bit file or a VAE sees after its own
range convention); a *linear* value ``x`` is relative radiance, with 1.0 the clipping level of the
frame. Every function accepts a numpy array or a torch tensor of any shape and returns the same kind,
computing in at least float32.

Curves (``DisplayCurve``):
- ``"gamma2.2"``: y = x^(1/2.2), the paper's bracket convention (METHOD.md "Bracket frame").
- ``"srgb"``: IEC 61966-2-1 piecewise sRGB transfer function.
- ``"linear"``: identity (for inputs that are already linear, such as 16-bit linear TIFFs).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from latenthdr.errors import InputError

DisplayCurve = Literal["gamma2.2", "srgb", "linear"]
DISPLAY_CURVES: tuple[str, ...] = ("gamma2.2", "srgb", "linear")
GAMMA = 2.2
REC709_LUMA = (0.2126, 0.7152, 0.0722)  # ITU-R BT.709 luminance weights for linear RGB

_SRGB_A = 0.055
_SRGB_LINEAR_BREAK = 0.0031308  # linear value where sRGB switches from the line to the power law
_SRGB_DISPLAY_BREAK = 0.04045  # the same point in display-encoded values


def check_curve(curve: str, argument: str = "curve") -> str:
    """Return ``curve`` if it names a supported display curve, else raise InputError."""
    if curve not in DISPLAY_CURVES:
        raise InputError(argument, f"unknown display curve {curve!r}; accepted: {', '.join(DISPLAY_CURVES)}")
    return curve


def _as_float(x):
    if isinstance(x, torch.Tensor):
        return x if x.dtype in (torch.float32, torch.float64) else x.float()
    x = np.asarray(x)
    return x if x.dtype in (np.float32, np.float64) else x.astype(np.float32)


def _where(cond, a, b):
    return torch.where(cond, a, b) if isinstance(cond, torch.Tensor) else np.where(cond, a, b)


def _clip(x, lo, hi):
    return x.clamp(lo, hi) if isinstance(x, torch.Tensor) else np.clip(x, lo, hi)


def encode(x, curve: DisplayCurve = "gamma2.2"):
    """Linear [0, 1] -> display-encoded [0, 1]. Values outside [0, 1] are clipped first."""
    check_curve(curve)
    x = _clip(_as_float(x), 0.0, 1.0)
    if curve == "gamma2.2":
        return x ** (1.0 / GAMMA)
    if curve == "srgb":
        return _where(x <= _SRGB_LINEAR_BREAK, 12.92 * x, (1 + _SRGB_A) * x ** (1 / 2.4) - _SRGB_A)
    return x


def decode(y, curve: DisplayCurve = "gamma2.2"):
    """Display-encoded [0, 1] -> linear [0, 1] (the inverse of ``encode``). Inputs are clipped to [0, 1]."""
    check_curve(curve)
    y = _clip(_as_float(y), 0.0, 1.0)
    if curve == "gamma2.2":
        return y**GAMMA
    if curve == "srgb":
        return _where(y <= _SRGB_DISPLAY_BREAK, y / 12.92, ((y + _SRGB_A) / (1 + _SRGB_A)) ** 2.4)
    return y


def quantize(y, bits: int = 8):
    """Round display-encoded values in [0, 1] to ``bits``-bit code values, returned as floats in [0, 1]."""
    if bits not in (8, 10, 12, 16):
        raise InputError("bits", f"got {bits}; accepted: 8, 10, 12, 16")
    levels = float(2**bits - 1)
    y = _clip(_as_float(y), 0.0, 1.0)
    return (y * levels).round() / levels if isinstance(y, torch.Tensor) else np.round(y * levels) / levels


def luminance(rgb, channel_axis: int = -1):
    """Rec.709 relative luminance Y of linear RGB along ``channel_axis`` (that axis must have size 3)."""
    rgb = _as_float(rgb)
    if rgb.shape[channel_axis] != 3:
        raise InputError("rgb", f"expected 3 channels on axis {channel_axis}, got shape {tuple(rgb.shape)}")
    if isinstance(rgb, torch.Tensor):
        w = torch.tensor(REC709_LUMA, dtype=rgb.dtype, device=rgb.device)
        return torch.tensordot(rgb.movedim(channel_axis, -1), w, dims=1)
    return np.moveaxis(rgb, channel_axis, -1) @ np.asarray(REC709_LUMA, dtype=rgb.dtype)
