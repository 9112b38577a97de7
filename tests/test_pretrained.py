"""Pipeline folders: LatentHDRPipeline.save_pretrained / from_pretrained (latenthdr/pretrained.py), the package's own
folder (the embedded default), integrity checks, optional dependencies hidden, and the progress callback.
No network: hub ids are tried only offline or with huggingface_hub hidden."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

from conftest import HIDE_MODULES

from latenthdr import exposure, pretrained
from latenthdr.errors import InputError, LatentHDRError, OutputExistsError
from latenthdr.models import registry
from latenthdr.models.head import ExposureHead, HeadConfig, load_head, save_head
from latenthdr.pipeline import DEFAULT_MERGE_OPTIONS, PROGRESS_STAGES, LatentHDRPipeline
from test_prior import StubText

CONFIG = pretrained.CONFIG_NAME
EVS = (-4.0, -2.0, 0.0, 2.0)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def default():
    return LatentHDRPipeline.from_pretrained()


@pytest.fixture(scope="module")
def saved(default, tmp_path_factory):
    """The embedded default saved once (tests that alter it copy it first)."""
    return default.save_pretrained(tmp_path_factory.mktemp("saved") / "pipe")


def clipped_image(h=64, w=96, seed=0):
    """An 8-bit-like EV-0 frame [3, h, w] with a clipped patch, so the head's frames are decoded and merged."""
    g = torch.Generator().manual_seed(seed)
    radiance = torch.rand(3, h, w, generator=g) * 0.8
    radiance[:, 8:24, 16:40] = 6.0
    return exposure.synthesize_bracket(radiance, [0.0])[0]


def copy_of(folder, tmp_path):
    return shutil.copytree(folder, tmp_path / "copy")


def edit_config(folder, change):
    data = json.loads((folder / CONFIG).read_text())
    change(data)
    (folder / CONFIG).write_text(json.dumps(data))


# --- round trips --------------------------------------------------------------------------------------------
def test_the_saved_default_gives_the_same_hdr_bit_for_bit(default, saved):
    assert sorted(p.name for p in saved.iterdir()) == sorted([CONFIG, "codec.safetensors", "head.safetensors"])
    loaded = LatentHDRPipeline.from_pretrained(saved)
    image = clipped_image()
    for selective in (True, False):
        a, b = default(image, evs=EVS, selective=selective), loaded(image, evs=EVS, selective=selective)
        assert torch.equal(a.hdr, b.hdr) and torch.equal(a.z, b.z), selective
    assert loaded.settings() == default.settings()
    assert loaded.describe()["head_sha256"] == default.describe()["head_sha256"]


def test_saved_weight_files_are_byte_copies_of_the_shipped_ones(saved):
    config = json.loads((saved / CONFIG).read_text())
    shipped = json.loads((registry.WEIGHTS_DIR / CONFIG).read_text())
    for role in ("codec", "head"):
        assert config[role]["sha256"] == shipped[role]["sha256"]
        copied, original = saved / config[role]["file"], registry.WEIGHTS_DIR / shipped[role]["file"]
        assert copied.read_bytes() == original.read_bytes()
    assert config["scene"] is None and config["format_version"] == pretrained.FORMAT_VERSION


def test_no_argument_is_the_package_folder_and_the_keyword_form(default):
    image = clipped_image(seed=1)
    hdr = default(image, evs=EVS).hdr
    shipped_head = str(registry.WEIGHTS_DIR / "latenthdr-tiny-v1-head.safetensors")
    for other in (LatentHDRPipeline.from_pretrained(registry.WEIGHTS_DIR),
                  LatentHDRPipeline.from_pretrained(codec="embedded"),
                  LatentHDRPipeline.from_pretrained(codec="embedded", head=shipped_head)):
        assert torch.equal(other(image, evs=EVS).hdr, hdr)
        assert other.settings() == default.settings() and other.describe() == default.describe()
    assert default.origins["codec"].file == str(registry.WEIGHTS_DIR / "latenthdr-tiny-v1.safetensors")


def test_the_package_folder_agrees_with_the_manifest_and_the_constructor_defaults(default):
    """Two records of the shipped files and two of the defaults: they must not drift apart."""
    config = pretrained.read_config(registry.WEIGHTS_DIR / CONFIG)
    pretrained.verify(registry.WEIGHTS_DIR, config)
    manifest = registry.manifest()
    for component in config.files():
        assert manifest[component.file]["sha256"] == component.sha256
        assert manifest[component.file]["space"] == config.space
    assert config.codec.kind == "embedded" and config.scene is None
    fresh = LatentHDRPipeline(default.codec, default.head)  # the constructor's own defaults
    assert pretrained.Settings(**fresh.settings()) == config.settings
    assert config.settings.merge_options == DEFAULT_MERGE_OPTIONS


def test_a_non_default_head_and_merge_options_round_trip(default, tmp_path):
    torch.manual_seed(3)
    head = ExposureHead(HeadConfig.from_preset("tiny", default.codec.latent_channels, default.codec.space))
    with torch.no_grad():
        for parameter in head.parameters():  # not the identity: the bracket depends on these weights
            parameter.normal_(0.0, 0.05)
    save_head(head, tmp_path / "mine.safetensors")
    options = {"highlight_shrink": 1.0, "knee_high": 0.2}
    pipe = LatentHDRPipeline.from_pretrained(head=str(tmp_path / "mine.safetensors"), merge_options=options,
                                             decode_tile=8)
    folder = pipe.save_pretrained(tmp_path / "pipe")
    assert (folder / "head.safetensors").read_bytes() == (tmp_path / "mine.safetensors").read_bytes()
    config = json.loads((folder / CONFIG).read_text())
    assert config["settings"]["merge_options"] == {**DEFAULT_MERGE_OPTIONS, **options}
    assert config["settings"]["decode_tile"] == 8
    loaded = LatentHDRPipeline.from_pretrained(folder)
    assert loaded.merge_options == pipe.merge_options and loaded.decode_tile == 8
    image = clipped_image(seed=2)
    a, b = pipe(image, evs=EVS), loaded(image, evs=EVS)
    assert torch.equal(a.hdr, b.hdr) and not torch.equal(a.hdr, default(image, evs=EVS).hdr)
    # keywords go over the folder's settings; merge_options updates the folder's
    tuned = LatentHDRPipeline.from_pretrained(folder, merge_options={"knee_high": 0.3}, decode_tile=16)
    assert tuned.merge_options == {**DEFAULT_MERGE_OPTIONS, "highlight_shrink": 1.0, "knee_high": 0.3}
    assert tuned.decode_tile == 16


def test_weights_changed_in_memory_are_saved_from_memory(default, tmp_path):
    pipe = LatentHDRPipeline.from_pretrained()
    with torch.no_grad():
        next(pipe.head.parameters()).add_(0.01)
    folder = pipe.save_pretrained(tmp_path / "pipe")
    assert (folder / "head.safetensors").read_bytes() != (registry.WEIGHTS_DIR /
                                                          "latenthdr-tiny-v1-head.safetensors").read_bytes()
    reloaded = load_head(folder / "head.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(reloaded.state_dict().values(), pipe.head.state_dict().values()))


def test_a_pipeline_built_from_objects_is_written_from_memory(default, tmp_path):
    pipe = LatentHDRPipeline(default.codec, default.head, merge_options={"highlight_shrink": 0.25})
    assert pipe.origins is None
    folder = pipe.save_pretrained(tmp_path / "pipe")
    loaded = LatentHDRPipeline.from_pretrained(folder)
    image = clipped_image(seed=4)
    assert torch.equal(pipe(image, evs=EVS).hdr, loaded(image, evs=EVS).hdr)


def test_a_vae_that_no_spec_names_cannot_be_saved(tmp_path):
    import diffusers

    from latenthdr.models.codecs import TinyCodec

    torch.manual_seed(0)
    vae = diffusers.AutoencoderTiny(encoder_block_out_channels=(8,) * 4, decoder_block_out_channels=(8,) * 4,
                                    num_encoder_blocks=(1,) * 4, num_decoder_blocks=(1,) * 4, latent_channels=4)
    codec = TinyCodec(vae)
    pipe = LatentHDRPipeline(codec, ExposureHead(HeadConfig.from_preset("tiny", 4, codec.space)))
    with pytest.raises(InputError, match="codec=SPEC"):
        pipe.save_pretrained(tmp_path / "pipe")
    assert not (tmp_path / "pipe").exists()


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """A tiny diffusers VAE folder, a tiny prior and a head that is not the identity (one latent space)."""
    import diffusers

    from latenthdr.models.codecs import load_codec
    from latenthdr.models.prior import PriorConfig, PriorUNet, save_prior

    root = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    diffusers.AutoencoderTiny(encoder_block_out_channels=(8,) * 4, decoder_block_out_channels=(8,) * 4,
                              num_encoder_blocks=(1,) * 4, num_decoder_blocks=(1,) * 4,
                              latent_channels=4).save_pretrained(root / "vae")
    space = load_codec(str(root / "vae")).space
    prior = PriorUNet(PriorConfig.from_preset("test", 4, space, default_steps=2))
    head = ExposureHead(HeadConfig.from_preset("tiny", 4, space))
    with torch.no_grad():
        for parameter in [*prior.parameters(), *head.parameters()]:
            parameter.add_(torch.randn_like(parameter) * 0.05)
    save_prior(prior, root / "prior.safetensors")
    save_head(head, root / "head.safetensors")
    return root


def test_a_diffusers_vae_is_recorded_as_a_spec_and_the_prior_is_copied(tiny_models, tmp_path, monkeypatch):
    monkeypatch.setattr("latenthdr.models.text.load_text_encoder", lambda device="cpu": StubText())
    pipe = LatentHDRPipeline.from_pretrained(codec=str(tiny_models / "vae"), head=str(tiny_models / "head.safetensors"),
                                             scene=str(tiny_models / "prior.safetensors"),
                                             scene_options={"scheduler": "ddim"})
    folder = pipe.save_pretrained(tmp_path / "pipe")
    config = json.loads((folder / CONFIG).read_text())
    assert config["codec"] == {"kind": "diffusers", "spec": str((tiny_models / "vae").resolve()),
                               "note": pretrained.NOT_COPIED["diffusers"]}
    assert config["scene"]["kind"] == "prior" and config["scene"]["options"] == {"scheduler": "ddim"}
    assert sorted(p.name for p in folder.iterdir()) == sorted([CONFIG, "head.safetensors", "prior.safetensors"])
    assert (folder / "prior.safetensors").read_bytes() == (tiny_models / "prior.safetensors").read_bytes()
    loaded = LatentHDRPipeline.from_pretrained(folder)
    assert loaded.scene_source.scheduler == "ddim"
    kwargs = {"evs": (-2, 0, 2), "panorama": True, "height": 32, "width": 64}
    a = pipe(prompt="a red barn", generator=torch.Generator().manual_seed(0), **kwargs)
    b = loaded(prompt="a red barn", generator=torch.Generator().manual_seed(0), **kwargs)
    assert torch.equal(a.hdr, b.hdr) and torch.equal(a.z0, b.z0)
    assert LatentHDRPipeline.from_pretrained(folder, scene_options={"scheduler": "euler"}).scene_source.scheduler \
        == "euler"


def test_the_embedded_prior_round_trips(default, tmp_path, monkeypatch):
    monkeypatch.setattr("latenthdr.models.text.load_text_encoder", lambda device="cpu": StubText())
    pipe = LatentHDRPipeline.from_pretrained(scene="embedded")
    folder = pipe.save_pretrained(tmp_path / "pipe")
    shipped = next(n for n, e in registry.manifest().items() if e["kind"] == "prior")
    assert (folder / "prior.safetensors").read_bytes() == (registry.WEIGHTS_DIR / shipped).read_bytes()
    loaded = LatentHDRPipeline.from_pretrained(folder)
    kwargs = {"evs": (-2, 0), "panorama": True, "height": 64, "width": 128, "num_inference_steps": 2}
    a = pipe(prompt="dusk", generator=torch.Generator().manual_seed(1), **kwargs)
    b = loaded(prompt="dusk", generator=torch.Generator().manual_seed(1), **kwargs)
    assert torch.equal(a.hdr, b.hdr)


@pytest.mark.slow
def test_taef2_is_recorded_not_copied(shared_dir, tmp_path):
    spec = f"taef2:{shared_dir / 'weights' / 'taef2'}"
    pipe = LatentHDRPipeline.from_pretrained(codec=spec)
    folder = pipe.save_pretrained(tmp_path / "pipe")
    config = json.loads((folder / CONFIG).read_text())
    assert config["codec"]["kind"] == "taef2"
    assert config["codec"]["spec"] == f"taef2:{(shared_dir / 'weights' / 'taef2').resolve()}"
    assert "not copied" in config["codec"]["note"] and "file" not in config["codec"]
    assert sorted(p.name for p in folder.iterdir()) == sorted([CONFIG, "head.safetensors"])  # no .pth copied
    image = clipped_image(32, 64)
    assert torch.equal(pipe(image, evs=EVS).hdr, LatentHDRPipeline.from_pretrained(folder)(image, evs=EVS).hdr)


# --- integrity and bad folders ---------------------------------------------------------------------------------
def test_a_tampered_file_is_refused_naming_it(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    raw = bytearray((folder / "head.safetensors").read_bytes())
    raw[len(raw) // 2] ^= 0x01
    (folder / "head.safetensors").write_bytes(bytes(raw))
    with pytest.raises(InputError, match=r"head\.safetensors: sha256 .* differs") as caught:
        LatentHDRPipeline.from_pretrained(folder)
    assert caught.value.argument == "pretrained" and "\n" not in str(caught.value)


def test_a_missing_file_is_refused_naming_it(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    (folder / "codec.safetensors").unlink()
    with pytest.raises(InputError, match=r"codec\.safetensors: missing; .* codec file"):
        LatentHDRPipeline.from_pretrained(folder)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(format_version=2), "format version 2 is newer .* upgrade latenthdr"),
    (lambda d: d.update(format_version="1"), "format version '1' is not"),
    (lambda d: d.pop("format_version"), "format version None"),
    (lambda d: d.update(format="diffusers"), "format 'diffusers'; accepted: 'latenthdr-pipeline'"),
    (lambda d: d.update(extra=1), r"unknown keys \['extra'\]"),
    (lambda d: d.pop("head"), r"missing keys \['head'\]"),
    (lambda d: d["codec"].update(kind="vq"), "codec: kind 'vq'; accepted: embedded, taef2"),
    (lambda d: d["head"].update(file="../head.safetensors"), "head: file '../head.safetensors'"),
    (lambda d: d["head"].update(sha256="abc"), "head: file .* sha256 'abc'"),
    (lambda d: d["settings"]["merge_options"].update(knee=1), "merge_options: unknown knee"),
    (lambda d: d["settings"].update(curve="log"), "unknown display curve 'log'"),
    (lambda d: d["settings"].update(decode_tile=0), "decode_tile: got 0"),
    (lambda d: d.update(scene={"kind": "backbone", "spec": "sd3"}), "kind 'backbone' .* goes with"),
], ids=["newer version", "version string", "no version", "other format", "unknown key", "missing head",
        "unknown codec kind", "path outside the folder", "bad sha256", "unknown merge option", "unknown curve",
        "decode tile 0", "backbone scene with an embedded codec"])
def test_a_bad_config_is_one_clear_error(saved, tmp_path, change, message):
    folder = copy_of(saved, tmp_path)
    edit_config(folder, change)
    with pytest.raises(InputError, match=message) as caught:
        LatentHDRPipeline.from_pretrained(folder)
    assert caught.value.argument == "pretrained" and str(folder / CONFIG) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_codec_spec_that_now_gives_another_latent_space_is_refused(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    edit_config(folder, lambda d: d.update(space="flux2"))
    with pytest.raises(InputError, match="saved for latent space 'flux2'; its codec 'embedded' now gives"):
        LatentHDRPipeline.from_pretrained(folder)


def test_a_config_that_is_not_json_or_absent(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    (folder / CONFIG).write_text("{not json")
    with pytest.raises(InputError, match="cannot be read"):
        LatentHDRPipeline.from_pretrained(folder)
    (folder / CONFIG).unlink()
    with pytest.raises(InputError, match=f"{CONFIG}: no such file"):
        LatentHDRPipeline.from_pretrained(folder)


def test_neither_a_folder_nor_a_hub_id(tmp_path):
    with pytest.raises(InputError, match="codec spec goes in codec="):
        LatentHDRPipeline.from_pretrained("taef2")
    (tmp_path / "file.json").write_text("{}")
    with pytest.raises(InputError, match="is not a folder"):
        LatentHDRPipeline.from_pretrained(tmp_path / "file.json")


def test_an_uncached_hub_id_offline_is_one_clear_error():
    """The real huggingface_hub path, kept off the network by local_files_only (and conftest's HF_HUB_OFFLINE)."""
    with pytest.raises(LatentHDRError, match="latenthdr-tests/no-such-pipeline' is no local folder, and fetching "
                                             "it from the Hugging Face hub failed") as caught:
        LatentHDRPipeline.from_pretrained("latenthdr-tests/no-such-pipeline", local_files_only=True)
    assert "\n" not in str(caught.value)


# --- writing ------------------------------------------------------------------------------------------------------
def test_save_refuses_existing_files_unless_overwrite(default, saved, tmp_path, monkeypatch):
    folder = copy_of(saved, tmp_path)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        default.save_pretrained(folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    monkeypatch.setattr("latenthdr.models.text.load_text_encoder", lambda device="cpu": StubText())
    with_prior = LatentHDRPipeline.from_pretrained(scene="embedded")
    with_prior.save_pretrained(folder, overwrite=True)
    assert (folder / "prior.safetensors").is_file()
    default.save_pretrained(folder, overwrite=True)  # the old set's prior goes with it
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert LatentHDRPipeline.from_pretrained(folder).scene_source is None


def test_a_failed_save_leaves_nothing(default, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pretrained.shutil, "copyfile", broken)
    with pytest.raises(OSError):
        default.save_pretrained(tmp_path / "new" / "pipe")
    assert not (tmp_path / "new" / "pipe").exists()
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "notes.txt").write_text("mine")
    with pytest.raises(OSError):
        default.save_pretrained(tmp_path / "old")
    assert [p.name for p in (tmp_path / "old").iterdir()] == ["notes.txt"]


def test_save_into_a_file_is_refused(default, tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(InputError, match="is a file"):
        default.save_pretrained(tmp_path / "f")


# --- optional dependencies hidden ------------------------------------------------------------------------------------
RUN_WITHOUT = HIDE_MODULES + textwrap.dedent("""
    from latenthdr import LatentHDRError
    from latenthdr.pipeline import LatentHDRPipeline
    try:
        pipe = LatentHDRPipeline.from_pretrained(sys.argv[2] or None)
    except LatentHDRError as error:
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(2)
    print(type(pipe.codec).__name__, "loaded")
""")


def run_without(modules: str, pretrained: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", RUN_WITHOUT, modules, str(pretrained)], capture_output=True,
                          text=True, timeout=300, env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1",
                                                       "OMP_NUM_THREADS": "1"})


def test_a_hub_id_without_huggingface_hub_is_one_line_naming_the_extra():
    result = run_without("huggingface_hub", "someone/some-pipeline")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith("MissingExtraError") and 'pip install "latenthdr[models]"' in lines[0]
    assert "huggingface_hub" in lines[0]


def test_a_taef2_folder_without_diffusers_is_one_line_naming_the_extra(tmp_path, shared_dir):
    """With the TAEF2 weights found (../shared; elsewhere their absence is the first error) but no diffusers."""
    name = "taef2-head-v1.safetensors"
    shutil.copyfile(registry.WEIGHTS_DIR / name, tmp_path / "head.safetensors")
    spec = f"taef2:{shared_dir / 'weights' / 'taef2'}"
    config = pretrained.PipelineConfig("taef2", pretrained.Component("taef2", spec=spec),
                                       pretrained.Component("head", file="head.safetensors",
                                                            sha256=registry.manifest()[name]["sha256"]))
    (tmp_path / CONFIG).write_text(json.dumps(config.to_dict()))
    result = run_without("diffusers", tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
    assert f"loading the codec '{spec}' needs diffusers" in lines[0] and 'latenthdr[models]' in lines[0]


@pytest.mark.parametrize("hidden", ["diffusers", "transformers"])
def test_a_backbone_folder_without_its_dependencies_is_one_line_naming_the_extra(hidden, tmp_path):
    """Fails before any download: the backbone's pipeline class cannot be imported."""
    name = "latenthdr-tiny-v1-head.safetensors"  # never read: the backbone fails first
    shutil.copyfile(registry.WEIGHTS_DIR / name, tmp_path / "head.safetensors")
    config = pretrained.PipelineConfig("sd3", pretrained.Component("backbone"),
                                       pretrained.Component("head", file="head.safetensors",
                                                            sha256=registry.manifest()[name]["sha256"]),
                                       pretrained.Component("backbone", spec="sd3"))
    (tmp_path / CONFIG).write_text(json.dumps(config.to_dict()))
    result = run_without(hidden, tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
    assert f"loading the backbone 'sd3' needs {hidden}" in lines[0] and 'latenthdr[models]' in lines[0]


@pytest.mark.parametrize("folder", ["", "saved"], ids=["no argument", "a saved folder"])
def test_the_embedded_default_needs_no_extra(folder, saved):
    result = run_without("diffusers,transformers,accelerate,huggingface_hub", saved if folder else "")
    assert result.returncode == 0 and "EmbeddedCodec loaded" in result.stdout, result.stderr[-2000:]


# --- the progress callback -------------------------------------------------------------------------------------------
def check_progress(calls, stages):
    assert [s for i, (s, done, _) in enumerate(calls) if done == 0] == stages
    for stage in stages:
        mine = [(done, total) for s, done, total in calls if s == stage]
        total = mine[0][1]
        assert [done for done, _ in mine] == list(range(total + 1)) and all(t == total for _, t in mine), (stage, mine)
    assert set(stages) <= set(PROGRESS_STAGES)


def test_the_callback_reports_every_stage_in_order(default):
    image = clipped_image(64, 256, seed=5)
    for selective in (True, False):
        calls = []
        default(image, evs=EVS, selective=selective, callback=lambda *a: calls.append(a))
        check_progress(calls, ["encode", "head", "decode", "merge"])
        if not selective:  # whole frames: one unit per chunk of decode_chunk_size frames
            assert max(t for s, _, t in calls if s == "decode") == -(-len(EVS) // default.decode_chunk_size)


def test_the_callback_reports_text_to_hdr_and_can_stop_it(tiny_models, monkeypatch):
    monkeypatch.setattr("latenthdr.models.text.load_text_encoder", lambda device="cpu": StubText())
    pipe = LatentHDRPipeline.from_pretrained(codec=str(tiny_models / "vae"), head=str(tiny_models / "head.safetensors"),
                                             scene=str(tiny_models / "prior.safetensors"))
    kwargs = {"evs": (-2, 0, 2), "panorama": True, "height": 32, "width": 64}
    calls = []
    pipe(prompt="a red barn", callback=lambda *a: calls.append(a), **kwargs)
    check_progress(calls, ["diffusion", "head", "decode", "merge"])
    calls.clear()
    pipe.generate("a red barn", multipass=True, callback=lambda *a: calls.append(a), **kwargs)
    check_progress(calls, ["diffusion", "decode", "merge"])
    assert calls[len(kwargs["evs"])] == ("diffusion", 3, 3)

    class Stop(Exception):
        pass

    def stop_at_decode(stage, done, total):
        if stage == "decode":
            raise Stop

    with pytest.raises(Stop):
        pipe(prompt="a red barn", callback=stop_at_decode, **kwargs)


def test_the_api_page_example_runs(tmp_path, monkeypatch, capsys):
    """docs/api.md's example, as a user would paste it (its temporary folder inside tmp_path)."""
    import tempfile
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text()
    code = page.split("## Example", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    exec(compile(code, "docs/api.md", "exec"), {"__name__": "__api_example__"})
    assert "stages: ['encode', 'head', 'decode', 'merge']" in capsys.readouterr().out
    assert list(tmp_path.glob("*/sun.exr"))
