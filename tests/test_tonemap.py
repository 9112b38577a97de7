"""Tone mapping and contact sheets: physics of exposure first, then contracts, then golden values."""

from __future__ import annotations

import math

import pytest
import torch

from latenthdr import exposure, response, tonemap
from latenthdr.errors import InputError

OPERATORS = ["aces", "reinhard", "clip"]


def grey_ramp(n=64, low_stop=-12.0, high_stop=8.0) -> torch.Tensor:
    """[3, 1, n] neutral radiance rising log-uniformly, float32."""
    return torch.exp2(torch.linspace(low_stop, high_stop, n)).expand(3, 1, n).clone()


def coloured(seed=0, shape=(2, 3, 8, 8)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.exp2(torch.randn(shape, generator=g) * 3)


# -- physics -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("operator", OPERATORS)
def test_monotonic_in_radiance_and_in_range(operator):
    out = tonemap.tonemap(grey_ramp(), operator=operator)
    assert out.dtype == torch.float32 and out.min() >= 0 and out.max() <= 1
    assert (out[:, :, 1:] >= out[:, :, :-1]).all()
    assert (out[:, :, -1] > out[:, :, 0]).all()


@pytest.mark.parametrize("operator", OPERATORS)
def test_black_maps_to_black(operator):
    assert (tonemap.tonemap(torch.zeros(3, 4, 4), operator=operator) == 0).all()


@pytest.mark.parametrize("operator", OPERATORS)
def test_plus_one_ev_equals_doubling_the_input(operator):
    H = coloured()
    torch.testing.assert_close(
        tonemap.tonemap(H, operator, exposure_ev=1.0), tonemap.tonemap(2 * H, operator), rtol=1e-6, atol=1e-6
    )


def test_clip_operator_is_the_bracket_frame():
    """At exposure e, "clip" with gamma 2.2 is METHOD.md's bracket frame before quantisation."""
    H = coloured(seed=1)[0]
    y = exposure.synthesize_bracket(H, [-1.5], curve="gamma2.2", bits=None)[0]
    torch.testing.assert_close(tonemap.tonemap(H, "clip", exposure_ev=-1.5, curve="gamma2.2"), y)


def test_reinhard_white_point_maps_to_one_and_keeps_hue():
    out = tonemap.tonemap(grey_ramp(), "reinhard", curve="linear")  # white = the brightest pixel
    assert out[:, 0, -1].tolist() == pytest.approx([1.0] * 3) and out[:, 0, -2].max() < 1.0
    torch.testing.assert_close(out[0], out[1])  # neutral stays neutral
    torch.testing.assert_close(out[0], out[2])
    H = torch.tensor([0.5, 0.25, 0.125]).view(3, 1, 1)  # a colour: L / (1 + L) scales RGB together
    L = sum(w * v for w, v in zip(response.REC709_LUMA, H.flatten().tolist()))
    out = tonemap.tonemap(H, "reinhard", curve="linear", white=math.inf)
    torch.testing.assert_close(out, H / (1 + L))


def test_auto_exposure_maps_log_average_to_key():
    H = torch.full((3, 4, 4), 0.045)
    assert tonemap.auto_exposure_ev(H, key=0.18) == pytest.approx(2.0, abs=1e-4)
    assert tonemap.auto_exposure_ev(4 * H, key=0.18) == pytest.approx(0.0, abs=1e-4)
    assert tonemap.auto_exposure_ev(torch.zeros(3, 4, 4)) == 0.0


# -- golden values -------------------------------------------------------------------------------------


def test_aces_golden_values():
    # f(x) = x (2.51 x + 0.03) / (x (2.43 x + 0.59) + 0.14), by hand:
    # f(0.18) = 0.18 * 0.4818 / (0.18 * 1.0274 + 0.14) = 0.086724 / 0.324932 = 0.266898
    # f(1) = 2.54 / 3.16 = 0.803797;  f(0.5) = 0.5 * 1.285 / (0.5 * 1.805 + 0.14) = 0.6425 / 1.0425 = 0.616307
    # f(100) = 25103 / 24359.14 > 1 -> 1
    x = torch.tensor([0.0, 0.18, 0.5, 1.0, 100.0]).view(1, 1, 5).expand(3, 1, 5)
    out = tonemap.tonemap(x, "aces", curve="linear")[0, 0]
    torch.testing.assert_close(out, torch.tensor([0.0, 0.266898, 0.616307, 0.803797, 1.0]), atol=2e-6, rtol=0)
    srgb = tonemap.tonemap(x, "aces", curve="srgb")[0, 0]
    torch.testing.assert_close(srgb, response.encode(out, "srgb"))


# -- contracts -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"operator": "filmic"}, "operator"),
        ({"curve": "pq"}, "curve"),
        ({"exposure_ev": float("nan")}, "exposure_ev"),
    ],
)
def test_bad_options(kwargs, argument):
    with pytest.raises(InputError) as info:
        tonemap.tonemap(torch.ones(3, 2, 2), **kwargs)
    assert info.value.argument == argument


def test_bad_hdr():
    for H in [torch.full((3, 2, 2), float("nan")), torch.ones(2, 2), torch.ones(4, 2, 2)]:
        with pytest.raises(InputError) as info:
            tonemap.tonemap(H)
        assert info.value.argument == "H"


def test_contact_sheet_layout_for_thirteen_frames():
    evs = exposure.parse_ev_ladder("-7:5:1")
    frames = exposure.synthesize_bracket(coloured(seed=3, shape=(3, 40, 80)), evs)
    sheet = tonemap.contact_sheet(frames, columns=5, max_tile_width=40)  # tiles 40 x 20, 3 rows
    sep = tonemap.SHEET_SEPARATOR_PX
    assert sheet.shape == (3, 3 * (20 + sep) + sep, 5 * (40 + sep) + sep)
    assert sheet.dtype == torch.float32 and sheet.min() >= 0 and sheet.max() <= 1
    default = tonemap.contact_sheet(frames, max_tile_width=40)  # ceil(sqrt(13)) = 4 columns, 4 rows
    assert default.shape == (3, 4 * (20 + sep) + sep, 4 * (40 + sep) + sep)


def test_contact_sheet_labels_are_drawn():
    frames = torch.full((13, 3, 32, 64), 0.5)
    labels = [f"EV {e:+g}" for e in range(-7, 6)]
    blank = tonemap.contact_sheet(frames, labels=[""] * 13, columns=5)
    drawn = tonemap.contact_sheet(frames, labels=labels, columns=5)
    assert drawn.shape == blank.shape
    assert (drawn != blank).sum() > 100
    assert drawn.max() > 0.9  # white text on the dark strip
    with pytest.raises(InputError) as info:
        tonemap.contact_sheet(frames, labels=labels[:3])
    assert info.value.argument == "labels"
    with pytest.raises(InputError) as info:
        tonemap.contact_sheet(frames + 0.6)
    assert info.value.argument == "frames"
