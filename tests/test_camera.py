"""The camera-like input protocol of `latenthdr bench l2h` (bench/camera.py): curves, noise, JPEG, clipping,
determinism, and the CLI's --protocol flag (a tiny random codec; no hub, no shared)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from latenthdr import io, scenes
from latenthdr.bench import camera, l2h
from latenthdr.cli import main
from latenthdr.errors import InputError


def smooth_scene(size=96, seed=0) -> torch.Tensor:
    """Log-normal radiance, blurred: a continuous distribution, so anchoring clips exactly the fraction asked."""
    g = torch.Generator().manual_seed(seed)
    R = torch.exp(torch.randn(3, size, size, generator=g))
    return torch.nn.functional.avg_pool2d(R[None], 5, 1, 2)[0]


# -- physics first: the curves, the noise, the clipping -------------------------------------------------------------
@pytest.mark.parametrize("n, sigma", [(0.9, 0.6), (0.6, 0.3), (1.2, 0.9), (0.6, 0.9), (1.2, 0.3)])
def test_curves_are_increasing_from_0_to_1_and_invert(n, sigma):
    f = camera.CameraResponse(n, sigma)
    x = torch.linspace(0, 1, 10001, dtype=torch.float64)
    y = f(x)
    assert y[0].item() == 0.0 and y[-1].item() == pytest.approx(1.0, abs=1e-15)
    assert (y[1:] > y[:-1]).all()
    torch.testing.assert_close(f.inverse(y), x, atol=1e-12, rtol=0)


def test_drawn_cameras_stay_in_their_published_ranges():
    draws = [camera.draw_camera(torch.Generator().manual_seed(s)) for s in range(200)]
    n = [d.response.n for d in draws]
    sigma = [d.response.sigma for d in draws]
    assert 0.6 <= min(n) and max(n) <= 1.2 and abs(np.mean(n) - 0.9) < 0.03 and abs(np.std(n) - 0.1) < 0.03
    assert 0.3 <= min(sigma) and max(sigma) <= 0.9 and abs(np.mean(sigma) - 0.6) < 0.03
    shot = np.log([d.shot_variance for d in draws])
    assert math.log(1e-4) <= shot.min() and shot.max() <= math.log(1.2e-2)
    residual = np.log([d.read_variance for d in draws]) - (2.18 * shot + 1.20)  # Brooks et al. 2019
    assert abs(residual.mean()) < 0.06 and abs(residual.std() - 0.26) < 0.05
    qualities = {d.jpeg_quality for d in draws}
    assert qualities <= set(range(85, 96)) and len(qualities) == 11  # every quality of 85..95 is drawn


def test_noise_on_a_flat_patch_has_the_poisson_gaussian_mean_and_variance():
    x = torch.full((256, 256), 0.25)
    shot, read = 4e-3, 1e-4
    noisy = camera.sensor_noise(x, shot, read, torch.Generator().manual_seed(0))
    n = noisy.numel()
    variance = shot * 0.25 + read
    assert noisy.dtype == torch.float64
    assert noisy.mean().item() == pytest.approx(0.25, abs=4 * math.sqrt(variance / n))
    assert noisy.var().item() == pytest.approx(variance, rel=4 * math.sqrt(2 / n))
    pure_shot = camera.sensor_noise(x, shot, 0.0, torch.Generator().manual_seed(1))  # counts of photo-electrons
    counts = pure_shot / shot
    torch.testing.assert_close(counts, counts.round(), atol=1e-9, rtol=0)
    assert pure_shot.var().item() == pytest.approx(shot * 0.25, rel=4 * math.sqrt(2 / n))
    assert torch.equal(camera.sensor_noise(x, 0.0, 0.0, torch.Generator()), x.double())
    with pytest.raises(InputError, match="shot_variance"):
        camera.sensor_noise(x, -1.0, 0.0, torch.Generator())


@pytest.mark.parametrize("clip", [0.02, 0.05, 0.1])
def test_the_clipped_fraction_is_as_asked(clip):
    H = smooth_scene()
    fractions = []
    for seed in range(10):
        case = camera.make_camera_case("scene", H, clip, seed=seed)
        assert (case.ref.amax(dim=0) >= 1).float().mean().item() == pytest.approx(clip, abs=2 / H[0].numel())
        assert case.clipped.shape == H.shape[-2:] and case.clipped.dtype == torch.bool
        fractions.append(case.clipped.float().mean().item())
    # noise moves pixels just below the clip level across it, more of them than the other way
    assert min(fractions) >= 0.9 * clip and max(fractions) <= 1.5 * clip
    assert np.mean(fractions) == pytest.approx(clip, rel=0.15)
    quiet = camera.Camera(camera.CameraResponse(0.9, 0.6), 0.0, 0.0, 95)
    ref = camera.make_camera_case("scene", H, clip).ref
    _, clipped = camera.camera_ldr(ref, quiet, torch.Generator())
    assert torch.equal(clipped, (ref >= 1).any(dim=0))  # without noise: exactly the anchored pixels


def test_jpeg_quality_sets_the_error_and_the_case_is_an_8_bit_jpeg():
    codes = (scenes.sky_panorama(64, 128, seed=1).clamp(0, 1) ** (1 / 2.2) * 255).round().to(torch.uint8)
    codes = codes.permute(1, 2, 0).numpy()
    errors = [np.abs(camera.jpeg_roundtrip(codes, q).astype(float) - codes).mean() for q in (85, 90, 95)]
    assert errors[0] > errors[1] > errors[2] > 0
    with pytest.raises(InputError, match="jpeg_quality"):
        camera.jpeg_roundtrip(codes, 101)
    case = camera.make_camera_case("scene", smooth_scene(), 0.05, seed=3)
    assert 85 <= case.camera["jpeg_quality"] <= 95
    assert case.ldr.dtype == torch.float32 and case.ldr.shape == case.ref.shape
    torch.testing.assert_close(case.ldr * 255, (case.ldr * 255).round(), atol=1e-4, rtol=0)


# -- contracts: determinism, the input curve ---------------------------------------------------------------------
def test_a_case_depends_on_its_seed_and_identity_only():
    H = smooth_scene(48)
    a, b = (camera.make_camera_case("scene", H, 0.05, "d", seed=7) for _ in range(2))
    assert torch.equal(a.ldr, b.ldr) and torch.equal(a.clipped, b.clipped) and a.camera == b.camera
    camera.make_camera_case("other", smooth_scene(48, 1), 0.05, "d", seed=7)  # another case in between: no effect
    assert torch.equal(camera.make_camera_case("scene", H, 0.05, "d", seed=7).ldr, a.ldr)
    for other in (camera.make_camera_case("scene", H, 0.05, "d", seed=8),
                  camera.make_camera_case("scene2", H, 0.05, "d", seed=7),
                  camera.make_camera_case("scene", H, 0.05, "e", seed=7)):
        assert other.camera["seed"] != a.camera["seed"] and not torch.equal(other.ldr, a.ldr)
    assert camera.case_seed(7, "d", "scene", 0.05) == a.camera["seed"] < 2**63
    with pytest.raises(InputError, match="seed"):
        camera.case_seed(-1, "d", "scene", 0.05)
    with pytest.raises(InputError, match="input_curve"):
        camera.make_camera_case("scene", H, 0.05, input_curve="camera")


def test_methods_see_the_jpeg_through_the_assumed_curve():
    from latenthdr import response

    case = camera.make_camera_case("scene", smooth_scene(48), 0.05, input_curve="srgb")
    expected = response.encode(response.decode(case.ldr, "srgb"), "gamma2.2")
    torch.testing.assert_close(l2h.pipeline_input(case), expected)
    torch.testing.assert_close(l2h.linearised_input(case.ldr, (), case.input_curve), response.decode(case.ldr, "srgb"))
    sihdr_case = l2h.make_case("scene", smooth_scene(48), 0.05)
    assert l2h.pipeline_input(sihdr_case) is sihdr_case.ldr  # the SI-HDR-like input goes to the pipeline as it is
    assert sihdr_case.camera is None and sihdr_case.clipped is None
    score = l2h.score(l2h.linearised_input(case.ldr, (), "srgb"), case)
    assert math.isfinite(score["clipped_rms_stops"]) and 0 < score["clipped_energy"] < 1


# -- the command ---------------------------------------------------------------------------------------------
def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else None), err


def test_bench_l2h_camera_protocol(tiny_models, tmp_path, capsys):
    data = tmp_path / "hdri" / "val"
    data.mkdir(parents=True)
    for seed in range(2):
        io.write_hdr(data / f"s{seed}.hdr", io.to_numpy(scenes.sky_panorama(32, 64, sun_yaw_deg=40 * seed, seed=seed)))
    common = ["bench", "l2h", "--data", data, "--clip", "0.05", "--evs", "-4:2:2", "--codec", tiny_models / "vae",
              "--head", tiny_models / "head.safetensors", "--baselines", "none"]
    code, report, err = run(capsys, *common, "--protocol", "camera", "--seed", "3", "--json", tmp_path / "c.json",
                            "--markdown", tmp_path / "c.md")
    assert code == 0, err
    assert report["protocol"] == "camera" and report["input_curve"] == "srgb" and report["seed"] == 3
    assert report["camera_model"]["jpeg_quality"] == [85, 95]
    rows = json.loads((tmp_path / "c.json").read_text())["rows"]
    assert {r["method"] for r in rows} == {"input", "oracle", "head", "decoded-only"}
    assert all(85 <= r["camera"]["jpeg_quality"] <= 95 for r in rows)
    assert (tmp_path / "c.md").read_text().startswith("Camera protocol (seed 3)")
    again = run(capsys, *common, "--protocol", "camera", "--seed", "3")[1]
    assert again["summary"] == report["summary"]  # deterministic per seed
    gamma = run(capsys, *common, "--protocol", "camera", "--seed", "3", "--input-curve", "gamma2.2")[1]
    inputs = [next(e for e in r["summary"] if e["method"] == "input") for r in (report, gamma)]
    assert inputs[0]["pu21_psnr"] != inputs[1]["pu21_psnr"]  # the same JPEGs, linearised with another curve
    code, sihdr, err = run(capsys, *common, "--json", tmp_path / "s.json")  # the default: no camera keys anywhere
    assert code == 0 and "protocol" not in sihdr and "seed" not in sihdr, err
    assert all("camera" not in r for r in json.loads((tmp_path / "s.json").read_text())["rows"])
    for bad, flag in ((["--seed", "1"], "--seed"), (["--input-curve", "srgb"], "--input-curve"),
                      (["--protocol", "camera", "--seed", "-1"], "--seed")):
        code, _, err = run(capsys, *common, *bad)
        assert code == 2 and flag in err and "Traceback" not in err, (bad, err)
