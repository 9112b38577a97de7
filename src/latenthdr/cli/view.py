"""``latenthdr view``: look at linear HDR files in the browser, on a page served on 127.0.0.1 until Ctrl-C.

Every FILE is read (and so checked) before the server starts. The page tone-maps in WebGL: exposure, ACES /
Reinhard / AgX-like / clip, false-colour stops, a luminance histogram, the linear value under the cursor, the
sidecar's metadata and bracket sheet, and look-around for 2:1 panoramas (see docs/view.md and latenthdr.viewer).
"""

from __future__ import annotations

import sys

from latenthdr.cli._common import check_int, print_json
from latenthdr.viewer.server import FOV_RANGE_DEG, OPERATORS


def register(sub) -> None:
    p = sub.add_parser("view", help="view HDR files in the browser: exposure, tone mappers, false colour, histogram, "
                                    "pixel values, metadata, panorama look-around",
                       description="Serve a viewer page for the named HDR files on 127.0.0.1 (a free port unless "
                                   "--port), open it in the browser, and keep serving until Ctrl-C. Only the named "
                                   "files and their sidecar JSON and bracket sheet are served.")
    p.add_argument("files", nargs="+", metavar="FILE", help="HDR images (.exr, .hdr, .pic)")
    p.add_argument("--exposure", default="auto", metavar="EV",
                   help="exposure in stops the page opens with, or 'auto' (default: each file's log-average "
                        "luminance to 18%% grey)")
    p.add_argument("--operator", default="aces", choices=OPERATORS,
                   help="tone mapper the page opens with: ACES filmic (Narkowicz), Reinhard 2002, an AgX-like curve, "
                        "or clip (default aces)")
    p.add_argument("--false-colour", action="store_true", help="open in the false-colour stops view")
    p.add_argument("--look-around", action="store_true",
                   help="open in the perspective view of a 2:1 equirectangular panorama (every FILE must be 2:1)")
    p.add_argument("--yaw", type=float, default=0.0, metavar="DEG",
                   help="look-around: azimuth at the view centre, degrees (0 = image centre, +90 = 3/4 across)")
    p.add_argument("--pitch", type=float, default=0.0, metavar="DEG", help="look-around: elevation, -90 to 90 degrees")
    p.add_argument("--fov", type=float, default=90.0, metavar="DEG",
                   help=f"look-around: horizontal field of view, {FOV_RANGE_DEG[0]:g} to {FOV_RANGE_DEG[1]:g} "
                        f"degrees (default 90)")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default 0: a free one, printed)")
    p.add_argument("--no-browser", action="store_true", help="only print the address; do not open a browser")
    p.set_defaults(handler=run_view)


def run_view(args) -> int:
    from latenthdr import viewer
    from latenthdr.errors import InputError

    settings = viewer.check_view_settings(viewer.ViewSettings(
        exposure_ev=_exposure(args.exposure), operator=args.operator, false_colour=args.false_colour,
        look_around=args.look_around, yaw_deg=args.yaw, pitch_deg=args.pitch, fov_deg=args.fov))
    check_int("--port", args.port, 0, 65535)
    files = [viewer.load_file(path, "FILE") for path in args.files]
    if args.look_around:
        for f in files:
            if not f.panorama:
                raise InputError("--look-around", f"{f.path} is {f.width}x{f.height}, not a 2:1 equirectangular "
                                                  f"panorama; look-around needs width = 2 x height (view this file "
                                                  f"without --look-around)")
    try:
        server = viewer.ViewerServer(files, settings, args.port)
    except OSError as error:
        raise InputError("--port", f"cannot listen on 127.0.0.1:{args.port} ({error.strerror or error}); give "
                                   f"another port, or 0 for a free one") from None
    with server:  # closed on Ctrl-C / SIGTERM too; cli.main then exits 130 / 143
        print_json({"url": server.url, "files": [{"file": str(f.path), "width": f.width, "height": f.height,
                                                  "panorama": f.panorama} for f in files]})
        if sys.stdout is not None:
            sys.stdout.flush()
        if sys.stderr is not None:
            print(f"latenthdr view: serving {len(files)} file{'s' * (len(files) > 1)} at {server.url} "
                  f"(Ctrl-C to stop)", file=sys.stderr, flush=True)
        if not args.no_browser:
            _open_browser(server.url)
        server.serve_forever(poll_interval=0.25)
    return 0


def _exposure(text: str) -> float | None:
    """--exposure: None for 'auto', else the number of stops (range checked by check_view_settings)."""
    from latenthdr.errors import InputError

    if text == "auto":
        return None
    try:
        return float(text)
    except ValueError:
        raise InputError("--exposure", f"got {text!r}; accepted: 'auto' or a number of stops") from None


def _open_browser(url: str) -> None:
    """Open ``url`` in the user's browser without blocking the server (a console browser would run in the
    foreground); say so on stderr when there is none."""
    import threading
    import webbrowser

    try:
        browser = webbrowser.get()
    except webbrowser.Error:
        if sys.stderr is not None:
            print(f"latenthdr view: no browser found; open {url} in one", file=sys.stderr, flush=True)
        return
    threading.Thread(target=browser.open, args=(url,), daemon=True).start()
