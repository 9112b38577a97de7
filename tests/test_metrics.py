"""Metrics: physics first (scale behaviour, known dynamic ranges, consistency of one scene's bracket),
then contracts (shapes, NaN, empty masks), then golden values (PU21 check values of METHOD.md)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from latenthdr import metrics, panorama
from latenthdr.errors import InputError
from latenthdr.exposure import synthesize_bracket


def _rand_hdr(seed: int, h: int = 32, w: int = 48, lo: float = -6.0, hi: float = 3.0) -> torch.Tensor:
    """Linear HDR [3, h, w] float64, log-uniform in [2^lo, 2^hi] with mildly coloured pixels."""
    g = torch.Generator().manual_seed(seed)
    level = torch.exp2(lo + (hi - lo) * torch.rand(1, h, w, generator=g))
    tint = 0.7 + 0.6 * torch.rand(3, h, w, generator=g)
    return (level * tint).double()


def _grey(values: torch.Tensor) -> torch.Tensor:
    """A grey image [3, 1, N] whose Rec.709 luminance equals ``values`` [N] (the weights sum to 1)."""
    return values.reshape(1, 1, -1).expand(3, 1, -1).clone()


# ------------------------------------------------------------------------------------------------ stops
def test_stops_of_a_log_ramp_spanning_2_to_the_k_is_k():
    k = 12
    ramp = torch.exp2(torch.linspace(0.0, k, 4001, dtype=torch.float64))
    assert metrics.stops(_grey(ramp), 0.0, 100.0) == pytest.approx(k, abs=1e-9)
    # P1..P99 of a log-uniform ramp covers 98% of its log range (interpolation error < 1e-3 stops here)
    assert metrics.stops(_grey(ramp)) == pytest.approx(0.98 * k, abs=1e-3)


def test_stops_ignore_scale_and_non_positive_pixels():
    H = _rand_hdr(0)
    s = metrics.stops(H)
    assert metrics.stops(H * 1000.0) == pytest.approx(s, abs=1e-6)  # float32 rounding of H * 1000
    with_black = torch.cat([H, torch.zeros_like(H)], dim=-1)
    assert metrics.stops(with_black) == pytest.approx(s, abs=1e-9)
    assert metrics.stops(H.half()) == pytest.approx(s, abs=1e-2)  # computed in float64 anyway


def test_stops_bad_input():
    with pytest.raises(InputError, match="positive"):
        metrics.stops(_grey(torch.tensor([0.0, 0.0, 1.0])))
    with pytest.raises(InputError, match="percentile"):
        metrics.stops(_rand_hdr(0), 99.0, 1.0)
    with pytest.raises(InputError, match="NaN"):
        metrics.stops(_grey(torch.tensor([1.0, math.nan, 2.0])))
    with pytest.raises(InputError, match=r"\[\.\.\., 3, H, W\]"):
        metrics.stops(torch.ones(4, 5, 5))


# ------------------------------------------------------------------------------------------------- PU21
def test_pu21_matches_method_md_check_values():
    Y = torch.tensor([0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0])
    expected = torch.tensor([5.7171, 36.5439, 123.6475, 256.3839, 420.0969, 595.3939], dtype=torch.float64)
    V = metrics.pu21_encode(Y)
    assert V.dtype == torch.float64
    assert torch.allclose(V, expected, atol=1e-3, rtol=0)


def test_pu21_clamps_to_its_range_and_is_increasing():
    V = metrics.pu21_encode(torch.tensor([0.0, 0.001, 0.005, 1e4, 1e6]))
    assert V[0] == V[1] == V[2] and V[3] == V[4]
    assert V[2] == pytest.approx(0.0, abs=1e-6)
    Y = torch.logspace(math.log10(0.005), 4, 500, dtype=torch.float64)
    assert (metrics.pu21_encode(Y).diff() > 0).all()


@settings(max_examples=50, deadline=None)
@given(st.floats(min_value=math.log10(0.005), max_value=4.0))
def test_pu21_decode_inverts_encode(log10_Y):
    Y = torch.tensor([10.0**log10_Y], dtype=torch.float64)
    assert metrics.pu21_decode(metrics.pu21_encode(Y)).item() == pytest.approx(Y.item(), rel=1e-7, abs=1e-9)


def test_pu21_decode_clamps_to_the_encodable_range():
    Y = metrics.pu21_decode(torch.tensor([-5.0, 0.0, 1000.0]))
    assert Y[0] == pytest.approx(0.005, rel=1e-6) and Y[1] == pytest.approx(0.005, rel=1e-6)
    assert Y[2] == pytest.approx(10000.0, rel=1e-9)


# ----------------------------------------------------------------------------------- PSNR, SSIM, align
def test_peak_scale_maps_the_reference_peak_to_the_display_peak():
    ref = _rand_hdr(1)
    s = metrics.peak_scale(ref, 4000.0)
    assert (ref.double() * s).max().item() == pytest.approx(4000.0, rel=1e-12)
    s_lum = metrics.peak_scale(ref, 1000.0, peak_of="luminance")
    assert (metrics._lum(ref.double()) * s_lum).max().item() == pytest.approx(1000.0, rel=1e-12)
    with pytest.raises(InputError, match="black"):
        metrics.peak_scale(torch.zeros(3, 4, 4))
    with pytest.raises(InputError, match="peak_nits"):
        metrics.peak_scale(ref, -1.0)


def test_pu21_psnr_identical_is_inf_and_falls_with_noise():
    ref = _rand_hdr(2)
    assert metrics.pu21_psnr(ref, ref) == math.inf
    g = torch.Generator().manual_seed(3)
    noise = torch.randn(ref.shape, generator=g)
    psnrs = [metrics.pu21_psnr(ref * torch.exp2(sigma * noise), ref) for sigma in (0.01, 0.1, 0.5)]
    assert psnrs[0] > psnrs[1] > psnrs[2]
    assert 20.0 < psnrs[2] < psnrs[0] < 80.0


def test_pu21_psnr_is_invariant_to_a_common_scale_not_to_a_relative_one():
    ref = _rand_hdr(4)
    pred = ref * torch.exp2(0.2 * torch.randn(ref.shape, generator=torch.Generator().manual_seed(5)))
    p = metrics.pu21_psnr(pred, ref)
    assert metrics.pu21_psnr(pred * 50.0, ref * 50.0) == pytest.approx(p, abs=1e-9)  # peak mapping
    assert metrics.pu21_psnr(pred * 2.0, ref) < p - 1.0


def test_align_recovers_a_known_scale():
    ref = _rand_hdr(6)
    pred = ref * 0.3
    assert metrics.align_scale(pred, ref) == pytest.approx(1 / 0.3, rel=1e-9)
    assert metrics.pu21_psnr(pred, ref, align=True) > 100.0
    assert metrics.pu21_psnr(pred, ref) < 40.0
    mask = torch.zeros(ref.shape[-2:], dtype=torch.bool)
    mask[:4, :4] = True
    pred_masked = pred.clone()
    pred_masked[..., 4:, :] *= 7.0  # outside the mask: must not affect the fit
    assert metrics.align_scale(pred_masked, ref, mask) == pytest.approx(1 / 0.3, rel=1e-9)
    with pytest.raises(InputError, match="mask"):
        metrics.align_scale(pred, ref, torch.zeros_like(mask))


def test_ssim_is_one_for_identical_images_and_falls_with_noise():
    g = torch.Generator().manual_seed(7)
    x = torch.nn.functional.avg_pool2d(torch.rand(1, 1, 70, 70, generator=g), 5, 1)[0, 0] * 200  # smooth
    assert metrics.ssim(x, x, data_range=256) == pytest.approx(1.0, abs=1e-12)
    noise = torch.randn(x.shape, generator=g)
    values = [metrics.ssim(x + s * noise, x, data_range=256) for s in (1.0, 5.0, 20.0)]
    assert 1.0 > values[0] > values[1] > values[2]


def test_pu21_ssim_contract():
    ref = _rand_hdr(8, 24, 24)
    assert metrics.pu21_ssim(ref, ref) == pytest.approx(1.0, abs=1e-12)
    noisy = ref * torch.exp2(2.0 * torch.randn(ref.shape, generator=torch.Generator().manual_seed(9)))
    assert metrics.pu21_ssim(noisy, ref) < metrics.pu21_ssim(ref * 1.01, ref) < 1.0
    assert metrics.pu21_ssim(ref * 0.25, ref, align=True) == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(InputError, match="11x11"):
        metrics.pu21_ssim(ref[..., :8, :8], ref[..., :8, :8])


def test_ssim_matches_scikit_image_when_available():
    skm = pytest.importorskip("skimage.metrics", reason="scikit-image is not installed")
    g = torch.Generator().manual_seed(10)
    x, y = torch.rand(40, 50, generator=g) * 256, torch.rand(40, 50, generator=g) * 256
    ours = metrics.ssim(x, y, data_range=256)
    theirs = skm.structural_similarity(x.double().numpy(), y.double().numpy(), data_range=256,
                                       gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert ours == pytest.approx(theirs, abs=1e-9)


def test_pred_ref_contracts():
    ref = _rand_hdr(11)
    with pytest.raises(InputError, match="pred"):
        metrics.pu21_psnr(ref[..., :-1], ref)
    bad = ref.clone()
    bad[0, 0, 0] = math.inf
    with pytest.raises(InputError, match="NaN or Inf"):
        metrics.pu21_psnr(bad, ref)
    batch = torch.stack([ref, ref * 0.5])  # leading dims are pooled
    assert metrics.pu21_psnr(batch, batch) == math.inf


# --------------------------------------------------------------------------------------- error in stops
def test_log_error_stops_of_a_one_stop_error():
    ref = _rand_hdr(12)
    err = metrics.log_error_stops(ref * 2.0, ref)
    assert err["median_abs"] == pytest.approx(1.0, abs=1e-6)
    assert err["rms"] == pytest.approx(1.0, abs=1e-6) and err["bias"] == pytest.approx(1.0, abs=1e-6)
    assert err["pixels"] == ref.shape[-1] * ref.shape[-2]
    empty = metrics.log_error_stops(ref, ref, torch.zeros(ref.shape[-2:], dtype=torch.bool))
    assert empty["pixels"] == 0 and math.isnan(empty["rms"]) and math.isnan(empty["median_abs"])


def test_well_exposed_mask():
    ldr = torch.tensor([[0.5, 0.02, 0.99, 0.5]]).expand(3, 1, 4).clone()  # [3, 1, 4]
    ldr[1, 0, 3] = 0.98
    assert metrics.well_exposed_mask(ldr).tolist() == [[True, False, False, False]]
    with pytest.raises(InputError, match="low/high"):
        metrics.well_exposed_mask(ldr, 0.9, 0.1)


# ------------------------------------------------------------------------------------------------- seam
def _smooth_field(seed: int, h: int, w: int, periodic: bool) -> torch.Tensor:
    """A smooth positive HDR panorama [3, h, w]: sinusoids of yaw (periodic) or a random walk along x."""
    g = torch.Generator().manual_seed(seed)
    yaw = torch.linspace(0, 2 * math.pi, w + 1)[:-1]
    if periodic:
        log2_level = sum(torch.rand(1, generator=g) * torch.sin(k * yaw + 6 * torch.rand(1, generator=g))
                         for k in (1, 2, 3))
        field = log2_level.expand(h, w) + torch.linspace(-1, 1, h)[:, None]
    else:
        steps = torch.nn.functional.avg_pool1d(torch.randn(h, 1, w + 8, generator=g), 9, 1)[:, 0]  # [h, w]
        field = steps.cumsum(-1) * 0.3
    return torch.exp2(field).expand(3, h, w).clone()


def test_seam_error_smooth_periodic_panorama_is_seamless():
    pano = _smooth_field(0, 32, 64, periodic=True)
    r = metrics.seam_error(pano)
    assert r["seam"] <= r["adjacent_max"] and r["ratio"] < 2.0  # a column step like the others
    # a triangle wave of yaw is mirror-symmetric across the seam: no step there at all
    yaw01 = (torch.arange(64, dtype=torch.float64) + 0.5) / 64
    tri = torch.exp2(4 * (yaw01 - 0.5).abs()).expand(3, 32, 64)
    r = metrics.seam_error(tri)
    assert r["seam"] <= r["adjacent"] and r["ratio"] == pytest.approx(0.0, abs=1e-9)


def test_seam_error_flags_a_seam_and_rolling_it_mid_image_hides_it():
    pano = _smooth_field(1, 32, 64, periodic=False)  # a random walk does not close on itself
    broken = metrics.seam_error(pano)
    assert broken["seam"] > 3 * broken["adjacent"] and broken["seam"] > broken["adjacent_max"]
    rolled = metrics.seam_error(panorama.roll_yaw(pano, 180.0))  # the jump is now at column W/2
    assert rolled["seam"] <= rolled["adjacent"]
    assert rolled["adjacent"] > broken["adjacent"]  # ... and counted among the adjacent pairs


# ------------------------------------------------------------------------------ consistency, fallbacks
def test_frames_of_one_scene_are_consistent_within_quantisation():
    H = _rand_hdr(13, lo=-2.5, hi=-0.5)  # mid-tones at EV 0 and EV 1
    y = synthesize_bracket(H, [0.0, 1.0])  # [2, 3, h, w], 8-bit
    assert metrics.cross_exposure_consistency(y[0], 0.0, y[1], 1.0) < 0.02
    y_exact = synthesize_bracket(H, [0.0, 1.0], bits=None)
    assert metrics.cross_exposure_consistency(y_exact[0], 0.0, y_exact[1], 1.0) < 1e-6


def test_a_one_stop_radiance_disagreement_reads_one_stop():
    H = _rand_hdr(14, lo=-3.5, hi=-1.5)
    y_a = synthesize_bracket(H, [0.0])[0]
    y_b = synthesize_bracket(2.0 * H, [0.0])[0]  # labelled EV 0 but holds twice the radiance
    assert metrics.cross_exposure_consistency(y_a, 0.0, y_b, 0.0) == pytest.approx(1.0, abs=0.02)


def test_consistency_with_no_common_pixel_is_nan():
    black, white = torch.zeros(3, 4, 4), torch.ones(3, 4, 4)
    assert math.isnan(metrics.cross_exposure_consistency(black, 0.0, white, 1.0))
    with pytest.raises(InputError, match="curve"):
        metrics.cross_exposure_consistency(black, 0.0, white, 1.0, curve="log")


def test_bracket_consistency_of_a_synthetic_ladder():
    H = _rand_hdr(15, lo=-5.0, hi=2.0)
    evs = [-2.0, -1.0, 0.0, 1.0, 2.0]
    y = synthesize_bracket(H, evs, bits=None)
    assert metrics.bracket_consistency(y, evs) < 1e-6
    y_q = synthesize_bracket(H, evs)
    shuffled = [3, 0, 4, 1, 2]  # frame order must not matter
    value = metrics.bracket_consistency(y_q[shuffled], [evs[i] for i in shuffled])
    assert value == pytest.approx(metrics.bracket_consistency(y_q, evs), abs=1e-12) and value < 0.05
    wrong = metrics.bracket_consistency(y_q, [e + 0.5 * i for i, e in enumerate(evs)])  # each step off 0.5
    assert wrong == pytest.approx(0.5, abs=0.05)
    with pytest.raises(InputError, match="evs"):
        metrics.bracket_consistency(y_q, evs[:-1])


def test_fallback_fractions_of_a_bracket_with_black_and_saturated_regions():
    H = _rand_hdr(16, 20, 20, lo=-3.0, hi=0.0)
    H[..., :5, :] = 0.0  # 25%: black in every frame
    H[..., 5:7, :] = 1e6  # 10%: saturated in every frame of -7..5
    evs = [float(e) for e in range(-7, 6)]
    y = synthesize_bracket(H, evs)
    f = metrics.fallback_fractions(y)
    assert f == pytest.approx({"plow": 0.25, "phigh": 0.10}, abs=1e-12)
    assert metrics.fallback_fractions(y, evs=evs) == f
    batch = torch.stack([y, synthesize_bracket(_rand_hdr(17, 20, 20, -3.0, 0.0), evs)])  # pooled
    assert metrics.fallback_fractions(batch) == pytest.approx({"plow": 0.125, "phigh": 0.05}, abs=1e-12)
    with pytest.raises(InputError, match="bracket"):
        metrics.fallback_fractions(y[0])
