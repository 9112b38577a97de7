"""Tone mapping for previews, and contact sheets of brackets (no models, no files).

Inputs ``H`` are linear radiance tensors [..., 3, H, W], >= 0, 1.0 = the EV-0 clipping level. Outputs are
display-encoded tensors in [0, 1] (sRGB by default), float32, ready for an 8-bit PNG (io.py writes files).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from latenthdr import response
from latenthdr.errors import InputError

OPERATORS = ("aces", "reinhard", "clip")
# Narkowicz (2016), "ACES Filmic Tone Mapping Curve": f(x) = x (a x + b) / (x (c x + d) + e).
ACES_A, ACES_B, ACES_C, ACES_D, ACES_E = 2.51, 0.03, 2.43, 0.59, 0.14
LOG_AVERAGE_DELTA = 1e-6  # Reinhard et al. (2002) Eq. 1's delta, keeps log(0) out of the log-average
SHEET_BACKGROUND = 0.12  # display value of separators and label strips
SHEET_SEPARATOR_PX = 2


def _check_hdr(H, argument: str = "H") -> torch.Tensor:
    if not isinstance(H, torch.Tensor) or H.ndim < 3 or H.shape[-3] != 3:
        raise InputError(argument, f"expected a tensor [..., 3, H, W], got {getattr(H, 'shape', type(H))}")
    if not H.is_floating_point():
        raise InputError(argument, f"expected linear radiance as floats, got dtype {H.dtype}")
    if not torch.isfinite(H).all():
        raise InputError(argument, "contains NaN or Inf")
    return H if H.dtype in (torch.float32, torch.float64) else H.float()


def aces_narkowicz(x: torch.Tensor) -> torch.Tensor:
    """Narkowicz (2016) ACES filmic fit, per channel on linear values, clipped to [0, 1] (linear output)."""
    x = x.clamp_min(0.0)
    return (x * (ACES_A * x + ACES_B) / (x * (ACES_C * x + ACES_D) + ACES_E)).clamp(0.0, 1.0)


def reinhard(x: torch.Tensor, white: float | None = None) -> torch.Tensor:
    """Reinhard et al. (2002) global operator, Eq. 4, on Rec.709 luminance L with white point L_white:
    L_d = L (1 + L / L_white^2) / (1 + L); RGB is scaled by L_d / L (hue kept), then clipped to [0, 1].

    x: linear [..., 3, H, W] (already exposed). ``white=None`` takes L_white = the image's maximum luminance
    (per image over the last three dims; the paper's suggestion); ``white=math.inf`` gives L / (1 + L).
    """
    x = x.clamp_min(0.0)
    L = response.luminance(x, channel_axis=-3).unsqueeze(-3)  # [..., 1, H, W]
    if white is None:
        L_white = L.amax(dim=(-3, -2, -1), keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
    elif not white > 0:
        raise InputError("white", f"got {white}; accepted: a luminance > 0 (math.inf for L / (1 + L))")
    else:
        L_white = torch.as_tensor(float(white), dtype=x.dtype, device=x.device)
    L_d = L * (1.0 + L / L_white**2) / (1.0 + L)
    scale = torch.where(L > 0, L_d / L.clamp_min(torch.finfo(x.dtype).tiny), torch.zeros_like(L))
    return (x * scale).clamp(0.0, 1.0)


def tonemap(
    H: torch.Tensor,
    operator: str = "aces",
    exposure_ev: float = 0.0,
    curve: response.DisplayCurve = "srgb",
    white: float | None = None,
) -> torch.Tensor:
    """Linear HDR -> display image for previews.

    H: linear [..., 3, H, W], finite, >= 0 (negatives are clipped). The image is multiplied by
    2^exposure_ev, mapped by ``operator`` ("aces": Narkowicz 2016 ACES fit per channel; "reinhard": Reinhard
    2002 global on luminance with white point ``white``, see ``reinhard``; "clip": clip to [0, 1]) and encoded
    with ``response.encode(curve)``. Returns float32 display values [..., 3, H, W] in [0, 1].
    """
    H = _check_hdr(H)
    if operator not in OPERATORS:
        raise InputError("operator", f"got {operator!r}; accepted: {', '.join(OPERATORS)}")
    if not math.isfinite(exposure_ev):
        raise InputError("exposure_ev", f"got {exposure_ev}; accepted: a finite number of stops")
    response.check_curve(curve)
    x = H.clamp_min(0.0) * 2.0**exposure_ev
    if operator == "aces":
        x = aces_narkowicz(x)
    elif operator == "reinhard":
        x = reinhard(x, white)
    return response.encode(x.clamp(0.0, 1.0), curve).float()


def auto_exposure_ev(H: torch.Tensor, key: float = 0.18) -> float:
    """The exposure (stops) that maps the log-average luminance to ``key`` (Reinhard et al. 2002, Eqs. 1-2):
    L_avg = exp(mean log(delta + L)), EV = log2(key / L_avg). Pools all pixels of ``H`` [..., 3, H, W];
    returns 0.0 for an image with no positive luminance.
    """
    H = _check_hdr(H)
    if not key > 0:
        raise InputError("key", f"got {key}; accepted: a display-referred middle grey > 0, e.g. 0.18")
    L = response.luminance(H.clamp_min(0.0).double(), channel_axis=-3)
    if not (L > 0).any():
        return 0.0
    log_average = torch.log(LOG_AVERAGE_DELTA + L).mean().exp().item()
    return math.log2(key / log_average)


def reexposed_bracket(H: torch.Tensor, evs: Sequence[float], max_width: int = 256,
                      curve: response.DisplayCurve = "gamma2.2") -> torch.Tensor:
    """The HDR [3, H, W] re-exposed at each EV, as a camera would take it: [K, 3, h, w] display in [0, 1], shrunk
    (area) to at most ``max_width`` pixels wide first, so a contact sheet costs no full-resolution frames.
    frame_e = encode(clip(2^e H, 0, 1)) with the display ``curve``."""
    H = _check_hdr(H)
    small = _resize_tiles(H[None], max_width)[0] if H.shape[-1] > max_width else H
    return torch.stack([response.encode((small * 2.0**e).clamp(0.0, 1.0), curve) for e in evs])


def _resize_tiles(frames: torch.Tensor, max_tile_width: int) -> torch.Tensor:
    h, w = frames.shape[-2:]
    if w <= max_tile_width:
        return frames
    new_h = max(1, round(h * max_tile_width / w))
    return F.interpolate(frames, size=(new_h, max_tile_width), mode="area")


def _draw_label(strip: torch.Tensor, text: str) -> torch.Tensor:
    """Draw ``text`` in white on a [3, h, w] display strip with OpenCV; returns the new strip."""
    import cv2  # heavy; only contact sheets need it
    import numpy as np

    h, w = strip.shape[-2:]
    canvas = np.ascontiguousarray((strip.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    scale = h / 40.0  # FONT_HERSHEY_SIMPLEX glyphs are about 22 px tall at scale 1
    thickness = max(1, round(h / 16))
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    origin = (max(2, (w - tw) // 2), (h + th) // 2)
    white = (255, 255, 255)
    cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, white, thickness, cv2.LINE_AA)
    return torch.from_numpy(canvas).permute(2, 0, 1).float() / 255.0


def contact_sheet(
    frames: torch.Tensor,
    labels: Sequence[str] | None = None,
    columns: int | None = None,
    max_tile_width: int = 256,
) -> torch.Tensor:
    """A grid of bracket frames: [K, 3, H, W] display in [0, 1] -> [3, Hs, Ws] display, float32.

    Tiles are shrunk (area interpolation) to at most ``max_tile_width`` pixels wide, laid out row by row in
    ``columns`` columns (default ceil(sqrt(K))) with thin dark separators; with ``labels`` (one string per
    frame, e.g. "EV -7") each tile gets a dark strip below it with its label drawn by OpenCV.
    """
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[1] != 3 or 0 in frames.shape:
        found = getattr(frames, "shape", type(frames))
        raise InputError("frames", f"expected a non-empty tensor [K, 3, H, W], got {found}")
    finite = frames.is_floating_point() and bool(torch.isfinite(frames).all())
    if not finite or frames.min() < 0 or frames.max() > 1:
        raise InputError("frames", "expected display values as finite floats in [0, 1]")
    K = frames.shape[0]
    if labels is not None and len(labels) != K:
        raise InputError("labels", f"{len(labels)} labels for {K} frames; give one per frame or None")
    if columns is not None and not (isinstance(columns, int) and columns >= 1):
        raise InputError("columns", f"got {columns!r}; accepted: an integer >= 1")
    if not (isinstance(max_tile_width, int) and max_tile_width >= 8):
        raise InputError("max_tile_width", f"got {max_tile_width!r}; accepted: an integer >= 8 pixels")
    columns = min(columns or math.ceil(math.sqrt(K)), K)
    rows = math.ceil(K / columns)
    tiles = _resize_tiles(frames.detach().float().cpu(), max_tile_width)  # [K, 3, h, w]
    h, w = tiles.shape[-2:]
    strip_h = 0 if labels is None else max(12, round(w * 0.09))
    cell_h, cell_w = h + strip_h + SHEET_SEPARATOR_PX, w + SHEET_SEPARATOR_PX
    sheet_size = (3, rows * cell_h + SHEET_SEPARATOR_PX, columns * cell_w + SHEET_SEPARATOR_PX)
    sheet = torch.full(sheet_size, SHEET_BACKGROUND)
    for k in range(K):
        top = (k // columns) * cell_h + SHEET_SEPARATOR_PX
        left = (k % columns) * cell_w + SHEET_SEPARATOR_PX
        sheet[:, top : top + h, left : left + w] = tiles[k]
        if labels is not None:
            strip = torch.full((3, strip_h, w), SHEET_BACKGROUND)
            sheet[:, top + h : top + h + strip_h, left : left + w] = _draw_label(strip, str(labels[k]))
    return sheet
