"""Text-to-HDR benchmark: single-pass LatentHDR (1 diffusion run + head) versus the multi-pass baseline (one
EV-conditioned diffusion run per EV), measured in one run on one machine (docs/t2h.md).

For every prompt of benchmarks/prompts.txt, with the same seed: generate single-pass, then multi-pass, timing
each stage (text encoding, diffusion, head, decode, merge); score both with stops, fallback fractions (plow,
phigh), cross-exposure consistency (metrics.bracket_consistency, stops) and, for panoramas, the seam error.
Writes a JSON report, a contact sheet of the tone-mapped single-pass outputs, and a sheet comparing the two
brackets of one panorama prompt.

    python benchmarks/t2h.py --out outputs/t2h-bench --json docs/t2h_bench.json \
        --contact docs/t2h_contact.png --brackets docs/t2h_brackets.png --threads 2
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from pathlib import Path

import torch

from latenthdr import exposure, metrics, tonemap
from latenthdr.cli.generate import item_seed, read_prompts
from latenthdr.pipeline import LatentHDRPipeline

STAGES = ("text_encoding", "diffusion", "head", "decode", "merge")
TILE = (128, 256)  # contact-sheet tile, pixels (height, width)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prompts", default=str(Path(__file__).with_name("prompts.txt")))
    p.add_argument("--codec", help="codec spec (default: the embedded codec)")
    p.add_argument("--prior", help="prior file (default: the shipped prior)")
    p.add_argument("--head", help="head file (default: the shipped head)")
    p.add_argument("--evs", default="-7:5:1")
    p.add_argument("--steps", type=int, help="denoising steps (default: the prior's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--limit", type=int, help="only the first N prompts")
    p.add_argument("--json", default="outputs/t2h_bench.json")
    p.add_argument("--contact", help="contact sheet PNG of the single-pass outputs")
    p.add_argument("--brackets", help="PNG of the single- and multi-pass brackets of the first panorama prompt")
    return p.parse_args()


def run_one(pipe, prompt: str, panorama: bool, seed: int, evs, multipass: bool, steps) -> dict:
    options = {"num_inference_steps": steps} if steps else {}
    start = time.perf_counter()
    out = pipe.generate(prompt, evs=evs, panorama=panorama, generator=torch.Generator().manual_seed(seed),
                        multipass=multipass, **options)
    total = time.perf_counter() - start
    hdr, y = out.hdr[0], out.brackets[0]
    record = {"total_s": total, "timings_s": dict(out.timings), "diffusion_runs": out.diffusion_runs,
              "stops": metrics.stops(hdr), "plow": out.plow[0], "phigh": out.phigh[0],
              "consistency_stops": metrics.bracket_consistency(y, evs)}
    if panorama:
        seam = metrics.seam_error(hdr)
        record["seam"], record["seam_adjacent"], record["seam_ratio"] = seam["seam"], seam["adjacent"], seam["ratio"]
        # pairs (j, j+1) with (j + 1) % block == 0 are at the seam's phase of the latent grid; cell borders are
        # shifted by the pipeline's seam shift (half a cell for generated panoramas)
        block, shift = pipe.codec.downscale, out.seam_shift_px
        record["seam_block_boundary"] = column_phase_step(hdr, block, -shift % block)
        record["seam_same_phase"] = column_phase_step(hdr, block, 0)
    return record, out


def column_phase_step(H: torch.Tensor, block: int, phase: int) -> float:
    """Mean column step (stops, the measure of metrics.seam_error) over the column pairs j -> j + 1 with
    (j + 1) % block == phase. Phase 0 is the seam's own phase (W is a multiple of the block), so it is the
    like-for-like reference for the seam; the phase of the decoder's cell borders gives its block-edge step."""
    Y = (0.2126 * H[0] + 0.7152 * H[1] + 0.0722 * H[2]).double().clamp_min(0)
    D = torch.log2(Y + 1e-3 * Y.mean() + torch.finfo(torch.float64).tiny)
    steps = (D[:, 1:] - D[:, :-1]).abs().mean(dim=0)  # steps[j]: column j -> j + 1
    j = torch.arange(steps.numel())
    return steps[(j + 1) % block == phase].mean().item()


def summarise(rows: list[dict], key: str) -> dict:
    """Means (and std where useful) of one method's records ("single" or "multi")."""
    recs = [r[key] for r in rows]
    finite = lambda name: [r[name] for r in recs if r.get(name) is not None and math.isfinite(r[name])]  # noqa: E731
    out = {"total_s": sum(r["total_s"] for r in recs) / len(recs),
           "stage_s": {s: sum(r["timings_s"].get(s, 0.0) for r in recs) / len(recs) for s in STAGES},
           "diffusion_runs": recs[0]["diffusion_runs"],
           "stops_mean": _mean(finite("stops")), "stops_std": statistics.pstdev(finite("stops") or [math.nan]),
           "plow_mean": _mean(finite("plow")), "phigh_mean": _mean(finite("phigh")),
           "consistency_stops_mean": _mean(finite("consistency_stops")),
           "consistency_measured": len(finite("consistency_stops"))}
    out["stage_share"] = {s: v / out["total_s"] for s, v in out["stage_s"].items()}
    seams = [r for r in recs if "seam" in r]
    if seams:
        out["seam_mean"] = statistics.mean(r["seam"] for r in seams)
        out["seam_adjacent_mean"] = statistics.mean(r["seam_adjacent"] for r in seams)
        out["seam_block_boundary_mean"] = statistics.mean(r["seam_block_boundary"] for r in seams)
        out["seam_same_phase_mean"] = statistics.mean(r["seam_same_phase"] for r in seams)
        out["seam_not_above_block_boundary"] = sum(r["seam"] <= r["seam_block_boundary"] for r in seams)
        out["seam_not_above_adjacent"] = sum(r["seam"] <= r["seam_adjacent"] for r in seams)
        out["panoramas"] = len(seams)
    return out


def _finite(value):
    """JSON-safe copy: NaN (nothing measurable) becomes null."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _mean(values: list[float]) -> float:
    return statistics.mean(values) if values else math.nan


def tile(hdr: torch.Tensor) -> torch.Tensor:
    """Tone-mapped [3, 128, 256] tile: panoramas resized, perspective views letterboxed."""
    image = tonemap.tonemap(hdr, "aces", exposure_ev=tonemap.auto_exposure_ev(hdr))
    h, w = image.shape[-2:]
    scale = min(TILE[0] / h, TILE[1] / w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    small = torch.nn.functional.interpolate(image[None], size=size, mode="area")[0]
    canvas = torch.full((3, *TILE), 0.08)
    top, left = (TILE[0] - size[0]) // 2, (TILE[1] - size[1]) // 2
    canvas[:, top: top + size[0], left: left + size[1]] = small
    return canvas.clamp(0, 1)


def main() -> None:
    from latenthdr import io

    args = parse_args()
    torch.set_num_threads(args.threads)
    evs = exposure.parse_ev_ladder(args.evs)
    items = read_prompts(args.prompts)[: args.limit]
    t0 = time.perf_counter()
    pipe = LatentHDRPipeline.from_pretrained(codec=args.codec, head=args.head, scene=args.prior or "embedded")
    load_s = time.perf_counter() - t0
    run_one(pipe, "warm-up", True, 0, evs, False, args.steps)  # first-call costs (allocations, text cache)
    rows, tiles, labels, bracket_pair = [], [], [], None
    for index, item in enumerate(items):
        seed = item_seed(args.seed, index)
        panorama = item.get("panorama", False)
        single, out_single = run_one(pipe, item["prompt"], panorama, seed, evs, False, args.steps)
        multi, out_multi = run_one(pipe, item["prompt"], panorama, seed, evs, True, args.steps)
        rows.append({"index": index, "prompt": item["prompt"], "panorama": panorama, "seed": seed,
                     "size": list(out_single.hdr.shape[-2:]), "single": single, "multi": multi,
                     "ratio": multi["total_s"] / single["total_s"]})
        tiles.append(tile(out_single.hdr[0]))
        labels.append(f"{index:02d} {'pano' if panorama else 'persp'}: {item['prompt'][:34]}")
        if panorama and bracket_pair is None:
            bracket_pair = (out_single.brackets[0], out_multi.brackets[0], item["prompt"])
    report = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "torch_threads": args.threads, "torch": torch.__version__},
              "evs": list(evs), "prompts": len(rows), "load_models_s": load_s,
              "models": {"space": pipe.codec.space, "prior": args.prior or "shipped", "head": args.head or "shipped"},
              "single": summarise(rows, "single"), "multi": summarise(rows, "multi"), "items": rows}
    report["ratio_multi_over_single"] = report["multi"]["total_s"] / report["single"]["total_s"]
    report["ratio_median_per_prompt"] = statistics.median(r["ratio"] for r in rows)
    s = report["single"]["stage_s"]
    report["head_plus_merge_share_of_single"] = (s["head"] + s["merge"]) / report["single"]["total_s"]
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(_finite(report), indent=1, default=float, allow_nan=False) + "\n")
    if args.contact:
        sheet = tonemap.contact_sheet(torch.stack(tiles), labels, columns=4, max_tile_width=TILE[1])
        io.write_png(args.contact, io.to_numpy(sheet), overwrite=True)
    if args.brackets and bracket_pair is not None:
        single_y, multi_y, prompt = bracket_pair
        names = [f"1-pass {e:+g}" for e in evs] + [f"{len(evs)}-pass {e:+g}" for e in evs]
        sheet = tonemap.contact_sheet(torch.cat([single_y, multi_y]), names, columns=len(evs), max_tile_width=160)
        io.write_png(args.brackets, io.to_numpy(sheet), overwrite=True)
    keys = ("total_s", "consistency_stops_mean", "stops_mean", "plow_mean", "phigh_mean", "seam_mean",
            "seam_adjacent_mean", "seam_block_boundary_mean", "seam_same_phase_mean")
    print(json.dumps({"ratio_multi_over_single": report["ratio_multi_over_single"],
                      "head_plus_merge_share_of_single": report["head_plus_merge_share_of_single"],
                      "single": {k: report["single"].get(k) for k in keys}
                      | {"stage_share": report["single"]["stage_share"]},
                      "multi": {k: report["multi"].get(k) for k in keys}}, indent=1, default=float))


if __name__ == "__main__":
    main()
