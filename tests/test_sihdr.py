"""`latenthdr bench sihdr` (bench/sihdr.py) and the CRF correction of Hanji et al. 2022 (bench/crf.py), on a tiny
synthetic folder in the SI-HDR layout made here (a tiny random codec; no hub, no shared)."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from latenthdr import exposure, io, metrics, response
from latenthdr.bench import crf, sihdr
from latenthdr.cli import main
from latenthdr.errors import InputError

NAMES = ("000", "001", "002")


def scene(seed: int, h=32, w=48) -> torch.Tensor:
    """Smooth coloured log-normal radiance on an arbitrary relative scale, as SI-HDR's references are."""
    g = torch.Generator().manual_seed(seed)
    R = torch.exp(1.5 * torch.randn(3, h, w, generator=g))
    return torch.nn.functional.avg_pool2d(R[None], 5, 1, 2)[0] * (10.0 + seed)


def make_sihdr(root, names=NAMES):
    """reference/*.exr, input/clip_9X/*.png (the SI-HDR-like input: clip, gamma 2.2, 8 bits) and two fake
    methods: ``copy`` (the reference itself) and ``linear`` (the linearised input)."""
    for name in names:
        H = scene(int(name))
        io.write_exr(root / "reference" / f"{name}.exr", io.to_numpy(H))
        for level in sihdr.LEVELS:
            ref, _ = exposure.anchor(H, clipped_fraction=sihdr.clip_fraction(level))
            ldr = exposure.synthesize_bracket(ref, [0.0])[0]
            io.write_png(root / "input" / level / f"{name}.png", io.to_numpy(ldr))
            io.write_exr(root / "reconstructions" / "copy" / level / f"{name}.exr", io.to_numpy(H))
            io.write_exr(root / "reconstructions" / "linear" / level / f"{name}.exr",
                         io.to_numpy(response.decode(ldr)))


@pytest.fixture
def folder(tmp_path):
    for sub in ["reference"] + [f"{d}/{level}" for d in ("input", "reconstructions/copy", "reconstructions/linear")
                                for level in sihdr.LEVELS]:
        (tmp_path / "SI-HDR" / sub).mkdir(parents=True)
    make_sihdr(tmp_path / "SI-HDR")
    return tmp_path / "SI-HDR"


# -- the CRF correction -------------------------------------------------------------------------------------------
def test_pq_and_luv_round_trips():
    L = torch.logspace(math.log10(0.005), 4, 200, dtype=torch.float64)
    torch.testing.assert_close(crf.pq_decode(crf.pq_encode(L)), L, rtol=1e-9, atol=0)
    assert crf.pq_encode(torch.tensor(1e4, dtype=torch.float64)).item() == pytest.approx(1.0, abs=1e-12)
    rgb = scene(4).double().reshape(3, -1).T
    torch.testing.assert_close(crf.luv_to_rgb(crf.rgb_to_luv(rgb)), rgb, rtol=1e-9, atol=1e-9)
    Y = crf.rgb_to_luv(rgb)[:, 0]
    torch.testing.assert_close(Y, rgb @ torch.tensor(crf.RGB_TO_XYZ[1], dtype=torch.float64))


def test_design_matrix_has_the_reference_codes_columns():
    x = torch.tensor([[2.0, 3.0]], dtype=torch.float64)
    # lin_matrix(I, 3) for two channels: [x^3, x^2, x1 x2, x, 1]
    assert crf.design_matrix(x, 3).tolist() == [[8.0, 27.0, 4.0, 9.0, 6.0, 2.0, 3.0, 1.0]]
    assert crf.design_matrix(x[:, :1], 1).tolist() == [[2.0, 1.0]]


def test_crf_correction_keeps_a_perfect_reconstruction_and_undoes_a_tone_curve():
    ref = scene(1).double()
    ref = ref * 4000 / ref.max()  # absolute, as after the SI-HDR peak mapping
    torch.testing.assert_close(crf.crf_correction_Hanji2022(ref, ref), ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(crf.gamma_correction(ref, ref), ref, rtol=1e-9, atol=1e-9)
    Y = response.luminance(ref, channel_axis=0)
    toned = ref * (0.5 * Y.pow(0.8) / Y)  # a gamma and a scale on luminance, chromaticity kept
    psnr = {name: metrics.pu21_psnr(fix, ref, peak_nits=4000) for name, fix in (
        ("none", toned), ("hanji2022", crf.correct(toned, ref)), ("gamma", crf.correct(toned, ref, "gamma")))}
    assert psnr["hanji2022"] > psnr["none"] + 10 and psnr["gamma"] > 80  # the gamma model undoes it exactly
    assert (crf.correct(toned, ref) >= 0).all()
    with pytest.raises(InputError, match="crf"):
        crf.correct(toned, ref, "emor")


def test_score_aligns_the_scale_and_peak_maps():
    ref = scene(2)
    ldr = exposure.synthesize_bracket(exposure.anchor(ref, clipped_fraction=0.05)[0], [0.0])[0]
    same = sihdr.score(ref, ref, ldr)
    assert same["pu21_psnr"] == math.inf and same["pu21_ssim"] == pytest.approx(1.0)
    assert same["pu21_psnr_crf"] > 60 and same["align_scale"] == 1.0
    scaled = sihdr.score(ref * 37.0, ref, ldr)  # another relative scale: the alignment removes it
    assert scaled["align_scale"] == pytest.approx(1 / 37.0) and scaled["pu21_psnr"] > 90
    linear = sihdr.score(response.decode(ldr), ref, ldr)
    assert linear["pu21_psnr"] < 60 and linear["pu21_psnr_crf"] < same["pu21_psnr_crf"]


# -- the layout ---------------------------------------------------------------------------------------------------
def test_levels_parse_and_name_their_clipped_fraction():
    assert sihdr.parse_levels("95,97") == sihdr.parse_levels("clip_95, clip_97") == ["clip_95", "clip_97"]
    assert sihdr.clip_fraction("clip_95") == 0.05 and sihdr.clip_fraction("clip_97") == 0.03
    for bad in ("", "0.05", "95,95", "clip_x"):
        with pytest.raises(InputError, match="--clip"):
            sihdr.parse_levels(bad)


def test_read_layout_finds_every_file(folder):
    layout = sihdr.read_layout(folder)
    assert list(layout.references) == list(NAMES) and set(layout.inputs) == set(sihdr.LEVELS)
    assert set(layout.reconstructions) == {"copy", "linear"}
    assert set(layout.reconstructions["copy"]["clip_97"]) == set(NAMES)
    assert list(sihdr.read_layout(folder, ["clip_95"], limit=2).references) == ["000", "001"]
    with pytest.raises(InputError, match="copy: named twice"):  # a method run here with a shipped folder's name
        sihdr.run(layout, ["clip_95"], {"copy": lambda ldr, curve: response.decode(ldr, curve)})


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else None), err


@pytest.mark.parametrize("damage, named", [
    (lambda root: shutil.rmtree(root / "reference"), "no reference/ folder"),
    (lambda root: [p.unlink() for p in (root / "reference").iterdir()], "reference: holds no .exr files"),
    (lambda root: shutil.rmtree(root / "input" / "clip_97"), "clip_97: missing"),
    (lambda root: (root / "input" / "clip_95" / "001.png").unlink(), "clip_95/001.png: missing"),
    (lambda root: (root / "reconstructions" / "copy" / "clip_97" / "002.exr").unlink(),
     "copy/clip_97/002.exr: missing (copy has 2 of the 3"),
    (lambda root: (root / "reconstructions" / "empty").mkdir(), "empty: holds no clip_95/ or clip_97/ folder"),
    (lambda root: shutil.rmtree(root), "not a directory"),
])
def test_a_bad_layout_gives_one_line_naming_what_is_missing(folder, capsys, damage, named):
    damage(folder)
    code, _, err = run(capsys, "bench", "sihdr", folder, "--no-ours")
    assert code == 2 and named in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 and ": error: PATH: " in err, err


# -- the command -----------------------------------------------------------------------------------------------
def test_bench_sihdr_scores_every_method(folder, tiny_models, tmp_path, capsys):
    code, report, err = run(capsys, "bench", "sihdr", folder, "--codec", tiny_models / "vae", "--head",
                            tiny_models / "head.safetensors", "--evs", "-4:2:2", "--json", tmp_path / "r.json",
                            "--markdown", tmp_path / "r.md")
    assert code == 0, err
    assert report["methods"] == ["input", "latenthdr", "copy", "linear"] and report["images"] == 3
    assert report["levels"] == ["clip_95", "clip_97"] and report["crf"] == "hanji2022" and report["peak_nits"] == 4000
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert len(rows) == 3 * 2 * 4
    summary = {(e["level"], e["method"]): e for e in sihdr.summarise(
        [{**r, **{k: math.inf for k in ("pu21_psnr",) if r[k] is None}} for r in rows])}  # JSON has no inf
    for level in sihdr.LEVELS:
        by_method = {m: summary[(level, m)] for m in report["methods"]}
        assert by_method["copy"]["pu21_psnr"] == math.inf and by_method["copy"]["pu21_ssim"] == pytest.approx(1.0)
        for key in ("pu21_psnr_crf", "pu21_ssim_crf", "pu21_ssim"):  # the reference itself scores highest
            assert by_method["copy"][key] == max(e[key] for e in by_method.values()), (level, key)
        for key in ("pu21_psnr", "pu21_psnr_crf", "pu21_ssim", "stops"):  # read back from EXR = computed here
            assert by_method["linear"][key] == pytest.approx(by_method["input"][key], rel=1e-6), (level, key)
        assert by_method["input"]["psnr_gain_db"] == 0.0 and by_method["latenthdr"]["n"] == 3
    markdown = (tmp_path / "r.md").read_text()
    assert "| clip_95 | copy | 3 |" in markdown and "| clip_97 | latenthdr | 3 |" in markdown
    assert "not significant" in markdown
    assert "decode" in report["pipeline_seconds"] and report["models"]["merge"] == "input-preserving"
    code, shipped, err = run(capsys, "bench", "sihdr", folder, "--no-ours", "--methods", "copy", "--clip", "97",
                             "--crf", "gamma", "--limit", "2", "--no-ssim", "--markdown", tmp_path / "s.md")
    assert code == 0, err
    assert shipped["methods"] == ["input", "copy"] and shipped["images"] == 2 and shipped["models"] is None
    assert {e["level"] for e in shipped["summary"]} == {"clip_97"} and not shipped["ssim"]
    assert all("pu21_ssim" not in e for e in shipped["summary"]) and "| - | - |" in (tmp_path / "s.md").read_text()
    for bad, flag in ((["--methods", "nope"], "--methods"), (["--clip", "0.05"], "--clip"),
                      (["--limit", "-1"], "--limit"), (["--peak-nits", "0"], "--peak-nits"),
                      (["--device", "warp-drive"], "--device")):
        code, _, err = run(capsys, "bench", "sihdr", folder, "--no-ours", *bad)
        assert code == 2 and flag in err and "Traceback" not in err, (bad, err)
