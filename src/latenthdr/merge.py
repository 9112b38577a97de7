"""Exposure bracket -> linear HDR (METHOD.md "Merge: bracket -> HDR", Eq. 9), and the input-preserving merge.
(Real photographs with exposure times: ``photographs``.)

Conventions (METHOD.md "Symbols and conventions"): a bracket ``y`` is display-encoded, ``[..., K, 3, H, W]``
in [0, 1], frame k taken at exposure ``evs[k]`` stops; the merged ``hdr`` is linear radiance, float32,
``[..., 3, H, W]``, with 1.0 the clipping level of the EV-0 frame. No models here.

Fallbacks (METHOD.md): a pixel that no frame sees well (every frame has a channel outside (low, high)) gets
- the darkest frame's estimate R_{e_min} when it is saturated everywhere (the darkest frame's mean channel
  is >= 0.5): a lower bound on its radiance, never 1.0 or NaN; counted in ``phigh``;
- the brightest frame's estimate R_{e_max} otherwise (black everywhere): an upper bound; counted in ``plow``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from latenthdr import exposure, response
from latenthdr.errors import InputError

CODE_VALUES_8BIT = 255
# Log floor, in display units: half an 8-bit code value, linearised with the frame's own curve. Linear values
# below it (black channels) are clamped to it so log R stays finite.
FLOOR_DISPLAY = 0.5 / CODE_VALUES_8BIT
# A pixel no frame sees well counts as saturated when the darkest frame's mean channel is at least this.
SATURATED_MEAN = 0.5


@dataclass
class MergeResult:
    """What ``merge_bracket`` returns.

    hdr: [..., 3, H, W] float32 linear radiance, > 0, 1.0 = the EV-0 frame's clipping level.
    plow: fraction of pixels (pooled over all leading dims) that no frame sees well and that are dark in every
        frame; they hold the brightest frame's estimate.
    phigh: the same for pixels saturated in every frame; they hold the darkest frame's estimate.
    weight_sum: [..., H, W] float32, sum_e w_e of Eq. 9; 0 exactly where a fallback was used.
    """

    hdr: torch.Tensor
    plow: float
    phigh: float
    weight_sum: torch.Tensor


def hat_weight(m: torch.Tensor) -> torch.Tensor:
    """METHOD.md Eq. 9 weight: hat(m) = clip(4 min(m, 1 - m), 0, 1) for display values m in [0, 1]."""
    return (4.0 * torch.minimum(m, 1.0 - m)).clamp(0.0, 1.0)


def apply_response_lut(y: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """Linearise display values with a per-channel table, interpolating linearly between entries.

    y: [..., 3, H, W] display-encoded in [0, 1]; lut: [N, 3], lut[i, c] = linear value of code i / (N - 1) in
    channel c. Returns linear values [..., 3, H, W] in the dtype of ``y``.
    """
    n = lut.shape[0]
    table = lut.to(dtype=y.dtype, device=y.device).T.contiguous()  # [3, N]
    pos = y.clamp(0.0, 1.0) * (n - 1)
    i0 = pos.floor().clamp(0, n - 2).long()
    frac = pos - i0
    out = torch.empty_like(y)
    for c in range(3):
        i0_c = i0[..., c, :, :]
        a, b = table[c][i0_c], table[c][i0_c + 1]
        out[..., c, :, :] = a + (b - a) * frac[..., c, :, :]
    return out


def _check_lut(lut, argument: str = "response_lut") -> torch.Tensor:
    lut = torch.as_tensor(lut)
    if lut.ndim != 2 or lut.shape[1] != 3 or lut.shape[0] < 2:
        raise InputError(argument, f"expected a table [N, 3] with N >= 2, got shape {tuple(lut.shape)}")
    lut = lut.double()
    if not torch.isfinite(lut).all() or (lut < 0).any() or not (lut[-1] > 0).all():
        raise InputError(argument, "entries must be finite and >= 0, with a positive last entry per channel")
    if (lut[1:] < lut[:-1]).any():
        raise InputError(argument, "each channel must be non-decreasing in the code value")
    return lut


def _check_bracket(y, evs) -> tuple[torch.Tensor, list[float]]:
    """Validate ``y`` [..., K, 3, H, W] in [0, 1] and ``evs`` (K unique EVs, in the frames' order)."""
    if not isinstance(y, torch.Tensor) or y.ndim < 4 or y.shape[-3] != 3:
        raise InputError("y", f"expected a tensor [..., K, 3, H, W], got {getattr(y, 'shape', type(y))}")
    if not y.is_floating_point():
        raise InputError("y", f"expected display values as floats in [0, 1], got dtype {y.dtype}")
    sorted_evs = exposure.parse_ev_ladder(evs, argument="evs")  # finite, in range, unique
    evs = list(sorted_evs) if isinstance(evs, str) else [float(e) for e in evs]
    if y.shape[-4] != len(evs):
        raise InputError("evs", f"{len(evs)} EVs for {y.shape[-4]} frames (y has shape {tuple(y.shape)})")
    if not torch.isfinite(y).all():
        raise InputError("y", "contains NaN or Inf")
    if y.numel() and (y.min() < 0 or y.max() > 1):
        raise InputError("y", f"values must be in [0, 1], got [{y.min().item():g}, {y.max().item():g}]")
    return y, evs


def _check_options(low: float, high: float, compute_dtype) -> None:
    if not 0.0 <= low < high <= 1.0:
        raise InputError("low/high", f"got low={low}, high={high}; accepted: 0 <= low < high <= 1")
    if compute_dtype not in (torch.float32, torch.float64):
        raise InputError("compute_dtype", f"got {compute_dtype}; accepted: torch.float32, torch.float64")


def merge_bracket(
    y: torch.Tensor,
    evs: str | Sequence[float],
    curve: response.DisplayCurve = "gamma2.2",
    low: float = 0.02,
    high: float = 0.98,
    compute_dtype: torch.dtype = torch.float32,
    response_lut: torch.Tensor | np.ndarray | None = None,
) -> MergeResult:
    """Merge a bracket into linear HDR with METHOD.md Eq. 9 and the documented fallbacks.

    For each frame: x_e = decode(y_e); R_e = x_e / 2^e; w_e = hat(mean_c y_e) * valid_e, valid_e = every
    channel strictly inside (low, high); then log H = sum_e w_e log R_e / sum_e w_e.

    y: [..., K, 3, H, W] display-encoded in [0, 1] (any float dtype); evs: K distinct EVs in the frames' order
    (a ladder string such as "-7:5:1" means the frames are in ascending EV order). ``curve`` linearises the
    frames unless ``response_lut`` ([N, 3], code i / (N - 1) -> linear, e.g. a recovered camera response) is
    given. Linear values are floored at the curve's value of half an 8-bit code (``FLOOR_DISPLAY``) so black
    channels give a finite log. Sums run in ``compute_dtype`` (float32 or float64); frames are accumulated one
    at a time, so memory is a few [..., 3, H, W] tensors whatever K is.
    """
    y, evs = _check_bracket(y, evs)
    _check_options(low, high, compute_dtype)
    if response_lut is not None:
        lut = _check_lut(response_lut)
        linearise = lambda v: apply_response_lut(v, lut)  # noqa: E731
    else:
        response.check_curve(curve)
        linearise = curve
    return _merge_frames(y, evs, linearise, low, high, compute_dtype)


def _merge_frames(y, evs, linearise, low, high, compute_dtype) -> MergeResult:
    """Eq. 9 over validated frames; ``evs`` need not be unique here (calibrated frames may share an EV).
    ``linearise``: a display curve name (its log is taken in closed form where it has one) or a callable."""
    log_linear = _log_linearise(linearise, compute_dtype)
    k_min, k_max = int(np.argmin(evs)), int(np.argmax(evs))
    num = den = log_r_darkest = log_r_brightest = saturated = None
    for k, e in enumerate(evs):
        y_e = y[..., k, :, :, :].to(compute_dtype)  # [..., 3, H, W]
        log_r = log_linear(y_e) - e * math.log(2.0)  # log R_e = log x_e - e ln 2
        valid = (y_e.amin(dim=-3) > low) & (y_e.amax(dim=-3) < high)  # every channel inside: [..., H, W]
        m = y_e.mean(dim=-3)
        w = hat_weight(m) * valid
        num = w.unsqueeze(-3) * log_r if num is None else num + w.unsqueeze(-3) * log_r
        den = w if den is None else den + w
        if k == k_min:
            log_r_darkest, saturated = log_r, m >= SATURATED_MEAN
        if k == k_max:
            log_r_brightest = log_r
    return _finish(num, den, log_r_darkest, log_r_brightest, saturated)


def _log_linearise(linearise, compute_dtype):
    """v -> log x, with x floored at the linear value of half an 8-bit code (``FLOOR_DISPLAY``) so black channels
    stay finite. For gamma 2.2, log x = 2.2 log max(v, FLOOR_DISPLAY): the same numbers without a pow."""
    if linearise == "gamma2.2":
        return lambda v: response.GAMMA * torch.log(v.clamp_min(FLOOR_DISPLAY))
    if isinstance(linearise, str):
        curve = linearise
        linearise = lambda v: response.decode(v, curve)  # noqa: E731
    floor_value = linearise(torch.full((3, 1, 1), FLOOR_DISPLAY, dtype=compute_dtype)).min().item()
    floor_value = max(floor_value, 1e-12)  # a LUT may map its lowest codes to 0
    return lambda v: torch.log(linearise(v).clamp_min(floor_value))


def _finish(num, den, log_r_darkest, log_r_brightest, saturated) -> MergeResult:
    """Eq. 9's ratio where some frame sees the pixel well, the fallbacks elsewhere."""
    seen = den > 0  # [..., H, W]
    log_h = num / torch.where(seen, den, torch.ones_like(den)).unsqueeze(-3)
    fallback = torch.where(saturated.unsqueeze(-3), log_r_darkest, log_r_brightest)
    log_h = torch.where(seen.unsqueeze(-3), log_h, fallback)
    n_pixels = max(seen.numel(), 1)
    phigh = ((~seen) & saturated).sum().item() / n_pixels
    plow = ((~seen) & ~saturated).sum().item() / n_pixels
    return MergeResult(hdr=torch.exp(log_h).float(), plow=plow, phigh=phigh, weight_sum=den.float())


# ---------------------------------------------------------------------------------------------------------
# Image-to-HDR with the input kept: METHOD.md's optional "v1" post-process, with calibrated predicted frames.

MIN_CALIBRATION_PIXELS = 64  # fewer jointly well-exposed pixels than this: the frame borrows a neighbour's gain
CALIBRATION_PIXELS = 1 << 16  # gains are medians over a regular subsample of about this many pixels


def calibration_stride(count: int) -> int:
    """The step of the regular subsample that ``calibration_gains`` takes its medians on, for ``count`` pixels."""
    return max(1, math.isqrt(count // CALIBRATION_PIXELS))


def calibration_gains(image, y, evs, curve="gamma2.2", low=0.02, high=0.98, mask=None) -> list[float]:
    """Per-frame gain g_e that makes predicted frame e agree with the input on the radiance they both see.

    g_e = exp(median(log Y_in - log Y_e)) over pixels that the input and frame e both see well (all channels in
    (low, high)), Y the Rec.709 luminance of the radiance estimates R_in = decode(image), R_e = decode(y_e) / 2^e.
    A frame with fewer than MIN_CALIBRATION_PIXELS such pixels takes the gain of the nearest calibrated frame in
    EV (1 if none is). The medians run on a regular subsample of about CALIBRATION_PIXELS pixels (of ``mask``,
    [H, W] bool, when given: the pixels the frames were decoded at), every ``calibration_stride`` pixels.
    image: [3, H, W]; y: [K, 3, H, W]; both display-encoded in [0, 1].
    """
    count = image.shape[-2] * image.shape[-1] if mask is None else int(mask.sum())
    s = calibration_stride(count)
    return sampled_calibration_gains(image[..., ::s, ::s], y[..., ::s, ::s], evs, curve, low, high,
                                     None if mask is None else mask[::s, ::s])


def sampled_calibration_gains(image, y, evs, curve="gamma2.2", low=0.02, high=0.98, mask=None) -> list[float]:
    """``calibration_gains`` on its subsample as given: image [3, h, w], y [K, 3, h, w], mask [h, w] bool or None
    (the pixels whose frames were decoded; the others' values are not read)."""
    r_in = response.luminance(response.decode(image.double(), curve), channel_axis=-3)
    seen_in = ((image > low) & (image < high)).all(dim=-3)
    if mask is not None:
        seen_in &= mask
    gains: list[float | None] = []
    for k, e in enumerate(evs):
        y_e = y[k].double()
        both = seen_in & ((y_e > low) & (y_e < high)).all(dim=-3)
        r_e = response.luminance(response.decode(y_e, curve), channel_axis=-3) / 2.0**e
        both &= (r_in > 0) & (r_e > 0)
        ok = int(both.sum()) >= MIN_CALIBRATION_PIXELS
        gains.append(float(torch.exp(torch.median(r_in[both].log() - r_e[both].log()))) if ok else None)
    known = [k for k, g in enumerate(gains) if g is not None]
    for k, g in enumerate(gains):
        if g is None:
            gains[k] = gains[min(known, key=lambda j: abs(evs[j] - evs[k]))] if known else 1.0
    return gains


def merge_with_input(
    image: torch.Tensor,
    y: torch.Tensor,
    evs: Sequence[float],
    curve: response.DisplayCurve = "gamma2.2",
    low: float = 0.02,
    high: float = 0.98,
    knee_high: float = 0.1,
    knee_low: float = 0.0,
    highlight_shrink: float = 1.0,
    rim_bound: float | None = None,
    panorama: bool = False,
    decoded: torch.Tensor | None = None,
    max_ev: float | None = None,
) -> MergeResult:
    """Input-preserving image-to-HDR merge (METHOD.md "v1" post-process, as LEDiff / HDRCNN, with calibration).

    The real input is the exact EV-0 frame; predicted frames speak only where it is clipped or black:
    1. each predicted frame is calibrated to the input (``calibration_gains``: an EV shift of -log2 g_e);
    2. H_pred = Eq. 9 over the calibrated predicted frames;
    3. alpha = how far the input's brightest channel is into the top ``knee_high`` of its range, or its darkest
       channel into the bottom ``knee_low`` (0 well inside, 1 at ``high`` / ``low``; a knee of 0 turns that side
       off); H = (1 - alpha) R_in + alpha H_pred;
    4. physical bounds: an unclipped 8-bit input channel pins the radiance to its quantisation bin
       [decode(y - 0.5/255), decode(y + 0.5/255)], a clipped one to at least decode(1 - 0.5/255).
    ``highlight_shrink`` s in (0, 1] scales the predicted excess over the clip level c in log space before step 3:
    H_pred -> c (H_pred / c)^s where H_pred > c (1: the head's prediction as it is).
    ``rim_bound`` kappa (None: off) caps the predicted excess inside each clipped region by what the input shows
    around it: log2(H_pred / c) <= kappa g d (``rim_excess_bound``; ``panorama``: regions wrap at +-180 degrees).
    ``max_ev`` (None: every frame): only frames up to this EV are merged, unless ``knee_low`` > 0. A frame above
    EV 0 sees a clipped input pixel at twice the clip level or more if it agrees with the input, so where it sees
    one well, it is wrong: ``SELECTIVE_MAX_EV`` (0) drops them (measured on val, docs/image-to-hdr.md); outside
    the clipped pixels the input's bounds pin the result within half a code value anyway.
    ``decoded`` ([B, H, W] or [H, W] bool, None: everywhere): where the predicted frames were decoded (selective
    decoding, ``input_merge_reads``), and the only pixels the gains are calibrated on; elsewhere the input is
    kept (alpha = 0).
    image: [B, 3, H, W] or [3, H, W] display-encoded 8-bit input; y: [B, K, 3, H, W] (or [K, 3, H, W]) predicted
    frames; evs: their K EVs. Returns a MergeResult whose plow / phigh are those of H_pred's merge.
    """
    response.check_curve(curve)
    y, evs = _check_bracket(y, evs)
    if image.shape[-3:] != y.shape[-3:] or image.shape[:-3] != y.shape[:-4]:
        raise InputError("image", f"shape {tuple(image.shape)} does not match frames {tuple(y.shape)}")
    batch_image, batch_y = image.reshape(-1, *image.shape[-3:]), y.reshape(-1, *y.shape[-4:])
    check_highlight_options(highlight_shrink, rim_bound)
    if max_ev is not None and knee_low <= 0:
        keep = [k for k, e in enumerate(evs) if e <= max_ev]
        if not keep:
            raise InputError("max_ev", f"got {max_ev}; no frame of the ladder is at or below it")
        batch_y, evs = batch_y[:, keep], [evs[k] for k in keep]
    knees = (knee_low, knee_high)
    masks = [None] * len(batch_image) if decoded is None else decoded.reshape(-1, *image.shape[-2:])
    results = [_merge_one_with_input(i, f, evs, curve, low, high, knees, highlight_shrink, rim_bound, panorama, m)
               for i, f, m in zip(batch_image, batch_y, masks)]
    hdr = torch.stack([r.hdr for r in results]).reshape(image.shape)
    weight = torch.stack([r.weight_sum for r in results]).reshape(image.shape[:-3] + image.shape[-2:])
    n = len(results)
    return MergeResult(hdr, sum(r.plow for r in results) / n, sum(r.phigh for r in results) / n, weight)


# The input-preserving merge reads predicted frames up to this EV (``merge_with_input(max_ev=)``): a clipped pixel is
# at least at the clip level, so a frame above EV 0 sees it well only where it is wrong. Dropping those frames
# gained 0.07 dB pooled on val (benchmarks/experiments/selective_merge.py), and selective decoding skips them.
SELECTIVE_MAX_EV = 0.0


def input_merge_reads(image: torch.Tensor, evs: Sequence[float], knee_low: float = 0.0, low: float = 0.02,
                      max_ev: float | None = SELECTIVE_MAX_EV) -> tuple[torch.Tensor, list[int]]:
    """Where ``merge_with_input`` needs the predicted frames beyond the input's own quantisation bin, and which.

    image: [3, H, W] display-encoded 8-bit input. Returns ([H, W] bool, frame indices): the pixels with a clipped
    channel (elsewhere the merge pins every channel to its 8-bit bin, within half a code value of the input),
    and the frames that can see them (EV <= ``max_ev``). With a dark knee (``knee_low`` > 0), the pixels in it are
    read too, by every frame. The calibration gains need a sample of well-exposed pixels besides (the caller's).
    """
    half_code = 0.5 / CODE_VALUES_8BIT
    needed = (image >= 1.0 - half_code).any(dim=-3)
    if knee_low > 0:
        needed |= (image < low + knee_low).any(dim=-3)
    return needed, merged_frames(evs, knee_low, max_ev)


def merged_frames(evs: Sequence[float], knee_low: float = 0.0, max_ev: float | None = SELECTIVE_MAX_EV) -> list[int]:
    """Indices of the frames ``merge_with_input`` merges: those up to ``max_ev``, or every frame with a dark knee."""
    if knee_low > 0 or max_ev is None:
        return list(range(len(evs)))
    return [k for k, e in enumerate(evs) if e <= max_ev]


def check_highlight_options(highlight_shrink: float = 1.0, rim_bound: float | None = None) -> None:
    """InputError unless ``merge_with_input``'s highlight_shrink is in (0, 1] and rim_bound None or > 0."""
    if not (isinstance(highlight_shrink, (int, float)) and 0.0 < highlight_shrink <= 1.0):
        raise InputError("highlight_shrink", f"got {highlight_shrink}; accepted: (0, 1] (1: the head as it is)")
    if rim_bound is not None and not (isinstance(rim_bound, (int, float)) and math.isfinite(rim_bound)
                                      and rim_bound > 0):
        raise InputError("rim_bound", f"got {rim_bound}; accepted: None (off) or a positive factor")


def _merge_one_with_input(image, y, evs, curve, low, high, knees, shrink, rim_bound, panorama,
                          decoded=None) -> MergeResult:
    """``merge_with_input`` for one image [3, H, W] and its frames [K, 3, H, W] (sums in float32)."""
    gains = calibration_gains(image, y, evs, curve, low, high, mask=decoded)
    rim = None if rim_bound is None else rim_bound * rim_excess_bound(image, curve, panorama)
    return merge_region_with_input(image, y, evs, gains, curve, low, high, knees, shrink, rim, decoded)


def merge_region_with_input(image, y, evs, gains, curve="gamma2.2", low=0.02, high=0.98, knees=(0.0, 0.1),
                            shrink=1.0, rim=None, decoded=None) -> MergeResult:
    """Steps 2-4 of ``merge_with_input`` on one image or a region of it, its frames calibrated by ``gains`` (from
    the whole image: ``calibration_gains``). Every step is per pixel, so regions merged apart give the whole
    image's result. image [3, H, W], y [K, 3, H, W]; knees (knee_low, knee_high); shrink: highlight_shrink;
    rim: [H, W] the cap on the predicted excess in stops (rim_bound x ``rim_excess_bound``) or None; decoded: [H, W]
    bool or None (everywhere)."""
    shifted = [e - math.log2(g) for e, g in zip(evs, gains)]
    pred = _merge_frames(y, shifted, curve, low, high, torch.float32)
    half_code = 0.5 / CODE_VALUES_8BIT
    pred_hdr = pred.hdr
    c = float(response.decode(torch.tensor(1.0 - half_code, dtype=torch.float64), curve))
    if shrink < 1.0:
        pred_hdr = torch.where(pred_hdr > c, c * (pred_hdr / c) ** shrink, pred_hdr)
    if rim is not None:
        cap = c * torch.exp2(rim).to(pred_hdr)  # [H, W]
        peak = pred_hdr.amax(dim=0).clamp_min(1e-12)  # the brightest channel: the one that clipped; hue kept
        pred_hdr = pred_hdr * (cap / peak).clamp(max=1.0)[None]
    image = image.float()
    r_in = response.decode(image, curve)
    alpha = torch.zeros_like(image[0:1])  # [1, H, W]
    if knees[1] > 0:
        alpha = torch.maximum(alpha, ((image.amax(dim=-3) - (high - knees[1])) / knees[1]).clamp(0.0, 1.0))
    if knees[0] > 0:
        alpha = torch.maximum(alpha, (((low + knees[0]) - image.amin(dim=-3)) / knees[0]).clamp(0.0, 1.0))
    if decoded is not None:
        alpha = alpha * decoded.to(alpha)
    hdr = (1.0 - alpha) * r_in + alpha * pred_hdr
    clipped = image >= 1.0 - half_code
    lower = response.decode((image - half_code).clamp(0.0, 1.0), curve)
    upper = torch.where(clipped, torch.full_like(image, math.inf), response.decode(image + half_code, curve))
    hdr = torch.minimum(torch.maximum(hdr, lower), upper)
    return MergeResult(hdr.float(), pred.plow, pred.phigh, pred.weight_sum)


RIM_RING_PX = 4  # how far outside a clipped region its rim slope is read (pixels)


def rim_excess_bound(image: torch.Tensor, curve: response.DisplayCurve = "gamma2.2", panorama: bool = False,
                     ring_px: int = RIM_RING_PX) -> torch.Tensor:
    """Per pixel, g_C d: the log2 excess over the clip level that the input's neighbourhood supports, for kappa = 1.

    A clipped region C (8-connected pixels with a channel at the top 8-bit level) is taken to continue the rise of
    the input's log radiance across its rim: g_C = the rise of log2 of the brightest linear channel per pixel of
    distance, from ``ring_px`` pixels outside C to its edge (median over the rim, >= 0), and d = a pixel's
    Euclidean distance inside C to the nearest unclipped pixel. A highlight that sits just above the clip level
    rises gently towards it (an overcast sky, a white wall: small g_C); a window, a lamp or the sun's glow rises
    steeply, and the bound grows towards the middle of its region. 0 outside clipped regions; panoramas wrap at
    +-180 degrees. image: [3, H, W] display-encoded 8-bit input. Returns [H, W] float32 stops.
    """
    from scipy import ndimage

    clipped = (image >= 1.0 - 0.5 / CODE_VALUES_8BIT).any(dim=0).cpu().numpy()
    out = np.zeros(clipped.shape, np.float32)
    if not clipped.any() or clipped.all():
        return torch.from_numpy(out).to(image.device)
    width = clipped.shape[1]
    pad = min(width, 4 * ring_px + 64) if panorama else 0  # regions and rims that cross the seam stay whole
    wrap = (lambda a: np.concatenate([a[:, -pad:], a, a[:, :pad]], axis=1)) if pad else (lambda a: a)
    mask = wrap(clipped)
    peak = response.decode(image.double(), curve).amax(dim=0).clamp_min(1e-6).log2().cpu().numpy()
    log_peak = wrap(peak)
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    depth = ndimage.distance_transform_edt(mask)  # inside: distance to the nearest unclipped pixel
    outside, (iy, ix) = ndimage.distance_transform_edt(~mask, return_indices=True)
    owner = labels[iy, ix]  # outside: the region of the nearest clipped pixel
    edge = (outside > 0) & (outside <= 1.5)
    far = (outside > ring_px - 0.5) & (outside <= ring_px + 0.5)
    rise = np.zeros(n + 1)
    ids = np.arange(1, n + 1)
    near_level = ndimage.median(log_peak, owner * edge, ids)
    far_level = ndimage.median(log_peak, owner * far, ids)
    rise[1:] = np.nan_to_num((np.asarray(near_level) - np.asarray(far_level)) / (ring_px - 1.0), nan=0.0).clip(0)
    bound = (rise[labels] * depth).astype(np.float32)
    out = bound[:, pad: pad + width] if pad else bound
    return torch.from_numpy(np.ascontiguousarray(out)).to(image.device)
