"""The exposure head (METHOD.md "Exposure head"): identity at init, batching, panorama wrap, weights I/O."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from latenthdr.errors import InputError
from latenthdr.exposure import DEFAULT_LADDER, parse_ev_ladder
from latenthdr.models.head import (
    HEAD_FORMAT, HEAD_PRESETS, ExposureHead, HeadConfig, load_head, read_head_metadata, save_head)

C = 4


def tiny_config(**overrides) -> HeadConfig:
    return HeadConfig.from_preset("tiny", latent_channels=C, space="test-space", **overrides)


def perturbed_head(config: HeadConfig | None = None, seed: int = 0) -> ExposureHead:
    """A head whose zero-initialised layers are made non-zero, so it is no longer the identity."""
    head = ExposureHead(config or tiny_config())
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in head.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    return head.eval()


def latent(batch=2, h=8, w=16, seed=0):
    return torch.randn(batch, C, h, w, generator=torch.Generator().manual_seed(seed))


# --- identity at init (METHOD.md "our additions") --------------------------------------------------------------

@given(evs=st.lists(st.floats(-12, 12, allow_nan=False), min_size=1, max_size=5), seed=st.integers(0, 99))
@settings(max_examples=15, deadline=None)
def test_identity_at_init_is_exact(evs, seed):
    torch.manual_seed(seed)
    head = ExposureHead(tiny_config())
    z0 = latent(seed=seed)
    out = head(z0, evs)
    assert out.shape == (2, len(evs), C, 8, 16)
    assert torch.equal(out, z0[:, None].expand_as(out))


def test_perturbed_head_is_not_the_identity_and_depends_on_ev():
    head, z0 = perturbed_head(), latent()
    out = head(z0, [-2.0, 0.0, 2.0])
    assert not torch.allclose(out[:, 0], z0) and not torch.allclose(out[:, 0], out[:, 2])


def test_integer_evs_get_distinct_embeddings():
    """METHOD.md warns that sin/cos(2 pi f e) with integer f is constant over integer EVs."""
    head = perturbed_head()
    ladder = parse_ev_ladder(DEFAULT_LADDER)
    psi = head.embed(torch.tensor(ladder, dtype=torch.float32))
    distances = torch.cdist(psi, psi) + torch.eye(len(ladder)) * 1e9
    assert distances.min() > 1e-3


# --- one batched pass ---------------------------------------------------------------------------------------------

def test_batched_over_evs_equals_one_by_one():
    head, z0, evs = perturbed_head(), latent(), [-7.0, -2.5, 0.0, 1.0, 5.0]
    batched = head(z0, evs)
    singles = torch.cat([head(z0, [e]) for e in evs], dim=1)
    torch.testing.assert_close(batched, singles, rtol=0, atol=1e-5)


def test_per_sample_ladders_and_tensor_evs():
    head, z0 = perturbed_head(), latent()
    evs = torch.tensor([[-1.0, 2.0], [3.0, 0.5]])
    out = head(z0, evs)
    torch.testing.assert_close(out[1], head(z0[1:], [3.0, 0.5])[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(out[0], head(z0[:1], torch.tensor([-1.0, 2.0]))[0], rtol=0, atol=1e-5)


@pytest.mark.parametrize("h, w", [(7, 13), (5, 6), (1, 1), (12, 24)])
def test_any_latent_size_gives_the_input_size(h, w):
    head = perturbed_head()
    out = head(latent(1, h, w), [0.0, 1.0])
    assert out.shape == (1, 2, C, h, w) and torch.isfinite(out).all()
    out_pano = head(latent(1, h, w), [0.0], panorama=True)
    assert out_pano.shape == (1, 1, C, h, w)


# --- panorama: horizontal circular padding ------------------------------------------------------------------------

@pytest.mark.parametrize("shift", [4, 8, -12])
def test_panorama_is_equivariant_to_horizontal_rolls(shift):
    head, z0, evs = perturbed_head(), latent(1, 8, 32), [-3.0, 2.0]
    out = head(z0, evs, panorama=True)
    rolled = head(torch.roll(z0, shift, -1), evs, panorama=True)
    torch.testing.assert_close(rolled, torch.roll(out, shift, -1), rtol=0, atol=1e-5)
    plain = head(torch.roll(z0, shift, -1), evs, panorama=False)
    assert (plain - torch.roll(head(z0, evs), shift, -1)).abs().max() > 1e-2  # zero padding is not equivariant


# --- config -------------------------------------------------------------------------------------------------------

def test_config_round_trips_and_rejects_unknown_keys():
    config = tiny_config(ev_min=-3.0, ev_max=3.0)
    assert HeadConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(InputError, match="unknown keys \\['depth'\\]"):
        HeadConfig.from_dict({**config.to_dict(), "depth": 3})
    with pytest.raises(InputError, match="required"):
        HeadConfig.from_dict({"latent_channels": 4})
    with pytest.raises(InputError, match="preset"):
        HeadConfig.from_preset("huge", 4, "x")


@pytest.mark.parametrize("overrides, argument", [
    ({"ev_min": 5.0, "ev_max": -7.0}, "ev_max"), ({"widths": (8, 10, 32)}, "widths"),
    ({"latent_channels": 0}, "latent_channels"), ({"space": ""}, "space"), ({"fourier_frequencies": -1}, "fourier")])
def test_config_validates_values(overrides, argument):
    with pytest.raises(InputError, match=argument):
        HeadConfig.from_dict({**tiny_config().to_dict(), **overrides})


def test_frozen_config():
    with pytest.raises(Exception):
        tiny_config().latent_channels = 8


@pytest.mark.parametrize("preset, low, high", [("tiny", 3e4, 1e5), ("small", 1.5e5, 4e5), ("base", 6e5, 1.1e6),
                                               ("large", 1.1e6, 1.6e6), ("wide", 1.9e6, 2.6e6)])
def test_preset_parameter_counts_for_32_channels(preset, low, high):
    head = ExposureHead(HeadConfig.from_preset(preset, 32, "taef2"))
    assert low < sum(p.numel() for p in head.parameters()) < high
    assert set(HEAD_PRESETS) == {"tiny", "small", "base", "large", "wide"}


# --- inputs -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("evs", [[], [float("nan")], torch.zeros(3, 2), [[1.0]]])
def test_bad_evs_are_refused(evs):
    with pytest.raises(InputError, match="evs"):
        ExposureHead(tiny_config())(latent(), evs)


def test_wrong_latent_channels_are_refused():
    with pytest.raises(InputError, match="test-space"):
        ExposureHead(tiny_config())(torch.zeros(1, C + 1, 4, 4), [0.0])


# --- weights I/O --------------------------------------------------------------------------------------------------

def test_save_load_round_trip(tmp_path):
    head = perturbed_head()
    path = save_head(head, tmp_path / "head.safetensors", extra_metadata={"steps": 10, "data": "hdri/train"})
    loaded = load_head(path, expected_space="test-space")
    assert loaded.config == head.config
    z0, evs = latent(), [-1.0, 0.0, 3.0]
    assert torch.equal(loaded(z0, evs), head(z0, evs))
    metadata = read_head_metadata(path)
    assert metadata["format"] == HEAD_FORMAT and metadata["space"] == "test-space" and metadata["steps"] == "10"
    assert not list(tmp_path.glob(".*tmp"))  # the atomic write left no temporary file


def test_wrong_space_is_refused(tmp_path):
    path = save_head(ExposureHead(tiny_config()), tmp_path / "head.safetensors")
    with pytest.raises(InputError, match="trained for latent space 'test-space' cannot read latents of codec 'flux1'"):
        load_head(path, expected_space="flux1")


def test_files_that_are_not_heads_are_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"), metadata={"format": "pt"})
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    for name in ("other.safetensors", "junk.safetensors", "missing.safetensors"):
        with pytest.raises(InputError, match="head"):
            load_head(tmp_path / name)
    with pytest.raises(InputError, match="reserved"):
        save_head(ExposureHead(tiny_config()), tmp_path / "h.safetensors", extra_metadata={"space": "x"})


def test_low_precision_parameters_keep_the_input_dtype():
    head = perturbed_head()
    z0, evs = latent(), [-2.0, 1.0]
    reference = head(z0, evs)
    out = head.to(torch.bfloat16)(z0, evs)
    assert out.dtype == torch.float32
    assert (out - reference).abs().max() < 0.1 * reference.abs().max()


# --- unseen maps (HeadConfig.unseen_maps) --------------------------------------------------------------------------

def unseen_maps(batch=2, h=8, w=16, seed=1):
    return torch.rand(batch, 2, h, w, generator=torch.Generator().manual_seed(seed))


def test_a_head_with_unseen_maps_starts_as_the_identity_and_reads_them():
    z0, maps = latent(), unseen_maps()
    head = ExposureHead(tiny_config(unseen_maps=True)).eval()
    assert head.conv_in.in_channels == C + 2
    assert torch.equal(head(z0, [-3.0, 0.0, 2.0], unseen=maps), z0[:, None].expand(-1, 3, -1, -1, -1))
    head = perturbed_head(tiny_config(unseen_maps=True))
    a, b = head(z0, [-3.0, 2.0], unseen=maps), head(z0, [-3.0, 2.0], unseen=torch.zeros_like(maps))
    assert (a - b).abs().max() > 1e-3  # the maps change the prediction
    torch.testing.assert_close(head(z0, [-3.0, 2.0], unseen=maps)[1:], head(z0[1:], [-3.0, 2.0], unseen=maps[1:]))


def test_unseen_maps_are_required_exactly_when_the_head_reads_them(tmp_path):
    z0 = latent()
    with pytest.raises(InputError, match="unseen"):
        ExposureHead(tiny_config(unseen_maps=True))(z0, [0.0])
    with pytest.raises(InputError, match="unseen"):
        ExposureHead(tiny_config(unseen_maps=True))(z0, [0.0], unseen=unseen_maps(h=4))
    with pytest.raises(InputError, match="unseen"):
        ExposureHead(tiny_config())(z0, [0.0], unseen=unseen_maps())
    with pytest.raises(InputError, match="unseen_maps"):
        tiny_config(unseen_maps=1)
    head = perturbed_head(tiny_config(unseen_maps=True))
    save_head(head, tmp_path / "h.safetensors")
    loaded = load_head(tmp_path / "h.safetensors")
    assert loaded.config.unseen_maps
    assert torch.equal(loaded(z0, [-1.0], unseen=unseen_maps()), head(z0, [-1.0], unseen=unseen_maps()))


# --- the EV-0 frame as an input (HeadConfig.frame_channels) --------------------------------------------------------

def ev0_frame(batch=2, h=8, w=16, patch=2, seed=2):
    return torch.rand(batch, 3, h * patch, w * patch, generator=torch.Generator().manual_seed(seed))


def frame_config(**overrides) -> HeadConfig:
    return tiny_config(frame_channels=8, frame_patch=2, **overrides)


def test_a_head_that_reads_the_frame_starts_as_the_identity_and_reads_every_pixel():
    z0, frame = latent(), ev0_frame()
    head = ExposureHead(frame_config()).eval()
    assert head.conv_in.in_channels == C + 8 and head.frame_stem.embed.in_channels == 3 * 2 * 2
    assert torch.equal(head(z0, [-3.0, 0.0, 2.0], frame=frame), z0[:, None].expand(-1, 3, -1, -1, -1))
    head = perturbed_head(frame_config())
    moved = frame.clone()
    moved[:, :, 5, 7] += 0.2  # one pixel of one cell
    a, b = head(z0, [-3.0, 2.0], frame=frame), head(z0, [-3.0, 2.0], frame=moved)
    assert (a - b)[..., 2, 3].abs().max() > 1e-4  # its cell's prediction changes
    torch.testing.assert_close(a[1:], head(z0[1:], [-3.0, 2.0], frame=frame[1:]))  # batched == one by one


def test_a_frame_reading_panorama_head_wraps_the_frame_too():
    """Rolling a panorama by 4 latent cells (the U-Net's coarsest step) rolls the prediction: the stem pads
    circularly as well."""
    z0, frame = latent(batch=1), ev0_frame(batch=1)
    head = perturbed_head(frame_config())
    out = head(z0, [-2.0, 3.0], panorama=True, frame=frame)
    rolled = head(z0.roll(4, dims=-1), [-2.0, 3.0], panorama=True, frame=frame.roll(8, dims=-1))
    torch.testing.assert_close(rolled, out.roll(4, dims=-1), atol=1e-5, rtol=0)
    plain = head(z0.roll(4, dims=-1), [-2.0, 3.0], frame=frame.roll(8, dims=-1))
    assert (plain - head(z0, [-2.0, 3.0], frame=frame).roll(4, dims=-1)).abs().max() > 1e-2


def test_the_frame_is_required_exactly_when_the_head_reads_it(tmp_path):
    z0 = latent()
    with pytest.raises(InputError, match="frame"):
        ExposureHead(frame_config())(z0, [0.0])
    with pytest.raises(InputError, match="frame"):
        ExposureHead(frame_config())(z0, [0.0], frame=ev0_frame(patch=1))  # not z0's size times the patch
    with pytest.raises(InputError, match="frame"):
        ExposureHead(tiny_config())(z0, [0.0], frame=ev0_frame())
    for bad in ({"frame_channels": -1}, {"frame_channels": True}, {"frame_patch": 0}):
        with pytest.raises(InputError, match="frame_"):
            tiny_config(**bad)
    head = perturbed_head(frame_config(unseen_maps=True))
    save_head(head, tmp_path / "h.safetensors")
    loaded = load_head(tmp_path / "h.safetensors")
    assert (loaded.config.frame_channels, loaded.config.frame_patch) == (8, 2)
    side = {"frame": ev0_frame(), "unseen": unseen_maps()}
    assert torch.equal(loaded(z0, [-1.0], **side), head(z0, [-1.0], **side))


# --- the no-FiLM ablation (EV features as input channels) ---------------------------------------------------------

def test_the_no_film_head_has_no_modulation_and_starts_as_the_identity():
    config = tiny_config(ev_conditioning="input")
    head = ExposureHead(config)
    assert not any("film" in name for name, _ in head.named_parameters())
    assert head.embed.mlp is None and head.conv_in.in_channels == C + head.embed.n_features
    z0 = latent()
    out = head(z0, [-3.0, 0.0, 2.0])
    assert torch.equal(out, z0[:, None].expand_as(out))


def test_the_no_film_head_reads_the_ev_batches_and_wraps_like_the_film_head(tmp_path):
    head, z0, evs = perturbed_head(tiny_config(ev_conditioning="input")), latent(1, 8, 32), [-7.0, -2.5, 0.0, 5.0]
    out = head(z0, evs, panorama=True)
    assert (out[:, 0] - out[:, 3]).abs().max() > 1e-2  # the EV reaches the output through the input channels
    singles = torch.cat([head(z0, [e], panorama=True) for e in evs], dim=1)
    torch.testing.assert_close(out, singles, rtol=0, atol=1e-5)
    torch.testing.assert_close(head(torch.roll(z0, 8, -1), evs, panorama=True), torch.roll(out, 8, -1),
                               rtol=0, atol=1e-5)
    loaded = load_head(save_head(head, tmp_path / "head.safetensors"), expected_space="test-space")
    assert loaded.config.ev_conditioning == "input" and torch.equal(loaded(z0, evs, panorama=True), out)


def test_an_unknown_ev_conditioning_is_refused():
    with pytest.raises(InputError, match="ev_conditioning.*accepted: film, input"):
        tiny_config(ev_conditioning="concat")
