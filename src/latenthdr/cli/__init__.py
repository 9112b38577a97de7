"""The `latenthdr` command line: a thin edge that parses, validates, calls the library and reports.

Every command lives in a submodule with a ``register(subparsers)`` function. Errors the library raises on
purpose (``LatentHDRError``) become one line on stderr and exit code 2; nothing else prints tracebacks
unless it is a bug.
"""

from __future__ import annotations

import argparse
import sys

from latenthdr import __version__
from latenthdr.errors import LatentHDRError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    from latenthdr.cli import radiometry

    parser = argparse.ArgumentParser(
        prog="latenthdr",
        description="Linear HDR images and HDR panoramas with LatentHDR (one latent -> dense bracket -> merge).",
    )
    parser.add_argument("--version", action="version", version=f"latenthdr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (radiometry,) + _model_command_modules():
        module.register(sub)
    return parser


def _model_command_modules() -> tuple:
    """Commands that need the model stack; each module imports torch models lazily inside its handlers."""
    import importlib

    modules = []
    for name in ("demo", "convert", "train", "bench", "generate"):
        try:
            modules.append(importlib.import_module(f"latenthdr.cli.{name}"))
        except ModuleNotFoundError as err:  # a command module not built yet, never a missing dependency
            if err.name != f"latenthdr.cli.{name}":
                raise
    return tuple(modules)


# Options whose values may start with "-" (an EV ladder such as -7:5:1); argparse would take them for flags.
NEGATIVE_VALUE_OPTIONS = ("--evs", "--ev", "--exposure")


def attach_negative_values(argv: list[str]) -> list[str]:
    """Rewrite ``--evs -7:5:1`` as ``--evs=-7:5:1`` so the documented form parses."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in NEGATIVE_VALUE_OPTIONS and i + 1 < len(argv) and argv[i + 1].startswith("-"):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(attach_negative_values(list(sys.argv[1:] if argv is None else argv)))
    try:
        return int(args.handler(args) or 0)
    except LatentHDRError as err:
        print(f"latenthdr {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # the reader of our stdout went away (e.g. `| head`): not an error of ours
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"latenthdr {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
