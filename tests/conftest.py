"""Shared fixtures: locating ../shared (real HDR data and weights), skipping cleanly when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Tests never touch the network: any accidental hub access fails at once instead of waiting for time-outs.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


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
