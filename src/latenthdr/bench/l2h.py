"""LDR-to-HDR benchmark: the SI-HDR protocol (Hanji et al. 2022; DESIGN.md "Evaluation") on held-out HDR files.

For each reference HDR and each clipped fraction c:
1. anchor the reference so a fraction c of its pixels clip at EV 0 (``exposure.anchor``), giving ``ref``;
2. make the LDR input as the paper's bracket frame at EV 0: 8-bit gamma-2.2 (``exposure.synthesize_bracket``);
3. reconstruct with each method, align its global scale to ``ref`` over the input's well-exposed pixels
   (``metrics.align_scale``), then score: stops (METHOD.md), PU21-PSNR (SI-HDR peak mapping, 4000 cd/m2) and the
   RMS error in stops of luminance over the input's clipped pixels (any channel at code 255), and the share of
   the clipped pixels' true luminance that the reconstruction gives back (``clipped_energy``).
Methods: ``input`` (the linearised input: no expansion), ``oracle`` (the true bracket merged: the ceiling for any
head), and whatever reconstructions the caller passes (the head with the input-preserving merge, our default, and
with the paper's decoded-only merge). Cases carry the folder they came from; ``summarise`` reports per folder and
pooled, with each method's worst image against its linearised input.
A method may also return scores of its own with its reconstruction: the head reports its latent error against the
identity baseline (``latent_errors``), which ``summarise`` pools over images.
This is the SI-HDR-like protocol; ``bench.camera`` makes cases of the camera-like one (noise, a camera response the
methods are not told, JPEG), scored the same way, with the input linearised by the curve the case names
(``Case.input_curve``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from latenthdr import exposure, metrics, response
from latenthdr.baselines import linearised, oracle as oracle_baseline



@dataclass(frozen=True)
class Case:
    """One benchmark input. ref: [3,H,W] linear anchored reference; ldr: [3,H,W] 8-bit display-encoded input.
    ``dataset``: the folder it came from (results are reported per folder and pooled). ``input_curve``: the display
    curve the methods assume for ``ldr`` (the SI-HDR-like protocol: gamma2.2, the true one); ``camera``: the camera
    the camera-like protocol drew for this case (``bench.camera``), None for the SI-HDR-like one; ``clipped``:
    bool [H,W], the pixels the input lost to clipping where ``ldr`` alone does not say (a JPEG moves saturated codes
    off 255), None: the pixels of ``ldr`` with a channel at code 255 (``clipped_mask``)."""

    name: str
    clip_fraction: float
    ref: torch.Tensor
    ldr: torch.Tensor
    dataset: str = ""
    input_curve: str = "gamma2.2"
    camera: dict | None = field(default=None, compare=False)
    clipped: torch.Tensor | None = field(default=None, compare=False)


def make_case(name: str, H: torch.Tensor, clip_fraction: float, dataset: str = "") -> Case:
    """Anchor ``H`` [3,H,W] so ``clip_fraction`` of its pixels clip at EV 0 and make the 8-bit input."""
    ref, _ = exposure.anchor(H, clipped_fraction=clip_fraction)
    ldr = exposure.synthesize_bracket(ref, [0.0], curve="gamma2.2", bits=8)[0]
    return Case(name, clip_fraction, ref, ldr, dataset)


# (case, evs) -> hdr [3,H,W] from case.ldr alone, or (hdr, extra scores of the method for this case)
Reconstructor = Callable[[Case, Sequence[float]], torch.Tensor | tuple[torch.Tensor, dict]]


def clipped_mask(ldr: torch.Tensor) -> torch.Tensor:
    """Pixels [..., H, W] whose 8-bit input has any channel saturated."""
    return ldr.amax(dim=-3) >= exposure.CLIPPED_DISPLAY


def score(pred: torch.Tensor, case: Case, peak_nits: float = metrics.DEFAULT_PEAK_NITS) -> dict:
    """Align ``pred`` [3,H,W] to the reference over the input's well-exposed pixels, then score it."""
    well = metrics.well_exposed_mask(case.ldr)
    aligned = pred * metrics.align_scale(pred, case.ref, well)
    clipped = clipped_mask(case.ldr) if case.clipped is None else case.clipped
    error = metrics.log_error_stops(aligned, case.ref, clipped) if clipped.any() else {"rms": float("nan")}
    scores = {
        "stops": metrics.stops(aligned),
        "pu21_psnr": metrics.pu21_psnr(aligned, case.ref, peak_nits=peak_nits),
        "clipped_rms_stops": error["rms"],
        "clipped_energy": clipped_energy(aligned, case.ref, clipped),
    }
    if abs(pred.shape[-1] - 2 * pred.shape[-2]) <= 1:  # a 2:1 panorama: how its +-180 degree seam compares
        seam = metrics.seam_error(aligned)
        scores.update(seam_stops=seam["seam"], adjacent_stops=seam["adjacent"])
    return scores


def clipped_energy(pred: torch.Tensor, ref: torch.Tensor, clipped: torch.Tensor) -> float:
    """The light the input lost that a reconstruction gives back: sum of luminance over the clipped pixels,
    pred / ref (1: all of it; the linearised input's value is what clipping kept). What a renderer lit by the
    HDR sees of its sun and lamps, which a per-pixel metric such as PU21-PSNR hardly weighs."""
    if not clipped.any():
        return float("nan")
    Y = [response.luminance(x.double(), channel_axis=-3)[..., clipped].sum() for x in (pred, ref)]
    return float(Y[0] / Y[1])


def linearised_input(ldr: torch.Tensor, evs: Sequence[float], curve: str = "gamma2.2") -> torch.Tensor:
    """Baseline with no expansion: the input's display curve inverted (clipped pixels stay at 1)."""
    return linearised.linearised_input(ldr, curve=curve)


def pipeline_input(case: Case, curve: str = "gamma2.2") -> torch.Tensor:
    """The case's input as a pipeline trained on ``curve`` frames takes it (``cli.convert.load_input``'s conversion):
    linearised with the case's assumed ``input_curve``, re-encoded with ``curve``; ``case.ldr`` itself when the two
    curves are the same."""
    if case.input_curve == curve:
        return case.ldr
    return response.encode(response.decode(case.ldr.float(), case.input_curve), curve).float()


def oracle(case: Case, evs: Sequence[float]) -> torch.Tensor:
    """The ceiling: the true 8-bit bracket of the reference, merged with METHOD.md Eq. 9."""
    return oracle_baseline.oracle(case.ref, evs)


def latent_errors(z: torch.Tensor, z0: torch.Tensor, targets: torch.Tensor) -> dict:
    """Mean squared latent error per EV (per latent element, as in head training) of the head's latents z
    [K,C,h,w] and of the identity baseline (z0 [C,h,w] for every EV), against ``targets`` [K,C,h,w]: the
    encoded true 8-bit bracket (METHOD.md Eq. 4's mu(y_e))."""
    head = (z.float() - targets).square().mean(dim=(1, 2, 3))
    identity = (z0.float()[None] - targets).square().mean(dim=(1, 2, 3))
    return {"latent_mse": head.tolist(), "identity_latent_mse": identity.tolist()}


def true_bracket(case: Case, evs: Sequence[float]) -> torch.Tensor:
    """The reference's true 8-bit gamma-2.2 bracket [K,3,H,W]: what the oracle merges and the head's targets."""
    return oracle_baseline.true_bracket(case.ref, evs)


def run(
    cases: Sequence[Case], evs: Sequence[float], methods: Mapping[str, Reconstructor], progress=None
) -> list[dict]:
    """Score ``input``, ``oracle`` and every method on every case; one row per (case, method)."""
    rows = []
    for case in cases:
        preds = {"input": linearised_input(case.ldr, evs, case.input_curve), "oracle": oracle(case, evs)}
        preds.update({name: fn(case, evs) for name, fn in methods.items()})
        camera = {} if case.camera is None else {"camera": case.camera}
        for method, pred in preds.items():
            pred, extra = pred if isinstance(pred, tuple) else (pred, {})
            rows.append({"dataset": case.dataset, "image": case.name, "clip_fraction": case.clip_fraction,
                         "method": method,
                         "ref_stops": metrics.stops(case.ref), **score(pred, case), **extra, **camera})
        if progress is not None:
            progress(case)
    return rows


POOLED = "all"  # the dataset label of the rows pooled over every folder


def summarise(rows: Sequence[dict]) -> list[dict]:
    """Mean of each metric per (dataset, clip fraction, method), and pooled over the datasets when there are
    several (dataset ``POOLED``: every image has the same weight); each method's gain over the linearised input,
    and its worst image: the lowest PU21-PSNR gain over the same image's linearised input."""
    datasets = list(dict.fromkeys(r.get("dataset", "") for r in rows))
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        keys = [row.get("dataset", "")] + ([POOLED] if len(datasets) > 1 else [])
        for dataset in keys:
            groups.setdefault((dataset, row["clip_fraction"], row["method"]), []).append(row)
    table = []
    for (dataset, clip, method), group in groups.items():
        entry = {"dataset": dataset, "clip_fraction": clip, "method": method, "n": len(group)}
        for key in ("stops", "ref_stops", "pu21_psnr", "clipped_rms_stops", "clipped_energy", "seam_stops",
                    "adjacent_stops"):
            values = [r[key] for r in group if key in r and math.isfinite(r[key])]
            entry[key] = statistics.fmean(values) if values else float("nan")
        # per image, not of the means: a method can match the mean range and miss every image
        entry["stops_abs_error"] = statistics.fmean(abs(r["stops"] - r["ref_stops"]) for r in group)
        if all("latent_mse" in r for r in group):
            entry.update(_pooled_latent_errors(group))
        table.append(entry)
    for entry in table:
        key = (entry["dataset"], entry["clip_fraction"])
        base = next(e for e in table if (e["dataset"], e["clip_fraction"]) == key and e["method"] == "input")
        entry["psnr_gain_db"] = entry["pu21_psnr"] - base["pu21_psnr"]
        entry["clipped_error_ratio"] = entry["clipped_rms_stops"] / base["clipped_rms_stops"]
        gains = per_image_gains(groups[(*key, entry["method"])], groups[(*key, "input")])
        worst = min(gains, key=lambda g: g["psnr_gain_db"])
        entry.update(worst_image=worst["image"], worst_psnr_gain_db=worst["psnr_gain_db"])
    return table


def per_image_gains(method_rows: Sequence[dict], input_rows: Sequence[dict]) -> list[dict]:
    """Per image: the method's PU21-PSNR gain over the linearised input and its clipped error ratio."""
    inputs = {(r.get("dataset", ""), r["image"], r["clip_fraction"]): r for r in input_rows}
    gains = []
    for row in method_rows:
        base = inputs[(row.get("dataset", ""), row["image"], row["clip_fraction"])]
        ratio = row["clipped_rms_stops"] / base["clipped_rms_stops"] if base["clipped_rms_stops"] else float("nan")
        gains.append({"dataset": row.get("dataset", ""), "image": row["image"], "clip_fraction": row["clip_fraction"],
                      "psnr_gain_db": row["pu21_psnr"] - base["pu21_psnr"], "clipped_error_ratio": ratio})
    return gains


def _pooled_latent_errors(group: Sequence[dict]) -> dict:
    """Latent MSE pooled over the images (every image has the same weight), per EV and over the whole ladder,
    and identity / head: how many times below the identity baseline the head's latent error is."""
    head = [statistics.fmean(values) for values in zip(*(r["latent_mse"] for r in group))]
    identity = [statistics.fmean(values) for values in zip(*(r["identity_latent_mse"] for r in group))]
    return {"latent_mse": statistics.fmean(head), "identity_latent_mse": statistics.fmean(identity),
            "identity_over_head": statistics.fmean(identity) / statistics.fmean(head),
            "latent_mse_per_ev": head, "identity_latent_mse_per_ev": identity}


def markdown_table(table: Sequence[dict]) -> str:
    """The summary as a Markdown table (for docs/)."""
    lines = ["| data | clip | method | n | stops (ref) | per-image stops error | PU21-PSNR dB | vs input dB | "
             "worst image vs input dB | clipped RMS stops | vs input | clipped energy recovered | "
             "seam / adjacent (stops) | latent error: identity / head |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in table:
        lines.append(
            f"| {e['dataset']} | {e['clip_fraction']:.0%} | {e['method']} | {e['n']} | "
            f"{e['stops']:.2f} ({e['ref_stops']:.2f}) | {e['stops_abs_error']:.2f} | "
            f"{e['pu21_psnr']:.2f} | {e['psnr_gain_db']:+.2f} | {e['worst_psnr_gain_db']:+.2f} ({e['worst_image']}) | "
            f"{e['clipped_rms_stops']:.3f} | {e['clipped_error_ratio']:.2f}x | {e['clipped_energy']:.3f} | "
            f"{e['seam_stops']:.3f} / {e['adjacent_stops']:.3f} | "
            + (f"{e['identity_latent_mse']:.4f} / {e['latent_mse']:.4f} = {e['identity_over_head']:.2f}x |"
               if "latent_mse" in e else "|")
        )
    return "\n".join(lines)


def markdown_per_image(rows: Sequence[dict], methods: Sequence[str]) -> str:
    """Per image and clip fraction: the linearised input's PU21-PSNR and each method's gain over it (dB) and
    clipped-error ratio, worst first by the first method's gain."""
    inputs = [r for r in rows if r["method"] == "input"]
    columns = {m: {(g["dataset"], g["image"], g["clip_fraction"]): g
                   for g in per_image_gains([r for r in rows if r["method"] == m], inputs)} for m in methods}
    header = "| data | image | clip | input PU21 dB | " + " | ".join(f"{m} vs input dB / clipped" for m in methods)
    lines = [header + " |", "|" + "---|" * (4 + len(methods))]
    keys = sorted(columns[methods[0]], key=lambda k: columns[methods[0]][k]["psnr_gain_db"])
    base = {(r.get("dataset", ""), r["image"], r["clip_fraction"]): r["pu21_psnr"] for r in inputs}
    for key in keys:
        cells = [f"{columns[m][key]['psnr_gain_db']:+.2f} / {columns[m][key]['clipped_error_ratio']:.2f}x"
                 for m in methods]
        lines.append(f"| {key[0]} | {key[1]} | {key[2]:.0%} | {base[key]:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
