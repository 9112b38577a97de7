"""Small helpers shared by the command modules: option parsing that names the flag, JSON reporting."""

from __future__ import annotations

import json
import os
import sys
from fractions import Fraction

from latenthdr.errors import InputError


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
