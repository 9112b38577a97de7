"""``latenthdr demo``: the README's main job, offline, on the embedded default and an image it makes itself.

It renders a procedural daylight panorama (``scenes.sky_panorama``, about 20 stops, so the truth is known),
takes its 8-bit gamma-2.2 exposure with 3% of the pixels clipped as "the photo" (written as input.png), and runs
what ``latenthdr convert input.png -o hdr.exr --input-curve gamma2.2`` runs (the photo is gamma 2.2, not sRGB):
encode, one batched head pass, selective decoding and the input-preserving merge (the default).
It writes the HDR, a tone-mapped preview, the bracket's contact sheet and a JSON sidecar, then reports the
stage timings and how far the HDR is from the truth next to the linearised photo.
"""

from __future__ import annotations

from pathlib import Path

from latenthdr.cli._common import add_max_memory, add_overwrite, check_max_memory, check_memory, print_json
from latenthdr.cli.convert import BRACKET_SHEET

OUTPUTS = ("input.png", "truth.exr", "hdr.exr", "hdr.preview.png", "hdr.bracket.png", "hdr.json")  # sidecar last
MAX_WIDTH = 8192


def register(sub) -> None:
    p = sub.add_parser("demo", help="offline demo on the embedded default: photo -> HDR; prints output paths")
    p.add_argument("-o", "--output", default="demo-out", metavar="DIR", help="output directory (default demo-out)")
    p.add_argument("--evs", default="-7:5:1", help="EV ladder (default -7:5:1)")
    p.add_argument("--width", type=int, default=1024, help="panorama width in pixels (default 1024; height = w/2)")
    p.add_argument("--codec", help="latent codec (default: the embedded default)")
    p.add_argument("--head", help="exposure head file (default: the head shipped for the codec)")
    add_max_memory(p)
    add_overwrite(p)
    p.set_defaults(handler=run_demo)


def run_demo(args) -> int:
    import time

    from latenthdr import __version__, exposure, io, metrics, photometry, scenes, tonemap
    from latenthdr.bench import l2h
    from latenthdr.errors import InputError
    from latenthdr.pipeline import LatentHDRPipeline

    started = time.perf_counter()
    if not 64 <= args.width <= MAX_WIDTH or args.width % 16:
        raise InputError("--width", f"got {args.width}; accepted: a multiple of 16 from 64 to {MAX_WIDTH}")
    evs = exposure.parse_ev_ladder(args.evs, "--evs", require_zero=True)
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise InputError("--output", f"{out}: exists and is not a directory")
    paths = {name: out / name for name in OUTPUTS}
    if out.is_dir():
        for path in paths.values():
            io.check_output(path, args.overwrite, "--output")
    check_max_memory(args.max_memory)
    pipe = LatentHDRPipeline.from_pretrained(codec=args.codec, head=args.head)
    check_memory(pipe.memory_estimate(args.width // 2, args.width, len(evs)), args.max_memory,
                 f"the demo at {args.width}x{args.width // 2} with {len(evs)} EVs", "give a smaller --width")
    case = l2h.make_case("demo", scenes.sky_panorama(args.width // 2, args.width), clip_fraction=0.03)
    result = pipe(case.ldr, evs=evs)
    hdr = result.hdr[0]
    t0 = time.perf_counter()
    report = {
        "outputs": {name: str(path) for name, path in paths.items()},
        "models": pipe.describe(args.head),
        "evs": list(evs), "plow": result.plow[0], "phigh": result.phigh[0],
        "stops": {"truth": metrics.stops(case.ref), "hdr": metrics.stops(hdr),
                  "photo": metrics.stops(l2h.linearised_input(case.ldr, evs))},
        "vs_truth": {"hdr": l2h.score(hdr, case), "photo_linearised": l2h.score(l2h.linearised_input(case.ldr, evs), case)},
        "seam": metrics.seam_error(hdr),
        "bracket_sheet": BRACKET_SHEET,
    }
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError("--output", f"{out}: cannot create the folder ({error.strerror})") from None
    with io.output_set(paths, overwrite=args.overwrite, argument="--output") as temps:
        io.write_png(temps["input.png"], io.to_numpy(case.ldr), overwrite=True)
        io.write_exr(temps["truth.exr"], io.to_numpy(case.ref), panorama=True, overwrite=True)
        io.write_exr(temps["hdr.exr"], io.to_numpy(hdr), panorama=True, overwrite=True,
                     metadata={"evs": exposure.format_ev_ladder(evs), "space": pipe.codec.space,
                               "merge": "input-preserving", "input": str(paths["input.png"]),
                               "version": __version__, "models": report["models"],
                               "scale": photometry.relative().resolve(hdr, True)})  # as convert records it
        preview = tonemap.tonemap(hdr, "aces", exposure_ev=tonemap.auto_exposure_ev(hdr))
        io.write_png(temps["hdr.preview.png"], io.to_numpy(preview), overwrite=True)
        sheet = tonemap.contact_sheet(tonemap.reexposed_bracket(hdr, evs), [f"EV {e:+g}" for e in evs], columns=7)
        io.write_png(temps["hdr.bracket.png"], io.to_numpy(sheet), overwrite=True)
        report["timings_s"] = {**result.timings, "write": time.perf_counter() - t0,
                               "total": time.perf_counter() - started}
        io.write_json(temps["hdr.json"], report, overwrite=True)
    print_json(report)
    return 0
