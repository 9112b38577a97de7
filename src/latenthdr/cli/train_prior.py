"""``latenthdr train prior``: the embedded text-to-latent prior (registered by ``cli/train.py``).

Validates every flag here, naming it, then calls ``latenthdr.training.prior.train_prior`` (imported lazily).
"""

from __future__ import annotations

import shlex
from dataclasses import asdict
from pathlib import Path

from latenthdr.cli._common import check_int, max_threads


def register(models) -> None:
    p = models.add_parser("prior", help="train the embedded text-to-latent prior on captioned HDR panoramas",
                          description="Train the embedded prior (models/prior.py): a text- and EV-conditioned "
                                      "latent diffusion model over a codec's latents, on captioned HDR panoramas "
                                      "(crops and whole panoramas) and procedural skies; resumable; writes "
                                      "RUN_DIR/prior.safetensors and prior-f16.safetensors. docs/t2h.md has the "
                                      "recipe.")
    p.add_argument("--data", required=True, metavar="DIR", help="folder of training HDR panoramas (.hdr/.exr)")
    p.add_argument("--captions", metavar="FILE", help="captions JSON {\"captions\": {FILE: [...]}} (default: the "
                                                      "packaged captions of ../shared/data/hdri/train)")
    p.add_argument("--skies", type=int, default=0, help="procedural skies to add: clear (sun), overcast and moonlit night (latenthdr.skies; default 0)")
    p.add_argument("--sky-width", type=int, default=1024, help="sky panorama width, pixels (default 1024)")
    p.add_argument("--codec", default="embedded", help="latent codec: embedded (default), taef2, a VAE dir or id")
    p.add_argument("--evs", default="-7:5:1", help="EV ladder the EV conditioning learns (default -7:5:1)")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder (config, log, checkpoints, prior)")
    p.add_argument("--preset", default="small", help="architecture preset: test, small, base, large (default small)")
    p.add_argument("--samples", type=int, default=336, help="panorama samples cached (default 336)")
    p.add_argument("--crop-size", type=int, default=256, help="perspective crop size, pixels (default 256)")
    p.add_argument("--pano-size", default="512x256", help="whole-panorama sample size WxH, W = 2H (default 512x256)")
    p.add_argument("--pano-fraction", type=float, default=0.5, help="fraction of samples that are panoramas")
    p.add_argument("--batch-size", type=int, default=8, help="samples per step (default 8)")
    p.add_argument("--lr", type=float, default=5e-4, help="AdamW peak learning rate (default 5e-4)")
    p.add_argument("--steps", type=int, help="optimizer steps; the cosine schedule spans them (default 4000 "
                                             "unless only --minutes is given)")
    p.add_argument("--minutes", type=float, help="wall-time limit in minutes (cumulative over resumes)")
    p.add_argument("--warmup", type=int, default=100, help="lr warmup steps (default 100)")
    p.add_argument("--ema-half-life", type=float, default=200.0, help="EMA half-life in steps (default 200)")
    p.add_argument("--ev0-fraction", type=float, default=0.6, help="share of EV-0 targets (default 0.6)")
    p.add_argument("--text-dropout", type=float, default=0.1, help="share of null prompts, for CFG (default 0.1)")
    p.add_argument("--val-every", type=int, default=250, help="steps between validations (default 250)")
    p.add_argument("--val-samples", type=int, default=16, help="fixed samples in the validation loss (default 16)")
    p.add_argument("--checkpoint-every", type=int, default=250, help="steps between checkpoints (default 250)")
    p.add_argument("--seed", type=int, default=0, help="seed for samples, skies, batches and weights (default 0)")
    p.add_argument("--cache", metavar="DIR", help="latent cache folder (default RUN_DIR/cache)")
    from latenthdr.cli.train import add_run_options  # train.py imports this module lazily: no cycle

    add_run_options(p)
    p.set_defaults(handler=run_prior)


def run_prior(args) -> int:
    from latenthdr.cli.train import _check_run_dir, check_shared_batch, report, training_job

    check_int("--threads", args.threads, 1, max_threads())
    options = prior_options(args)
    check_shared_batch(options.batch_size)
    run_dir = Path(args.out)
    _check_run_dir(run_dir, args.resume, args.overwrite)
    command = prior_command(options, args.out)
    if args.dry_run:
        report({"run_dir": str(run_dir), "command": command, "options": options.to_dict(),
                "loop": asdict(options.loop_config()), "dry_run": True})
        return 0
    import torch

    from latenthdr.training.prior import train_prior

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    with training_job(run_dir):
        result = train_prior(options, run_dir, resume=args.resume, overwrite=args.overwrite,
                             progress=not args.no_progress, command=command)
    report({"run_dir": str(result.run_dir), "prior": str(result.prior_path),
            "prior_f16": str(result.prior_f16_path), "steps": result.steps,
            "duration_s": round(result.duration_s, 1), "stopped_by": result.stopped_by,
            "cache_build_s": result.cache_build_s,
            "final_val": {k: v for k, v in result.final_val.items() if k in ("val_loss", "val_loss_uncond",
                                                                             "text_gain")}})
    return 0


def prior_options(args):
    """Validate the ``train prior`` flags -> PriorTrainOptions (InputError names the flag)."""
    import math

    from latenthdr import exposure
    from latenthdr.cli.train import _int_at_least, _number_in, _parse_pano_size
    from latenthdr.errors import InputError
    from latenthdr.models.prior import PRIOR_PRESETS
    from latenthdr.training import data
    from latenthdr.training.prior import PriorTrainOptions, check_captions, read_captions

    evs = exposure.parse_ev_ladder(args.evs, "--evs")
    if 0.0 not in evs:
        raise InputError("--evs", f"got {args.evs!r}; accepted: a ladder that contains 0")
    if args.preset not in PRIOR_PRESETS:
        raise InputError("--preset", f"unknown preset {args.preset!r}; accepted: {', '.join(PRIOR_PRESETS)}")
    for flag, value in (("--samples", args.samples), ("--batch-size", args.batch_size),
                        ("--val-every", args.val_every), ("--val-samples", args.val_samples),
                        ("--checkpoint-every", args.checkpoint_every)):
        _int_at_least(flag, value, 1)
    for flag, value in (("--skies", args.skies), ("--warmup", args.warmup), ("--seed", args.seed)):
        _int_at_least(flag, value, 0)
    _int_at_least("--sky-width", args.sky_width, 16, multiple=2)
    _int_at_least("--crop-size", args.crop_size, 32, multiple=32)
    pano_w, pano_h = _parse_pano_size(args.pano_size)
    if pano_h % 32:
        raise InputError("--pano-size", f"got {args.pano_size!r}; accepted: a height that is a multiple of 32")
    for flag, value in (("--pano-fraction", args.pano_fraction), ("--ev0-fraction", args.ev0_fraction),
                        ("--text-dropout", args.text_dropout)):
        _number_in(flag, value, 0.0, 1.0)
    _number_in("--lr", args.lr, 0.0, 1.0, open_low=True)
    _number_in("--ema-half-life", args.ema_half_life, 0.0, math.inf, open_low=True)
    steps = args.steps if args.steps is not None or args.minutes is not None else 4000
    if steps is not None:
        _int_at_least("--steps", steps, 1)
    if args.minutes is not None:
        _number_in("--minutes", args.minutes, 0.0, math.inf, open_low=True)
    check_captions(read_captions(args.captions), data.list_hdr_files(args.data, "--data"))
    sampling = data.SamplingConfig(crop_size=args.crop_size, pano_width=pano_w, pano_height=pano_h,
                                   pano_fraction=args.pano_fraction)
    return PriorTrainOptions(
        data=args.data, captions=args.captions, skies=args.skies, sky_width=args.sky_width, codec=args.codec,
        evs=evs, preset=args.preset, samples=args.samples, sampling=sampling, batch_size=args.batch_size,
        lr=args.lr, steps=steps, minutes=args.minutes, warmup_steps=args.warmup,
        ema_half_life_steps=args.ema_half_life, ev0_fraction=args.ev0_fraction, text_dropout=args.text_dropout,
        val_every=args.val_every, val_samples=args.val_samples, checkpoint_every=args.checkpoint_every,
        seed=args.seed, cache=args.cache)


def prior_command(options, out: str) -> str:
    """The canonical command line that reproduces ``options`` (recorded in the run and the prior's metadata)."""
    from latenthdr.exposure import format_ev_ladder

    s = options.sampling
    parts = ["latenthdr", "train", "prior", "--data", options.data, "--skies", options.skies,
             "--sky-width", options.sky_width, "--codec", options.codec, f"--evs={format_ev_ladder(options.evs)}",
             "--out", out, "--preset", options.preset, "--samples", options.samples, "--crop-size", s.crop_size,
             "--pano-size", f"{s.pano_width}x{s.pano_height}", "--pano-fraction", s.pano_fraction,
             "--batch-size", options.batch_size, "--lr", options.lr, "--warmup", options.warmup_steps,
             "--ema-half-life", options.ema_half_life_steps, "--ev0-fraction", options.ev0_fraction,
             "--text-dropout", options.text_dropout, "--val-every", options.val_every,
             "--val-samples", options.val_samples, "--checkpoint-every", options.checkpoint_every,
             "--seed", options.seed]
    parts += ["--captions", options.captions] if options.captions else []
    parts += ["--steps", options.steps] if options.steps is not None else []
    parts += ["--minutes", options.minutes] if options.minutes is not None else []
    parts += ["--cache", options.cache] if options.cache else []
    return shlex.join(str(p) for p in parts)
