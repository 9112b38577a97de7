"""``latenthdr bench``: benchmarks that print JSON and can write a Markdown table for docs/."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from latenthdr.cli._common import add_overwrite, print_json


def register(sub) -> None:
    bench = sub.add_parser("bench", help="benchmarks (l2h: the SI-HDR protocol on held-out HDR files)")
    kinds = bench.add_subparsers(dest="bench", metavar="KIND", required=True)
    p = kinds.add_parser("l2h", help="image-to-HDR on held-out HDRs: stops, PU21-PSNR, clipped-pixel error, "
                                     "latent error against the identity")
    p.add_argument("--data", required=True, action="append", metavar="DIR",
                   help="folder of reference HDRs (.exr/.hdr); repeat for several (reported per folder and pooled)")
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
    p.add_argument("--json", metavar="OUT.json", help="write rows and summary as JSON")
    p.add_argument("--markdown", metavar="OUT.md", help="write the summary table as Markdown")
    add_overwrite(p)
    p.set_defaults(handler=run_l2h)


def _clip_fractions(spec: str) -> list[float]:
    from latenthdr.errors import InputError

    try:
        values = [float(v) for v in spec.split(",") if v.strip()]
    except ValueError:
        raise InputError("--clip", f"cannot parse {spec!r}; accepted: fractions such as 0.03,0.05") from None
    if not values or any(not 0 < v < 1 for v in values):
        raise InputError("--clip", f"got {spec!r}; every clipped fraction must be in (0, 1)")
    return values


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


def run_l2h(args) -> int:
    from latenthdr import exposure, io
    from latenthdr.bench import l2h
    from latenthdr.pipeline import LatentHDRPipeline

    clips = _clip_fractions(args.clip)
    evs = exposure.parse_ev_ladder(args.evs, "--evs")
    labels = dataset_labels(args.data)
    for out in (args.json, args.markdown):
        if out:
            io.check_output(out, args.overwrite, "--json/--markdown")
    pipe = LatentHDRPipeline.from_pretrained(codec=args.codec, head=args.head)
    timings: dict[str, float] = {}
    last: dict = {}  # the pipeline output of the current case: both merges share one encode/head/decode

    def method(blend: bool, with_latents: bool):
        def reconstruct(case, ladder):
            if last.get("case") is not case:
                out = pipe(case.ldr, evs=ladder, blend=False)
                for stage, seconds in out.timings.items():
                    timings[stage] = timings.get(stage, 0.0) + seconds
                last.update(case=case, out=out)
            out = last["out"]
            hdr = out.hdr[0] if not blend else pipe.merge(out.brackets, ladder, case.ldr[None], out.panorama).hdr[0]
            if not with_latents:
                return hdr
            started = time.perf_counter()  # the head's targets: the latents of the true bracket
            targets = pipe.encode(l2h.true_bracket(case, ladder), out.panorama)
            timings["encode_targets"] = timings.get("encode_targets", 0.0) + time.perf_counter() - started
            return hdr, l2h.latent_errors(out.z[0], out.z0[0], targets)
        return reconstruct

    methods = {"decoded-only": method(False, True)} if args.decoded_only else {
        "head": method(True, True), "decoded-only": method(False, False)}
    cases = [l2h.make_case(name, H, c, label) for folder, label in zip(args.data, labels)
             for name, H in load_references(folder, args.width, args.limit, args.max_side) for c in clips]
    started = time.perf_counter()
    rows = l2h.run(cases, evs, methods, progress=lambda case: print(
        f"  {case.dataset}/{case.name} @ {case.clip_fraction:.0%}", file=sys.stderr))
    table = l2h.summarise(rows)
    report = {"evs": list(evs), "models": pipe.describe(args.head), "data": dict(zip(labels, args.data)),
              "width": args.width, "max_side": args.max_side, "summary": table, "rows": rows,
              "pipeline_seconds": timings, "wall_seconds": time.perf_counter() - started}
    report = _finite_or_none(report)
    if args.json:
        io.write_json(args.json, report, overwrite=args.overwrite)
    if args.markdown:
        text = (l2h.markdown_table(table) + "\n\nPer image, worst first:\n\n"
                + l2h.markdown_per_image(rows, list(methods)) + "\n")
        with io.atomic_output(args.markdown, args.overwrite) as temp:
            temp.write_text(text, encoding="utf-8")
    print_json({k: v for k, v in report.items() if k != "rows"})
    return 0


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
