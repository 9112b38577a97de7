"""Small helpers shared by the command modules: option parsing that names the flag, JSON reporting."""

from __future__ import annotations

import json
import sys
from fractions import Fraction

from latenthdr.errors import InputError


def add_overwrite(parser) -> None:
    parser.add_argument("--overwrite", action="store_true", help="replace outputs that already exist")


def print_json(obj) -> None:
    """Print a JSON report on stdout (the CLI's machine-readable output)."""
    from latenthdr.io import json_default

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


