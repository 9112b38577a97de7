"""Output sets under kill -9 and SIGTERM: `convert`, `generate --prompts` and `bracket` signalled at random moments.

    .venv/bin/python benchmarks/interrupts.py --moments 10 --json docs/results/interrupts.json

For each command a reference run first writes the new set (and, for convert and bracket, an old set that the
interrupted runs replace with --overwrite). Then, at ``--moments`` random moments of a run (uniform over 5-120% of
the reference run's wall time, seeded), the command is started again and sent SIGKILL, and again SIGTERM. After
each signal the outputs are classified: "old" (every file of the old set, byte for byte), "new" (every file of the
new set, byte for byte; JSON sidecars compared without their timings), or "mixed" (anything else: a failure). For
generate, every item must be either complete and new or absent. Leftover temporaries (killed writers' files) are
counted; the same command is then run again (generate with --skip-existing) and must finish the job, leaving no
temporary behind. Exits non-zero if any case failed.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from latenthdr import io

CLI = [sys.executable, "-m", "latenthdr"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moments", type=int, default=10, help="random moments per command and signal")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--commands", default="convert,bracket,generate", help="which of them (default: all three)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="latenthdr-interrupts-") as tmp:
        work = Path(tmp)
        inputs = make_inputs(work)
        chosen = args.commands.split(",")
        results = {name: run_cases(scenario, work / name, rng, args.moments)
                   for name, scenario in scenarios(inputs).items() if name in chosen}
    failed = sum(r["failed"] for r in results.values())
    report = {"moments": args.moments, "seed": args.seed, "commands": results, "failed": failed}
    if args.json:
        io.write_json(args.json, report, overwrite=True)
    print(markdown(results))
    return 1 if failed else 0


def make_inputs(work: Path) -> dict[str, Path]:
    """A 256x128 procedural panorama (EXR), its 8-bit exposure with 3% clipped (PNG) and a prompt file."""
    from latenthdr import scenes
    from latenthdr.bench import l2h

    case = l2h.make_case("sky", scenes.sky_panorama(128, 256), clip_fraction=0.03)
    exr, png, prompts = work / "pano.exr", work / "photo.png", work / "prompts.txt"
    io.write_exr(exr, io.to_numpy(case.ref), panorama=True)
    io.write_png(png, io.to_numpy(case.ldr))
    prompts.write_text("a red barn at dusk\npanorama | a snowy mountain pass at noon\na lamp in a dark room\n")
    return {"exr": exr, "png": png, "prompts": prompts}


def scenarios(inputs: dict[str, Path]) -> dict[str, dict]:
    """Per command: the old set's arguments (None: no old set), the new set's, and the rerun's extra flags."""
    return {
        "convert": {"old": ["convert", inputs["png"], "-o", "{out}/hdr.exr", "--evs", "-4:4:1"],
                    "new": ["convert", inputs["png"], "-o", "{out}/hdr.exr", "--overwrite"], "rerun": []},
        "bracket": {"old": ["bracket", inputs["exr"], "-o", "{out}/bracket", "--evs", "-7:5:1"],
                    "new": ["bracket", inputs["exr"], "-o", "{out}/bracket", "--evs", "-3:3:1", "--overwrite"],
                    "rerun": []},
        "generate": {"old": None,
                     "new": ["generate", "--prompts", inputs["prompts"], "-o", "{out}/gen", "--width", "128"],
                     "rerun": ["--skip-existing"]},
    }


def command(spec: list, out: Path) -> list[str]:
    return CLI + [str(a).replace("{out}", str(out)) for a in spec]


def snapshot(folder: Path) -> dict[str, object]:
    """Every file under ``folder`` (temporaries apart): bytes, or for JSON the parsed object without its timings
    and with ``folder`` written as {out}."""
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not io.is_temporary(p.name)):
        key = str(path.relative_to(folder))
        if path.suffix == ".json":
            try:
                data = json.loads(path.read_text().replace(str(folder), "{out}"))
            except ValueError:
                data = {"unreadable": path.read_bytes().hex()}
            if isinstance(data, dict):
                data.pop("timings_s", None)
            files[key] = data
        else:
            files[key] = path.read_bytes()
    return files


def temporaries(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if io.is_temporary(p.name))


def classify(now: dict, old: dict | None, new: dict, per_item: bool) -> str:
    if now == new:
        return "new"
    if old is not None and now == old:
        return "old"
    if per_item and all(new.get(k) == v for k, v in now.items()):  # generate: only complete items, all new
        stems = {k.split(".", 1)[0] for k in now}
        if all(sum(1 for n in new if n.split(".", 1)[0] == s) == sum(1 for n in now if n.split(".", 1)[0] == s)
               for s in stems):
            return "partial batch, complete items"
    return "mixed"


def run_cases(scenario: dict, base: Path, rng: random.Random, moments: int) -> dict:
    base.mkdir()
    reference = base / "reference"
    reference.mkdir()
    started = time.perf_counter()
    run(command(scenario["new"], reference))
    seconds = time.perf_counter() - started
    new = snapshot(reference)
    old = None
    if scenario["old"] is not None:
        prepared = base / "old"
        prepared.mkdir()
        run(command(scenario["old"], prepared))
        old = snapshot(prepared)
    cases = []
    for i in range(moments):
        at = rng.uniform(0.05, 1.2) * seconds
        for sig in (signal.SIGKILL, signal.SIGTERM):
            out = base / f"case-{i}-{sig.name}"
            shutil.copytree(base / "old", out) if old is not None else out.mkdir()
            before = snapshot(out)  # the old set as it is here (its sidecar names this folder's files)
            process = subprocess.Popen(command(scenario["new"], out), stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE)
            time.sleep(at)
            finished = process.poll() is not None
            process.send_signal(sig)
            _, stderr = process.communicate()
            state = classify(snapshot(out), before if old is not None else None, new, scenario["old"] is None)
            left = temporaries(out)
            rerun = subprocess.run(command(scenario["new"] + scenario["rerun"], out), capture_output=True)
            done = rerun.returncode == 0 and snapshot(out) == new and temporaries(out) == 0
            ok = state != "mixed" and done and (sig == signal.SIGKILL or left == 0)
            cases.append({"moment_s": round(at, 3), "signal": sig.name, "finished_before": finished,
                          "exit_code": process.returncode, "stderr": stderr.decode(errors="replace").strip()[-200:],
                          "state": state, "temporaries_left": left, "rerun_finished": done, "ok": ok})
            shutil.rmtree(out)
    return {"reference_s": round(seconds, 2), "cases": cases, "failed": sum(not c["ok"] for c in cases)}


def run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed: {result.stderr.strip()}")


def markdown(results: dict) -> str:
    lines = ["| command | signal | cases | old set | new set | partial batch | mixed | temporaries left | rerun finished |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, result in results.items():
        for sig in ("SIGKILL", "SIGTERM"):
            cases = [c for c in result["cases"] if c["signal"] == sig]
            count = lambda state: sum(c["state"] == state for c in cases)  # noqa: E731
            lines.append(f"| {name} | {sig} | {len(cases)} | {count('old')} | {count('new')} | "
                         f"{count('partial batch, complete items')} | {count('mixed')} | "
                         f"{sum(c['temporaries_left'] for c in cases)} | "
                         f"{sum(c['rerun_finished'] for c in cases)}/{len(cases)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
