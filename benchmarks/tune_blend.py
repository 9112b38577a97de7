"""Choose the input-preserving blend's knees on TRAINING panoramas (never on the val set we report).

For each of the first ``--limit`` training HDRs (resized to ``--width``) and each clipped fraction, the pipeline
runs once; every knee setting is then scored with the l2h protocol (bench/l2h.py) against the linearised input.

    .venv/bin/python benchmarks/tune_blend.py --data ../shared/data/hdri/train --codec taef2 --limit 6 --width 512
"""

from __future__ import annotations

import argparse
import itertools
import statistics

from latenthdr import exposure, merge
from latenthdr.bench import l2h
from latenthdr.cli.bench import load_references
from latenthdr.pipeline import LatentHDRPipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--codec")
    parser.add_argument("--head")
    parser.add_argument("--limit", type=int, default=6)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--clip", default="0.03,0.05")
    parser.add_argument("--evs", default="-7:5:1")
    args = parser.parse_args()
    evs = exposure.parse_ev_ladder(args.evs)
    pipe = LatentHDRPipeline.from_pretrained(codec=args.codec, head=args.head)
    knees = list(itertools.product((0.1, 0.05, 0.02), (0.1, 0.02, 0.0)))  # (high, low)
    scores = {k: [] for k in knees}
    baseline = []
    for name, H in load_references(args.data, args.width, args.limit):
        for clip in (float(c) for c in args.clip.split(",")):
            case = l2h.make_case(name, H, clip)
            base = l2h.score(l2h.linearised_input(case.ldr, evs), case)
            baseline.append(base)
            out = pipe(case.ldr, evs=evs)
            for high, low in knees:
                hdr = merge.merge_with_input(case.ldr[None], out.brackets, evs, knee_high=high, knee_low=low).hdr[0]
                s = l2h.score(hdr, case)
                scores[(high, low)].append((s["pu21_psnr"] - base["pu21_psnr"],
                                            s["clipped_rms_stops"] / base["clipped_rms_stops"]))
    print("| knee_high | knee_low | mean PU21-PSNR gain dB | worst gain dB | mean clipped error ratio |")
    print("|---|---|---|---|---|")
    for (high, low), rows in scores.items():
        gains, ratios = [r[0] for r in rows], [r[1] for r in rows]
        print(f"| {high} | {low} | {statistics.fmean(gains):+.2f} | {min(gains):+.2f} | {statistics.fmean(ratios):.3f} |")


if __name__ == "__main__":
    main()
