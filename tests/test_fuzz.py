"""Fuzzing of every file reader: a bad file gets a clear error, never a traceback, a crash or a hang.

Each test starts from small valid files (written by our writers, OpenEXR, OpenCV, Pillow, safetensors, torch)
and mutates them (truncate, flip bits, overwrite with bytes or with interesting 32-bit integers, insert, delete,
prepend another format's magic), or reads fully random bytes. A reader may succeed (then its output keeps its
contract) or raise ``InputError`` naming the argument and the file / ``LatentHDRError`` naming the file;
anything else fails the test: another exception, a library warning that escapes, a call slower than SLOW_S.
A reader stuck in C code (where no Python exception reaches it) is killed after KILL_S by ``faulthandler``,
which fails the whole run (exit status 1, tracebacks on stderr) instead of leaving CI hanging.

The example counts keep the whole file at ~15 s on two CPU cores. A longer local session:
``LATENTHDR_FUZZ_SCALE=40 pytest tests/test_fuzz.py`` (every count times 40, ~15 min).
"""

from __future__ import annotations

import contextlib
import dataclasses
import faulthandler
import json
import os
import struct
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from latenthdr import io
from latenthdr.cli.generate import read_prompts
from latenthdr.errors import InputError, LatentHDRError

FUZZ_SCALE = float(os.environ.get("LATENTHDR_FUZZ_SCALE", "1"))
SLOW_S = 30.0  # a hang guard, below KILL_S: a reader that takes half a minute on a file of a few kB is a bug
# (9.6 s was seen on a JPEG under full load, so this is not a speed check)
KILL_S = 60.0  # a reader stuck this long (in C code, where no Python exception can reach it): kill the run
MAGICS = [b"v/1\x01", b"#?RADIANCE\n", b"#?RGBE\n", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"II*\x00",
          b"MM\x00*", b"PK\x03\x04", b"{", b"["]
# what a clear error says besides what is wrong: what is accepted, or a plain fact about the path
GUIDANCE = ("accepted", "expected", "required", "reinstall", "run again with", "resume with", "no such file",
            "is empty", "is a directory", "cannot be read")
# 32-bit values that hit size, offset and count fields: zero, one, sign bits, just past 16 bits, huge
INTERESTING_INTS = [0, 1, 2, 7, 255, 256, 30000, 65535, 65536, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x00FFFFFF]


def fuzz_settings(examples: int):
    return settings(max_examples=max(1, round(examples * FUZZ_SCALE)), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ------------------------------------------------------------------------------------------ mutations

POSITION = st.integers(0, 1 << 20)
PAYLOAD = st.binary(min_size=1, max_size=16)
OPERATION = st.one_of(
    st.tuples(st.just("truncate"), POSITION),
    st.tuples(st.just("flip"), POSITION, st.integers(0, 7)),
    st.tuples(st.just("overwrite"), POSITION, PAYLOAD),
    st.tuples(st.just("int32"), POSITION, st.sampled_from(INTERESTING_INTS), st.booleans()),
    st.tuples(st.just("insert"), POSITION, PAYLOAD),
    st.tuples(st.just("delete"), POSITION, st.integers(1, 64)),
    st.tuples(st.just("prepend"), st.sampled_from(MAGICS)),
)
OPERATIONS = st.lists(OPERATION, min_size=1, max_size=4)


def mutate(data: bytes, operations, focus: int | None = None) -> bytes:
    """``data`` after ``operations`` (see OPERATION); positions wrap modulo the length, or modulo ``focus``
    (e.g. a safetensors header's length) when given, so that most mutations land where parsing happens."""
    out = bytearray(data)
    for op, *args in operations:
        span = min(len(out), focus) if focus else len(out)
        at = args[0] % (span + 1) if op != "prepend" else 0
        if op == "truncate":
            del out[at:]
        elif op == "flip" and at < len(out):
            out[at] ^= 1 << args[1]
        elif op == "overwrite":
            out[at:at + len(args[1])] = args[1]
        elif op == "int32":
            out[at:at + 4] = struct.pack("<I" if args[2] else ">I", args[1])
        elif op == "insert":
            out[at:at] = args[1]
        elif op == "delete":
            del out[at:at + args[1]]
        elif op == "prepend":
            out[:0] = args[0]
    return bytes(out)


# ---------------------------------------------------------------------------------------- the check


def read_clearly(call, argument: str, *names, quiet: bool = True):
    """``call()``: its result, or the clear error it raised: InputError naming ``argument``, or LatentHDRError,
    whose message names one of ``names`` (the file, or its name alone). Any other exception fails the test,
    and so does a call slower than SLOW_S, or one that lets a library's warning escape (``quiet``)."""
    start = time.perf_counter()
    faulthandler.dump_traceback_later(KILL_S, exit=True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = _result_or_clear_error(call, argument, names)
    finally:
        faulthandler.cancel_dump_traceback_later()
    elapsed = time.perf_counter() - start
    assert elapsed < SLOW_S, f"reading {names[0]} took {elapsed:.1f} s"
    assert not (quiet and caught), f"warnings escaped: {[str(w.message) for w in caught]}"
    return result


def _result_or_clear_error(call, argument: str, names):
    try:
        return call()
    except LatentHDRError as error:
        if isinstance(error, InputError):
            assert error.argument == argument, f"InputError names {error.argument!r}, expected {argument!r}: {error}"
        assert any(text in str(error) for n in names for text in (str(n), Path(n).name, repr(str(n))[1:-1])), \
            f"the message names none of {names}: {error}"
        assert any(words in str(error) for words in GUIDANCE), f"the message says nothing of what is accepted: {error}"
        return error


def check_hdr(image) -> None:
    if isinstance(image, LatentHDRError):
        return
    assert isinstance(image, io.HdrImage)
    p = image.pixels
    assert p.dtype == np.float32 and p.ndim == 3 and p.shape[2] == 3 and p.flags.c_contiguous
    assert np.all(np.isfinite(p)) and (p.size == 0 or p.min() >= 0)
    json.dumps(image.header, allow_nan=False)  # strict JSON: `latenthdr info` prints it


def check_ldr(image) -> None:
    if isinstance(image, LatentHDRError):
        return
    assert isinstance(image, io.LdrImage)
    p = image.pixels
    assert p.dtype == np.float32 and p.ndim == 3 and p.shape[2] == 3 and image.bits in (8, 16)
    assert p.size == 0 or (p.min() >= 0 and p.max() <= 1)
    json.dumps(image.exif, allow_nan=False)


class Seeds(list):
    """Seed files (bytes) whose repr stays short in hypothesis' reports."""

    def __repr__(self):
        return f"<{len(self)} seed files>"


class SeedMap(dict):
    def __repr__(self):
        return f"<seed files {sorted(self)}>"


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 4, (h, w, 3)).astype(np.float32)


# ---------------------------------------------------------------------------------------------- EXR


@pytest.fixture(scope="module")
def exr_seeds(tmp_path_factory) -> Seeds:
    import OpenEXR

    d = tmp_path_factory.mktemp("exr-seeds")
    rgb = _rgb(4, 5)
    paths = [io.write_exr(d / "float.exr", rgb, metadata={"ev": 1.5}),
             io.write_exr(d / "half.exr", rgb, half=True, panorama=True)]
    tiles = OpenEXR.TileDescription()
    tiles.xSize, tiles.ySize, tiles.mode = 2, 2, OpenEXR.ONE_LEVEL
    variants = {"tiled.exr": ({"RGB": rgb.astype(np.float16)}, {"type": OpenEXR.tiledimage, "tiles": tiles}),
                "none.exr": ({"RGBA": np.concatenate([rgb, rgb[..., :1]], -1)},
                             {"compression": OpenEXR.NO_COMPRESSION}),
                "rle-y.exr": ({"Y": rgb[..., 0].copy()}, {"compression": OpenEXR.RLE_COMPRESSION}),
                "piz.exr": ({"RGB": rgb}, {"compression": OpenEXR.PIZ_COMPRESSION}),
                "yc.exr": ({"Y": rgb[..., 1].copy(), "RY": rgb[..., 0] - 1, "BY": rgb[..., 2] - 1}, {})}
    for name, (channels, header) in variants.items():
        OpenEXR.File(header, channels).write(str(d / name))
        paths.append(d / name)
    parts = [OpenEXR.Part({}, {"Z": rgb[..., 0].copy()}, "depth"), OpenEXR.Part({}, {"RGB": rgb}, "beauty")]
    OpenEXR.File(parts).write(str(d / "multipart.exr"))
    paths.append(d / "multipart.exr")
    return Seeds(p.read_bytes() for p in paths)


@fuzz_settings(480)
@given(seed=st.integers(0, 100), operations=OPERATIONS)
@example(seed=1, operations=[("overwrite", 662, b"\x80")])  # an attribute type name not UTF-8: str() raised
@example(seed=6, operations=[("insert", 357, b"\x00")])  # luminance-chroma overflowing: numpy warned
def test_exr_reader(work, exr_seeds, seed, operations):
    path = work / "fuzz.exr"
    path.write_bytes(mutate(exr_seeds[seed % len(exr_seeds)], operations))
    check_hdr(read_clearly(lambda: io.read_hdr(path), "input", path))


# ----------------------------------------------------------------------------------------- Radiance


@pytest.fixture(scope="module")
def radiance_seeds(tmp_path_factory) -> Seeds:
    d = tmp_path_factory.mktemp("hdr-seeds")
    flat = io.write_hdr(d / "flat.hdr", _rgb(3, 5)).read_bytes()  # width < 8: flat RGBE
    rle = io.write_hdr(d / "rle.hdr", _rgb(3, 16)).read_bytes()  # run-length encoded scanlines
    header = b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\nEXPOSURE=2.0\nGAMMA=1\n\n-Y 2 +X 3\n"
    return Seeds([flat, rle, header + bytes(range(100, 124))])


@fuzz_settings(400)
@given(seed=st.integers(0, 100), operations=OPERATIONS)
def test_radiance_reader(work, radiance_seeds, seed, operations):
    path = work / "fuzz.hdr"
    path.write_bytes(mutate(radiance_seeds[seed % len(radiance_seeds)], operations))
    check_hdr(read_clearly(lambda: io.read_hdr(path), "input", path))


# --------------------------------------------------------------------------------------- PNG/JPEG/TIFF


@pytest.fixture(scope="module")
def ldr_seeds(tmp_path_factory) -> Seeds:
    import cv2
    from PIL import Image

    d = tmp_path_factory.mktemp("ldr-seeds")
    codes = np.random.default_rng(1).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    paths = [io.write_png(d / "rgb.png", codes)]
    written = {"gray16.png": (codes[..., 0].astype(np.uint16) * 257, []),
               "rgba.png": (np.concatenate([codes, codes[..., :1]], -1), []),
               "q.jpg": (codes, [cv2.IMWRITE_JPEG_QUALITY, 90]),
               "progressive.jpg": (codes, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
               "rgb.tif": (codes, []), "rgb16.tif": (codes.astype(np.uint16) * 257, []),
               "float.tif": (codes.astype(np.float32) / 255, [])}
    for name, (array, params) in written.items():
        assert cv2.imwrite(str(d / name), array, params)
        paths.append(d / name)
    exif = Image.Exif()
    exif[0x0112], exif[0x010F] = 6, "fuzz"
    exif.get_ifd(0x8769)[0x829A] = 0.125
    for name in ("exif.jpg", "exif.png", "exif.tif"):
        Image.fromarray(codes).save(d / name, exif=exif)
        paths.append(d / name)
    return Seeds(p.read_bytes() for p in paths)


@fuzz_settings(600)
@given(seed=st.integers(0, 100), operations=OPERATIONS, suffix=st.sampled_from(io.LDR_EXTENSIONS))
def test_ldr_reader(work, ldr_seeds, seed, operations, suffix):
    path = work / f"fuzz{suffix}"  # the suffix is drawn apart from the content: a PNG named .jpg is read too
    path.write_bytes(mutate(ldr_seeds[seed % len(ldr_seeds)], operations))
    check_ldr(read_clearly(lambda: io.read_ldr(path, "--input"), "--input", path))


@fuzz_settings(240)
@given(suffix=st.sampled_from(io.HDR_EXTENSIONS + io.LDR_EXTENSIONS + (".bmp", "")),
       magic=st.sampled_from([b""] + MAGICS), data=st.binary(max_size=600))
def test_random_bytes_in_every_image_reader(work, suffix, magic, data):
    path = work / f"random{suffix}"
    path.write_bytes(magic + data)
    image = read_clearly(lambda: io.read_image(path), "input", path)
    check_hdr(image) if isinstance(image, io.HdrImage) else check_ldr(image)


def test_paths_that_are_no_image_files(work):
    (work / "folder.png").mkdir(exist_ok=True)
    (work / "empty.exr").write_bytes(b"")
    for name in ("folder.png", "empty.exr", "missing.hdr", "nul\x00byte.png", "nul\x00byte.exr",
                 "x" * 300 + ".png"):  # regression: a name too long for the file system raised OSError
        assert isinstance(read_clearly(lambda: io.read_image(work / name), "input", work / name), InputError)


# ------------------------------------------------------------------------------------------ brackets


@pytest.fixture(scope="module")
def bracket_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bracket") / "b"
    frames = [np.full((4, 6, 3), v) for v in (0.2, 0.5)]
    io.write_bracket_dir(d, frames, [-1.0, 0.0], {"seed": 3}, contact_sheet=np.zeros((2, 2, 3)))
    (d / "sub").mkdir()
    io.write_png(d / "sub" / "inner.png", np.zeros((4, 6, 3)))
    return d


FRAME_NAMES = st.sampled_from(["frame_00_ev-1.png", "frame_01_ev+0.png", "contact.png", "missing.png",
                               "sub/inner.png", "sub", "../b/frame_00_ev-1.png", "..", ".", "", "/etc/passwd",
                               "frame_00_ev-1.png/", "a\x00b.png", "bracket.json", "C:\\x.png"]) | st.text(max_size=12)
JSON_SCALARS = (st.none() | st.booleans() | st.integers(-(1 << 70), 1 << 70) | st.floats(allow_nan=True)
                | st.text(max_size=8))


def _json_containers(inner):
    return st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)


JSON_VALUES = st.recursive(JSON_SCALARS, _json_containers, max_leaves=8)
BRACKET_JSON = st.one_of(
    st.fixed_dictionaries({"evs": st.lists(st.floats(-8, 8) | JSON_SCALARS, max_size=3) | JSON_VALUES,
                           "frames": st.lists(FRAME_NAMES, max_size=3) | JSON_VALUES},
                          optional={"format": JSON_VALUES}).map(lambda m: json.dumps(m).encode()),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.text(max_size=40).map(lambda t: t.encode("utf-16")),
)


@fuzz_settings(600)
@given(content=BRACKET_JSON, operations=st.lists(OPERATION, max_size=2))
# regressions: what read_bracket_dir used to get wrong
@example(content=b'{"evs": [0], "frames": ["sub/inner.png"]}', operations=[])  # read inner.png of the folder
@example(content=b'{"evs": [0], "frames": ["a\\u0000b.png"]}', operations=[])
@example(content=b'{"evs": [NaN], "frames": ["frame_00_ev-1.png"]}', operations=[])  # accepted NaN
@example(content=b'{"evs": "01", "frames": ["frame_00_ev-1.png", "frame_01_ev+0.png"]}', operations=[])  # [0, 1]
@example(content=b'{"evs": [0], "frames": ["frame_00_ev-1.png"]}' + b" " * 3 + b"\xff", operations=[])
@example(content=b"[" * 100000, operations=[])  # RecursionError
@example(content=b'{"evs": [1' + b"0" * 5000 + b'], "frames": ["x.png"]}', operations=[])  # ValueError: digits
@example(content=b'{"evs": [1' + b"0" * 400 + b'], "frames": ["x.png"]}', operations=[])  # OverflowError: float()
def test_bracket_dir_reader(bracket_dir, content, operations):
    (bracket_dir / io.BRACKET_JSON).write_bytes(mutate(content, operations))
    result = read_clearly(lambda: io.read_bracket_dir(bracket_dir / io.BRACKET_JSON, "--bracket"), "--bracket",
                          bracket_dir / io.BRACKET_JSON)
    assert isinstance(result, InputError)  # the path given is the file, not the folder
    result = read_clearly(lambda: io.read_bracket_dir(bracket_dir, "--bracket"), "--bracket", bracket_dir)
    if not isinstance(result, LatentHDRError):
        frames, evs, meta = result
        assert len(frames) == len(evs) > 0 and all(np.isfinite(evs)) and isinstance(meta, dict)
        assert all(f.shape == frames[0].shape and f.dtype == np.float32 for f in frames)


def test_bracket_dir_reader_refuses_what_is_no_bracket(bracket_dir, work):
    for path in (work / "missing-folder", bracket_dir / "frame_00_ev-1.png", bracket_dir / "sub", work / ("x" * 300)):
        assert isinstance(read_clearly(lambda: io.read_bracket_dir(path), "input", path), InputError)


# ------------------------------------------------------------------------------------------- prompts

PROMPT_ENTRIES = st.one_of(st.text(max_size=10), JSON_VALUES, st.fixed_dictionaries(
    {"prompt": st.text(max_size=10) | JSON_SCALARS},
    optional={"seed": JSON_SCALARS, "panorama": JSON_SCALARS, "extra": JSON_SCALARS}))
PROMPT_FILES = st.one_of(
    st.lists(PROMPT_ENTRIES, max_size=4).map(lambda v: json.dumps(v).encode()),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.lists(st.text(max_size=20) | st.sampled_from(["# comment", "panorama | sky", "perspective|", " "]),
             max_size=4).map(lambda lines: "\n".join(lines).encode()),
    st.text(max_size=30).map(lambda t: t.encode("utf-16")),
    st.text(max_size=30).map(lambda t: t.encode("latin-1", errors="replace")),
    st.binary(max_size=200))


@fuzz_settings(600)
@given(content=PROMPT_FILES, suffix=st.sampled_from([".json", ".txt", ".JSON", ""]),
       operations=st.lists(OPERATION, max_size=2))
# regressions: UnicodeDecodeError, RecursionError and ValueError (an integer of > 4300 digits) escaped
@example(content=b"a sunset \xff\xfe over hills\n", suffix=".txt", operations=[])
@example(content=b'["caf\xe9"]', suffix=".json", operations=[])
@example(content=b"[" * 100000, suffix=".json", operations=[])
@example(content=b'[{"prompt": "sky", "seed": 1' + b"0" * 5000 + b"}]", suffix=".json", operations=[])
def test_prompt_file_reader(work, content, suffix, operations):
    path = work / f"prompts{suffix}"
    path.write_bytes(mutate(content, operations))
    result = read_clearly(lambda: read_prompts(path), "--prompts", path)
    if not isinstance(result, LatentHDRError):
        assert result and all(isinstance(e["prompt"], str) and e["prompt"].strip() for e in result)
        assert all(isinstance(e.get("seed", 0), int) and isinstance(e.get("panorama", False), bool) for e in result)


def test_prompt_reader_refuses_what_is_no_file(work):
    (work / "prompt-folder.json").mkdir(exist_ok=True)
    for name in ("prompt-folder.json", "no-prompts.txt", "nul\x00byte.json", "x" * 300 + ".txt"):
        assert isinstance(read_clearly(lambda: read_prompts(work / name), "--prompts", work / name), InputError)


# ------------------------------------------------------------------------------------ model weights


MODEL_KINDS = {"head": ("latenthdr.models.head", "load_head"), "codec": ("latenthdr.models.tinycodec", "load_model"),
               "prior": ("latenthdr.models.prior", "load_prior")}


@pytest.fixture(scope="module")
def weight_seeds(tmp_path_factory) -> SeedMap:
    """Tiny head, codec and prior files (bytes), by kind."""
    from latenthdr.models import head, prior, tinycodec

    d = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    paths = {"head": head.save_head(head.ExposureHead(head.HeadConfig.from_preset("tiny", 4, "fuzz")),
                                    d / "h.safetensors"),
             "codec": tinycodec.save_codec(tinycodec.TinyAutoencoder(tinycodec.TinyCodecConfig.from_preset("test")),
                                           d / "c.safetensors"),
             "prior": prior.save_prior(prior.PriorUNet(prior.PriorConfig.from_preset("test", 4, "fuzz")),
                                       d / "p.safetensors")}
    return SeedMap({kind: path.read_bytes() for kind, path in paths.items()})


def load_model_clearly(kind: str, path: Path):
    """read_clearly for a model loader (head.load_head, tinycodec.load_model, prior.load_prior): a model, or an
    InputError naming the loader's argument (``kind``) and the file, whatever the file's config asks for (a config
    that asks for a huge model is refused against the file's tensors before anything is allocated)."""
    import importlib

    module_name, loader_name = MODEL_KINDS[kind]
    load = getattr(importlib.import_module(module_name), loader_name)
    result = read_clearly(lambda: load(path), kind, path, quiet=False)  # torch may warn on its own
    assert isinstance(result, (LatentHDRError, torch.nn.Module)), result
    return result


def _safetensors_header_end(data: bytes) -> int:
    return 8 + int.from_bytes(data[:8], "little")


@fuzz_settings(360)
@given(kind=st.sampled_from(sorted(MODEL_KINDS)), operations=OPERATIONS)
@example(kind="head", operations=[("overwrite", 60, b"\\")])  # the config string: not JSON any more
@example(kind="codec", operations=[("truncate", 200)])  # inside the header
@example(kind="prior", operations=[("int32", 0, 0xFFFFFFFF, True)])  # header length beyond the file
def test_weights_reader(work, weight_seeds, kind, operations):
    data = weight_seeds[kind]
    path = work / f"fuzz-{kind}.safetensors"
    path.write_bytes(mutate(data, operations, focus=_safetensors_header_end(data)))  # the JSON header
    load_model_clearly(kind, path)


@fuzz_settings(240)
@given(kind=st.sampled_from(sorted(MODEL_KINDS)), config=JSON_VALUES, field=st.integers(0, 100) | st.none())
@example(kind="head", config="[1, 2", field=None)  # the config is a string that is not JSON
@example(kind="codec", config=[1, 2], field=None)  # a list, not an object
@example(kind="head", config=3, field=1)  # widths: 3 (TypeError in HeadConfig.__post_init__)
@example(kind="prior", config={"widths": "ab"}, field=None)
def test_weights_reader_with_a_fuzzed_config(work, weight_seeds, kind, config, field):
    """The metadata's config: arbitrary JSON (``field`` None), or the real config with field ``field`` (the
    n-th in sorted order) replaced by ``config``, or with a JSON object ``config`` merged in."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    source = work / f"seed-{kind}.safetensors"
    source.write_bytes(weight_seeds[kind])
    with safe_open(str(source), framework="pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    real = json.loads(metadata["config"])
    if field is not None:
        config = {**real, **config} if isinstance(config, dict) else {**real, sorted(real)[field % len(real)]: config}
    text = config if isinstance(config, str) and field is None else json.dumps(config)  # a str: maybe not JSON
    path = work / f"config-{kind}.safetensors"
    save_file(tensors, str(path), metadata={**metadata, "config": text})
    load_model_clearly(kind, path)


def _rewritten(work: Path, weight_seeds, kind: str, config=None, tensors=None, metadata=None) -> Path:
    """The seed file of ``kind`` with config fields, tensors (name -> tensor, None: drop) or metadata changed."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    source = work / f"seed-{kind}.safetensors"
    source.write_bytes(weight_seeds[kind])
    with safe_open(str(source), framework="pt") as f:
        stored, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    for name, tensor in (tensors or {}).items():
        if tensor is None:
            del state[name]
        else:
            state[name] = tensor
    stored = {**stored, "config": json.dumps({**json.loads(stored["config"]), **(config or {})}), **(metadata or {})}
    path = work / f"changed-{kind}.safetensors"
    save_file(state, str(path), metadata=stored)
    return path


DAMAGED_FILES = [  # (kind, config fields, tensors, metadata, what the message says)
    ("head", {"widths": [8, 16, 30]}, None, None, "HeadConfig.widths: expected positive integers"),
    ("head", {"norm_groups": 0}, None, None, "HeadConfig.norm_groups"),
    ("codec", {"encoder_widths": [8, 8]}, None, None, "TinyCodecConfig.encoder_widths"),
    ("prior", {"extra": 1}, None, None, "prior config: unknown keys ['extra']; accepted"),
    ("prior", {"fourier_frequencies": None}, None, None, "PriorConfig.fourier_frequencies: expected an integer >= 0"),
    ("prior", {"fourier_frequencies": -1}, None, None, "PriorConfig.fourier_frequencies: expected an integer >= 0"),
    ("head", {"latent_channels": 5_600_000}, None, None, "misshaped conv_in.weight is [8, 4, 3, 3] (expected "
                                                          "[8, 5600000, 3, 3])"),
    ("head", {"blocks_per_level": 10**6}, None, None, "describes a model of more tensors than the file's"),
    ("prior", {"blocks_per_level": 10**6}, None, None, "more tensors than the file's"),
    ("codec", {"decoder_blocks": [10**6, 1, 0]}, None, None, "more tensors than the file's"),
    ("prior", {"widths": [8, 2**70]}, None, None, "cannot build the prior"),
    ("codec", {"latent_channels": 2**62}, None, None, "cannot build the codec"),
    ("head", None, {"conv_out.bias": None}, None, "missing conv_out.bias"),
    ("codec", None, {"surplus": torch.zeros(2)}, None, "unexpected surplus"),
    ("prior", None, {"null_text": torch.zeros(3)}, None, "misshaped null_text is [3] (expected [384])"),
    ("head", None, {"conv_out.bias": torch.zeros(4, dtype=torch.int32)}, None,
     "not floating point conv_out.bias is I32"),
    ("codec", None, None, {"space": "latenthdr-other"}, "space metadata 'latenthdr-other' does not match its config's "
                                                        "space 'latenthdr-test'; accepted"),
    ("head", None, None, {"space": "other"}, "does not match its config's space 'fuzz'; accepted"),
]


@pytest.mark.parametrize("kind, config, tensors, metadata, message", DAMAGED_FILES)
def test_damaged_weights_are_one_clear_error(work, weight_seeds, kind, config, tensors, metadata, message):
    """Each known way a model file can be damaged: one InputError naming the loader's argument and the file, with
    no model built for a config that asks for a huge one (within SLOW_S, without gigabytes)."""
    import resource

    path = _rewritten(work, weight_seeds, kind, config, tensors, metadata)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    error = load_model_clearly(kind, path)
    assert isinstance(error, InputError) and str(path) in error.message and message in error.message, error
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_kib < 200_000  # kiB: no huge model was built


def test_an_undamaged_weights_file_loads_as_saved(work, weight_seeds):
    for kind in MODEL_KINDS:
        model = load_model_clearly(kind, _rewritten(work, weight_seeds, kind))
        assert isinstance(model, torch.nn.Module) and not model.training


@contextlib.contextmanager
def _weights_dir(directory: Path):
    """Point the registry at ``directory`` (its manifest and files) for the block."""
    from latenthdr.models import registry

    saved = registry.WEIGHTS_DIR, registry.MANIFEST
    registry.WEIGHTS_DIR, registry.MANIFEST = directory, directory / "manifest.json"
    registry.shipped_file.cache_clear()
    try:
        yield registry
    finally:
        registry.WEIGHTS_DIR, registry.MANIFEST = saved
        registry.shipped_file.cache_clear()


MANIFEST_ENTRY = st.fixed_dictionaries(
    {}, optional={"sha256": JSON_SCALARS, "bytes": JSON_SCALARS, "kind": st.sampled_from(["head", "codec", "prior"])
                  | JSON_SCALARS, "space": JSON_SCALARS, "codec": JSON_SCALARS, "description": JSON_VALUES})
MANIFESTS = st.one_of(
    st.fixed_dictionaries({"files": st.dictionaries(st.sampled_from(["w.safetensors", "../w.safetensors",
                                                                     "missing.safetensors", "", "/etc/passwd"])
                                                    | st.text(max_size=8), MANIFEST_ENTRY | JSON_VALUES,
                                                    max_size=3) | JSON_VALUES}).map(lambda m: json.dumps(m).encode()),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=100))


@fuzz_settings(480)
@given(content=MANIFESTS, mutated=st.booleans(), operations=OPERATIONS)
# regressions: JSONDecodeError, KeyError, AttributeError escaped; "../" reached beside the weights folder
@example(content=b"", mutated=True, operations=[("truncate", 0)])
@example(content=b'{"files": {"w.safetensors": {"kind": "head"}}}', mutated=False, operations=[])
@example(content=b'{"files": {"../w.safetensors": {"bytes": 7}}}', mutated=False, operations=[])
@example(content=b'{"files": ["w.safetensors"]}', mutated=False, operations=[])
def test_manifest_reader(work, content, mutated, operations):
    import hashlib

    d = work / "weights-dir"
    d.mkdir(exist_ok=True)
    (d / "w.safetensors").write_bytes(b"weights")
    (work / "w.safetensors").write_bytes(b"weights")  # what "../w.safetensors" would reach
    good = {"sha256": hashlib.sha256(b"weights").hexdigest(), "bytes": 7, "kind": "head", "space": "fuzz",
            "codec": "embedded", "description": "x"}
    if mutated:
        content = mutate(json.dumps({"files": {"w.safetensors": good}}).encode(), operations)
    manifest = d / "manifest.json"
    manifest.write_bytes(content)
    with _weights_dir(d) as registry:
        for call in (registry.manifest, lambda: registry.shipped_head_for("fuzz"), registry.default_codec_spec,
                     lambda: registry.shipped_file("w.safetensors"), lambda: registry.shipped_file("../w.safetensors")):
            result = read_clearly(call, "weights", manifest, "w.safetensors")
            if isinstance(result, Path):
                assert result.parent == d and result.is_file()


# --------------------------------------------------------------------------------- training run dirs


@pytest.fixture(scope="module")
def checkpoint_seed(tmp_path_factory) -> Seeds:
    from latenthdr.training.rundir import save_atomic

    d = tmp_path_factory.mktemp("ckpt")
    state = {"step": 3, "model": {"w": torch.arange(6.0).reshape(2, 3)}, "options": {"lr": 1e-3}}
    return Seeds([save_atomic(state, d / "step-00000003.pt").read_bytes()])


@fuzz_settings(240)
@given(operations=OPERATIONS)
def test_checkpoint_reader(work, checkpoint_seed, operations):
    from latenthdr.training.rundir import Checkpointer

    d = work / "checkpoints"
    d.mkdir(exist_ok=True)
    path = d / "step-00000003.pt"
    path.write_bytes(mutate(checkpoint_seed[0], operations))
    result = read_clearly(lambda: Checkpointer(d).load(path), "--resume", path, d, quiet=False)  # warns: damaged
    assert isinstance(result, (LatentHDRError, dict))


@fuzz_settings(240)
@given(content=JSON_VALUES.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=60)
       | st.fixed_dictionaries({"options": st.dictionaries(st.sampled_from(["lr", "steps", "x"]), JSON_VALUES)
                                | JSON_VALUES}).map(lambda v: json.dumps(v).encode()),
       operations=st.lists(OPERATION, max_size=2))
@example(content=b"[" * 100000, operations=[])  # RecursionError in json.loads
@example(content=b'{"options": {"lr": 1' + b"0" * 5000 + b"}}", operations=[])
@example(content=b'{"options": {"lr": 0.001}} \xff', operations=[])
def test_run_config_reader(work, checkpoint_seed, content, operations):
    from latenthdr.training.rundir import check_resumable

    @dataclasses.dataclass(frozen=True)
    class Options:
        lr: float = 1e-3
        steps: int = 10

        def to_dict(self):
            return dataclasses.asdict(self)

    run = work / "run"
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    (run / "checkpoints" / "step-00000003.pt").write_bytes(checkpoint_seed[0])
    (run / "config.json").write_bytes(mutate(content, operations))
    read_clearly(lambda: check_resumable(run, Options(), ("steps",)), "--resume", run / "config.json", run)



def test_headers_with_nan_and_inf_read_as_strict_json(work):
    """Regression: a Radiance EXPOSURE of nan (or a product overflowing to inf) and EXR float attributes of NaN
    or Inf went into the header as NaN/Infinity, which is not JSON (`latenthdr info` printed them)."""
    import OpenEXR

    radiance = work / "nan-exposure.hdr"
    radiance.write_bytes(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\nEXPOSURE=nan\nEXPOSURE=1e300\nEXPOSURE=1e300\n\n"
                         b"-Y 1 +X 2\n" + bytes([128, 128, 128, 129]) * 2)
    exr = work / "nan-attribute.exr"
    OpenEXR.File({"fuzz:nan": float("nan"), "fuzz:inf": float("inf")}, {"RGB": _rgb(2, 2)}).write(str(exr))
    for path in (radiance, exr):
        check_hdr(read_clearly(lambda: io.read_hdr(path), "input", path))
    assert io.read_hdr(radiance).header["EXPOSURE"] == 1e300
    assert (io.read_hdr(exr).header["fuzz:nan"], io.read_hdr(exr).header["fuzz:inf"]) == ("nan", "inf")
