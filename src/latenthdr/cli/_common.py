"""Small helpers shared by the command modules: option parsing that names the flag, JSON reporting."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from fractions import Fraction

from latenthdr.errors import InputError


FORMATS = {"exr": ".exr", "hdr": ".hdr"}  # --format -> the suffix of the HDR it writes
LAYOUT_FLAGS = ("--layout", "--azimuth")
SCALE_FLAGS = ("--white-nits", "--scale", "--illuminance")


def add_output_options(parser) -> None:
    """The output's file format, a panorama's orientation and the absolute scales (one of them, or relative)."""
    parser.add_argument("--format", metavar="{exr,hdr}",
                        help="exr: OpenEXR float32 (--half: float16); hdr: Radiance RGBE (Unreal's cubemap import; no "
                             "metadata inside, the JSON sidecar has it). Default: from the output's suffix")
    parser.add_argument("--layout", metavar="{openexr,blender,unity,unreal}",
                        help="panoramas: turn for a renderer's import so the image centre faces its forward axis "
                             "(default openexr: ours, with envmap=latlong); docs/renderers.md")
    parser.add_argument("--azimuth", metavar="DEG",
                        help="panoramas: turn so the direction DEG degrees right of the image centre faces forward; "
                             "rounded to whole columns (lossless), the angle applied is recorded")
    parser.add_argument("--white-nits", metavar="N",
                        help="absolute scale: 1.0 relative (the input's clip level, the EV-0 white) = N cd/m^2; "
                             "the output is then in cd/m^2")
    parser.add_argument("--scale", metavar="pP=V",
                        help="absolute scale: the P-th percentile of luminance = V cd/m^2, e.g. p99.5=16")
    parser.add_argument("--illuminance", metavar="LUX",
                        help="panoramas, absolute scale: the upper hemisphere lights a horizontal surface with LUX lux")


@dataclass(frozen=True)
class OutputOptions:
    """What the output edge does to the merged HDR (``cli.convert.finish_output``) and how it writes it.

    format: "exr" or "hdr". layout: a name of ``panorama.LAYOUTS`` or None (the default: openexr for panoramas).
    azimuth_deg: None or degrees. scale: a ``photometry.Scale``. given: the panorama-only flags the user gave."""

    format: str
    half: bool
    layout: str | None
    azimuth_deg: float | None
    scale: object
    given: tuple[str, ...] = ()


def output_format(output: str | None, fmt: str | None, argument: str = "--output") -> str:
    """The format of the HDR: --format when given (the output's suffix must agree), else the suffix of ``output``
    (.exr or .hdr); ``output`` None (a folder of outputs): --format or exr."""
    from pathlib import Path

    if fmt is not None and fmt not in FORMATS:
        raise InputError("--format", f"got {fmt!r}; accepted: {', '.join(FORMATS)}")
    if output is None:
        return fmt or "exr"
    suffix = Path(output).suffix.lower()
    by_suffix = next((name for name, ext in FORMATS.items() if ext == suffix), None)
    if fmt is None and by_suffix is None:
        raise InputError(argument, f"{output}: extension {suffix or '(none)'!r} not accepted; accepted: .exr "
                                   "(OpenEXR) or .hdr (Radiance)")
    if fmt is not None and by_suffix != fmt:
        raise InputError("--format", f"{fmt} writes {FORMATS[fmt]} files, but {output} ends in "
                                     f"{suffix or '(no extension)'}; end the output in {FORMATS[fmt]} or drop "
                                     "--format (the suffix then decides)")
    return by_suffix


def output_options_of(args, output: str | None) -> OutputOptions:
    """The output options of a command's ``args``, checked before any work; ``output`` as in ``output_format``."""
    from latenthdr import panorama, photometry

    fmt = output_format(output, args.format)
    if args.half and fmt != "exr":
        raise InputError("--half", "applies to EXR output; Radiance .hdr stores shared-exponent RGBE (about 1% "
                                   "precision) and has no half option")
    if args.layout is not None and args.layout not in panorama.LAYOUTS:
        raise InputError("--layout", f"got {args.layout!r}; accepted: {', '.join(panorama.LAYOUTS)}")
    azimuth = None
    if args.azimuth is not None:
        try:
            azimuth = float(args.azimuth)
        except ValueError:
            azimuth = float("nan")
        if not abs(azimuth) <= panorama.MAX_AZIMUTH_DEG:
            raise InputError("--azimuth", f"got {args.azimuth!r}; accepted: degrees from "
                                          f"-{panorama.MAX_AZIMUTH_DEG:g} to {panorama.MAX_AZIMUTH_DEG:g}")
    scales = [(flag, value) for flag, value in zip(SCALE_FLAGS, (args.white_nits, args.scale, args.illuminance))
              if value is not None]
    if len(scales) > 1:
        raise InputError(scales[1][0], f"cannot be combined with {scales[0][0]}; give one absolute scale (or none: "
                                       "relative, the default)")
    flag, value = scales[0] if scales else (None, None)
    scale = {None: lambda v, a: photometry.relative(), "--white-nits": photometry.white_nits,
             "--scale": photometry.anchor, "--illuminance": photometry.illuminance}[flag](value, flag)
    given = tuple(f for f, v in zip(LAYOUT_FLAGS + ("--illuminance",), (args.layout, args.azimuth, args.illuminance))
                  if v is not None)
    return OutputOptions(fmt, bool(args.half), args.layout, azimuth, scale, given)


def refuse_panorama_options(options: OutputOptions, what: str) -> None:
    """InputError naming the first panorama-only flag given, for an output that is a perspective picture."""
    if options.given:
        verb = "applies" if len(options.given) == 1 else "apply"
        raise InputError(options.given[0], f"{what} is a perspective picture; {', '.join(options.given)} {verb} to "
                                           "2:1 panoramas only")


def shipped_weights(kind: str, space: str) -> dict | None:
    """{"file", "sha256"} of the shipped weight file of ``kind`` ("codec", "prior") for latent space ``space``, from
    weights/manifest.json (the loader refuses a file whose bytes differ from it), or None if none is shipped."""
    from latenthdr.models import registry

    for name, entry in registry.manifest().items():
        if entry["kind"] == kind and entry["space"] == space:
            return {"file": name, "sha256": entry["sha256"]}
    return None


def add_device(parser) -> None:
    """--device of the inference commands (generate, convert)."""
    parser.add_argument("--device", default="cpu",
                        help="where the models run: cpu (default), cuda, cuda:N, mps; under accelerate launch, cuda is "
                             "each process's own GPU (docs/scale-out.md)")


def check_device(device: str) -> None:
    """InputError naming --device unless ``device`` names a device of this machine ("cpu" needs no torch)."""
    if device == "cpu":
        return
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise InputError("--device", f"cannot read {device!r}; accepted: cpu, cuda, cuda:N, mps") from None
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()}
    if not available.get(parsed.type, False):
        raise InputError("--device", f"{device}: no such device on this machine")
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise InputError("--device", f"{device}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                                     f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")


def add_overwrite(parser) -> None:
    parser.add_argument("--overwrite", action="store_true", help="replace outputs that already exist")


def print_json(obj) -> None:
    """Print a JSON report on stdout (the CLI's machine-readable output)."""
    from latenthdr.io import json_default

    if sys.stdout is None:  # stdout closed (`>&-`): the files are the result
        return
    json.dump(obj, sys.stdout, indent=2, default=json_default)
    sys.stdout.write("\n")


def parse_times(spec: str, argument: str = "--times") -> list[float]:
    """Exposure times in seconds: ``1/8,1,8`` or ``0.125,1,8``; each > 0."""
    try:
        times = [float(Fraction(part.strip())) for part in spec.split(",") if part.strip()]
    except (ValueError, ZeroDivisionError):
        raise InputError(argument, f"cannot parse {spec!r}; accepted: seconds such as 1/8,1,8 or 0.125,1,8") from None
    if not times or any(t <= 0 for t in times):
        raise InputError(argument, f"every exposure time must be > 0 seconds, got {spec!r}")
    return times




MAX_SEED = 2**64 - 1  # torch.Generator.manual_seed's range


def check_int(flag: str, value, low: int, high: int | None = None) -> None:
    """InputError naming ``flag`` unless ``value`` is None or an integer in [low, high]."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        accepted = f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"
        raise InputError(flag, f"got {value!r}; accepted: {accepted}")


def max_threads() -> int:
    """The most CPU threads a command accepts: the cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def add_max_memory(parser) -> None:
    parser.add_argument("--max-memory", type=float, metavar="GB",
                        help="refuse a job whose estimated peak memory exceeds this (default: the memory available "
                             "now; 0: do not check)")


def available_memory() -> int | None:
    """Bytes this process may still use: the system's available memory, or less under a cgroup limit."""
    available = None
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        available = int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read())
        if limit != "max":
            left = int(limit) - used
            available = left if available is None else min(available, left)
    except (OSError, ValueError):
        pass
    return available


def check_max_memory(max_memory: float | None) -> None:
    """InputError unless --max-memory is absent or a finite number of GB >= 0."""
    if max_memory is not None and not (max_memory >= 0 and max_memory < float("inf")):
        raise InputError("--max-memory", f"got {max_memory!r}; accepted: a number of GB >= 0 (0: do not check)")


def check_memory(estimate: int | None, max_memory: float | None, what: str, advice: str) -> None:
    """InputError naming --max-memory when ``estimate`` (bytes) exceeds it (GB) or, by default, the memory
    available now; ``what`` describes the job and ``advice`` what to change."""
    check_max_memory(max_memory)
    if estimate is None or max_memory == 0:
        return
    limit = available_memory() if max_memory is None else max_memory * 1e9
    if limit is not None and estimate > limit:
        source = "the memory available now" if max_memory is None else "--max-memory"
        raise InputError("--max-memory", f"{what} needs about {estimate / 1e9:.1f} GB at its peak, more than "
                                         f"{source} ({limit / 1e9:.1f} GB); {advice}, or give --max-memory 0 to run "
                                         f"it anyway")
