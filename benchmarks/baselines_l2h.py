"""Image-to-HDR baselines (latenthdr.baselines) scored with the l2h protocol (bench/l2h.py) on held-out HDRs.

Every baseline in the registry (or those named with --baselines) reconstructs each case's 8-bit input; ``l2h.run``
adds the linearised input and the oracle, scores everything with ``l2h.score`` and ``l2h.summarise`` pools it
(per folder and over all). Prints the summary as JSON and Markdown; --json writes rows and summary.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/baselines_l2h.py \
        --data ../shared/data/photos/val --data ../shared/data/hdri/val --clip 0.03 --max-side 512 \
        --json baselines_l2h.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from latenthdr import baselines, exposure, io
from latenthdr.bench import l2h
from latenthdr.cli.bench import _clip_fractions, _finite_or_none, dataset_labels, load_references

BUILT_IN = ("input", "oracle")  # l2h.run scores these itself (through the same baseline functions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", action="append", required=True, metavar="DIR", help="folder of reference HDRs")
    parser.add_argument("--clip", default="0.03", help="clipped fractions of the input (default 0.03)")
    parser.add_argument("--evs", default="-7:5:1", help="EV ladder of the oracle (default -7:5:1)")
    parser.add_argument("--max-side", type=int, default=512, help="shrink references to this longer side (px)")
    parser.add_argument("--limit", type=int, default=0, help="first N files of each folder (0: all)")
    parser.add_argument("--baselines", default=",".join(n for n in baselines.BASELINES if n not in BUILT_IN),
                        help="comma-separated registry names (default: all but input and oracle, always scored)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--json", metavar="OUT.json", help="write options, rows and summary")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clips, evs = _clip_fractions(args.clip), exposure.parse_ev_ladder(args.evs, "--evs")
    names = [n.strip() for n in args.baselines.split(",") if n.strip() and n.strip() not in BUILT_IN]
    timings = {name: 0.0 for name in names}
    methods = {name: timed(baselines.get(name), timings) for name in names}
    if args.json:
        io.check_output(args.json, args.overwrite, "--json")
    labels = dataset_labels(args.data)
    cases = [l2h.make_case(name, H, c, label) for folder, label in zip(args.data, labels)
             for name, H in load_references(folder, 0, args.limit, args.max_side) for c in clips]
    started = time.perf_counter()
    rows = l2h.run(cases, evs, methods, progress=lambda case: print(
        f"  {case.dataset}/{case.name} @ {case.clip_fraction:.0%}", file=sys.stderr))
    table = l2h.summarise(rows)
    report = _finite_or_none({"options": vars(args), "evs": list(evs), "data": dict(zip(labels, args.data)),
                              "summary": table, "rows": rows, "baseline_seconds": timings,
                              "wall_seconds": time.perf_counter() - started})
    if args.json:
        io.write_json(args.json, report, overwrite=args.overwrite)
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}, indent=1))
    print(markdown(table))


def timed(baseline: baselines.Baseline, timings: dict):
    """The baseline as an l2h method that adds its seconds to ``timings[name]``."""
    reconstruct = baselines.as_reconstructor(baseline)

    def method(case, evs):
        start = time.perf_counter()
        hdr = reconstruct(case, evs)
        timings[baseline.name] += time.perf_counter() - start
        return hdr
    return method


def markdown(table) -> str:
    """Per folder and pooled: each method's mean PU21-PSNR gain over the linearised input, its worst image, and the
    ratio of its mean clipped-pixel RMS error in stops to the input's."""
    lines = ["| data | clip | method | n | vs input dB | worst image vs input dB | clipped RMS stops vs input | "
             "PU21-PSNR dB | clipped RMS stops | clipped energy | stops (ref) |", "|" + "---|" * 11]
    for e in table:
        lines.append(f"| {e['dataset']} | {e['clip_fraction']:.0%} | {e['method']} | {e['n']} | "
                     f"{e['psnr_gain_db']:+.2f} | {e['worst_psnr_gain_db']:+.2f} ({e['worst_image']}) | "
                     f"{e['clipped_error_ratio']:.2f}x | {e['pu21_psnr']:.2f} | {e['clipped_rms_stops']:.3f} | "
                     f"{e['clipped_energy']:.3f} | {e['stops']:.2f} ({e['ref_stops']:.2f}) |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
