"""Selective against full decoding of image-to-HDR on real images: decode time, share of pixels decoded, and how
far the merged HDR moves (largest difference in stops, PU21-PSNR difference), from one run per image.

    .venv/bin/python benchmarks/selective_decode.py --codec taef2 --data ../shared/data/hdri/val \
        --data ../shared/data/photos/val --clip 0.03 --json runs/selective-taef2.json

Each case (the l2h protocol of bench/l2h.py: gamma 2.2, 8 bit, ``--clip`` of the pixels clipped, max side
``--max-side``) runs the pipeline twice in this process, selective (the default) then ``selective=False``
(every frame decoded whole, the same merge), and reports the ratio of their decode times. ``window_cells_fraction``:
the latent cells the windows hold, margins included, against the frame's; at 1 or more the selective path decodes
its frames (EV <= 0) whole.
"""

from __future__ import annotations

import json
import statistics
import time

import torch

from latenthdr import exposure
from latenthdr.bench import l2h
from latenthdr.cli.bench import experiment_parser, dataset_labels, load_references
from latenthdr.models.codecs import tile_runs, window_cells
from latenthdr.pipeline import LatentHDRPipeline


def main() -> None:
    parser = experiment_parser(__doc__)
    parser.add_argument("--max-side", type=int, default=1024)
    parser.add_argument("--limit", type=int, default=0, help="images per folder (0: all)")
    parser.add_argument("--tile", type=int, default=None, help="decode tile in latent cells (default: the pipeline's)")
    parser.add_argument("--json")
    args = parser.parse_args()
    evs = exposure.parse_ev_ladder(args.evs)
    pipe = LatentHDRPipeline.from_pretrained(codec=args.codec, head=args.head)
    if args.tile:
        pipe.decode_tile = args.tile
    rows = []
    for folder, label in zip(args.data, dataset_labels(args.data)):
        for name, H in load_references(folder, 0, args.limit, args.max_side):
            for clip in (float(c) for c in args.clip.split(",")):
                case = l2h.make_case(name, H, clip, label)
                timed = {}
                for selective in (True, False):
                    started = time.perf_counter()
                    out = pipe(case.ldr, evs=evs, selective=selective)
                    timed[selective] = (out, time.perf_counter() - started)
                (sel, t_sel), (full, t_full) = timed[True], timed[False]
                cells, frames = pipe.selective_plan(case.ldr, evs, sel.panorama)
                margin = pipe.codec.tail_radius if pipe.decode_margin is None else pipe.decode_margin
                windows = tile_runs(cells, pipe.decode_tile)
                moved = (sel.hdr.clamp_min(1e-12).log2() - full.hdr.clamp_min(1e-12).log2()).abs()
                row = {"image": f"{label}/{name}", "clip": clip, "size": list(case.ldr.shape[-2:]),
                       "decoded_fraction": float(sel.decoded.float().mean()) if sel.decoded is not None else 1.0,
                       "frames_decoded": len(frames),
                       "window_cells_fraction": window_cells(windows, margin, *cells.shape, sel.panorama) / cells.numel(),
                       "decode_s": {"selective": sel.timings["decode"], "full": full.timings["decode"]},
                       "total_s": {"selective": t_sel, "full": t_full},
                       "decode_ratio": full.timings["decode"] / max(sel.timings["decode"], 1e-9),
                       "largest_move_stops": float(moved.max()),
                       "pu21_difference_db": l2h.score(sel.hdr[0], case)["pu21_psnr"]
                       - l2h.score(full.hdr[0], case)["pu21_psnr"]}
                rows.append(row)
                print(f"{row['image']} @ {clip:g}: decoded {row['decoded_fraction']:.3f} of the pixels of "
                      f"{len(frames)} frames, windows {row['window_cells_fraction']:.2f} of the cells, decode "
                      f"{row['decode_s']['selective']:.2f} s vs {row['decode_s']['full']:.2f} s "
                      f"({row['decode_ratio']:.2f}x), moved {row['largest_move_stops']:.2e} stops, "
                      f"PU21 {row['pu21_difference_db']:+.2e} dB", flush=True)
    summary = {
        "images": len(rows), "codec": pipe.codec.space, "threads": torch.get_num_threads(),
        "decode_tile": pipe.decode_tile,
        "decode_s": {k: sum(r["decode_s"][k] for r in rows) for k in ("selective", "full")},
        "median_decoded_fraction": statistics.median(r["decoded_fraction"] for r in rows),
        "largest_move_stops": max(r["largest_move_stops"] for r in rows),
        "largest_pu21_difference_db": max(abs(r["pu21_difference_db"]) for r in rows),
    }
    summary["decode_ratio"] = summary["decode_s"]["full"] / max(summary["decode_s"]["selective"], 1e-9)
    print(json.dumps(summary, indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"summary": summary, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
