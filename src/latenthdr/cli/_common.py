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
