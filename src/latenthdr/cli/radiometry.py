"""Commands without models: ``bracket``, ``merge``, ``metrics``, ``info``, ``demo``."""

from __future__ import annotations

from pathlib import Path

from latenthdr.cli._common import add_overwrite, parse_times, print_json
from latenthdr.errors import LatentHDRError

MAX_SCALE = 2.0**100  # --scale: keeps float32 radiance finite


def register(sub) -> None:
    p = sub.add_parser("bracket", help="synthesise an 8-bit exposure bracket from an HDR image")
    p.add_argument("input", metavar="IN", help="HDR image (.exr or .hdr)")
    p.add_argument("--evs", default="-7:5:1", help="EV ladder: start:stop:step or a list (default -7:5:1)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory (created)")
    p.add_argument("--curve", default="gamma2.2", choices=("gamma2.2", "srgb"), help="display curve")
    anchor = p.add_mutually_exclusive_group()
    anchor.add_argument("--clip-fraction", type=float, help="EV-0 anchoring: fraction of pixels clipped at EV 0")
    anchor.add_argument("--percentile", type=float, help="EV-0 anchoring: this percentile maps to 1 (default 99.9)")
    anchor.add_argument("--scale", type=float, help="EV-0 scale given directly (1 keeps the file's values)")
    add_overwrite(p)
    p.set_defaults(handler=run_bracket)

    p = sub.add_parser("merge", help="merge a bracket directory or photographs into a linear HDR EXR")
    p.add_argument("inputs", nargs="+", metavar="IN", help="a bracket directory (with bracket.json) or 2+ images")
    p.add_argument("-o", "--output", required=True, metavar="OUT.exr", help="output EXR (or .hdr)")
    p.add_argument("--times", help="exposure times in seconds for photographs, e.g. 1/8,1,8 (default: EXIF)")
    p.add_argument("--response", default="debevec", choices=("debevec", "srgb", "gamma2.2"),
                   help="photographs: recover the camera response from the frames (Debevec 1997, default) "
                        "or assume a display curve")
    p.add_argument("--restore-scale", action="store_true",
                   help="bracket directory: divide by its EV-0 scale to return to the source's units")
    p.add_argument("--half", action="store_true", help="write half floats (refused if values overflow)")
    add_overwrite(p)
    p.set_defaults(handler=run_merge)

    p = sub.add_parser("metrics", help="compare a predicted HDR with a reference; prints JSON")
    p.add_argument("pred", metavar="PRED", help="predicted HDR (.exr/.hdr)")
    p.add_argument("ref", metavar="REF", help="reference HDR (.exr/.hdr)")
    p.add_argument("--ldr", metavar="INPUT", help="the LDR input: align scale over its well-exposed pixels")
    p.add_argument("--peak-nits", type=float, default=4000.0, help="display peak for PU21 (default 4000)")
    p.add_argument("--no-align", action="store_true", help="skip the global-scale alignment")
    p.set_defaults(handler=run_metrics)

    p = sub.add_parser("preview", help="tone-map an HDR image to an 8-bit sRGB PNG")
    p.add_argument("input", metavar="IN", help="HDR image (.exr or .hdr)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.png")
    p.add_argument("--operator", default="aces", choices=("aces", "reinhard", "clip"),
                   help="tone curve: ACES filmic fit (Narkowicz), Reinhard 2002, or plain clipping")
    p.add_argument("--exposure", default="auto", metavar="EV",
                   help="exposure in stops applied first, or 'auto' (log-average luminance to 0.18)")
    add_overwrite(p)
    p.set_defaults(handler=run_preview)

    p = sub.add_parser("info", help="size, channels, value range and stops of an image")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(handler=run_info)


def run_bracket(args) -> int:
    from latenthdr import exposure, io, tonemap
    from latenthdr.errors import InputError

    evs = exposure.parse_ev_ladder(args.evs, "--evs")
    io.check_bracket_dir(args.output, args.overwrite, "--output")
    image = io.read_hdr(args.input, "IN")
    H = io.to_tensor(image.pixels)
    if args.scale is not None:
        if not 0 < args.scale <= MAX_SCALE:
            raise InputError("--scale", f"got {args.scale}; accepted: a number > 0 and <= 2^100")
        scale, anchor = args.scale, {"scale": args.scale}
    elif args.clip_fraction is not None:
        scale = exposure.anchor_scale(H, clipped_fraction=args.clip_fraction)
        anchor = {"clipped_fraction": args.clip_fraction}
    else:
        percentile = 99.9 if args.percentile is None else args.percentile
        scale, anchor = exposure.anchor_scale(H, percentile=percentile), {"percentile": percentile}
    y = exposure.synthesize_bracket(H * scale, evs, curve=args.curve, bits=8)
    meta = {"source": str(args.input), "curve": args.curve, "bits": 8, "ev0_scale": scale, "anchor": anchor}
    sheet = tonemap.contact_sheet(y, [f"EV {e:+g}" for e in evs], columns=min(len(evs), 7))
    meta["contact_sheet"] = io.BRACKET_CONTACT_SHEET
    paths = io.write_bracket_dir(args.output, [io.to_numpy(f) for f in y], evs, meta, overwrite=args.overwrite,
                                 contact_sheet=io.to_numpy(sheet), argument="--output")
    print_json({"directory": args.output, "frames": [str(p) for p in paths], "evs": list(evs), "ev0_scale": scale,
                "negative_clamped": image.negative_clamped})
    return 0


def run_merge(args) -> int:
    from latenthdr import io

    io.check_output(args.output, args.overwrite, "--output", extensions=(".exr", ".hdr"))
    if len(args.inputs) == 1 and Path(args.inputs[0]).is_dir():
        result, meta = _merge_bracket_dir(args)
    else:
        result, meta = _merge_photographs(args)
    hdr = io.to_numpy(result.hdr)
    meta.update(plow=result.plow, phigh=result.phigh)
    if args.output.lower().endswith(".hdr"):
        io.write_hdr(args.output, hdr, overwrite=args.overwrite)
    else:
        io.write_exr(args.output, hdr, half=args.half, metadata=meta, overwrite=args.overwrite)
    print_json({"output": args.output, "size": list(hdr.shape[:2]), "plow": result.plow, "phigh": result.phigh,
                "evs": meta["evs"]})
    return 0


def _merge_bracket_dir(args):
    import torch

    from latenthdr import io, merge
    from latenthdr.errors import InputError

    if args.times:
        raise InputError("--times", "exposure times apply to photographs; a bracket directory has its EVs")
    frames, evs, meta = io.read_bracket_dir(args.inputs[0], "IN")
    y = torch.stack([io.to_tensor(f) for f in frames])  # [K,3,H,W] display-encoded
    result = merge.merge_bracket(y, evs, curve=meta.get("curve", "gamma2.2"))
    if args.restore_scale:
        result.hdr = result.hdr / float(meta["ev0_scale"])
    out = {"evs": list(evs), "curve": meta.get("curve", "gamma2.2"), "source": str(args.inputs[0]),
           "ev0_scale": meta.get("ev0_scale"), "scale_restored": bool(args.restore_scale)}
    return result, out


def _merge_photographs(args):
    import torch

    from latenthdr import io, photographs
    from latenthdr.errors import InputError

    if len(args.inputs) < 2:
        raise InputError("IN", "give a bracket directory or at least two photographs")
    if args.restore_scale:
        raise InputError("--restore-scale", "applies to bracket directories only")
    images = [io.read_ldr(path, f"IN ({path})") for path in args.inputs]
    if args.times:
        times = parse_times(args.times)
        if len(times) != len(images):
            raise InputError("--times", f"{len(times)} times for {len(images)} images")
    else:
        missing = [p for p, im in zip(args.inputs, images) if not im.exif.get("exposure_time_s")]
        if missing:
            raise InputError("--times", f"no EXIF exposure time in {', '.join(missing)}; give --times")
        times = [float(im.exif["exposure_time_s"]) for im in images]
    sizes = {im.pixels.shape[:2] for im in images}
    if len(sizes) > 1:
        raise InputError("IN", f"the photographs differ in size (H, W): {sorted(sizes)}; a bracket needs one size")
    frames = torch.stack([io.to_tensor(im.pixels) for im in images])
    curve = "srgb" if args.response == "debevec" else args.response
    response = "debevec" if args.response == "debevec" else "curve"
    lut = photographs.recover_response_debevec(frames, times) if response == "debevec" else None
    result = photographs.merge_photographs(frames, times, curve=curve, response=response, response_lut=lut)
    evs, reference_time_s = photographs.exposure_times_to_evs(times)
    return result, {"exposure_times_s": times, "response": args.response, "evs": evs,
                    "reference_time_s": reference_time_s,
                    "response_lut": None if lut is None else [[round(float(v), 7) for v in row] for row in lut],
                    "sources": [str(p) for p in args.inputs]}


def run_metrics(args) -> int:
    from latenthdr import io, metrics

    pred = io.to_tensor(io.read_hdr(args.pred, "PRED").pixels)
    ref = io.to_tensor(io.read_hdr(args.ref, "REF").pixels)
    mask = None
    if args.ldr:
        ldr = io.to_tensor(io.read_ldr(args.ldr, "--ldr").pixels)
        if ldr.shape != ref.shape:
            from latenthdr.errors import InputError

            raise InputError("--ldr", f"size {tuple(ldr.shape[1:])} differs from REF {tuple(ref.shape[1:])}")
        mask = metrics.well_exposed_mask(ldr)
    report = metrics.compare_hdr(pred, ref, peak_nits=args.peak_nits, align=not args.no_align, mask=mask)
    print_json(report)
    return 0


def run_info(args) -> int:
    from latenthdr import io, metrics

    image = io.read_image(args.file, "FILE")
    pixels = image.pixels
    report = {"file": args.file, "width": pixels.shape[1], "height": pixels.shape[0], "channels": pixels.shape[2],
              "min": float(pixels.min()), "max": float(pixels.max()), "mean": float(pixels.mean())}
    if isinstance(image, io.HdrImage):
        report.update(kind="hdr", encoding="linear", negative_clamped=image.negative_clamped, header=image.header)
        try:
            report["stops"] = metrics.stops(io.to_tensor(pixels))
        except LatentHDRError as err:  # a black or single-pixel image has no dynamic range to report
            report["stops"], report["stops_note"] = None, str(err)
    else:
        report.update(kind="ldr", encoding="display", bits=image.bits, had_alpha=image.had_alpha, exif=image.exif)
    print_json(report)
    return 0


def run_preview(args) -> int:
    import math

    from latenthdr import exposure, io, tonemap
    from latenthdr.errors import InputError

    io.check_output(args.output, args.overwrite, "--output", extensions=(".png",))
    H = io.to_tensor(io.read_hdr(args.input, "IN").pixels)
    if args.exposure == "auto":
        ev = tonemap.auto_exposure_ev(H)
    else:
        try:
            ev = float(args.exposure)
        except ValueError:
            ev = math.nan
        if not abs(ev) <= exposure.MAX_ABS_EV:
            raise InputError("--exposure", f"got {args.exposure!r}; accepted: 'auto' or a number of stops from "
                                           f"-{exposure.MAX_ABS_EV:g} to {exposure.MAX_ABS_EV:g}")
    display = tonemap.tonemap(H, args.operator, exposure_ev=ev)
    io.write_png(args.output, io.to_numpy(display), overwrite=args.overwrite)
    print_json({"output": args.output, "operator": args.operator, "exposure_ev": ev})
    return 0
