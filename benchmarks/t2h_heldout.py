"""Held-out text-to-HDR prompt benchmark for the embedded prior (or a given prior file).

Generates every prompt of benchmarks/heldout_prompts.json as a 512x256 panorama (one seed) and scores:
- coherence: block-edge step / adjacent step of log2 luminance (latent-cell borders vs all other neighbour pairs),
  with the codec's own ratio on 3 val panoramas (EV-0 8-bit frame encoded and decoded) as a reference;
- seam: metrics.seam_error (as benchmarks/t2h.py) vs the mean adjacent-column step;
- sun (sunlit-outdoor prompts): a small (<= 1% of pixels) connected region >= 2^10 x the median luminance; stops
  (log2 P99/P1) and full range log2(max/P1);
- adherence: nearest training panorama (descriptor: 16x8 tone-mapped RGB grid + 16-bin log-luminance histogram)
  and its category (benchmarks/train_categories.json) vs the prompt's category; leave-one-out accuracy of the
  training panoramas themselves as a reference;
- not a copy: every output's nearest training distance above the 5th percentile of train-train distances.

    python benchmarks/t2h_heldout.py --threads 1 --json docs/results/t2h-heldout-prior-v1.json \
        --contact docs/results/t2h-heldout-prior-v1.png
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from t2h import _finite, column_phase_step, tile  # noqa: E402

from latenthdr import exposure, metrics  # noqa: E402

CATEGORIES = ("sunlit outdoor", "overcast outdoor", "night outdoor", "interior", "studio", "nature")
DATA = ROOT.parent / "shared" / "data" / "hdri"
SIZE = (256, 512)  # panorama height, width
SUN_FACTOR = 2.0 ** 10
SUN_MAX_FRACTION = 0.01
HIST_BINS, HIST_RANGE = 16, (-8.0, 8.0)  # log2 luminance relative to the median
GRID = (16, 8)  # descriptor grid, (width, height) as cv2 takes it
FLOORS = {"coherence_ratio_max": 1.3, "sun_fraction_min": 0.8, "sun_stops_mean_min": 12.0,
          "adherence_accuracy_min": 0.7}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prior", help="prior file (default: the shipped prior)")
    p.add_argument("--codec", help="codec spec (default: the embedded codec)")
    p.add_argument("--head", help="head file (default: the shipped head)")
    p.add_argument("--prompts", default=str(HERE / "heldout_prompts.json"))
    p.add_argument("--evs", default="-7:5:1")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--limit", type=int, help="only the first N prompts")
    p.add_argument("--json", default="outputs/t2h-heldout.json")
    p.add_argument("--contact", help="contact sheet PNG, grouped by category, 5 per row")
    p.add_argument("--train-cache", default=str(ROOT / "outputs" / "heldout-train-descriptors.npz"))
    return p.parse_args(argv)


# ----------------------------------------------------------------------------------------------- measures

def _hwc(H) -> np.ndarray:
    """[3, H, W] torch/numpy or [H, W, 3] numpy -> float64 [H, W, 3]."""
    if isinstance(H, torch.Tensor):
        H = H.detach().cpu().double().numpy()
    H = np.asarray(H, dtype=np.float64)
    if H.ndim == 3 and H.shape[0] == 3 and H.shape[-1] != 3:
        H = H.transpose(1, 2, 0)
    return np.clip(H, 0.0, None)


def luminance(H) -> np.ndarray:
    from latenthdr import response

    return response.luminance(_hwc(H))


def log_luminance(H) -> np.ndarray:
    """log2(Y + 1e-3 mean(Y)), the measure of metrics.seam_error / t2h.column_phase_step."""
    Y = luminance(H)
    return np.log2(Y + 1e-3 * Y.mean() + np.finfo(np.float64).tiny)


def coherence(H, cell: int, shift: int = 0) -> dict:
    """Mean |d log2 Y| over neighbour pairs straddling a latent-cell border (columns (j+1) % cell == (-shift) %
    cell, rows (i+1) % cell == 0) vs over all other neighbour pairs, and their ratio."""
    D = log_luminance(H)
    dx = np.abs(D[:, 1:] - D[:, :-1])
    dy = np.abs(D[1:, :] - D[:-1, :])
    jx = np.arange(dx.shape[1])
    bx = np.broadcast_to(((jx + 1) % cell == (-shift) % cell)[None, :], dx.shape)
    iy = np.arange(dy.shape[0])
    by = np.broadcast_to(((iy + 1) % cell == 0)[:, None], dy.shape)
    border = np.concatenate([dx[bx], dy[by]])
    other = np.concatenate([dx[~bx], dy[~by]])
    block, adjacent = float(border.mean()), float(other.mean())
    return {"block_step": block, "adjacent_step": adjacent,
            "ratio": block / adjacent if adjacent > 0 else math.nan}


def find_sun(H, factor: float = SUN_FACTOR, max_fraction: float = SUN_MAX_FRACTION) -> dict:
    """A connected region (8-connectivity) of pixels with Y >= factor x median(Y) covering <= max_fraction of
    the image; reports the largest such region."""
    import cv2

    Y = luminance(H)
    med = float(np.median(Y))
    mask = (Y >= factor * max(med, np.finfo(np.float64).tiny)).astype(np.uint8)
    found, size, peak = False, 0, float(Y.max() / med) if med > 0 else math.inf
    if mask.any():
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        areas = stats[1:, cv2.CC_STAT_AREA]
        small = areas[areas <= max_fraction * Y.size]
        if small.size:
            found, size = True, int(small.max())
    return {"found": found, "pixels": size, "fraction": size / Y.size, "peak_over_median_log2":
            math.log2(peak) if 0 < peak < math.inf else None}


def dynamic_range(H) -> dict:
    Y = luminance(H)
    Y = Y[Y > 0]
    p1 = float(np.percentile(Y, 1.0))
    t = torch.from_numpy(_hwc(H).transpose(2, 0, 1).copy())
    return {"stops": metrics.stops(t), "full_range": math.log2(float(Y.max()) / p1)}


def descriptor(H) -> np.ndarray:
    """384 values (16x8 grid of RGB of the tone-mapped image: exposure normalised to log-mean luminance 0.18,
    clipped to [0, 1], gamma 1/2.2, INTER_AREA) + a 16-bin normalised histogram of log2(Y / median(Y))."""
    import cv2

    H = _hwc(H)
    Y = luminance(H)
    eps = 1e-6 * max(Y.mean(), np.finfo(np.float64).tiny)
    logmean = math.exp(float(np.mean(np.log(Y + eps))))
    display = np.clip(H * (0.18 / logmean), 0.0, 1.0) ** (1 / 2.2)
    grid = cv2.resize(display.astype(np.float32), GRID, interpolation=cv2.INTER_AREA).reshape(-1)
    med = max(float(np.median(Y)), eps)
    rel = np.clip(np.log2(Y + eps) - math.log2(med), *HIST_RANGE)
    hist, _ = np.histogram(rel, bins=HIST_BINS, range=HIST_RANGE)
    hist = hist / max(hist.sum(), 1)
    return np.concatenate([grid.astype(np.float64), hist.astype(np.float64)])


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))


# ----------------------------------------------------------------------------------------------- data

def read_resized(path: Path) -> np.ndarray:
    """An HDR file as float32 [256, 512, 3] (cv2.INTER_AREA)."""
    import cv2

    from latenthdr import io

    pixels = io.read_hdr(path).pixels
    return cv2.resize(pixels, (SIZE[1], SIZE[0]), interpolation=cv2.INTER_AREA)


def train_descriptors(cache: Path) -> tuple[list[str], np.ndarray]:
    names = sorted(p.name for p in (DATA / "train").iterdir() if p.suffix.lower() in (".hdr", ".exr"))
    if cache.exists():
        data = np.load(cache, allow_pickle=False)
        if list(data["names"]) == names:
            return names, data["descriptors"]
    desc = np.stack([descriptor(read_resized(DATA / "train" / n)) for n in names])
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, names=np.array(names), descriptors=desc)
    return names, desc


def codec_reference(pipe, count: int = 3) -> dict:
    """Coherence ratio of the codec itself: the EV-0 8-bit frame of an anchored val panorama, encoded and decoded
    (no shift), vs the same measure on the frame before the codec."""
    from latenthdr import response

    files = sorted(p for p in (DATA / "val").iterdir() if p.suffix.lower() in (".hdr", ".exr"))[:count]
    rows = []
    for f in files:
        H = torch.from_numpy(read_resized(f).transpose(2, 0, 1).copy())[None]
        H, _ = exposure.anchor(H)
        y0 = exposure.synthesize_bracket(H, [0.0], pipe.curve)[:, 0]  # [1, 3, H, W], 8-bit levels
        with torch.inference_mode():
            z = pipe.codec.encode(y0, panorama=True)
            yd = pipe.codec.decode(z, panorama=True)[..., : SIZE[0], : SIZE[1]].clamp(0, 1)
        lin_in, lin_out = response.decode(y0, pipe.curve)[0], response.decode(yd, pipe.curve)[0]
        cin, cout = coherence(lin_in, pipe.codec.downscale), coherence(lin_out, pipe.codec.downscale)
        rows.append({"file": f.name, "decoded": cout, "input_frame": cin})
    return {"files": rows, "ratio_mean": float(np.mean([r["decoded"]["ratio"] for r in rows])),
            "input_ratio_mean": float(np.mean([r["input_frame"]["ratio"] for r in rows]))}


def contact_sheet(path: str, tiles: list, labels: list[str], categories: list[str]) -> None:
    import cv2

    th, tw = tiles[0].shape[-2:]
    label_h, per_row = 14, 5
    rows = []
    for cat in CATEGORIES:
        idx = [i for i, c in enumerate(categories) if c == cat]
        for start in range(0, len(idx), per_row):
            row = np.full((th + label_h, tw * per_row, 3), 20, np.uint8)
            for k, i in enumerate(idx[start: start + per_row]):
                img = (tiles[i].permute(1, 2, 0).numpy()[..., ::-1] * 255 + 0.5).astype(np.uint8)
                row[label_h:, k * tw: (k + 1) * tw] = img
                cv2.putText(row, labels[i][:40], (k * tw + 2, 10), cv2.FONT_HERSHEY_SIMPLEX, 0.32,
                            (230, 230, 230), 1, cv2.LINE_AA)
            rows.append(row)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.concatenate(rows)):
        raise OSError(f"could not write {path}")


def _sha256(path) -> str | None:
    from latenthdr.models.registry import sha256_of

    return sha256_of(Path(path)) if path and Path(path).is_file() else None


# ----------------------------------------------------------------------------------------------- main

def main(argv=None) -> dict:
    from latenthdr.pipeline import LatentHDRPipeline

    args = parse_args(argv)
    if not (DATA / "train").is_dir() or not (DATA / "val").is_dir():
        raise SystemExit(f"t2h_heldout: needs the training and val panoramas in {DATA}/train and {DATA}/val "
                         "(../shared/data/hdri beside the repository)")
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    evs = exposure.parse_ev_ladder(args.evs)
    spec = json.loads(Path(args.prompts).read_text())
    items = spec["prompts"][: args.limit]
    cats_spec = json.loads((HERE / "train_categories.json").read_text())["categories"]

    pipe = LatentHDRPipeline.from_pretrained(codec=args.codec, head=args.head, scene=args.prior or "embedded")
    origin = (pipe.origins or {}).get("scene")
    prior_path = args.prior or (origin.file if origin is not None else None)
    cell = pipe.codec.downscale

    names, train = train_descriptors(Path(args.train_cache))
    train_cats = [cats_spec.get(n) for n in names]
    dtrain = np.linalg.norm(train[:, None] - train[None], axis=-1)
    iu = np.triu_indices(len(names), 1)
    copy_threshold = float(np.percentile(dtrain[iu], 5))
    loo = dtrain + np.diag(np.full(len(names), np.inf))
    loo_nn = loo.argmin(axis=1)
    loo_acc = float(np.mean([train_cats[i] == train_cats[j] for i, j in enumerate(loo_nn)]))

    rows, tiles, labels = [], [], []
    for index, item in enumerate(items):
        t0 = time.perf_counter()
        out = pipe.generate(item["prompt"], evs=evs, panorama=True, generator=torch.Generator().manual_seed(args.seed))
        gen_s = time.perf_counter() - t0
        hdr = out.hdr[0].float()
        shift = out.seam_shift_px
        seam = metrics.seam_error(hdr)
        d = descriptor(hdr)
        dist = np.linalg.norm(train - d[None], axis=1)
        nn = int(dist.argmin())
        rec = {"index": index, "prompt": item["prompt"], "category": item["category"], "seed": args.seed,
               "generate_s": gen_s, "size": list(hdr.shape[-2:]), "seam_shift_px": shift,
               "coherence": coherence(hdr, cell, shift),
               "seam": {"seam": seam["seam"], "adjacent": seam["adjacent"], "ratio": seam["ratio"],
                        "block_boundary": column_phase_step(hdr, cell, -shift % cell)},
               **dynamic_range(hdr),
               "nearest": {"file": names[nn], "category": train_cats[nn], "distance": float(dist[nn])}}
        rec["nearest"]["category_match"] = rec["nearest"]["category"] == item["category"]
        rec["not_a_copy"] = rec["nearest"]["distance"] > copy_threshold
        if item["category"] == "sunlit outdoor":
            rec["sun"] = find_sun(hdr)
        rows.append(rec)
        tiles.append(tile(hdr))
        labels.append(f"{index:02d} {item['prompt']}")
        print(f"[{index + 1}/{len(items)}] {gen_s:.1f}s ratio {rec['coherence']['ratio']:.3f} "
              f"stops {rec['stops']:.1f} nn {rec['nearest']['category']} | {item['prompt']}", flush=True)

    reference = codec_reference(pipe)
    k = len(CATEGORIES)
    confusion = [[0] * k for _ in range(k)]
    for r in rows:
        if r["nearest"]["category"] in CATEGORIES:
            confusion[CATEGORIES.index(r["category"])][CATEGORIES.index(r["nearest"]["category"])] += 1
    sunlit = [r for r in rows if "sun" in r]
    ratios = [r["coherence"]["ratio"] for r in rows]
    near = [r["nearest"]["distance"] for r in rows]
    agg = {
        "outputs": len(rows),
        "coherence": {"ratio_mean": float(np.mean(ratios)), "ratio_max": float(np.max(ratios)),
                      "block_step_mean": float(np.mean([r["coherence"]["block_step"] for r in rows])),
                      "adjacent_step_mean": float(np.mean([r["coherence"]["adjacent_step"] for r in rows])),
                      "within_floor": sum(x <= FLOORS["coherence_ratio_max"] for x in ratios),
                      "codec_reference_ratio_mean": reference["ratio_mean"],
                      "codec_reference_input_ratio_mean": reference["input_ratio_mean"]},
        "seam": {"seam_mean": float(np.mean([r["seam"]["seam"] for r in rows])),
                 "adjacent_mean": float(np.mean([r["seam"]["adjacent"] for r in rows])),
                 "ratio_mean": float(np.mean([r["seam"]["ratio"] for r in rows])),
                 "not_above_adjacent": sum(r["seam"]["seam"] <= r["seam"]["adjacent"] for r in rows)},
        "dynamic_range": {"stops_mean": float(np.mean([r["stops"] for r in rows])),
                          "full_range_mean": float(np.mean([r["full_range"] for r in rows]))},
        "adherence": {"accuracy": float(np.mean([r["nearest"]["category_match"] for r in rows])),
                      "confusion_labels": list(CATEGORIES), "confusion": confusion,
                      "train_leave_one_out_accuracy": loo_acc, "train_panoramas": len(names)},
        "not_a_copy": {"threshold": copy_threshold, "nearest_min": float(np.min(near)),
                       "passing": sum(r["not_a_copy"] for r in rows), "of": len(rows)},
    }
    if sunlit:
        agg["sun"] = {"outputs": len(sunlit), "fraction_with_sun": float(np.mean([r["sun"]["found"] for r in sunlit])),
                      "stops_mean": float(np.mean([r["stops"] for r in sunlit])),
                      "full_range_mean": float(np.mean([r["full_range"] for r in sunlit]))}
    agg["floors"] = FLOORS
    agg["passes"] = {"coherence": agg["coherence"]["ratio_max"] <= FLOORS["coherence_ratio_max"],
                     "sun_fraction": bool(sunlit) and agg["sun"]["fraction_with_sun"] >= FLOORS["sun_fraction_min"],
                     "sun_stops": bool(sunlit) and agg["sun"]["stops_mean"] >= FLOORS["sun_stops_mean_min"],
                     "adherence": agg["adherence"]["accuracy"] >= FLOORS["adherence_accuracy_min"],
                     "not_a_copy": agg["not_a_copy"]["passing"] == len(rows)}
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "platform": platform.platform(), "torch": torch.__version__, "threads": args.threads,
              "command": " ".join([sys.executable, *sys.argv]) if argv is None else " ".join(argv),
              "prompts_file": args.prompts, "prior": prior_path, "prior_sha256": _sha256(prior_path),
              "evs": list(evs), "cell": cell, "aggregate": agg, "codec_reference": reference, "items": rows}
    report["total_s"] = time.perf_counter() - t_start
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(_finite(report), indent=1, default=float, allow_nan=False) + "\n")
    if args.contact and tiles:
        contact_sheet(args.contact, tiles, labels, [r["category"] for r in rows])
    print(json.dumps(_finite(agg), indent=1, default=float))
    return report


if __name__ == "__main__":
    main()
