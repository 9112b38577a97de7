"""The HDR viewer's web server: the named files' linear pixels and metadata, for a page that tone-maps in WebGL.

Standard library only (``http.server.ThreadingHTTPServer``), bound to 127.0.0.1. Routes (GET and HEAD; any other
path is 404, there is no directory listing, and no route takes a file path, so nothing outside the named files
and their companions can be reached):

  /                                   the page (index.html); /viewer.js, /render.js, /viewer.css: its static files
  /api/state                          the files (name, size, panorama, companions) and the initial view, JSON
  /api/files/<i>/meta                 header, sidecar JSON, statistics and luminance histogram of file i, JSON
  /api/files/<i>/pixels[?max=N]       linear RGB [H, W, 3], rows top to bottom, little-endian float16 (float32 when
                                      a value exceeds half's range); headers X-Width, X-Height, X-Dtype, X-Downsample
  /files/<i>/original                 the file itself
  /files/<i>/sidecar.json             its sidecar (same stem, .json), where present
  /files/<i>/bracket.png              its bracket sheet (same stem, .bracket.png), where the sidecar names it

The library never prints: request logging is off, and connection errors of a browser that went away are ignored.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np

from latenthdr.errors import InputError

HOST = "127.0.0.1"
OPERATORS = ("aces", "reinhard", "agx", "clip")  # render.js implements each; the order is the menu's
HISTOGRAM_BIN_STOPS = 0.25
HISTOGRAM_MAX_STOPS = 40.0  # wider luminance ranges keep their brightest 40 stops; darker pixels count in bin 0
MAX_SIDECAR_BYTES = 16 * 2**20
FOV_RANGE_DEG = (5.0, 170.0)  # horizontal field of view of look-around (the page's slider)
STATIC = {"/": ("index.html", "text/html; charset=utf-8"), "/viewer.js": ("viewer.js", "text/javascript"),
          "/render.js": ("render.js", "text/javascript"), "/viewer.css": ("viewer.css", "text/css")}
CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'"
_FILE_ROUTE = re.compile(r"/(api/files|files)/(\d{1,6})/(meta|pixels|original|sidecar\.json|bracket\.png)")


@dataclass
class ViewedFile:
    """One HDR file as the viewer serves it.

    pixels: [H, W, 3] linear RGB, float16 when the peak fits half (<= 65504), else float32; rows top to bottom.
    header: the reader's header (EXR attributes or Radiance variables), json-friendly.
    stats: luminance statistics and histogram (see ``luminance_stats``), and ``auto_ev``.
    sidecar / sidecar_path: the parsed JSON beside the file (same stem, .json) and its path, or None;
        ``sidecar_error`` says why a sidecar that exists could not be used.
    sheet_path: the bracket sheet (same stem, .bracket.png) when it exists and the sidecar names it, else None.
    """

    path: Path
    pixels: np.ndarray
    header: dict
    stats: dict
    negative_clamped: int = 0
    sidecar: object = None
    sidecar_path: Path | None = None
    sidecar_error: str | None = None
    sheet_path: Path | None = None

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def panorama(self) -> bool:
        """2:1 within 1% (``panorama.is_equirectangular``): look-around applies."""
        from latenthdr.panorama import is_equirectangular

        return is_equirectangular(self.height, self.width)


def load_file(path, argument: str = "FILE") -> ViewedFile:
    """Read an HDR file (``io.read_hdr``) with its sidecar and bracket sheet; InputError naming ``argument``."""
    from latenthdr import io, tonemap

    image = io.read_hdr(path, argument)
    pixels = image.pixels  # float32 [H, W, 3], linear, finite, >= 0
    stats = luminance_stats(pixels)
    stats["auto_ev"] = tonemap.auto_exposure_ev(io.to_tensor(pixels))
    peak = float(pixels.max()) if pixels.size else 0.0
    stats["dtype"] = "float16" if peak <= io.HALF_MAX else "float32"
    stored = pixels.astype(np.float16) if stats["dtype"] == "float16" else pixels
    viewed = ViewedFile(Path(path), stored, image.header, stats, image.negative_clamped)
    _attach_companions(viewed)
    return viewed


def luminance_stats(pixels: np.ndarray) -> dict:
    """Rec.709 luminance statistics of linear RGB [H, W, 3] (accumulated in float64) and a histogram of log2 L.

    histogram: ``counts`` of pixels with L > 0 in bins of ``bin_stops`` from ``log2_lo`` (bin k covers
    [log2_lo + k bin_stops, log2_lo + (k + 1) bin_stops)); pixels darker than log2_lo count in bin 0;
    ``zero`` counts pixels with L = 0.
    """
    from latenthdr.response import REC709_LUMA

    L = pixels.reshape(-1, 3).astype(np.float64) @ np.asarray(REC709_LUMA)  # [N]
    positive = L[L > 0]
    stats = {"luminance_min": float(L.min()) if L.size else 0.0, "luminance_max": float(L.max()) if L.size else 0.0,
             "luminance_mean": float(L.mean()) if L.size else 0.0,
             "luminance_min_positive": float(positive.min()) if positive.size else None}
    histogram = {"bin_stops": HISTOGRAM_BIN_STOPS, "log2_lo": 0.0, "counts": [], "zero": int(L.size - positive.size)}
    if positive.size:
        log2_L = np.log2(positive)
        hi = math.ceil(float(log2_L.max()) / HISTOGRAM_BIN_STOPS + 1e-9) * HISTOGRAM_BIN_STOPS
        lo = max(math.floor(float(log2_L.min()) / HISTOGRAM_BIN_STOPS) * HISTOGRAM_BIN_STOPS,
                 hi - HISTOGRAM_MAX_STOPS)
        bins = max(1, round((hi - lo) / HISTOGRAM_BIN_STOPS))
        index = np.clip(((log2_L - lo) / HISTOGRAM_BIN_STOPS).astype(np.int64), 0, bins - 1)
        histogram.update(log2_lo=lo, counts=np.bincount(index, minlength=bins).tolist())
    stats["histogram"] = histogram
    return stats


def _attach_companions(viewed: ViewedFile) -> None:
    """The sidecar JSON (same stem) and the bracket sheet it names (same stem, .bracket.png, same folder)."""
    sidecar = viewed.path.with_suffix(".json")
    if not sidecar.is_file():
        return
    viewed.sidecar_path = sidecar
    try:
        if sidecar.stat().st_size > MAX_SIDECAR_BYTES:
            raise ValueError(f"larger than {MAX_SIDECAR_BYTES // 2**20} MB")
        viewed.sidecar = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:  # a damaged companion is shown as such; the image is still viewed
        viewed.sidecar_error = f"{sidecar.name}: not readable as JSON ({error})"
        return
    sheet = viewed.path.with_suffix(".bracket.png")
    if sheet.is_file() and sheet.name in _named_outputs(viewed.sidecar):
        viewed.sheet_path = sheet


def _named_outputs(sidecar) -> set[str]:
    """File names the sidecar lists as its outputs (``output``: convert and generate; ``outputs``: demo)."""
    if not isinstance(sidecar, dict):
        return set()
    names = set()
    for key in ("output", "outputs"):
        entries = sidecar.get(key)
        if isinstance(entries, dict):
            names.update(Path(v).name for v in entries.values() if isinstance(v, str))
    return names


def pixel_payload(viewed: ViewedFile, max_size: int | None = None) -> tuple[bytes, dict]:
    """The pixels as the page uploads them: little-endian bytes of [h, w, 3] and the headers that describe them.

    max_size: the page's largest texture side; a larger image is shrunk by the smallest integer factor f that
    fits (mean of f x f blocks; the last partial blocks are dropped), and X-Downsample says f.
    """
    pixels = viewed.pixels
    factor = 1 if not max_size else max(1, math.ceil(max(viewed.width, viewed.height) / max_size))
    if factor > 1:
        h, w = viewed.height // factor, viewed.width // factor
        blocks = pixels[: h * factor, : w * factor].astype(np.float32).reshape(h, factor, w, factor, 3)
        pixels = blocks.mean(axis=(1, 3)).astype(pixels.dtype)
    dtype = "<f2" if pixels.dtype == np.float16 else "<f4"
    data = np.ascontiguousarray(pixels, dtype=dtype).tobytes()
    headers = {"X-Width": str(pixels.shape[1]), "X-Height": str(pixels.shape[0]),
               "X-Dtype": "float16" if dtype == "<f2" else "float32", "X-Downsample": str(factor)}
    return data, headers


@dataclass
class ViewSettings:
    """The view the page opens with (the command line's flags)."""

    exposure_ev: float | None = None  # None: each file's auto exposure
    operator: str = "aces"
    false_colour: bool = False
    look_around: bool = False
    yaw_deg: float = 0.0
    pitch_deg: float = 0.0
    fov_deg: float = 90.0


class ViewerServer(ThreadingHTTPServer):
    """Serves ``files`` (ViewedFile) with ``settings`` on 127.0.0.1:``port`` (0: a free port the system picks)."""

    daemon_threads = True  # a browser holding a connection open never delays the exit

    def __init__(self, files: list[ViewedFile], settings: ViewSettings | None = None, port: int = 0):
        self.files = list(files)
        self.settings = settings or ViewSettings()
        super().__init__((HOST, port), _Handler)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/"

    def handle_error(self, request, client_address) -> None:
        """A browser that closed its connection is not an error; anything else is a bug, and gets the standard
        report (a traceback on stderr)."""
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)

    def state(self) -> dict:
        s = self.settings
        return {"files": [_describe(i, f) for i, f in enumerate(self.files)], "operators": list(OPERATORS),
                "settings": {"exposure_ev": s.exposure_ev, "operator": s.operator, "false_colour": s.false_colour,
                             "look_around": s.look_around, "yaw_deg": s.yaw_deg, "pitch_deg": s.pitch_deg,
                             "fov_deg": s.fov_deg, "fov_range_deg": list(FOV_RANGE_DEG)}}


def _describe(index: int, f: ViewedFile) -> dict:
    return {"index": index, "name": f.path.name, "path": str(f.path), "width": f.width, "height": f.height,
            "panorama": f.panorama, "dtype": f.stats["dtype"], "sidecar": f.sidecar_path is not None,
            "bracket_sheet": f.sheet_path is not None}


def file_meta(f: ViewedFile) -> dict:
    """What the page's metadata panels show for one file."""
    from latenthdr.io import exr_metadata

    return {"name": f.path.name, "path": str(f.path), "width": f.width, "height": f.height, "panorama": f.panorama,
            "stats": f.stats, "negative_clamped": f.negative_clamped, "header": f.header,
            "latenthdr_metadata": exr_metadata(f.header), "sidecar": f.sidecar,
            "sidecar_name": f.sidecar_path.name if f.sidecar_path else None, "sidecar_error": f.sidecar_error,
            "bracket_sheet": "bracket.png" if f.sheet_path else None}


class _Handler(BaseHTTPRequestHandler):
    server: ViewerServer
    protocol_version = "HTTP/1.1"
    server_version = "latenthdr-view"
    sys_version = ""

    def log_message(self, format, *args) -> None:  # the library never prints
        pass

    def do_GET(self) -> None:
        self._respond(body=True)

    def do_HEAD(self) -> None:
        self._respond(body=False)

    def _respond(self, body: bool) -> None:
        if not self._host_allowed():  # DNS rebinding: a page of another site resolved to 127.0.0.1
            return self._send(HTTPStatus.FORBIDDEN, b"forbidden host\n", "text/plain", body=body)
        url = urlsplit(self.path)
        if url.path in STATIC:
            name, content_type = STATIC[url.path]
            data = resources.files("latenthdr.viewer").joinpath(name).read_bytes()
            return self._send(HTTPStatus.OK, data, content_type, body=body)
        if url.path == "/api/state":
            return self._send_json(self.server.state(), body)
        match = _FILE_ROUTE.fullmatch(url.path)
        if match is None or int(match[2]) >= len(self.server.files):
            return self._not_found(body)
        api, f, what = match[1] == "api/files", self.server.files[int(match[2])], match[3]
        if api and what == "meta":
            return self._send_json(file_meta(f), body)
        if api and what == "pixels":
            return self._send_pixels(f, parse_qs(url.query).get("max", [None])[-1], body)
        if not api and what in ("original", "sidecar.json", "bracket.png"):
            path = {"original": f.path, "sidecar.json": f.sidecar_path, "bracket.png": f.sheet_path}[what]
            types = {"original": "application/octet-stream", "sidecar.json": "application/json",
                     "bracket.png": "image/png"}
            return self._send_file(path, types[what], body)
        return self._not_found(body)

    def _host_allowed(self) -> bool:
        host = self.headers.get("Host")
        port = self.server.server_address[1]
        return host is None or host in (f"{HOST}:{port}", f"localhost:{port}")

    def _send_pixels(self, f: ViewedFile, max_size: str | None, body: bool) -> None:
        if max_size is not None and not (max_size.isdigit() and 1 <= int(max_size) <= 2**20):
            return self._send(HTTPStatus.BAD_REQUEST, b"max: a texture size in pixels from 1 to 1048576\n",
                              "text/plain", body=body)
        data, headers = pixel_payload(f, int(max_size) if max_size else None)
        self._send(HTTPStatus.OK, data, "application/octet-stream", headers, body)

    def _send_file(self, path: Path | None, content_type: str, body: bool) -> None:
        try:
            data = path.read_bytes() if path is not None else None
        except OSError:  # removed or unreadable since the viewer started
            data = None
        if data is None:
            return self._not_found(body)
        self._send(HTTPStatus.OK, data, content_type, body=body)

    def _send_json(self, obj, body: bool) -> None:
        from latenthdr.io import json_default

        try:
            text = json.dumps(obj, default=json_default, allow_nan=False)
        except ValueError:  # a NaN or Inf in a header attribute or sidecar: JSON.parse would refuse the whole reply
            text = json.dumps(_finite(json.loads(json.dumps(obj, default=json_default))), allow_nan=False)
        data = text.encode("utf-8")
        self._send(HTTPStatus.OK, data, "application/json", body=body)

    def _not_found(self, body: bool) -> None:
        self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain", body=body)

    def _send(self, status: HTTPStatus, data: bytes, content_type: str, headers: dict | None = None,
              body: bool = True) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", CSP)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(data)


def _finite(obj):
    """``obj`` (parsed JSON) with NaN and +-Inf numbers replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    return obj


def check_view_settings(settings: ViewSettings) -> ViewSettings:
    """InputError naming the flag for a view setting out of range; returns ``settings`` with yaw in (-180, 180]."""
    from latenthdr.exposure import MAX_ABS_EV

    ev = settings.exposure_ev
    if ev is not None and not abs(ev) <= MAX_ABS_EV:
        raise InputError("--exposure", f"got {ev!r}; accepted: 'auto' or a number of stops from -{MAX_ABS_EV:g} "
                                       f"to {MAX_ABS_EV:g}")
    if settings.operator not in OPERATORS:
        raise InputError("--operator", f"got {settings.operator!r}; accepted: {', '.join(OPERATORS)}")
    if not math.isfinite(settings.yaw_deg):
        raise InputError("--yaw", f"got {settings.yaw_deg}; accepted: finite degrees")
    if not -90.0 <= settings.pitch_deg <= 90.0:
        raise InputError("--pitch", f"got {settings.pitch_deg}; accepted: degrees from -90 to 90")
    if not FOV_RANGE_DEG[0] <= settings.fov_deg <= FOV_RANGE_DEG[1]:
        raise InputError("--fov", f"got {settings.fov_deg}; accepted: a horizontal field of view from "
                                  f"{FOV_RANGE_DEG[0]:g} to {FOV_RANGE_DEG[1]:g} degrees")
    settings.yaw_deg = 180.0 - (180.0 - settings.yaw_deg) % 360.0
    return settings

