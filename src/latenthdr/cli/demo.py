"""``latenthdr demo``: the README's main job, offline, on an image the command makes itself.

It builds a procedural daylight panorama (``scenes.sky_panorama``, about 20 stops), synthesises its 8-bit
bracket, merges the bracket back to linear HDR and writes the results with previews, then reports how close
the round trip came to the source.
"""

from __future__ import annotations

from pathlib import Path

from latenthdr.cli._common import add_overwrite, print_json


def register(sub) -> None:
    p = sub.add_parser("demo", help="offline demo: make a scene, bracket it, merge it back; prints output paths")
    p.add_argument("-o", "--output", default="demo-out", metavar="DIR", help="output directory (default demo-out)")
    p.add_argument("--evs", default="-7:5:1", help="EV ladder (default -7:5:1)")
    p.add_argument("--size", type=int, default=512, help="panorama width in pixels (default 512)")
    add_overwrite(p)
    p.set_defaults(handler=run_demo)


def run_demo(args) -> int:
    import torch

    from latenthdr import exposure, io, merge, metrics, scenes, tonemap
    from latenthdr.errors import InputError

    if args.size < 16 or args.size % 2:
        raise InputError("--size", f"got {args.size}; accepted: an even width >= 16")
    evs = exposure.parse_ev_ladder(args.evs, "--evs")
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise InputError("--output", f"{out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in ("source.exr", "merged.exr", "preview.png", "bracket.png")}
    for path in paths.values():
        io.check_output(path, args.overwrite, "--output")
    io.check_bracket_dir(out / "bracket", args.overwrite, "--output")

    source = scenes.sky_panorama(args.size // 2, args.size)
    H, scale = exposure.anchor(source, clipped_fraction=0.03)
    y = exposure.synthesize_bracket(H, evs)  # [K,3,H,W] 8-bit gamma 2.2
    result = merge.merge_bracket(y, evs)
    meta = {"evs": list(evs), "ev0_scale": scale, "plow": result.plow, "phigh": result.phigh}
    io.write_exr(paths["source.exr"], io.to_numpy(H), panorama=True, metadata={"ev0_scale": scale},
                 overwrite=args.overwrite)
    io.write_bracket_dir(out / "bracket", [io.to_numpy(f) for f in y], evs,
                         {"curve": "gamma2.2", "bits": 8, "ev0_scale": scale, "source": "source.exr"},
                         overwrite=args.overwrite)
    io.write_exr(paths["merged.exr"], io.to_numpy(result.hdr), panorama=True, metadata=meta, overwrite=args.overwrite)
    preview = tonemap.tonemap(result.hdr, "aces", exposure_ev=tonemap.auto_exposure_ev(result.hdr))
    io.write_png(paths["preview.png"], io.to_numpy(preview), overwrite=args.overwrite)
    sheet = tonemap.contact_sheet(y, [f"EV {e:+g}" for e in evs], columns=5)
    io.write_png(paths["bracket.png"], io.to_numpy(sheet), overwrite=args.overwrite)
    seen = result.weight_sum > 0
    print_json({
        "outputs": {name: str(path) for name, path in paths.items()} | {"bracket_dir": str(out / "bracket")},
        "source_stops": metrics.stops(H), "merged_stops": metrics.stops(result.hdr),
        "round_trip_pu21_psnr_db": metrics.pu21_psnr(result.hdr, H),
        "round_trip_median_abs_stops": metrics.log_error_stops(result.hdr, H, seen)["median_abs"],
        "plow": result.plow, "phigh": result.phigh,
        "note": "procedural scene; `latenthdr convert PHOTO -o OUT.exr` turns your own LDR photo into HDR",
    })
    return 0
