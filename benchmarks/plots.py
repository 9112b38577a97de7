"""The PNG plots of docs/RESULTS.md, drawn from the benchmark records in docs/results (no model is run here).

    .venv/bin/python benchmarks/plots.py [--results docs/results] [--out docs/images]

Writes, each from the records named in its function:
- results-error-vs-ev.png: the head's latent error against EV beside the identity's (z0 for every EV), both
  latent spaces, pooled over the 21 val images at 3% clipping (`bench l2h` summaries);
- results-stops-hist.png: histograms of dynamic range in stops: text-to-HDR single pass against multi-pass per
  prompt (benchmarks/t2h.py), image-to-HDR per image against the reference and the input (`bench l2h` rows);
- results-speed-ladder.png: time per panorama of single pass and multi-pass against the ladder length, and their
  ratio (benchmarks/speed_ladder.sh);
- results-l2h-methods.png: PU21-PSNR gain over the linearised input of every method, per folder, at 3% clipping.

Needs matplotlib (the optional ``bench`` extra: ``pip install "latenthdr[bench]"``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
L2H_RECORDS = {"embedded": "l2h-embedded-baselines.json", "TAEF2": "l2h-taef2.json"}
T2H_RECORD = "t2h-embedded.json"
LADDER_RECORDS = "speed-ladder/frames-*.json"
METHOD_LABELS = {"head": "ours", "decoded-only": "ours, decoded-only merge", "akyuz2007": "Akyuz 2007",
                 "huo2014": "Huo 2014", "highlight-boost": "highlight boost", "expandnet": "ExpandNet",
                 "oracle": "oracle"}
FOLDER_LABELS = {"hdri/val": "panoramas (15)", "photos/val": "photographs (6)", "all": "all 21"}
CLIP = 0.03


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(ROOT / "docs" / "results"), help="folder of the JSON records")
    parser.add_argument("--out", default=str(ROOT / "docs" / "images"), help="folder the PNGs are written to")
    args = parser.parse_args(argv)
    try:
        import matplotlib
    except ImportError:
        raise SystemExit('plots: needs matplotlib (pip install "latenthdr[bench]")') from None
    matplotlib.use("Agg")
    results, out = Path(args.results), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, draw in (("results-error-vs-ev.png", error_vs_ev), ("results-stops-hist.png", stops_histograms),
                       ("results-speed-ladder.png", speed_ladder), ("results-l2h-methods.png", l2h_methods)):
        figure = draw(results)
        save(figure, out / name)
        print(out / name)
    return 0


def read(path: Path) -> dict:
    if not path.is_file():
        raise SystemExit(f"plots: {path} is missing; the command that writes it is in docs/RESULTS.md")
    return json.loads(path.read_text())


def summary_entry(record: dict, method: str, dataset: str = "all", clip: float = CLIP) -> dict:
    for entry in record["summary"]:
        if (entry["method"], entry["dataset"], entry["clip_fraction"]) == (method, dataset, clip):
            return entry
    raise SystemExit(f"plots: no summary row for {method} on {dataset} at {clip:.0%} clipping")


def error_vs_ev(results: Path):
    """Latent MSE per EV of the head and of the identity, one panel per latent space."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(L2H_RECORDS), figsize=(10, 3.6), sharey=False)
    for ax, (space, name) in zip(axes, L2H_RECORDS.items()):
        record = read(results / name)
        entry = summary_entry(record, "head")
        evs = record["evs"]
        identity = [v if v > 0 else float("nan") for v in entry["identity_latent_mse_per_ev"]]  # 0 at EV 0
        ax.semilogy(evs, identity, "o--", color="0.5", label="identity (z0 for every EV; exact at EV 0)")
        ax.semilogy(evs, entry["latent_mse_per_ev"], "o-", color="C0", label="exposure head")
        ax.set(title=f"{space}: identity / head {entry['identity_over_head']:.2f}x",
               xlabel="EV (stops)", ylabel="latent MSE")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    figure.suptitle(f"Latent error against EV, 21 val images, {CLIP:.0%} clipped (bench l2h)", fontsize=10)
    return figure


def stops_histograms(results: Path):
    """Dynamic range (stops) per output: t2h single against multi-pass; l2h ours against reference and input."""
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    t2h = read(results / T2H_RECORD)
    single = [item["single"]["stops"] for item in t2h["items"]]
    multi = [item["multi"]["stops"] for item in t2h["items"]]
    bins = _bins(single + multi)
    left.hist(multi, bins=bins, alpha=0.6, color="0.5", label=f"multi-pass, mean {_mean(multi):.1f}")
    left.hist(single, bins=bins, alpha=0.6, color="C0", label=f"single pass (ours), mean {_mean(single):.1f}")
    left.set(title=f"text to HDR, {len(single)} prompts", xlabel="stops", ylabel="outputs")
    left.legend(fontsize=8)
    l2h = read(results / L2H_RECORDS["embedded"])
    rows = [r for r in l2h["rows"] if r["clip_fraction"] == CLIP]
    ours = [r["stops"] for r in rows if r["method"] == "head"]
    inputs = [r["stops"] for r in rows if r["method"] == "input"]
    reference = [r["ref_stops"] for r in rows if r["method"] == "input"]
    bins = _bins(ours + inputs + reference)
    right.hist(reference, bins=bins, histtype="step", lw=2, color="k", label=f"reference, mean {_mean(reference):.1f}")
    right.hist(inputs, bins=bins, alpha=0.5, color="0.5", label=f"linearised input, mean {_mean(inputs):.1f}")
    right.hist(ours, bins=bins, alpha=0.5, color="C0", label=f"ours (embedded), mean {_mean(ours):.1f}")
    right.set(title=f"image to HDR, {len(ours)} val images, {CLIP:.0%} clipped", xlabel="stops", ylabel="images")
    right.legend(fontsize=8)
    return figure


def speed_ladder(results: Path):
    """Time per panorama against the ladder length, single pass and multi-pass, and their ratio."""
    import matplotlib.pyplot as plt

    records = sorted((read(p) for p in results.glob(LADDER_RECORDS)), key=lambda r: len(r["evs"]))
    if not records:
        raise SystemExit(f"plots: no {LADDER_RECORDS} in {results}; benchmarks/speed_ladder.sh writes them")
    frames = [len(r["evs"]) for r in records]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.plot(frames, [r["multi"]["total_s"] for r in records], "o--", color="0.5", label="multi-pass")
    left.plot(frames, [r["single"]["total_s"] for r in records], "o-", color="C0", label="single pass (ours)")
    for stage, color in (("decode", "C1"), ("head", "C2")):
        left.plot(frames, [r["single"]["total_s"] * r["single"]["stage_share"][stage] for r in records], ":",
                  color=color, label=f"of which {stage}")
    left.set(title="time per panorama (1 thread, shared cores)", xlabel="frames in the ladder", ylabel="seconds")
    left.legend(fontsize=8)
    right.plot(frames, [r["ratio_multi_over_single"] for r in records], "o-", color="C0")
    right.set(title="multi-pass / single-pass time, one run per ladder", xlabel="frames in the ladder",
              ylabel="ratio", ylim=(0, None))
    for ax in (left, right):
        ax.set_xticks(frames)
        ax.grid(True, alpha=0.3)
    return figure


def l2h_methods(results: Path):
    """PU21-PSNR gain over the linearised input per method and folder (embedded default, 3% clipping)."""
    import matplotlib.pyplot as plt
    import numpy as np

    record = read(results / L2H_RECORDS["embedded"])
    methods = [m for m in METHOD_LABELS if any(e["method"] == m for e in record["summary"])]
    folders = list(FOLDER_LABELS)
    figure, ax = plt.subplots(figsize=(10, 3.8))
    width = 0.8 / len(folders)
    x = np.arange(len(methods))
    for i, folder in enumerate(folders):
        gains = [summary_entry(record, m, folder)["psnr_gain_db"] for m in methods]
        ax.bar(x + (i - (len(folders) - 1) / 2) * width, gains, width, label=FOLDER_LABELS[folder])
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(x, [METHOD_LABELS[m] for m in methods], fontsize=8)
    ax.set(ylabel="PU21-PSNR gain over the input (dB)",
           title=f"image to HDR, {CLIP:.0%} clipped: every method against the linearised input (embedded default)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return figure


def save(figure, path: Path) -> None:
    """Write the PNG through a temporary file, so that no half-written plot is left behind."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        figure.savefig(temporary, dpi=110, format="png")
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)
        plt.close(figure)


def _bins(values: list[float]) -> list[float]:
    low, high = int(min(values)), int(max(values)) + 1
    return list(range(low, high + 1))


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


if __name__ == "__main__":
    sys.exit(main())
