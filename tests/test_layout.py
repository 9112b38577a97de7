"""Panorama orientation presets (``--layout``) and ``--azimuth``, at the output edge.

A bright spot at a known direction of our convention is written with each preset, read back, and found at the pixel
where that renderer's import looks for the direction. Each renderer's direction -> pixel mapping is written out below
from its source (docs/renderers.md cites the files), independently of ``panorama.py``; the preset contract maps our
axes onto the renderer's: our image centre (+Z) onto its forward axis, our up (+Y) onto its up, our viewer's right
(-X) onto its right.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from latenthdr import io, panorama, photometry
from latenthdr.cli import main
from latenthdr.cli._common import OutputOptions
from latenthdr.cli.convert import output_paths, write_output_set

H, W = 64, 128
SPOT = (20, 84)  # (row, column): elevation 32.3 deg, yaw 57.7 deg (right of the centre, above the horizon)

# our direction (x, y, z) -> the renderer's world axes, under the preset contract (module docstring)
AXES = {
    "openexr": lambda x, y, z: (x, y, z),  # ours: Y up, centre +Z, right -X
    "blender": lambda x, y, z: (-x, z, y),  # Z up, forward +Y (the Front view's direction), right +X
    "unity": lambda x, y, z: (-x, y, z),  # left-handed, Y up, forward +Z, right +X
    "unreal": lambda x, y, z: (z, -x, y),  # left-handed, Z up, forward +X, right +Y
}


def openexr_pixel(d) -> tuple[float, float]:
    """OpenEXR ImfEnvmap.cpp LatLongMap: latLong(direction), then pixelPosition(dataWindow (0,0)-(W-1,H-1))."""
    x, y, z = d
    latitude, longitude = math.asin(y / math.sqrt(x * x + y * y + z * z)), math.atan2(x, z)
    return (longitude / (-2 * math.pi) + 0.5) * (W - 1), (latitude / -math.pi + 0.5) * (H - 1)


def blender_pixel(d) -> tuple[float, float]:
    """Cycles kernel/camera/projection.h direction_to_equirectangular (range (-2 pi, pi, -pi, pi)), as EEVEE's
    node_tex_environment_equirectangular: u = 0.5 - atan2(y, x) / 2 pi, v = 1 - acos(z) / pi, v = 1 at the top
    row; texel k has its centre at u = (k + 0.5) / W."""
    x, y, z = d
    u = (math.atan2(y, x) - math.pi) / (-2 * math.pi)
    v = (math.acos(z / math.sqrt(x * x + y * y + z * z)) - math.pi) / -math.pi
    return u * W - 0.5, (1 - v) * H - 0.5


def unity_pixel(d) -> tuple[float, float]:
    """Unity Skybox-Panoramic.shader ToRadialCoords: latitude = acos(y), longitude = atan2(z, x),
    uv = (0.5, 1) - (longitude / 2 pi, latitude / pi); v = 1 at the top row, texel centres at (k + 0.5) / W."""
    x, y, z = d
    n = math.sqrt(x * x + y * y + z * z)
    u, v = 0.5 - math.atan2(z, x) / (2 * math.pi), 1 - math.acos(y / n) / math.pi
    return u * W - 0.5, (1 - v) * H - 0.5


def unreal_pixel(d) -> tuple[float, float]:
    """Unreal TextureCompressorModule.cpp: a cube texel of world direction w was filled from the long-lat image at
    DirectionWS = (w.x, w.z, w.y) (TransformSideToWorldSpace's "Unreal way" swap), LookupLongLat:
    X = (1 + atan2(D.X, -D.Z) / pi) / 2 * W, Y = acos(D.Y) / pi * H, and LookupFiltered reads texel k at X = k."""
    x, y, z = d
    D = (x, z, y)
    n = math.sqrt(x * x + y * y + z * z)
    return (1 + math.atan2(D[0], -D[2]) / math.pi) / 2 * W, math.acos(D[1] / n) / math.pi * H


PIXEL = {"openexr": openexr_pixel, "blender": blender_pixel, "unity": unity_pixel, "unreal": unreal_pixel}


def spot_panorama() -> torch.Tensor:
    hdr = torch.full((3, H, W), 0.05)
    hdr[:, SPOT[0], SPOT[1]] = 50.0
    return hdr


def spot_direction() -> tuple[float, float, float]:
    return tuple(panorama.direction_grid(H, W)[SPOT].tolist())


def write(tmp_path: Path, layout: str | None, azimuth: float | None = None, fmt: str = "exr", hdr=None) -> Path:
    """``hdr`` (the spot panorama by default) through the CLI's writing step; returns the HDR path."""
    paths = output_paths(str(tmp_path / f"{layout}-{azimuth}.{fmt}"), previews=False, fmt=fmt)
    options = OutputOptions(fmt, False, layout, azimuth, photometry.relative())
    write_output_set(paths, spot_panorama() if hdr is None else hdr, None, {}, options=options, panorama=True,
                     metadata={}, overwrite=False)
    return paths[fmt]


def brightest(path: Path) -> tuple[int, int]:
    Y = io.read_hdr(path).pixels.sum(axis=-1)
    return tuple(int(i) for i in np.unravel_index(np.argmax(Y), Y.shape))


def circular_gap(a: float, b: float, n: int) -> float:
    return abs((a - b + n / 2) % n - n / 2)


@pytest.mark.parametrize("layout", ["openexr", "blender", "unity", "unreal"])
def test_the_spot_lands_where_the_renderers_import_looks_for_its_direction(layout, tmp_path):
    fmt = "hdr" if layout == "unreal" else "exr"  # Unreal's cubemap import takes Radiance files
    row, col = brightest(write(tmp_path, layout, fmt=fmt))
    x, y = PIXEL[layout](AXES[layout](*spot_direction()))
    if layout == "unreal":  # the importer reads texel k at X = k: the spot is one of the two texels it blends there
        assert circular_gap(col, x, W) <= 0.5 + 1e-6 and abs(row - y) <= 0.5 + 1e-6, (row, col, x, y)
    else:
        assert (col, row) == (round(x) % W, round(y)), (row, col, x, y)


@pytest.mark.parametrize("layout", ["openexr", "blender", "unity", "unreal"])
def test_each_preset_puts_the_image_centre_on_the_renderers_forward_axis(layout):
    """Our image centre direction (+Z) maps through the contract onto the axis ``Layout.forward`` names, and the
    roll moves the centre column to where the renderer looks for that axis."""
    preset = panorama.LAYOUTS[layout]
    forward, up = AXES[layout](0.0, 0.0, 1.0), AXES[layout](0.0, 1.0, 0.0)
    assert preset.forward.startswith(axis_name(forward)) and preset.up == axis_name(up)
    x, _ = PIXEL[layout](forward)
    centre = W / 2 - 0.5  # our yaw 0, between the two middle columns
    rolled = centre - preset.yaw_deg * W / 360  # roll_yaw(p, a) moves content left by a W / 360 columns
    half_texel = 0.5 if layout == "unreal" else 0.0  # Unreal's importer reads texel k at X = k, not k + 0.5
    assert circular_gap(rolled, x - half_texel, W) < 1e-9


def axis_name(v) -> str:
    (i,) = np.flatnonzero(np.round(v))
    return ("+" if v[i] > 0 else "-") + "XYZ"[i]


def test_the_axis_maps_keep_the_viewers_right_on_the_right():
    """Our right (-X) lands on each renderer's right: forward x up in the right-handed frames (ours, OpenEXR's,
    Blender's), up x forward in the left-handed ones (Unity, Unreal). So no preset needs an image flip."""
    for layout, axes in AXES.items():
        forward, up, right = (np.array(axes(*v)) for v in ((0, 0, 1), (0, 1, 0), (-1, 0, 0)))
        handed = np.cross(up, forward) if layout in ("unity", "unreal") else np.cross(forward, up)
        assert np.array_equal(right, handed), layout


def test_azimuth_rolls_by_whole_columns_and_records_the_angle_applied(tmp_path):
    path = write(tmp_path, None, 10.0)
    assert brightest(path) == (SPOT[0], SPOT[1] - 4)  # 10 deg = 3.56 columns of 128: rounded to 4
    record = io.exr_metadata(io.read_hdr(path).header)["layout"]
    assert record["roll_columns"] == 4 and record["azimuth_deg"] == 10.0
    assert record["azimuth_deg_applied"] == pytest.approx(4 * 360 / W) == 11.25
    exact = write(tmp_path, "blender", 45.0)  # multiples of 360 / W are exact
    assert brightest(exact) == (SPOT[0], SPOT[1] - 16 - W // 4)
    assert io.exr_metadata(io.read_hdr(exact).header)["layout"]["azimuth_deg_applied"] == 45.0


def test_azimuth_brings_that_direction_forward():
    yaw_columns = SPOT[1] - W // 2  # the spot is this many columns right of the centre line
    rolled, record = panorama.orient(spot_panorama(), "openexr", yaw_columns * 360 / W)
    assert record["roll_columns"] == yaw_columns
    assert torch.equal(rolled, torch.roll(spot_panorama(), -yaw_columns, dims=-1))
    assert rolled[0, SPOT[0]].argmax().item() == W // 2
    back, _ = panorama.orient(rolled, "openexr", -yaw_columns * 360 / W)
    assert torch.equal(back, spot_panorama())  # lossless


def test_envmap_latlong_only_in_the_openexr_layout(tmp_path):
    import OpenEXR

    def envmap(path):
        return OpenEXR.File(str(path), header_only=True).header().get("envmap")

    assert envmap(write(tmp_path, None)) == OpenEXR.ENVMAP_LATLONG
    assert envmap(write(tmp_path, "openexr", 30.0)) == OpenEXR.ENVMAP_LATLONG
    assert envmap(write(tmp_path, "blender")) is None


def test_layouts_refuse_what_is_not_a_2_to_1_panorama():
    from latenthdr.errors import InputError

    with pytest.raises(InputError, match="not a 2:1"):
        panorama.orient(torch.zeros(3, 40, 60), "blender")
    with pytest.raises(InputError, match="accepted: openexr, blender, unity, unreal"):
        panorama.orient(torch.zeros(3, 32, 64), "maya")


def test_convert_with_a_preset_writes_the_default_output_rolled(tmp_path, capsys):
    """End to end: convert is deterministic, so --layout blender's EXR is the default EXR rolled by a quarter turn,
    and a Radiance output (by its suffix) holds the same pixels to RGBE precision, its metadata in the sidecar."""
    rng = np.random.default_rng(1)
    photo = tmp_path / "pano.png"
    cv2.imwrite(str(photo), rng.uniform(0, 200, (32, 64, 3)).astype(np.uint8))
    assert main(["convert", str(photo), "-o", str(tmp_path / "a.exr"), "--no-previews"]) == 0
    assert main(["convert", str(photo), "-o", str(tmp_path / "b.exr"), "--no-previews", "--layout", "blender"]) == 0
    assert main(["convert", str(photo), "-o", str(tmp_path / "c.hdr"), "--layout", "unreal"]) == 0
    capsys.readouterr()
    a, b = (io.read_hdr(tmp_path / n).pixels for n in ("a.exr", "b.exr"))
    assert np.array_equal(b, np.roll(a, -16, axis=1))
    c, expected = io.read_hdr(tmp_path / "c.hdr").pixels, np.roll(a, 16, axis=1)
    assert np.all(np.abs(c - expected) <= 0.01 * expected.max(axis=-1, keepdims=True))  # RGBE: 8-bit mantissas, one exponent
    sidecar = json.loads((tmp_path / "c.json").read_text())
    assert sidecar["format"] == "hdr" and sidecar["output"]["hdr"] == str(tmp_path / "c.hdr")
    assert sidecar["layout"]["layout"] == "unreal" and sidecar["layout"]["roll_columns"] == 48
    assert sidecar["scale"]["kind"] == "relative" and (tmp_path / "c.preview.png").is_file()


def test_a_radiance_set_replacing_an_exr_set_leaves_no_orphan(tmp_path, capsys):
    """OUT.exr and OUT.hdr share OUT.json and the previews: --overwrite replaces the whole set, and the old EXR, which
    the old sidecar names, goes with it; without --overwrite the shared sidecar is refused."""
    photo = tmp_path / "pano.png"
    cv2.imwrite(str(photo), np.full((16, 32, 3), 120, np.uint8))
    assert main(["convert", str(photo), "-o", str(tmp_path / "sky.exr")]) == 0
    assert main(["convert", str(photo), "-o", str(tmp_path / "sky.hdr")]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["convert", str(photo), "-o", str(tmp_path / "sky.hdr"), "--overwrite"]) == 0
    capsys.readouterr()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pano.png", "sky.bracket.png", "sky.hdr", "sky.json",
                                                          "sky.preview.png"]
