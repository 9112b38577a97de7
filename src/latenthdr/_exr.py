"""OpenEXR data logic for latenthdr.io: channel selection, luminance-chroma conversion, chroma
upsampling, header and metadata encoding. No file access here: ``latenthdr.io`` reads and writes.

Array conventions as in ``latenthdr.io``: planes are float32 [H, W]; RGB is linear float32 [H, W, 3].
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from latenthdr.errors import InputError

# Rec.709 / sRGB primaries and D65 white as CIE xy: R, G, B, white (the EXR `chromaticities` order)
REC709_CHROMATICITIES = (0.64, 0.33, 0.30, 0.60, 0.15, 0.06, 0.3127, 0.3290)
METADATA_PREFIX = "latenthdr:"  # write_exr: str metadata values, as EXR string attributes
JSON_PREFIX = "latenthdr:json:"  # write_exr: any other metadata value, JSON-encoded (exact floats)
READ_INFO_KEY = "latenthdr.read"  # read_hdr: what was read (part, layer, channels, conversion)


def exr_metadata(header: Mapping[str, object]) -> dict:
    """The ``metadata`` given to ``io.write_exr``, recovered from a header returned by ``io.read_hdr``."""
    out = {}
    for name, value in header.items():
        if name.startswith(JSON_PREFIX):
            with contextlib.suppress(TypeError, ValueError):
                value = json.loads(value)
            out[name[len(JSON_PREFIX):]] = value
        elif name.startswith(METADATA_PREFIX):
            out[name[len(METADATA_PREFIX):]] = value
    return out


def choose_layer(channel_names) -> tuple[str, str, dict[str, str]] | None:
    """(layer, conversion, {role: channel name}) to read; default layer first, then by name."""
    layers: dict[str, dict[str, str]] = {}
    for name in channel_names:
        layer, _, role = name.rpartition(".")
        layers.setdefault(layer, {})[role] = name
    for layer in sorted(layers):  # "" (the default layer) sorts first
        roles = layers[layer]
        for conversion, needed in (("rgb", "RGB"), ("luminance-chroma", ("Y", "RY", "BY")),
                                   ("grayscale", ("Y",))):
            if all(r in roles for r in needed):
                return layer, conversion, {r: roles[r] for r in needed}
    return None


def assemble(part, index: int, n_parts: int, choice, path: Path, argument: str):
    """Full-resolution float32 RGB [H, W, 3] and a json-friendly header for the chosen channels."""
    layer, conversion, names = choice
    header = part.header
    (x0, y0), (x1, y1) = (np.asarray(corner).tolist() for corner in header["dataWindow"])
    height, width = y1 - y0 + 1, x1 - x0 + 1
    plane = {role: _full_plane(part.channels[name], x0, y0, height, width, path, argument)
             for role, name in names.items()}
    if conversion == "rgb":
        rgb = np.stack([plane["R"], plane["G"], plane["B"]], axis=-1)
    elif conversion == "luminance-chroma":
        try:
            with np.errstate(all="ignore"):
                weights = luminance_weights(header.get("chromaticities") or REC709_CHROMATICITIES)
        except (ZeroDivisionError, TypeError, ValueError, np.linalg.LinAlgError):  # TypeError: an unknown type
            weights = (np.nan,)
        if not np.all(np.isfinite(weights)):
            raise InputError(argument, f"{path}: degenerate chromaticities {_jsonable(header['chromaticities'])}; "
                                       f"accepted: CIE xy primaries and white with y > 0")
        with np.errstate(all="ignore"):  # a damaged file may overflow to inf: read_hdr refuses non-finite values
            rgb = luminance_chroma_to_rgb(plane["Y"], plane["RY"], plane["BY"], weights)
    else:
        rgb = np.repeat(plane["Y"][..., None], 3, axis=-1)
    out = {str(key): _jsonable(value) for key, value in header.items()}
    out[READ_INFO_KEY] = {
        "part": index, "part_name": part.name(), "parts": n_parts, "layer": layer,
        "conversion": conversion, "channels": list(names.values()),
        "ignored_channels": sorted(set(part.channels) - set(names.values()))}
    return rgb, out


def _full_plane(channel, x0: int, y0: int, height: int, width: int, path: Path, argument: str):
    """One channel as float32 [H, W]; subsampled channels are upsampled by linear interpolation.

    EXR stores a channel with sampling (sx, sy) at the pixels whose absolute coordinates are
    multiples of (sx, sy); between those we interpolate linearly and clamp at the edges.
    """
    values = np.asarray(channel.pixels, dtype=np.float32)  # half and uint -> float32
    xs, ys = np.arange(x0, x0 + width), np.arange(y0, y0 + height)
    at_x, at_y = xs[xs % channel.xSampling == 0] - x0, ys[ys % channel.ySampling == 0] - y0
    if values.shape != (at_y.size, at_x.size):
        raise InputError(argument, f"{path}: channel {channel.name!r} holds {values.shape} samples, "
                                   f"expected {(at_y.size, at_x.size)}; the file is corrupt")
    if values.shape == (height, width):
        return values
    r0, r1, wr = _linear_taps(at_y, height)
    c0, c1, wc = _linear_taps(at_x, width)
    with np.errstate(all="ignore"):  # samples near float32's limit overflow to inf: read_hdr refuses those
        values = values[r0] * (1 - wr)[:, None] + values[r1] * wr[:, None]
        return values[:, c0] * (1 - wc) + values[:, c1] * wc


def _linear_taps(sample_at: np.ndarray, n: int):
    """Indices and weights that interpolate samples at positions ``sample_at`` onto 0..n-1."""
    t = np.interp(np.arange(n), sample_at, np.arange(sample_at.size))
    i0 = np.floor(t).astype(np.intp)
    return i0, np.minimum(i0 + 1, sample_at.size - 1), (t - i0).astype(np.float32)


def luminance_weights(chromaticities) -> tuple[float, float, float]:
    """Luminance weights (w_R, w_G, w_B) of linear RGB with the given primaries and white.

    Y = w_R R + w_G G + w_B B is the middle row of the RGB -> XYZ matrix scaled so that RGB = 1
    gives the white point at Y = 1 (as OpenEXR's computeYw); Rec.709 gives (0.2126, 0.7152, 0.0722).
    """
    xr, yr, xg, yg, xb, yb, xw, yw = (float(c) for c in chromaticities)
    primaries = np.array([[x / y, 1.0, (1 - x - y) / y] for x, y in ((xr, yr), (xg, yg), (xb, yb))]).T
    white = np.array([xw / yw, 1.0, (1 - xw - yw) / yw])
    return tuple(float(w) for w in np.linalg.solve(primaries, white))


def luminance_chroma_to_rgb(Y, RY, BY, weights) -> np.ndarray:
    """OpenEXR luminance-chroma -> RGB: RY = (R - Y)/Y and BY = (B - Y)/Y (ImfRgbaYca), so
    R = (RY + 1) Y, B = (BY + 1) Y and G = (Y - w_R R - w_B B) / w_G."""
    w_R, w_G, w_B = weights
    R, B = (RY + 1) * Y, (BY + 1) * Y
    return np.stack([R, (Y - w_R * R - w_B * B) / w_G, B], axis=-1).astype(np.float32)


def _jsonable(value):
    """An EXR attribute value as json-friendly data (enums and channels by name)."""
    if isinstance(value, float) and not np.isfinite(value):  # JSON has no NaN/Inf: as text, e.g. "nan"
        return str(value)
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (np.generic, np.ndarray)):
        return _jsonable(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if hasattr(value, "xSize"):  # TileDescription
        return {"x_size": value.xSize, "y_size": value.ySize, "mode": value.mode.name,
                "rounding": value.roundingMode.name}
    if isinstance(getattr(value, "name", None), str):  # pybind11 enums, Channel
        return value.name
    try:
        return str(value)
    except UnicodeDecodeError:  # an attribute of a type the bindings do not know, whose name is not UTF-8
        return f"<{type(value).__name__}>"


def metadata_attributes(metadata: Mapping[str, object] | None) -> dict[str, str]:
    """``write_exr`` metadata -> EXR string attributes: str values under ``latenthdr:KEY``, any
    other value JSON-encoded under ``latenthdr:json:KEY`` (JSON keeps float64 exactly; EXR's
    native float attribute is 32-bit and its int attribute 32-bit, so we do not use them)."""
    out = {}
    for key, value in (metadata or {}).items():
        if (not isinstance(key, str) or not key or len(key) > 200 or key.startswith("json:")
                or any(ord(c) < 32 for c in key)):
            raise InputError("metadata", f"key {key!r}; accepted: non-empty str of at most 200 "
                                         f"characters, no control characters, not starting 'json:'")
        if isinstance(value, str):
            out[METADATA_PREFIX + key] = value
            continue
        try:
            out[JSON_PREFIX + key] = json.dumps(value, allow_nan=False, default=json_default)
        except (TypeError, ValueError) as exc:
            raise InputError("metadata", f"{key!r}: {exc}; accepted: str or JSON-serialisable values "
                                         f"(finite numbers, lists, dicts)") from None
    return out


def json_default(value):
    """``json.dumps`` fallback: numpy and torch values as Python data, paths as strings."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")
