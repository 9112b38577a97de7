"""Absolute scale on request (``--white-nits``, ``--scale pP=V``, ``--illuminance``), physics first: the equirect
solid angles, the horizontal illuminance of a uniform sky (E = pi L), an anchor that is exact, then the written
files and their metadata."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
import torch

from latenthdr import io, panorama, photometry, response
from latenthdr.cli import main
from latenthdr.cli._common import OutputOptions
from latenthdr.cli.convert import output_paths, write_output_set
from latenthdr.errors import InputError


@pytest.mark.parametrize("height", [1, 7, 32, 255])
def test_pixel_solid_angles_cover_the_sphere_and_the_cosine_weights_give_pi(height):
    omega = panorama.solid_angles(height, 2 * height)
    assert float(omega.sum()) * 2 * height == pytest.approx(4 * math.pi, rel=1e-12)
    w = panorama.horizontal_illuminance_weights(height, 2 * height)
    assert float(w.sum()) * 2 * height == pytest.approx(math.pi, rel=1e-12)  # uniform L = 1: E = pi
    assert torch.all(w[(height + 1) // 2:] == 0)  # nothing below the horizon
    assert torch.all(w <= omega + 1e-15)  # cos(theta) <= 1


def test_the_cosine_weights_are_the_pixels_solid_angle_times_cos_theta():
    H = 512
    w, omega = panorama.horizontal_illuminance_weights(H, 2 * H), panorama.solid_angles(H, 2 * H)
    elevation = math.pi / 2 - (torch.arange(H // 2, dtype=torch.float64) + 0.5) * math.pi / H
    assert torch.allclose(w[: H // 2] / omega[: H // 2], torch.sin(elevation), rtol=1e-5)  # cos(theta) = sin(e)


def test_a_uniform_sky_of_luminance_L_gives_E_pi_L_and_the_factor_meets_the_illuminance():
    L = 0.37
    sky = torch.full((3, 64, 128), L)
    assert photometry.horizontal_illuminance(response.luminance(sky, channel_axis=-3)) == pytest.approx(math.pi * L)
    record = photometry.illuminance(10_000).resolve(sky, panorama=True)
    assert record["illuminance_relative"] == pytest.approx(math.pi * L)
    assert record["factor"] == pytest.approx(10_000 / (math.pi * L))
    ground = sky.clone()
    ground[:, 32:] = 50.0  # the lower hemisphere does not light a surface facing up
    assert photometry.illuminance(10_000).resolve(ground, True)["factor"] == pytest.approx(record["factor"])


def test_a_sun_pixel_lights_by_its_solid_angle_times_the_sine_of_its_elevation():
    H, W = 90, 180
    sun = torch.zeros(3, H, W)
    sun[:, 29, 40] = 1000.0  # elevation 90 - 29.5 * 2 = 31 deg
    E = photometry.horizontal_illuminance(response.luminance(sun, channel_axis=-3))
    omega = float(panorama.solid_angles(H, W)[29])
    assert E == pytest.approx(1000.0 * omega * math.sin(math.radians(31.0)), rel=2e-4)  # cos(1 deg) of a row


def test_the_percentile_anchor_is_exact():
    rng = np.random.default_rng(0)
    Y = np.exp(rng.normal(0, 2, (48, 64))).astype(np.float32)
    H = torch.from_numpy(np.stack([Y] * 3))  # grey: luminance = the value (the Rec.709 weights sum to 1)
    record = photometry.anchor("p99.5=16").resolve(H, panorama=False)
    assert record["luminance_at_percentile_relative"] == pytest.approx(float(np.percentile(Y.astype(np.float64), 99.5)),
                                                                       rel=1e-12)
    assert np.percentile(Y.astype(np.float64) * record["factor"], 99.5) == pytest.approx(16.0, rel=1e-12)


def test_white_nits_is_a_plain_factor():
    record = photometry.white_nits(250).resolve(torch.rand(3, 8, 8), panorama=False)
    assert record == {"kind": "white-nits", "white_nits": 250.0, "factor": 250.0, "units": photometry.ABSOLUTE_UNITS}
    assert photometry.relative().resolve(torch.rand(3, 8, 8), False)["factor"] == 1.0


@pytest.mark.parametrize("make, bad", [(photometry.white_nits, ["0", "-1", "nan", "inf", "bright", "1e13"]),
                                       (photometry.illuminance, ["0", "-5", "nan", "1e99", "lux"]),
                                       (photometry.anchor, ["p0=16", "p100.5=1", "p50=0", "p50=-2", "p50=nan",
                                                            "99=16", "p=16", "pfifty=3", "p50", ""])])
def test_bad_values_name_the_argument(make, bad):
    for value in bad:
        with pytest.raises(InputError) as error:
            make(value, "--flag")
        assert error.value.argument == "--flag", value


def test_illuminance_refuses_pictures_and_black_skies_and_a_factor_beyond_float32():
    with pytest.raises(InputError, match="needs a 2:1 panorama"):
        photometry.illuminance(100).resolve(torch.ones(3, 30, 40), panorama=False)
    black_sky = torch.zeros(3, 32, 64)
    black_sky[:, 16:] = 1
    with pytest.raises(InputError, match="upper hemisphere is black"):
        photometry.illuminance(100).resolve(black_sky, panorama=True)
    with pytest.raises(InputError, match="beyond float32") as error:
        photometry.white_nits(1e12).resolve(torch.full((3, 4, 4), 1e30), panorama=False)
    assert error.value.argument == "white_nits"


def write(tmp_path, hdr, scale, name="s", panorama=False):
    paths = output_paths(str(tmp_path / f"{name}.exr"), previews=False)
    write_output_set(paths, hdr, None, {}, options=OutputOptions("exr", False, None, None, scale),
                     panorama=panorama, metadata={}, overwrite=False)
    return io.read_hdr(paths["exr"]), json.loads(paths["json"].read_text())


def test_the_written_file_is_in_cd_per_m2_and_its_header_and_sidecar_say_how(tmp_path):
    rng = np.random.default_rng(2)
    H = torch.from_numpy(np.exp(rng.normal(-1, 1.5, (3, 32, 64))).astype(np.float32))
    image, sidecar = write(tmp_path, H, photometry.white_nits(100), "white")
    assert np.allclose(image.pixels, io.to_numpy(H) * 100, rtol=1e-7)
    assert io.exr_metadata(image.header)["scale"] == sidecar["scale"] == {
        "kind": "white-nits", "white_nits": 100.0, "factor": 100.0, "units": photometry.ABSOLUTE_UNITS}
    image, sidecar = write(tmp_path, H, photometry.anchor("p99.5=16"), "anchor")
    Y = response.luminance(image.pixels.astype(np.float64))
    assert np.percentile(Y, 99.5) == pytest.approx(16.0, rel=1e-6)  # float32 file
    assert io.exr_metadata(image.header)["scale"]["percentile"] == 99.5
    sky = torch.full((3, 32, 64), 0.25)
    image, sidecar = write(tmp_path, sky, photometry.illuminance(20_000), "sky", panorama=True)
    assert np.allclose(response.luminance(image.pixels), 20_000 / math.pi, rtol=1e-6)  # E = pi L
    assert sidecar["scale"]["illuminance_lux"] == 20_000 and sidecar["layout"]["layout"] == "openexr"


def test_convert_white_nits_multiplies_the_relative_output(tmp_path, capsys):
    rng = np.random.default_rng(4)
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), rng.uniform(0, 255, (24, 32, 3)).astype(np.uint8))
    assert main(["convert", str(photo), "-o", str(tmp_path / "rel.exr"), "--no-previews"]) == 0
    assert main(["convert", str(photo), "-o", str(tmp_path / "abs.exr"), "--no-previews", "--white-nits", "203"]) == 0
    capsys.readouterr()
    rel, absolute = (io.read_hdr(tmp_path / n) for n in ("rel.exr", "abs.exr"))
    assert np.allclose(absolute.pixels, rel.pixels * 203, rtol=1e-6)
    meta = io.exr_metadata(absolute.header)
    assert meta["scale"]["kind"] == "white-nits" and meta["scale"]["factor"] == 203.0
    assert io.exr_metadata(rel.header)["scale"] == {"kind": "relative", "factor": 1.0,
                                                    "units": photometry.RELATIVE_UNITS}
    assert "layout" not in meta  # a perspective picture
