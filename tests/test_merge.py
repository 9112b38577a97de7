"""Merge (METHOD.md Eq. 9): physics (known radiance comes back), fallbacks, contracts, real photographs."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from latenthdr import exposure, merge, photographs, response
from latenthdr.errors import InputError

LADDER = "-7:5:1"
EVS = exposure.parse_ev_ladder(LADDER)
QUANTISATION_STOPS = 0.01  # median |log2 ratio| allowed for an 8-bit bracket


def random_radiance(shape=(3, 48, 48), low_stop=-9.0, high_stop=3.0, seed=0, tint_stops=1.0) -> torch.Tensor:
    """Radiance [..., 3, H, W], float32: a log-uniform level spanning high_stop - low_stop stops per pixel,
    times a per-channel tint within +-tint_stops (natural colours: channels stay within a few stops)."""
    g = torch.Generator().manual_seed(seed)
    level = low_stop + (high_stop - low_stop) * torch.rand((*shape[:-3], 1, *shape[-2:]), generator=g)
    tint = tint_stops * (2 * torch.rand(shape, generator=g) - 1)
    return torch.exp2(level + tint)


def log2_error(result: merge.MergeResult, H: torch.Tensor) -> torch.Tensor:
    """|log2(hdr / H)| per channel over pixels some frame sees well."""
    seen = (result.weight_sum > 0).unsqueeze(-3).expand_as(H)
    return (torch.log2(result.hdr) - torch.log2(H)).abs()[seen]


# -- physics -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("curve", ["gamma2.2", "srgb"])
def test_merge_recovers_known_radiance_within_quantisation(curve):
    H = random_radiance()
    y = exposure.synthesize_bracket(H, EVS, curve=curve, bits=8)
    result = merge.merge_bracket(y, LADDER, curve=curve)
    err = log2_error(result, H)
    assert err.numel() > 0.95 * H.numel()
    assert err.median() < QUANTISATION_STOPS
    assert err.max() < 0.1  # every well-seen pixel, not just the typical one


def test_unquantised_bracket_merges_exactly():
    H = random_radiance(seed=1)
    y = exposure.synthesize_bracket(H, EVS, bits=None)
    result = merge.merge_bracket(y, EVS, compute_dtype=torch.float64)
    assert log2_error(result, H).max() < 1e-4


def test_plus_one_ev_doubles_linear_signal():
    H = random_radiance(seed=2, low_stop=-4, high_stop=0)
    y0, y1 = exposure.synthesize_bracket(H, [0.0, 1.0], bits=None).unbind(-4)
    unclipped = 2 * H < 1
    assert unclipped.float().mean() > 0.5
    x0, x1 = response.decode(y0), response.decode(y1)
    torch.testing.assert_close(x1[unclipped], 2 * x0[unclipped], rtol=1e-5, atol=0)
    torch.testing.assert_close(x1[~unclipped], torch.ones_like(H[~unclipped]))
    # The merge reads the same frames labelled one stop darker as twice the radiance.
    y = exposure.synthesize_bracket(H, EVS, bits=8)
    a = merge.merge_bracket(y, EVS)
    b = merge.merge_bracket(y, [e - 1 for e in EVS])
    torch.testing.assert_close(b.hdr, 2 * a.hdr, rtol=1e-6, atol=0)


def test_float32_and_float64_agree():
    H = random_radiance(seed=3)
    y = exposure.synthesize_bracket(H, EVS)
    a = merge.merge_bracket(y, EVS, compute_dtype=torch.float32)
    b = merge.merge_bracket(y.double(), EVS, compute_dtype=torch.float64)
    assert a.hdr.dtype == b.hdr.dtype == torch.float32
    torch.testing.assert_close(a.hdr, b.hdr, rtol=1e-5, atol=0)
    assert (a.plow, a.phigh) == (b.plow, b.phigh)


def test_batched_equals_one_by_one():
    H = torch.stack([random_radiance(seed=s, shape=(3, 16, 24)) for s in range(4)]).view(2, 2, 3, 16, 24)
    y = exposure.synthesize_bracket(H, EVS)  # [2, 2, K, 3, 16, 24]
    batched = merge.merge_bracket(y, EVS)
    assert batched.hdr.shape == (2, 2, 3, 16, 24) and batched.weight_sum.shape == (2, 2, 16, 24)
    for i in range(2):
        for j in range(2):
            single = merge.merge_bracket(y[i, j], EVS)
            torch.testing.assert_close(batched.hdr[i, j], single.hdr, rtol=0, atol=0)
            torch.testing.assert_close(batched.weight_sum[i, j], single.weight_sum, rtol=0, atol=0)


def test_permuting_frames_with_their_evs_changes_nothing():
    H = random_radiance(seed=4)
    y = exposure.synthesize_bracket(H, EVS)
    order = torch.randperm(len(EVS), generator=torch.Generator().manual_seed(0))
    a = merge.merge_bracket(y, EVS)
    b = merge.merge_bracket(y[order], [EVS[i] for i in order])
    torch.testing.assert_close(b.hdr, a.hdr, rtol=1e-5, atol=0)
    assert (a.plow, a.phigh) == (b.plow, b.phigh)


# -- fallbacks -----------------------------------------------------------------------------------------


def test_fallbacks_take_the_extreme_frames_and_are_counted():
    evs = [-2.0, 0.0, 2.0]
    H = torch.full((3, 8, 8), 0.25)
    H[:, :2] = 1e6  # saturated in every frame: 16 of 64 pixels
    H[:, 2:3] = 0.0  # black in every frame: 8 of 64 pixels
    result = merge.merge_bracket(exposure.synthesize_bracket(H, evs), evs)
    hdr = result.hdr
    assert torch.isfinite(hdr).all() and (hdr > 0).all()
    # Saturated: the darkest frame (EV -2) reads 1.0, i.e. R = 1 / 2^-2 = 4: a lower bound, not 1.0.
    torch.testing.assert_close(hdr[:, :2], torch.full_like(hdr[:, :2], 4.0))
    # Black: the brightest frame's estimate, the log floor (half a code value) over 2^2.
    floor = response.decode(torch.tensor(merge.FLOOR_DISPLAY)).item() / 4.0
    torch.testing.assert_close(hdr[:, 2:3], torch.full_like(hdr[:, 2:3], floor))
    assert result.phigh == pytest.approx(16 / 64) and result.plow == pytest.approx(8 / 64)
    assert (result.weight_sum[:3] == 0).all() and (result.weight_sum[3:] > 0).all()
    torch.testing.assert_close(hdr[:, 3:], torch.full_like(hdr[:, 3:], 0.25), rtol=0.02, atol=0)


def test_no_fallback_on_a_well_covered_image():
    H = random_radiance(low_stop=-4, high_stop=2)
    result = merge.merge_bracket(exposure.synthesize_bracket(H, EVS), EVS)
    assert result.plow == 0.0 and result.phigh == 0.0 and (result.weight_sum > 0).all()


def test_hat_weight_golden():
    m = torch.tensor([0.0, 0.1, 0.25, 0.5, 0.9, 1.0])
    torch.testing.assert_close(merge.hat_weight(m), torch.tensor([0.0, 0.4, 1.0, 1.0, 0.4, 0.0]))


@settings(max_examples=30, deadline=None)
@given(
    level=st.lists(st.floats(-14.0, 10.0), min_size=4, max_size=4),
    tint=st.lists(st.floats(-1.5, 1.5), min_size=12, max_size=12),
    step=st.sampled_from([0.5, 1.0, 2.0]),
    curve=st.sampled_from(["gamma2.2", "srgb"]),
)
def test_property_random_radiance(level, tint, step, curve):
    """Any radiance merges to a finite positive image; pixels well inside the ladder come back within
    quantisation; fallback bookkeeping matches the weights."""
    H = torch.exp2(torch.tensor(level).view(1, 2, 2) + torch.tensor(tint).view(3, 2, 2))
    evs = exposure.parse_ev_ladder(f"-6:4:{step}")
    result = merge.merge_bracket(exposure.synthesize_bracket(H, evs, curve=curve), evs, curve=curve)
    assert result.hdr.dtype == torch.float32 and torch.isfinite(result.hdr).all() and (result.hdr > 0).all()
    unseen = (result.weight_sum == 0).float().mean().item()
    assert result.plow + result.phigh == pytest.approx(unseen)
    # A pixel whose channels all lie 2 stops inside the ladder's range is seen well and recovered.
    inside = ((H > 2.0**-2 * 2.0 ** -max(evs)) & (H < 2.0**-2 * 2.0 ** -min(evs))).all(0)
    assert (result.weight_sum[inside] > 0).all()
    err = (torch.log2(result.hdr) - torch.log2(H)).abs()[:, inside]
    assert err.numel() == 0 or err.max() < 0.1


# -- contracts -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, argument",
    [
        (lambda y: (y.clone().index_put_((torch.tensor(0),), torch.tensor(float("nan"))), EVS), "y"),
        (lambda y: (y * 1.5, EVS), "y"),
        (lambda y: (y - 0.5, EVS), "y"),
        (lambda y: (y, EVS[:-1]), "evs"),
        (lambda y: (y, [0.0] * len(EVS)), "evs"),
        (lambda y: (y[0], EVS), "y"),
        (lambda y: ((y * 255).to(torch.uint8), EVS), "y"),
    ],
    ids=["nan", "above-1", "negative", "k-mismatch", "duplicate-evs", "no-channel-axis", "uint8"],
)
def test_bad_input_raises_input_error(make, argument):
    y = exposure.synthesize_bracket(random_radiance(shape=(3, 4, 4)), EVS)
    bad_y, bad_evs = make(y)
    with pytest.raises(InputError) as info:
        merge.merge_bracket(bad_y, bad_evs)
    assert info.value.argument == argument


def test_bad_options_raise_input_error():
    y = exposure.synthesize_bracket(random_radiance(shape=(3, 4, 4)), EVS)
    for kwargs, argument in [
        ({"curve": "log"}, "curve"),
        ({"low": 0.6, "high": 0.4}, "low/high"),
        ({"compute_dtype": torch.float16}, "compute_dtype"),
        ({"response_lut": torch.ones(256, 2)}, "response_lut"),
        ({"response_lut": torch.linspace(1, 0, 256)[:, None].expand(256, 3)}, "response_lut"),
    ]:
        with pytest.raises(InputError) as info:
            merge.merge_bracket(y, EVS, **kwargs)
        assert info.value.argument == argument


def test_response_lut_of_the_display_curve_matches_the_curve():
    H = random_radiance(seed=5)
    y = exposure.synthesize_bracket(H, EVS, curve="srgb")
    lut = response.decode(torch.linspace(0, 1, 256, dtype=torch.float64), "srgb")[:, None].expand(256, 3)
    a = merge.merge_bracket(y, EVS, curve="srgb")
    b = merge.merge_bracket(y, EVS, response_lut=lut)
    torch.testing.assert_close(b.hdr, a.hdr, rtol=1e-5, atol=0)


def test_photograph_evs_and_bad_photographs():
    evs, t_ref = photographs.exposure_times_to_evs([1 / 8, 1.0, 8.0])
    assert t_ref == 1.0 and evs == [-3.0, 0.0, 3.0]
    assert photographs.exposure_times_to_evs([2.0, 0.5], reference_time_s=0.5)[0] == [2.0, 0.0]
    frame = torch.rand(3, 8, 8)
    cases = [
        (dict(frames=[frame, torch.rand(3, 8, 9)], exposure_times_s=[1, 2]), "frames"),
        (dict(frames=[frame, frame], exposure_times_s=[1, 1]), "exposure_times_s"),
        (dict(frames=[frame, frame], exposure_times_s=[1, -2]), "exposure_times_s"),
        (dict(frames=[frame, frame], exposure_times_s=[1, 2, 4]), "exposure_times_s"),
        (dict(frames=[frame, frame], exposure_times_s=[1, 2], response="robertson"), "response"),
    ]
    for kwargs, argument in cases:
        with pytest.raises(InputError) as info:
            photographs.merge_photographs(**kwargs)
        assert info.value.argument == argument
    with pytest.raises(InputError, match="8x8, 8x9"):
        photographs.merge_photographs([frame, torch.rand(3, 8, 9)], [1, 2])


def test_debevec_recovers_a_known_gamma_response():
    """A synthetic gamma-2.2 bracket: the recovered response matches x = y^2.2 over the well-exposed codes."""
    H = random_radiance(shape=(3, 64, 64), low_stop=-6, high_stop=1, seed=6)
    times = [1 / 16, 1 / 4, 1.0, 4.0]
    y = exposure.synthesize_bracket(H, [math.log2(t) for t in times], curve="gamma2.2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # colour's "matplotlib is not installed" notice
        lut = photographs.recover_response_debevec(y, times, samples=300)
    assert lut.shape == (256, 3) and np.all(np.diff(lut, axis=0) >= 0) and np.allclose(lut[-1], 1.0)
    codes = np.arange(40, 231)
    expected = (codes / 255.0) ** 2.2
    ratio = lut[codes] / expected[:, None]
    assert np.abs(np.log2(ratio / np.median(ratio))).max() < 0.1  # the shape, up to the normalisation


# -- real photographs (../shared) ----------------------------------------------------------------------


def read_frobisher(shared_dir):
    from PIL import Image

    frames, times = [], []
    for name in ("IMG_2600.jpg", "IMG_2601.jpg", "IMG_2602.jpg"):
        with Image.open(shared_dir / "data" / "brackets" / "frobisher" / name) as im:
            exif = im.getexif().get_ifd(0x8769)  # Exif sub-IFD
            times.append(float(exif[0x829A]))  # ExposureTime, seconds
            frames.append(torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1).float() / 255.0)
    return frames, times


def midtone_ratio(y_a, y_b, x_a, x_b, low=0.2, high=0.8) -> float:
    """Median x_b / x_a over channel values mid-tone in both frames (each channel judged on its own)."""
    mid = (y_a > low) & (y_a < high) & (y_b > low) & (y_b < high)
    return (x_b[mid] / x_a[mid]).median().item()


@pytest.fixture(scope="module")
def frobisher(shared_dir):
    frames, times = read_frobisher(shared_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lut = torch.from_numpy(photographs.recover_response_debevec(frames, times))
    return frames, times, lut


def test_frobisher_debevec_midtone_ratios_match_exposure_times(frobisher):
    frames, times, lut = frobisher
    assert times == [0.125, 1.0, 8.0]
    x = [merge.apply_response_lut(f, lut) for f in frames]
    for a, b in [(0, 1), (1, 2)]:
        ratio = midtone_ratio(frames[a], frames[b], x[a], x[b])
        assert ratio == pytest.approx(times[b] / times[a], rel=0.03)


def test_frobisher_srgb_is_not_this_cameras_response(frobisher):
    """The camera's JPEG tone curve is far from sRGB: the sRGB reading overstates 3 stops as ~3.6 stops.
    Recorded so a change in the data or in the curve shows up; the merge with it must still be sane."""
    frames, times, _ = frobisher
    x = [response.decode(f, "srgb") for f in frames]
    ratio = midtone_ratio(frames[0], frames[1], x[0], x[1])
    assert ratio > 1.3 * times[1] / times[0]


@pytest.mark.parametrize("kind", ["curve", "debevec"])
def test_frobisher_merges_to_finite_positive_float32(frobisher, kind):
    frames, times, lut = frobisher
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = photographs.merge_photographs(frames, times, curve="srgb", response=kind)
    assert result.hdr.shape == (3, 426, 640) and result.hdr.dtype == torch.float32
    assert torch.isfinite(result.hdr).all() and (result.hdr > 0).all()
    # The window is clipped even at 1/8 s (measured: phigh 4.7%, plow 0.01%): counted, finite, not 1.0.
    assert 0.03 < result.phigh < 0.06 and result.plow < 0.01
    assert result.hdr.max().item() == pytest.approx(8.0, rel=0.01)  # the 1/8 s frame's clip level
    if kind == "debevec":  # 1.0 = the reference (1 s) frame's clip level: mid-tones read as that frame does
        x_ref = merge.apply_response_lut(frames[1], lut)
        mid = (frames[1] > 0.2) & (frames[1] < 0.8)
        assert (result.hdr[mid] / x_ref[mid]).median().item() == pytest.approx(1.0, rel=0.03)


def test_debevec_leaves_no_matplotlib_stand_ins_behind():
    """colour mocks matplotlib when it is absent; diffusers (imported later in the same process) must still work."""
    import importlib.util
    import sys
    from unittest import mock

    photographs._import_colour_hdri()
    assert not any(isinstance(m, mock.Mock) for m in list(sys.modules.values()))
    importlib.util.find_spec("matplotlib")  # raised "matplotlib.__spec__ is not set" with the stand-ins in place


# ------------------------------------------------------------------------- input-preserving merge (l2h)
def _highlight_scene(size: int = 64, peak_stops: float = 3.0, slope: float = 0.125) -> torch.Tensor:
    """A grey scene [3, size, size] whose log2 radiance rises linearly (``slope`` stops per pixel) to a peak of
    2^peak_stops at the centre: a smooth highlight whose top clips at EV 0."""
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                            indexing="ij")
    r = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2).sqrt()
    return torch.exp2(peak_stops - slope * r).float().expand(3, size, size).clone()


def test_input_merge_keeps_the_input_and_takes_true_frames_where_it_clips():
    H = _highlight_scene()
    evs = (-4.0, -2.0, 0.0, 2.0)
    image = exposure.synthesize_bracket(H, [0.0])[0]
    out = merge.merge_with_input(image, exposure.synthesize_bracket(H, evs), evs).hdr
    well = ((image > 0.12) & (image < 0.88)).all(dim=0)
    torch.testing.assert_close(out[:, well], response.decode(image)[:, well], rtol=1e-5, atol=1e-7)
    clipped = (image >= 1.0).any(dim=0)
    assert clipped.sum() > 50  # the top of the highlight, up to 8x the clip level
    log_error = (out[:, clipped] / H[:, clipped]).log2().abs()
    assert log_error.max() < 0.05  # the true frames recover it within quantisation


def test_highlight_shrink_scales_the_predicted_excess_in_log_space():
    H = _highlight_scene()
    evs = (-4.0, -2.0, 0.0, 2.0)
    image, y = exposure.synthesize_bracket(H, [0.0])[0], exposure.synthesize_bracket(H, evs)
    full = merge.merge_with_input(image, y, evs).hdr
    half = merge.merge_with_input(image, y, evs, highlight_shrink=0.5).hdr
    c = float(response.decode(torch.tensor(1.0 - 0.5 / 255)))
    top = full.amax(dim=0) > 2 * c
    torch.testing.assert_close((half[:, top] / c).log2(), 0.5 * (full[:, top] / c).log2(), rtol=1e-4, atol=1e-4)
    with pytest.raises(InputError, match="highlight_shrink"):
        merge.merge_with_input(image, y, evs, highlight_shrink=0.0)


def test_rim_bound_follows_the_rise_around_a_clipped_region():
    smooth = exposure.synthesize_bracket(_highlight_scene(peak_stops=3.0, slope=0.125), [0.0])[0]
    bound = merge.rim_excess_bound(smooth)
    assert bound.max().item() == pytest.approx(3.0, rel=0.15)  # 24 px radius at 1/8 stop per pixel
    assert (bound[~(smooth >= 1.0).any(dim=0)] == 0).all()
    flat = torch.full((3, 32, 32), 0.9)
    flat[:, 8:24, 8:24] = 1.0  # a plateau a little below the clip, and a clipped square on it: no rise
    assert merge.rim_excess_bound(flat).max().item() < 0.05


def test_rim_bound_caps_the_prediction_keeps_its_hue_and_wraps_panoramas():
    H = _highlight_scene()
    evs = (-4.0, -2.0, 0.0, 2.0)
    image = exposure.synthesize_bracket(H, [0.0])[0]
    y = exposure.synthesize_bracket(H * torch.tensor([6.0, 4.0, 3.0])[:, None, None], evs)  # a tinted overshoot
    capped = merge.merge_with_input(image, y, evs, rim_bound=0.5).hdr
    c = float(response.decode(torch.tensor(1.0 - 0.5 / 255)))
    cap = c * torch.exp2(0.5 * merge.rim_excess_bound(image))
    assert (capped.amax(dim=0) <= cap * (1 + 1e-5)).all()
    free = merge.merge_with_input(image, y, evs).hdr
    top = (free.amax(dim=0) > 2 * cap) & (capped.amin(dim=0) > 1.01 * c)  # capped, and no channel at its floor
    assert top.sum() > 20
    torch.testing.assert_close(capped[:, top] / capped[0:1, top], free[:, top] / free[0:1, top], rtol=1e-4, atol=0)
    pano = torch.cat([image, image], dim=-1)  # 64x128: a 2:1 panorama with two highlights
    rolled = torch.roll(pano, 37, dims=-1)  # one of them crosses the +-180 degree seam
    torch.testing.assert_close(merge.rim_excess_bound(rolled, panorama=True),
                               torch.roll(merge.rim_excess_bound(pano, panorama=True), 37, dims=-1))


def test_max_ev_merges_only_the_frames_that_can_see_a_clipped_pixel():
    """Frames above max_ev are left out, as if absent; a frame above EV 0 that sees a clipped pixel well is wrong
    there, and leaving it out removes its error."""
    H = _highlight_scene()
    evs = (-4.0, -2.0, 0.0, 2.0)
    image, y = exposure.synthesize_bracket(H, [0.0])[0], exposure.synthesize_bracket(H, evs)
    kept = merge.merge_with_input(image, y[:3], evs[:3]).hdr
    torch.testing.assert_close(merge.merge_with_input(image, y, evs, max_ev=0.0).hdr, kept)
    wrong = y.clone()
    wrong[3] = 0.5  # EV +2 claims mid-grey everywhere, the clipped top of the highlight too
    clipped = (image >= 1.0).any(dim=0)
    error = lambda hdr: (hdr[:, clipped] / H[:, clipped]).log2().abs().mean()  # noqa: E731
    assert error(merge.merge_with_input(image, wrong, evs, max_ev=0.0).hdr) < 0.05
    assert error(merge.merge_with_input(image, wrong, evs).hdr) > 0.5
    with pytest.raises(InputError, match="max_ev"):
        merge.merge_with_input(image, y, evs, max_ev=-5.0)


def test_decoded_mask_keeps_the_input_outside_and_calibrates_inside():
    H = _highlight_scene()
    evs = (-4.0, -2.0, 0.0)
    image, y = exposure.synthesize_bracket(H, [0.0])[0], exposure.synthesize_bracket(H, evs)
    decoded = torch.zeros(64, 64, dtype=torch.bool)
    decoded[4:60, 4:60] = True  # the clipped top (radius 24 px) and its rim
    frames = torch.where(decoded, y, torch.ones_like(y))  # what selective decoding leaves outside: 1.0
    out = merge.merge_with_input(image, frames, evs, decoded=decoded).hdr
    torch.testing.assert_close(out[:, ~decoded], response.decode(image)[:, ~decoded])
    torch.testing.assert_close(out, merge.merge_with_input(image, y, evs).hdr, rtol=2e-3, atol=1e-6)
    gains = merge.calibration_gains(image, frames, evs, mask=decoded)
    assert all(abs(g - 1) < 0.02 for g in gains)  # true frames: calibrated on the decoded pixels only
