"""The SI-HDR benchmark on a user's copy of the dataset (Hanji et al., "Comparison of single image HDR
reconstruction methods - the caveats of quality assessment", SIGGRAPH 2022; METHOD.md "SI-HDR benchmark").

The published layout (``read_layout``)::

    PATH/reference/NNN.exr                          linear HDR references (181 photographs, 1920x1280)
    PATH/input/clip_95/NNN.png, input/clip_97/...   8-bit LDR inputs; clip_9X: X% of the pixels are not clipped
    PATH/reconstructions/<method>/clip_9X/NNN.exr   (optional) the methods' reconstructions the dataset ships

For each image, clip level and method (``score``):
1. align the reconstruction's global scale to the reference over the input's well-exposed pixels (all channels in
   (0.02, 0.98); ``metrics.align_scale``, as ``bench.l2h.score``; over all pixels if the input has none): SI-HDR
   methods give relative radiance on scales of their own;
2. map both to the display (METHOD.md, the SI-HDR practice): multiply by 4000 cd/m2 / the reference's peak;
3. score PU21-PSNR and PU21-SSIM (``metrics``), then again after the CRF correction of Hanji et al. 2022
   (``bench.crf``) of the mapped reconstruction against the mapped reference.
Methods: ``input`` (the input linearised with the assumed display curve: no expansion, the floor), our pipeline on
the inputs (when the caller passes it), and every shipped reconstruction folder. METHOD.md: a PU21-PSNR gap under
3.5 dB is not significant on this dataset.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from latenthdr import io, metrics, response
from latenthdr.bench import crf
from latenthdr.errors import InputError

REFERENCE_DIR, INPUT_DIR, RECONSTRUCTIONS_DIR = "reference", "input", "reconstructions"
LEVELS = ("clip_95", "clip_97")
LAYOUT = "reference/*.exr, input/clip_95/*.png and input/clip_97/*.png"
ARGUMENT = "PATH"

# (ldr [3,H,W] display-encoded in [0,1], its assumed display curve) -> linear HDR [3,H,W]
Reconstructor = Callable[[torch.Tensor, str], torch.Tensor]


@dataclass(frozen=True)
class Layout:
    """The files of an SI-HDR folder. references: image name -> HDR; inputs: level -> name -> 8-bit input;
    reconstructions: method -> level -> name -> HDR (only the levels a method has a folder for)."""

    root: Path
    references: dict[str, Path]
    inputs: dict[str, dict[str, Path]]
    reconstructions: dict[str, dict[str, dict[str, Path]]]


def parse_levels(spec: str, argument: str = "--clip") -> list[str]:
    """Clip levels from "95,97" or "clip_95,clip_97" -> ["clip_95", "clip_97"] (the percentage of pixels kept)."""
    levels = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        kept = part.removeprefix("clip_")
        if not kept.isdigit() or not 50 <= int(kept) <= 99:
            raise InputError(argument, f"cannot read clip level {part!r}; accepted: the dataset's levels such as "
                                       "95,97 or clip_95,clip_97")
        levels.append(f"clip_{int(kept)}")
    if not levels or len(set(levels)) != len(levels):
        raise InputError(argument, f"got {spec!r}; give each clip level once, e.g. 95,97")
    return levels


def clip_fraction(level: str) -> float:
    """The fraction of pixels clipped at a level: clip_95 -> 0.05."""
    return round(1.0 - int(level.removeprefix("clip_")) / 100.0, 6)


def _files(folder: Path, extensions: Sequence[str]) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in extensions}


def read_layout(root, levels: Sequence[str] = LEVELS, limit: int = 0) -> Layout:
    """The SI-HDR files under ``root`` for ``levels``, the first ``limit`` references (0: all). A folder not in
    the published layout raises InputError naming what is missing."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(ARGUMENT, f"{root}: not a directory; expected the SI-HDR folder with {LAYOUT}")
    if not (root / REFERENCE_DIR).is_dir():
        raise InputError(ARGUMENT, f"{root}: no {REFERENCE_DIR}/ folder; expected the SI-HDR folder with {LAYOUT}")
    references = _files(root / REFERENCE_DIR, io.HDR_EXTENSIONS)
    if not references:
        raise InputError(ARGUMENT, f"{root / REFERENCE_DIR}: holds no .exr files; expected {LAYOUT}")
    references = dict(list(references.items())[: limit or None])
    inputs = {}
    for level in levels:
        folder = root / INPUT_DIR / level
        if not folder.is_dir():
            raise InputError(ARGUMENT, f"{folder}: missing; expected the 8-bit inputs {INPUT_DIR}/{level}/*.png "
                                       "(or pass --clip with the levels you have)")
        inputs[level] = _files(folder, io.LDR_EXTENSIONS)
        _require(inputs[level], references, folder, ".png", f"{REFERENCE_DIR}/{{name}} has no input at {level}")
    return Layout(root, references, inputs, _reconstructions(root / RECONSTRUCTIONS_DIR, references, levels))


def _reconstructions(folder: Path, references: Mapping[str, Path], levels: Sequence[str]) -> dict:
    if not folder.is_dir():
        return {}
    found = {}
    for method_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        present = [level for level in levels if (method_dir / level).is_dir()]
        if not present:
            raise InputError(ARGUMENT, f"{method_dir}: holds no {' or '.join(f'{v}/' for v in levels)} folder; "
                                       f"expected {RECONSTRUCTIONS_DIR}/<method>/<clip level>/*.exr")
        found[method_dir.name] = {}
        for level in present:
            files = _files(method_dir / level, io.HDR_EXTENSIONS)
            _require(files, references, method_dir / level, ".exr",
                     f"{method_dir.name} has {sum(n in files for n in references)} of the {len(references)} "
                     f"reconstructions at {level}")
            found[method_dir.name][level] = files
    return found


def _require(files: Mapping[str, Path], references: Mapping[str, Path], folder: Path, suffix: str, why: str) -> None:
    """InputError naming the first reference image that ``files`` lacks."""
    for name, ref in references.items():
        if name not in files:
            raise InputError(ARGUMENT, f"{folder / (name + suffix)}: missing ({why.format(name=ref.name)})")


def score(pred: torch.Tensor, ref: torch.Tensor, ldr: torch.Tensor, peak_nits: float = metrics.DEFAULT_PEAK_NITS,
          crf_model: str = "hanji2022", ssim: bool = True) -> dict:
    """The module docstring's steps 1-3 for one reconstruction. pred, ref: linear [3, H, W] (relative); ldr: the
    8-bit input [3, H, W], display-encoded in [0, 1]; all on one device. PSNRs in dB (inf when equal), SSIMs in
    [-1, 1]; without ``ssim`` the SSIMs are left out (on a CPU they take most of the time at 1920x1280)."""
    if pred.shape != ref.shape:
        raise InputError("pred", f"shape {tuple(pred.shape)} differs from the reference's {tuple(ref.shape)}")
    pred, ref = pred.double(), ref.double()
    try:
        s = metrics.align_scale(pred, ref, metrics.well_exposed_mask(ldr))
    except InputError:  # no well-exposed pixel positive in both: align over all pixels
        s = metrics.align_scale(pred, ref, None)
    aligned = pred * s
    k = metrics.peak_scale(ref, peak_nits)
    corrected = crf.correct(aligned * k, ref * k, crf_model)
    scores = {"align_scale": s, "stops": metrics.stops(aligned),
              "pu21_psnr": metrics.pu21_psnr(aligned, ref, peak_nits=peak_nits),
              "pu21_psnr_crf": metrics.pu21_psnr(corrected, ref * k, peak_nits=peak_nits)}
    if ssim:
        scores.update(pu21_ssim=metrics.pu21_ssim(aligned, ref, peak_nits=peak_nits),
                      pu21_ssim_crf=metrics.pu21_ssim(corrected, ref * k, peak_nits=peak_nits))
    return scores


def shipped_method(files: Mapping[str, Mapping[str, Path]]):
    """A reader of a method's shipped reconstructions: (name, level) -> linear [3, H, W]."""
    def read(name: str, level: str) -> torch.Tensor:
        return io.to_tensor(io.read_hdr(files[level][name], ARGUMENT).pixels)
    return read


def run(layout: Layout, levels: Sequence[str], methods: Mapping[str, Reconstructor], *,
        input_curve: str = "gamma2.2", shipped: Sequence[str] | None = None,
        peak_nits: float = metrics.DEFAULT_PEAK_NITS, crf_model: str = "hanji2022", ssim: bool = True,
        device: str | torch.device = "cpu", progress=None) -> list[dict]:
    """Score ``input``, every method of ``methods`` (run on the inputs, given on ``device``) and the shipped
    reconstructions named in ``shipped`` (None: all of the layout's) on every image and level, on ``device``; one
    row per (image, level, method)."""
    response.check_curve(input_curve, "input_curve")
    shipped = list(layout.reconstructions) if shipped is None else list(shipped)
    for name in shipped:
        if name not in layout.reconstructions:
            raise InputError("--methods", f"no {RECONSTRUCTIONS_DIR}/{name}/ in {layout.root}; found: "
                                          f"{', '.join(layout.reconstructions) or 'none'}")
    names = ["input", *methods, *shipped]
    clash = sorted({m for m in names if names.count(m) > 1})
    if clash:
        raise InputError("--methods", f"{', '.join(clash)}: named twice (a shipped folder, the linearised input or a "
                                      "method run here)")
    readers = {m: shipped_method(layout.reconstructions[m]) for m in shipped}
    rows = []
    for name, ref_path in layout.references.items():
        ref = io.to_tensor(io.read_hdr(ref_path, ARGUMENT).pixels).to(device)
        ref_stops = metrics.stops(ref)
        for level in levels:
            path = layout.inputs[level][name]
            ldr = io.to_tensor(io.read_ldr(path, ARGUMENT).pixels).to(device)
            if ldr.shape != ref.shape:
                raise InputError(ARGUMENT, f"{path}: {ldr.shape[-1]}x{ldr.shape[-2]} pixels, its reference "
                                           f"{ref_path.name} {ref.shape[-1]}x{ref.shape[-2]}")
            preds = {"input": lambda: response.decode(ldr, input_curve)}
            preds.update({m: (lambda fn=fn: fn(ldr, input_curve)) for m, fn in methods.items()})
            preds.update({m: (lambda m=m: readers[m](name, level)) for m in shipped if level in layout.reconstructions[m]})
            for method, make in preds.items():
                pred = make().to(device)
                if pred.shape != ref.shape:
                    raise InputError(ARGUMENT, f"{method} on {name} ({level}): {tuple(pred.shape)} pixels, the "
                                               f"reference {tuple(ref.shape)}")
                rows.append({"image": name, "level": level, "clip_fraction": clip_fraction(level), "method": method,
                             "ref_stops": ref_stops, **score(pred, ref, ldr, peak_nits, crf_model, ssim)})
            if progress is not None:
                progress(name, level)
    return rows


METRICS = ("stops", "ref_stops", "pu21_psnr", "pu21_psnr_crf", "pu21_ssim", "pu21_ssim_crf")


def summarise(rows: Sequence[dict]) -> list[dict]:
    """Per (level, method): the mean of each metric, the gains in PU21-PSNR over the linearised input (without and
    with the CRF correction) and the worst image (the lowest corrected gain over its own input)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["level"], row["method"]), []).append(row)
    table = []
    for (level, method), group in groups.items():
        base = {r["image"]: r for r in groups[(level, "input")]}
        entry = {"level": level, "clip_fraction": group[0]["clip_fraction"], "method": method, "n": len(group)}
        entry.update({key: statistics.fmean(r[key] for r in group) for key in METRICS if key in group[0]})
        entry["psnr_gain_db"] = entry["pu21_psnr"] - statistics.fmean(base[r["image"]]["pu21_psnr"] for r in group)
        entry["psnr_crf_gain_db"] = entry["pu21_psnr_crf"] - statistics.fmean(
            base[r["image"]]["pu21_psnr_crf"] for r in group)
        worst = min(group, key=lambda r: r["pu21_psnr_crf"] - base[r["image"]]["pu21_psnr_crf"])
        entry.update(worst_image=worst["image"],
                     worst_psnr_crf_gain_db=worst["pu21_psnr_crf"] - base[worst["image"]]["pu21_psnr_crf"])
        table.append(entry)
    return table


def markdown_table(table: Sequence[dict]) -> str:
    """The summary as a Markdown table (for docs/)."""
    lines = ["| clip | method | n | stops (ref) | PU21-PSNR dB | vs input dB | PU21-PSNR CRF-corrected dB | vs input dB "
             "| worst image vs input dB | PU21-SSIM | PU21-SSIM CRF-corrected |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in table:
        ssims = " | ".join(f"{e[key]:.4f}" if key in e else "-" for key in ("pu21_ssim", "pu21_ssim_crf"))
        lines.append(f"| {e['level']} | {e['method']} | {e['n']} | {e['stops']:.2f} ({e['ref_stops']:.2f}) | "
                     f"{e['pu21_psnr']:.2f} | {e['psnr_gain_db']:+.2f} | {e['pu21_psnr_crf']:.2f} | "
                     f"{e['psnr_crf_gain_db']:+.2f} | {e['worst_psnr_crf_gain_db']:+.2f} ({e['worst_image']}) | "
                     f"{ssims} |")
    return "\n".join(lines) + "\n\nMETHOD.md: a PU21-PSNR gap under 3.5 dB is not significant on SI-HDR."
