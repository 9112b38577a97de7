"""``latenthdr bench``: benchmarks that print JSON and can write a Markdown table for docs/."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from latenthdr.cli._common import add_overwrite, check_device, print_json


def register(sub) -> None:
    bench = sub.add_parser("bench", help="benchmarks (l2h: image-to-HDR on held-out HDR files; sihdr: a copy of the "
                                         "SI-HDR dataset); docs/benchmarks.md")
    kinds = bench.add_subparsers(dest="bench", metavar="KIND", required=True)
    p = kinds.add_parser("l2h", help="image-to-HDR on held-out HDRs: stops, PU21-PSNR, clipped-pixel error, "
                                     "latent error against the identity")
    p.add_argument("--data", required=True, action="append", metavar="DIR",
                   help="folder of reference HDRs (.exr/.hdr); repeat for several (reported per folder and pooled)")
    p.add_argument("--protocol", default="sihdr", choices=("sihdr", "camera"),
                   help="how the LDR inputs are made: sihdr (default: clip, gamma 2.2, 8 bits) or camera (sensor "
                        "noise, a camera response drawn per image, 8-bit JPEG at quality 85-95)")
    p.add_argument("--input-curve", choices=("srgb", "gamma2.2"),
                   help="--protocol camera: the curve the methods assume for the JPEG, as convert's --input-curve "
                        "(default srgb; the camera's own curve is not given to them)")
    p.add_argument("--seed", type=int, help="--protocol camera: base seed of the per-image cameras (default 0)")
    p.add_argument("--clip", default="0.03,0.05", help="clipped fractions of the LDR input (default 0.03,0.05)")
    p.add_argument("--codec", help="latent codec spec (default: the embedded default)")
    p.add_argument("--head", help="exposure head file (default: the head shipped for the codec)")
    p.add_argument("--evs", default="-7:5:1", help="EV ladder (default -7:5:1)")
    p.add_argument("--width", type=int, default=0, help="resize references to this width first (0: as they are)")
    p.add_argument("--max-side", type=int, default=1024,
                   help="shrink references whose longer side is above this many pixels (default 1024; 0: never)")
    p.add_argument("--limit", type=int, default=0, help="use only the first N files of each folder (0: all)")
    p.add_argument("--decoded-only", action="store_true",
                   help="score only the paper's decoded-only merge beside the baselines (default: both merges)")
    add_merge_options(p)
    p.add_argument("--brackets-cache", metavar="DIR",
                   help="keep each case's decoded bracket and latents here and reuse them (same head, codec, ladder "
                        "and size): re-scoring other merge settings then decodes nothing")
    p.add_argument("--baselines", default="all",
                   help="comma-separated baselines scored beside ours (latenthdr.baselines: akyuz2007, huo2014, "
                        "highlight-boost, expandnet); 'all' (default: every one whose weights are present), 'none'")
    p.add_argument("--json", metavar="OUT.json", help="write rows and summary as JSON")
    p.add_argument("--markdown", metavar="OUT.md", help="write the summary table as Markdown")
    add_overwrite(p)
    p.set_defaults(handler=run_l2h)
    register_sihdr(kinds)


def register_sihdr(kinds) -> None:
    p = kinds.add_parser("sihdr", help="a copy of the SI-HDR dataset (Hanji et al. 2022): PU21-PSNR/SSIM of our "
                                       "pipeline, the linearised input and the shipped reconstructions, with and "
                                       "without the CRF correction")
    p.add_argument("path", metavar="PATH", help="the SI-HDR folder: reference/*.exr, input/clip_95/*.png, "
                                                "input/clip_97/*.png, optionally "
                                                "reconstructions/<method>/clip_9X/*.exr")
    p.add_argument("--clip", default="95,97", help="clip levels to score (default 95,97: input/clip_95 and clip_97)")
    p.add_argument("--methods", help="comma-separated reconstructions/<method> folders to score (default: all)")
    p.add_argument("--no-ours", action="store_true", help="do not run our pipeline (score the shipped folders only)")
    p.add_argument("--input-curve", default="gamma2.2", choices=("gamma2.2", "srgb"),
                   help="display curve of the 8-bit inputs, for linearising them and for our pipeline (default "
                        "gamma2.2, as the SI-HDR-like protocol)")
    p.add_argument("--crf", default="hanji2022", choices=("hanji2022", "gamma"),
                   help="CRF correction for the corrected scores: hanji2022 (default: the authors' released "
                        "polynomial fit in PQ/Luv) or gamma (a gamma and a scale fitted in log luminance)")
    p.add_argument("--peak-nits", type=float, default=4000.0,
                   help="display peak the reference's maximum is mapped to, cd/m2 (default 4000, as SI-HDR)")
    p.add_argument("--limit", type=int, default=0, help="use only the first N reference images (0: all)")
    p.add_argument("--no-ssim", action="store_true",
                   help="leave out PU21-SSIM (on a CPU it takes most of the scoring time at 1920x1280)")
    p.add_argument("--device", default="cpu", help="where our pipeline runs and the scores are computed (default cpu)")
    p.add_argument("--codec", help="latent codec spec (default: the embedded default)")
    p.add_argument("--head", help="exposure head file (default: the head shipped for the codec)")
    p.add_argument("--evs", default="-7:5:1", help="EV ladder (default -7:5:1)")
    p.add_argument("--decoded-only", action="store_true", help="our pipeline with the paper's decoded-only merge "
                                                               "(default: the input-preserving merge)")
    add_merge_options(p)
    p.add_argument("--json", metavar="OUT.json", help="write rows and summary as JSON")
    p.add_argument("--markdown", metavar="OUT.md", help="write the summary table as Markdown")
    add_overwrite(p)
    p.set_defaults(handler=run_sihdr)


def run_sihdr(args) -> int:
    import math

    from latenthdr import exposure, io
    from latenthdr.bench import sihdr
    from latenthdr.errors import InputError

    levels = sihdr.parse_levels(args.clip)
    if args.limit < 0:
        raise InputError("--limit", f"got {args.limit}; accepted: 0 (all) or a positive count")
    if not (math.isfinite(args.peak_nits) and args.peak_nits > 0):
        raise InputError("--peak-nits", f"got {args.peak_nits}; accepted: a finite value > 0 (cd/m2)")
    shipped = None if args.methods is None else [m.strip() for m in args.methods.split(",") if m.strip()]
    check_device(args.device)
    for out in (args.json, args.markdown):
        if out:
            io.check_output(out, args.overwrite, "--json/--markdown")
    layout = sihdr.read_layout(args.path, levels, args.limit)
    evs = exposure.parse_ev_ladder(args.evs, "--evs", require_zero=True)
    timings: dict[str, float] = {}
    methods, models = {}, None
    if not args.no_ours:
        from latenthdr.pipeline import LatentHDRPipeline

        options = merge_options_of(args)
        if args.decoded_only and options:
            raise InputError("--decoded-only", "cannot be combined with --highlight-shrink or --rim-bound (options "
                                               "of the input-preserving merge)")
        pipe = LatentHDRPipeline.from_pretrained(codec=args.codec, head=args.head, device=args.device,
                                                 merge_options=options)
        models = {**pipe.describe(args.head), "merge": "decoded-only" if args.decoded_only else "input-preserving",
                  "merge_options": pipe.merge_options}

        def ours(ldr, curve):
            from latenthdr import response

            out = pipe(response.encode(response.decode(ldr, curve), pipe.curve), evs=evs, blend=not args.decoded_only)
            for stage, seconds in out.timings.items():
                timings[stage] = timings.get(stage, 0.0) + seconds
            return out.hdr[0]
        methods["latenthdr"] = ours
    started = time.perf_counter()
    rows = sihdr.run(layout, levels, methods, input_curve=args.input_curve, shipped=shipped,
                     peak_nits=args.peak_nits, crf_model=args.crf, ssim=not args.no_ssim, device=args.device,
                     progress=lambda name, level: print(f"  {name} @ {level}", file=sys.stderr))
    table = sihdr.summarise(rows)
    report = _finite_or_none({
        "path": str(args.path), "levels": levels, "images": len(layout.references), "input_curve": args.input_curve,
        "crf": args.crf, "peak_nits": args.peak_nits, "ssim": not args.no_ssim,
        "methods": list(dict.fromkeys(r["method"] for r in rows)),
        "evs": list(evs) if methods else None, "models": models, "summary": table, "rows": rows,
        "pipeline_seconds": timings, "wall_seconds": time.perf_counter() - started})
    if args.json:
        io.write_json(args.json, report, overwrite=args.overwrite)
    if args.markdown:
        with io.atomic_output(args.markdown, args.overwrite) as temp:
            temp.write_text(sihdr.markdown_table(table) + "\n", encoding="utf-8")
    print_json({k: v for k, v in report.items() if k != "rows"})
    return 0


def add_merge_options(p) -> None:
    """The input-preserving merge's trust in the head (``merge.merge_with_input``); unset: the pipeline's
    defaults (``pipeline.DEFAULT_MERGE_OPTIONS``)."""
    p.add_argument("--highlight-shrink", type=float, metavar="S",
                   help="scale the predicted highlight excess over the clip level by S in (0, 1], in stops "
                        "(default 0.5; 1: the head as it is)")
    p.add_argument("--rim-bound", type=float, metavar="K",
                   help="cap the predicted excess inside each clipped region at K times the input's rise around it "
                        "(default: off)")


def merge_options_of(args) -> dict:
    """The merge options a user set on the command line (None: not set), checked under their flag names."""
    from latenthdr import merge
    from latenthdr.errors import InputError

    options = {name: getattr(args, name) for name in ("highlight_shrink", "rim_bound")
               if getattr(args, name) is not None}
    try:
        merge.check_highlight_options(**options)
    except InputError as error:
        raise InputError("--" + error.argument.replace("_", "-"), error.message) from None
    return options


def _clip_fractions(spec: str) -> list[float]:
    from latenthdr.errors import InputError

    try:
        values = [float(v) for v in spec.split(",") if v.strip()]
    except ValueError:
        raise InputError("--clip", f"cannot parse {spec!r}; accepted: fractions such as 0.03,0.05") from None
    if not values or any(not 0 < v < 1 for v in values):
        raise InputError("--clip", f"got {spec!r}; every clipped fraction must be in (0, 1)")
    return values


def experiment_parser(doc: str):
    """An argparse parser for the l2h benchmark scripts (benchmarks/): its description is ``doc``'s first line,
    with the flags every one of them takes: --data (repeatable), --codec, --head, --clip, --evs."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--data", action="append", required=True)
    parser.add_argument("--codec")
    parser.add_argument("--head")
    parser.add_argument("--clip", default="0.03")
    parser.add_argument("--evs", default="-7:5:1")
    return parser


def dataset_labels(folders: list[str]) -> list[str]:
    """Short, distinct labels for benchmark folders: the last two path parts ("hdri/val", "photos/val")."""
    from latenthdr.errors import InputError

    resolved = [Path(f).resolve() for f in folders]
    if len(set(resolved)) != len(resolved):
        raise InputError("--data", "the same folder is given twice")
    labels = ["/".join(p.parts[-2:]) for p in resolved]
    return labels if len(set(labels)) == len(labels) else [str(p) for p in resolved]


def load_references(data: str, width: int, limit: int, max_side: int = 0):
    """(name, H [3,H,W]) for the HDR files of a folder, optionally resized (area) to ``width``, or shrunk so
    that the longer side is at most ``max_side``."""
    import torch.nn.functional as F

    from latenthdr import io
    from latenthdr.errors import InputError

    folder = Path(data)
    if not folder.is_dir():
        raise InputError("--data", f"{data}: not a directory")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in io.HDR_EXTENSIONS)
    if not files:
        raise InputError("--data", f"{data}: holds no .exr/.hdr files")
    if width < 0:
        raise InputError("--width", f"got {width}; accepted: 0 (keep) or a positive width")
    if max_side < 0 or 0 < max_side < 16:
        raise InputError("--max-side", f"got {max_side}; accepted: 0 (never shrink) or at least 16 pixels")
    for path in files[: limit or None]:
        H = io.to_tensor(io.read_hdr(path, "--data").pixels)
        h, w = H.shape[-2:]
        if width and width != w:
            h, w = max(8, round(h * width / w)), width
        elif max_side and max(h, w) > max_side:
            factor = max_side / max(h, w)
            h, w = max(8, round(h * factor)), max(8, round(w * factor))
        if (h, w) != tuple(H.shape[-2:]):
            H = F.interpolate(H[None], size=(h, w), mode="area")[0]
        yield path.stem, H


def protocol_of(args):
    """The case maker of --protocol (name, H, clip fraction, folder label) -> l2h.Case, and what the report adds
    for it (nothing for sihdr: its report is what it was before the camera protocol existed)."""
    from latenthdr.bench import camera, l2h
    from latenthdr.errors import InputError

    if args.protocol == "sihdr":
        for flag, value in (("--input-curve", args.input_curve if args.input_curve != "gamma2.2" else None),
                            ("--seed", args.seed)):
            if value is not None:
                raise InputError(flag, "applies to --protocol camera; the sihdr protocol's inputs are gamma 2.2 "
                                       "and draw nothing")
        return l2h.make_case, {}
    seed = 0 if args.seed is None else args.seed
    if seed < 0:
        raise InputError("--seed", f"got {seed}; accepted: an integer >= 0")
    curve = args.input_curve or "srgb"

    def make(name, H, clip_fraction, label):
        return camera.make_camera_case(name, H, clip_fraction, label, seed=seed, input_curve=curve)
    return make, {"protocol": "camera", "input_curve": curve, "seed": seed, "camera_model": camera.describe_model()}


def run_l2h(args) -> int:
    from latenthdr import exposure, io
    from latenthdr.bench import l2h
    from latenthdr.pipeline import LatentHDRPipeline

    make_case, protocol = protocol_of(args)
    clips = _clip_fractions(args.clip)
    evs = exposure.parse_ev_ladder(args.evs, "--evs")
    labels = dataset_labels(args.data)
    for out in (args.json, args.markdown):
        if out:
            io.check_output(out, args.overwrite, "--json/--markdown")
    extra = baseline_methods(args.baselines)  # refused before any model loads
    pipe = LatentHDRPipeline.from_pretrained(codec=args.codec, head=args.head,
                                             merge_options=merge_options_of(args))
    timings: dict[str, float] = {}
    last: dict = {}  # the current case's decoded bracket and latents: both merges share one encode/head/decode
    cache = None if args.brackets_cache is None else BracketCache(Path(args.brackets_cache), pipe, args.head)

    def method(blend: bool, with_latents: bool):
        def reconstruct(case, ladder):
            if last.get("case") is not case:
                last.update(case=case, **case_outputs(pipe, case, ladder, cache, timings))
            y, panorama = last["brackets"], last["panorama"]
            image = l2h.pipeline_input(case, pipe.curve)
            hdr = pipe.merge(y[None], ladder, image[None] if blend else None, panorama).hdr[0]
            if not with_latents:
                return hdr
            return hdr, l2h.latent_errors(last["z"], last["z0"], last["targets"])
        return reconstruct

    methods = {"decoded-only": method(False, True)} if args.decoded_only else {
        "head": method(True, True), "decoded-only": method(False, False)}
    methods.update(extra)
    cases = [make_case(name, H, c, label) for folder, label in zip(args.data, labels)
             for name, H in load_references(folder, args.width, args.limit, args.max_side) for c in clips]
    started = time.perf_counter()
    rows = l2h.run(cases, evs, methods, progress=lambda case: print(
        f"  {case.dataset}/{case.name} @ {case.clip_fraction:.0%}", file=sys.stderr))
    table = l2h.summarise(rows)
    report = {**protocol, "evs": list(evs), "models": pipe.describe(args.head), "merge_options": pipe.merge_options,
              "data": dict(zip(labels, args.data)),
              "width": args.width, "max_side": args.max_side, "summary": table, "rows": rows,
              "pipeline_seconds": timings, "wall_seconds": time.perf_counter() - started}
    report = _finite_or_none(report)
    if args.json:
        io.write_json(args.json, report, overwrite=args.overwrite)
    if args.markdown:
        heading = "" if not protocol else (
            f"Camera protocol (seed {protocol['seed']}): noise, a drawn camera response, JPEG 85-95; the methods "
            f"linearise the JPEG as {protocol['input_curve']}.\n\n")
        text = (heading + l2h.markdown_table(table) + "\n\nPer image, worst first:\n\n"
                + l2h.markdown_per_image(rows, list(methods)) + "\n")
        with io.atomic_output(args.markdown, args.overwrite) as temp:
            temp.write_text(text, encoding="utf-8")
    print_json({k: v for k, v in report.items() if k != "rows"})
    return 0


def baseline_methods(spec: str) -> dict:
    """--baselines -> {name: l2h method}: each baseline reads the case's input with the curve the case assumes
    (``Case.input_curve``), as our pipeline does. 'all': every registry baseline but input and oracle (scored
    always), ExpandNet only where its released weights are found; 'none': no baseline."""
    from latenthdr import baselines
    from latenthdr.baselines import expandnet
    from latenthdr.errors import InputError

    always = ("input", "oracle")
    if spec == "none":
        return {}
    if spec == "all":
        names = [n for n in baselines.BASELINES if n not in always]
        try:
            expandnet.find_expandnet_weights()
        except InputError:
            names.remove("expandnet")
    else:
        names = [n.strip() for n in spec.split(",") if n.strip()]
        unknown = [n for n in names if n not in baselines.BASELINES or n in always]
        if unknown or not names:
            raise InputError("--baselines", f"got {spec!r}; accepted: all, none, or names among "
                                            f"{', '.join(n for n in baselines.BASELINES if n not in always)}")
        if "expandnet" in names:
            expandnet.find_expandnet_weights()  # a missing file: one line before any work

    def method(baseline):
        return lambda case, evs: baseline(case.ldr, curve=case.input_curve)
    return {name: method(baselines.get(name)) for name in names}


def case_outputs(pipe, case, evs, cache, timings: dict) -> dict:
    """A case's decoded bracket [K,3,H,W], latents z [K,C,h,w] and z0 [C,h,w], and the head's targets (the
    latents of the true bracket): from ``cache`` when it holds them, else from one pipeline run."""
    from latenthdr.bench import l2h

    found = None if cache is None else cache.load(case, evs)
    if found is not None:
        return found
    out = pipe(l2h.pipeline_input(case, pipe.curve), evs=evs, blend=False)
    for stage, seconds in out.timings.items():
        timings[stage] = timings.get(stage, 0.0) + seconds
    started = time.perf_counter()
    targets = pipe.encode(l2h.true_bracket(case, evs), out.panorama)
    timings["encode_targets"] = timings.get("encode_targets", 0.0) + time.perf_counter() - started
    # float16 as in the cache, so a cached and a fresh run score the same frames
    found = {"brackets": out.brackets[0].half().float(), "z": out.z[0].float(), "z0": out.z0[0].float(),
             "targets": targets.float(), "panorama": out.panorama}
    if cache is not None:
        cache.save(case, evs, found)
    return found


class BracketCache:
    """Decoded brackets (float16, within 1/2048 of the decoder's output: far below an 8-bit level) and latents
    of benchmark cases, one safetensors file per case, tied to the head file, codec space and ladder."""

    def __init__(self, folder: Path, pipe, head_path: str | None):
        self.folder = folder
        self.identity = {"space": pipe.codec.space, "head_sha256": pipe.describe(head_path)["head_sha256"]}

    def _path(self, case) -> Path:
        camera = "" if case.camera is None else f"-camera{case.camera['seed']}-{case.input_curve}"
        return self.folder / f"{case.dataset.replace('/', '_')}-{case.name}-{case.clip_fraction:g}{camera}.safetensors"

    def _identity(self, case, evs) -> dict:
        camera = {} if case.camera is None else {"camera": case.camera, "input_curve": case.input_curve}
        return {**self.identity, "evs": list(evs), "size": list(case.ldr.shape[-2:]),
                "clip_fraction": case.clip_fraction, **camera}

    def load(self, case, evs) -> dict | None:
        import json

        from safetensors import safe_open

        path = self._path(case)
        if not path.is_file():
            return None
        with safe_open(str(path), "pt") as f:
            if json.loads(f.metadata().get("identity", "{}")) != self._identity(case, evs):
                return None  # another head, codec or ladder: recomputed and replaced
            tensors = {k: f.get_tensor(k).float() for k in f.keys()}
        return {**tensors, "panorama": bool(tensors.pop("panorama").item())}

    def save(self, case, evs, found: dict) -> None:
        import json

        import torch
        from safetensors.torch import save_file

        from latenthdr import io

        self.folder.mkdir(parents=True, exist_ok=True)
        tensors = {"brackets": found["brackets"].half().contiguous(), "z": found["z"].contiguous(),
                   "z0": found["z0"].contiguous(), "targets": found["targets"].contiguous(),
                   "panorama": torch.tensor(found["panorama"])}
        with io.atomic_output(self._path(case), overwrite=True) as temp:
            save_file(tensors, str(temp), metadata={"identity": json.dumps(self._identity(case, evs))})


def _finite_or_none(value):
    """JSON has no NaN/Inf: a metric that could not be computed (no clipped pixel, say) is reported as null."""
    import math

    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value
