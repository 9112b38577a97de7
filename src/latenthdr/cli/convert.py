"""``latenthdr convert``: image-to-HDR with the LatentHDR pipeline (zero diffusion runs).

``convert IN -o OUT.exr`` converts one image; ``convert IN... -o DIR`` (several images, or folders of them)
converts each into DIR, each independently of the others, so a run under ``accelerate launch`` (the images shared
between its processes, ``latenthdr.distributed``; docs/scale-out.md) writes the same files as one process."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

from latenthdr.cli._common import (FORMATS, OutputOptions, add_device, add_max_memory, add_output_options,
                                   add_overwrite, check_device, check_max_memory, check_memory, output_options_of,
                                   print_json, refuse_panorama_options, shipped_weights)
from latenthdr.cli.bench import add_merge_options, merge_options_of


def register(sub) -> None:
    p = sub.add_parser("convert", help="LDR photo or panorama -> linear HDR EXR or .hdr (+ preview, bracket sheet, "
                                       "JSON)",
                       description="Image-to-HDR. The bracket sheet (OUT.bracket.png) shows " + BRACKET_SHEET + "; by "
                                   "default only the tiles around the input's clipped pixels are decoded.")
    p.add_argument("input", metavar="IN", nargs="+",
                   help="LDR image (.png/.jpg/.tif, 8 or 16 bit) or a clipped linear .exr; or several, or a folder of "
                        "them (then -o is a folder)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.exr|OUT.hdr|DIR",
                   help="output HDR (.exr or .hdr); with several inputs or a folder IN, a folder (created if absent) "
                        "where each input NAME.ext gets NAME.exr (.hdr with --format hdr) and its companions")
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
    add_output_options(p)
    p.add_argument("--no-previews", action="store_true", help="write only the HDR and the JSON sidecar")
    p.add_argument("--skip-existing", action="store_true", help="skip inputs whose output set is already complete")
    add_max_memory(p)
    add_device(p)
    add_overwrite(p)
    p.set_defaults(handler=run_convert)


BRACKET_SHEET = "the merged HDR re-exposed at each EV of the ladder (gamma 2.2, clipped), at preview size"


def output_paths(output: str, previews: bool, fmt: str = "exr") -> dict[str, Path]:
    """OUT.exr (key "exr") or OUT.hdr (key "hdr", ``fmt``) and its companions, the sidecar last: OUT.preview.png,
    OUT.bracket.png, OUT.json."""
    image = Path(output)
    paths = {fmt: image}
    if previews:
        paths.update(preview=image.with_suffix(".preview.png"), bracket=image.with_suffix(".bracket.png"))
    paths["json"] = image.with_suffix(".json")
    return paths


def image_path(paths: dict[str, Path]) -> Path:
    """The HDR of an output set (``output_paths``)."""
    return next(paths[key] for key in FORMATS if key in paths)


def stale_companions(paths: dict[str, Path]) -> tuple[Path, ...]:
    """Previews of an old set at these paths that the new set (written without previews) would leave behind:
    only files the old sidecar names as its outputs."""
    import json

    try:
        old = json.loads(paths["json"].read_text(encoding="utf-8")).get("output", {})
    except (OSError, ValueError, AttributeError):
        return ()
    named = set(old.values()) if isinstance(old, dict) else set()
    kept = set(paths.values())
    image = image_path(paths)
    candidates = sorted({p for fmt, ext in FORMATS.items()
                         for p in output_paths(str(image.with_suffix(ext)), True, fmt).values()})
    return tuple(p for p in candidates if p not in kept and str(p) in named and p.is_file())


def finish_output(hdr, options: OutputOptions, panorama: bool, what: str = "the output"):
    """The HDR as written, and what was done to it: a panorama turned for ``options.layout`` and
    ``options.azimuth_deg`` (``panorama.orient``: whole columns; skipped for a panorama that is not 2:1 when
    neither was given), then multiplied by the absolute scale's factor (``photometry.Scale.resolve``).

    hdr: linear relative RGB [3, H, W] float32. Returns (hdr [3, H, W] float32, {"layout": record (panoramas),
    "scale": record}); InputError, before anything is written, for panorama options on a picture."""
    from latenthdr import panorama as equirect

    records = {}
    if not panorama:
        refuse_panorama_options(options, what)
    elif options.layout or options.azimuth_deg is not None or equirect.is_equirectangular(*hdr.shape[-2:]):
        hdr, records["layout"] = equirect.orient(hdr, options.layout or equirect.DEFAULT_LAYOUT,
                                                 options.azimuth_deg or 0.0)
    records["scale"] = options.scale.resolve(hdr, panorama)
    factor = records["scale"]["factor"]
    return (hdr if factor == 1.0 else hdr * factor), records


def write_output_set(paths: dict[str, Path], hdr, sheet, report: dict, *, options: OutputOptions, panorama: bool,
                     metadata: dict, overwrite: bool, inputs: tuple = (), started: float | None = None,
                     what: str = "the output") -> None:
    """Write the HDR (EXR or Radiance, ``options.format``; oriented and scaled by ``finish_output``), its previews
    (when ``paths`` has them: the tone-mapped preview of the HDR written, and ``sheet``) and the JSON sidecar
    ``report`` as one output set (``io.output_set``): all of them or none, the sidecar last. The report and the EXR's
    metadata also get the layout and scale records; the report, the format and the peak value; the EXR's, the
    package version and
    ``report["models"]`` (files and their sha256); Radiance files hold no metadata, the sidecar does. An EXR
    panorama in the openexr layout gets ``envmap`` = latlong. The write time (and the total since ``started``, a
    perf_counter value) go into ``report["timings_s"]``."""
    from latenthdr import __version__, io, tonemap
    from latenthdr.errors import InputError

    t0 = time.perf_counter()
    hdr, records = finish_output(hdr, options, panorama, what)
    pixels = io.to_numpy(hdr)
    peak = float(pixels.max()) if pixels.size else 0.0
    report.update(records, format=options.format, peak=peak)  # peak: game engines store HDR textures as half
    if options.half and peak > io.HALF_MAX:
        raise InputError("--half", f"the output peaks at {peak:.6g}, beyond half's {io.HALF_MAX:g}; drop --half to "
                                   "write float32")
    metadata = {**metadata, **records, "version": __version__, "models": report.get("models", {})}
    envmap = panorama and records.get("layout", {}).get("layout", "openexr") == "openexr"
    with io.output_set(paths, overwrite=overwrite, argument="--output", inputs=inputs,
                       remove=stale_companions(paths) if overwrite else ()) as temps:
        if options.format == "exr":  # envmap=latlong claims OpenEXR's direction convention: only when it holds
            io.write_exr(temps["exr"], pixels, half=options.half, panorama=envmap, metadata=metadata, overwrite=True)
        else:
            io.write_hdr(temps["hdr"], pixels, overwrite=True)
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
    from latenthdr.models.registry import sha256_of

    return response.encode(linear, "gamma2.2"), {"file": str(path), "encoding": note, "sha256": sha256_of(Path(path))}


def _panorama_expected(panorama: str, size: tuple[int, int]) -> bool:
    """Whether the pipeline will treat an input of ``size`` (width, height, from its header) as a panorama."""
    from latenthdr import panorama as equirect

    return {"on": True, "off": False}.get(panorama, equirect.is_equirectangular(size[1], size[0]))


@dataclass(frozen=True)
class Conversion:
    """One image to convert: the input file (as given, or found in a folder IN) and its output set's paths."""

    input: str
    paths: dict


def run_convert(args) -> int:
    """Check every conversion on every process, load the models, wait for the other processes, convert this
    process's share (all of them in a plain run), report once (the main process): one input's report, or for
    several the files written."""
    from latenthdr import distributed, exposure
    from latenthdr.errors import InputError
    from latenthdr.pipeline import LatentHDRPipeline

    started = time.perf_counter()
    evs = exposure.parse_ev_ladder(args.evs, "--evs", require_zero=True)
    if args.decoded_only and (args.blend or merge_options_of(args)):
        raise InputError("--decoded-only", "cannot be combined with --blend, --highlight-shrink or --rim-bound "
                                           "(options of the input-preserving merge)")
    check_max_memory(args.max_memory)  # before any work
    check_device(args.device)
    batch = is_batch(args.input)
    options = output_options_of(args, None if batch else args.output)
    processes = distributed.processes(cpu=args.device == "cpu")
    todo, skipped, sizes = check_conversions(plan_conversions(args, options.format, batch), args, options, batch)
    t0 = time.perf_counter()
    pipe = LatentHDRPipeline.from_pretrained(codec=args.codec, head=args.head, device=processes.device(args.device),
                                             merge_options=merge_options_of(args))
    load_s = time.perf_counter() - t0
    estimates = [_check_memory(pipe, job, size, len(evs), args, batch) for job, size in zip(todo, sizes)]
    processes.wait()  # every process has checked every conversion before any process writes
    mine = processes.split(list(zip(todo, estimates)))
    reports = [convert_one(pipe, job, evs, args, options, load_s, started if not batch else time.perf_counter(),
                           estimate) for job, estimate in mine]
    written = processes.gather([r["output"][options.format] for r in reports])
    if not processes.is_main:
        return 0
    if not batch and reports:
        print_json(reports[0])
        return 0
    summary = {"written": written, "skipped": skipped, "load_models_s": load_s}
    if processes.count > 1:
        summary["processes"] = processes.count
    print_json(summary)
    return 0


def is_batch(inputs: list[str]) -> bool:
    """Whether IN is several images or a folder (then -o is a folder), not the one image of ``convert IN -o OUT``."""
    return len(inputs) > 1 or Path(inputs[0]).is_dir()


def plan_conversions(args, fmt: str, batch: bool) -> list[Conversion]:
    """The conversions of IN: one to -o, or (``batch``) each image given or found in a folder IN to -o DIR/NAME.exr
    (NAME: the input's name without its suffix; .hdr with --format hdr). InputError for a folder without images,
    for -o that is not a folder, or for two inputs that would write the same file."""
    from latenthdr.errors import InputError

    previews = not args.no_previews
    if not batch:
        return [Conversion(args.input[0], output_paths(args.output, previews, fmt))]
    folder = Path(args.output)
    if folder.suffix.lower() in FORMATS.values() or folder.is_file():
        raise InputError("--output", f"{folder}: with several inputs or a folder IN, -o is a folder (created if "
                                     "absent)")
    files = [f for given in args.input for f in (images_in(Path(given)) if Path(given).is_dir() else [given])]
    by_name: dict[str, str] = {}
    for file in files:
        name = Path(file).stem + FORMATS[fmt]
        if name in by_name:
            raise InputError("IN", f"{by_name[name]} and {file} would both be written as {folder / name}; convert "
                                   "them into different folders")
        by_name[name] = file
    return [Conversion(file, output_paths(str(folder / name), previews, fmt)) for name, file in by_name.items()]


def images_in(folder: Path) -> list[str]:
    """The images directly in ``folder`` that convert reads, sorted by name: LDR and HDR files, less hidden files
    (temporaries), previews and bracket sheets, and HDR files whose sidecar names them as its output (what an
    earlier convert wrote there). InputError when there is none."""
    from latenthdr import io
    from latenthdr.errors import InputError

    accepted = io.LDR_EXTENSIONS + io.HDR_EXTENSIONS
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in accepted
                   and not p.name.startswith(".") and not p.name.endswith((".preview.png", ".bracket.png"))
                   and not _written_by_us(p))
    if not files:
        raise InputError("IN", f"{folder}: no images; accepted: a folder of {', '.join(accepted)} files")
    return [str(p) for p in files]


def _written_by_us(path: Path) -> bool:
    import json

    sidecar = path.with_suffix(".json")
    if path.suffix.lower() not in (".exr", ".hdr") or not sidecar.is_file():
        return False
    try:
        named = json.loads(sidecar.read_text(encoding="utf-8")).get("output", {})
        return isinstance(named, dict) and any(Path(v).name == path.name for v in named.values())
    except (OSError, ValueError, AttributeError):
        return False


def check_conversions(jobs: list[Conversion], args, options: OutputOptions, batch: bool):
    """Before any work: the conversions to make (less complete sets with --skip-existing), the skipped outputs, and
    each input's (width, height) from its header (None: read whole later). Refuses an existing output (without
    --overwrite), an output that is the input, and panorama options for a perspective input."""
    from latenthdr import io
    from latenthdr.cli.generate import _complete, _make_folder
    from latenthdr.errors import InputError

    if batch:
        _make_folder(Path(args.output))
        io.recover_outputs(Path(args.output))
    todo, skipped, sizes = [], [], []
    for job in jobs:
        if args.skip_existing and _complete(job.paths):
            skipped.append(str(image_path(job.paths)))
            continue
        for path in job.paths.values():
            io.check_output(path, args.overwrite, "--output")
            if path.resolve() == Path(job.input).resolve():
                raise InputError("--output", f"{path} would replace the input IN; choose another output name")
        size = io.check_image_size(job.input, "IN")
        if size is not None and not _panorama_expected(args.panorama, size):
            refuse_panorama_options(options, f"{job.input if batch else 'IN'} ({size[0]}x{size[1]})")
        todo.append(job)
        sizes.append(size)
    return todo, skipped, sizes


def _check_memory(pipe, job: Conversion, size, n_evs: int, args, batch: bool):
    """The peak-memory estimate (bytes; None without the size) of one conversion; InputError over --max-memory."""
    estimate = None if size is None else pipe.memory_estimate(size[1], size[0], n_evs,
                                                              selective=not args.decoded_only)
    what = f"converting {size[0]}x{size[1]} pixels with {n_evs} EVs" if size else ""
    check_memory(estimate, args.max_memory, f"{job.input}: {what}" if batch and what else what,
                 "convert a smaller copy of the image or use fewer EVs (the embedded codec needs the least)")
    return estimate


def convert_one(pipe, job: Conversion, evs, args, options: OutputOptions, load_s: float, started: float,
                estimate) -> dict:
    """Convert one image and write its HDR, previews and sidecar (``write_output_set``); returns the sidecar."""
    from latenthdr import exposure, metrics, tonemap

    blend = not args.decoded_only
    image, source = load_input(job.input, args.input_curve)
    out = pipe(image, evs=evs, panorama={"on": True, "off": False}.get(args.panorama, "auto"), blend=blend)
    hdr = out.hdr[0]
    models = pipe.describe(args.head)
    if args.codec in (None, "embedded"):
        models["codec_weights"] = shipped_weights("codec", pipe.codec.space)
    paths = job.paths
    report = {"input": source, "output": {k: str(v) for k, v in paths.items()}, "evs": list(evs),
              "panorama": out.panorama, "merge": merge_name(blend),
              "merge_options": pipe.merge_options if blend else {}, "models": models, "plow": out.plow[0],
              "phigh": out.phigh[0], "stops": metrics.stops(hdr), "size": list(hdr.shape[-2:]),
              "decoded_fraction": 1.0 if out.decoded is None else float(out.decoded.float().mean()),
              "memory_estimate_gb": None if estimate is None else round(estimate / 1e9, 3)}
    if not args.no_previews:
        report["bracket_sheet"] = BRACKET_SHEET
    sheet = None if args.no_previews else tonemap.contact_sheet(tonemap.reexposed_bracket(hdr, evs),
                                                                  [f"EV {e:+g}" for e in evs], columns=7)
    report["timings_s"] = {"load_models": load_s, **out.timings}
    write_output_set(paths, hdr, sheet, report, options=options, panorama=out.panorama, overwrite=args.overwrite,
                     inputs=(job.input,), started=started, what=f"IN ({hdr.shape[-1]}x{hdr.shape[-2]})",
                     metadata={"evs": exposure.format_ev_ladder(evs), "space": pipe.codec.space, "input": job.input,
                               "input_sha256": source["sha256"], "merge": merge_name(blend),
                               "head": models["head"] or ""})
    return report
