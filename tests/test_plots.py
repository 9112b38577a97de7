"""benchmarks/plots.py: the plots of docs/RESULTS.md are drawn from the committed records, and a missing record
is named."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import cv2
import pytest

pytest.importorskip("matplotlib", reason="the plots need the optional bench extra (matplotlib)")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import plots  # noqa: E402

NAMES = ["results-error-vs-ev.png", "results-stops-hist.png", "results-speed-ladder.png",
         "results-l2h-methods.png"]


def test_every_plot_is_drawn_from_the_committed_records(tmp_path):
    assert plots.main(["--out", str(tmp_path)]) == 0
    for name in NAMES:
        image = cv2.imread(str(tmp_path / name))
        assert image is not None and image.shape[0] > 300 and image.shape[1] > 800, name
        assert image.std() > 10, f"{name} is blank"  # axes, lines and bars, not an empty canvas
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(NAMES)  # no temporary file left


def test_a_missing_record_is_named(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(ROOT / "docs" / "results", results)
    (results / plots.T2H_RECORD).unlink()
    with pytest.raises(SystemExit, match="t2h-embedded.json is missing"):
        plots.main(["--results", str(results), "--out", str(tmp_path / "out")])
