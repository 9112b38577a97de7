"""Head training: sampling, the latent cache, the loop (EMA, lr, exact resume), the head job and the CLI.

Everything runs on a stand-in codec (8x8 box-filter encoder, nearest-neighbour decoder: latents that follow
the exposure, which a random tiny VAE's barely do) or a tiny random AutoencoderTiny (the CLI run), and on
synthetic 128x64 HDR panoramas written as Radiance files, with 16x16 crops and 32x16 panoramas.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from latenthdr import io
from latenthdr.cli import main
from latenthdr.errors import InputError, LatentHDRError
from latenthdr.training import data, head as th, head_eval, loop

SAMPLING = data.SamplingConfig(crop_size=16, pano_width=32, pano_height=16, pano_fraction=0.4)
EVS = (-2.0, -1.0, 0.0, 1.0, 2.0)


def _tiny_vae():
    import diffusers

    torch.manual_seed(0)
    return diffusers.AutoencoderTiny(encoder_block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
                                     num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1),
                                     latent_channels=4)


class CountingCodec:
    """The tiny codec, counting encoded frames (to see what a cache rebuild re-encodes)."""

    def __init__(self, codec, space="tiny-test"):
        self.codec, self.space, self.frames = codec, space, 0
        self.latent_channels, self.downscale = codec.latent_channels, codec.downscale

    def encode(self, y, **kw):
        self.frames += y.shape[0]
        return self.codec.encode(y, **kw)

    def decode(self, z, **kw):
        return self.codec.decode(z, **kw)

    @property
    def device(self):
        return self.codec.device


def _panorama(seed: int, height: int = 64) -> np.ndarray:
    """Sky gradient, a ground, and a small sun 2^12 brighter than the sky: [H, 2H, 3] float32 linear."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(1.0, 0.05, height)[:, None, None]
    img = np.broadcast_to(rows * np.array([0.4, 0.6, 1.0]), (height, 2 * height, 3)).copy()
    img *= rng.uniform(0.5, 1.5, size=(height, 2 * height, 1))
    cy, cx = rng.integers(8, height // 2), rng.integers(0, 2 * height)
    img[cy - 2:cy + 2, cx - 2:cx + 2] = 4096.0
    return img.astype(np.float32)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny convolutions on a shared 2-core machine run ~100x faster on one thread (no OpenMP spin-waits)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    import cv2

    root = tmp_path_factory.mktemp("hdri")
    for name, seeds in (("train", (1, 2, 3)), ("val", (4,))):
        (root / name).mkdir()
        for s in seeds:
            cv2.imwrite(str(root / name / f"pano{s}.hdr"), _panorama(s)[..., ::-1])  # OpenCV stores BGR
    return root


class BoxCodec:
    """A LatentCodec stand-in with a real latent grid: z = 8x8 means of (R, G, B, mean RGB) - 0.5, decode =
    nearest upsampling of the first three channels (linear both ways, so gradients reach the head)."""

    space, latent_channels, downscale = "tiny-test", 4, 8

    def __init__(self):
        self.module = torch.nn.Conv2d(3, 4, 8, stride=8, bias=False).requires_grad_(False)
        weight = torch.zeros(4, 3, 8, 8)
        for c in range(3):
            weight[c, c] = 1 / 64
        weight[3] = 1 / 192
        self.module.weight.copy_(weight)

    @property
    def device(self):
        return torch.device("cpu")

    def encode(self, y, chunk_size=4, panorama=False, grad=False):
        with torch.inference_mode(not grad):
            z = self.module(y) - 0.5
        return z.clone()

    def decode(self, z, chunk_size=4, panorama=False, grad=False):
        with torch.inference_mode(not grad):
            y = torch.nn.functional.interpolate(z[:, :3] + 0.5, scale_factor=8, mode="nearest").clamp(0, 1)
        return y if grad else y.clone()


@pytest.fixture(scope="module")
def codec():
    return BoxCodec()


def _options(folders, **kw) -> th.HeadTrainOptions:
    base = dict(codec="unused", data=str(folders / "train"), val=str(folders / "val"), evs=EVS, preset="tiny",
                samples=12, val_samples=3, sampling=SAMPLING, batch_size=4, lr=3e-3, steps=8, warmup_steps=2,
                ema_half_life_steps=2.0, val_every=4, merged_every=1, merged_samples=2, seed=0)
    return th.HeadTrainOptions(**{**base, **kw})


# --------------------------------------------------------------------------------------- physics first
def test_panorama_sample_area_resize_keeps_mean_radiance(folders):
    from latenthdr import io

    pano = io.to_tensor(io.read_hdr(folders / "train" / "pano1.hdr").pixels)
    spec = data.SampleSpec(0, "pano1.hdr", "panorama", 90.0, 0.0, 0.0, True, 0.01, 16, 32)
    H, scale = data.render_sample(pano, spec)
    assert H.shape == (3, 16, 32)
    # area averaging conserves linear energy; roll and flip only move it
    torch.testing.assert_close(H.double().mean(dim=(1, 2)), pano.double().mean(dim=(1, 2)) * scale, rtol=1e-5, atol=0)


@given(fraction=st.floats(0.01, 0.2))
@settings(max_examples=10, deadline=None)
def test_anchoring_clips_the_asked_fraction(fraction):
    pano = torch.rand(3, 64, 128, generator=torch.Generator().manual_seed(0)) + 0.01
    spec = data.SampleSpec(0, "x", "panorama", 0.0, 0.0, 0.0, False, fraction, 32, 64)
    H, _ = data.render_sample(pano, spec)
    clipped = (H.amax(dim=0) >= 1.0 - 1e-6).double().mean().item()
    assert abs(clipped - fraction) <= 1.5 / (32 * 64)


def test_bracket_clips_at_one_and_plus_one_ev_doubles_the_signal():
    H = torch.tensor([0.25, 0.5, 0.9, 1.0, 3.0]).view(1, 1, 5).expand(3, 1, 5)
    y = data.sample_bracket(H, (0.0, 1.0))  # [2, 3, 1, 5], 8-bit gamma 2.2
    assert y[0, 0, 0].tolist()[3:] == [1.0, 1.0] and y[0, 0, 0, 2] < 1.0  # EV 0 clips where H reaches 1
    assert y[1, 0, 0, 0] == y[0, 0, 0, 1] and y[1, 0, 0, 2] == 1.0  # +1 EV: 0.25 reads as 0.5; 0.9 clips


# ------------------------------------------------------------------------------------------- sampling
def test_specs_are_per_sample_and_within_ranges():
    a = data.draw_specs(["a.hdr", "b.hdr"], 20, seed=3, sampling=SAMPLING)
    assert a[:7] == data.draw_specs(["a.hdr", "b.hdr"], 7, seed=3, sampling=SAMPLING)  # not tied to the count
    assert a != data.draw_specs(["a.hdr", "b.hdr"], 20, seed=4, sampling=SAMPLING)
    assert {s.kind for s in a} == {"crop", "panorama"} and {s.source for s in a} == {"a.hdr", "b.hdr"}
    for s in a:
        assert 0.001 <= s.clipped_fraction <= 0.1 and -180 <= s.yaw_deg <= 180
        if s.kind == "crop":
            assert -35 <= s.pitch_deg <= 35 and 50 <= s.fov_deg <= 110 and (s.height, s.width) == (16, 16)
        else:
            assert (s.height, s.width) == (16, 32)


def test_white_balance_jitter_keeps_luminance_and_leaves_other_draws_alone():
    from latenthdr.response import luminance

    jittered = dataclasses.replace(SAMPLING, white_balance_stops=0.3)
    plain, shifted = (data.draw_specs(["a.hdr"], 12, seed=1, sampling=s) for s in (SAMPLING, jittered))
    assert all(p.rgb_gains == (1.0, 1.0, 1.0) for p in plain)
    assert [dataclasses.replace(s, rgb_gains=(1.0, 1.0, 1.0)) for s in shifted] == plain
    assert len({s.rgb_gains for s in shifted}) == 12
    for s in shifted:  # a grey keeps its Rec.709 luminance
        assert luminance(torch.tensor(s.rgb_gains, dtype=torch.float64)).item() == pytest.approx(1.0, abs=1e-12)
    pano = torch.rand(3, 32, 64, generator=torch.Generator().manual_seed(0)) + 0.05
    spec = dataclasses.replace(shifted[0], kind="panorama", height=32, width=64, flip=False, yaw_deg=0.0)
    H, scale = data.render_sample(pano, spec)
    ratio = H.double().mean(dim=(1, 2)) / (pano.double().mean(dim=(1, 2)) * scale)
    torch.testing.assert_close(ratio, torch.tensor(spec.rgb_gains, dtype=torch.float64), rtol=1e-5, atol=0)
    with pytest.raises(InputError, match="white_balance_stops"):
        data.SamplingConfig(white_balance_stops=-0.1)


def test_scene_subsets_are_nested_and_keep_every_view(folders, codec, tmp_path):
    names = [f"p{i:02d}.hdr" for i in range(20)]
    subsets = [set(data.scene_subset(names, n, seed=0)) for n in (5, 10, 20)]
    assert [len(s) for s in subsets] == [5, 10, 20] and subsets[0] < subsets[1] < subsets[2]
    assert set(data.scene_subset(names, 5, seed=1)) != subsets[0]
    with pytest.raises(InputError, match="scenes"):
        data.scene_subset(names, 21, seed=0)
    cache = data.build_latent_cache(folders / "train", codec, EVS, 9, tmp_path / "cache", 0, SAMPLING)
    part = data.restrict_to_scenes(cache, ["pano2.hdr"])
    kept = sorted(int(i) for g in part.groups for i in g.index)
    assert kept == [s.index for s in cache.specs if s.source == "pano2.hdr"] == [1, 4, 7]
    for group in part.groups:  # rows move together: z, z0 and the index stay aligned
        full = next(g for g in cache.groups if g.kind == group.kind)
        for i, index in enumerate(group.index.tolist()):
            j = full.index.tolist().index(index)
            assert torch.equal(group.z[i], full.z[j]) and torch.equal(group.z0[i], full.z0[j])
    result = th.train_head(_options(folders, steps=2, val_every=2, scenes=1), tmp_path / "run", codec=codec,
                           command="test")
    assert result.steps == 2


def test_sampling_config_rejects_bad_sizes():
    with pytest.raises(InputError, match="pano_size"):
        data.SamplingConfig(pano_width=100, pano_height=64)
    with pytest.raises(InputError, match="crop_size"):
        data.SamplingConfig(crop_size=20).check_multiple(8)


# ---------------------------------------------------------------------------------------------- cache
def test_cache_is_built_once_resumed_per_shard_and_never_mixed(folders, codec, tmp_path):
    counting = CountingCodec(codec)
    build = lambda **kw: data.build_latent_cache(folders / "train", counting, kw.pop("evs", EVS), 10,  # noqa: E731
                                                 tmp_path / "c", kw.pop("seed", 0), SAMPLING, shard_size=4, **kw)
    cache = build()
    assert counting.frames == 10 * len(EVS) and len(cache) == 10 and cache.space == "tiny-test"
    shapes = {(g.kind, tuple(g.z.shape[-2:])) for g in cache.groups}
    assert shapes == {("crop", (2, 2)), ("panorama", (2, 4))}
    assert all(g.z.dtype == torch.float16 and g.z.shape[1:3] == (len(EVS), 4) and g.hdr is None for g in cache.groups)
    build()
    assert counting.frames == 10 * len(EVS)  # reused: nothing encoded again
    shard = cache.manifest["shards"][0]
    (tmp_path / "c" / shard["file"]).unlink()
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    manifest["complete"] = False  # an interrupted build
    (tmp_path / "c" / "manifest.json").write_text(json.dumps(manifest))
    again = build()
    assert counting.frames == (10 + len(shard["indices"])) * len(EVS)  # only the missing shard
    for g, h in zip(cache.groups, again.groups):
        assert torch.equal(g.index, h.index) and torch.allclose(g.z.float(), h.z.float(), atol=2e-3)
    for change in ({"evs": (-1.0, 0.0, 1.0)}, {"seed": 1}, {"keep_hdr": True}):
        with pytest.raises(InputError, match="cache"):
            build(**change)
    counting.space = "other-space"
    with pytest.raises(InputError, match="codec_space"):
        build()
    rebuilt = build(rebuild=True)
    assert rebuilt.space == "other-space"


def test_z0_is_encoded_separately_when_0_is_not_on_the_ladder(folders, codec, tmp_path):
    with_zero = data.build_latent_cache(folders / "val", codec, "-1:1:1", 4, tmp_path / "a", 0, SAMPLING,
                                        keep_hdr=True)
    without = data.build_latent_cache(folders / "val", codec, "-1,1", 4, tmp_path / "b", 0, SAMPLING)
    for g, h in zip(with_zero.groups, without.groups):
        assert torch.equal(g.z0, g.z[:, 1]) and h.z.shape[1] == 2
        torch.testing.assert_close(h.z0.float(), g.z0.float(), atol=2e-3, rtol=0)
        assert g.hdr.dtype == torch.float32 and g.hdr.shape[-2:] == (g.z.shape[-2] * 8, g.z.shape[-1] * 8)


# ----------------------------------------------------------------------------------------------- loop
def test_lr_schedule_and_ema_half_life():
    cfg = loop.LoopConfig(lr=1.0, warmup_steps=4, max_steps=104, lr_min_ratio=0.1)
    assert loop.lr_at(0, cfg) == 0.25 and loop.lr_at(3, cfg) == 1.0
    assert loop.lr_at(54, cfg) == pytest.approx(0.55) and loop.lr_at(104, cfg) == pytest.approx(0.1)
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    ema = loop.EMA(model, half_life_steps=10)
    torch.nn.init.ones_(model.weight)
    for step in range(1, 11):
        ema.update(model, step)
    assert ema.module.weight.item() == pytest.approx(0.5)  # the initial weight's share halves in 10 steps


def test_loop_keeps_the_ema_weights_of_the_best_validation(tmp_path):
    model = torch.nn.Linear(2, 1)
    scores = {2: 1.0, 4: 3.0, 6: 2.0, 8: float("nan")}  # step 4 is the best; NaN never counts
    seen = {}

    def step_fn(m, step, acc):
        return (m(torch.ones(1, 2)) - 5.0).square().mean(), {}

    def validate(step, ema_module, final):
        seen[step] = {k: v.clone() for k, v in ema_module.state_dict().items()}
        return {"score": scores[step]}

    cfg = loop.LoopConfig(lr=0.1, warmup_steps=1, max_steps=8, val_every_steps=2, checkpoint_every_steps=4)
    result = loop.train(model, step_fn, cfg, tmp_path / "run", validate=validate, best=loop.Best("score", "max"))
    assert result.best == {"metric": "score", "step": 4, "value": 3.0}
    assert all(torch.equal(v, seen[4][k]) for k, v in result.best_ema.state_dict().items())
    assert not torch.equal(result.best_ema.weight, result.ema.weight)  # not the last weights
    assert (tmp_path / "run" / loop.BEST_FILE).is_file()
    with pytest.raises(InputError, match="mode"):
        loop.Best("score", "up")


def test_config_needs_a_limit():
    with pytest.raises(InputError, match="max_steps"):
        loop.LoopConfig()


# ----------------------------------------------------------------------------------------- head job
def test_head_training_reduces_latent_error_and_writes_its_run(folders, codec, tmp_path):
    result = th.train_head(_options(folders, steps=30, val_every=10, merged_every=3), tmp_path / "run",
                           codec=codec, command="test")
    curve = json.loads((tmp_path / "run" / "val_curve.json").read_text())
    assert [r["step"] for r in curve] == [10, 20, 30]
    final = result.final_val
    assert final["latent_mse"] < final["identity_mse"] and final["identity_over_head"] > 1.2
    assert set(final["latent_mse_per_ev"]) == {"-2", "-1", "0", "1", "2"}
    assert math.isfinite(final["merged_pu21_psnr"]) and final["oracle_stops"] > 0
    losses = [r["loss"] for r in map(json.loads, (tmp_path / "run" / "log.jsonl").read_text().splitlines())
              if r["kind"] == "train"]
    assert losses[-1] < losses[0]
    from latenthdr.models.head import load_head, read_head_metadata

    load_head(result.head_path, expected_space="tiny-test")
    meta = read_head_metadata(result.head_path)
    assert json.loads(meta["steps"]) == 30 and meta["training_command"] == "test"
    assert json.loads(meta["final_val"])["latent_mse"] == pytest.approx(final["latent_mse"])


def _crash_at(step: int, opts, run_dir, codec, monkeypatch) -> None:
    """Train ``opts`` in ``run_dir`` until an exception at ``step``: the run stops as a killed one does."""
    original = th.HeadStep.__call__

    def crash(self, model, at, acc):
        if at == step:
            raise RuntimeError("simulated crash")
        return original(self, model, at, acc)

    monkeypatch.setattr(th.HeadStep, "__call__", crash)
    with pytest.raises(RuntimeError, match="simulated"):
        th.train_head(opts, run_dir, codec=codec, command="test")
    monkeypatch.setattr(th.HeadStep, "__call__", original)


def _same_runs(a, b) -> bool:
    """Bit-identical head weights and equal validation curves (timings aside) in run folders ``a`` and ``b``."""
    from safetensors.torch import load_file

    heads = [load_file(str(d / "head.safetensors")) for d in (a, b)]
    strip = lambda rs: [{k: v for k, v in r.items() if k not in ("elapsed_s", "val_s")} for r in rs]  # noqa: E731
    curves = [strip(json.loads((d / "val_curve.json").read_text())) for d in (a, b)]
    return (heads[0].keys() == heads[1].keys() and all(torch.equal(heads[0][k], heads[1][k]) for k in heads[0])
            and curves[0] == curves[1])


def test_resume_after_a_crash_gives_the_same_weights(folders, codec, tmp_path, monkeypatch):
    opts = _options(folders, steps=7, val_every=2, merged_every=3, checkpoint_every=2, cache=str(tmp_path / "cache"))
    th.train_head(opts, tmp_path / "a", codec=codec, command="test")
    _crash_at(5, opts, tmp_path / "b", codec, monkeypatch)
    with pytest.raises(InputError, match="seed"):
        th.train_head(_options(folders, steps=7, seed=1, cache=str(tmp_path / "cache")), tmp_path / "b",
                      codec=codec, resume=True)
    resumed = th.train_head(opts, tmp_path / "b", codec=codec, command="test", resume=True)
    assert resumed.steps == 7 and _same_runs(tmp_path / "a", tmp_path / "b")


def test_resume_skips_a_damaged_last_checkpoint_and_gives_the_same_weights(folders, codec, tmp_path, monkeypatch):
    opts = _options(folders, steps=7, val_every=2, merged_every=3, checkpoint_every=2, cache=str(tmp_path / "cache"))
    th.train_head(opts, tmp_path / "a", codec=codec, command="test")
    _crash_at(5, opts, tmp_path / "b", codec, monkeypatch)  # leaves the checkpoints of steps 2 and 4
    _damage(tmp_path / "b" / "checkpoints" / "step-00000004.pt", "half")
    with pytest.warns(UserWarning, match=r"step-00000004\.pt .*resuming from step-00000002\.pt"):
        resumed = th.train_head(opts, tmp_path / "b", codec=codec, command="test", resume=True)
    assert resumed.steps == 7 and _same_runs(tmp_path / "a", tmp_path / "b")


def test_select_best_ships_the_weights_of_the_best_validation(folders, codec, tmp_path):
    from latenthdr.models.head import load_head, read_head_metadata

    opts = _options(folders, steps=12, val_every=3, merged_every=4, cache=str(tmp_path / "cache"))
    last = th.train_head(opts, tmp_path / "last", codec=codec, command="test")
    best = th.train_head(dataclasses.replace(opts, select="best"), tmp_path / "best", codec=codec, command="test")
    curve = json.loads((tmp_path / "best" / "val_curve.json").read_text())
    ratios = {r["step"]: r["identity_over_head"] for r in curve}
    assert best.selected_step == max(ratios, key=ratios.get) and last.selected_step == 12
    assert best.final_val["identity_over_head"] == pytest.approx(max(ratios.values()))
    assert json.loads(read_head_metadata(best.head_path)["selected_step"]) == best.selected_step
    # the shipped weights reproduce the selected validation's latent error
    cache = data.open_latent_cache(tmp_path / "cache" / "val")
    metrics = head_eval.latent_metrics(load_head(best.head_path, expected_space="tiny-test"), cache, 4)
    assert metrics["latent_mse"] == pytest.approx(best.final_val["latent_mse"], rel=1e-5)
    with pytest.raises(InputError, match="select"):
        _options(folders, select="best", val=None)
    with pytest.raises(InputError, match="select"):
        _options(folders, select="first")


def test_pixel_loss_reaches_the_head_through_the_frozen_decoder(folders, codec, tmp_path):
    from latenthdr.models.head import ExposureHead, HeadConfig

    cache = data.build_latent_cache(folders / "val", codec, EVS, 4, tmp_path / "c", 0, SAMPLING, keep_hdr=True)
    step = th.HeadStep(cache, 2, 0, pixel_loss=1.0, codec=codec)
    model = ExposureHead(HeadConfig.from_preset("tiny", 4, "tiny-test", ev_min=-2.0, ev_max=2.0))
    loss, scalars = step(model, 0, loop.make_accelerator())
    loss.backward()
    assert scalars["loss_px"] > 0 and model.conv_out.weight.grad.abs().sum() > 0
    assert codec.module.weight.grad is None  # the codec stays frozen
    with pytest.raises(InputError, match="pixel_loss"):
        th.HeadStep(data.build_latent_cache(folders / "val", codec, EVS, 4, tmp_path / "d", 0, SAMPLING), 2, 0,
                    pixel_loss=1.0, codec=codec)


# ------------------------------------------------------------------------------------------------ CLI
def _cli(folders, out, *extra):
    return ["train", "head", "--codec", "taef2", "--data", str(folders / "train"), "--val", str(folders / "val"),
            "--out", str(out), *extra]


def test_cli_dry_run_prints_resolved_options(folders, tmp_path, capsys):
    assert main(_cli(folders, tmp_path / "run", "--dry-run", "--evs=-3:3:1", "--minutes", "2")) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["options"]["evs"] == [-3, -2, -1, 0, 1, 2, 3] and report["options"]["steps"] is None
    assert report["loop"]["max_minutes"] == 2 and report["cache"].endswith("cache")
    assert "--evs=-3:3:1" in report["command"] and not (tmp_path / "run").exists()
    import shlex

    assert main(shlex.split(report["command"])[1:] + ["--dry-run"]) == 0  # the recorded command reproduces the run
    again = json.loads(capsys.readouterr().out)
    assert again["options"] == report["options"] and again["command"] == report["command"]


@pytest.mark.parametrize("extra, flag", [
    (("--pano-size", "256x100"), "--pano-size"), (("--evs", "0"), "--evs"), (("--samples", "0"), "--samples"),
    (("--preset", "huge"), "--preset"), (("--crop-size", "100"), "--crop-size"), (("--lr=-1",), "--lr"),
    (("--pano-fraction", "1.5"), "--pano-fraction"), (("--resume", "--overwrite"), "--resume/--overwrite"),
    (("--resume",), "--resume")])
def test_cli_bad_arguments_name_the_flag(folders, tmp_path, capsys, extra, flag):
    assert main(_cli(folders, tmp_path / "run", "--dry-run", *extra)) == 2
    assert f"error: {flag}:" in capsys.readouterr().err


def test_cli_refuses_missing_data_and_an_existing_run_dir(folders, tmp_path, capsys):
    args = _cli(folders, tmp_path / "run", "--dry-run")
    args[args.index("--data") + 1] = str(tmp_path / "nowhere")
    assert main(args) == 2 and "--data:" in capsys.readouterr().err
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "log.jsonl").write_text("")
    assert main(_cli(folders, tmp_path / "run", "--dry-run")) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(_cli(folders, tmp_path / "run", "--dry-run", "--overwrite")) == 0


def test_cli_trains_end_to_end_with_a_local_codec(folders, tmp_path, capsys):
    _tiny_vae().save_pretrained(tmp_path / "vae")
    args = _cli(folders, tmp_path / "run", "--steps", "3", "--samples", "6", "--val-samples", "2",
                "--crop-size", "16", "--pano-size", "32x16", "--preset", "tiny", "--val-every", "3",
                "--merged-samples", "1", "--batch-size", "2", "--no-progress")
    args[args.index("--codec") + 1] = str(tmp_path / "vae")
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["steps"] == 3 and report["stopped_by"] == "steps" and "identity_over_head" in report["final_val"]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["options"]["sampling"]["crop_size"] == 16 and config["head"]["widths"] == [8, 16, 32]


def _two_step_cli_with_local_vae(folders, tmp_path, *flags) -> list[str]:
    """`train head` arguments for a 2-step run of a tiny head on a tiny diffusers VAE saved in tmp_path/vae."""
    _tiny_vae().save_pretrained(tmp_path / "vae")
    args = _cli(folders, tmp_path / "run", "--steps", "2", "--samples", "4", "--val-samples", "2",
                "--crop-size", "16", "--pano-size", "32x16", "--preset", "tiny", "--val-every", "2",
                "--merged-samples", "1", "--batch-size", "2", "--no-progress", *flags)
    args[args.index("--codec") + 1] = str(tmp_path / "vae")
    return args


@pytest.mark.parametrize("flags, option, head_field, value", [
    (["--unseen-maps"], "unseen_maps", "unseen_maps", True),
    (["--frame-channels", "4"], "frame_channels", "frame_channels", 4),
])
def test_cli_trains_a_head_with_side_inputs(folders, codec, tmp_path, capsys, flags, option, head_field, value):
    """The unseen maps and the EV-0 frame: taken from the cache's anchored HDR in training and validation."""
    from latenthdr.models.head import load_head

    args = _two_step_cli_with_local_vae(folders, tmp_path, *flags)
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert "merged_pu21_psnr" in report["final_val"]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["head"][head_field] == value and config["options"][option] == value
    assert " ".join(flags) in config["command"]
    head = load_head(tmp_path / "run" / "head.safetensors")
    assert getattr(head.config, head_field) == value and head.config.frame_patch == 8
    with pytest.raises(InputError, match=option if option == "unseen_maps" else "frame"):
        th.HeadStep(data.build_latent_cache(folders / "val", codec, EVS, 2, tmp_path / "c", 0, SAMPLING), 2, 0,
                    **({"unseen_maps": True} if option == "unseen_maps" else {"frame": True}))
    with pytest.raises(InputError, match="frame_channels"):
        th.HeadTrainOptions(codec="embedded", data=".", frame_channels=-2)


def test_cli_trains_the_no_film_ablation_head(folders, tmp_path, capsys):
    """--ev-conditioning input (docs/RESULTS.md's ablation): recorded in the run and the head, and the EV still
    reaches the trained head's output."""
    from latenthdr.models.head import load_head

    args = _two_step_cli_with_local_vae(folders, tmp_path, "--ev-conditioning", "input")
    assert main(args) == 0
    json.loads(capsys.readouterr().out)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["head"]["ev_conditioning"] == "input" and "--ev-conditioning input" in config["command"]
    head = load_head(tmp_path / "run" / "head.safetensors")
    assert head.config.ev_conditioning == "input" and not any("film" in n for n, _ in head.named_parameters())
    z = head(torch.randn(1, head.config.latent_channels, 2, 4), [-3.0, 3.0])
    assert (z[:, 0] - z[:, 1]).abs().max() > 0
    with pytest.raises(SystemExit) as exit_info:
        main(args[:-1] + ["concat"])
    assert exit_info.value.code == 2 and "--ev-conditioning" in capsys.readouterr().err
    with pytest.raises(InputError, match="ev_conditioning"):
        th.HeadTrainOptions(codec="embedded", data=".", ev_conditioning="concat")


def test_unknown_weights_pick_clipped_pixels_for_dark_evs_and_black_ones_for_bright_evs():
    from latenthdr import exposure
    from latenthdr.training.head import unknown_weights

    H = torch.full((1, 3, 16, 16), 0.2)
    H[..., :8, :8] = 4.0  # clipped at EV 0: the top-left latent pixel of a 2x2 latent grid (8x downscale)
    H[..., 8:, 8:] = 0.0  # black at EV 0: the bottom-right one
    unseen = exposure.unseen_fractions(data.sample_bracket(H, (0.0,))[:, 0], 8)  # [1, 2, 2, 2]
    assert unseen[0, 0].tolist() == [[1.0, 0.0], [0.0, 0.0]] and unseen[0, 1].tolist() == [[0.0, 0.0], [0.0, 1.0]]
    w = unknown_weights(unseen, torch.tensor([-2.0, 0.0, 2.0]), 10.0)  # [1, 3, 1, 2, 2]
    assert w.shape == (1, 3, 1, 2, 2)
    assert w[0, 0, 0].tolist() == [[11.0, 1.0], [1.0, 1.0]]  # e < 0: what clipped must be inferred
    assert w[0, 1, 0].tolist() == [[1.0, 1.0], [1.0, 1.0]]  # e = 0: nothing to infer
    assert w[0, 2, 0].tolist() == [[1.0, 1.0], [1.0, 11.0]]  # e > 0: what was black
    with pytest.raises(InputError, match="unknown_weight"):
        th.HeadTrainOptions(codec="embedded", data=".", unknown_weight=-1.0)


def test_display_weight_scales_each_latent_channel_by_its_display_gain(folders, codec, tmp_path, monkeypatch):
    from latenthdr.models import codecs
    from latenthdr.models.head import ExposureHead, HeadConfig

    gains = torch.tensor([2.0, 1.0, 1.0, 0.0])  # g^2 / mean(g^2) = [8/3, 2/3, 2/3, 0]
    monkeypatch.setattr(codecs, "channel_display_gains", lambda c: gains)
    assert th.display_channel_weights(codec, th.HeadTrainOptions(codec="x", data=".")) is None
    w = th.display_channel_weights(codec, th.HeadTrainOptions(codec="x", data=".", display_weight=3.0))
    torch.testing.assert_close(w, torch.tensor([9.0, 3.0, 3.0, 1.0]) / 4.0)  # 1 + 3 g^2 / mean(g^2), mean 1
    cache = data.build_latent_cache(folders / "val", codec, EVS, 4, tmp_path / "c", 0, SAMPLING)
    model = ExposureHead(HeadConfig.from_preset("tiny", 4, "tiny-test", ev_min=-2.0, ev_max=2.0))
    with torch.no_grad():
        model.conv_out.bias.normal_()  # an error that differs per channel
    plain, _ = th.HeadStep(cache, 2, 0)(model, 0, loop.make_accelerator())
    weighted, _ = th.HeadStep(cache, 2, 0, channel_weights=w)(model, 0, loop.make_accelerator())
    group, rows = data.draw_batch(cache, 2, 0, 0, 0)
    z_hat = model(group.z0[rows].float(), torch.tensor(cache.evs), panorama=group.panorama)
    per_channel = (z_hat - group.z[rows].float()).square().mean(dim=(0, 1, 3, 4))  # [C]
    torch.testing.assert_close(plain, per_channel.mean())
    torch.testing.assert_close(weighted, (w * per_channel).mean())
    assert not torch.isclose(weighted, plain)
    with pytest.raises(InputError, match="display_weight"):
        th.HeadTrainOptions(codec="x", data=".", display_weight=-1.0)


def test_resume_accepts_a_run_saved_before_an_option_existed(tmp_path):
    """A run whose config.json predates an option (here unknown_weight) resumes when the option has its default."""
    from latenthdr.training import rundir

    options = th.HeadTrainOptions(codec="embedded", data=".")
    saved = {k: v for k, v in json.loads(json.dumps(options.to_dict())).items() if k != "unknown_weight"}
    (tmp_path / "config.json").write_text(json.dumps({"options": saved}))
    rundir.Checkpointer(tmp_path / "checkpoints").save(1, {"step": 1})
    rundir.check_resumable(tmp_path, options, th.RESUMABLE_CHANGES)  # no error
    with pytest.raises(InputError, match="unknown_weight"):
        rundir.check_resumable(tmp_path, th.HeadTrainOptions(codec="embedded", data=".", unknown_weight=2.0),
                             th.RESUMABLE_CHANGES)


# ------------------------------------------------------------------------------------ a damaged run folder
def _damage(path, how: str) -> None:
    """Cut ``path`` to half its bytes, empty it, overwrite it with random bytes, or flip one byte in its middle."""
    raw = path.read_bytes()
    middle = len(raw) // 2
    damaged = {"half": raw[:middle], "empty": b"", "random": np.random.default_rng(0).bytes(len(raw)),
               "flipped": raw[:middle] + bytes([raw[middle] ^ 0xFF]) + raw[middle + 1:]}[how]
    path.write_bytes(damaged)


@pytest.mark.parametrize("how", ["half", "empty", "random", "flipped"])
def test_checkpointer_resumes_from_the_newest_intact_checkpoint(tmp_path, how):
    from latenthdr.training import rundir

    checkpoints = rundir.Checkpointer(tmp_path, keep=2)
    for step in (2, 4):  # mostly tensor bytes: a flipped middle byte is a weight's (torch.load would not notice)
        checkpoints.save(step, {"step": step, "w": torch.arange(4096.0) + step})
    _damage(tmp_path / "step-00000004.pt", how)
    with pytest.warns(UserWarning, match=r"--resume: skipped damaged checkpoint .*step-00000004\.pt .*resuming "
                                         r"from step-00000002\.pt"):
        state = checkpoints.load()
    assert state["step"] == 2 and torch.equal(state["w"], torch.arange(4096.0) + 2)
    checkpoints.save(3, {"step": 3, "w": torch.arange(4096.0) + 3})  # the run goes on: the damaged later one goes
    assert [p.name for p in checkpoints.paths()] == ["step-00000002.pt", "step-00000003.pt"]
    for path in checkpoints.paths():
        _damage(path, how)
    with pytest.raises(InputError, match=r"no intact checkpoint: .*step-00000003\.pt .*step-00000002\.pt .*"
                                         r"--overwrite") as error:
        checkpoints.load()
    assert error.value.argument == "--resume"


def test_cli_resume_names_a_damaged_checkpoint_in_one_line_and_gives_the_same_weights(folders, tmp_path, capsys):
    from safetensors.torch import load_file

    _tiny_vae().save_pretrained(tmp_path / "vae")
    args = _cli(folders, tmp_path / "run", "--steps", "3", "--samples", "4", "--val-samples", "2",
                "--crop-size", "16", "--pano-size", "32x16", "--preset", "tiny", "--val-every", "3",
                "--merged-samples", "1", "--batch-size", "2", "--checkpoint-every", "1", "--no-progress")
    args[args.index("--codec") + 1] = str(tmp_path / "vae")
    assert main(args) == 0
    uninterrupted = load_file(str(tmp_path / "run" / "head.safetensors"))
    checkpoints = tmp_path / "run" / "checkpoints"
    _damage(checkpoints / "step-00000003.pt", "half")
    capsys.readouterr()
    assert main(args + ["--resume"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "warning: --resume: skipped damaged checkpoint" in err[0]
    assert str(checkpoints / "step-00000003.pt") in err[0] and "resuming from step-00000002.pt" in err[0]
    resumed = load_file(str(tmp_path / "run" / "head.safetensors"))
    assert resumed.keys() == uninterrupted.keys() and all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)
    for path in checkpoints.glob("step-*.pt"):
        _damage(path, "empty")
    assert main(args + ["--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: --resume:" in err and "no intact checkpoint" in err
    assert "--overwrite" in err and "Traceback" not in err


@pytest.mark.parametrize("content", [b"\xff\xfe{}", b'{"options": {', b"", b"[]", b"{}", b'{"options": 3}',
                                     b"[" * 10**5],
                         ids=["not UTF-8", "cut", "empty", "a list", "no options", "options a number", "too deep"])
def test_resume_refuses_a_damaged_run_config_in_one_clear_error(tmp_path, content):
    from latenthdr.training import rundir

    (tmp_path / "config.json").write_bytes(content)
    rundir.Checkpointer(tmp_path / "checkpoints").save(1, {"step": 1})
    with pytest.raises(InputError, match=r"config\.json is not a readable run config .*--overwrite") as error:
        rundir.check_resumable(tmp_path, th.HeadTrainOptions(codec="embedded", data="."), th.RESUMABLE_CHANGES)
    assert error.value.argument == "--resume"


def test_resume_keeps_the_readable_log_records_up_to_the_checkpoint(tmp_path):
    from latenthdr.training import rundir

    log = tmp_path / "log.jsonl"
    kept = [json.dumps({"step": s, "kind": "train"}) for s in (1, 2)]
    later = json.dumps({"step": 5, "kind": "train"})
    damaged = [b"\xff\xfe not UTF-8", b"[2]", b"[" * 10**5, b'{"step": "3"}', b'{"step": 6, "lo']  # the last: cut
    log.write_bytes(b"\n".join([kept[0].encode(), damaged[0], kept[1].encode(), *damaged[1:4], later.encode(),
                                damaged[4]]))
    rundir.JsonlLogger(log, keep_until_step=4).log({"step": 5, "kind": "train"})
    assert log.read_text().splitlines() == [*kept, later]


@pytest.fixture
def read_only(monkeypatch):
    """chmod 555 a folder (restored after the test). Root writes whatever the mode: for root, access(2) is made
    to answer for that folder as it does for anyone else."""
    folders = []
    access = os.access
    if os.geteuid() == 0:
        monkeypatch.setattr(os, "access", lambda path, mode, *args, **kw: not (mode & os.W_OK and Path(path) in folders)
                            and access(path, mode, *args, **kw))

    def make(folder):
        folder.chmod(0o555)
        folders.append(folder)

    yield make
    for folder in folders:
        folder.chmod(0o755)


@pytest.mark.parametrize("case", ["a file", "in a file", "read-only parent", "read-only run"])
def test_cli_refuses_a_run_dir_it_cannot_write_in_one_line(folders, tmp_path, capsys, read_only, case):
    parent, extra = tmp_path / "parent", ()
    parent.mkdir()
    run = parent / "run"
    if case == "a file":
        run.write_text("")
    elif case == "in a file":
        parent.rmdir()
        parent.write_text("")
    elif case == "read-only parent":
        read_only(parent)
    else:
        run.mkdir()
        (run / "config.json").write_text("{}")
        read_only(run)
        extra = ("--resume",)
    assert main(_cli(folders, run, "--dry-run", *extra)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: --out:" in err and ("is a file" in err or "is not writable" in err)


def test_training_refuses_a_run_dir_it_cannot_write_before_any_work(folders, codec, tmp_path, read_only):
    (tmp_path / "parent").mkdir()
    read_only(tmp_path / "parent")
    counting = CountingCodec(codec)
    with pytest.raises(InputError, match="parent is not writable") as error:
        th.train_head(_options(folders), tmp_path / "parent" / "run", codec=counting, command="test")
    assert error.value.argument == "--out" and counting.frames == 0 and not (tmp_path / "parent" / "run").exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="file is a file"):
        th.train_head(_options(folders), tmp_path / "file", codec=counting, command="test")


def test_a_run_deletes_the_temporaries_of_killed_saves_and_keeps_a_live_ones(tmp_path, monkeypatch):
    import subprocess
    import sys

    from latenthdr.training import rundir

    killed = subprocess.Popen([sys.executable, "-c", ""])
    killed.wait()
    live = subprocess.Popen(["sleep", "60"])
    try:
        run = tmp_path / "run"
        (run / "checkpoints").mkdir(parents=True)
        stale = [run / f".best.pt.latenthdr-{killed.pid}-0123abcd.pt",
                 run / "checkpoints" / f".step-00000004.pt.latenthdr-{killed.pid}-0123abcd.pt"]
        saving = run / "checkpoints" / f".step-00000006.pt.latenthdr-{live.pid}-0123abcd.pt"
        for path in [*stale, saving]:
            path.write_bytes(b"partial")
        step_fn = lambda m, step, acc: (m(torch.ones(1, 2)).square().mean(), {})  # noqa: E731
        loop.train(torch.nn.Linear(2, 1), step_fn, loop.LoopConfig(max_steps=2), run)
        assert not any(path.exists() for path in stale) and saving.is_file()

        def disk_full(state, f):
            Path(f).write_bytes(b"cut")
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(torch, "save", disk_full)
        with pytest.raises(LatentHDRError, match="step-00000009.pt: could not be written .No space left"):
            rundir.save_atomic({"step": 1}, run / "checkpoints" / "step-00000009.pt")
        assert sorted(p.name for p in run.rglob("*") if io.is_temporary(p.name)) == [saving.name]
    finally:
        live.kill()
        live.wait()
