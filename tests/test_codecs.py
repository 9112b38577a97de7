"""Latent codecs: normalisation against the raw diffusers calls, chunking, panorama wrap, loading, TAEF2.

Tiny randomly initialised diffusers VAEs are built here (no hub, no network); TAEF2 comes from ../shared.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from latenthdr.errors import InputError
from latenthdr.models.codecs import DiffusersKLCodec, Flux2Codec, TinyCodec, decode_bracket, encode_bracket, load_codec

diffusers = pytest.importorskip("diffusers")

KL_SCALE, KL_SHIFT = 0.5, 0.1
TINY_SCALE, TINY_SHIFT = 2.0, 0.25
LEVELS = dict(down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
              block_out_channels=(8, 8, 16), layers_per_block=1, latent_channels=4, norm_num_groups=4,
              mid_block_add_attention=False)


def tiny_kl(**overrides):
    torch.manual_seed(0)
    return diffusers.AutoencoderKL(**{**LEVELS, "scaling_factor": KL_SCALE, "shift_factor": KL_SHIFT, **overrides})


def tiny_flux2():
    torch.manual_seed(1)
    vae = diffusers.AutoencoderKLFlux2(**LEVELS)
    generator = torch.Generator().manual_seed(2)  # non-trivial stored statistics, as in a trained model
    vae.bn.running_mean.copy_(torch.randn(16, generator=generator))
    vae.bn.running_var.copy_(torch.rand(16, generator=generator) * 3 + 0.1)
    return vae


def tiny_taesd():
    torch.manual_seed(3)
    return diffusers.AutoencoderTiny(encoder_block_out_channels=(8, 8, 8), decoder_block_out_channels=(8, 8, 8),
                                     num_encoder_blocks=(1, 1, 1), num_decoder_blocks=(1, 1, 1), latent_channels=4,
                                     scaling_factor=TINY_SCALE, shift_factor=TINY_SHIFT)


BUILDERS = {"kl": lambda: DiffusersKLCodec(tiny_kl()), "flux2": lambda: Flux2Codec(tiny_flux2()),
            "tiny": lambda: TinyCodec(tiny_taesd())}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def codec(request):
    return BUILDERS[request.param]()


def smooth_image(batch=2, h=32, w=64, seed=0):
    """A smooth, horizontally periodic display-encoded image in [0, 1] (seamless as a panorama)."""
    generator = torch.Generator().manual_seed(seed)
    u = torch.linspace(0, 2 * math.pi, w + 1)[:-1]
    v = torch.linspace(0, math.pi, h)
    phase = torch.rand(batch, 3, 1, 1, generator=generator) * 6.28
    return 0.5 + 0.4 * torch.sin(u + phase) * torch.cos(v[:, None] + phase / 2)


def random_latent(codec, batch=2, h=8, w=32, seed=0):
    return torch.randn(batch, codec.latent_channels, h, w, generator=torch.Generator().manual_seed(seed))


# --- contracts: shapes, ranges, dtypes ---------------------------------------------------------------------

def test_shapes_ranges_and_dtypes(codec):
    y = smooth_image()
    z = codec.encode(y)
    d = codec.downscale
    assert d == 4 and z.shape == (2, codec.latent_channels, 32 // d, 64 // d) and z.dtype == torch.float32
    y_hat = codec.decode(z)
    assert y_hat.shape == y.shape and y_hat.dtype == torch.float32
    assert y_hat.min() >= 0 and y_hat.max() <= 1 and torch.isfinite(y_hat).all()
    assert not z.is_inference() and not y_hat.is_inference()  # usable as training targets


def test_bad_inputs_are_refused(codec):
    with pytest.raises(InputError, match="channels"):
        codec.decode(torch.zeros(1, codec.latent_channels + 1, 4, 4))
    with pytest.raises(InputError, match="multiples of 4"):
        codec.encode(torch.zeros(1, 3, 30, 32))
    with pytest.raises(InputError, match="chunk_size"):
        codec.decode(torch.zeros(1, codec.latent_channels, 4, 4), chunk_size=0)
    with pytest.raises(InputError, match="rank 5"):
        decode_bracket(codec, torch.zeros(1, codec.latent_channels, 4, 4))


# --- normalisation: the scaling read from the model, applied once, as diffusers' pipelines do ----------------

def test_kl_normalisation_matches_raw_vae_calls():
    codec = DiffusersKLCodec(tiny_kl())
    vae, y = codec.module, smooth_image()
    with torch.no_grad():
        mu = vae.encode(y * 2 - 1).latent_dist.mean
        torch.testing.assert_close(codec.encode(y), (mu - KL_SHIFT) * KL_SCALE)
        z = random_latent(codec)
        expected = ((vae.decode(z / KL_SCALE + KL_SHIFT).sample + 1) / 2).clamp(0, 1)
    torch.testing.assert_close(codec.decode(z), expected)


def test_kl_without_shift_factor_uses_zero_shift():
    codec = DiffusersKLCodec(tiny_kl(shift_factor=None))
    assert codec.shift == 0.0 and codec.scale == KL_SCALE
    z = random_latent(codec)
    torch.testing.assert_close(codec.normalise(codec.denormalise(z)), z)


def test_flux2_normalisation_matches_the_flux2_pipeline():
    codec = Flux2Codec(tiny_flux2())
    vae, y = codec.module, smooth_image()
    bn_mean = vae.bn.running_mean.view(1, -1, 1, 1)
    bn_std = torch.sqrt(vae.bn.running_var.view(1, -1, 1, 1) + vae.config.batch_norm_eps)
    patchify, unpatchify = diffusers.Flux2Pipeline._patchify_latents, diffusers.Flux2Pipeline._unpatchify_latents
    with torch.no_grad():
        mu = vae.encode(y * 2 - 1).latent_dist.mean  # what Flux2Pipeline._encode_vae_image does, then unpatchified
        torch.testing.assert_close(codec.encode(y), unpatchify((patchify(mu) - bn_mean) / bn_std))
        z = random_latent(codec)
        raw = unpatchify(patchify(z) * bn_std + bn_mean)  # Flux2Pipeline.__call__ before vae.decode
        expected = ((vae.decode(raw).sample + 1) / 2).clamp(0, 1)
    torch.testing.assert_close(codec.decode(z), expected)


@pytest.mark.parametrize("shape", [(1, 4, 5, 7), (2, 4, 8, 6)])
def test_flux2_normalisation_inverts_on_odd_grids(shape):
    codec = Flux2Codec(tiny_flux2())
    z = torch.randn(shape)
    torch.testing.assert_close(codec.normalise(codec.denormalise(z)), z)
    assert not torch.allclose(codec.denormalise(z), z)  # the stored statistics are really applied


def test_tiny_normalisation_matches_raw_vae_calls():
    codec = TinyCodec(tiny_taesd())
    vae, y = codec.module, smooth_image()
    with torch.no_grad():
        raw = vae.encode(y * 2 - 1).latents  # diffusers' tiny VAE works in [-1, 1]
        torch.testing.assert_close(codec.encode(y), (raw - TINY_SHIFT) * TINY_SCALE)
        z = random_latent(codec)
        expected = ((vae.decode(z / TINY_SCALE + TINY_SHIFT).sample + 1) / 2).clamp(0, 1)
    torch.testing.assert_close(codec.decode(z), expected)


# --- chunking and brackets ------------------------------------------------------------------------------------

def test_chunked_equals_unchunked(codec):
    z = random_latent(codec, batch=3)
    torch.testing.assert_close(codec.decode(z, chunk_size=1), codec.decode(z, chunk_size=3), rtol=0, atol=1e-5)
    y = smooth_image(batch=3)
    torch.testing.assert_close(codec.encode(y, chunk_size=1), codec.encode(y, chunk_size=2), rtol=0, atol=1e-5)


def test_bracket_helpers_flatten_and_restore(codec):
    z = random_latent(codec, batch=6).unflatten(0, (2, 3))  # [B=2, K=3, C, h, w]
    y = decode_bracket(codec, z, chunk_size=2)
    assert y.shape == (2, 3, 3, 32, 128)
    torch.testing.assert_close(y[1, 2], codec.decode(z[1, 2:3])[0])
    assert encode_bracket(codec, y).shape == z.shape


def test_grad_mode_lets_gradients_through(codec):
    z = random_latent(codec, batch=1).requires_grad_()
    codec.decode(z, grad=True).sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


# --- panorama wrap: the seam at +-180 degrees is an ordinary column --------------------------------------------

def _roll_error(codec, z, shift, panorama):
    """Max |decode(z) - roll_back(decode(roll(z)))| over the pixel columns next to the seam."""
    d = codec.downscale
    y = codec.decode(z, panorama=panorama)
    y_rolled = torch.roll(codec.decode(torch.roll(z, shift, -1), panorama=panorama), -shift * d, -1)
    seam = torch.cat([y[..., :2 * d], y[..., -2 * d:]], -1) - torch.cat([y_rolled[..., :2 * d], y_rolled[..., -2 * d:]], -1)
    return seam.abs().max().item(), (y - y_rolled).abs().max().item()


def test_panorama_decode_is_shift_equivariant_across_the_seam(codec):
    z = random_latent(codec, batch=1, h=8, w=32)
    seam_wrapped, everywhere_wrapped = _roll_error(codec, z, 16, panorama=True)
    seam_plain, _ = _roll_error(codec, z, 16, panorama=False)
    assert everywhere_wrapped < 0.05  # only global statistics (GroupNorm) and the far field see the padding
    assert seam_plain > 5 * seam_wrapped  # without the wrap the border columns differ: the test can fail


def test_panorama_encode_is_shift_equivariant_across_the_seam(codec):
    y = smooth_image(batch=1, h=32, w=128, seed=4)
    d, shift = codec.downscale, 8
    z = codec.encode(y, panorama=True)
    z_rolled = torch.roll(codec.encode(torch.roll(y, shift * d, -1), panorama=True), -shift, -1)
    z_plain = torch.roll(codec.encode(torch.roll(y, shift * d, -1)), -shift, -1)
    wrapped, plain = (z - z_rolled).abs().max().item(), (codec.encode(y) - z_plain).abs().max().item()
    assert wrapped < 0.05 * z.abs().max().item() and plain > 5 * wrapped


# --- latent-space ids and loading -------------------------------------------------------------------------------

@pytest.mark.parametrize("channels, scale, shift, space", [
    (4, 0.18215, None, "sd"), (4, 0.13025, None, "sdxl"), (16, 1.5305, 0.0609, "sd3"),
    (16, 0.3611, 0.1159, "flux1"), (4, 0.5, 0.1, "custom:AutoencoderKL:4:0.5:0.1")])
def test_kl_space_ids_from_config(channels, scale, shift, space):
    vae = diffusers.AutoencoderKL(block_out_channels=(4,), norm_num_groups=2, latent_channels=channels,
                                  scaling_factor=scale, shift_factor=shift)
    assert DiffusersKLCodec(vae).space == space


def test_space_ids_of_other_adapters():
    assert Flux2Codec(tiny_flux2()).space == "custom:AutoencoderKLFlux2:4:2x2"
    assert TinyCodec(tiny_taesd()).space == "custom:AutoencoderTiny:4:2:0.25"
    assert TinyCodec(tiny_taesd(), space="taesd").space == "taesd"


def test_load_codec_from_local_directories(tmp_path):
    vae = tiny_kl()
    vae.save_pretrained(tmp_path / "vae_only")
    vae.save_pretrained(tmp_path / "pipeline" / "vae")
    y = smooth_image(batch=1)
    reference = DiffusersKLCodec(vae).encode(y)
    for path in (tmp_path / "vae_only", tmp_path / "pipeline"):
        codec = load_codec(str(path))
        assert isinstance(codec, DiffusersKLCodec) and codec.space == "custom:AutoencoderKL:4:0.5:0.1"
        torch.testing.assert_close(codec.encode(y), reference)
    tiny = tiny_taesd()
    tiny.save_pretrained(tmp_path / "tiny")
    assert isinstance(load_codec(str(tmp_path / "tiny"), space="taesd"), TinyCodec)


@pytest.mark.parametrize("spec", ["no-such-codec", "/definitely/not/here", "a/b/c", "./missing/dir", "../vae"])
def test_unknown_spec_lists_accepted_forms(spec):
    with pytest.raises(InputError, match="accepted: 'taef2'"):
        load_codec(spec)


def test_taef2_weights_missing_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="TAEF2 weights"):
        load_codec(f"taef2:{tmp_path}")


# --- TAEF2 from ../shared ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def taef2_dir(shared_dir):
    path = shared_dir / "weights" / "taef2"
    if not (path / "taef2_encoder.pth").is_file():
        pytest.skip(f"{path} has no TAEF2 weights")
    return path


@pytest.fixture(scope="module")
def val_panorama(shared_dir):
    """The first val panorama [1, 3, 512, 1024], display-encoded (P99 -> 1, gamma 2.2)."""
    import cv2

    from latenthdr.response import encode

    files = sorted((shared_dir / "data" / "hdri" / "val").glob("*.hdr"))
    if not files:
        pytest.skip("no val HDR panoramas in ../shared")
    hdr = cv2.imread(str(files[0]), cv2.IMREAD_UNCHANGED)[..., ::-1].astype(np.float32)
    hdr = hdr / np.percentile(hdr, 99)
    return encode(torch.from_numpy(np.ascontiguousarray(hdr)).permute(2, 0, 1)[None])


def test_taef2_keys_map_strictly(taef2_dir):
    from latenthdr.models import taef2

    encoder_sd = torch.load(taef2_dir / taef2.ENCODER_FILE, map_location="cpu", weights_only=True)
    decoder_sd = torch.load(taef2_dir / taef2.DECODER_FILE, map_location="cpu", weights_only=True)
    mapped = taef2.taef2_state_dict(encoder_sd, decoder_sd)
    assert set(mapped) == set(taef2.build_taef2().state_dict())  # no missing, no unexpected keys
    assert sum(".pool." in key for key in mapped) == 6 * 4


@pytest.fixture(scope="module")
def taef2_codec(taef2_dir):
    return load_codec(f"taef2:{taef2_dir}")


def test_taef2_reconstructs_a_real_crop(taef2_codec, val_panorama):
    codec = taef2_codec
    assert (codec.space, codec.latent_channels, codec.downscale) == ("taef2", 32, 8)
    y = val_panorama[..., 128:384, 256:512]  # a 256 x 256 crop around the horizon, full resolution
    z = codec.encode(y)
    assert z.shape == (1, 32, 32, 32) and 0.3 < z.std() < 2.0  # README: raw latents have std about 0.9
    psnr = 10 * math.log10(1.0 / ((codec.decode(z) - y) ** 2).mean().item())
    assert psnr > 25, psnr


def test_taef2_panorama_seam_is_continuous(taef2_codec, val_panorama):
    codec = taef2_codec
    y = torch.nn.functional.avg_pool2d(val_panorama, 2)  # 256 x 512: keeps the test fast
    adjacent = (y[..., 1:] - y[..., :-1]).abs().mean().item()
    z = codec.encode(y, panorama=True)
    seams = {}
    for panorama in (False, True):
        y_hat = codec.decode(z, panorama=panorama)
        seams[panorama] = (y_hat[..., 0] - y_hat[..., -1]).abs().mean().item()
    assert seams[True] < 1.3 * adjacent and seams[False] > 1.5 * seams[True], (seams, adjacent)


# --- decoding in windows ----------------------------------------------------------------------------------


def test_tail_radius_covers_the_tiny_decoder_and_kl_vaes_cannot_tile(codec):
    from latenthdr.models.codecs import conv_stack_radius, decode_cells

    z = random_latent(codec, batch=2, h=8, w=24)
    d = codec.downscale
    out = torch.zeros(2, 3, 8 * d, 24 * d)
    cells = torch.zeros(8, 24, dtype=torch.bool)
    cells[2, 5] = True
    if not isinstance(codec, TinyCodec):
        assert codec.tail_radius is None
        with pytest.raises(InputError, match="windows"):
            decode_cells(codec, z, cells, out)
        return
    # after the stem (1/4 grid): 1 conv + 1 block of 3 convs at 1/2 and at 1/1, then the last conv
    tail = codec.module.decoder.layers[codec._split:]
    assert conv_stack_radius(tail) == pytest.approx(4 / 2 + 5 / 4)
    full = codec.decode(z)
    decoded = decode_cells(codec, z, cells, out, tile=4)
    mask = decoded.repeat_interleave(d, 0).repeat_interleave(d, 1)
    torch.testing.assert_close(out[:, :, mask], full[:, :, mask], atol=1e-5, rtol=0)


def test_taef2_windows_match_the_whole_frame_despite_its_pools(taef2_codec, val_panorama):
    """TAEF2's GroupNorm pools see the whole frame: they run in the stem, on the whole grid; the windows then
    decode as the whole frame does (within float rounding)."""
    from latenthdr.models.codecs import decode_cells

    codec = taef2_codec
    assert codec.tail_radius == 9  # ceil(8.125): 3x3 convs at 1/4, 1/2 and 1/1 after the stem
    z = codec.encode(val_panorama[..., 128:256, 256:512])  # 16 x 32 cells
    cells = torch.zeros(16, 32, dtype=torch.bool)
    cells[9, 17] = True
    out = torch.zeros(1, 3, 128, 256)
    decoded = decode_cells(codec, z, cells, out, tile=8)
    mask = decoded.repeat_interleave(8, 0).repeat_interleave(8, 1)
    torch.testing.assert_close(out[:, :, mask], codec.decode(z)[:, :, mask], atol=2e-4, rtol=0)


def test_taef2_encodes_in_bands_exactly_like_the_whole_image(taef2_codec, monkeypatch):
    """TAEF2's encoder front (up to its GroupNorm pools) runs in bands of rows with its receptive radius as margin,
    the pools on the whole latent grid: the same latents as one pass, bit for bit."""
    from latenthdr.models import codecs

    assert taef2_codec.encode_radius_px == 65
    y = torch.rand(1, 3, 64, 128, generator=torch.Generator().manual_seed(8))
    whole = taef2_codec.encode(y, panorama=True)
    monkeypatch.setattr(codecs, "ENCODE_BAND_PIXELS", 128 * 16)
    assert torch.equal(taef2_codec.encode(y, panorama=True), whole)
