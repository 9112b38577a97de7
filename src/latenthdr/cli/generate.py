"""``latenthdr generate``: text-to-HDR (one diffusion run per image; ``--multipass``: one per EV, the baseline).

One prompt: ``-o OUT.exr`` (or OUT.hdr) gets OUT.exr, OUT.json (sidecar: prompt, seed, models, timings, metrics),
OUT.preview.png and OUT.bracket.png. A prompt file (``--prompts``): ``-o`` is a folder and item i (its position
in the file, 0-based) is written as ``NNNN-slug.exr`` (``.hdr`` with --format hdr; + companions); its seed is the
item's own or one derived from ``--seed`` and i, so a shard (``--shard i/n``: the items with index mod n == i), a
rerun with ``--skip-existing`` or a run under ``accelerate launch`` (the items to make shared between its
processes, ``latenthdr.distributed``; docs/scale-out.md) produces exactly the files a single full run would.
Output options (format, panorama layout, absolute scale): ``cli._common.add_output_options``, applied by
``cli.convert.write_output_set``.
Prompt files: JSON (a list of strings or of {"prompt", "seed"?, "panorama"?}) or text, one prompt per line
(blank lines and lines starting with # skipped), optionally prefixed "panorama | " or "perspective | ".
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from latenthdr.cli._common import (FORMATS, MAX_SEED, OutputOptions, add_device, add_output_options, add_overwrite,
                                   check_device, check_int, max_threads, output_options_of, print_json,
                                   refuse_panorama_options, shipped_weights)
from latenthdr.errors import InputError

KIND_PREFIXES = {"panorama": True, "perspective": False}
BACKBONE_WIDTH = 1024  # default width with --backbone (the embedded prior's defaults are 512x256 / 384x288)
MIN_SIDE, MAX_SIDE = 32, 4096  # pixels; the scene source also needs a multiple of its size step
MAX_STEPS = 1000
MAX_GUIDANCE = 100.0
MAX_PROMPT_CHARS = 2000


def register(sub) -> None:
    p = sub.add_parser("generate", help="text -> linear HDR EXR (one diffusion run, dense bracket, merge)",
                       description="Text to HDR with LatentHDR: the scene source (the embedded prior by default, "
                                   "offline; or --backbone) makes one scene latent, the exposure head the whole "
                                   "bracket, the merge the HDR.")
    p.add_argument("prompt", nargs="?", help="the prompt (or --prompts FILE)")
    p.add_argument("--prompts", metavar="FILE", help="prompt file: JSON list or one prompt per line")
    p.add_argument("-o", "--output", required=True, metavar="OUT.exr|OUT.hdr|DIR",
                   help="output HDR, .exr or .hdr (a folder with --prompts)")
    p.add_argument("--panorama", action="store_true", help="2:1 equirectangular panorama, seamless at +-180 degrees")
    p.add_argument("--seed", type=int, default=0, help="seed (with --prompts: the global seed items derive from)")
    p.add_argument("--evs", default="-7:5:1", help="EV ladder (default -7:5:1)")
    p.add_argument("--steps", type=int, help="denoising steps (default: the scene source's)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: the source's)")
    p.add_argument("--width", type=int, help="width, pixels (default 512 panoramas, 384 perspective; 1024 with "
                                             "--backbone)")
    p.add_argument("--height", type=int, help="height, pixels (default width/2 panoramas, 3/4 width perspective)")
    p.add_argument("--multipass", action="store_true", help="baseline: one EV-conditioned diffusion run per EV")
    p.add_argument("--backbone", help="a diffusers backbone (flux1-dev, flux1-schnell, flux1-dit360, flux2, sd3, "
                                      "sdxl) or pipeline folder, instead of the embedded prior")
    p.add_argument("--prior", metavar="FILE", help="prior .safetensors (default: the one shipped for the codec)")
    p.add_argument("--codec", help="latent codec of the prior: embedded (default when shipped), taef2, ...")
    p.add_argument("--head", help="exposure head .safetensors (default: the head shipped for the latent space)")
    p.add_argument("--scheduler", default="dpmsolver", choices=("dpmsolver", "ddim", "euler"),
                   help="sampler of the embedded prior (default dpmsolver: DPM-Solver++ 2M)")
    p.add_argument("--shard", metavar="i/n", help="with --prompts: only items whose index mod n is i")
    p.add_argument("--skip-existing", action="store_true", help="skip items whose EXR and JSON already exist")
    p.add_argument("--half", action="store_true", help="write half floats (refused if values overflow)")
    add_output_options(p)
    p.add_argument("--no-previews", action="store_true", help="write only the HDR and the JSON sidecar")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    add_device(p)
    p.add_argument("--dry-run", action="store_true", help="print the items and their outputs, generate nothing")
    add_overwrite(p)
    p.set_defaults(handler=run_generate)


@dataclass(frozen=True)
class Item:
    """One image to make: its index in the prompt list, prompt, seed and kind, and its HDR's path (.exr or .hdr)."""

    index: int
    prompt: str
    seed: int
    panorama: bool
    path: Path


def run_generate(args) -> int:
    """Plan and check every item on every process, load the models, wait for the other processes, make this
    process's share of the items (all of them in a plain run), report once (the main process)."""
    from latenthdr import distributed, exposure

    evs = exposure.parse_ev_ladder(args.evs, "--evs", require_zero=True)
    _check_options(args)
    output_options = output_options_of(args, None if args.prompts is not None else args.output)
    items = plan_items(args, output_options.format)
    _check_kinds(items, output_options, args)
    processes = distributed.processes(cpu=args.device == "cpu")
    todo = _outputs_to_write(items, args)
    mine = processes.split(todo)
    if args.dry_run:
        owners = dict(processes.gather([(i.index, processes.index) for i in mine]))
        where = (lambda i: {"process": owners.get(i.index)}) if processes.count > 1 else (lambda i: {})
        if processes.is_main:
            print_json({"evs": list(evs), "items": [_describe(i) | {"skip": i not in todo} | where(i) for i in items],
                        "dry_run": True})
        return 0
    import torch

    from latenthdr.pipeline import LatentHDRPipeline

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    scene = args.backbone or args.prior or "embedded"
    options = {} if args.backbone else {"scheduler": args.scheduler}
    pipe = LatentHDRPipeline.from_pretrained(codec=args.codec, head=args.head, device=processes.device(args.device),
                                             scene=scene, scene_options=options)
    load_s = time.perf_counter() - t0
    models = _models(pipe, args, scene)
    check_sizes(pipe, todo, args)
    processes.wait()  # every process has checked every output before any process writes one
    reports = [make_one(pipe, item, evs, args, output_options, models, load_s) for item in mine]
    written = processes.gather([r["output"][r["format"]] for r in reports])
    if not processes.is_main:
        return 0
    summary = {"written": written, "skipped": [str(i.path) for i in items if i not in todo], "load_models_s": load_s}
    if processes.count > 1:
        summary["processes"] = processes.count
    print_json(reports[0] if len(items) == 1 and reports and not args.prompts else summary)
    return 0


def _check_options(args) -> None:
    if (args.prompt is None) == (args.prompts is None):
        raise InputError("prompt", "give one prompt or --prompts FILE (not both)")
    if args.shard is not None and args.prompts is None:
        raise InputError("--shard", "sharding needs a prompt list (--prompts FILE)")
    if args.backbone and args.multipass:
        raise InputError("--multipass", "the multi-pass baseline needs the EV-conditioned embedded prior")
    if args.backbone and args.prior:
        raise InputError("--prior", "--prior is the embedded scene source; drop it with --backbone")
    check_int("--steps", args.steps, 1, MAX_STEPS)
    for flag, value in (("--width", args.width), ("--height", args.height)):
        if value is not None and not (isinstance(value, int) and MIN_SIDE <= value <= MAX_SIDE):
            raise InputError(flag, f"got {value!r}; accepted: an integer from {MIN_SIDE} to {MAX_SIDE} pixels (a "
                                   "multiple of the scene source's step: 32 for the embedded prior)")
    check_int("--threads", args.threads, 1, max_threads())
    check_int("--seed", args.seed, 0, MAX_SEED)
    if args.guidance is not None and not (0 <= args.guidance <= MAX_GUIDANCE):
        raise InputError("--guidance", f"got {args.guidance!r}; accepted: a number from 0 to {MAX_GUIDANCE:g}")
    check_device(args.device)


def plan_items(args, fmt: str = "exr") -> list[Item]:
    """The items of this invocation (after --shard), with their seeds and HDR paths (``fmt``: "exr" or "hdr"; a
    single prompt's -o was checked against it by ``output_options_of``)."""
    if args.prompts is None:
        if not args.prompt.strip():
            raise InputError("prompt", "the prompt is empty")
        return _checked([Item(0, " ".join(args.prompt.split()), args.seed, args.panorama, Path(args.output))], args)
    shard, count = parse_shard(args.shard)
    entries = read_prompts(args.prompts)
    folder = Path(args.output)
    if folder.suffix.lower() in FORMATS.values() or folder.is_file():
        raise InputError("--output", f"{folder}: with --prompts, -o is a folder")
    items = []
    for index, entry in enumerate(entries):
        if index % count != shard:
            continue
        seed = entry.get("seed", item_seed(args.seed, index))
        panorama = entry.get("panorama", args.panorama)
        name = f"{index:04d}-{slug(entry['prompt'])}{FORMATS[fmt]}"
        items.append(Item(index, entry["prompt"], seed, panorama, folder / name))
    return _checked(items, args)


def _check_kinds(items: list[Item], options: OutputOptions, args) -> None:
    """InputError before any work when --layout, --azimuth or --illuminance is given for a perspective item."""
    for item in items:
        if not item.panorama:
            what = "the output (no --panorama)" if args.prompts is None else f"--prompts item {item.index}"
            refuse_panorama_options(options, what)


def _checked(items: list[Item], args) -> list[Item]:
    """``items``, or InputError for a prompt too long or a seed out of range."""
    for item in items:
        if len(item.prompt) > MAX_PROMPT_CHARS:
            where = "prompt" if args.prompts is None else f"--prompts (item {item.index})"
            raise InputError(where, f"{len(item.prompt)} characters; accepted: at most {MAX_PROMPT_CHARS} (the text "
                                    f"encoder reads only the first few hundred tokens)")
        check_int("--seed" if args.prompts is None else f"--prompts (item {item.index}) seed", item.seed, 0, MAX_SEED)
    return items


def check_sizes(pipe, items: list[Item], args) -> None:
    """Each item's pixel size (given, or derived from the other side) against the scene source's size step, before
    any diffusion run; the error names the flag the user gave."""
    from latenthdr.pipeline import output_size

    step = getattr(pipe.scene_source, "size_multiple", lambda panorama: 1)
    for panorama in sorted({i.panorama for i in items}):
        width = args.width or (BACKBONE_WIDTH if args.backbone and args.height is None else None)
        sizes = dict(zip(("height", "width"), output_size(args.height, width, panorama)))
        m = step(panorama)
        accepted = f"accepted: a multiple of {m} from {max(MIN_SIDE, m)} to {MAX_SIDE} pixels for this scene source"
        given = [side for side in ("width", "height") if getattr(args, side) is not None]
        for side in given + [side for side in ("width", "height") if side not in given]:
            value = sizes[side]
            if value % m == 0 and MIN_SIDE <= value <= MAX_SIDE:
                continue
            if side in given:
                raise InputError(f"--{side}", f"got {value}; {accepted}")
            other = given[0] if given else None
            shape = "2:1 for a panorama" if panorama else "4:3 for a picture"
            flag = f"--{other}" if other else "--width"
            raise InputError(flag, f"{sizes[other] if other else ''} gives a {side} of {value} px ({shape}); "
                                   f"{accepted}; give --{side} too")


def read_prompts(path: str) -> list[dict]:
    """Prompt entries {"prompt", "seed"?, "panorama"?} from a JSON or text file (module docstring)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8") if p.is_file() else None
    except OSError as error:  # unreadable, or a name too long for the file system
        raise InputError("--prompts", f"{p}: cannot be read ({error.strerror})") from None
    except UnicodeDecodeError as error:
        raise InputError("--prompts", f"{p}: not UTF-8 (byte {error.start}); accepted: a UTF-8 JSON or text "
                                      "file") from None
    if text is None:
        raise InputError("--prompts", f"{p}: no such file")
    if p.suffix.lower() == ".json":
        try:
            raw = json.loads(text)
        except (ValueError, RecursionError) as error:  # also integers of > 4300 digits, deep nesting
            raise InputError("--prompts", f"{p}: not valid JSON ({str(error)[:200]}); accepted: a JSON list of "
                                          "prompts or of {\"prompt\", \"seed\"}") from None
        if not isinstance(raw, list):
            raise InputError("--prompts", f"{p}: accepted: a JSON list of prompts or of {{\"prompt\", \"seed\"}}")
        entries = [_json_entry(e, i, p) for i, e in enumerate(raw)]
    else:
        lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        entries = [_text_entry(line) for line in lines]
    if not entries:
        raise InputError("--prompts", f"{p}: no prompts; accepted: a JSON list of at least one prompt, or text with "
                                      "at least one line that is not blank or a # comment")
    return entries


def _json_entry(entry, i: int, path: Path) -> dict:
    if isinstance(entry, str):
        entry = {"prompt": entry}
    ok = isinstance(entry, dict) and isinstance(entry.get("prompt"), str) and entry["prompt"].strip() \
        and set(entry) <= {"prompt", "seed", "panorama"}
    seed = entry.get("seed", 0) if isinstance(entry, dict) else None
    if not ok or isinstance(seed, bool) or not isinstance(seed, int) or seed < 0 \
            or not isinstance(entry.get("panorama", False), bool):
        raise InputError("--prompts", f"{path}: item {i} is {entry!r}; accepted: a string or {{\"prompt\": str, "
                                      "\"seed\": int >= 0, \"panorama\": bool}} (seed and panorama optional)")
    return {**entry, "prompt": " ".join(entry["prompt"].split())}


def _text_entry(line: str) -> dict:
    head, sep, rest = line.partition("|")
    if sep and head.strip().lower() in KIND_PREFIXES and rest.strip():
        return {"prompt": " ".join(rest.split()), "panorama": KIND_PREFIXES[head.strip().lower()]}
    return {"prompt": " ".join(line.split())}


def parse_shard(spec: str | None) -> tuple[int, int]:
    """"i/n" -> (i, n) with 0 <= i < n; None -> (0, 1)."""
    if spec is None:
        return 0, 1
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", spec)
    if not match or not int(match[1]) < int(match[2]):
        raise InputError("--shard", f"got {spec!r}; accepted: i/n with 0 <= i < n, e.g. 0/4")
    return int(match[1]), int(match[2])


def item_seed(global_seed: int, index: int) -> int:
    """The seed of item ``index`` of a prompt list: a 31-bit hash of (global seed, index), independent of
    sharding and of the other items."""
    import numpy as np

    return int(np.random.SeedSequence([int(global_seed), int(index)]).generate_state(1)[0] >> 1)


def slug(prompt: str, length: int = 40) -> str:
    """A file-name-safe short form of a prompt: lower-case words joined by '-'."""
    return "-".join(re.findall(r"[a-z0-9]+", prompt.lower()))[:length].strip("-") or "prompt"


def _paths(item: Item, previews: bool) -> dict[str, Path]:
    from latenthdr.cli.convert import output_paths

    fmt = next(name for name, ext in FORMATS.items() if item.path.suffix.lower() == ext)
    return output_paths(str(item.path), previews, fmt)


def _outputs_to_write(items: list[Item], args) -> list[Item]:
    """Items to generate; OutputExistsError before any work when an output exists and neither
    --overwrite nor --skip-existing is given. With --skip-existing an item is done when its set is complete
    (its sidecar and every file the sidecar names as an output exist); what killed runs left is cleaned first."""
    from latenthdr import io

    if args.prompts is not None and not args.dry_run:
        _make_folder(Path(args.output))
    if items and not args.dry_run:  # a dry run changes nothing, not even what killed runs left
        io.recover_outputs(items[0].path.parent)
    todo = []
    for item in items:
        paths = _paths(item, not args.no_previews)
        if args.skip_existing and _complete(paths):
            continue
        for path in paths.values():
            if not (args.dry_run and not path.parent.exists()):  # a dry run does not create the folder
                io.check_output(path, args.overwrite, "--output")
        todo.append(item)
    return todo


def _make_folder(folder: Path) -> None:
    """Create the --prompts output folder (and its parents), or say in one line why it cannot be."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError("--output", f"{folder}: cannot create the folder ({error.strerror})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError("--output", f"{folder}: the folder is not writable")


def _complete(paths: dict[str, Path]) -> bool:
    """True if the set at ``paths`` was written whole: its sidecar parses and every output it names exists."""
    from latenthdr.cli.convert import image_path

    try:
        named = json.loads(paths["json"].read_text(encoding="utf-8"))["output"]
        return image_path(paths).is_file() and all(Path(p).is_file() for p in named.values())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def _describe(item: Item) -> dict:
    return {"index": item.index, "prompt": item.prompt, "seed": item.seed, "panorama": item.panorama,
            "output": str(item.path)}


def _models(pipe, args, scene: str) -> dict:

    described = pipe.describe(args.head)
    source = pipe.scene_source
    described["scene_source"] = {"kind": "backbone" if args.backbone else "embedded-prior", "spec": scene,
                                 "class": type(source).__name__}
    if not args.backbone:
        from latenthdr.models.registry import sha256_of

        described["scene_source"]["scheduler"] = args.scheduler
        described["scene_source"]["weights"] = ({"file": args.prior, "sha256": sha256_of(Path(args.prior))}
                                                if args.prior else shipped_weights("prior", pipe.codec.space))
        if args.codec in (None, "embedded"):
            described["codec_weights"] = shipped_weights("codec", pipe.codec.space)
    return described


def make_one(pipe, item: Item, evs, args, options: OutputOptions, models: dict, load_s: float) -> dict:
    """Generate one item and write its HDR, previews and sidecar; returns the sidecar."""
    import torch

    from latenthdr import exposure, metrics, tonemap
    from latenthdr.cli.convert import write_output_set

    start = time.perf_counter()
    sampling = {k: v for k, v in (("num_inference_steps", args.steps), ("guidance_scale", args.guidance))
                if v is not None}
    width = args.width or (BACKBONE_WIDTH if args.backbone and args.height is None else None)
    out = pipe.generate(item.prompt, evs=evs, panorama=item.panorama, height=args.height, width=width,
                        generator=torch.Generator().manual_seed(item.seed), multipass=args.multipass, **sampling)
    hdr, y = out.hdr[0], out.brackets[0]
    paths = _paths(item, not args.no_previews)
    report = {"prompt": item.prompt, "seed": item.seed, "index": item.index, "panorama": out.panorama,
              "size": list(hdr.shape[-2:]), "evs": list(evs), "multipass": args.multipass,
              "diffusion_runs": out.diffusion_runs, "models": models,
              "output": {k: str(v) for k, v in paths.items()}, "stops": metrics.stops(hdr),
              "plow": out.plow[0], "phigh": out.phigh[0],
              "bracket_consistency_stops": metrics.bracket_consistency(y, evs) if len(evs) > 1 else None}
    if out.panorama:
        report["seam_error"] = metrics.seam_error(hdr) | {"shift_px": out.seam_shift_px}
    sheet = tonemap.contact_sheet(y, [f"EV {e:+g}" for e in evs], columns=7) if "preview" in paths else None
    report["timings_s"] = {"load_models": load_s, **out.timings}
    report = _finite(report)
    write_output_set(paths, hdr, sheet, report, options=options, panorama=out.panorama, overwrite=True,
                     started=start, what=f"item {item.index}",
                     metadata={"prompt": item.prompt, "seed": item.seed, "evs": exposure.format_ev_ladder(evs),
                               "space": pipe.codec.space, "head": models["head"] or "",
                               "scene_source": models["scene_source"]["spec"], "multipass": args.multipass})
    return report


def _finite(value):
    """JSON-safe copy: non-finite floats (a consistency with no commonly well-seen pixel) become None."""
    import math

    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value
