"""Real photographs -> linear HDR: frames with exposure times (EXIF or given), linearised with a known display
curve or a camera response recovered with Debevec & Malik 1997 (colour-hdri), merged with METHOD.md Eq. 9
(``merge.merge_bracket``). Conventions as in ``merge``: frames are display-encoded 8-bit values in [0, 1];
the output is linear, float32, with 1.0 the clipping level of the reference frame.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from latenthdr import response
from latenthdr.errors import InputError
from latenthdr.merge import MergeResult, merge_bracket

RESPONSES = ("curve", "debevec")


def stack_frames(frames, argument: str = "frames") -> torch.Tensor:
    """Frames as one float tensor [K, 3, H, W] in [0, 1]: ``frames`` is a sequence of display-encoded
    [3, H, W] tensors of one size, or one [K, 3, H, W] tensor. Raises InputError naming ``argument``."""
    if isinstance(frames, torch.Tensor):
        frames = list(frames) if frames.ndim == 4 else [frames]
    frames = list(frames)
    if not frames:
        raise InputError(argument, "no frames given; a bracket needs at least one")
    for i, f in enumerate(frames):
        if not isinstance(f, torch.Tensor) or f.ndim != 3 or f.shape[0] != 3 or not f.is_floating_point():
            found = getattr(f, "shape", type(f))
            raise InputError(argument, f"frame {i}: expected a float tensor [3, H, W], got {found}")
    sizes = [tuple(f.shape[-2:]) for f in frames]
    if len(set(sizes)) > 1:
        listed = ", ".join(f"{h}x{w}" for h, w in sizes)
        raise InputError(argument, f"frames differ in size (H x W: {listed}); all frames must have one size")
    y = torch.stack([f.float() for f in frames])
    if not torch.isfinite(y).all() or y.min() < 0 or y.max() > 1:
        raise InputError(argument, "display values must be finite and in [0, 1]")
    return y


def exposure_times_to_evs(
    exposure_times_s: Sequence[float], reference_time_s: float | None = None
) -> tuple[list[float], float]:
    """EVs e_k = log2(t_k / t_ref) for exposure times in seconds, and t_ref.

    t_ref defaults to the middle exposure (sorted times, index (K - 1) // 2), so the merged 1.0 is that
    frame's clipping level. Times must be finite, > 0 and distinct. Raises InputError naming the argument.
    """
    try:
        times = [float(t) for t in exposure_times_s]
    except (TypeError, ValueError):
        found = repr(exposure_times_s)
        raise InputError("exposure_times_s", f"expected seconds as numbers, got {found}") from None
    if not times or any(not (math.isfinite(t) and t > 0) for t in times):
        raise InputError("exposure_times_s", f"times must be finite and > 0 seconds, got {times}")
    if len(set(times)) != len(times):
        raise InputError("exposure_times_s", f"times must be distinct, got {times}")
    if reference_time_s is None:
        reference_time_s = sorted(times)[(len(times) - 1) // 2]
    elif not (math.isfinite(reference_time_s) and reference_time_s > 0):
        raise InputError("reference_time_s", f"got {reference_time_s}; accepted: a time > 0 seconds")
    return [math.log2(t / reference_time_s) for t in times], float(reference_time_s)


def _import_colour_hdri():
    """colour_hdri, imported without side effects on the process: where matplotlib is absent, colour puts
    MagicMock stand-ins for it in ``sys.modules`` (and warns). Those would break every later import that probes
    matplotlib, diffusers' among them (``matplotlib.__spec__ is not set``), so the stand-ins are taken out
    again once colour has bound them."""
    import sys
    from unittest import mock

    before = set(sys.modules)
    with warnings.catch_warnings():  # colour warns at import that matplotlib (plotting only) is absent
        warnings.simplefilter("ignore")
        import colour_hdri  # heavy; only recover_response_debevec needs it
    for name in set(sys.modules) - before:
        if isinstance(sys.modules[name], mock.Mock):
            del sys.modules[name]
    return colour_hdri


def recover_response_debevec(
    frames,
    exposure_times_s: Sequence[float],
    samples: int = 400,
    smoothing: float = 30.0,
    max_side: int = 512,
) -> np.ndarray:
    """Camera response recovered from an 8-bit bracket (Debevec & Malik 1997), as a LUT [256, 3] float64.

    Uses colour-hdri's ``camera_response_functions_Debevec1997`` (Grossberg 2003 histogram sampling with
    ``samples`` samples, smoothing lambda = ``smoothing``, polynomial extrapolation at the codes its weight
    ignores) on frames strided down to at most ``max_side`` pixels a side. frames: as in ``stack_frames``
    (display values code / 255). Entry [i, c] is the linear exposure of code i in channel c.

    Normalisation: each channel is made non-decreasing and >= 0, then divided by its value at code 255, so
    linear 1.0 = code 255 = the clipping level, as ``response.decode(1.0) = 1`` for the display curves. The
    recovered curve is defined only up to one scale per channel; fixing each at code 255 keeps clipped white
    neutral (Debevec's solve leaves white balance to the caller).
    """
    colour_hdri = _import_colour_hdri()

    y = stack_frames(frames)
    exposure_times_to_evs(exposure_times_s)  # validates the times
    if len(exposure_times_s) != y.shape[0]:
        raise InputError("exposure_times_s", f"{len(exposure_times_s)} times for {y.shape[0]} frames")
    if y.shape[0] < 2:
        raise InputError("frames", "recovering a response needs 2 or more frames at different exposure times")
    stride = max(1, math.ceil(max(y.shape[-2:]) / max_side))
    stack = colour_hdri.ImageStack()
    for y_k, t in zip(y[..., ::stride, ::stride], exposure_times_s):
        # f-number 1 and ISO 12.5 make colour-hdri's log(1 / average_luminance) equal log t (its k = 12.5).
        meta = colour_hdri.Metadata(f_number=1.0, exposure_time=float(t), iso=12.5)
        stack.append(colour_hdri.Image(data=y_k.permute(1, 2, 0).double().numpy(), metadata=meta))
    crfs = colour_hdri.camera_response_functions_Debevec1997(
        stack, sampling_function_kwargs={"samples": samples}, l_s=smoothing, normalise=False
    )  # [256, 3], exp(g(z)) up to a per-channel scale
    crfs = np.maximum.accumulate(np.clip(crfs, 0.0, None), axis=0)
    return crfs / crfs[-1:]


def merge_photographs(
    frames,
    exposure_times_s: Sequence[float],
    curve: response.DisplayCurve = "srgb",
    response: str = "curve",
    reference_time_s: float | None = None,
    low: float = 0.02,
    high: float = 0.98,
    compute_dtype: torch.dtype = torch.float32,
    samples: int = 400,
    response_lut: torch.Tensor | np.ndarray | None = None,
) -> MergeResult:
    """Merge real photographs taken at known exposure times into linear HDR (METHOD.md Eq. 9).

    frames: K display-encoded 8-bit frames (sequence of [3, H, W] or one [K, 3, H, W], values code / 255),
    aligned and of one size; exposure_times_s: K distinct times > 0 (e.g. from EXIF). EVs are
    e_k = log2(t_k / t_ref) (``exposure_times_to_evs``): the output's 1.0 is the clipping level of the
    reference frame (the middle exposure unless ``reference_time_s`` is given).
    response: "curve" linearises with the display curve ``curve`` (sRGB for camera JPEGs); "debevec"
    recovers the camera response from the frames (``recover_response_debevec``) and uses it instead; a
    ``response_lut`` already recovered (e.g. once per camera) skips the recovery.
    """
    if response not in RESPONSES:  # (the argument shadows the response module inside this function)
        raise InputError("response", f"got {response!r}; accepted: {', '.join(RESPONSES)}")
    y = stack_frames(frames)
    evs, _ = exposure_times_to_evs(exposure_times_s, reference_time_s)
    if len(evs) != y.shape[0]:
        raise InputError("exposure_times_s", f"{len(evs)} times for {y.shape[0]} frames")
    lut = response_lut
    if lut is None and response == "debevec":
        lut = torch.from_numpy(recover_response_debevec(y, exposure_times_s, samples=samples))
    return merge_bracket(y, evs, curve, low=low, high=high, compute_dtype=compute_dtype, response_lut=lut)
