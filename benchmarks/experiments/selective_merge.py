"""What the merge's selective-decoding rules change, on the full decoded brackets of ``bench l2h --brackets-cache``
(no decoding: a window decode with the codec's exact margin equals the full decode there, tests/test_codecs.py, so
the merge given the selective decode's pixels, ``LatentHDRPipeline.merge``, is what selective decoding returns).
Per val image, the PU21-PSNR gain over the linearised input and the largest difference, in stops, from the merge
as it was (every frame, calibrated on the whole image: ``all frames``), for:
- ``frames<=X``: only frames with EV <= X merged (``merge_with_input(max_ev=X)``), calibrated on the whole image;
- ``tiles T/c``: frames <= ``--max-ev``, the input kept outside the selective decode's tiles of T cells and the
  gains calibrated inside them, with one calibration tile in c added (0: none).

    .venv/bin/python benchmarks/experiments/selective_merge.py --data ../shared/data/hdri/val \
        --data ../shared/data/photos/val --clip 0.03 --cache runs/l2h-cache/eh-91-wb
"""

from __future__ import annotations

import statistics
from pathlib import Path


from latenthdr import exposure, merge, pipeline
from latenthdr.bench import l2h
from latenthdr.cli.bench import experiment_parser, BracketCache, case_outputs, dataset_labels, load_references
from latenthdr.pipeline import LatentHDRPipeline


def main() -> None:
    parser = experiment_parser(__doc__)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--frames", default="1,0,-1", help="EV limits at clipped pixels to try")
    parser.add_argument("--tiles", default="16/8,16/0,32/0", help="tile/calibration-every pairs to try")
    parser.add_argument("--max-ev", type=float, default=0.0, help="the frame limit of the tiles variants")
    args = parser.parse_args()
    evs = exposure.parse_ev_ladder(args.evs)
    pipe = LatentHDRPipeline.from_pretrained(codec=args.codec, head=args.head)
    cache = BracketCache(args.cache, pipe, args.head)
    options = pipe.merge_options
    results: dict[str, list[tuple[str, float, float]]] = {}
    for folder, label in zip(args.data, dataset_labels(args.data)):
        for name, H in load_references(folder, 0, 0, 1024):
            for clip in (float(c) for c in args.clip.split(",")):
                case = l2h.make_case(name, H, clip, label)
                base = l2h.score(l2h.linearised_input(case.ldr, evs), case)["pu21_psnr"]
                found = case_outputs(pipe, case, evs, cache, {})
                y, panorama = found["brackets"], found["panorama"]
                old = {k: v for k, v in options.items() if k != "max_ev"}
                full = merge.merge_with_input(case.ldr, y, evs, panorama=panorama, **old).hdr
                variants = {"all frames": dict(old)}
                for limit in (float(v) for v in args.frames.split(",") if v):
                    variants[f"frames<={limit:g}"] = {**old, "max_ev": limit}
                for pair in filter(None, args.tiles.split(",")):
                    tile, every = (int(v) for v in pair.split("/"))
                    pipeline.CALIBRATION_TILE_EVERY, pipe.decode_tile = every, tile
                    pipe.merge_options = {**old, "max_ev": args.max_ev}
                    decoded = pipe.decoded_pixels(case.ldr, evs, panorama)
                    variants[f"tiles {tile}/{every}"] = {**old, "max_ev": args.max_ev, "decoded": decoded}
                line = []
                for variant, kwargs in variants.items():
                    hdr = merge.merge_with_input(case.ldr, y, evs, panorama=panorama, **kwargs).hdr
                    gain = l2h.score(hdr, case)["pu21_psnr"] - base
                    moved = float((hdr.clamp_min(1e-12).log2() - full.clamp_min(1e-12).log2()).abs().max())
                    results.setdefault(variant, []).append((f"{label}/{name}@{clip:g}", gain, moved))
                    line.append(f"{variant} {gain:+.3f} ({moved:.3f} st)")
                print(f"{label}/{name} @ {clip:g}: " + ", ".join(line), flush=True)
    print("| variant | data | mean PU21 gain dB | worst dB | largest move, stops | largest PU21 move dB |")
    print("|---|---|---|---|---|---|")
    for variant, rows in results.items():
        for label in [*dataset_labels(args.data), "all"]:
            part = [(r, f) for r, f in zip(rows, results["all frames"]) if label == "all" or r[0].startswith(label + "/")]
            print(f"| {variant} | {label} | {statistics.fmean(r[1] for r, _ in part):+.3f} | "
                  f"{min(r[1] for r, _ in part):+.3f} | {max(r[2] for r, _ in part):.3f} | "
                  f"{max(abs(r[1] - f[1]) for r, f in part):.3f} |")


if __name__ == "__main__":
    main()
