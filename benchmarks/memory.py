"""Whole-process time and peak memory of `latenthdr convert` against image size, one run per size and codec.

    .venv/bin/python benchmarks/memory.py --sizes 1,4,12 --codecs embedded,taef2 --json docs/results/convert-memory.json

Each input is a real val photograph (``--source``, default arboretum_crop.hdr) resized to the megapixel count,
exposed as an 8-bit sRGB JPEG with 3% of its pixels clipped. Each `convert` runs in its own process; its peak
resident memory is the child's ru_maxrss (os.wait4) and its time the wall time of that process, model loading and
file writing included. The estimate the pipeline makes before the job (``LatentHDRPipeline.memory_estimate``) is
reported beside the measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from latenthdr import exposure, io, response

SHARED_SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos" / "val" / "arboretum_crop.hdr"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,4,12", help="megapixels, comma-separated")
    parser.add_argument("--codecs", default="embedded,taef2")
    parser.add_argument("--source", default=str(SHARED_SOURCE))
    parser.add_argument("--json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="latenthdr-memory-") as tmp:
        for megapixels in [float(s) for s in args.sizes.split(",")]:
            photo = make_photo(Path(args.source), megapixels, Path(tmp))
            for codec in args.codecs.split(","):
                rows.append(measure(photo, codec, Path(tmp)) | {"megapixels": megapixels})
                print(json.dumps(rows[-1]), flush=True)
    if args.json:
        io.write_json(args.json, {"source": args.source, "rows": rows}, overwrite=True)
    return 0


def make_photo(source: Path, megapixels: float, folder: Path) -> Path:
    hdr = io.read_hdr(source).pixels
    h, w = hdr.shape[:2]
    scale = (megapixels * 1e6 / (h * w)) ** 0.5
    size = (max(8, round(w * scale / 8) * 8), max(8, round(h * scale / 8) * 8))
    resized = cv2.resize(hdr, size, interpolation=cv2.INTER_CUBIC).clip(0)
    linear = io.to_tensor(resized)
    linear = linear * exposure.anchor_scale(linear, clipped_fraction=0.03)
    display = response.encode(linear.clamp(0, 1), "srgb")
    path = folder / f"photo-{megapixels:g}mp.jpg"
    codes = np.rint(io.to_numpy(display) * 255).astype(np.uint8)
    cv2.imwrite(str(path), codes[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
    return path


def measure(photo: Path, codec: str, folder: Path) -> dict:
    out = folder / f"{photo.stem}-{codec}.exr"
    cmd = [sys.executable, "-m", "latenthdr", "convert", str(photo), "-o", str(out), "--codec", codec, "--overwrite"]
    started = time.perf_counter()
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    stdout, stderr = process.stdout.read(), process.stderr.read()
    width, height = io.image_size(photo)
    row = {"codec": codec, "width": width, "height": height, "seconds": round(seconds, 2),
           "peak_rss_gb": round(usage.ru_maxrss * 1024 / 1e9, 3), "exit_status": os.waitstatus_to_exitcode(status)}
    if row["exit_status"] == 0:
        report = json.loads(stdout)
        row["timings_s"] = {k: round(v, 2) for k, v in report["timings_s"].items() if isinstance(v, float)}
        row["decoded_fraction"] = round(report["decoded_fraction"], 4)
        row["estimate_gb"] = report.get("memory_estimate_gb")
    else:
        row["stderr"] = stderr.decode(errors="replace").strip()[-300:]
    return row


if __name__ == "__main__":
    sys.exit(main())
