"""The table of the trained-head ablations (benchmarks/ablation_heads.sh): one row per variant, from its run folder
(parameters, steps, time, the last validation on the 40 val samples) and its `bench l2h` record (21 val images at
512 px, 3% clipping). Writes JSON and Markdown, so that the record outlives runs/.

    .venv/bin/python benchmarks/ablation_heads_table.py --runs runs/ablation-heads \
        --json docs/results/ablations/heads.json --markdown docs/results/ablations/heads.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {  # name -> what it changes against the reference (benchmarks/ablation_heads.sh)
    "reference": "base preset, FiLM, unseen maps (the shipped recipe, shorter)",
    "no-film": "EV features as input channels, no FiLM",
    "tiny": "preset tiny",
    "small": "preset small",
    "large": "preset large",
    "no-unseen-maps": "no clipped/black maps",
    "frame-32": "+ the EV-0 frame through a 32-feature stem",
    "reference-seed1": "the reference with seed 1 (other samples, batches and initial weights)",
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs/ablation-heads")
    parser.add_argument("--records", default=str(ROOT / "docs" / "results" / "ablations"))
    parser.add_argument("--json", required=True)
    parser.add_argument("--markdown", required=True)
    args = parser.parse_args(argv)
    rows = [row(name, Path(args.runs) / name, Path(args.records) / f"head-{name}.json") for name in VARIANTS
            if (Path(args.runs) / name / "head.safetensors").is_file()]
    if not rows:
        raise SystemExit(f"ablation_heads_table: no finished run in {args.runs}")
    Path(args.json).write_text(json.dumps({"rows": rows}, indent=1) + "\n")
    Path(args.markdown).write_text(markdown(rows))
    print(markdown(rows))
    return 0


def row(name: str, run: Path, record_path: Path) -> dict:
    from latenthdr.models.head import load_head

    head = load_head(run / "head.safetensors")
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    vals = [r for r in log if r.get("kind") == "val"]
    merged = [r for r in vals if "merged_pu21_psnr" in r]
    out = {"variant": name, "change": VARIANTS[name], "parameters": sum(p.numel() for p in head.parameters()),
           "steps": max(r["step"] for r in log if "step" in r),
           "minutes": round(max(r.get("elapsed_s", 0.0) for r in log) / 60, 1),
           "val_identity_over_head": vals[-1]["identity_over_head"] if vals else None,
           "val_merged_pu21_psnr": merged[-1]["merged_pu21_psnr"] if merged else None,
           "config": json.loads((run / "config.json").read_text())["command"]}
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        summary = record["summary"]
        inputs = {r["image"]: r["pu21_psnr"] for r in record["rows"] if r["method"] == "input"}
        gains = [r["pu21_psnr"] - inputs[r["image"]] for r in record["rows"] if r["method"] == "head"]
        out["median_gain_db"] = statistics.median(gains)  # one image (an overcast sky) can swing the mean
        for dataset, key in (("all", "all"), ("hdri/val", "panoramas"), ("photos/val", "photographs")):
            entry = next(e for e in summary if e["method"] == "head" and e["dataset"] == dataset)
            out[f"gain_db_{key}"] = entry["psnr_gain_db"]
            if dataset == "all":
                out.update(worst_gain_db=entry["worst_psnr_gain_db"], clipped_error_ratio=entry["clipped_error_ratio"],
                           bench_identity_over_head=entry.get("identity_over_head"))
    return out


def markdown(rows: list[dict]) -> str:
    def f(value, spec, unit=""):
        return "" if value is None else format(value, spec) + unit

    lines = ["| variant | change | parameters | steps / min | val identity / head | ours vs input, all / panoramas / "
             "photographs dB | median image dB | worst image dB | clipped error | 21 images: identity / head |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        gains = " / ".join(f(r.get(f"gain_db_{k}"), "+.2f") for k in ("all", "panoramas", "photographs"))
        gains = gains if "gain_db_all" in r else ""
        lines.append(f"| {r['variant']} | {r['change']} | {r['parameters'] / 1e6:.2f} M | {r['steps']} / "
                     f"{r['minutes']} | {f(r['val_identity_over_head'], '.2f', 'x')} | {gains} | "
                     f"{f(r.get('median_gain_db'), '+.2f')} | {f(r.get('worst_gain_db'), '+.2f')} | {f(r.get('clipped_error_ratio'), '.2f', 'x')} | "
                     f"{f(r.get('bench_identity_over_head'), '.2f', 'x')} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
