"""Self-test of an install: the shipped weights, image-to-HDR and text-to-HDR on fixed inputs, against the values
recorded with these weights (``data/selftest.json``, written by ``benchmarks/record_selftest.py``).

Stages: ``weights`` (every shipped file's size and sha256 against the manifest), ``convert`` (the procedural
daylight panorama of ``scenes.sky_panorama`` at 128 x 256, its 8-bit exposure with 3% clipped, through the embedded
default) and ``generate`` (one prompt and seed through the embedded prior at 128 x 256). Each stage reports
statistics of its latents and its HDR; a stage passes when every statistic is within ``TOLERANCE`` of the record
(relative, with an absolute floor: CPUs differ in float rounding, not in results).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

RECORD = Path(__file__).resolve().parent.parent / "data" / "selftest.json"
PROMPT = "a sunlit meadow under a clear blue sky"
SEED = 0
SIZE = (128, 256)  # (height, width), a 2:1 panorama
TOLERANCE = {"relative": 1e-3, "absolute": 1e-4, "pu21_db": 0.05}


def measure_weights() -> dict:
    """Every shipped file checked against the manifest: {name: "ok"}; LatentHDRError names a bad file."""
    from latenthdr.models import registry

    registry.shipped_file.cache_clear()
    return {name: "ok" if registry.shipped_file(name) else "missing" for name in registry.manifest()}


def _stats(tensor: torch.Tensor) -> dict:
    t = tensor.double()
    return {"mean": float(t.mean()), "std": float(t.std()), "min": float(t.min()), "max": float(t.max())}


def _hdr_stats(hdr: torch.Tensor) -> dict:
    from latenthdr import metrics

    luminance = (0.2126 * hdr[0] + 0.7152 * hdr[1] + 0.0722 * hdr[2]).double().clamp_min(1e-6)
    return {"log2_mean_luminance": float(luminance.log2().mean()), "max": float(hdr.max()),
            "stops": metrics.stops(hdr)}


def measure_convert() -> dict:
    from latenthdr import scenes
    from latenthdr.bench import l2h
    from latenthdr.pipeline import LatentHDRPipeline

    case = l2h.make_case("selftest", scenes.sky_panorama(*SIZE), clip_fraction=0.03)
    out = LatentHDRPipeline.from_pretrained()(case.ldr)
    return {"z0": _stats(out.z0), "bracket_latents": _stats(out.z), "hdr": _hdr_stats(out.hdr[0]),
            "pu21_db": l2h.score(out.hdr[0], case)["pu21_psnr"]}


def measure_generate() -> dict:
    from latenthdr.pipeline import LatentHDRPipeline

    pipe = LatentHDRPipeline.from_pretrained(scene="embedded")
    out = pipe.generate(PROMPT, panorama=True, height=SIZE[0], width=SIZE[1],
                        generator=torch.Generator().manual_seed(SEED))
    return {"z0": _stats(out.z0), "bracket_latents": _stats(out.z), "hdr": _hdr_stats(out.hdr[0])}


STAGES = {"weights": measure_weights, "convert": measure_convert, "generate": measure_generate}


def measure() -> dict:
    return {name: run() for name, run in STAGES.items()}


def compare(measured, recorded, path: str = "") -> list[str]:
    """The statistics of ``measured`` outside the tolerance of ``recorded`` (empty when the stage passes)."""
    if isinstance(recorded, dict):
        if not isinstance(measured, dict):
            return [f"{path}: not measured"]
        return [d for key, value in recorded.items() for d in compare(measured.get(key), value, f"{path}.{key}".strip("."))]
    if isinstance(recorded, (int, float)) and not isinstance(recorded, bool):
        if not isinstance(measured, (int, float)) or not math.isfinite(measured):
            return [f"{path}: {measured!r}, recorded {recorded:.6g}"]
        allowed = (TOLERANCE["pu21_db"] if path.endswith("pu21_db")
                   else max(TOLERANCE["absolute"], TOLERANCE["relative"] * abs(recorded)))
        return [] if abs(measured - recorded) <= allowed else [f"{path}: {measured:.6g}, recorded {recorded:.6g}"]
    return [] if measured == recorded else [f"{path}: {measured!r}, recorded {recorded!r}"]


def read_record(path: Path = RECORD) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))
