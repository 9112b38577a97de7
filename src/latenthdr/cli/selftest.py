"""``latenthdr selftest``: does this install reproduce ours? The shipped weights, `convert` and `generate` on fixed
inputs against the values recorded with these weights (``bench.selftest``); pass/fail per stage."""

from __future__ import annotations

import sys

from latenthdr.cli._common import print_json


def register(sub) -> None:
    p = sub.add_parser("selftest", help="check that this install reproduces the recorded results (weights, convert, "
                                        "generate); exit 1 if a stage fails",
                       description="Runs the shipped weights on fixed inputs (a procedural panorama for convert, a "
                                   "prompt and seed for generate) and compares their statistics with the values "
                                   "recorded when the weights were shipped.")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of one line per stage")
    p.set_defaults(handler=run_selftest)


def run_selftest(args) -> int:
    from latenthdr.bench import selftest
    from latenthdr.errors import LatentHDRError

    record = selftest.read_record()
    report = {}
    for name, measure in selftest.STAGES.items():
        try:
            measured = measure()
            problems = selftest.compare(measured, record.get(name, {}))
        except (LatentHDRError, ImportError) as error:
            measured, problems = None, [str(error)]
        report[name] = {"passed": not problems, "problems": problems, "measured": measured}
        if not args.json:
            status = "pass" if not problems else "FAIL: " + "; ".join(problems[:3])
            print(f"{name:9s} {status}", flush=True)
    if args.json:
        print_json(report)
    failed = [name for name, stage in report.items() if not stage["passed"]]
    if failed:
        print(f"latenthdr selftest: {len(failed)} of {len(report)} stages failed ({', '.join(failed)}); "
              "reinstall latenthdr, or report the output above", file=sys.stderr)
        return 1
    return 0
