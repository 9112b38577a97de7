"""latenthdr.io: HDR/LDR files in and out. Round trips first, then file variants, then bad input."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import OpenEXR
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image, ImageOps

from latenthdr import io
from latenthdr._exr import luminance_weights
from latenthdr.errors import InputError, OutputExistsError
from conftest import spread_sample

HALF_EPS = 2.0**-11  # relative rounding error of IEEE half for normal numbers
RGBE_TOL = 1.0 / 128  # RGBE: 8-bit mantissas sharing the largest channel's exponent
REC709_LUMA = np.array([0.2126, 0.7152, 0.0722])


def _linear_rgb(rng, h=6, w=8, lo=1e-4, hi=1e3) -> np.ndarray:
    """Log-uniform linear radiance [h, w, 3] float32."""
    return np.exp(rng.uniform(np.log(lo), np.log(hi), (h, w, 3))).astype(np.float32)


def _write_raw_exr(path, channels: dict, header: dict | None = None):
    """An EXR written directly with the OpenEXR bindings (the file variants we must read)."""
    OpenEXR.File(header or {}, channels).write(str(path))
    return path


def _files(directory) -> list[str]:
    return sorted(os.listdir(directory))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# ----------------------------------------------------------------------------------- round trips


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=9).map(
    lambda s: (s[0], s[1], 3)), elements=st.floats(0, float(np.finfo(np.float32).max), width=32)))
def test_exr_float32_round_trip_is_exact(tmp_path, rgb):
    path = io.write_exr(tmp_path / "x.exr", rgb, overwrite=True)
    image = io.read_hdr(path)
    assert image.pixels.dtype == np.float32 and image.pixels.shape == rgb.shape
    np.testing.assert_array_equal(image.pixels, rgb)
    assert image.negative_clamped == 0


def test_exr_writes_strided_views_correctly(tmp_path, rng):
    planar = _linear_rgb(rng, h=3, w=7).transpose(2, 0, 1).copy()  # [3, H, W]
    view = planar.transpose(1, 2, 0)  # [H, W, 3], not C-ordered
    np.testing.assert_array_equal(io.read_hdr(io.write_exr(tmp_path / "v.exr", view)).pixels, view)


def test_exr_half_round_trip_within_half_precision(tmp_path, rng):
    rgb = _linear_rgb(rng, lo=1e-3, hi=6e4)
    io.write_exr(tmp_path / "h.exr", rgb, half=True)
    stored = OpenEXR.File(str(tmp_path / "h.exr"), separate_channels=True).channels()
    assert all(c.pixels.dtype == np.float16 for c in stored.values())
    back = io.read_hdr(tmp_path / "h.exr").pixels
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, rgb, rtol=HALF_EPS, atol=0)
    assert not np.array_equal(back, rgb)  # it really went through half


def test_half_overflow_is_refused_and_nothing_is_written(tmp_path, rng):
    rgb = _linear_rgb(rng)
    rgb[2, 3, 1] = 70000.0
    with pytest.raises(InputError, match=r"70000 overflow half.*float32") as err:
        io.write_exr(tmp_path / "h.exr", rgb, half=True)
    assert err.value.argument == "rgb"
    assert _files(tmp_path) == []
    io.write_exr(tmp_path / "f.exr", rgb)  # float32 holds it
    assert io.read_hdr(tmp_path / "f.exr").pixels.max() == 70000.0


def test_radiance_round_trip_within_rgbe_precision_and_channel_order(tmp_path, rng):
    rgb = _linear_rgb(rng, h=16, w=32)
    rgb[0, 0] = (4.0, 0.0, 0.0)  # pure red must stay red (OpenCV is BGR)
    for name in ("x.hdr", "x.pic"):
        back = io.read_hdr(io.write_hdr(tmp_path / name, rgb)).pixels
        assert back.shape == rgb.shape and back.dtype == np.float32
        assert np.all(np.abs(back - rgb) <= RGBE_TOL * rgb.max(axis=-1, keepdims=True))
        np.testing.assert_allclose(back[0, 0], (4.0, 0.0, 0.0), rtol=RGBE_TOL)


def test_val_hdris_read_as_finite_linear_panoramas(shared_dir):
    paths = spread_sample((shared_dir / "data" / "hdri" / "val").glob("*.hdr"), 4)
    assert paths, "no .hdr files in shared/data/hdri/val"
    for path in paths:
        image = io.read_hdr(path)
        assert image.pixels.shape == (512, 1024, 3) and image.pixels.dtype == np.float32
        assert np.all(np.isfinite(image.pixels)) and image.pixels.min() >= 0
        assert image.pixels.max() > 1.0  # real HDR: brighter than diffuse white somewhere
        assert image.header["FORMAT"] == "32-bit_rle_rgbe"
        json.dumps(image.header)


# ------------------------------------------------------------------------------ EXR file variants


def test_tiled_half_exr(tmp_path, rng):
    rgb = _linear_rgb(rng, h=7, w=9).astype(np.float16)
    tiles = OpenEXR.TileDescription()
    tiles.xSize, tiles.ySize, tiles.mode = 4, 4, OpenEXR.ONE_LEVEL
    path = _write_raw_exr(tmp_path / "t.exr", {"RGB": rgb}, {"type": OpenEXR.tiledimage, "tiles": tiles})
    image = io.read_hdr(path)
    np.testing.assert_array_equal(image.pixels, rgb.astype(np.float32))
    assert image.header["type"] == "tiledimage" and image.header["tiles"]["x_size"] == 4


def test_separate_channels_of_mixed_types(tmp_path, rng):
    r = rng.uniform(0, 5, (5, 6)).astype(np.float32)
    g = rng.uniform(0, 5, (5, 6)).astype(np.float16)
    b = rng.integers(0, 1000, (5, 6)).astype(np.uint32)
    image = io.read_hdr(_write_raw_exr(tmp_path / "s.exr", {"R": r, "G": g, "B": b}))
    np.testing.assert_array_equal(image.pixels, np.stack([r, g.astype(np.float32), b.astype(np.float32)], -1))


def test_rgba_drops_alpha(tmp_path, rng):
    rgba = np.concatenate([_linear_rgb(rng), np.full((6, 8, 1), 0.25, np.float32)], axis=-1)
    image = io.read_hdr(_write_raw_exr(tmp_path / "a.exr", {"RGBA": rgba}))
    np.testing.assert_array_equal(image.pixels, rgba[..., :3])
    assert image.header[io.READ_INFO_KEY]["ignored_channels"] == ["A"]


def test_luminance_only_is_replicated_to_gray(tmp_path, rng):
    y = rng.uniform(0, 10, (4, 5)).astype(np.float32)
    image = io.read_hdr(_write_raw_exr(tmp_path / "y.exr", {"Y": y}))
    np.testing.assert_array_equal(image.pixels, np.repeat(y[..., None], 3, -1))
    assert image.header[io.READ_INFO_KEY]["conversion"] == "grayscale"


def test_rec709_luminance_weights_from_chromaticities():
    """OpenEXR derives luminance weights from the file's chromaticities (computeYw)."""
    weights = luminance_weights(io.REC709_CHROMATICITIES)
    np.testing.assert_allclose(weights, REC709_LUMA, atol=1e-4)
    assert sum(weights) == pytest.approx(1.0)


def test_full_resolution_luminance_chroma_converts_to_rgb(tmp_path, rng):
    rgb = _linear_rgb(rng, lo=0.01, hi=100).astype(np.float64)
    y = rgb @ np.array(luminance_weights(io.REC709_CHROMATICITIES))
    planes = {"Y": y, "RY": rgb[..., 0] / y - 1, "BY": rgb[..., 2] / y - 1}  # OpenEXR's definitions
    image = io.read_hdr(_write_raw_exr(tmp_path / "yc.exr", {k: v.astype(np.float32) for k, v in planes.items()}))
    # G = (Y - w_R R - w_B B) / w_G cancels: float32 storage costs ~1e-6 of Y, not of G
    assert np.all(np.abs(image.pixels - rgb) <= 1e-4 * rgb + 2e-6 * y[..., None])
    assert image.header[io.READ_INFO_KEY]["conversion"] == "luminance-chroma"


def test_subsampled_luminance_chroma_is_upsampled(tmp_path, rng):
    h, w = 6, 8  # EXR needs sizes that are multiples of the sampling; chroma samples at even x, y
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    xx, yy = np.minimum(xx, w - 2), np.minimum(yy, h - 2)  # beyond the last sample: held constant
    ry, by = 0.3 + 0.05 * xx - 0.04 * yy, -0.2 + 0.03 * xx + 0.02 * yy  # bilinear: upsampling is exact
    y = rng.uniform(0.5, 4.0, (h, w))
    stored = {}
    for name, full in (("RY", ry), ("BY", by)):
        samples = full[::2, ::2].astype(np.float32)
        buffer = np.zeros((h, w), np.float32)  # the bindings take a full-size array and store its
        buffer.flat[: samples.size] = samples.ravel()  # first samples.size values, row by row
        stored[name] = OpenEXR.Channel(buffer, 2, 2)
    path = _write_raw_exr(tmp_path / "yc.exr", {"Y": OpenEXR.Channel(y.astype(np.float32)), **stored})
    check = OpenEXR.File(str(path), separate_channels=True).channels()["RY"]
    if check.xSampling != 2 or not np.array_equal(check.pixels, ry[::2, ::2].astype(np.float32)):
        pytest.skip("these OpenEXR bindings do not write subsampled channels as this test expects")
    w_R, w_G, w_B = luminance_weights(io.REC709_CHROMATICITIES)
    r, b = (ry + 1) * y, (by + 1) * y
    expected = np.stack([r, (y - w_R * r - w_B * b) / w_G, b], -1)
    image = io.read_hdr(path)
    assert image.pixels.shape == (h, w, 3)
    assert np.all(np.abs(image.pixels - expected) <= 1e-5 * y[..., None])


def test_multipart_layered_file_reads_first_rgb_layer_and_says_so(tmp_path, rng):
    depth = rng.uniform(0, 1, (6, 8)).astype(np.float32)
    diffuse, specular = _linear_rgb(rng), _linear_rgb(rng)
    layers = {f"{layer}.{c}": np.ascontiguousarray(rgb[..., i]) for layer, rgb in (("spec", specular), ("diffuse", diffuse))
              for i, c in enumerate("RGB")}
    parts = [OpenEXR.Part({}, {"Z": depth}, "depth"), OpenEXR.Part({}, layers, "beauty")]
    OpenEXR.File(parts).write(str(tmp_path / "mp.exr"))
    image = io.read_hdr(tmp_path / "mp.exr")
    np.testing.assert_array_equal(image.pixels, diffuse)
    info = image.header[io.READ_INFO_KEY]
    assert (info["part"], info["part_name"], info["parts"], info["layer"]) == (1, "beauty", 2, "diffuse")
    assert info["ignored_channels"] == ["spec.B", "spec.G", "spec.R"]
    json.dumps(image.header)


def test_file_without_colour_channels_is_refused(tmp_path):
    path = _write_raw_exr(tmp_path / "z.exr", {"Z": np.ones((3, 3), np.float32)})
    with pytest.raises(InputError, match=r"no colour channels \(found: Z\).*accepted: R,G,B"):
        io.read_hdr(path)


def test_metadata_round_trip(tmp_path, rng):
    metadata = {"prompt": "sunset over a lake", "evs": [-7.0, -3.5, 0.0, 0.1], "seed": 2**40,
                "ev0_scale": 0.1, "model": {"head": "taef2", "steps": 28}, "clipped": True}
    io.write_exr(tmp_path / "m.exr", _linear_rgb(rng), metadata=metadata, panorama=True,
                 comments="made by a test")
    header = io.read_hdr(tmp_path / "m.exr").header
    assert io.exr_metadata(header) == metadata  # exact, floats included
    assert header["latenthdr:prompt"] == "sunset over a lake"  # plain string attribute
    assert header["envmap"] == "ENVMAP_LATLONG" and header["comments"] == "made by a test"
    assert header["compression"] == "ZIP_COMPRESSION"
    np.testing.assert_allclose(header["chromaticities"], io.REC709_CHROMATICITIES, atol=1e-7)
    assert OpenEXR.File(str(tmp_path / "m.exr"), header_only=True).header()["envmap"] == OpenEXR.ENVMAP_LATLONG
    json.dumps(header)
    io.write_exr(tmp_path / "p.exr", _linear_rgb(rng))
    assert "envmap" not in io.read_hdr(tmp_path / "p.exr").header


@pytest.mark.parametrize("metadata", [{"x": float("nan")}, {"x": object()}, {"": "a"}, {3: "a"}, {"json:x": "a"}])
def test_bad_metadata_is_refused(tmp_path, rng, metadata):
    with pytest.raises(InputError) as err:
        io.write_exr(tmp_path / "m.exr", _linear_rgb(rng), metadata=metadata)
    assert err.value.argument == "metadata" and _files(tmp_path) == []


# ------------------------------------------------------------------------------------ LDR reading


def test_png_8_bit_values_and_channel_order(tmp_path, rng):
    codes = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), codes[..., ::-1])  # OpenCV writes BGR
    image = io.read_ldr(tmp_path / "a.png")
    assert image.bits == 8 and not image.had_alpha and image.pixels.dtype == np.float32
    np.testing.assert_allclose(image.pixels, codes / 255.0, rtol=1e-6)


def test_png_16_bit_keeps_its_depth(tmp_path, rng):
    codes = rng.integers(0, 65536, (5, 7, 3), dtype=np.uint16)
    codes[0, 0] = (65535, 1, 0)
    cv2.imwrite(str(tmp_path / "a.png"), codes[..., ::-1])
    image = io.read_ldr(tmp_path / "a.png")
    assert image.bits == 16
    np.testing.assert_allclose(image.pixels, codes / 65535.0, rtol=1e-6)
    assert image.pixels[0, 0, 1] == pytest.approx(1 / 65535)  # not truncated to 8 bits


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_grayscale_png_becomes_three_equal_channels(tmp_path, rng, dtype):
    codes = rng.integers(0, np.iinfo(dtype).max, (4, 6), dtype=dtype)
    cv2.imwrite(str(tmp_path / "g.png"), codes)
    image = io.read_ldr(tmp_path / "g.png")
    np.testing.assert_allclose(image.pixels, np.repeat(codes[..., None], 3, -1) / np.iinfo(dtype).max, rtol=1e-6)


def test_alpha_is_dropped_not_composited(tmp_path, rng):
    rgba = rng.integers(0, 256, (4, 6, 4), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), rgba[..., [2, 1, 0, 3]])
    image = io.read_ldr(tmp_path / "a.png")
    assert image.had_alpha
    np.testing.assert_allclose(image.pixels, rgba[..., :3] / 255.0, rtol=1e-6)
    Image.fromarray(np.dstack([rgba[..., 0], rgba[..., 3]]), "LA").save(tmp_path / "la.png")
    gray = io.read_ldr(tmp_path / "la.png")
    assert gray.had_alpha
    np.testing.assert_allclose(gray.pixels, np.repeat(rgba[..., :1], 3, -1) / 255.0, rtol=1e-6)


def test_jpeg_exif_orientation_6_is_rotated_upright(tmp_path):
    stored = np.zeros((32, 48, 3), np.uint8)  # landscape as stored; a white block at its top-left
    stored[:8, :8] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(stored).save(tmp_path / "o.jpg", exif=exif, quality=95)
    image = io.read_ldr(tmp_path / "o.jpg")
    assert image.pixels.shape == (48, 32, 3) and image.exif["orientation"] == 6
    assert image.pixels[:8, -8:].mean() > 0.9 and image.pixels[:8, :8].mean() < 0.1  # top-left -> top-right
    upright = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "o.jpg")), np.float32) / 255
    np.testing.assert_allclose(image.pixels, upright, atol=1 / 255)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pillow(tmp_path, rng, orientation):
    stored = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(tmp_path / "o.png", exif=exif)
    upright = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "o.png")), np.float32) / 255
    np.testing.assert_allclose(io.read_ldr(tmp_path / "o.png").pixels, upright, rtol=1e-6)


def test_frobisher_exposure_times_from_exif(shared_dir):
    paths = sorted((shared_dir / "data" / "brackets" / "frobisher").glob("IMG_260*.jpg"))
    assert len(paths) == 3
    images = [io.read_ldr(p) for p in paths]
    assert [im.exif["exposure_time_s"] for im in images] == [0.125, 1.0, 8.0]
    assert all(im.exif["f_number"] == 8.0 and im.exif["iso"] == 100 and im.bits == 8 for im in images)
    assert all(im.pixels.shape == (426, 640, 3) for im in images)
    json.dumps([im.exif for im in images])


def test_read_image_dispatches_by_extension(tmp_path, rng):
    io.write_exr(tmp_path / "a.exr", _linear_rgb(rng))
    io.write_png(tmp_path / "a.png", np.zeros((2, 2, 3)))
    assert isinstance(io.read_image(tmp_path / "a.exr"), io.HdrImage)
    assert isinstance(io.read_image(tmp_path / "a.png"), io.LdrImage)
    with pytest.raises(InputError, match=r"unsupported extension '.bmp'; accepted: .exr, .hdr, .pic, .png"):
        io.read_image(tmp_path / "a.bmp", argument="--input")


# ------------------------------------------------------------------------------------- bad input


def _bad_exr_files(directory, rng):
    good = io.write_exr(directory / "good.exr", _linear_rgb(rng, h=64, w=64)).read_bytes()
    (directory / "truncated.exr").write_bytes(good[: len(good) // 2])
    (directory / "random.exr").write_bytes(rng.bytes(4000))
    (directory / "magic_then_garbage.exr").write_bytes(good[:4] + rng.bytes(4000))
    cv2.imwrite(str(directory / "image.png"), np.zeros((4, 4, 3), np.uint8))
    os.replace(directory / "image.png", directory / "png_renamed.exr")
    (directory / "text.exr").write_text("not an image\n")
    (directory / "empty.exr").write_bytes(b"")
    (directory / "folder.exr").mkdir()
    return ["truncated.exr", "random.exr", "magic_then_garbage.exr", "png_renamed.exr", "text.exr",
            "empty.exr", "folder.exr", "missing.exr"]


def test_bad_exr_files_raise_input_error_quietly(tmp_path, rng, capfd):
    for name in _bad_exr_files(tmp_path, rng):
        with pytest.raises(InputError) as err:
            io.read_hdr(tmp_path / name, argument="IN")
        assert err.value.argument == "IN" and name in err.value.message, name
        assert err.value.__suppress_context__ or err.value.__context__ is None  # no library traceback
    out, errors = capfd.readouterr()
    assert out == "" and errors == ""  # library chatter went into the messages, not the terminal


@pytest.mark.parametrize("name,pattern", [("truncated.exr", "truncated"), ("png_renamed.exr", "looks like a PNG"),
                                          ("text.exr", "text file"), ("empty.exr", "empty"),
                                          ("folder.exr", "directory"), ("missing.exr", "no such file")])
def test_bad_exr_messages_say_what_is_wrong(tmp_path, rng, name, pattern):
    _bad_exr_files(tmp_path, rng)
    with pytest.raises(InputError, match=pattern):
        io.read_hdr(tmp_path / name)


def test_bad_radiance_and_ldr_files(tmp_path, rng):
    good = io.write_hdr(tmp_path / "good.hdr", _linear_rgb(rng, h=32, w=32)).read_bytes()
    (tmp_path / "cut.hdr").write_bytes(good[: len(good) // 2])
    cv2.imwrite(str(tmp_path / "p.png"), np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "png.hdr").write_bytes((tmp_path / "p.png").read_bytes())
    (tmp_path / "text.png").write_text("hello")
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "j.jpg")
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "j.jpg").read_bytes()[:1500])
    for name, pattern in [("cut.hdr", "truncated"), ("png.hdr", "not a Radiance.*PNG"),
                          ("text.png", "text file"), ("cut.jpg", "truncated")]:
        with pytest.raises(InputError, match=pattern):
            io.read_image(tmp_path / name)


def test_nan_and_inf_pixels_are_refused_with_count(tmp_path, rng):
    rgb = _linear_rgb(rng)
    rgb[0, 0, 0], rgb[1, 1, 1], rgb[2, 2, 2] = np.nan, np.inf, -np.inf
    path = _write_raw_exr(tmp_path / "n.exr", {"RGB": rgb})
    with pytest.raises(InputError, match=r"n.exr: 3 NaN/Inf pixel values; accepted: finite values"):
        io.read_hdr(path)


def test_negative_pixels_are_clamped_and_counted(tmp_path, rng):
    rgb = _linear_rgb(rng)
    rgb[0, :4, 1] = -0.5
    image = io.read_hdr(_write_raw_exr(tmp_path / "neg.exr", {"RGB": rgb}))
    assert image.negative_clamped == 4 and image.pixels.min() == 0
    np.testing.assert_array_equal(image.pixels, np.maximum(rgb, 0))


@pytest.mark.parametrize("bad,pattern", [
    (np.full((2, 2, 3), np.nan, np.float32), "4|12 NaN/Inf"), (np.full((2, 2, 3), -1.0), "12 negative"),
    (np.ones((3, 4, 5), np.float32), "shape"), (np.ones((2, 2, 3), np.uint8), "dtype")])
def test_writers_refuse_bad_linear_rgb(tmp_path, bad, pattern):
    for write, name in ((io.write_exr, "x.exr"), (io.write_hdr, "x.hdr")):
        with pytest.raises(InputError, match=pattern) as err:
            write(tmp_path / name, bad)
        assert err.value.argument == "rgb"
    assert _files(tmp_path) == []


# ---------------------------------------------------------------------------- writing contracts


def test_png_write_quantises_with_rounding(tmp_path):
    k = np.arange(0, 250, 10, dtype=np.float64).reshape(5, 5, 1)
    display = np.concatenate([(k + 0.4) / 255, (k + 0.6) / 255, k / 255], axis=-1)  # -> k, k+1, k
    io.write_png(tmp_path / "p.png", display)
    back = io.read_ldr(tmp_path / "p.png")
    assert back.bits == 8
    np.testing.assert_allclose(back.pixels * 255, np.concatenate([k, k + 1, k], -1), atol=1e-4)
    codes = np.arange(75, dtype=np.uint8).reshape(5, 5, 3)
    io.write_png(tmp_path / "u.png", codes)
    np.testing.assert_allclose(io.read_ldr(tmp_path / "u.png").pixels * 255, codes, atol=1e-4)
    with pytest.raises(InputError, match=r"accepted: display-encoded values in \[0, 1\]"):
        io.write_png(tmp_path / "bad.png", display * 2)


def test_atomic_output_leaves_nothing_when_the_writer_fails(tmp_path):
    target = tmp_path / "out.exr"
    target.write_bytes(b"previous")
    with pytest.raises(RuntimeError, match="writer failed"):
        with io.atomic_output(target, overwrite=True) as temp:
            assert temp.parent == tmp_path and temp.suffix == ".exr" and temp != target
            temp.write_bytes(b"half-writ")
            raise RuntimeError("writer failed")
    assert target.read_bytes() == b"previous" and _files(tmp_path) == ["out.exr"]
    with io.atomic_output(target, overwrite=True) as temp:
        temp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and _files(tmp_path) == ["out.exr"]


def test_outputs_are_not_overwritten_without_overwrite(tmp_path, rng):
    rgb = _linear_rgb(rng)
    io.write_exr(tmp_path / "a.exr", rgb)
    io.write_json(tmp_path / "a.json", {"a": 1})
    with pytest.raises(OutputExistsError):
        io.write_exr(tmp_path / "a.exr", 2 * rgb)
    with pytest.raises(OutputExistsError):
        io.write_json(tmp_path / "a.json", {"a": 2})
    np.testing.assert_array_equal(io.read_hdr(tmp_path / "a.exr").pixels, rgb)
    io.write_exr(tmp_path / "a.exr", 2 * rgb, overwrite=True)
    np.testing.assert_array_equal(io.read_hdr(tmp_path / "a.exr").pixels, 2 * rgb)
    assert _files(tmp_path) == ["a.exr", "a.json"]


def test_check_output(tmp_path):
    assert io.check_output(tmp_path / "new.exr", overwrite=False) == tmp_path / "new.exr"
    with pytest.raises(InputError, match="does not exist") as err:
        io.check_output(tmp_path / "nope" / "x.exr", overwrite=True, argument="-o")
    assert err.value.argument == "-o"
    with pytest.raises(InputError, match="is a directory"):
        io.check_output(tmp_path, overwrite=True)
    with pytest.raises(InputError, match=r"'.png' not accepted; accepted: .exr"):
        io.check_output(tmp_path / "x.png", overwrite=False, extensions=(".exr",))


def test_write_json(tmp_path):
    obj = {"evs": np.array([-1.0, 0.0]), "k": np.int64(3), "path": tmp_path / "x", "nested": {"a": [1, 2]}}
    text = io.write_json(tmp_path / "o.json", obj).read_text()
    assert json.loads(text) == {"evs": [-1.0, 0.0], "k": 3, "path": str(tmp_path / "x"), "nested": {"a": [1, 2]}}
    assert text.startswith('{\n  "evs"') and text.endswith("\n")
    with pytest.raises(InputError):
        io.write_json(tmp_path / "n.json", {"x": float("nan")})
    assert _files(tmp_path) == ["o.json"]


def test_tensor_layout_round_trip(rng):
    pixels = _linear_rgb(rng, h=4, w=5)
    t = io.to_tensor(pixels)
    assert t.shape == (3, 4, 5) and t.dtype == torch.float32
    torch.testing.assert_close(t[1], torch.from_numpy(pixels[..., 1]))
    back = io.to_numpy(t.double())
    assert back.shape == (4, 5, 3) and back.dtype == np.float32 and back.flags.c_contiguous
    np.testing.assert_array_equal(back, pixels)
    with pytest.raises(InputError):
        io.to_tensor(pixels.transpose(2, 0, 1))
    with pytest.raises(InputError):
        io.to_numpy(t.permute(1, 2, 0))


def test_replacing_a_bracket_deletes_only_its_own_stale_frames(tmp_path, rng):
    """--overwrite removes the previous bracket's frames that the new one lacks, never a file that an edited
    bracket.json names (the user's own files)."""
    import json

    d = tmp_path / "bracket"
    frames = [rng.random((4, 6, 3)).astype(np.float32) for _ in range(3)]
    io.write_bracket_dir(d, frames, [-1.0, 0.0, 1.0], {})
    (d / "thesis.tex").write_text("mine")
    meta = json.loads((d / "bracket.json").read_text())
    meta["frames"].append("thesis.tex")
    (d / "bracket.json").write_text(json.dumps(meta))
    io.write_bracket_dir(d, frames[:2], [-1.0, 0.0], {}, overwrite=True)
    assert (d / "thesis.tex").read_text() == "mine"
    assert not (d / io.bracket_frame_name(2, 1.0)).exists()
    assert sorted(p.name for p in d.glob("frame_*")) == [io.bracket_frame_name(0, -1.0), io.bracket_frame_name(1, 0.0)]


def test_names_that_are_not_utf8_read_and_write(tmp_path):
    folder = os.fsdecode(os.fsencode(str(tmp_path)) + b"/caf\xe9")  # a Latin-1 name, as os.listdir returns it
    os.mkdir(folder)
    rgb = np.random.default_rng(1).uniform(0, 4, (6, 10, 3)).astype(np.float32)
    for name, write, read in ((b"a.exr", io.write_exr, io.read_hdr), (b"a.hdr", io.write_hdr, io.read_hdr),
                              (b"a.png", lambda p, x: io.write_png(p, np.clip(x / 4, 0, 1)), io.read_ldr)):
        path = os.path.join(folder, os.fsdecode(b"\xe9t\xe9-" + name))
        write(path, rgb)
        assert io.image_size(path) == (10, 6)
        pixels = read(path).pixels
        assert pixels.shape == (6, 10, 3)
        if name == b"a.exr":
            np.testing.assert_array_equal(pixels, rgb)
