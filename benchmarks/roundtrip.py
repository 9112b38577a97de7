"""Bracket -> merge round trip on real HDRs (issue 2): how exactly the merge returns its source.

For every HDR in a folder: anchor it (P99.9 -> 1, METHOD.md), synthesise the paper's 8-bit gamma-2.2 bracket,
merge it with METHOD.md Eq. 9 and compare with the anchored source over the pixels at least one frame sees well.
Also checks PU21 against METHOD.md's values and the frobisher photographs' mid-tone ratios.

    .venv/bin/python benchmarks/roundtrip.py ../shared [--evs -7:5:1]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from latenthdr import exposure, io, merge, metrics, photographs

PU21_CHECK = {0.1: 5.7171, 1: 36.5439, 10: 123.6475, 100: 256.3839, 1000: 420.0969, 10000: 595.3939}


def roundtrip_rows(folder: Path, evs) -> list[dict]:
    rows = []
    for path in sorted(folder.glob("*.hdr")) + sorted(folder.glob("*.exr")):
        H, _ = exposure.anchor(io.to_tensor(io.read_hdr(path).pixels))
        start = time.perf_counter()
        result = merge.merge_bracket(exposure.synthesize_bracket(H, evs), evs)
        seconds = time.perf_counter() - start
        seen = result.weight_sum > 0
        rows.append({"file": path.name, "psnr_seen": metrics.pu21_psnr(result.hdr, H, region=seen),
                     "psnr_all": metrics.pu21_psnr(result.hdr, H),
                     "median_abs_stops": metrics.log_error_stops(result.hdr, H, seen)["median_abs"],
                     "plow": result.plow, "phigh": result.phigh, "stops": metrics.stops(H), "seconds": seconds})
    return rows


def frobisher_ratios(folder: Path) -> list[tuple[str, float, float]]:
    """Median ratio of linearised mid-tones (code values in (0.2, 0.8), per channel) between consecutive frames."""
    frames = [io.read_ldr(p) for p in sorted(folder.glob("*.jpg"))]
    times = [f.exif["exposure_time_s"] for f in frames]
    y = torch.stack([io.to_tensor(f.pixels) for f in frames]).double()
    lut = torch.from_numpy(photographs.recover_response_debevec(y, times))
    x = merge.apply_response_lut(y, lut)
    out = []
    for k in range(len(frames) - 1):
        mid = (y[k] > 0.2) & (y[k] < 0.8) & (y[k + 1] > 0.2) & (y[k + 1] < 0.8)
        out.append((f"{times[k]:g}s -> {times[k + 1]:g}s", times[k + 1] / times[k],
                    torch.median(x[k + 1][mid] / x[k][mid]).item()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shared", type=Path, help="the ../shared folder")
    parser.add_argument("--evs", default="-7:5:1")
    args = parser.parse_args()
    evs = exposure.parse_ev_ladder(args.evs)
    print("| file | PU21-PSNR seen px (dB) | PU21-PSNR all px (dB) | median abs log2 (stops) | plow | phigh | stops |"
          " merge s |\n|---|---|---|---|---|---|---|---|")
    for r in roundtrip_rows(args.shared / "data/hdri/val", evs):
        print(f"| {r['file']} | {r['psnr_seen']:.2f} | {r['psnr_all']:.2f} | {r['median_abs_stops']:.4f} | "
              f"{r['plow']:.4f} | {r['phigh']:.5f} | {r['stops']:.2f} | {r['seconds']:.2f} |")
    worst = max(abs(metrics.pu21_encode(torch.tensor(Y)).item() - V) for Y, V in PU21_CHECK.items())
    print(f"\nPU21 check values (METHOD.md): largest deviation {worst:.2e}")
    print("\n| frobisher pair | time ratio | median linear ratio (Debevec) | error |\n|---|---|---|---|")
    for name, expected, got in frobisher_ratios(args.shared / "data/brackets/frobisher"):
        print(f"| {name} | {expected:g} | {got:.3f} | {100 * (got / expected - 1):+.1f}% |")


if __name__ == "__main__":
    main()
