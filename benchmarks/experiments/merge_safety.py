"""How safe is the input-preserving merge where the head is unsure? Per val image, its PU21-PSNR gain over the
linearised input for merge variants, from one pipeline run per case (the decoded brackets are kept in --cache, the
folder of ``bench l2h --brackets-cache``, so a second sweep or a bench run decodes nothing). The l2h protocol of bench/l2h.py (anchoring, 8-bit gamma-2.2 input, scoring).

    .venv/bin/python benchmarks/experiments/merge_safety.py --data ../shared/data/hdri/val \
        --data ../shared/data/photos/val --clip 0.03 --cache runs/merge-safety/embedded

Variants: ``shrink S`` (highlight_shrink=S: the predicted excess over the clip level scaled by S in log space; 1 is
the merge as it was), ``rim K`` (rim_bound=K: the excess capped by the rise of the input around each clipped
region, ``merge.rim_excess_bound``).
"""

from __future__ import annotations

import statistics
from pathlib import Path

from latenthdr import exposure, merge
from latenthdr.bench import l2h
from latenthdr.cli.bench import experiment_parser, BracketCache, case_outputs, dataset_labels, load_references
from latenthdr.pipeline import LatentHDRPipeline


def main() -> None:
    parser = experiment_parser(__doc__)
    parser.add_argument("--cache", type=Path, help="bench l2h --brackets-cache folder (shared with bench l2h)")
    parser.add_argument("--shrink", default="1,0.85,0.7,0.5")
    parser.add_argument("--rim", default="", help="rim_bound factors to try, e.g. 1,2,3")
    parser.add_argument("--both", default="", help="shrink:rim pairs applied together, e.g. 0.5:1,0.35:2")
    args = parser.parse_args()
    evs = exposure.parse_ev_ladder(args.evs)
    pipe = LatentHDRPipeline.from_pretrained(codec=args.codec, head=args.head)
    cache = None if args.cache is None else BracketCache(args.cache, pipe, args.head)
    variants = {f"shrink {float(s):g}": {"highlight_shrink": float(s)} for s in args.shrink.split(",") if s}
    variants.update({f"rim {float(k):g}": {"rim_bound": float(k)} for k in args.rim.split(",") if k})
    for pair in filter(None, args.both.split(",")):
        s, k = (float(v) for v in pair.split(":"))
        variants[f"shrink {s:g} + rim {k:g}"] = {"highlight_shrink": s, "rim_bound": k}
    gains: dict[str, list[tuple[str, float, float]]] = {name: [] for name in variants}
    for folder, label in zip(args.data, dataset_labels(args.data)):
        for name, H in load_references(folder, 0, 0, 1024):
            for clip in (float(c) for c in args.clip.split(",")):
                case = l2h.make_case(name, H, clip, label)
                base = l2h.score(l2h.linearised_input(case.ldr, evs), case)
                found = case_outputs(pipe, case, evs, cache, {})
                y, panorama = found["brackets"], found["panorama"]
                for variant, options in variants.items():
                    hdr = merge.merge_with_input(case.ldr[None], y[None], evs, panorama=panorama, **options).hdr[0]
                    score = l2h.score(hdr, case)
                    gains[variant].append((f"{label}/{name}@{clip:g}", score["pu21_psnr"] - base["pu21_psnr"],
                                                   score["clipped_rms_stops"] / base["clipped_rms_stops"]))
                print(f"{label}/{name} @ {clip:g}: " + ", ".join(f"{k} {v[-1][1]:+.2f}" for k, v in gains.items()),
                      flush=True)
    print("| variant | data | mean PU21 gain dB | worst dB (image) | mean clipped ratio |")
    print("|---|---|---|---|---|")
    for variant, rows in gains.items():
        for label in [*dataset_labels(args.data), "all"]:
            part = [r for r in rows if label == "all" or r[0].startswith(label + "/")]
            worst = min(part, key=lambda r: r[1])
            print(f"| {variant} | {label} | {statistics.fmean(r[1] for r in part):+.2f} | {worst[1]:+.2f} "
                  f"({worst[0]}) | {statistics.fmean(r[2] for r in part):.3f} |")


if __name__ == "__main__":
    main()
