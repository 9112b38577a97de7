"""The command line: the issue's round trips on real files, and a bad-input test for every command.

Commands run in-process through ``latenthdr.cli.main`` (same parser, same error handling as the console script).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from latenthdr import io, merge, metrics
from latenthdr.cli import main
from conftest import spread_sample


def run(capsys, *argv) -> tuple[int, dict | None, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 and out.strip() else None), err


def write_exr(path: Path, pixels: np.ndarray) -> Path:
    import OpenEXR

    OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage},
                 {"RGB": np.ascontiguousarray(pixels, dtype=np.float32)}).write(str(path))
    return path


@pytest.fixture
def hdr_file(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    return write_exr(tmp_path / "scene.exr", np.exp(rng.normal(0, 2, (32, 64, 3))).astype(np.float32))


# --- the round trips the foundation issue asks for -------------------------------------------------------
def test_bracket_then_merge_returns_val_hdrs(shared_dir, tmp_path, capsys):
    files = spread_sample((shared_dir / "data/hdri/val").glob("*.hdr"), 3)
    assert files, "no val HDRs"
    for f in files:
        out_dir, exr = tmp_path / f.stem, tmp_path / f"{f.stem}.exr"
        code, report, err = run(capsys, "bracket", f, "--evs", "-7:5:1", "-o", out_dir)
        assert code == 0, err
        assert len(report["frames"]) == 13 and (out_dir / "bracket.json").is_file()
        code, _, err = run(capsys, "merge", out_dir, "-o", exr)
        assert code == 0, err
        source = io.to_tensor(io.read_hdr(f).pixels) * report["ev0_scale"]
        merged = io.read_hdr(exr)
        assert merged.header["latenthdr.read"] if "latenthdr.read" in merged.header else True
        H = io.to_tensor(merged.pixels)
        frames, evs, _ = io.read_bracket_dir(out_dir)
        seen = merge.merge_bracket(torch.stack([io.to_tensor(y) for y in frames]), evs).weight_sum > 0
        assert metrics.pu21_psnr(H, source, region=seen) >= 50.0, f.name
        assert metrics.log_error_stops(H, source, seen)["median_abs"] <= 0.02, f.name


def test_frobisher_photographs_merge_with_midtones_matching_exposure_times(shared_dir, tmp_path, capsys):
    jpgs = sorted((shared_dir / "data/brackets/frobisher").glob("*.jpg"))
    out = tmp_path / "frobisher.exr"
    code, report, err = run(capsys, "merge", *jpgs, "-o", out)
    assert code == 0, err
    image = io.read_hdr(out)
    meta = io.exr_metadata(image.header)
    assert meta["response"] == "debevec" and image.pixels.dtype == np.float32
    assert np.isfinite(image.pixels).all() and image.pixels.min() > 0
    H = io.to_tensor(image.pixels)
    lut = torch.tensor(meta["response_lut"], dtype=torch.float64)
    for jpg, t in zip(jpgs, meta["exposure_times_s"]):
        y = io.to_tensor(io.read_ldr(jpg).pixels).double()
        x = merge.apply_response_lut(y, lut)
        mid = (y > 0.2) & (y < 0.8)  # channel by channel
        ratio = torch.median(x[mid] / H.double()[mid]).item()
        expected = t / meta["reference_time_s"]
        assert ratio == pytest.approx(expected, rel=0.03), (jpg.name, ratio, expected)


def test_merge_photographs_with_times_given(tmp_path, capsys):
    H = torch.exp(torch.randn(3, 24, 32)) * 0.3
    paths = []
    for i, t in enumerate((0.25, 1.0, 4.0)):
        y = (H * t).clamp(0, 1) ** (1 / 2.2)
        p = tmp_path / f"f{i}.png"
        io.write_png(p, io.to_numpy(y))
        paths.append(p)
    code, report, err = run(capsys, "merge", *paths, "--times", "1/4,1,4", "--response", "gamma2.2",
                            "-o", tmp_path / "o.exr")
    assert code == 0, err
    assert report["evs"] == [-2.0, 0.0, 2.0]
    merged = io.to_tensor(io.read_hdr(tmp_path / "o.exr").pixels)
    assert metrics.log_error_stops(merged, H)["median_abs"] < 0.02


def test_info_and_metrics_print_json(hdr_file, tmp_path, capsys):
    code, report, _ = run(capsys, "info", hdr_file)
    assert code == 0 and report["width"] == 64 and report["height"] == 32 and report["stops"] > 0
    code, report, _ = run(capsys, "metrics", hdr_file, hdr_file)
    assert code == 0 and report["pu21_psnr"] == float("inf") and report["align_scale"] == pytest.approx(1.0)


def test_demo_runs_the_embedded_default_and_refuses_to_overwrite(tmp_path, capsys):
    code, report, err = run(capsys, "demo", "-o", tmp_path / "d", "--width", "128")
    assert code == 0, err
    for path in report["outputs"].values():
        assert Path(path).exists()
    assert report["models"]["space"] == "latenthdr-tiny-v1"
    assert report["stops"]["hdr"] > report["stops"]["photo"]  # the bracket recovers range the photo clipped
    assert {"encode", "head", "decode", "merge", "write"} <= set(report["timings_s"])
    code, _, err = run(capsys, "demo", "-o", tmp_path / "d", "--width", "128")
    assert code == 2 and "--overwrite" in err


# --- bad input: every command names the argument and exits non-zero --------------------------------------
def test_bracket_bad_inputs(hdr_file, tmp_path, capsys):
    fake = tmp_path / "fake.exr"
    fake.write_bytes(b"not an exr at all")
    truncated = tmp_path / "cut.exr"
    truncated.write_bytes(hdr_file.read_bytes()[: hdr_file.stat().st_size // 2])
    nan = write_exr(tmp_path / "nan.exr", np.full((8, 8, 3), np.nan, np.float32))
    cases = [
        (["bracket", tmp_path / "missing.exr", "-o", tmp_path / "a"], "IN"),
        (["bracket", fake, "-o", tmp_path / "b"], "IN"),
        (["bracket", truncated, "-o", tmp_path / "c"], "IN"),
        (["bracket", nan, "-o", tmp_path / "d"], "NaN"),
        (["bracket", hdr_file, "--evs", "0,1,1", "-o", tmp_path / "e"], "--evs"),
        (["bracket", hdr_file, "--evs", "-2:2:0", "-o", tmp_path / "f"], "--evs"),
        (["bracket", hdr_file, "--scale", "-1", "-o", tmp_path / "g"], "--scale"),
        (["bracket", hdr_file, "-o", tmp_path / "no" / "such" / "dir"], "--output"),
    ]
    for argv, named in cases:
        code, _, err = run(capsys, *argv)
        assert code == 2, (argv, err)
        assert named in err and "Traceback" not in err, (argv, err)


def test_bracket_clamps_negative_pixels_and_never_overwrites(tmp_path, capsys):
    pixels = np.ones((16, 16, 3), np.float32)
    pixels[0, 0] = -0.5
    src = write_exr(tmp_path / "neg.exr", pixels)
    code, report, err = run(capsys, "bracket", src, "--evs", "-1,0,1", "-o", tmp_path / "b")
    assert code == 0, err
    assert report["negative_clamped"] == 3
    code, _, err = run(capsys, "bracket", src, "--evs", "-1,0,1", "-o", tmp_path / "b")
    assert code == 2 and "--overwrite" in err
    user_dir = tmp_path / "mine"
    user_dir.mkdir()
    (user_dir / "holiday.jpg").write_bytes(b"precious")
    code, _, err = run(capsys, "bracket", src, "-o", user_dir, "--overwrite")
    assert code == 2 and (user_dir / "holiday.jpg").read_bytes() == b"precious"


def test_merge_bad_inputs(tmp_path, capsys):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    cv2.imwrite(str(a), np.full((8, 8, 3), 100, np.uint8))
    cv2.imwrite(str(b), np.full((8, 10, 3), 100, np.uint8))
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    cases = [
        (["merge", a, b, "--times", "1,2", "-o", tmp_path / "o.exr"], "differ in size"),
        (["merge", a, a, "-o", tmp_path / "o.exr"], "--times"),  # no EXIF
        (["merge", a, tmp_path / "missing.png", "--times", "1,2", "-o", tmp_path / "o.exr"], "missing.png"),
        (["merge", a, a, "--times", "1,2,3", "-o", tmp_path / "o.exr"], "--times"),
        (["merge", a, a, "--times", "1,0", "-o", tmp_path / "o.exr"], "--times"),
        (["merge", a, a, "--times", "1,1", "-o", tmp_path / "o.exr", "--response", "srgb"], "distinct"),
        (["merge", empty_dir, "-o", tmp_path / "o.exr"], "bracket.json"),
        (["merge", a, a, "--times", "1,2", "-o", tmp_path / "o.txt"], "--output"),
        (["merge", a, "-o", tmp_path / "o.exr"], "IN"),
    ]
    for argv, named in cases:
        code, _, err = run(capsys, *argv)
        assert code == 2, (argv, err)
        assert named in err and "Traceback" not in err, (argv, err)
    assert not (tmp_path / "o.exr").exists()


def test_merge_accepts_grayscale_alpha_and_16bit_frames(tmp_path, capsys):
    ramp = np.linspace(0.05, 0.6, 64, dtype=np.float32).reshape(8, 8)
    gray = tmp_path / "gray.png"
    cv2.imwrite(str(gray), np.rint(ramp ** (1 / 2.2) * 255).astype(np.uint8))
    rgba = tmp_path / "rgba.png"
    frame = np.rint(np.clip(ramp * 2, 0, 1) ** (1 / 2.2) * 255).astype(np.uint8)
    cv2.imwrite(str(rgba), np.dstack([frame] * 3 + [np.full_like(frame, 128)]))
    deep = tmp_path / "deep.png"
    cv2.imwrite(str(deep), np.rint(np.dstack([np.clip(ramp * 4, 0, 1) ** (1 / 2.2)] * 3) * 65535).astype(np.uint16))
    code, report, err = run(capsys, "merge", gray, rgba, deep, "--times", "1,2,4", "--response", "gamma2.2",
                            "-o", tmp_path / "o.exr")
    assert code == 0, err
    H = io.read_hdr(tmp_path / "o.exr").pixels
    assert np.allclose(H[..., 0], H[..., 1]) and np.isfinite(H).all()
    code, report, _ = run(capsys, "info", deep)
    assert report["bits"] == 16


def test_metrics_and_info_bad_inputs(hdr_file, tmp_path, capsys):
    small = write_exr(tmp_path / "small.exr", np.ones((4, 4, 3), np.float32))
    inf = write_exr(tmp_path / "inf.exr", np.full((4, 4, 3), np.inf, np.float32))
    cases = [
        (["metrics", tmp_path / "missing.exr", hdr_file], "PRED"),
        (["metrics", hdr_file, small], "differs"),
        (["metrics", hdr_file, inf], "REF"),
        (["metrics", hdr_file, hdr_file, "--ldr", tmp_path / "nope.png"], "--ldr"),
        (["info", tmp_path / "missing.exr"], "FILE"),
        (["info", tmp_path], "FILE"),
        (["info", tmp_path / "x.gif"], "FILE"),
    ]
    for argv, named in cases:
        code, _, err = run(capsys, *argv)
        assert code == 2, (argv, err)
        assert named in err and "Traceback" not in err, (argv, err)


def test_preview_and_bracket_contact_sheet(hdr_file, tmp_path, capsys):
    code, report, err = run(capsys, "preview", hdr_file, "-o", tmp_path / "p.png", "--operator", "reinhard",
                            "--exposure", "-1")
    assert code == 0, err
    assert report["exposure_ev"] == -1 and io.read_ldr(tmp_path / "p.png").pixels.shape == (32, 64, 3)
    code, _, err = run(capsys, "preview", hdr_file, "-o", tmp_path / "q.png", "--exposure", "bright")
    assert code == 2 and "--exposure" in err
    code, _, err = run(capsys, "bracket", hdr_file, "--evs", "-1,0,1", "-o", tmp_path / "b")
    assert code == 0, err
    assert (tmp_path / "b" / "contact.png").is_file()


@pytest.mark.parametrize("shape", [(96, 16), (40, 512)], ids=["narrow 16 px", "wide 512x40"])
def test_convert_gives_the_same_bytes_on_every_run(shape, tmp_path, capsys):
    rng = np.random.default_rng(3)
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.clip(rng.normal(200, 60, (*shape, 3)), 0, 255).astype(np.uint8))
    outputs = []
    for run_index in range(5):
        out = tmp_path / f"run{run_index}"
        out.mkdir()
        code, _, err = run(capsys, "convert", photo, "-o", out / "hdr.exr")
        assert code == 0, err
        files = {p.name: p.read_bytes() for p in out.iterdir() if p.suffix != ".json"}
        sidecar = json.loads((out / "hdr.json").read_text().replace(str(out), "OUT"))
        sidecar.pop("timings_s")
        outputs.append((files, sidecar))
    assert len(outputs[0][0]) == 3 and all(o == outputs[0] for o in outputs[1:])


def test_selftest_passes_here_and_fails_with_a_tampered_weight(tmp_path, capsys, monkeypatch):
    import shutil

    from latenthdr.models import registry

    code = main(["selftest"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert out.split() == ["weights", "pass", "convert", "pass", "generate", "pass"]
    weights = tmp_path / "weights"
    shutil.copytree(registry.WEIGHTS_DIR, weights)
    head = weights / "latenthdr-tiny-v1-head.safetensors"
    raw = bytearray(head.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    head.write_bytes(bytes(raw))
    monkeypatch.setattr(registry, "WEIGHTS_DIR", weights)
    monkeypatch.setattr(registry, "MANIFEST", weights / "manifest.json")
    try:
        code = main(["selftest"])
        out, err = capsys.readouterr()
    finally:
        registry.shipped_file.cache_clear()
    lines = dict(line.split(None, 1) for line in out.strip().splitlines())
    assert code == 1 and lines["weights"].startswith("FAIL") and "latenthdr-tiny-v1-head.safetensors" in lines["weights"]
    assert lines["convert"].startswith("FAIL") and "stages failed (weights, convert, generate)" in err
