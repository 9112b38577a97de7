"""Fast checks of the held-out text-to-HDR prompt benchmark (benchmarks/heldout_prompts.json, t2h_heldout.py)."""

import json
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))

import t2h_heldout as heldout  # noqa: E402

from latenthdr import skies  # noqa: E402


def _tokens(text):
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def _jaccard(a, b):
    a, b = _tokens(a), _tokens(b)
    return len(a & b) / len(a | b)


@pytest.fixture(scope="module")
def prompts():
    return json.loads((BENCH / "heldout_prompts.json").read_text())["prompts"]


def test_prompt_counts_and_categories(prompts):
    assert len(prompts) >= 24
    counts = Counter(p["category"] for p in prompts)
    assert set(counts) == set(heldout.CATEGORIES)
    assert min(counts.values()) >= 4
    assert len({p["prompt"] for p in prompts}) == len(prompts)


def test_required_prompts(prompts):
    have = {(p["prompt"], p["category"]) for p in prompts}
    for required in [("a low sun over a calm sea at dusk", "nature"),
                     ("a snowy mountain under a clear blue sky", "nature"),
                     ("a bright photo studio with softboxes", "studio"),
                     ("a forest clearing at noon", "nature"),
                     ("a city street at night with street lamps", "night outdoor"),
                     ("a cathedral interior with stained glass windows", "interior")]:
        assert required in have


def test_no_near_duplicate_of_training_caption(prompts):
    captions = [c for v in json.loads((ROOT / "src/latenthdr/data/captions.json").read_text())["captions"].values()
                for c in v]
    captions += [c for p in skies.draw_sky_params(200, 0) for c in skies.sky_captions(p)]
    normalised = {" ".join(sorted(_tokens(c))) for c in captions}
    for p in prompts:
        assert " ".join(sorted(_tokens(p["prompt"]))) not in normalised
        worst = max(captions, key=lambda c: _jaccard(p["prompt"], c))
        assert _jaccard(p["prompt"], worst) <= 0.7, (p["prompt"], worst)


def _gradient(h=64, w=128):
    y, x = np.mgrid[0:h, 0:w]
    Y = 2.0 ** (4.0 * x / w + 2.0 * y / h)  # smooth in log luminance
    return np.repeat(Y[..., None], 3, axis=-1)


def test_block_ratio_smooth_is_about_one():
    r = heldout.coherence(_gradient(), cell=8, shift=0)["ratio"]
    assert 0.8 < r < 1.2


def test_block_ratio_with_block_steps():
    H = _gradient()
    h, w = H.shape[:2]
    y, x = np.mgrid[0:h, 0:w]
    H = H * (2.0 ** (0.5 * (((x // 8) + (y // 8)) % 2)))[..., None]  # a 0.5-stop step at every 8-px border
    assert heldout.coherence(H, cell=8, shift=0)["ratio"] > 1.3
    # with the blocks shifted by 4 columns, the shifted phase finds them
    Hs = np.roll(H, -4, axis=1)
    assert heldout.coherence(Hs, cell=8, shift=4)["ratio"] > 1.3


def _disk(factor):
    H = np.ones((128, 256, 3))
    y, x = np.mgrid[0:128, 0:256]
    H[(y - 40) ** 2 + (x - 100) ** 2 <= 16] = factor
    return H


def test_sun_found():
    sun = heldout.find_sun(_disk(2.0 ** 11))
    assert sun["found"] and 0 < sun["fraction"] <= 0.01


def test_no_sun_when_dim():
    assert not heldout.find_sun(_disk(2.0 ** 8))["found"]


def test_descriptor_distance_to_itself_zero():
    H = _disk(2.0 ** 11) * _gradient(128, 256)
    d = heldout.descriptor(H)
    assert d.shape == (16 * 8 * 3 + 16,)
    assert heldout.distance(d, heldout.descriptor(H.copy())) == 0.0
    assert heldout.distance(d, heldout.descriptor(_gradient(128, 256))) > 0.0
