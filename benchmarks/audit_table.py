"""The bad-input audit as a table: runs every case of tests/test_audit.py and writes what the user sees.

    .venv/bin/python benchmarks/audit_table.py --markdown docs/results/bad-input-audit.md

Each row: the command, the case, the exit code, the one line on stderr (the workspace folder written as W), and
whether the workspace was left exactly as it was.
"""

from __future__ import annotations

import argparse
import contextlib
import io as text_io
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_audit import CASES, build_workspace, expand, snapshot  # noqa: E402

from latenthdr import io  # noqa: E402
from latenthdr.cli import main  # noqa: E402


def main_() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", required=True)
    args = parser.parse_args()
    rows, bad = [], 0
    with tempfile.TemporaryDirectory(prefix="latenthdr-audit-") as tmp:
        w = Path(tmp)
        build_workspace(w)
        for case in CASES:
            before = snapshot(w)
            err = text_io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(text_io.StringIO()):
                code = main(expand(case, w))
            lines = err.getvalue().strip().splitlines()
            unchanged = snapshot(w) == before
            ok = code != 0 and len(lines) == 1 and case.names in lines[0] and unchanged
            bad += not ok
            message = (lines[0] if len(lines) == 1 else " / ".join(lines)).replace(str(w), "W")
            message = message.split(": error: ", 1)[-1]
            if len(message) > 220:
                message = message[:217] + "..."
            rows.append(f"| {case.command} | {case.what} | {code} | {message.replace('|', '/')} | "
                        f"{'yes' if unchanged else 'NO'} |")
    header = ["| command | case | exit | the line on stderr (after `latenthdr CMD: error:`) | workspace unchanged |",
              "|---|---|---|---|---|"]
    text = "\n".join(header + rows) + "\n"
    with io.atomic_output(args.markdown, overwrite=True) as temp:
        temp.write_text(text, encoding="utf-8")
    print(f"{len(CASES)} cases, {bad} not handled well; table in {args.markdown}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main_())
