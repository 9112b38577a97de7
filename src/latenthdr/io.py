"""Image files in and out: the only module of latenthdr that touches them.

Readers return numpy float32 arrays [H, W, 3]:
- HDR (``read_hdr``: .exr through the official OpenEXR bindings, .hdr/.pic Radiance RGBE through
  OpenCV): *linear* relative radiance, finite and >= 0 (negatives are set to 0 and counted; NaN/Inf
  are refused). Radiance ``EXPOSURE`` is recorded in the header, not applied.
- LDR (``read_ldr``: PNG, JPEG, TIFF through OpenCV, EXIF through Pillow): *display-encoded* values
  in [0, 1] = code value / (2^bits - 1), EXIF orientation applied, alpha dropped, gray replicated.
Writers (EXR, Radiance, 8-bit PNG, JSON) are atomic: they write a temporary file beside the output
and rename it over the output only once the write succeeded (``atomic_output``).

A bad file raises ``InputError(argument, message)`` naming the path and what is accepted; the
libraries' own exceptions never escape a reader. ``to_tensor``/``to_numpy`` move between the file
layout [H, W, 3] and the library's torch layout [3, H, W].
"""

from __future__ import annotations

import contextlib
import io as io_module
import json
import numbers
import os
import re
import signal
import sys
import tempfile
import threading
import uuid
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from latenthdr._exr import (JSON_PREFIX, METADATA_PREFIX, READ_INFO_KEY, REC709_CHROMATICITIES, assemble,
                            choose_layer, exr_metadata, json_default, metadata_attributes)
from latenthdr.errors import InputError, LatentHDRError, OutputExistsError, WriteFailedError

__all__ = ["HdrImage", "LdrImage", "read_image", "read_hdr", "read_ldr", "exr_metadata", "check_output",
           "atomic_output", "output_set", "recover_outputs", "temporary_name", "is_temporary", "write_exr", "check_bracket_dir", "write_bracket_dir", "read_bracket_dir", "write_hdr", "write_png", "write_json", "to_tensor", "to_numpy",
           "HDR_EXTENSIONS", "LDR_EXTENSIONS", "HALF_MAX", "MAX_PIXELS", "image_size", "check_image_size", "REC709_CHROMATICITIES", "METADATA_PREFIX",
           "JSON_PREFIX", "READ_INFO_KEY"]

HDR_EXTENSIONS: tuple[str, ...] = (".exr", ".hdr", ".pic")
LDR_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
HALF_MAX = 65504.0  # largest finite IEEE half value
MAX_PIXELS = 2**28  # 268 megapixels (16384 x 16384): a larger image is refused before it is decoded

_MAGIC = {b"v/1\x01": "an OpenEXR image", b"#?": "a Radiance HDR image", b"\x89PNG": "a PNG image",
          b"\xff\xd8\xff": "a JPEG image", b"II*\x00": "a TIFF image", b"MM\x00*": "a TIFF image"}
_EXIF_IFD = 0x8769  # pointer from IFD0 to the Exif sub-IFD
_IFD0_TAGS = {0x010F: "make", 0x0110: "model"}
_EXIF_TAGS = {0x829A: "exposure_time_s", 0x829D: "f_number", 0x8827: "iso",
              0x920A: "focal_length_mm", 0x9003: "datetime_original"}
_ORIENTATION_TAG = 0x0112
# EXIF orientation -> the numpy operation that turns stored pixels upright (as PIL.ImageOps.exif_transpose)
_ORIENT = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, -1),
           7: lambda a: a[::-1, ::-1].transpose(1, 0, 2), 8: lambda a: np.rot90(a, 1)}


@dataclass
class HdrImage:
    """A linear HDR image read from a file.

    pixels: float32 [H, W, 3], linear relative radiance, finite, >= 0.
    header: the file's attributes with json-friendly values (EXR attributes by name, enums by name;
        Radiance header variables), plus ``READ_INFO_KEY`` for EXR: part, layer, channels, conversion.
    negative_clamped: number of pixel values that were < 0 in the file and were set to 0.
    """

    pixels: np.ndarray
    header: dict = field(default_factory=dict)
    negative_clamped: int = 0


@dataclass
class LdrImage:
    """A display-encoded image read from a PNG, JPEG or TIFF file.

    pixels: float32 [H, W, 3], display-encoded in [0, 1] (code value / (2^bits - 1)), upright.
    bits: 8 or 16, the file's sample depth.
    had_alpha: the file had an alpha channel (dropped, not composited).
    exif: json-friendly EXIF values where present: ``exposure_time_s``, ``f_number``, ``iso``,
        ``focal_length_mm``, ``datetime_original``, ``make``, ``model``, ``orientation``.
    """

    pixels: np.ndarray
    bits: int
    had_alpha: bool = False
    exif: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------- reading


def read_image(path, argument: str = "input") -> HdrImage | LdrImage:
    """Read an HDR (.exr, .hdr, .pic) or LDR (.png, .jpg, .jpeg, .tif, .tiff) image, by extension."""
    suffix = Path(path).suffix.lower()
    if suffix in HDR_EXTENSIONS:
        return read_hdr(path, argument)
    if suffix in LDR_EXTENSIONS:
        return read_ldr(path, argument)
    raise InputError(argument, f"{path}: unsupported extension {suffix or '(none)'!r}; "
                               f"accepted: {', '.join(HDR_EXTENSIONS + LDR_EXTENSIONS)}")


def read_hdr(path, argument: str = "input") -> HdrImage:
    """Read a linear HDR image from an OpenEXR (.exr) or Radiance (.hdr, .pic) file.

    EXR: scanline or tiled, half/float/uint channels, R,G,B (A dropped), Y (gray, replicated),
    or Y,RY,BY luminance-chroma (converted to RGB, subsampled chroma upsampled linearly); in
    multi-part or layered files the first part/layer with colour channels is read (the default
    layer first), and ``header[READ_INFO_KEY]`` says which. Pixels are the data window.
    """
    p = _check_input_file(path, HDR_EXTENSIONS, argument)
    check_image_size(p, argument)
    if p.suffix.lower() == ".exr":
        pixels, header = _read_exr(p, argument)
    else:
        pixels, header = _read_radiance(p, argument)
    bad = int(np.count_nonzero(~np.isfinite(pixels)))
    if bad:
        raise InputError(argument, f"{p}: {bad} NaN/Inf pixel values; accepted: finite values")
    negative = pixels < 0
    clamped = int(np.count_nonzero(negative))
    pixels[negative] = 0.0
    return HdrImage(np.ascontiguousarray(pixels, dtype=np.float32), header, clamped)


def read_ldr(path, argument: str = "input") -> LdrImage:
    """Read an 8- or 16-bit PNG, JPEG or TIFF as display-encoded float32 [H, W, 3] in [0, 1]."""
    p = _check_input_file(path, LDR_EXTENSIONS, argument)
    check_image_size(p, argument)
    with _cv2_quiet() as cv2:
        try:
            image = _cv2_decode(cv2, p)  # UNCHANGED: keeps 16 bits, no EXIF rotation
        except cv2.error:
            image = None
    if image is None or (p.suffix.lower() in (".jpg", ".jpeg") and _jpeg_truncated(p)):
        raise InputError(argument, f"{p}: not a readable image or truncated ({_what_it_is(p)}); "
                                   f"accepted: PNG, JPEG, TIFF with 8- or 16-bit samples")
    if image.dtype not in (np.uint8, np.uint16):
        raise InputError(argument, f"{p}: {image.dtype} samples; accepted: 8- or 16-bit integer "
                                   f"samples (save float images as .exr or .hdr)")
    bits = 8 if image.dtype == np.uint8 else 16
    image = image if image.ndim == 3 else image[..., None]
    had_alpha = image.shape[2] in (2, 4)
    colour = image[..., :1] if image.shape[2] <= 2 else image[..., 2::-1]  # gray, or BGR(A) -> RGB
    pixels = np.broadcast_to(colour, (*colour.shape[:2], 3)).astype(np.float32) / np.float32(2**bits - 1)
    exif, orientation = _read_exif(p)
    pixels = _ORIENT.get(orientation, lambda a: a)(pixels)
    return LdrImage(np.ascontiguousarray(pixels), bits, had_alpha, exif)


def _check_input_file(path, extensions: tuple[str, ...], argument: str) -> Path:
    p = Path(path)
    if p.suffix.lower() not in extensions:
        raise InputError(argument, f"{p}: unsupported extension {p.suffix or '(none)'!r}; "
                                   f"accepted: {', '.join(extensions)}")
    try:
        exists, is_dir = p.exists(), p.is_dir()
    except OSError as exc:  # e.g. a file name too long for the file system
        raise InputError(argument, f"{p}: cannot be read ({exc.strerror})") from None
    if not exists:
        raise InputError(argument, f"{p}: no such file")
    if is_dir:
        raise InputError(argument, f"{p}: is a directory; expected an image file")
    try:
        with open(p, "rb") as f:
            empty = not f.read(1)
    except OSError as exc:
        raise InputError(argument, f"{p}: cannot be read ({exc.strerror})") from None
    if empty:
        raise InputError(argument, f"{p}: is empty (0 bytes)")
    return p


def image_size(path) -> tuple[int, int] | None:
    """(width, height) from an image file's header, without decoding its pixels; None if the header cannot be
    read (the reader then says what is wrong with the file)."""
    p = Path(path)
    try:
        if p.suffix.lower() == ".exr":
            import OpenEXR

            with _library_output_captured(), open(p, "rb") as stream:
                parts = OpenEXR.File(stream, header_only=True).parts
            sizes = [part.header["dataWindow"] for part in parts]
            return max(int(hi[0] - lo[0] + 1) for lo, hi in sizes), max(int(hi[1] - lo[1] + 1) for lo, hi in sizes)
        if p.suffix.lower() in (".hdr", ".pic"):
            header = _radiance_header(p) or {}
            match = re.fullmatch(r"([-+])([XY])\s+(\d+)\s+([-+])([XY])\s+(\d+)", header.get("resolution", ""))
            if not match or match[2] == match[5]:
                return None
            first, second = int(match[3]), int(match[6])
            return (second, first) if match[2] == "Y" else (first, second)
        from PIL import Image

        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # we apply our own limit (restored below)
        try:
            with warnings.catch_warnings():  # Pillow warns on damaged TIFF tags; the full reader reports damage
                warnings.simplefilter("ignore")
                with Image.open(p) as image:
                    return image.size
        finally:
            Image.MAX_IMAGE_PIXELS = limit
    except Exception:  # any header the libraries cannot read: the full reader reports it
        return None


def check_image_size(path, argument: str = "input") -> tuple[int, int] | None:
    """(width, height) from the header (``image_size``), or InputError if the image has more than ``MAX_PIXELS``."""
    size = image_size(path)
    if size is not None and size[0] * size[1] > MAX_PIXELS:
        raise InputError(argument, f"{path}: {size[0]}x{size[1]} pixels ({size[0] * size[1] / 1e6:.0f} megapixels); "
                                   f"accepted: at most {MAX_PIXELS / 1e6:.0f} megapixels")
    return size


def _what_it_is(path: Path) -> str:
    """A few words on what the file's first bytes look like, for error messages."""
    with open(path, "rb") as f:
        head = f.read(16)
    for magic, name in _MAGIC.items():
        if head.startswith(magic):
            return f"it looks like {name}"
    if head and all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return "it looks like a text file"
    return "its first bytes match no image format"


@contextlib.contextmanager
def _library_output_captured() -> Iterator[list[str]]:
    """Collect what libraries print during the block (Python stdout, and file descriptor 2 where
    C/C++ code writes) into a list, filled on exit, so it can go into our errors instead of the
    user's terminal. fd 2 is process-wide: other threads' stderr is collected meanwhile too."""
    captured: list[str] = []
    printed = io_module.StringIO()
    with tempfile.TemporaryFile() as sink, contextlib.redirect_stdout(printed):
        sys.stderr.flush()
        try:
            saved = os.dup(2)
            os.dup2(sink.fileno(), 2)
        except OSError:  # no fd 2 (a daemon): collect Python stdout only
            saved = None
        try:
            yield captured
        finally:
            if saved is not None:
                os.dup2(saved, 2)
                os.close(saved)
            sink.seek(0)
            captured.extend(sink.read().decode(errors="replace").splitlines())
            captured.extend(printed.getvalue().splitlines())


@contextlib.contextmanager
def _cv2_quiet():
    """Import cv2 with its log silenced (it logs decode failures; we raise InputError instead)."""
    import cv2

    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        with _library_output_captured():
            yield cv2
    finally:
        cv2.utils.logging.setLogLevel(level)


def _cv2_decode(cv2, path: Path):
    """OpenCV's decode of a file's bytes (read by Python: cv2.imread crashes on a path that is not UTF-8)."""
    return cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)


def _read_exr(path: Path, argument: str) -> tuple[np.ndarray, dict]:
    import OpenEXR

    with open(path, "rb") as f:
        if f.read(4) != b"v/1\x01":
            raise InputError(argument, f"{path}: not an OpenEXR file ({_what_it_is(path)}); "
                                       f"accepted: OpenEXR images")
    error = None
    with _library_output_captured() as messages:
        try:
            with open(path, "rb") as stream:  # a stream: the bindings take no path that is not UTF-8
                parts = list(OpenEXR.File(stream, separate_channels=True).parts)
        except Exception as exc:  # the bindings raise RuntimeError/ValueError on corrupt files
            parts, error = [], exc
    if not parts:
        detail = "; ".join(m.strip() for m in messages if m.strip())[-300:] or str(error)
        raise InputError(argument, f"{path}: corrupt or truncated OpenEXR file ({detail}); accepted: complete "
                                   f"OpenEXR files")
    deep = (OpenEXR.deepscanline, OpenEXR.deeptile)
    for index, part in enumerate(parts):
        choice = None if part.type() in deep else choose_layer(part.channels)
        if choice is not None:
            return assemble(part, index, len(parts), choice, path, argument)
    found = sorted({name for part in parts for name in part.channels})
    raise InputError(argument, f"{path}: no colour channels (found: {', '.join(found) or 'none'}); "
                               f"accepted: R,G,B[,A] in any layer or part, Y,RY,BY, or Y")


def _read_radiance(path: Path, argument: str) -> tuple[np.ndarray, dict]:
    header = _radiance_header(path)
    if header is None:
        raise InputError(argument, f"{path}: not a Radiance HDR file ({_what_it_is(path)}); "
                                   f"accepted: Radiance RGBE files starting with '#?'")
    if "xyze" in header.get("FORMAT", "").lower():
        raise InputError(argument, f"{path}: XYZE Radiance files are not supported; accepted: "
                                   f"32-bit_rle_rgbe (convert with Radiance ra_xyze -r)")
    with _cv2_quiet() as cv2:
        try:
            bgr = _cv2_decode(cv2, path)
        except cv2.error:
            bgr = None
    if bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3:
        raise InputError(argument, f"{path}: corrupt or truncated Radiance file (resolution line "
                                   f"{header.get('resolution', '?')!r:.60}); accepted: complete RGBE files whose "
                                   f"resolution line reads like '-Y 512 +X 1024'")
    return bgr[..., ::-1].astype(np.float32), header  # BGR -> RGB (astype copies)


def _radiance_header(path: Path) -> dict | None:
    """Radiance header variables (FORMAT, EXPOSURE (product of all), GAMMA, PRIMARIES, ...) and
    the resolution line, or None if the file does not start with the '#?' magic."""
    with open(path, "rb") as f:
        block = f.read(65536)
    if not block.startswith(b"#?"):
        return None
    text, _, rest = block.partition(b"\n\n")
    header: dict = {"format": "radiance", "program": text.split(b"\n", 1)[0][2:].decode("latin-1")}
    for line in text.decode("latin-1").splitlines()[1:]:
        key, eq, value = line.partition("=")
        if not eq or line.startswith("#"):
            continue
        key, value = key.strip().upper(), value.strip()
        if key == "EXPOSURE":
            with contextlib.suppress(ValueError):
                product = header.get(key, 1.0) * float(value)
                if np.isfinite(product):  # NaN, Inf or an overflowing product: ignored, as unparsable values
                    header[key] = product
        else:
            header[key] = value
    header["resolution"] = rest.split(b"\n", 1)[0].decode("latin-1").strip()
    return header


def _jpeg_truncated(path: Path) -> bool:
    """True if the last start-of-scan marker (FFDA) has no end-of-image marker (FFD9) after it.

    Entropy-coded data stuffs 0xFF with 0x00, so both markers appear only as markers.
    """
    data = path.read_bytes()
    return data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda")


def _read_exif(path: Path) -> tuple[dict, int]:
    """(json-friendly EXIF values, orientation 1..8) read with Pillow; ({}, 1) if there are none."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                exif = image.getexif()
            sub_ifd = exif.get_ifd(_EXIF_IFD)  # parses the sub-IFD: warns on truncated data
    except Exception:  # EXIF is optional information; OpenCV already decoded the pixels
        return {}, 1
    out = {}
    for tags, ifd in ((_IFD0_TAGS, exif), (_EXIF_TAGS, sub_ifd)):
        for tag, name in tags.items():
            value = _exif_value(ifd.get(tag))
            if value is not None:
                out[name] = value
    orientation = exif.get(_ORIENTATION_TAG, 1)
    orientation = orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else 1
    out["orientation"] = orientation
    return out, orientation


def _exif_value(value):
    if isinstance(value, (tuple, list)) and value:  # e.g. ISOSpeedRatings stored as a sequence
        value = value[0]
    if isinstance(value, str):
        return value.strip("\x00 ") or None
    if isinstance(value, int):
        return value
    if isinstance(value, numbers.Real):  # includes Pillow's IFDRational
        number = float(value)
        return number if np.isfinite(number) else None
    return None


# ----------------------------------------------------------------------------------------- writing


def check_output(path, overwrite: bool, argument: str = "output",
                 extensions: tuple[str, ...] | None = None) -> Path:
    """Validate an output path; raise OutputExistsError if it exists and ``overwrite`` is False,
    InputError for a wrong extension, a directory, or a missing or unwritable parent directory."""
    p = Path(path)
    if extensions is not None and p.suffix.lower() not in extensions:
        raise InputError(argument, f"{p}: extension {p.suffix or '(none)'!r} not accepted; "
                                   f"accepted: {', '.join(extensions)}")
    if p.is_dir():
        raise InputError(argument, f"{p}: is a directory; expected a file path")
    parent = p.parent
    if not parent.is_dir():
        raise InputError(argument, f"{p}: directory {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise InputError(argument, f"{p}: directory {parent} is not writable")
    if p.exists() and not overwrite:
        raise OutputExistsError(p)
    return p


@contextlib.contextmanager
def atomic_output(path, overwrite: bool = False, argument: str = "output",
                  extensions: tuple[str, ...] | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` with the same suffix; on success rename it over
    ``path`` (os.replace), on any exception delete it and leave ``path`` untouched."""
    if not is_temporary(Path(path).name):  # a file of an output set: output_set already cleaned its folder
        recover_outputs(Path(path).parent)
    final = check_output(path, overwrite, argument, extensions)
    temp = temporary_name(final)
    try:
        try:
            yield temp
            if not temp.is_file():
                raise LatentHDRError(f"{final}: the writer produced no file")
            os.replace(temp, final)
        except OSError as error:
            raise write_failed(final, error.strerror or str(error)) from None
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise


def write_failed(path: Path, detail: str) -> WriteFailedError:
    """The error for a write that failed (a full disk, a read-only folder): what happened, the free space left."""
    import shutil

    try:
        free = f"{shutil.disk_usage(path.parent).free / 2**20:.1f} MiB free there"
    except OSError:
        free = "free space unknown"
    return WriteFailedError(f"{path}: could not be written ({detail}; {free}); nothing was written there")


# Temporaries and commit journals: ".NAME.latenthdr-PID-RANDOM.SUFFIX" beside the final NAME. The pid tells the
# next run whether the writer is still alive; a journal (suffix .journal) lists the renames of a set being committed.
_TEMP_NAME = re.compile(r"\..+\.latenthdr-(?P<pid>\d+)-[0-9a-f]{8}(\.[^.]*)?")
_JOURNAL_SUFFIX = ".journal"
_SCANNED: dict[str, int] = {}  # folder -> its mtime after recover_outputs last scanned it


def temporary_name(final: Path, suffix: str | None = None) -> Path:
    """A fresh temporary path beside ``final``, recognisable by ``recover_outputs`` (same suffix by default)."""
    suffix = final.suffix if suffix is None else suffix
    return final.with_name(f".{final.name[:200]}.latenthdr-{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}")


def is_temporary(name: str) -> bool:
    """True for the name of a temporary or journal that latenthdr writes (``temporary_name``)."""
    return _TEMP_NAME.fullmatch(name) is not None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return pid < 2**22  # another user's live process; an impossible pid is no process at all
    return True


def recover_outputs(folder) -> list[Path]:
    """Finish what killed runs left in ``folder``: a commit journal whose writer is dead is rolled forward
    (its set was complete when the journal was written), then the dead writers' temporaries are deleted.
    Files of live processes are left alone. Returns the paths deleted or completed."""
    folder = Path(folder)
    try:
        stamp = folder.stat().st_mtime_ns
        if _SCANNED.get(str(folder)) == stamp:
            return []
        dead = [folder / e.name for e in os.scandir(folder)
                if (m := _TEMP_NAME.fullmatch(e.name)) and not _alive(int(m["pid"]))]
    except OSError:  # a folder we cannot list: the writers' own checks report it
        return []
    done = []
    for journal in sorted(p for p in dead if p.suffix == _JOURNAL_SUFFIX):
        done += _roll_forward(journal)
    for temp in dead:
        with contextlib.suppress(OSError):
            temp.unlink()
            done.append(temp)
    with contextlib.suppress(OSError):
        _SCANNED[str(folder)] = folder.stat().st_mtime_ns
    return done


def _roll_forward(journal: Path) -> list[Path]:
    """Complete the renames and removals a journal lists; a torn journal (killed while writing it) is
    ignored, which rolls its set back: its temporaries are then deleted as any others."""
    try:
        plan = json.loads(journal.read_text(encoding="utf-8"))
        renames = [(journal.parent / a, journal.parent / b) for a, b in plan["renames"]]
        removals = [journal.parent / name for name in plan["remove"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    done = []
    for temp, final in renames:
        with contextlib.suppress(OSError):
            os.replace(temp, final)
            done.append(final)
    for stale in removals:
        with contextlib.suppress(OSError):
            stale.unlink()
    return done


@contextlib.contextmanager
def output_set(paths: Mapping[str, Path], *, overwrite: bool = False, argument: str = "output",
               inputs: tuple = (), remove: tuple = ()) -> Iterator[dict[str, Path]]:
    """Write a set of files (an EXR, its previews, its sidecar) whole or not at all.

    Yields temporary paths with the keys of ``paths``, beside the final ones; write every one of them. On a clean
    exit they are renamed over the final paths in the order given (put the sidecar last), under a journal and with
    SIGINT/SIGTERM held, so even a run killed mid-rename is completed by the next one (``recover_outputs``); the
    ``remove`` paths (companions of an old set that the new one no longer has) are deleted at the same moment. On
    an exception or signal before that, every temporary is deleted and the old files stay exactly as they were.
    All paths must be in one folder. An output that is one of ``inputs`` is refused.
    """
    folders = {Path(p).parent.resolve() for p in paths.values()}
    if len(folders) != 1:
        raise LatentHDRError(f"an output set must be in one folder, got {sorted(map(str, folders))}")
    recover_outputs(next(iter(folders)))
    finals = {key: check_output(path, overwrite, argument) for key, path in paths.items()}
    for final in finals.values():
        for source in inputs:
            if _same_file(final, Path(source)):
                raise InputError(argument, f"{final} is the input {source}; choose an output that is not an input")
    temps = {key: temporary_name(final) for key, final in finals.items()}
    journal = temporary_name(list(finals.values())[-1], _JOURNAL_SUFFIX)
    try:
        yield dict(temps)
        missing = [str(finals[k]) for k, t in temps.items() if not t.is_file()]
        if missing:
            raise LatentHDRError(f"{', '.join(missing)}: the writer produced no file")
        _commit([(temps[k], finals[k]) for k in finals], [Path(r) for r in remove], journal)
    except BaseException as error:
        if not journal.exists():  # else a rename failed mid-commit: the journal's next reader completes the set
            for temp in temps.values():
                with contextlib.suppress(OSError):
                    temp.unlink()
        if not isinstance(error, LatentHDRError):
            raise
        message = str(error)  # a writer's error names its temporary: say the final name instead
        for key, temp in temps.items():
            message = message.replace(str(temp), str(finals[key]))
        if message == str(error):
            raise
        raise (WriteFailedError if isinstance(error, WriteFailedError) else LatentHDRError)(message) from None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def _commit(renames: list[tuple[Path, Path]], remove: list[Path], journal: Path) -> None:
    """Rename temporaries over their finals and delete ``remove``: fsync the data, write the journal, rename,
    delete the journal. Signals are held meanwhile and delivered right after. If a rename fails, the journal stays
    for the next run in the folder to finish the set (``recover_outputs``)."""
    for temp, _ in renames:
        _fsync(temp)
    plan = {"renames": [[t.name, f.name] for t, f in renames], "remove": [p.name for p in remove]}
    with _signals_held():
        try:
            journal.write_text(json.dumps(plan), encoding="utf-8")
            _fsync(journal)
        except OSError:  # nothing renamed yet: the set is rolled back as if the journal had never been
            with contextlib.suppress(OSError):
                journal.unlink()
            raise
        for temp, final in renames:
            os.replace(temp, final)
        for stale in remove:
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        journal.unlink()
        _fsync(renames[-1][1].parent)


def _fsync(path: Path) -> None:
    """Flush a file's (or a folder's entries') data to disk, where the file system supports it."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_HELD_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT/SIGTERM/SIGHUP during the block and deliver them after it (main thread only; elsewhere the
    journal alone protects the commit)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    saved = {sig: signal.signal(sig, lambda signum, frame: pending.append(signum)) for sig in _HELD_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(pending):
            signal.raise_signal(sig)


def write_exr(path, rgb, *, half: bool = False, metadata: Mapping[str, object] | None = None,
              panorama: bool = False, comments: str | None = None, overwrite: bool = False) -> Path:
    """Write linear RGB [H, W, 3] (finite, >= 0) as a ZIP-compressed scanline OpenEXR file.

    float32 by default; ``half=True`` stores float16 and refuses peaks above 65504. The header
    carries Rec.709/sRGB chromaticities (D65 white), ``envmap`` = latlong if ``panorama``, the
    standard ``comments`` attribute, and ``metadata``: str values as string attributes
    ``latenthdr:KEY``, anything else JSON-encoded under ``latenthdr:json:KEY`` (see exr_metadata).
    """
    import OpenEXR

    pixels = _check_linear_rgb(rgb, "rgb")
    if half and pixels.size and float(pixels.max()) > HALF_MAX:
        raise InputError("rgb", f"values up to {float(pixels.max()):.6g} overflow half (max "
                                f"{HALF_MAX:g}); use float32 (half=False)")
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage,
              "chromaticities": REC709_CHROMATICITIES}
    if panorama:
        header["envmap"] = OpenEXR.ENVMAP_LATLONG
    if comments is not None:
        header["comments"] = str(comments)
    header.update(metadata_attributes(metadata))
    pixels = pixels.astype(np.float16) if half else pixels
    with atomic_output(path, overwrite, extensions=(".exr",)) as temp:
        try:
            with open(temp, "wb") as stream:
                OpenEXR.File(header, {"RGB": pixels}).write(stream)
        except RuntimeError as error:  # the bindings report I/O failures (a full disk) as RuntimeError
            raise write_failed(Path(path), str(error).rsplit(". ", 1)[-1].rstrip(".")) from None
    return Path(path)


def write_hdr(path, rgb, *, overwrite: bool = False) -> Path:
    """Write linear RGB [H, W, 3] (finite, >= 0) as Radiance RGBE (.hdr/.pic, ~1% precision)."""
    pixels = _check_linear_rgb(rgb, "rgb")
    with atomic_output(path, overwrite, extensions=(".hdr", ".pic")) as temp, _cv2_quiet() as cv2:
        _cv2_encode(cv2, temp, ".hdr", pixels, Path(path))
    return Path(path)


def _cv2_encode(cv2, temp: Path, extension: str, rgb: np.ndarray, final: Path) -> None:
    """Encode RGB [H, W, 3] with OpenCV (as BGR) and write the bytes to ``temp`` from Python (any path, and a full
    disk is an OSError that ``atomic_output`` reports)."""
    ok, encoded = cv2.imencode(extension, np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise write_failed(final, f"OpenCV could not encode the {extension} file")
    with open(temp, "wb") as stream:
        stream.write(encoded.tobytes())


def write_png(path, display, *, overwrite: bool = False) -> Path:
    """Write an 8-bit RGB PNG from display-encoded [H, W, 3]: floats in [0, 1] (code =
    round(255 y)) or uint8 code values."""
    codes = np.asarray(display)
    if codes.ndim != 3 or codes.shape[2] != 3 or 0 in codes.shape:
        raise InputError("display", f"shape {codes.shape}; accepted: [H, W, 3]")
    if np.issubdtype(codes.dtype, np.floating):
        if not np.all(np.isfinite(codes)) or codes.min() < 0 or codes.max() > 1:
            raise InputError("display", f"values in [{codes.min():.4g}, {codes.max():.4g}]; accepted: "
                                        f"display-encoded values in [0, 1] (clip or tone-map first)")
        codes = np.rint(codes.astype(np.float32) * 255).astype(np.uint8)
    elif codes.dtype != np.uint8:
        raise InputError("display", f"dtype {codes.dtype}; accepted: float in [0, 1] or uint8")
    with atomic_output(path, overwrite, extensions=(".png",)) as temp, _cv2_quiet() as cv2:
        _cv2_encode(cv2, temp, ".png", codes, Path(path))
    return Path(path)


def write_json(path, obj, *, overwrite: bool = False) -> Path:
    """Write ``obj`` as JSON (indent 2, trailing newline; numpy values and paths converted)."""
    try:
        text = json.dumps(obj, indent=2, allow_nan=False, default=json_default) + "\n"
    except (TypeError, ValueError) as exc:
        raise InputError("obj", f"not JSON-serialisable ({exc}); accepted: dicts, lists, str, "
                                f"finite numbers, numpy values") from None
    with atomic_output(path, overwrite) as temp:
        temp.write_text(text, encoding="utf-8")
    return Path(path)


def _check_linear_rgb(rgb, argument: str) -> np.ndarray:
    """float32 [H, W, 3] copy of linear RGB, or InputError naming what is wrong."""
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3 or 0 in a.shape:
        raise InputError(argument, f"shape {a.shape}; accepted: [H, W, 3] (to_numpy converts [3, H, W])")
    if not np.issubdtype(a.dtype, np.floating):
        raise InputError(argument, f"dtype {a.dtype}; accepted: float arrays of linear radiance")
    a = np.array(a, dtype=np.float32, order="C")  # a C-ordered copy: the EXR bindings ignore strides
    bad = int(np.count_nonzero(~np.isfinite(a)))
    if bad:
        raise InputError(argument, f"{bad} NaN/Inf values (as float32); accepted: finite values >= 0")
    negative = int(np.count_nonzero(a < 0))
    if negative:
        raise InputError(argument, f"{negative} negative values (min {a.min():.4g}); accepted: values >= 0")
    return a


# ------------------------------------------------------------------------------ bracket directories
BRACKET_JSON = "bracket.json"
BRACKET_FORMAT = "latenthdr-bracket-v1"
BRACKET_CONTACT_SHEET = "contact.png"


FRAME_NAME = re.compile(r"frame_\d{2,}_ev[+-]\d+(\.\d+)?\.png")  # what bracket_frame_name writes


def bracket_frame_name(index: int, ev: float) -> str:
    """File name of frame ``index`` at exposure ``ev`` in a bracket directory, e.g. ``frame_03_ev-4.png``."""
    return f"frame_{index:02d}_ev{ev:+g}.png"


def check_bracket_dir(path, overwrite: bool, argument: str = "output") -> Path:
    """A directory that may receive a bracket: missing (its parent must exist), empty, or holding a previous
    bracket that ``overwrite`` allows replacing. Anything else is refused: we never write into a folder of
    the user's files. What killed runs left there is cleaned first (``recover_outputs``)."""
    d = Path(path)
    if d.exists() and not d.is_dir():
        raise InputError(argument, f"{d}: exists and is not a directory")
    if not d.exists():
        if not d.parent.is_dir():
            raise InputError(argument, f"{d}: parent directory {d.parent} does not exist; create it first")
        if not os.access(d.parent, os.W_OK):
            raise InputError(argument, f"{d}: parent directory {d.parent} is not writable")
        return d
    if not os.access(d, os.W_OK | os.X_OK):
        raise InputError(argument, f"{d}: directory is not writable")
    recover_outputs(d)
    entries = [e for e in d.iterdir() if not is_temporary(e.name)]
    if entries and not (d / BRACKET_JSON).is_file():
        raise InputError(argument, f"{d}: not empty and holds no {BRACKET_JSON}; give a new or empty directory")
    if entries and not overwrite:
        raise OutputExistsError(d)
    return d


def write_bracket_dir(path, frames, evs, metadata: Mapping[str, object], *, overwrite: bool = False,
                      contact_sheet=None, argument: str = "output") -> list[Path]:
    """Write display-encoded frames (each [H, W, 3] in [0, 1]) as 8-bit PNGs plus ``bracket.json`` (EVs, file
    names and ``metadata``), and optionally a contact sheet image (``contact.png``), as one output set
    (``output_set``: all or nothing, bracket.json last). Replacing a bracket deletes only the frames of the old
    one that this function could have written (``FRAME_NAME``, listed in its bracket.json). A directory this
    call created is removed again if the write fails. Returns the frame paths."""
    d = check_bracket_dir(path, overwrite, argument)
    if len(frames) != len(evs):
        raise InputError("frames", f"{len(frames)} frames for {len(evs)} EVs")
    old = _old_bracket_frames(d)
    names = [bracket_frame_name(i, float(e)) for i, e in enumerate(evs)]
    files = {name: d / name for name in names}
    if contact_sheet is not None:
        files[BRACKET_CONTACT_SHEET] = d / BRACKET_CONTACT_SHEET
    files[BRACKET_JSON] = d / BRACKET_JSON
    stale = [d / name for name in sorted(old - set(names))]
    created = not d.exists()
    try:
        d.mkdir(exist_ok=True)
    except OSError as error:
        raise InputError(argument, f"{d}: cannot create the directory ({error.strerror})") from None
    try:
        with output_set(files, overwrite=True, argument=argument, remove=tuple(stale)) as temps:
            for name, frame in zip(names, frames):
                write_png(temps[name], frame, overwrite=True)
            if contact_sheet is not None:
                write_png(temps[BRACKET_CONTACT_SHEET], contact_sheet, overwrite=True)
            write_json(temps[BRACKET_JSON], {"format": BRACKET_FORMAT, **metadata, "evs": [float(e) for e in evs],
                                             "frames": names}, overwrite=True)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
    return [files[name] for name in names]


def _old_bracket_frames(d: Path) -> set[str]:
    """Frame names the bracket.json in ``d`` lists that ``bracket_frame_name`` could have written."""
    try:
        listed = json.loads((d / BRACKET_JSON).read_text(encoding="utf-8")).get("frames", [])
    except (OSError, ValueError, AttributeError):
        return set()
    listed = listed if isinstance(listed, list) else []
    return {name for name in listed if isinstance(name, str) and FRAME_NAME.fullmatch(name)}


def read_bracket_dir(path, argument: str = "input") -> tuple[list[np.ndarray], list[float], dict]:
    """Read a bracket directory written by ``write_bracket_dir``: (frames [H, W, 3] display, EVs, metadata).
    Missing or malformed bracket.json, missing frames and frames of different sizes raise InputError."""
    d = Path(path)
    json_path = d / BRACKET_JSON
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError):
        raise InputError(argument, f"{d}: no {BRACKET_JSON}; expected a directory made by `latenthdr bracket`") from None
    except OSError as exc:
        raise InputError(argument, f"{json_path}: cannot be read ({exc.strerror})") from None
    except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, an integer of > 4300 digits, deep nesting
        raise InputError(argument, f"{json_path}: malformed ({str(exc)[:200]}); accepted: UTF-8 JSON "
                                   f"{_BRACKET_ACCEPTED}") from None
    evs, names = _bracket_entries(meta, json_path, argument)
    frames = [read_ldr(d / name, argument).pixels for name in names]
    sizes = {f.shape for f in frames}
    if len(sizes) > 1:
        raise InputError(argument, f"{d}: frames have different sizes {sorted(sizes)}; accepted: frames of one size")
    return frames, evs, meta


_BRACKET_ACCEPTED = '{"evs": [finite numbers], "frames": [as many file names in the folder, without / or \\]}'


def _bracket_entries(meta, json_path: Path, argument: str) -> tuple[list[float], list[str]]:
    """The EVs and frame file names of a parsed bracket.json, or InputError saying what is accepted."""
    evs, names = (meta.get("evs"), meta.get("frames")) if isinstance(meta, dict) else (None, None)
    values = [_finite_float(e) for e in evs] if isinstance(evs, list) else [None]
    if not isinstance(meta, dict):
        found = f"a JSON {type(meta).__name__}, not an object"
    elif None in values:
        found = f"evs {repr(evs)[:100]}"
    elif not isinstance(names, list) or not all(_plain_file_name(n) for n in names):
        found = f"frames {repr(names)[:100]}"
    elif len(values) != len(names) or not names:
        found = f"{len(names)} frames for {len(values)} EVs"
    else:
        return values, names
    raise InputError(argument, f"{json_path}: {found}; accepted: {_BRACKET_ACCEPTED}")


def _finite_float(value) -> float | None:
    """A JSON number as a finite float; None for anything else (bools, strings, NaN, Inf, huge integers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    with contextlib.suppress(OverflowError):
        number = float(value)
        return number if np.isfinite(number) else None
    return None


def _plain_file_name(name) -> bool:
    """A file name without a directory part: read from the bracket folder itself, never beside it."""
    return (isinstance(name, str) and name not in ("", ".", "..") and Path(name).name == name
            and not any(c in name for c in "/\\\x00"))


# --------------------------------------------------------------------------------- torch layout


def to_tensor(pixels) -> torch.Tensor:
    """numpy [H, W, 3] (file layout) -> torch float32 [3, H, W] (library layout), values unchanged."""
    a = np.asarray(pixels)
    if a.ndim != 3 or a.shape[2] != 3:
        raise InputError("pixels", f"shape {a.shape}; accepted: [H, W, 3]")
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1), dtype=np.float32))


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """torch [3, H, W] (library layout, any float dtype/device) -> numpy float32 [H, W, 3]."""
    if not isinstance(tensor, torch.Tensor) or tensor.ndim != 3 or tensor.shape[0] != 3:
        shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
        raise InputError("tensor", f"got {shape}; accepted: torch.Tensor [3, H, W]")
    return np.array(tensor.detach().to("cpu", torch.float32).permute(1, 2, 0).numpy(), order="C")
