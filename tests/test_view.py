"""``latenthdr view``: the server (only the named files, no traversal, float pixels that round-trip), the command's
bad inputs and signals, and the page itself in headless Chromium (exposure, tone mappers, false colour,
look-around), all on synthetic files written here.

The browser tests need playwright (the ``test`` extra) and Debian's chromium (``make setup`` installs it as root);
without either they skip and say which is missing.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from latenthdr import io, panorama, tonemap, viewer
from latenthdr.cli import main

HALF_RELATIVE_ERROR = 2.0**-11  # float16 rounding of a normal value
HALF_SUBNORMAL_STEP = 2.0**-24
CODE_TOLERANCE = 1  # 8-bit display codes: one step for rounding on the GPU
FLAT_RGB = (0.2, 0.1, 0.05)  # linear; x 2^2 still below 1, so 'clip' shows 2^EV exactly from EV -2 to +2


# ----------------------------------------------------------------------------------------- synthetic files
def _direction_grid(height: int, width: int) -> np.ndarray:
    return panorama.direction_grid(height, width).numpy()  # [H, W, 3] (x, y, z), Y up, yaw 0 = +Z


def marks_panorama(height: int = 128, width: int = 256) -> np.ndarray:
    """Grey 0.1 with a 30-degree patch on the horizon at yaw 0 (blue), +90 (red), -90 (green), 180 (yellow, across
    the seam), and caps above elevation 60 (magenta) and below -60 (cyan)."""
    d = _direction_grid(height, width)
    yaw, elev = np.degrees(np.arctan2(-d[..., 0], d[..., 2])), np.degrees(np.arcsin(d[..., 1]))
    out = np.full((height, width, 3), 0.1, np.float32)
    for centre, rgb in MARKS.items():
        near = (np.abs((yaw - centre + 180) % 360 - 180) < 15) & (np.abs(elev) < 15)
        out[near] = rgb
    out[elev > 60], out[elev < -60] = CAPS["zenith"], CAPS["nadir"]
    return out


MARKS = {0: (0.05, 0.05, 0.8), 90: (0.8, 0.05, 0.05), -90: (0.05, 0.8, 0.05), 180: (0.8, 0.8, 0.05)}
CAPS = {"zenith": (0.8, 0.05, 0.8), "nadir": (0.05, 0.8, 0.8)}


def smooth_panorama(height: int = 128, width: int = 256) -> np.ndarray:
    """0.4 + 0.3 d(yaw, elev): continuous over the whole sphere (seam and poles), values in [0.1, 0.7]."""
    return (0.4 + 0.3 * _direction_grid(height, width)).astype(np.float32)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("view")
    rng = np.random.default_rng(0)
    wide = np.exp2(rng.uniform(-20, 15, (24, 40, 3))).astype(np.float32)  # 35 stops, inside half's range
    wide[0, 0] = 0.0
    paths = {"wide": io.write_exr(d / "wide.exr", wide, metadata={"evs": "-7:5:1", "seed": 3}),
             "flat": io.write_exr(d / "flat.exr", np.broadcast_to(np.float32(FLAT_RGB), (30, 40, 3))),
             "marks": io.write_exr(d / "marks.exr", marks_panorama(), panorama=True),
             "smooth": io.write_exr(d / "smooth.exr", smooth_panorama(), panorama=True)}
    io.write_json(d / "wide.json", {"prompt": "synthetic", "output": {"bracket": str(d / "wide.bracket.png")}})
    io.write_png(d / "wide.bracket.png", np.full((8, 16, 3), 0.5, np.float32))
    bright = np.full((8, 8, 3), 2.0e5, np.float32)  # beyond half: sent as float32
    paths["bright"] = io.write_exr(d / "bright.exr", bright)
    paths["radiance"] = io.write_hdr(d / "rad.hdr", wide)
    return paths


@pytest.fixture(scope="module")
def server(files):
    order = ("wide", "flat", "marks", "smooth", "bright", "radiance")
    srv = viewer.ViewerServer([viewer.load_file(files[k]) for k in order])
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def get(srv, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    """A raw GET (the path is sent exactly as given, no normalisation)."""
    connection = http.client.HTTPConnection(*srv.server_address, timeout=10)
    try:
        connection.putrequest("GET", path, skip_host="Host" in (headers or {}))
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


# ---------------------------------------------------------------------------------------------- server
def test_serves_the_page_and_only_the_named_files(server, files):
    for path in ("/", "/viewer.js", "/render.js", "/viewer.css", "/api/state"):
        assert get(server, path)[0] == 200, path
    assert get(server, "/files/0/original")[2] == files["wide"].read_bytes()
    assert json.loads(get(server, "/files/0/sidecar.json")[2])["prompt"] == "synthetic"
    assert get(server, "/files/0/bracket.png")[2] == files["wide"].with_suffix(".bracket.png").read_bytes()
    state = json.loads(get(server, "/api/state")[2])
    assert [f["name"] for f in state["files"]] == ["wide.exr", "flat.exr", "marks.exr", "smooth.exr", "bright.exr",
                                                   "rad.hdr"]
    assert [f["panorama"] for f in state["files"]] == [False, False, True, True, False, False]
    for path in ("/files/1/sidecar.json", "/files/1/bracket.png", "/files/6/original", "/api/files/6/meta",
                 "/wide.exr", "/wide.json", "/files/", "/files/0/", "/api/files", "/index.html", "/server.py",
                 "/__init__.py", "/files/0/wide.exr", "/files/0/original.exr", "/api/files/0/pixels/x"):
        status, _, body = get(server, path)
        assert status == 404 and body == b"not found\n", path


@pytest.mark.parametrize("path", [
    "/../../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/files/0/../../../../etc/passwd",
    "/files/0/..%2f..%2fwide.json", "/files/0/original/../sidecar.json/..", "//etc/passwd", "/viewer.js/../server.py",
    "/./viewer.js", "/files/-1/original", "/files/0/%2e%2e", "/api/files/0/meta/../../../etc/passwd",
    "http://127.0.0.1/../etc/passwd", "/files/0\\..\\..\\etc\\passwd",
])
def test_path_traversal_is_refused(server, path):
    status, _, body = get(server, path)
    assert status in (403, 404) and body in (b"not found\n", b"forbidden host\n")  # 403: http.client sends Host
                                                                                  # 127.0.0.1 without the port


def test_other_hosts_are_refused(server):
    """A page of another site whose name was rebound to 127.0.0.1 sends its own Host: refused."""
    assert get(server, "/api/state", {"Host": "evil.example:80"})[0] == 403
    assert get(server, "/api/state", {"Host": f"localhost:{server.server_address[1]}"})[0] == 200


@pytest.mark.parametrize("index, key", [(0, "wide"), (4, "bright"), (5, "radiance")])
def test_float_payload_round_trips_the_file(server, files, index, key):
    status, headers, body = get(server, f"/api/files/{index}/pixels")
    assert status == 200 and headers["X-Downsample"] == "1"
    dtype = {"float16": "<f2", "float32": "<f4"}[headers["X-Dtype"]]
    got = np.frombuffer(body, dtype).reshape(int(headers["X-Height"]), int(headers["X-Width"]), 3).astype(np.float64)
    want = io.read_hdr(files[key]).pixels.astype(np.float64)
    assert got.shape == want.shape
    if key == "bright":
        assert headers["X-Dtype"] == "float32" and np.array_equal(got, want)
    else:
        assert headers["X-Dtype"] == "float16"
        assert np.all(np.abs(got - want) <= np.maximum(np.abs(want) * HALF_RELATIVE_ERROR, HALF_SUBNORMAL_STEP))


def test_pixels_shrink_to_the_page_texture_limit(server, files):
    _, headers, body = get(server, "/api/files/3/pixels?max=100")  # 256 x 128 -> factor 3 -> 85 x 42
    assert (headers["X-Width"], headers["X-Height"], headers["X-Downsample"]) == ("85", "42", "3")
    got = np.frombuffer(body, "<f2").reshape(42, 85, 3).astype(np.float32)
    stored = io.read_hdr(files["smooth"]).pixels.astype(np.float16).astype(np.float32)
    want = stored[:126, :255].reshape(42, 3, 85, 3, 3).mean(axis=(1, 3))
    assert np.allclose(got, want, rtol=2 * HALF_RELATIVE_ERROR, atol=0)
    assert get(server, "/api/files/3/pixels?max=0")[0] == 400
    assert get(server, "/api/files/3/pixels?max=abc")[0] == 400


def test_meta_has_sidecar_header_and_histogram(server, files):
    meta = json.loads(get(server, "/api/files/0/meta")[2])
    assert meta["sidecar"]["prompt"] == "synthetic" and meta["bracket_sheet"] == "bracket.png"
    assert meta["latenthdr_metadata"] == {"evs": "-7:5:1", "seed": 3}
    pixels = io.read_hdr(files["wide"]).pixels.astype(np.float64)
    L = pixels @ np.array([0.2126, 0.7152, 0.0722])
    h = meta["stats"]["histogram"]
    assert h["zero"] == 1 and sum(h["counts"]) == L.size - 1
    brightest = h["log2_lo"] + (len(h["counts"]) - 1) * h["bin_stops"]
    assert brightest <= math.log2(L.max()) < brightest + h["bin_stops"]
    assert meta["stats"]["luminance_max"] == pytest.approx(L.max(), rel=1e-6)
    assert meta["stats"]["auto_ev"] == pytest.approx(tonemap.auto_exposure_ev(io.to_tensor(io.read_hdr(files["wide"]).pixels)))
    assert json.loads(get(server, "/api/files/1/meta")[2])["sidecar"] is None


def test_histogram_keeps_the_brightest_stops():
    pixels = np.ones((1, 3, 3), np.float32)
    pixels[0, 0], pixels[0, 1] = 2.0**-60, 0.0  # 60 stops below the others, and black
    h = viewer.luminance_stats(pixels)["histogram"]
    assert len(h["counts"]) * h["bin_stops"] == viewer.server.HISTOGRAM_MAX_STOPS
    assert h["counts"][0] == 1 and h["counts"][-1] == 1 and h["zero"] == 1  # the darkest pixel counts in bin 0


def test_a_sidecar_with_nan_still_gives_valid_json(tmp_path):
    exr = io.write_exr(tmp_path / "n.exr", np.ones((4, 8, 3), np.float32))
    (tmp_path / "n.json").write_text('{"score": NaN, "ok": [1, Infinity]}', encoding="utf-8")
    srv = viewer.ViewerServer([viewer.load_file(exr)])
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        reply = json.loads(get(srv, "/api/files/0/meta")[2], parse_constant=pytest.fail)  # as strict as JSON.parse
        assert reply["sidecar"] == {"score": None, "ok": [1, None]}
    finally:
        srv.shutdown()
        srv.server_close()


def test_bracket_sheet_is_served_only_when_the_sidecar_names_it(tmp_path):
    exr = io.write_exr(tmp_path / "a.exr", np.ones((4, 8, 3), np.float32))
    io.write_png(tmp_path / "a.bracket.png", np.zeros((4, 4, 3), np.float32))
    io.write_json(tmp_path / "a.json", {"prompt": "no outputs listed"})
    assert viewer.load_file(exr).sheet_path is None
    io.write_json(tmp_path / "a.json", {"outputs": {"a.bracket.png": "elsewhere/a.bracket.png"}}, overwrite=True)
    assert viewer.load_file(exr).sheet_path == tmp_path / "a.bracket.png"
    (tmp_path / "a.json").write_text("{not json", encoding="utf-8")
    damaged = viewer.load_file(exr)
    assert damaged.sidecar is None and "not readable as JSON" in damaged.sidecar_error


# ---------------------------------------------------------------------------------------------- command
@pytest.mark.parametrize("argv, argument", [
    (["missing.exr"], "FILE: missing.exr: no such file"),
    (["{text}"], "FILE: "),
    (["{png}"], "unsupported extension"),
    (["--look-around", "{marks}", "{flat}"], "--look-around: "),
    (["--fov", "0", "{marks}"], "--fov: "),
    (["--pitch", "95", "{marks}"], "--pitch: "),
    (["--yaw", "nan", "{marks}"], "--yaw: "),
    (["--exposure", "bright", "{flat}"], "--exposure: "),
    (["--exposure", "-41", "{flat}"], "--exposure: "),
    (["--port", "70000", "{flat}"], "--port: "),
])
def test_bad_inputs_fail_in_one_line_before_serving(files, tmp_path, capsys, argv, argument):
    (tmp_path / "notes.exr").write_text("not an image\n")
    io.write_png(tmp_path / "shot.png", np.zeros((4, 4, 3), np.float32))
    names = {"text": tmp_path / "notes.exr", "png": tmp_path / "shot.png", **files}
    code = main(["view", "--no-browser", *[a.format(**names) for a in argv]])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("latenthdr view: error: ") and argument in err, err
    assert "Traceback" not in err


def test_a_port_in_use_is_refused_before_serving(files, capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code = main(["view", "--no-browser", "--port", str(taken.getsockname()[1]), str(files["flat"])])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("latenthdr view: error: --port: cannot listen on 127.0.0.1:") and \
        err.count("\n") == 1


def test_command_serves_until_sigterm_or_ctrl_c(files):
    """Two servers at once (a free port each): SIGTERM ends one with 143, SIGINT (Ctrl-C) the other with 130."""
    command = "import sys; from latenthdr.cli import main; sys.exit(main())"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # a test run in a background job (`cmd &`) inherits SIGINT ignored, and Python then keeps it ignored, as a
    # backgrounded `latenthdr view` should; the servers under test get the default, as in a terminal
    procs = [subprocess.Popen([sys.executable, "-c", command, "view", "--no-browser", str(files["marks"])],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)) for _ in range(2)]
    try:
        for proc, sig, code in zip(procs, (signal.SIGTERM, signal.SIGINT), (143, 130)):
            lines = []
            while not lines or lines[-1] != "}\n":  # print_json's report ends with a lone brace
                line = proc.stdout.readline()
                assert line, proc.stderr.read()
                lines.append(line)
            report = json.loads("".join(lines))
            host, port = report["url"].removeprefix("http://").rstrip("/").split(":")
            assert host == "127.0.0.1" and report["files"][0]["panorama"] is True
            connection = http.client.HTTPConnection(host, int(port), timeout=10)
            connection.request("GET", "/api/state")
            assert json.loads(connection.getresponse().read())["files"][0]["name"] == "marks.exr"
            connection.close()
            proc.send_signal(sig)
            assert proc.wait(timeout=10) == code
            assert proc.stderr.read().strip().splitlines()[-1].startswith("latenthdr view: error: ")
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------------------------------------- browser
CHROMIUM_ARGS = ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 900, "height": 600}


def find_chromium() -> str | None:
    for name in (os.environ.get("LATENTHDR_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and (path := shutil.which(name)):
            return path
    return None


@pytest.fixture(scope="module")
def page(server):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed; pip install -c "
                                   "constraints.txt -e '.[test]' (make setup) installs it")
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no Chromium found (chromium, chromium-browser, $LATENTHDR_CHROMIUM); apt-get install chromium "
                    "(make setup does this as root)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=VIEWPORT, device_scale_factor=1)
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server.url)
        page.evaluate("window.latenthdrViewer.ready")
        yield page
        browser.close()
    assert not errors, errors


def show(page, **changes) -> list[int]:
    """Set the view through the page's hook; returns the canvas size [w, h]."""
    page.evaluate("(c) => window.latenthdrViewer.set(c)", changes)
    return page.evaluate("window.latenthdrViewer.canvasSize()")


def codes_at(page, x: int, y: int) -> np.ndarray:
    return np.array(page.evaluate("([x, y]) => window.latenthdrViewer.pixel(x, y)", [int(x), int(y)])[:3])


def srgb_codes(linear) -> np.ndarray:
    """The 8-bit sRGB codes of linear values in [0, 1] (response.encode 'srgb', rounded as the GPU does)."""
    from latenthdr import response

    return np.rint(response.encode(torch.as_tensor(np.asarray(linear, np.float64)), "srgb").numpy() * 255)


def test_exposure_slider_scales_linear_values_by_2_to_the_ev(page):
    w, h = show(page, file=1, operator="clip", falseColour=False, lookAround=False)
    half = np.float16(FLAT_RGB).astype(np.float64)  # what the texture holds
    for ev in (-2, -1, 0, 1, 2):
        page.locator("#ev").fill(str(ev))  # the slider itself, as a user moves it
        assert page.locator("#ev-value").text_content() == f"{ev:+.2f} EV"
        got = codes_at(page, w // 2, h // 2)
        assert np.abs(got - srgb_codes(half * 2.0**ev)).max() <= CODE_TOLERANCE, (ev, got)
    value = page.evaluate("([x, y]) => window.latenthdrViewer.valueAt(x, y)", [w // 2, h // 2])
    assert value["rgb"] == pytest.approx(list(half), rel=1e-6)
    assert value["ev"] == pytest.approx(math.log2(float(half @ [0.2126, 0.7152, 0.0722])), abs=1e-6)


@pytest.mark.parametrize("operator", ["aces", "reinhard"])
def test_tone_mappers_match_the_preview_command(page, operator):
    w, h = show(page, file=1, operator=operator, ev=1.5)
    half = torch.tensor(np.float16(FLAT_RGB).astype(np.float32)).view(3, 1, 1).expand(3, 2, 2)
    want = tonemap.tonemap(half, operator, exposure_ev=1.5)[:, 0, 0].numpy() * 255
    assert np.abs(codes_at(page, w // 2, h // 2) - want).max() <= CODE_TOLERANCE + 0.5


def test_agx_and_false_colour(page):
    w, h = show(page, file=1, operator="agx", ev=0)
    dark = codes_at(page, w // 2, h // 2)
    show(page, ev=3)
    bright = codes_at(page, w // 2, h // 2)
    assert np.all(bright > dark) and np.all(bright < 255)  # a smooth shoulder: 8x the light is not clipped
    L = float(np.float16(FLAT_RGB).astype(np.float64) @ [0.2126, 0.7152, 0.0722])
    show(page, falseColour=True, ev=math.log2(0.18 * 4 / L))  # exactly +2 stops over 18% grey
    palette = json.loads(page.evaluate("import('/render.js').then((m) => JSON.stringify(m.FALSE_COLOUR))"))
    assert np.abs(codes_at(page, w // 2, h // 2) - np.rint(np.array(palette[2 + 7]) * 255)).max() <= CODE_TOLERANCE
    show(page, falseColour=False)


@pytest.mark.parametrize("yaw, pitch, colour", [(0, 0, MARKS[0]), (90, 0, MARKS[90]), (-90, 0, MARKS[-90]),
                                                (180, 0, MARKS[180]), (-180, 0, MARKS[180]), (45, 80, CAPS["zenith"]),
                                                (-120, -80, CAPS["nadir"])])
def test_look_around_shows_the_direction_asked_for(page, yaw, pitch, colour):
    page.select_option("#file", "2")  # the file switcher
    page.evaluate("async () => { while (window.latenthdrViewer.state.file !== 2) await new Promise((r) => "
                  "setTimeout(r, 10)); }")  # (wait_for_function would need eval, which the page's CSP forbids)
    w, h = show(page, operator="clip", ev=0, lookAround=True, yawDeg=yaw, pitchDeg=pitch, fovDeg=60)
    want = srgb_codes(np.float16(colour).astype(np.float64))
    assert np.abs(codes_at(page, w // 2, h // 2) - want).max() <= CODE_TOLERANCE


def test_look_around_matches_the_library_perspective_crop(page, files):
    """The shader's view of a smooth panorama equals panorama.equirect_to_perspective (same yaw sign, same
    up, horizontal fov), sampled on a grid over the canvas."""
    yaw, pitch, fov = 35.0, 20.0, 100.0
    w, h = show(page, file=3, operator="clip", ev=0, lookAround=True, yawDeg=yaw, pitchDeg=pitch, fovDeg=fov)
    pano = io.to_tensor(io.read_hdr(files["smooth"]).pixels.astype(np.float16).astype(np.float32))
    view = panorama.equirect_to_perspective(pano.double(), yaw, pitch, fov, h, w).numpy()  # [3, h, w]
    points = [[int(x), int(y)] for y in np.linspace(5, h - 6, 7) for x in np.linspace(5, w - 6, 7)]
    got = np.array(page.evaluate("(p) => window.latenthdrViewer.pixels(p)", points))[:, :3]
    want = np.stack([srgb_codes(view[:, y, x].clip(0, 1)) for x, y in points])
    assert np.abs(got - want).max() <= CODE_TOLERANCE + 1  # + 1: bilinear weights of a GPU vs float64
    show(page, lookAround=False)
