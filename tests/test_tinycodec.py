"""The embedded codec (models/tinycodec.py), its training job (training/codec.py) and its shipped weights.

Random tiny configs (the "test" preset) for shapes, contracts, panorama wrap, save/load and resume; synthetic
HDR panoramas written as Radiance files for the training job; the shipped weights and ../shared's val
panoramas (skipped when absent) for the quality floor.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from latenthdr import io
from latenthdr.cli import main
from latenthdr.errors import InputError
from latenthdr.models import codecs, registry
from latenthdr.models import tinycodec as tc
from latenthdr.training import codec as tcod
from latenthdr.training import data

TEST = tc.TinyCodecConfig.from_preset("test")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny convolutions on a shared 2-core machine run much faster on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _random_model(config: tc.TinyCodecConfig = TEST, seed: int = 0) -> tc.TinyAutoencoder:
    """A model whose every conv is random (the zero-initialised residual convs too), so the whole receptive
    field matters; latent statistics set to non-trivial values."""
    torch.manual_seed(seed)
    model = tc.TinyAutoencoder(config)
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.normal_(module.weight, std=0.5 / math.sqrt(module.weight[0].numel()))
            torch.nn.init.normal_(module.bias, std=0.05)
    model.latent_mean.normal_()
    model.latent_std.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="module")
def codec() -> tc.EmbeddedCodec:
    return tc.EmbeddedCodec(_random_model())


# --------------------------------------------------------------------------------------- physics first
def test_trivial_fraction_counts_fully_clipped_and_black_pixels():
    y = torch.full((3, 4, 4), 0.5)
    y[:, 0] = 1.0  # a clipped row
    y[:, 1] = 0.0  # a black row
    y[0, 2, :] = 1.0  # one channel clipped: still informative
    assert tcod.trivial_fraction(y).item() == pytest.approx(0.5)


def test_pu21_loss_is_zero_for_a_perfect_frame_and_weighs_dark_evs_brighter():
    y = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1
    assert tcod.pu21_l1(y, y, torch.zeros(1)).item() == 0.0
    off = y + 0.01
    # the same display error in the -7 EV frame shows scene radiance 2^12 brighter than in the +5 EV frame:
    # PU21 is near-logarithmic there, so it stays visible; at the dim end PU21 compresses it
    assert tcod.pu21_l1(off, y, torch.tensor([-7.0])) > 2 * tcod.pu21_l1(off, y, torch.tensor([5.0]))


def test_residual_blocks_start_as_identity_and_upsampling_has_no_checkerboard_at_init():
    torch.manual_seed(0)
    block = tc.ResBlock(8)
    x = torch.rand(2, 8, 5, 7)
    torch.testing.assert_close(block(x), x)
    up = tc.Upsample(8, 4)(torch.randn(1, 8, 5, 7))  # [1, 4, 10, 14]
    torch.testing.assert_close(up[..., 0::2, 0::2], up[..., 1::2, 1::2])
    torch.testing.assert_close(up[..., 0::2, 0::2], up[..., 0::2, 1::2])


def test_codec_starts_as_the_pca_patch_codec():
    """Images whose 8x8x3 patches span a rank-C subspace are reconstructed exactly after the PCA fit (the
    convolutional paths start at zero); an image outside the subspace is not (the test can fail)."""
    g = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(192, TEST.latent_channels, generator=g, dtype=torch.float64))[0].T
    patches = 0.1 + torch.randn(2, 6, 5, TEST.latent_channels, generator=g, dtype=torch.float64) @ basis * 0.05
    y = (torch.nn.functional.pixel_shuffle(patches.permute(0, 3, 1, 2), 8) + 0.5).float()  # [2, 3, 48, 40]
    torch.manual_seed(0)
    model = tc.TinyAutoencoder(TEST)
    model.init_linear_paths([y[:1], y[1:, :, :32]])  # images of different sizes
    torch.testing.assert_close(model(y)[0], y, rtol=0, atol=1e-5)
    off = torch.rand(1, 3, 48, 40, generator=g)
    assert (model(off)[0] - off).abs().max() > 0.05


def test_channel_display_gains_of_a_linear_patch_codec_are_its_latent_stds_per_pixel():
    """With the convolutional paths at zero the decoder is the orthonormal PCA patch map, so one unit of
    normalised channel c moves the 192 patch values by latent_std_c in norm: RMS latent_std_c / sqrt(192)."""
    g = torch.Generator().manual_seed(1)
    torch.manual_seed(0)
    model = tc.TinyAutoencoder(TEST)
    model.init_linear_paths([torch.rand(2, 3, 32, 32, generator=g)])
    model.latent_std.copy_(torch.linspace(0.2, 2.0, TEST.latent_channels))
    gains = codecs.channel_display_gains(tc.EmbeddedCodec(model.eval()))
    assert gains.shape == (TEST.latent_channels,) and gains.dtype == torch.float32
    torch.testing.assert_close(gains, model.latent_std / math.sqrt(192), rtol=1e-4, atol=0)


# ------------------------------------------------------------------------------------------ contracts
def test_shapes_ranges_and_dtypes(codec):
    y = torch.rand(3, 3, 32, 48)
    z = codec.encode(y)
    assert z.shape == (3, TEST.latent_channels, 4, 6) and z.dtype == torch.float32
    out = codec.decode(z * 10)  # far outside the training range: still clamped display values
    assert out.shape == y.shape and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1 and torch.isfinite(out).all()
    assert codec.encode(y.double()).dtype == torch.float64
    assert codec.space == "latenthdr-test" and codec.downscale == 8 and codec.wrap_columns == tc.wrap_columns(TEST)


def test_normalised_latents_use_the_measured_statistics(codec):
    model = codec.module
    y = torch.rand(2, 3, 16, 16)
    z_raw = model.encoder(y)
    z = codec.encode(y)
    expected = (z_raw - model.latent_mean[:, None, None]) / model.latent_std[:, None, None]
    torch.testing.assert_close(z, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(codec.denormalise(codec.normalise(z_raw)), z_raw, rtol=1e-5, atol=1e-5)


def test_chunked_equals_unchunked(codec):
    y = torch.rand(5, 3, 24, 32)
    z = codec.encode(y, chunk_size=5)
    torch.testing.assert_close(codec.encode(y, chunk_size=2), z, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(codec.decode(z, chunk_size=1), codec.decode(z, chunk_size=5), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("preset", ["test", "tiny"])
def test_wrap_columns_cover_the_receptive_fields(preset):
    """An impulse's influence measured by autograd never reaches farther than the computed radius."""
    config = tc.TinyCodecConfig.from_preset(preset, latent_channels=4)
    model = _random_model(config)
    z = torch.zeros(1, 4, 2, 41, requires_grad=True)
    model.decoder(z)[..., 20 * 8:21 * 8].sum().backward()
    cols = (z.grad.abs().sum(dim=(0, 1, 2)) > 0).nonzero().flatten() - 20
    y = torch.zeros(1, 3, 16, 41 * 8, requires_grad=True)
    model.encoder(y)[..., 20].sum().backward()
    px = (y.grad.abs().sum(dim=(0, 1, 2)) > 0).nonzero().flatten()
    encoder_px, decoder_latent = tc.receptive_radius(config)
    assert cols.abs().max() <= math.ceil(decoder_latent) <= tc.wrap_columns(config)
    assert max(160 - px.min(), px.max() - 167) <= encoder_px <= 8 * tc.wrap_columns(config)


@settings(max_examples=6, deadline=None)
@given(shift=st.integers(1, 11))
def test_panorama_coding_is_shift_equivariant_across_the_seam(codec, shift):
    """Rolling a panorama by whole latent columns rolls its latents and its decoded frame: nothing marks the
    +-180 degree seam. Without the wrap the borders differ (the test can fail)."""
    y = torch.rand(1, 3, 32, 96, generator=torch.Generator().manual_seed(shift))
    z = codec.encode(y, panorama=True)
    torch.testing.assert_close(codec.encode(y.roll(8 * shift, -1), panorama=True), z.roll(shift, -1),
                               rtol=1e-4, atol=1e-4)
    out = codec.decode(z, panorama=True)
    torch.testing.assert_close(codec.decode(z.roll(shift, -1), panorama=True), out.roll(8 * shift, -1),
                               rtol=1e-4, atol=1e-4)
    flat = codec.decode(z.roll(shift, -1))
    assert (flat - out.roll(8 * shift, -1)).abs().max() > 1e-3


def test_training_pass_wraps_like_the_adapter(codec):
    y = torch.rand(2, 3, 16, 64)
    y_hat, _ = codec.module(y, panorama=True)
    z = codec.encode(y, panorama=True)
    torch.testing.assert_close(y_hat.clamp(0, 1), codec.decode(z, panorama=True), rtol=1e-4, atol=1e-4)


def test_save_load_round_trip_in_float32_and_float16(codec, tmp_path):
    model = codec.module
    path = tc.save_codec(model, tmp_path / "c.safetensors", extra_metadata={"steps": 3})
    loaded = tc.load_embedded_codec(path)
    assert loaded.space == codec.space and loaded.module.config == model.config
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.module.state_dict()[key], value, rtol=0, atol=0)
    meta = tc.read_codec_metadata(path)
    assert json.loads(meta["steps"]) == 3 and meta["space"] == "latenthdr-test"
    half = tc.save_codec(model, tmp_path / "h.safetensors", dtype=torch.float16)
    from safetensors.torch import load_file

    stored = load_file(str(half))
    assert stored["latent_std"].dtype == torch.float32 and stored["encoder.layers.0.weight"].dtype == torch.float16
    y = torch.rand(1, 3, 32, 32)
    assert (tc.load_embedded_codec(half).decode(codec.encode(y)) - codec.decode(codec.encode(y))).abs().max() < 0.02
    with pytest.raises(InputError, match="reserved"):
        tc.save_codec(model, tmp_path / "x.safetensors", extra_metadata={"space": "other"})


def test_config_refuses_unknown_keys_and_bad_values(tmp_path):
    with pytest.raises(InputError, match="unknown keys"):
        tc.TinyCodecConfig.from_dict({**TEST.to_dict(), "attention": True})
    assert tc.TinyCodecConfig.from_dict(TEST.to_dict()) == TEST
    with pytest.raises(InputError, match="decoder_widths"):
        tc.TinyCodecConfig(decoder_widths=(8, 0, 8))
    with pytest.raises(InputError, match="name"):
        tc.TinyCodecConfig(name="a b")
    with pytest.raises(InputError, match="preset"):
        tc.TinyCodecConfig.from_preset("huge")
    from safetensors.torch import save_file

    bad = tmp_path / "bad.safetensors"
    save_file({"w": torch.zeros(1)}, str(bad), metadata={"format": tc.CODEC_FORMAT, "space": "latenthdr-test",
                                                        "config": json.dumps({**TEST.to_dict(), "extra": 1})})
    with pytest.raises(InputError, match="unknown keys"):
        tc.load_model(bad)
    save_file({"w": torch.zeros(1)}, str(bad), metadata={"format": "latenthdr-head-v1", "config": "{}"})
    with pytest.raises(InputError, match="not a latenthdr codec"):
        tc.load_model(bad)


# ----------------------------------------------------------------------------------------- training job
def _panorama(seed: int, height: int = 32) -> np.ndarray:
    """Sky gradient with texture and a small sun 2^12 brighter: [H, 2H, 3] float32 linear."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(1.0, 0.05, height)[:, None, None]
    img = rows * np.array([0.4, 0.6, 1.0]) * rng.uniform(0.5, 1.5, size=(height, 2 * height, 1))
    img[4:6, 10:12] = 4096.0
    return img.astype(np.float32)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    import cv2

    root = tmp_path_factory.mktemp("hdri")
    for name, seeds in (("train", (1, 2)), ("val", (3,))):
        (root / name).mkdir()
        for s in seeds:
            cv2.imwrite(str(root / name / f"pano{s}.hdr"), _panorama(s)[..., ::-1])  # OpenCV stores BGR
    return root


def _options(folders, **kw) -> tcod.CodecTrainOptions:
    base = dict(data=str(folders / "train"), val=None, preset="test", samples=6, evs=(-2.0, 0.0, 2.0),
                sampling=data.SamplingConfig(crop_size=16, pano_width=32, pano_height=16, pano_fraction=0.5),
                batch_size=2, evs_per_sample=2, steps=6, warmup_steps=2, ema_half_life_steps=2.0,
                val_every=3, checkpoint_every=3, seed=0)
    return tcod.CodecTrainOptions(**{**base, **kw})


def test_training_frames_are_step_indexed_and_skip_trivial_frames(folders):
    options = _options(folders, evs=(-30.0, 0.0, 30.0), evs_per_sample=1)
    step = tcod.CodecStep(tcod.load_panoramas(options.data), options)
    for s in range(4):
        y, e, _ = step.frames(s)
        assert y.shape[0] == 2 and (e == 0).all()  # -30 EV is black, +30 EV clipped everywhere
        torch.testing.assert_close(step.frames(s)[0], y)


def test_resume_after_a_crash_gives_the_same_weights(folders, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    options = _options(folders, val=str(folders / "val"), val_crops=1)
    whole = tcod.train_codec(options, tmp_path / "a", command="test")
    original = tcod.CodecStep.__call__

    def crash_at_4(self, model, step, acc):
        if step == 4:
            raise RuntimeError("simulated crash")
        return original(self, model, step, acc)

    monkeypatch.setattr(tcod.CodecStep, "__call__", crash_at_4)
    with pytest.raises(RuntimeError, match="simulated"):
        tcod.train_codec(options, tmp_path / "b", command="test")
    monkeypatch.setattr(tcod.CodecStep, "__call__", original)
    with pytest.raises(InputError, match="latent_channels"):
        tcod.train_codec(_options(folders, val=str(folders / "val"), val_crops=1, latent_channels=8),
                         tmp_path / "b", resume=True)
    resumed = tcod.train_codec(options, tmp_path / "b", command="test", resume=True)
    assert whole.steps == resumed.steps == 6
    a, b = (load_file(str(tmp_path / d / "codec.safetensors")) for d in "ab")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert set(a) == set(tc.TinyAutoencoder(TEST).state_dict())
    assert whole.final_val["psnr_informative"] == resumed.final_val["psnr_informative"]
    assert set(whole.final_val["psnr_per_ev"]) == {"-2", "0", "2"}
    assert abs(whole.final_val_f16["psnr"] - whole.final_val["psnr"]) < 1.0


def test_decoder_only_fine_tuning_keeps_the_latent_space(folders, tmp_path):
    from safetensors.torch import load_file

    start = tcod.train_codec(_options(folders, steps=2), tmp_path / "start", command="test")
    options = _options(folders, init=str(start.codec_path), train_encoder=False, l2_loss=10.0, latent_noise=0.1)
    tuned = tcod.train_codec(options, tmp_path / "tuned", command="test")
    a, b = load_file(str(start.codec_path)), load_file(str(tuned.codec_path))
    frozen = [k for k in a if k.startswith(("encoder.", "latent_"))]
    assert frozen and all(torch.equal(a[k], b[k]) for k in frozen)  # same encoder, same statistics
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("decoder."))
    assert tc.load_embedded_codec(tuned.codec_path).space == tc.load_embedded_codec(start.codec_path).space
    with pytest.raises(InputError, match="init"):
        _options(folders, train_encoder=False)
    with pytest.raises(InputError, match="name"):
        _options(folders, init=str(start.codec_path), train_encoder=False, name="other")
    with pytest.raises(InputError, match="new name"):
        _options(folders, init=str(start.codec_path))  # a trained encoder is a new latent space
    assert _options(folders, init=str(start.codec_path), name="test-2").codec_config().space == "latenthdr-test-2"
    with pytest.raises(InputError, match="latent_noise"):
        _options(folders, latent_noise=-1.0)


def test_block_edge_measures_see_only_steps_across_latent_cell_borders():
    y = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    blocky = y.clone()
    blocky[..., :, 8:16] += 0.1  # a block-column offset: steps appear at x = 7 -> 8 and 15 -> 16 only
    assert tcod.block_edge_l1(y, y).item() == 0.0
    assert tcod.block_edge_excess(y, y) == 0.0
    inner = y.clone()
    inner[..., :, 9:11] += 0.1  # inside one cell: no border step changes
    assert tcod.block_edge_l1(inner, y).item() == pytest.approx(0.0, abs=1e-7)
    cols = 48 // 8 - 1
    assert tcod.block_edge_l1(blocky, y).item() == pytest.approx(0.5 * 0.1 * 2 / cols, rel=1e-5)
    assert tcod.block_edge_excess(blocky, y) > 0
    with pytest.raises(InputError, match="edge_loss"):
        tcod.CodecTrainOptions(data="d", val="v", edge_loss=-1.0)


def test_cli_dry_run_and_bad_flags(folders, tmp_path, capsys):
    args = ["train", "codec", "--data", str(folders / "train"), "--val", str(folders / "val"),
            "--out", str(tmp_path / "run"), "--dry-run", "--latent-channels", "8", "--minutes", "3"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["codec"]["latent_channels"] == 8 and report["options"]["steps"] is None
    assert "--latent-channels 8" in report["command"] and not (tmp_path / "run").exists()
    for extra, flag in ((("--latent-channels", "0"), "--latent-channels"), (("--preset", "huge"), "--preset"),
                        (("--crop-size", "100"), "--crop-size"), (("--evs-per-sample", "20"), "--evs-per-sample"),
                        (("--decoder-only",), "--decoder-only"), (("--init", str(tmp_path / "none")), "--init")):
        assert main(args + list(extra)) == 2
        assert f"error: {flag}:" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- shipped weights
def _shipped_name() -> str:
    name = next((n for n, e in registry.manifest().items() if e["kind"] == "codec"), None)
    if name is None:
        pytest.skip("no embedded codec shipped in this build")
    return name


def test_shipped_codec_verifies_and_is_the_default():
    name = _shipped_name()
    entry = registry.manifest()[name]
    path = registry.WEIGHTS_DIR / name
    assert registry.sha256_of(path) == entry["sha256"] and path.stat().st_size == entry["bytes"] < 8 << 20
    codec = registry.load_codec_for("embedded")
    assert isinstance(codec, tc.EmbeddedCodec) and isinstance(codec, codecs.LatentCodec)
    assert codec.space == entry["space"] and registry.default_codec_spec() == "embedded"
    assert codec.dtype == torch.float32


def test_shipped_codec_reconstructs_a_val_crop(shared_dir):
    _shipped_name()
    codec = registry.load_codec_for("embedded")
    folder = shared_dir / "data" / "hdri" / "val"
    spec = data.draw_specs([p.name for p in data.list_hdr_files(folder)], 1, tcod.VAL_SEED, tcod.VAL_SAMPLING)[0]
    pano = io.to_tensor(io.read_hdr(folder / spec.source).pixels)  # only the one panorama the crop comes from
    y = data.sample_bracket(data.render_sample(pano, spec)[0], (0.0,))  # [1, 3, 256, 256]
    mse = (codec.decode(codec.encode(y)) - y).square().mean().item()
    assert 10 * math.log10(1 / mse) > 28.0


def test_windows_decode_exactly_like_the_whole_frame(codec):
    """decode_cells with the codec's tail radius (the whole receptive field) reproduces the full decode where it
    decodes, leaves ``out`` alone elsewhere, and a margin short of the radius does not."""
    from latenthdr.models.codecs import decode_cells

    z = torch.randn(3, codec.latent_channels, 12, 40, generator=torch.Generator().manual_seed(5))
    cells = torch.zeros(12, 40, dtype=torch.bool)
    cells[0, 1] = cells[5, 20:23] = cells[11, 39] = True
    for panorama in (False, True):
        full = codec.decode(z, panorama=panorama)
        out = torch.full_like(full, -1.0)
        decoded = decode_cells(codec, z, cells, out, panorama=panorama, tile=4, chunk_size=2)
        assert bool(decoded[cells].all()) and int(decoded.sum()) == 3 * 16  # three whole 4 x 4 tiles
        mask = decoded.repeat_interleave(8, 0).repeat_interleave(8, 1)
        torch.testing.assert_close(out[:, :, mask], full[:, :, mask], atol=1e-5, rtol=0)
        assert bool((out[:, :, ~mask] == -1).all())
    short = torch.full_like(full, -1.0)
    decode_cells(codec, z, cells, short, tile=4, margin=1)
    assert (short[:, :, mask] - full[:, :, mask]).abs().max() > 1e-3


def test_large_images_encode_in_bands_exactly_like_the_whole_image(codec, monkeypatch):
    """Images above ENCODE_BAND_PIXELS run the encoder in bands of rows with the encoder's receptive radius as
    margin: the same latents as one pass, to float rounding (the convolution kernels oneDNN picks depend on the
    input's shape and the CPU; the memory is the band's); a margin short of it is not."""
    from latenthdr.models import codecs

    y = torch.rand(1, 3, 96, 160, generator=torch.Generator().manual_seed(8))
    for panorama in (False, True):
        whole = codec.encode(y, panorama=panorama)
        monkeypatch.setattr(codecs, "ENCODE_BAND_PIXELS", 160 * 16)
        assert (codec.encode(y, panorama=panorama) - whole).abs().max() < 1e-5
        monkeypatch.setattr(codecs, "ENCODE_BAND_PIXELS", 1 << 30)
    monkeypatch.setattr(codecs, "ENCODE_BAND_PIXELS", 160 * 16)
    monkeypatch.setattr(codec, "encode_radius_px", 8)
    assert (codec.encode(y) - whole).abs().max() > 1e-4
