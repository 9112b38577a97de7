"""EV ladders, bracket synthesis and EV-0 anchoring (no models).

Conventions (METHOD.md "Symbols and conventions"): ``H`` is linear scene radiance, RGB, >= 0, with 1.0
the clipping level of the EV-0 frame. Exposure ``e`` (stops) multiplies radiance by 2^e. Images are
torch tensors shaped ``[..., 3, H, W]``; brackets add a frame axis just before the channels:
``[..., K, 3, H, W]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from latenthdr import response
from latenthdr.errors import InputError

DEFAULT_LADDER = "-7:5:1"  # METHOD.md: e = -7 ... +5, step 1 (13 frames)
MAX_FRAMES = 257
MAX_ABS_EV = 40.0


def parse_ev_ladder(spec: str | Sequence[float], argument: str = "evs", *,
                    require_zero: bool = False) -> tuple[float, ...]:
    """Parse an EV ladder: ``"start:stop:step"`` (inclusive, step > 0, non-integer steps allowed),
    ``"a,b,c"`` or a sequence of numbers. Returns the EVs sorted ascending.

    Raises InputError for empty, non-finite, duplicate (closer than 1e-6 stops) or out-of-range EVs, and
    with ``require_zero`` for a ladder without EV 0 (the pipeline's scene latent is the EV-0 frame).
    """
    if isinstance(spec, str):
        evs = _parse_ev_string(spec.strip(), argument)
    else:
        try:
            evs = [float(v) for v in spec]
        except (TypeError, ValueError):
            raise InputError(argument, f"expected numbers, got {spec!r}") from None
    if not evs:
        raise InputError(argument, "the ladder is empty; give e.g. -7:5:1 or -2,0,2")
    if any(not math.isfinite(v) or abs(v) > MAX_ABS_EV for v in evs):
        raise InputError(argument, f"EVs must be finite and within +-{MAX_ABS_EV:g} stops, got {evs}")
    if len(evs) > MAX_FRAMES:
        raise InputError(argument, f"{len(evs)} frames; accepted: at most {MAX_FRAMES}")
    evs = sorted(evs)
    for a, b in zip(evs, evs[1:]):
        if b - a < 1e-6:
            raise InputError(argument, f"duplicate EV {a:g}; every EV must appear once")
    if require_zero and not any(abs(e) < 1e-6 for e in evs):
        raise InputError(argument, f"{format_ev_ladder(evs)} has no EV 0; the scene latent is the EV-0 frame, so the "
                                   f"ladder must contain 0 (e.g. -7:5:1 or -4,-2,0,2)")
    return tuple(0.0 if abs(e) < 1e-6 else e for e in evs)


def _parse_ev_string(spec: str, argument: str) -> list[float]:
    try:
        if ":" in spec:
            parts = [float(p) for p in spec.split(":")]
            if len(parts) != 3:
                raise ValueError
            start, stop, step = parts
            if not all(map(math.isfinite, parts)):
                raise InputError(argument, f"{spec!r}: start, stop and step must be finite numbers")
            if not step > 0:
                raise InputError(argument, f"{spec!r}: the step must be > 0 (e.g. -7:5:1)")
            if stop < start:
                raise InputError(argument, f"{spec!r}: stop < start; accepted: start:stop:step with start <= stop "
                                           f"(e.g. {stop:g}:{start:g}:{step:g})")
            n = math.floor((stop - start) / step + 1e-9) + 1
            if n > MAX_FRAMES:
                raise InputError(argument, f"{spec!r} gives {n} frames; accepted: at most {MAX_FRAMES} "
                                           f"(use a larger step)")
            return [round(start + i * step, 9) for i in range(n)]
        return [float(p) for p in spec.split(",") if p.strip()]
    except InputError:
        raise
    except ValueError:
        raise InputError(
            argument, f"cannot parse {spec!r}; accepted: start:stop:step (e.g. -7:5:1) or a list (-2,0,2)"
        ) from None


def format_ev_ladder(evs: Sequence[float]) -> str:
    """The shortest spec that ``parse_ev_ladder`` turns back into ``evs``."""
    evs = list(evs)
    if len(evs) >= 3:
        step = evs[1] - evs[0]
        if step > 0 and all(abs((b - a) - step) < 1e-9 for a, b in zip(evs, evs[1:])):
            return f"{evs[0]:g}:{evs[-1]:g}:{step:g}"
    return ",".join(f"{v:g}" for v in evs)


def ev_tensor(evs: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    """EVs as a 1-D tensor with the dtype (at least float32) and device of ``like``."""
    dtype = like.dtype if like.dtype in (torch.float32, torch.float64) else torch.float32
    return torch.tensor(list(evs), dtype=dtype, device=like.device)


def expose(H: torch.Tensor, evs: Sequence[float]) -> torch.Tensor:
    """Linear frames before clipping: H * 2^e. ``H`` [..., 3, H, W] -> [..., K, 3, H, W]."""
    gain = torch.exp2(ev_tensor(evs, H)).view(-1, 1, 1, 1)  # [K,1,1,1]
    return H.unsqueeze(-4) * gain


def synthesize_bracket(
    H: torch.Tensor, evs: Sequence[float], curve: response.DisplayCurve = "gamma2.2", bits: int | None = 8
) -> torch.Tensor:
    """The paper's bracket (METHOD.md "Bracket frame"): y_e = Q(clip(H 2^e, 0, 1)^(1/gamma)).

    H: linear radiance [..., 3, H, W], float, >= 0 (negative values are clipped to 0).
    Returns display-encoded frames [..., K, 3, H, W] in [0, 1]; ``bits=None`` skips quantisation.
    """
    if not isinstance(H, torch.Tensor) or H.ndim < 3 or H.shape[-3] != 3:
        raise InputError("H", f"expected a tensor [..., 3, H, W], got {getattr(H, 'shape', type(H))}")
    y = response.encode(expose(H.float() if H.dtype not in (torch.float32, torch.float64) else H, evs), curve)
    return y if bits is None else response.quantize(y, bits)


def anchor_scale(
    H: torch.Tensor, clipped_fraction: float | None = None, percentile: float | None = None
) -> float:
    """EV-0 anchoring: the scale s such that, in s*H, the EV-0 frame clips as asked.

    - ``clipped_fraction`` f in (0, 1): a fraction f of pixels has its brightest channel >= 1.
    - ``percentile`` p in (0, 100]: percentile p of the brightest channel maps to 1
      (METHOD.md's third-party default is p = 99.9, i.e. f = 0.001).
    Exactly one of the two may be given; neither means percentile 99.9.
    H: linear [..., 3, H, W] (all leading dims pooled). Raises InputError for a black image.
    """
    if clipped_fraction is not None and percentile is not None:
        raise InputError("clipped_fraction/percentile", "give one of the two, not both")
    if clipped_fraction is not None:
        if not 0.0 < clipped_fraction < 1.0:
            raise InputError("clipped_fraction", f"got {clipped_fraction}; accepted: 0 < f < 1")
        q = 1.0 - clipped_fraction
    else:
        p = 99.9 if percentile is None else percentile
        if not 0.0 < p <= 100.0:
            raise InputError("percentile", f"got {p}; accepted: 0 < p <= 100")
        q = p / 100.0
    peak = H.float().amax(dim=-3).flatten()  # brightest channel per pixel
    peak = peak[torch.isfinite(peak)]
    if peak.numel() > 2**24:  # torch.quantile's input limit; a strided subsample is exact enough here
        peak = peak[:: peak.numel() // 2**23 + 1]
    level = torch.quantile(peak.double(), q).item() if peak.numel() else 0.0
    if not level > 0.0:
        raise InputError("H", "the image is black at the requested anchor; cannot set an EV-0 scale")
    return 1.0 / level


def anchor(H: torch.Tensor, clipped_fraction: float | None = None, percentile: float | None = None):
    """``(s * H, s)`` with s = ``anchor_scale(H, ...)``."""
    s = anchor_scale(H, clipped_fraction, percentile)
    return H * s, s


# Thresholds of what an 8-bit EV-0 frame does not show: a channel at the top code is clipped, a pixel with every
# channel at code 0 is black (half a code from either end).
CLIPPED_DISPLAY = 254.5 / 255
BLACK_DISPLAY = 0.5 / 255


def unseen_fractions(y0: torch.Tensor, cell: int, clipped_level: float = CLIPPED_DISPLAY,
                     black_level: float = BLACK_DISPLAY) -> torch.Tensor:
    """Per ``cell`` x ``cell`` block of an EV-0 frame, the fractions of its pixels whose radiance the frame
    does not give: clipped (any channel >= ``clipped_level``) and black (every channel <= ``black_level``).

    These are the pixels an exposure head must infer rather than re-expose: the clipped ones at negative EVs,
    the black ones at positive EVs. y0: [B, 3, H, W] display-encoded in [0, 1], H and W multiples of ``cell``.
    Returns float32 [B, 2, H/cell, W/cell] in [0, 1]: channel 0 clipped, channel 1 black. A decoded frame
    (text-to-HDR) is not exactly 8-bit at its ends, so callers pass levels measured for their codec.
    """
    if not isinstance(y0, torch.Tensor) or y0.ndim != 4 or y0.shape[1] != 3:
        raise InputError("y0", f"expected a tensor [B, 3, H, W], got {getattr(y0, 'shape', type(y0))}")
    if y0.shape[-1] % cell or y0.shape[-2] % cell:
        raise InputError("y0", f"size {tuple(y0.shape[-2:])} is not a multiple of the {cell}-pixel cell")
    clipped = (y0 >= clipped_level).any(dim=1, keepdim=True)
    black = (y0 <= black_level).all(dim=1, keepdim=True)
    return torch.nn.functional.avg_pool2d(torch.cat([clipped, black], dim=1).float(), cell)
