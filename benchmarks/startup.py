"""Whole-process time of `latenthdr generate` on the embedded default, with its breakdown, and the multi-pass ratio.

    .venv/bin/python benchmarks/startup.py --repeats 5 --json docs/results/startup.json

1. ``--repeats`` runs of ``python -m latenthdr generate PROMPT -o OUT.exr --panorama --overwrite`` (one 512x256
   panorama, every other setting the default), each a fresh process timed from launch to exit; the median run is
   reported with its breakdown: the stages the sidecar records (``timings_s``: load_models, text_encoding,
   diffusion, head, decode, merge, write), the rest of the item (metrics, previews' tone mapping), and
   "startup" = whole process - load_models - the item, which is interpreter start, imports, argument and output
   checks and exit. Beside it, medians of a bare interpreter (``python -c pass``) and of the imports alone
   (``python -c "import latenthdr.cli, latenthdr.pipeline"``), each in a fresh process.
2. One run each of single-pass and ``--multipass`` (one EV-conditioned diffusion run per EV), for the prompt and
   for a batch of 6 panorama prompts of benchmarks/prompts.txt (``--prompts FILE``), whole process, with each
   process's peak resident memory (ru_maxrss); the ratios
   multi-pass / single-pass are DESIGN.md's speed measure (ratios within one run on one machine).
The load average before and after goes into the JSON: on a shared machine, a run under load says little.
``--max-load L`` waits (up to ``--wait-s``) for the 1-minute load average to fall under L first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROMPT = "a low sun over a calm sea at dusk"
STAGES = ("load_models", "text_encoding", "diffusion", "head", "decode", "merge", "write")
BATCH_SIZE = 6


def run_process(args: list[str]) -> float:
    """Seconds from launch to exit of ``python ARGS`` (which must succeed)."""
    return run_measured(args)[0]


def run_measured(args: list[str]) -> tuple[float, float]:
    """Seconds from launch to exit of ``python ARGS`` (which must succeed) and the process's peak resident memory
    in GB (its ru_maxrss, from os.wait4)."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)
    stderr = process.stderr.read()  # until the child closes it (exit): a full pipe would block it
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(args)} failed ({code}): {stderr.decode(errors='replace')[-2000:]}")
    return seconds, usage.ru_maxrss * 1024 / 1e9


def generate(out: Path, *extra: str, prompt: str | None = PROMPT) -> float:
    return generate_measured(out, *extra, prompt=prompt)[0]


def generate_measured(out: Path, *extra: str, prompt: str | None = PROMPT) -> tuple[float, float]:
    """Whole-process seconds and peak memory (GB) of one ``latenthdr generate``."""
    return run_measured(["-m", "latenthdr", "generate", *([prompt] if prompt else []), "-o", str(out),
                         "--panorama", "--overwrite", *extra])


def breakdown(wall_s: float, sidecar: Path) -> dict:
    """The whole-process seconds of one run split into start-up, model loading, the stages and the rest."""
    t = json.loads(sidecar.read_text())["timings_s"]
    stages = {k: t.get(k, 0.0) for k in STAGES}
    item = t["total"]  # the item: generate, metrics, previews and write (not load_models)
    parts = {"startup": wall_s - stages["load_models"] - item, **stages,
             "item_other": item - sum(v for k, v in stages.items() if k != "load_models")}
    return {"whole_process_s": wall_s, "parts_s": parts}


def batch_prompts(path: Path) -> list[str]:
    """The first BATCH_SIZE panorama prompts of benchmarks/prompts.txt."""
    lines = (REPO / "benchmarks" / "prompts.txt").read_text(encoding="utf-8").splitlines()
    chosen = [line for line in lines if line.strip().lower().startswith("panorama |")][:BATCH_SIZE]
    path.write_text("\n".join(chosen) + "\n", encoding="utf-8")
    return [line.split("|", 1)[1].strip() for line in chosen]


def wait_quiet(max_load: float | None, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while max_load is not None and os.getloadavg()[0] > max_load and time.monotonic() < deadline:
        time.sleep(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5,
                        help="single-prompt runs for the median (default 5; 0: only the ratios)")
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    parser.add_argument("--max-load", type=float, help="first wait for the 1-minute load average to fall under this")
    parser.add_argument("--wait-s", type=float, default=600, help="the longest wait for --max-load (seconds)")
    parser.add_argument("--skip-ratios", action="store_true", help="only the single-prompt runs")
    parser.add_argument("--skip-batch", action="store_true", help="the ratios of the single prompt only")
    args = parser.parse_args()
    wait_quiet(args.max_load, args.wait_s)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="latenthdr-startup-") as tmp:
        tmp = Path(tmp)
        result = {"command": f"python -m latenthdr generate {args.prompt!r} -o OUT.exr --panorama --overwrite",
                  "repeats": args.repeats}
        if args.repeats:
            result.update(timed_runs(tmp, args.prompt, args.repeats))
        if not args.skip_ratios:
            result["ratios"] = ratios(tmp, args.prompt, batch=not args.skip_batch)
    result["machine"] = {"load_average_before": load_before, "load_average_after": os.getloadavg(),
                         "load_note": "1/5/15-minute load averages; 'after' includes this benchmark's own runs",
                         "cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                         "date": time.strftime("%Y-%m-%d %H:%M:%S"), "git_commit": _git_commit()}
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n", encoding="utf-8")


def timed_runs(tmp: Path, prompt: str, repeats: int) -> dict:
    """Part 1: the median of ``repeats`` whole-process runs with its breakdown, and the interpreter and imports."""
    runs = []
    for i in range(repeats):
        out = tmp / f"run{i}.exr"
        runs.append(breakdown(generate(out, prompt=prompt), out.with_suffix(".json")))
    runs.sort(key=lambda r: r["whole_process_s"])
    return {"median": runs[len(runs) // 2],
            "whole_process_s_all": [r["whole_process_s"] for r in runs],
            "bare_interpreter_s": statistics.median(run_process(["-c", "pass"]) for _ in range(repeats)),
            "imports_s": statistics.median(run_process(["-c", "import latenthdr.cli, latenthdr.pipeline"])
                                           for _ in range(repeats))}


def ratios(tmp: Path, prompt: str, batch: bool = True) -> dict:
    """Single-pass and multi-pass whole-process seconds and peak memory, one run each, for one prompt and (with
    ``batch``) a 6-prompt batch."""
    single, single_gb = generate_measured(tmp / "single.exr", prompt=prompt)
    multi, multi_gb = generate_measured(tmp / "multi.exr", "--multipass", prompt=prompt)
    one = {"single_s": single, "multipass_s": multi, "multipass_over_single": multi / single,
           "single_peak_gb": single_gb, "multipass_peak_gb": multi_gb}
    if not batch:
        return {"one_prompt": one}
    prompts = batch_prompts(tmp / "prompts.txt")
    batch_single, batch_single_gb = generate_measured(tmp / "batch-single", "--prompts", str(tmp / "prompts.txt"),
                                                      prompt=None)
    batch_multi, batch_multi_gb = generate_measured(tmp / "batch-multi", "--prompts", str(tmp / "prompts.txt"),
                                                    "--multipass", prompt=None)
    return {"one_prompt": one,
            "batch": {"prompts": prompts, "single_s": batch_single, "multipass_s": batch_multi,
                      "multipass_over_single": batch_multi / batch_single,
                      "single_peak_gb": batch_single_gb, "multipass_peak_gb": batch_multi_gb}}


def _git_commit() -> str | None:
    """HEAD, with " + uncommitted changes" when the working tree differs from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=REPO).stdout.strip()
    except OSError:
        return None
    return head + (" + uncommitted changes" if dirty else "")


if __name__ == "__main__":
    main()
