"""Image-to-HDR baselines (latenthdr.baselines): each against a property its paper states, the shared contract,
and one real photograph through the l2h benchmark's input-making (skipped when ../shared is absent)."""

from __future__ import annotations

import math

import pytest
import torch

from latenthdr import baselines, exposure, metrics, response
from latenthdr.baselines import akyuz2007, expandnet, highlight_boost, huo2014
from latenthdr.bench import l2h
from latenthdr.errors import InputError

EVS = exposure.parse_ev_ladder("-7:5:1")
NOT_ABSURD_PU21_DB = 10.0  # a reconstruction scoring below this on a photograph is broken, not merely poor
NOT_ABSURD_CLIPPED_STOPS = 4.0  # nor one off by more than this over the clipped pixels (RMS, stops)


def ramp_ldr(h: int = 8, w: int = 64) -> torch.Tensor:
    """A grey horizontal ramp [3, h, w], display values 0 ... 1 left to right, 8-bit."""
    row = torch.linspace(0.0, 1.0, w)
    return response.quantize(row.expand(3, h, w).clone())


def scene(seed: int = 0, size: int = 48) -> torch.Tensor:
    """A small anchored HDR scene [3, size, size] with texture, a dim disc and a bright one, 3% clipped."""
    g = torch.Generator().manual_seed(seed)
    H = torch.exp2(torch.randn(3, size, size, generator=g) * 0.3 - 2.0)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    H = H + 3.0 * ((yy - 12) ** 2 + (xx - 12) ** 2 < 16) + 40.0 * ((yy - 34) ** 2 + (xx - 34) ** 2 < 9)
    return exposure.anchor(H, clipped_fraction=0.03)[0]


def input_of(H: torch.Tensor) -> torch.Tensor:
    return exposure.synthesize_bracket(H, [0.0])[0]


# -- the floor and the ceiling: the benchmark's own methods, through the registry ------------------------------
def test_input_is_the_benchmarks_linearised_input():
    ldr = input_of(scene())
    assert torch.equal(baselines.get("input")(ldr), l2h.linearised_input(ldr, EVS))
    assert torch.equal(baselines.get("input")(ldr), response.decode(ldr, "gamma2.2"))


def test_oracle_is_the_benchmarks_oracle_and_needs_the_reference():
    case = l2h.make_case("scene", scene(), 0.03)
    via_registry = baselines.as_reconstructor(baselines.get("oracle"))(case, EVS)
    assert torch.equal(via_registry, l2h.oracle(case, EVS))
    seen = (case.ldr < exposure.CLIPPED_DISPLAY).all(dim=0)  # every unclipped pixel is back within 8-bit steps
    assert (via_registry / case.ref).log2().abs()[:, seen].median() < 0.01
    with pytest.raises(InputError, match="reference"):
        baselines.get("oracle")(case.ldr)


# -- Akyuz et al. 2007 -----------------------------------------------------------------------------------------
def test_akyuz_expansion_is_monotone_and_spans_zero_to_k():
    Y = torch.linspace(0.01, 0.9, 200, dtype=torch.float64)
    for gamma in (1.0, 2.2, 0.45):
        L = akyuz2007.luminance_Akyuz2007(Y, k=3000.0, gamma=gamma)
        assert (L.diff() >= 0).all()
        assert L[-1].item() == pytest.approx(3000.0) and L[0].item() == pytest.approx(0.0)
    L = akyuz2007.luminance_Akyuz2007(Y, gamma=1.0)
    assert torch.allclose(L.diff(), L.diff()[0].expand_as(L.diff()), rtol=1e-6)  # gamma 1: linear scaling
    assert torch.equal(akyuz2007.luminance_Akyuz2007(torch.full((4,), 0.3)), torch.full((4,), 3000.0).double())


def test_akyuz_linear_expansion_of_an_image_with_black_is_the_linearised_input():
    ldr = input_of(scene())
    ldr[:, 0, 0] = 0.0  # Y_min = 0: linear scaling only, which the scale match undoes
    assert torch.allclose(baselines.get("akyuz2007")(ldr), baselines.get("input")(ldr), rtol=1e-5, atol=1e-7)


# -- Huo et al. 2014 -------------------------------------------------------------------------------------------
def test_bilateral_grid_keeps_flat_images_and_edges():
    flat = torch.full((40, 60), 0.4)
    assert torch.allclose(huo2014.bilateral_grid(flat, 16.0, 0.3), flat, atol=1e-6)
    step = torch.cat([torch.full((40, 30), 0.1), torch.full((40, 30), 0.9)], dim=1)
    out = huo2014.bilateral_grid(step, 10.0, 0.1)
    assert (out[:, :30] - 0.1).abs().max() < 0.02 and (out[:, 30:] - 0.9).abs().max() < 0.02  # no bleed


def test_huo_expansion_is_monotone_and_widens_the_range():
    L_l = torch.linspace(0.001, 1.0, 300)
    for surround in (torch.full_like(L_l, 0.2), L_l):
        assert (huo2014.luminance_Huo2014(L_l, surround).diff() > 0).all()
    ldr = ramp_ldr()
    out = baselines.get("huo2014")(ldr)
    Y = response.luminance(out, channel_axis=-3)[4]  # one row of the ramp
    assert (Y.diff() >= -1e-6).all()
    linear = baselines.get("input")(ldr)
    assert metrics.stops(out) > metrics.stops(linear) + 0.5  # bright surrounds are expanded more


# -- HDRCNN-style highlight boost ------------------------------------------------------------------------------
def test_hdrcnn_blend_weight_golden_values():
    D = torch.tensor([0.5, 0.95, 0.975, 1.0]).view(1, 4, 1).expand(3, 4, 1)
    alpha = highlight_boost.blend_weight_Eilertsen2017(D)  # max(0, max_c D - 0.95) / 0.05
    assert torch.allclose(alpha.flatten(), torch.tensor([0.0, 0.0, 0.5, 1.0]), atol=1e-6)


def test_highlight_boost_keeps_unclipped_pixels_and_raises_bigger_regions_more():
    size = 256  # a_0 = 1e-4 of the image: 6.6 px
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    H = torch.full((3, size, size), 0.2)
    centres = {"1 px": (40, 40, 0), "5 px": (40, 120, 1), "113 px": (150, 150, 36)}  # (y, x, radius^2)
    for y, x, r2 in centres.values():
        H[:, (yy - y) ** 2 + (xx - x) ** 2 <= r2] = 4.0
    ldr = input_of(H)
    out, linear = baselines.get("highlight-boost")(ldr), baselines.get("input")(ldr)
    unclipped = ldr.amax(dim=0) <= highlight_boost.TAU
    assert torch.equal(out[:, unclipped], linear[:, unclipped])
    assert (out >= linear).all()
    at_centre = [out[0, y, x].item() for y, x, _ in centres.values()]
    assert linear[0, 40, 40] < at_centre[0] < at_centre[1] < at_centre[2]
    assert out.max() <= 2.0**highlight_boost.MAX_BOOST_STOPS + 1e-6


# -- ExpandNet ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def expandnet_weights():
    try:
        return expandnet.find_expandnet_weights()
    except InputError as error:
        pytest.skip(f"ExpandNet weights absent: {error}")


def test_expandnet_has_the_released_size():
    assert sum(p.numel() for p in expandnet.ExpandNet().parameters()) == 456_899  # weights README


def test_expandnet_missing_weights_name_the_path(tmp_path):
    missing = tmp_path / "weights.pth"
    with pytest.raises(InputError, match=str(missing)) as caught:
        expandnet.find_expandnet_weights(missing)
    assert "\n" not in str(caught.value)


def test_expandnet_output_is_in_range_and_grows_along_a_ramp(expandnet_weights):
    net = expandnet.load_expandnet(expandnet_weights)
    ldr = ramp_ldr(16, 96)
    with torch.inference_mode():
        raw = net(expandnet.map_range(ldr[None]))  # the sigmoid's (0, 1)
    assert raw.min() > 0 and raw.max() < 1
    out = baselines.get("expandnet")(ldr)
    assert torch.isfinite(out).all() and (out >= 0).all()
    Y = response.luminance(out, channel_axis=-3)[8]
    ranks = torch.argsort(torch.argsort(Y)).double()  # Spearman correlation with position along the ramp
    assert torch.corrcoef(torch.stack([ranks, torch.arange(96.0, dtype=torch.float64)]))[0, 1] > 0.9


def test_expandnet_tiles_give_the_whole_image_result(expandnet_weights):
    net = expandnet.load_expandnet(expandnet_weights)
    x = expandnet.map_range(input_of(scene(size=40))[None])
    with torch.inference_mode():
        assert torch.allclose(net(x, tile_px=16), net(x), atol=1e-5)


# -- contract -----------------------------------------------------------------------------------------------------
def runnable() -> list[str]:
    names = [n for n, b in baselines.BASELINES.items() if not b.needs_reference]
    try:
        expandnet.find_expandnet_weights()
    except InputError:
        names.remove("expandnet")
    return names


@pytest.mark.parametrize("name", [n for n, b in baselines.BASELINES.items() if not b.needs_reference])
def test_contract_batch_shape_dtype_and_bad_input(name):
    if name not in runnable():
        pytest.skip(f"{name}: its weights are absent")
    ldr = torch.stack([input_of(scene(0, 32)), input_of(scene(1, 32))])  # [2, 3, 32, 32]
    out = baselines.get(name)(ldr)
    assert out.shape == ldr.shape and out.dtype == torch.float32
    assert torch.isfinite(out).all() and (out >= 0).all()
    assert torch.allclose(out[1], baselines.get(name)(ldr[1]), atol=1e-6)  # per image, whatever the batch
    with pytest.raises(InputError, match="ldr"):
        baselines.get(name)(ldr.clone().fill_(math.nan))
    with pytest.raises(InputError, match="ldr"):
        baselines.get(name)(ldr * 2.0)


def test_registry_rejects_unknown_names():
    with pytest.raises(InputError, match="accepted"):
        baselines.get("nope")


# -- a real photograph ----------------------------------------------------------------------------------------------
def test_baselines_on_a_real_photograph(shared_dir):
    from latenthdr.cli.bench import load_references

    name, H = next(load_references(shared_dir / "data" / "photos" / "val", 0, 1, max_side=160))  # the first, small
    case = l2h.make_case(name, H, 0.03)
    base = l2h.score(l2h.linearised_input(case.ldr, EVS), case)
    for baseline in runnable():
        hdr = baselines.as_reconstructor(baselines.get(baseline))(case, EVS)
        assert hdr.shape == case.ldr.shape and torch.isfinite(hdr).all() and (hdr >= 0).all()
        s = l2h.score(hdr, case)
        print(f"{name} {baseline}: PU21-PSNR {s['pu21_psnr']:.2f} dB ({s['pu21_psnr'] - base['pu21_psnr']:+.2f} vs "
              f"input), clipped RMS {s['clipped_rms_stops']:.3f} stops (input {base['clipped_rms_stops']:.3f})")
        assert s["pu21_psnr"] > NOT_ABSURD_PU21_DB and s["clipped_rms_stops"] < NOT_ABSURD_CLIPPED_STOPS
