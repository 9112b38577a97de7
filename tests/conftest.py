"""Shared fixtures: locating ../shared (real HDR data and weights), skipping cleanly when it is absent."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# The start of a `python -c` script that hides the packages named in its first argument (comma-separated) from every
# import, as if they were not installed: the optional-dependency tests run real processes with it.
HIDE_MODULES = textwrap.dedent("""
    import importlib.abc, sys
    hidden = set(sys.argv[1].split(","))

    class Hide(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in hidden:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Hide())
""")

# Tests never touch the network: any accidental hub access fails at once instead of waiting for time-outs.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def pytest_configure(config):
    """diffusers creates its log handler on first use, bound to the sys.stderr of that moment. If that is a
    capsys capture, the stream closes with its test, and every later diffusers warning prints a "Logging error"
    traceback into whatever a later test captures (test_convert_bad_inputs asserts there is no traceback).
    Create the handler now, on the session's stream."""
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.get_logger("diffusers")


def find_shared() -> Path | None:
    """../shared beside the repository (or $LATENTHDR_SHARED), if it holds the project's data."""
    candidate = Path(os.environ.get("LATENTHDR_SHARED", REPO_ROOT.parent / "shared"))
    return candidate if (candidate / "data").is_dir() else None


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    path = find_shared()
    if path is None:
        pytest.skip("../shared (real HDR data and weights) is absent; set LATENTHDR_SHARED to run this test")
    return path


def spread_sample(paths, n: int = 3) -> list:
    """``n`` of ``paths`` spread evenly over the sorted list (first, ..., last): a fixed, fast sample for tests
    whose claim holds per file and needs no sweep of a whole folder (../shared's folders keep growing)."""
    paths = sorted(paths)
    if len(paths) <= n:
        return paths
    return [paths[round(i * (len(paths) - 1) / (n - 1))] for i in range(n)] if n > 1 else paths[:1]


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """A tiny random TAESD-layout VAE folder (``vae``) and a tiny head for it (``head.safetensors``): what the bench
    commands' tests run on, no hub and no ../shared."""
    import diffusers
    import torch

    from latenthdr.models.codecs import TinyCodec
    from latenthdr.models.head import ExposureHead, HeadConfig, save_head

    root = tmp_path_factory.mktemp("tiny-models")
    torch.manual_seed(0)
    vae = diffusers.AutoencoderTiny(encoder_block_out_channels=(8,) * 4, decoder_block_out_channels=(8,) * 4,
                                    num_encoder_blocks=(1,) * 4, num_decoder_blocks=(1,) * 4, latent_channels=4)
    vae.save_pretrained(root / "vae")
    codec = TinyCodec(vae)
    save_head(ExposureHead(HeadConfig.from_preset("tiny", codec.latent_channels, codec.space)), root / "head.safetensors")
    return root
