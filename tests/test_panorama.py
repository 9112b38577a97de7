"""Panorama helpers: geometry first (directions, where a crop looks, continuity across the seam), then
contracts (round trips, shapes, dtypes, argument checks), as hypothesis properties where they fit."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from latenthdr import panorama
from latenthdr.errors import InputError


def _direction(yaw_deg: float, pitch_deg: float) -> torch.Tensor:
    """The module's convention, written out: Y up, yaw 0 = +Z, yaw +90 = -X."""
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
    return torch.tensor([-math.sin(yaw) * math.cos(pitch), math.sin(pitch), math.cos(yaw) * math.cos(pitch)],
                        dtype=torch.float64)


def _direction_pano(height: int = 128, width: int = 256) -> torch.Tensor:
    """A panorama [3, H, W] whose colour is its own view direction (continuous on the sphere)."""
    return panorama.direction_grid(height, width).permute(2, 0, 1).contiguous()


def _centre(img: torch.Tensor) -> torch.Tensor:
    """The value at the exact centre of an even-sized image [3, h, w] (mean of the 4 central pixels)."""
    h, w = img.shape[-2:]
    return img[:, h // 2 - 1 : h // 2 + 1, w // 2 - 1 : w // 2 + 1].mean(dim=(-2, -1))


# ---------------------------------------------------------------------------------------------- geometry
def test_direction_grid_layout():
    d = panorama.direction_grid(64, 128)
    assert d.shape == (64, 128, 3) and d.dtype == torch.float64
    assert torch.allclose(d.norm(dim=-1), torch.ones(64, 128, dtype=torch.float64))
    assert d[0, :, 1].min() > 0.99 and d[-1, :, 1].max() < -0.99  # row 0 = zenith, last row = nadir
    mid = d[31:33, 63:65].mean(dim=(0, 1))
    assert torch.allclose(mid / mid.norm(), _direction(0, 0), atol=1e-3)  # centre looks along +Z
    quarter = d[31:33, 95:97].mean(dim=(0, 1))
    assert torch.allclose(quarter / quarter.norm(), _direction(90, 0), atol=1e-3)  # yaw +90 = -X, right of centre
    seam = torch.stack([d[31:33, 0], d[31:33, -1]]).mean(dim=(0, 1))
    assert torch.allclose(seam / seam.norm(), _direction(180, 0), atol=1e-3)  # the seam looks along -Z


@pytest.mark.parametrize("yaw,pitch", [(0, 0), (45, 20), (-120, -35), (90, 60), (10, -80)])
def test_perspective_crop_looks_where_it_is_asked_to(yaw, pitch):
    crop = panorama.equirect_to_perspective(_direction_pano(), yaw, pitch, 60.0, 32, 48)
    assert crop.shape == (3, 32, 48)
    c = _centre(crop)
    assert torch.allclose(c / c.norm(), _direction(yaw, pitch), atol=5e-3)


def test_perspective_crop_orientation_right_is_right_and_up_is_up():
    crop = panorama.equirect_to_perspective(_direction_pano(), 0.0, 0.0, 90.0, 32, 32)
    left, right = crop[:, 16, 0], crop[:, 16, -1]
    assert left[0] > 0.6 and right[0] < -0.6  # x: +X to the left of +Z, -X (yaw +90) to the right
    assert crop[1, 0, 16] > 0.6 and crop[1, -1, 16] < -0.6  # y: up at the top row
    # the horizontal FoV is 90 deg: the edge pixel centres are atan(31/32) from the axis
    expected = math.degrees(math.atan(31 / 32))
    assert math.degrees(math.atan2(-right[0].item(), right[2].item())) == pytest.approx(expected, abs=0.5)


def test_crops_across_the_seam_are_continuous():
    pano = _direction_pano()
    crop = panorama.equirect_to_perspective(pano, 180.0, 0.0, 40.0, 24, 48)  # straddles +-180 deg
    c = _centre(crop)
    assert torch.allclose(c / c.norm(), _direction(180, 0), atol=5e-3)
    step = crop.diff(dim=-1).abs().max()
    interior = panorama.equirect_to_perspective(pano, 0.0, 0.0, 40.0, 24, 48).diff(dim=-1).abs().max()
    assert step < 1.5 * interior  # no jump where the crop crosses the seam
    # turning the panorama by 180 deg puts the same view in the middle of the image
    rolled = panorama.equirect_to_perspective(panorama.roll_yaw(pano, 180.0), 0.0, 0.0, 40.0, 24, 48)
    assert torch.allclose(crop, rolled, atol=1e-9)


def test_crop_over_the_pole_is_continuous():
    crop = panorama.equirect_to_perspective(_direction_pano(), 30.0, 90.0, 60.0, 32, 32)
    assert crop[1].min() > 0.7  # every ray goes up (corner rays are 39 deg from the zenith)
    c = _centre(crop)
    assert torch.allclose(c / c.norm(), _direction(0, 90), atol=5e-3)
    assert crop.diff(dim=-1).abs().max() < 0.1 and crop.diff(dim=-2).abs().max() < 0.1
    # within half a row of the zenith, samples interpolate across the pole (to the row turned by 180
    # deg), not towards a copy of row 0: the horizontal components of the direction average out to 0
    coarse = _direction_pano(16, 32)
    assert coarse[0, 0].abs().max() > 0.05  # row 0 itself is 5.6 deg from the pole
    tiny = panorama.equirect_to_perspective(coarse, 30.0, 90.0, 1.0, 4, 4)
    assert tiny[0].abs().max() < 0.01 and tiny[2].abs().max() < 0.01


def test_perspective_to_equirect_and_back():
    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.interpolate(torch.rand(1, 3, 6, 8, generator=g), size=(48, 64), mode="bilinear",
                                          align_corners=False)[0].double()  # smooth [3, 48, 64]
    pano, mask = panorama.perspective_to_equirect(img, -150.0, 10.0, 70.0, 256, 512)
    assert pano.shape == (3, 256, 512) and mask.shape == (256, 512) and mask.dtype == torch.bool
    assert (pano[:, ~mask] == 0).all() and 0.02 < mask.float().mean() < 0.2
    assert not mask[128, 256]  # yaw 0 is behind this camera
    back = panorama.equirect_to_perspective(pano, -150.0, 10.0, 70.0, 48, 64)
    inner = (slice(None), slice(4, -4), slice(4, -4))
    assert (back[inner] - img[inner]).abs().max() < 0.03


# ------------------------------------------------------------------------------------ roll and padding
def test_roll_yaw_sign_matches_the_camera():
    pano = _direction_pano(64, 128)
    rolled = panorama.roll_yaw(pano, 90.0)  # turn right by 90 deg: what was at yaw 90 is now in front
    c = _centre(rolled)
    assert torch.allclose(c / c.norm(), _direction(90, 0), atol=1e-3)
    a = panorama.equirect_to_perspective(rolled, 0.0, 5.0, 50.0, 16, 16)
    b = panorama.equirect_to_perspective(pano, 90.0, 5.0, 50.0, 16, 16)
    assert torch.allclose(a, b, atol=1e-9)


def test_roll_yaw_interpolates_between_columns():
    pano = torch.arange(8, dtype=torch.float64).expand(1, 4, 8)
    half = panorama.roll_yaw(pano, 360.0 / 8 / 2)  # half a column
    assert torch.allclose(half[0, 0, :-1], torch.arange(7, dtype=torch.float64) + 0.5)
    assert half[0, 0, -1] == pytest.approx(3.5)  # wraps: mean of column 7 and column 0
    assert torch.equal(panorama.roll_yaw(pano, 360.0), pano)


@settings(max_examples=40, deadline=None)
@given(k=st.integers(-100, 100), width=st.integers(3, 40))
def test_roll_then_unroll_is_identity(k, width):
    pano = torch.rand(2, 3, 5, width, generator=torch.Generator().manual_seed(width))
    a = k * 360.0 / width
    assert torch.equal(panorama.roll_yaw(panorama.roll_yaw(pano, a), -a), pano)


@settings(max_examples=40, deadline=None)
@given(pad=st.integers(0, 50), width=st.integers(1, 20), height=st.integers(1, 4))
def test_wrap_pad_then_unwrap_crop_is_identity(pad, width, height):
    x = torch.rand(2, height, width, generator=torch.Generator().manual_seed(pad))
    padded = panorama.wrap_pad(x, pad)
    assert padded.shape == (2, height, width + 2 * pad)
    assert torch.equal(panorama.unwrap_crop(padded, pad), x)
    cols = torch.arange(-pad, width + pad) % width  # every column is the one it wraps around to
    assert torch.equal(padded, x[..., cols])


def test_wrap_pad_matches_circular_padding():
    x = torch.rand(1, 3, 4, 10)
    expected = torch.nn.functional.pad(x, (3, 3, 0, 0), mode="circular")
    assert torch.equal(panorama.wrap_pad(x, 3), expected)


# ----------------------------------------------------------------------------------------- contracts
def test_batch_and_dtype_are_kept():
    pano = _direction_pano(32, 64).float().expand(2, 5, 3, 32, 64)
    crop = panorama.equirect_to_perspective(pano, 10.0, 0.0, 60.0, 8, 12)
    assert crop.shape == (2, 5, 3, 8, 12) and crop.dtype == torch.float32
    assert torch.allclose(crop[1, 4], panorama.equirect_to_perspective(pano[0, 0], 10.0, 0.0, 60.0, 8, 12))
    assert panorama.roll_yaw(pano.half(), 7.3).dtype == torch.float16


def test_is_equirectangular():
    assert panorama.is_equirectangular(512, 1024)
    assert panorama.is_equirectangular(512, 1030)  # within 1%
    assert not panorama.is_equirectangular(512, 768)
    with pytest.raises(InputError, match="height"):
        panorama.is_equirectangular(0, 10)


@pytest.mark.parametrize(
    "kwargs,argument",
    [
        ({"fov_deg": 0.0}, "fov_deg"),
        ({"fov_deg": 180.0}, "fov_deg"),
        ({"yaw_deg": math.nan}, "yaw_deg"),
        ({"pitch_deg": 91.0}, "pitch_deg"),
        ({"pitch_deg": math.inf}, "pitch_deg"),
        ({"out_height": 0}, "out_height"),
        ({"out_width": 2.5}, "out_width"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, argument):
    args = {"yaw_deg": 0.0, "pitch_deg": 0.0, "fov_deg": 60.0, "out_height": 8, "out_width": 8} | kwargs
    with pytest.raises(InputError) as info:
        panorama.equirect_to_perspective(_direction_pano(16, 32), **args)
    assert info.value.argument == argument


def test_bad_inputs():
    with pytest.raises(InputError, match="pano"):
        panorama.roll_yaw(torch.zeros(4, 8, dtype=torch.int64), 10.0)
    with pytest.raises(InputError, match="yaw_deg"):
        panorama.roll_yaw(torch.zeros(3, 4, 8), math.inf)
    with pytest.raises(InputError, match="pad"):
        panorama.wrap_pad(torch.zeros(3, 4, 8), -1)
    with pytest.raises(InputError, match="pad"):
        panorama.unwrap_crop(torch.zeros(3, 4, 8), 4)
    with pytest.raises(InputError, match="width"):
        panorama.perspective_to_equirect(torch.zeros(3, 4, 4), 0.0, 0.0, 60.0, 8, 0)
