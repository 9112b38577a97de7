"""Text-to-HDR: LatentHDRPipeline.generate and `latenthdr generate`, with a tiny random prior, a tiny random codec
and an identity head, all made in tmp_path (no hub, no shipped weights, stub text encoder)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from latenthdr import io
from latenthdr.cli import main
from latenthdr.cli.generate import item_seed, parse_shard, slug
from latenthdr.errors import InputError
from latenthdr.models import prior as prior_module
from latenthdr.models.codecs import load_codec
from latenthdr.models.head import ExposureHead, HeadConfig, save_head
from latenthdr.models.prior import EmbeddedPrior, PriorConfig, PriorUNet, save_prior
from latenthdr.pipeline import LatentHDRPipeline
from test_prior import StubText

EVS = "-2:2:2"
K = 3


@pytest.fixture(autouse=True)
def setup(monkeypatch):
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # see tests/test_prior.py
    monkeypatch.setattr("latenthdr.models.text.load_text_encoder", lambda device="cpu": StubText())
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(codec dir, prior file, head file) of one tiny latent space."""
    import diffusers

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    vae = diffusers.AutoencoderTiny(encoder_block_out_channels=(8,) * 4, decoder_block_out_channels=(8,) * 4,
                                    num_encoder_blocks=(1,) * 4, num_decoder_blocks=(1,) * 4, latent_channels=4)
    vae.save_pretrained(root / "codec")
    codec = load_codec(str(root / "codec"))
    model = PriorUNet(PriorConfig.from_preset("test", 4, codec.space, default_steps=3))
    with torch.no_grad():
        for p in model.parameters():
            if torch.count_nonzero(p) == 0:
                p.normal_(0, 0.2)
    save_prior(model, root / "prior.safetensors")
    save_head(ExposureHead(HeadConfig.from_preset("tiny", 4, codec.space)), root / "head.safetensors")
    return {"codec": str(root / "codec"), "prior": str(root / "prior.safetensors"),
            "head": str(root / "head.safetensors"), "space": codec.space}


def flags(models):
    return ["--codec", models["codec"], "--prior", models["prior"], "--head", models["head"], "--evs", EVS]


def pipeline(models) -> LatentHDRPipeline:
    return LatentHDRPipeline.from_pretrained(codec=models["codec"], head=models["head"], scene=models["prior"])


# ------------------------------------------------------------------------------------------- pipeline
def test_pipeline_generate_is_scene_expose_decode_merge(models):
    pipe = pipeline(models)
    out = pipe.generate("a sunny meadow", evs=(-2, 0, 2), panorama=True, height=32, width=64,
                        generator=torch.Generator().manual_seed(0))
    assert out.hdr.shape == (1, 3, 32, 64) and out.brackets.shape == (1, K, 3, 32, 64) and out.panorama
    assert set(out.timings) == {"text_encoding", "diffusion", "head", "decode", "merge"}
    assert out.diffusion_runs == 1 and torch.equal(out.z[:, 1], out.z0)  # identity head: z_e = z0
    assert torch.isfinite(out.hdr).all() and (out.hdr >= 0).all()
    same = pipe(prompt="a sunny meadow", evs=(-2, 0, 2), panorama=True, height=32, width=64,
                generator=torch.Generator().manual_seed(0))
    assert torch.equal(same.hdr, out.hdr)


def test_generated_panoramas_put_the_seam_mid_cell(models):
    """The decoded frames of a generated panorama are rolled left by half a latent cell, so the +-180 degree seam
    (columns W-1 -> 0) is a mid-cell pair of the decoder's output; perspective views and the latents are not."""
    from latenthdr.models.codecs import decode_bracket

    pipe = pipeline(models)
    shift = pipe.seam_shift_px
    assert shift == pipe.codec.downscale // 2 > 0
    out = pipe.generate("a sunny meadow", evs=(-2, 0, 2), panorama=True, height=32, width=64,
                        generator=torch.Generator().manual_seed(0))
    decoded = decode_bracket(pipe.codec, out.z, panorama=True).clamp(0, 1)
    assert out.seam_shift_px == shift and torch.equal(out.brackets, torch.roll(decoded, -shift, dims=-1))
    assert torch.equal(out.hdr, pipe.merge(out.brackets, out.evs, None).hdr)
    flat = pipe.generate("a street", evs=(-2, 0, 2), height=32, width=32, generator=torch.Generator().manual_seed(0))
    assert flat.seam_shift_px == 0
    assert torch.equal(flat.brackets, decode_bracket(pipe.codec, flat.z).clamp(0, 1))


def test_multipass_runs_the_prior_once_per_ev_from_the_same_noise(models, monkeypatch):
    pipe = pipeline(models)
    calls = []
    original = EmbeddedPrior.generate

    def spy(self, prompt, **kwargs):
        calls.append(kwargs["ev"] if "ev" in kwargs else None)
        return original(self, prompt, **kwargs)

    monkeypatch.setattr(EmbeddedPrior, "generate", spy)
    g = torch.Generator().manual_seed(5)
    out = pipe.generate("a street", evs=(-2, 0, 2), height=32, width=32, generator=g, multipass=True)
    assert calls == [-2.0, 0.0, 2.0] and out.diffusion_runs == K and out.timings["head"] == 0.0
    direct = pipe.scene_source.generate("a street", height=32, width=32, ev=2.0,
                                        generator=torch.Generator().manual_seed(5))
    assert torch.allclose(out.z[:, 2], direct, atol=1e-6) and torch.equal(out.z0, out.z[:, 1])


def test_pipeline_refuses_mismatched_or_missing_scene_sources(models):
    pipe = pipeline(models)
    with pytest.raises(InputError, match="image/prompt"):
        pipe(torch.rand(3, 32, 32), prompt="a room")
    no_source = LatentHDRPipeline(pipe.codec, pipe.head)
    with pytest.raises(InputError, match="scene source"):
        no_source.generate("a room")
    other = EmbeddedPrior(PriorUNet(PriorConfig.from_preset("test", 4, "another-space")), StubText())
    with pytest.raises(InputError, match="scene_source"):
        LatentHDRPipeline(pipe.codec, pipe.head, scene_source=other)

    class NoEV:
        space = pipe.codec.space

    with pytest.raises(InputError, match="multipass"):
        LatentHDRPipeline(pipe.codec, pipe.head, scene_source=NoEV()).generate("a room", multipass=True)


# ------------------------------------------------------------------------------------------------ CLI
def test_generate_writes_exr_previews_and_a_sidecar(models, tmp_path, capsys):
    out = tmp_path / "pano.exr"
    code = main(["generate", "a clear sky over sand", "--panorama", "--width", "64", "--seed", "3",
                 "-o", str(out), *flags(models)])
    assert code == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert json.loads(capsys.readouterr().out)["seed"] == 3
    assert {"text_encoding", "diffusion", "head", "decode", "merge", "write", "load_models"} <= set(report["timings_s"])
    assert report["diffusion_runs"] == 1 and report["size"] == [32, 64] and report["evs"] == [-2.0, 0.0, 2.0]
    assert "seam_error" in report and report["models"]["space"] == models["space"]
    image = io.read_image(out)
    assert image.pixels.shape == (32, 64, 3) and np.isfinite(image.pixels).all()
    assert out.with_suffix(".preview.png").is_file() and out.with_suffix(".bracket.png").is_file()
    again = tmp_path / "again.exr"
    assert main(["generate", "a clear sky over sand", "--panorama", "--width", "64", "--seed", "3",
                 "-o", str(again), "--no-previews", *flags(models)]) == 0
    assert np.array_equal(io.read_image(again).pixels, image.pixels)  # the seed decides the output


def test_multipass_flag_records_k_diffusion_runs(models, tmp_path):
    out = tmp_path / "mp.exr"
    assert main(["generate", "a hall", "--width", "32", "--height", "32", "--multipass", "--no-previews",
                 "-o", str(out), *flags(models)]) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["diffusion_runs"] == K and report["multipass"] is True


def write_prompts(tmp_path, n=5):
    lines = ["# a comment", ""] + [f"{'panorama | ' if i % 2 else ''}prompt number {i}" for i in range(n)]
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join(lines))
    return path


def test_prompt_file_shards_reproduce_the_full_run(models, tmp_path):
    prompts = write_prompts(tmp_path)
    base = ["generate", "--prompts", str(prompts), "--width", "64", "--seed", "9", "--no-previews", *flags(models)]
    assert main(base + ["-o", str(tmp_path / "full")]) == 0
    for shard in ("0/2", "1/2"):
        assert main(base + ["-o", str(tmp_path / "sharded"), "--shard", shard]) == 0
    full = sorted(p.name for p in (tmp_path / "full").glob("*.exr"))
    assert full == sorted(p.name for p in (tmp_path / "sharded").glob("*.exr")) and len(full) == 5
    assert full[1] == f"0001-{slug('prompt number 1')}.exr"
    for name in full:
        a, b = (json.loads((tmp_path / d / name).with_suffix(".json").read_text()) for d in ("full", "sharded"))
        assert a["seed"] == b["seed"] == item_seed(9, a["index"]) and a["panorama"] == (a["index"] % 2 == 1)
        assert np.array_equal(io.read_image(tmp_path / "full" / name).pixels,
                              io.read_image(tmp_path / "sharded" / name).pixels)


def test_skip_existing_and_refusing_to_overwrite(models, tmp_path, capsys):
    prompts = write_prompts(tmp_path, 2)
    base = ["generate", "--prompts", str(prompts), "--width", "64", "-o", str(tmp_path / "out"), "--no-previews",
            *flags(models)]
    assert main(base) == 0
    capsys.readouterr()
    assert main(base) == 2 and "exists" in capsys.readouterr().err
    assert main(base + ["--skip-existing"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["written"] == [] and len(summary["skipped"]) == 2


def test_json_prompts_with_their_own_seeds(models, tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps([{"prompt": "a cave", "seed": 42}, "a beach", {"prompt": "a sky", "panorama": True}]))
    assert main(["generate", "--prompts", str(path), "--width", "64", "-o", str(tmp_path / "o"), "--no-previews",
                 *flags(models)]) == 0
    seeds = [json.loads(p.read_text())["seed"] for p in sorted((tmp_path / "o").glob("*.json"))]
    assert seeds == [42, item_seed(0, 1), item_seed(0, 2)]


@pytest.mark.parametrize("extra, flag", [
    (["--shard", "2/2", "--prompts", "P"], "--shard"),
    (["a prompt", "--shard", "0/2"], "--shard"),
    (["a prompt", "--prompts", "P"], "prompt"),
    (["--prompts", "P"], "--output"),  # -o ends in .exr with a prompt list
    (["a prompt", "--backbone", "flux1-dev", "--multipass"], "--multipass"),
    (["a prompt", "--steps", "0"], "--steps"),
    (["a prompt", "--width", "60", "--height", "48"], "width"),
    (["a prompt", "--backbone", "flux1-dev"], "--prior"),
    (["a prompt", "--panorama", "--width", "64", "--height", "64"], "width"),
    (["   "], "prompt"),
])
def test_bad_inputs_exit_2_naming_the_argument(models, tmp_path, capsys, extra, flag):
    prompts = write_prompts(tmp_path, 2)
    extra = [str(prompts) if a == "P" else a for a in extra]
    code = main(["generate", *extra, "-o", str(tmp_path / "x.exr"), *flags(models)])
    assert code == 2 and flag in capsys.readouterr().err


def test_bad_prompt_files_and_a_prior_of_another_space(models, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"prompt": "x", "seed": -1}]))
    assert main(["generate", "--prompts", str(bad), "-o", str(tmp_path / "o"), *flags(models)]) == 2
    assert "--prompts" in capsys.readouterr().err
    other = tmp_path / "other.safetensors"
    save_prior(PriorUNet(PriorConfig.from_preset("test", 4, "another-space")), other)
    code = main(["generate", "a", "-o", str(tmp_path / "x.exr"), "--codec", models["codec"], "--prior", str(other),
                 "--head", models["head"]])
    assert code == 2 and "latent space" in capsys.readouterr().err


def test_dry_run_lists_items_and_generates_nothing(models, tmp_path, capsys):
    prompts = write_prompts(tmp_path, 3)
    assert main(["generate", "--prompts", str(prompts), "-o", str(tmp_path / "o"), "--dry-run", "--shard", "1/2",
                 *flags(models)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [i["index"] for i in report["items"]] == [1] and not (tmp_path / "o").exists()


def test_helpers():
    assert parse_shard(None) == (0, 1) and parse_shard("1/3") == (1, 3)
    assert item_seed(0, 1) != item_seed(0, 2) and item_seed(1, 1) != item_seed(0, 1) and 0 <= item_seed(5, 7) < 2**31
    assert slug("A Sunny Meadow, with TREES!") == "a-sunny-meadow-with-trees"
    with pytest.raises(InputError):
        parse_shard("1/1")
    assert prior_module.SCHEDULERS == ("dpmsolver", "ddim", "euler")
