"""Radiometry without models: display curves, quantisation, EV ladders, bracket synthesis, EV-0 anchoring."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from latenthdr import exposure, response
from latenthdr.errors import InputError


# --- physics ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("curve", ["gamma2.2", "srgb", "linear"])
def test_display_curve_round_trip_is_exact(curve):
    x = torch.linspace(0, 1, 10001, dtype=torch.float64)
    assert torch.allclose(response.decode(response.encode(x, curve), curve), x, atol=1e-12)


def test_srgb_is_continuous_at_its_break_and_matches_reference_points():
    # IEC 61966-2-1: linear 0.0031308 -> 0.04045, linear 0.5 -> 0.735356..., linear 0.18 -> 0.461356...
    got = response.encode(np.array([0.0031308, 0.18, 0.5]), "srgb")
    assert np.allclose(got, [0.04045, 0.4613561, 0.7353570], atol=2e-6)


def test_gamma22_is_the_paper_curve():
    assert float(response.encode(torch.tensor(0.5), "gamma2.2")) == pytest.approx(0.5 ** (1 / 2.2))


def test_plus_one_ev_doubles_linear_signal():
    H = torch.rand(2, 3, 16, 16) * 0.4  # never clips at EV +1
    y = exposure.synthesize_bracket(H, [0.0, 1.0], bits=None)  # [2,2,3,16,16]
    x0, x1 = response.decode(y[:, 0]), response.decode(y[:, 1])
    assert torch.allclose(x1, 2 * x0, rtol=1e-5, atol=1e-7)


def test_bracket_frames_clip_at_one_and_quantise_to_8_bits():
    H = torch.tensor([0.0, 0.5, 1.0, 8.0]).view(1, 1, 4).expand(3, 1, 4)
    y = exposure.synthesize_bracket(H, [-3, 0, 2])
    assert y.shape == (3, 3, 1, 4)
    codes = y * 255
    assert torch.allclose(codes, codes.round(), atol=1e-4)
    assert y[1, :, 0, 3].eq(1).all() and y[0, :, 0, 3].eq(1).all()  # 8 * 2^-3 = 1 still clips
    assert y[0, :, 0, 1].lt(1).all()


@given(st.floats(0.0, 1.0), st.sampled_from([8, 10, 16]))
def test_quantise_error_is_at_most_half_a_code(v, bits):
    q = float(response.quantize(np.float64(v), bits))
    assert abs(q - v) <= 0.5 / (2**bits - 1) + 1e-12


def test_luminance_uses_rec709_weights_on_any_axis():
    rgb = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
    assert float(response.luminance(rgb, channel_axis=-3)) == pytest.approx(0.2126)
    assert response.luminance(np.ones((4, 5, 3))).shape == (4, 5)


# --- EV ladders ----------------------------------------------------------------------------------------
def test_default_ladder_is_13_frames():
    assert exposure.parse_ev_ladder(exposure.DEFAULT_LADDER) == tuple(float(e) for e in range(-7, 6))


@pytest.mark.parametrize(
    "spec,expected",
    [("-3:3:0.5", tuple(np.arange(-3, 3.01, 0.5))), ("2,-2,0", (-2.0, 0.0, 2.0)), ("-1:1:2", (-1.0, 1.0)),
     ("0.25", (0.25,)), ([1, 0.5], (0.5, 1.0)), ("-2:2:0.75", (-2.0, -1.25, -0.5, 0.25, 1.0, 1.75))],
)
def test_ladder_forms(spec, expected):
    assert exposure.parse_ev_ladder(spec) == pytest.approx(expected)


@pytest.mark.parametrize("spec", ["", "a:b:c", "1:2", "0:1:0", "0:1:-1", "3:1:1", "1,1,2", "nan", "0,inf", "0:1000:1"])
def test_bad_ladders_name_the_argument(spec):
    with pytest.raises(InputError) as err:
        exposure.parse_ev_ladder(spec, argument="--evs")
    assert "--evs" in str(err.value)


@given(st.lists(st.floats(-20, 20), min_size=1, max_size=30, unique=True))
def test_format_then_parse_round_trips(evs):
    evs = sorted(round(e, 3) for e in evs)
    if len(set(evs)) != len(evs):
        return
    assert exposure.parse_ev_ladder(exposure.format_ev_ladder(evs)) == pytest.approx(tuple(evs), abs=1e-6)


# --- EV-0 anchoring ------------------------------------------------------------------------------------
@settings(deadline=None, max_examples=25)
@given(st.floats(0.002, 0.2), st.integers(0, 2**31 - 1))
def test_anchor_by_clipped_fraction_clips_that_fraction(fraction, seed):
    g = torch.Generator().manual_seed(seed)
    H = torch.exp(torch.randn(3, 64, 64, generator=g) * 2)
    scaled, s = exposure.anchor(H, clipped_fraction=fraction)
    clipped = (scaled.amax(dim=0) >= 1.0).float().mean().item()
    assert abs(clipped - fraction) <= 1.5 / 4096 + 1e-9
    assert s > 0 and math.isfinite(s)


def test_anchor_by_percentile_maps_that_percentile_to_one():
    H = torch.linspace(0.001, 10, 1000).view(1, 1, 1000).expand(3, 1, 1000)
    s = exposure.anchor_scale(H, percentile=50)
    assert float(torch.quantile(H[0].flatten(), 0.5)) * s == pytest.approx(1.0)
    assert exposure.anchor_scale(H) == pytest.approx(1 / float(torch.quantile(H[0].flatten(), 0.999)))


def test_anchor_rejects_black_images_and_bad_arguments():
    with pytest.raises(InputError, match="black"):
        exposure.anchor_scale(torch.zeros(3, 4, 4))
    with pytest.raises(InputError, match="clipped_fraction"):
        exposure.anchor_scale(torch.ones(3, 4, 4), clipped_fraction=1.5)
    with pytest.raises(InputError):
        exposure.anchor_scale(torch.ones(3, 4, 4), clipped_fraction=0.1, percentile=99)


def test_unseen_fractions_count_clipped_and_black_pixels_per_cell():
    y0 = torch.full((1, 3, 8, 16), 0.5)
    y0[0, 1, :4, :4] = 1.0  # one channel at the top code clips a quarter of the first cell
    y0[0, :, 4:, 8:] = 0.0  # every channel at 0: half of the second cell is black
    y0[0, 0, 6:, 8:] = 1.0 / 255  # one code above black in one channel is not black
    maps = exposure.unseen_fractions(y0, 8)
    assert maps.shape == (1, 2, 1, 2) and maps.dtype == torch.float32
    assert maps[0, 0].tolist() == [[0.25, 0.0]] and maps[0, 1].tolist() == [[0.0, 0.25]]
    assert exposure.unseen_fractions(y0 * 0.99, 8, clipped_level=0.98)[0, 0].tolist() == [[0.25, 0.0]]
    with pytest.raises(InputError, match="y0"):
        exposure.unseen_fractions(y0[..., :12], 8)
    with pytest.raises(InputError, match="y0"):
        exposure.unseen_fractions(y0[0], 8)
