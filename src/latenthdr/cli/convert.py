"""``latenthdr convert``: image-to-HDR with the LatentHDR pipeline (zero diffusion runs)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from latenthdr.cli._common import add_max_memory, add_overwrite, check_max_memory, check_memory, print_json
from latenthdr.cli.bench import add_merge_options, merge_options_of


def register(sub) -> None:
    p = sub.add_parser("convert", help="LDR photo or panorama -> linear HDR EXR (+ preview, bracket sheet, JSON)",
                       description="Image-to-HDR. The bracket sheet (OUT.bracket.png) shows " + BRACKET_SHEET + "; by "
                                   "default only the tiles around the input's clipped pixels are decoded.")
    p.add_argument("input", metavar="IN", help="LDR image (.png/.jpg/.tif, 8 or 16 bit) or a clipped linear .exr")
    p.add_argument("-o", "--output", required=True, metavar="OUT.exr", help="output EXR")
    p.add_argument("--codec", help="latent codec: 'embedded' (default when shipped), 'taef2', a VAE dir or hub id")
    p.add_argument("--head", help="exposure head .safetensors (default: the head shipped for the codec)")
    p.add_argument("--evs", default="-7:5:1", help="EV ladder (default -7:5:1)")
    p.add_argument("--panorama", default="auto", choices=("auto", "on", "off"),
                   help="equirectangular handling (seamless wrap); auto = 2:1 aspect")
    p.add_argument("--decoded-only", action="store_true",
                   help="the paper's merge of the decoded frames alone (default: keep the input where it is well "
                        "exposed; predicted frames fill its clipped and black areas)")
    p.add_argument("--blend", action="store_true", help=argparse.SUPPRESS)  # the default since 0.2; still accepted
    add_merge_options(p)
    p.add_argument("--input-curve", default="srgb", choices=("srgb", "gamma2.2"),
                   help="display curve of an LDR input (default srgb, as cameras and the web use)")
    p.add_argument("--half", action="store_true", help="write half floats (refused if values overflow)")
    p.add_argument("--no-previews", action="store_true", help="write only the EXR and the JSON sidecar")
    add_max_memory(p)
    add_overwrite(p)
    p.set_defaults(handler=run_convert)


BRACKET_SHEET = "the merged HDR re-exposed at each EV of the ladder (gamma 2.2, clipped), at preview size"


def output_paths(output: str, previews: bool) -> dict[str, Path]:
    """OUT.exr and its companions, the sidecar last: OUT.preview.png, OUT.bracket.png, OUT.json."""
    exr = Path(output)
    paths = {"exr": exr}
    if previews:
        paths.update(preview=exr.with_suffix(".preview.png"), bracket=exr.with_suffix(".bracket.png"))
    paths["json"] = exr.with_suffix(".json")
    return paths


def stale_companions(paths: dict[str, Path]) -> tuple[Path, ...]:
    """Previews of an old set at these paths that the new set (written without previews) would leave behind:
    only files the old sidecar names as its outputs."""
    import json

    try:
        old = json.loads(paths["json"].read_text(encoding="utf-8")).get("output", {})
    except (OSError, ValueError, AttributeError):
        return ()
    kept = set(paths.values())
    return tuple(p for k, p in output_paths(str(paths["exr"]), True).items()
                 if p not in kept and isinstance(old, dict) and old.get(k) == str(p) and p.is_file())


def write_output_set(paths: dict[str, Path], hdr, sheet, report: dict, *, half: bool, panorama: bool,
                     metadata: dict, overwrite: bool, inputs: tuple = (), started: float | None = None) -> None:
    """Write the EXR, its previews (when ``paths`` has them: the tone-mapped preview and ``sheet``) and the JSON
    sidecar ``report`` as one output set (``io.output_set``): all of them or none, the sidecar last. The EXR's metadata
    also gets the package version and ``report["models"]`` (files and their sha256). The write time
    (and the total since ``started``, a perf_counter value) go into ``report["timings_s"]``."""
    from latenthdr import __version__, io, tonemap

    t0 = time.perf_counter()
    metadata = {**metadata, "version": __version__, "models": report.get("models", {})}
    with io.output_set(paths, overwrite=overwrite, argument="--output", inputs=inputs,
                       remove=stale_companions(paths) if overwrite else ()) as temps:
        io.write_exr(temps["exr"], io.to_numpy(hdr), half=half, panorama=panorama, metadata=metadata, overwrite=True)
        if "preview" in temps:
            preview = tonemap.tonemap(hdr, "aces", exposure_ev=tonemap.auto_exposure_ev(hdr))
            io.write_png(temps["preview"], io.to_numpy(preview), overwrite=True)
            io.write_png(temps["bracket"], io.to_numpy(sheet), overwrite=True)
        report["timings_s"] = {**report.get("timings_s", {}), "write": time.perf_counter() - t0}
        if started is not None:
            report["timings_s"]["total"] = time.perf_counter() - started
        io.write_json(temps["json"], report, overwrite=True)


def merge_name(blend: bool) -> str:
    """How the HDR was merged, for the JSON sidecar and EXR metadata."""
    return "input-preserving" if blend else "decoded-only"


def load_input(path: str, input_curve: str):
    """The input as the pipeline's EV-0 frame: [3,H,W] gamma-2.2 display values in [0, 1], and a description."""
    import torch

    from latenthdr import io, response

    image = io.read_image(path, "IN")
    if isinstance(image, io.HdrImage):  # a linear file: 1.0 is taken as the clipping level
        linear, note = torch.from_numpy(image.pixels).permute(2, 0, 1).clamp(0, 1), "linear EXR/HDR, clipped at 1"
    else:
        linear = response.decode(io.to_tensor(image.pixels), input_curve)
        note = f"{image.bits}-bit {input_curve}"
    return response.encode(linear, "gamma2.2"), {"file": str(path), "encoding": note}


def run_convert(args) -> int:
    from latenthdr import exposure, io, metrics, tonemap
    from latenthdr.errors import InputError
    from latenthdr.pipeline import LatentHDRPipeline

    started = time.perf_counter()
    evs = exposure.parse_ev_ladder(args.evs, "--evs", require_zero=True)
    if args.decoded_only and (args.blend or merge_options_of(args)):
        raise InputError("--decoded-only", "cannot be combined with --blend, --highlight-shrink or --rim-bound "
                                           "(options of the input-preserving merge)")
    blend = not args.decoded_only
    check_max_memory(args.max_memory)  # before any work
    paths = output_paths(args.output, not args.no_previews)
    io.check_output(paths["exr"], args.overwrite, "--output", extensions=(".exr",))
    for path in paths.values():
        io.check_output(path, args.overwrite, "--output")
        if path.resolve() == Path(args.input).resolve():
            raise InputError("--output", f"{path} would replace the input IN; choose another output name")
    size = io.check_image_size(args.input, "IN")
    t0 = time.perf_counter()
    pipe = LatentHDRPipeline.from_pretrained(codec=args.codec, head=args.head, merge_options=merge_options_of(args))
    load_s = time.perf_counter() - t0
    estimate = None if size is None else pipe.memory_estimate(size[1], size[0], len(evs))
    check_memory(estimate, args.max_memory, f"converting {size[0]}x{size[1]} pixels with {len(evs)} EVs" if size else "",
                 "convert a smaller copy of the image or use fewer EVs (the embedded codec needs the least)")
    image, source = load_input(args.input, args.input_curve)
    out = pipe(image, evs=evs, panorama={"on": True, "off": False}.get(args.panorama, "auto"), blend=blend)
    hdr = out.hdr[0]
    models = pipe.describe(args.head)
    report = {"input": source, "output": {k: str(v) for k, v in paths.items()}, "evs": list(evs),
              "panorama": out.panorama, "merge": merge_name(blend), "merge_options": pipe.merge_options if blend else {},
              "models": models, "plow": out.plow[0],
              "phigh": out.phigh[0], "stops": metrics.stops(hdr), "size": list(hdr.shape[-2:]),
              "decoded_fraction": 1.0 if out.decoded is None else float(out.decoded.float().mean()),
              "memory_estimate_gb": None if estimate is None else round(estimate / 1e9, 3)}
    if not args.no_previews:
        report["bracket_sheet"] = BRACKET_SHEET
    sheet = None if args.no_previews else tonemap.contact_sheet(tonemap.reexposed_bracket(hdr, evs),
                                                                  [f"EV {e:+g}" for e in evs], columns=7)
    report["timings_s"] = {"load_models": load_s, **out.timings}
    write_output_set(paths, hdr, sheet, report, half=args.half, panorama=out.panorama, overwrite=args.overwrite,
                     inputs=(args.input,), started=started,
                     metadata={"evs": exposure.format_ev_ladder(evs), "space": pipe.codec.space, "input": args.input,
                               "merge": merge_name(blend), "head": models["head"] or "",
                               "scale": "relative: 1.0 = the input's clipping level"})
    print_json(report)
    return 0
