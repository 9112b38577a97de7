"""Absolute photometric scale of an output HDR, on request (DESIGN.md "Conventions"; no models).

Our HDR is relative radiance, 1.0 = the EV-0 frame's clipping level. On request the output edge multiplies it by
one factor k, the same for R, G and B, so that its luminance Y = 0.2126 R + 0.7152 G + 0.0722 B (Rec.709,
``response.luminance``) reads in cd/m^2 (nits):
- ``white_nits(N)``: k = N, so 1.0 relative (the input's clipping level, the EV-0 white) becomes N cd/m^2;
- ``anchor("pP=V")``: the P-th percentile of Y over the pixels becomes V cd/m^2, k = V / Y_P (numpy's percentile,
  linear between order statistics, so the P-th percentile of k Y is V up to rounding);
- ``illuminance(E_v)`` (panoramas): k = E_v / E with E = the integral over the upper hemisphere of Y cos(theta)
  dOmega (``panorama.horizontal_illuminance_weights``), what a lux meter lying flat at the camera reads;
  a uniform sky of luminance L gives E = pi L.
A ``Scale`` is what was asked, checked before any work; ``Scale.resolve(H, panorama)`` finds k on the image and
returns the record the EXR header and the sidecar carry (kind, the number asked, ``factor``, units).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import torch

from latenthdr import panorama as equirect
from latenthdr import response
from latenthdr.errors import InputError

KINDS = ("relative", "white-nits", "percentile", "illuminance")
MAX_NITS = 1e12  # cd/m^2; the sun's disc is about 1.6e9
MAX_LUX = 1e7  # direct sunlight is about 1.2e5 lux
FLOAT32_MAX = float(np.finfo(np.float32).max)
RELATIVE_UNITS = "relative: 1.0 = the EV-0 frame's clipping level"
ABSOLUTE_UNITS = "cd/m^2 (luminance Y of Rec.709 RGB)"


@dataclass(frozen=True)
class Scale:
    """An absolute scale asked for: ``kind`` (``KINDS``), ``value`` (white-nits: N cd/m^2; percentile: V cd/m^2;
    illuminance: lux; relative: 1) and, for the anchor, ``percentile`` P in (0, 100]."""

    kind: str = "relative"
    value: float = 1.0
    percentile: float | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise InputError("scale", f"kind {self.kind!r}; accepted: {', '.join(KINDS)}")

    def resolve(self, H: torch.Tensor, panorama: bool) -> dict:
        """The record of this scale on ``H`` (linear relative RGB [3, H, W], any float dtype): kind, the numbers
        asked, ``factor`` k, ``units``, and what k was derived from. InputError (naming the flag) when the image is
        black where the scale is read, when k would take values beyond float32, or for illuminance on a picture."""
        if self.kind == "relative":
            return {"kind": "relative", "factor": 1.0, "units": RELATIVE_UNITS}
        if self.kind == "white-nits":
            _check_range(H, self.value, self.kind)
            return {"kind": self.kind, "white_nits": self.value, "factor": self.value, "units": ABSOLUTE_UNITS}
        Y = response.luminance(H.detach().to("cpu", torch.float64), channel_axis=-3)  # [H, W] relative luminance
        if self.kind == "percentile":
            Y_p = float(np.percentile(Y.numpy().ravel(), self.percentile))
            if not Y_p > 0:
                raise InputError("scale", f"the luminance at percentile {self.percentile:g} is 0 (black); choose a "
                                          "higher percentile")
            record = {"kind": self.kind, "percentile": self.percentile, "value_nits": self.value,
                      "luminance_at_percentile_relative": Y_p, "factor": self.value / Y_p}
        else:
            E = horizontal_illuminance(Y, panorama)
            record = {"kind": self.kind, "illuminance_lux": self.value, "illuminance_relative": E,
                      "factor": self.value / E}
        _check_range(H, record["factor"], self.kind)
        return record | {"units": ABSOLUTE_UNITS}


def horizontal_illuminance(Y: torch.Tensor, panorama: bool = True) -> float:
    """E = integral over the upper hemisphere of Y cos(theta) dOmega, in Y's units times steradians (cd/m^2 -> lux),
    for a luminance panorama Y [H, W] (float, >= 0): sum_ij Y_ij w_i with
    ``panorama.horizontal_illuminance_weights``. InputError for a picture (not 2:1) or a black upper hemisphere."""
    height, width = Y.shape[-2:]
    if not panorama or not equirect.is_equirectangular(height, width):
        raise InputError("illuminance", f"needs a 2:1 panorama (the whole sky above the horizon); this is a "
                                        f"{width}x{height} picture: use --white-nits or --scale")
    w = equirect.horizontal_illuminance_weights(height, width)  # [H] float64
    E = float((Y.to(torch.float64) * w[:, None]).sum())
    if not E > 0:
        raise InputError("illuminance", "the upper hemisphere is black; an illuminance cannot scale it")
    return E


def _check_range(H: torch.Tensor, factor: float, kind: str) -> None:
    peak = float(H.detach().max()) if H.numel() else 0.0
    if not math.isfinite(factor) or peak * factor > FLOAT32_MAX:
        flag = {"white-nits": "white_nits", "percentile": "scale"}.get(kind, kind)
        raise InputError(flag, f"the factor {factor:.6g} takes the peak {peak:.6g} beyond float32's "
                               f"{FLOAT32_MAX:.3g}; choose a smaller value")


def _positive(text, argument: str, what: str, limit: float) -> float:
    """``text`` (a CLI string or a number) as a finite float in (0, limit], or InputError naming ``argument``."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if not (0 < value <= limit):  # also NaN and inf
        raise InputError(argument, f"got {text!r}; accepted: {what} > 0 and <= {limit:g}")
    return value


def relative() -> Scale:
    return Scale()


def white_nits(N, argument: str = "white_nits") -> Scale:
    """1.0 relative = N cd/m^2 (N > 0)."""
    return Scale("white-nits", _positive(N, argument, "a luminance in cd/m^2", MAX_NITS))


def illuminance(lux, argument: str = "illuminance") -> Scale:
    """Horizontal illuminance E_v lux (> 0) at the camera of a panorama."""
    return Scale("illuminance", _positive(lux, argument, "an illuminance in lux", MAX_LUX))


def anchor(spec: str, argument: str = "scale") -> Scale:
    """``"pP=V"``, e.g. ``p99.5=16``: the P-th percentile (0 < P <= 100) of luminance maps to V cd/m^2 (V > 0)."""
    accepted = "pP=V, e.g. p99.5=16: luminance percentile P in (0, 100] maps to V cd/m^2 > 0"
    match = re.fullmatch(r"\s*[pP]\s*([^=\s]+)\s*=\s*(\S+)\s*", spec) if isinstance(spec, str) else None
    if match is None:
        raise InputError(argument, f"got {spec!r}; accepted: {accepted}")
    try:
        P, V = float(match[1]), float(match[2])
    except ValueError:
        raise InputError(argument, f"got {spec!r}; accepted: {accepted}") from None
    if not 0 < P <= 100:
        raise InputError(argument, f"percentile {match[1]} in {spec!r} is outside (0, 100]; accepted: {accepted}")
    if not 0 < V <= MAX_NITS:
        raise InputError(argument, f"value {match[2]} in {spec!r}; accepted: {accepted} (at most {MAX_NITS:g})")
    return Scale("percentile", V, P)
