"""``latenthdr train MODEL``: training jobs. ``train head`` and ``train codec`` now; ``train prior`` registers the
same way (one ``_register_<model>`` function adding a sub-parser with ``set_defaults(handler=...)``).

The CLI validates every option here, naming the flag, then calls the library (imported lazily, so
``latenthdr --help`` does not import torch models).
"""

from __future__ import annotations

import contextlib
import math
import shlex
import shutil
import sys
import warnings
from dataclasses import asdict
from pathlib import Path

from latenthdr.cli._common import add_overwrite, check_int, max_threads, print_json
from latenthdr.errors import InputError, LatentHDRError, OutputExistsError


def register(sub) -> None:
    p = sub.add_parser("train", help="train a model: the exposure head (train head), the embedded codec (train codec), "
                                        "the embedded prior (train prior)")
    models = p.add_subparsers(dest="train_command", metavar="MODEL", required=True)
    _register_head(models)
    _register_codec(models)
    _register_prior(models)


def _register_head(models) -> None:
    p = models.add_parser("head", help="train an exposure head for a codec's latent space on HDR panoramas",
                          description="Train an exposure head (METHOD.md L_ev) on latents cached once from HDR "
                                      "panoramas; resumable; writes RUN_DIR/head.safetensors (EMA weights).")
    p.add_argument("--codec", required=True, help="latent codec spec: embedded (ours), taef2, a diffusers VAE folder or hub id")
    p.add_argument("--data", required=True, metavar="DIR", help="folder of training HDR panoramas (.hdr/.exr)")
    p.add_argument("--val", required=True, metavar="DIR", help="folder of validation HDR panoramas")
    p.add_argument("--evs", default="-7:5:1", help="EV ladder: start:stop:step or a list (default -7:5:1)")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder (config, log, checkpoints, head)")
    p.add_argument("--preset", default="base", help="head architecture preset: tiny, small, base, large, wide (default base)")
    p.add_argument("--samples", type=int, default=360, help="training samples cached (default 360)")
    p.add_argument("--val-samples", type=int, default=40, help="validation samples cached (default 40)")
    p.add_argument("--crop-size", type=int, default=128, help="perspective crop size, pixels (default 128)")
    p.add_argument("--pano-size", default="256x128", help="whole-panorama sample size WxH, W = 2H (default 256x128)")
    p.add_argument("--pano-fraction", type=float, default=0.3, help="fraction of samples that are panoramas")
    p.add_argument("--scenes", type=int, default=0, metavar="N",
                   help="train on the samples of N of the training panoramas only, nested in N (default 0: all)")
    p.add_argument("--white-balance", type=float, default=0.0, metavar="STOPS",
                   help="white-balance jitter of training samples: std of a per-channel gain, stops (default 0)")
    p.add_argument("--batch-size", type=int, default=8, help="scenes per step, each with every EV (default 8)")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW peak learning rate (default 1e-3)")
    p.add_argument("--steps", type=int, help="optimizer steps; the cosine schedule spans them (default 2000 "
                                             "unless only --minutes is given: then constant lr after warmup)")
    p.add_argument("--minutes", type=float, help="wall-time limit in minutes (cumulative over resumes)")
    p.add_argument("--warmup", type=int, default=50, help="lr warmup steps (default 50)")
    p.add_argument("--ema-half-life", type=float, default=100.0, help="EMA half-life in steps (default 100)")
    p.add_argument("--val-every", type=int, default=100, help="steps between validations (default 100)")
    p.add_argument("--merged-every", type=int, default=5, help="merged-HDR metrics every N validations (default 5)")
    p.add_argument("--merged-samples", type=int, default=4, help="val samples decoded and merged (default 4)")
    p.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints (default 100)")
    p.add_argument("--pixel-loss", type=float, default=0.0, help="weight of the decoded PU21 pixel loss (default 0)")
    p.add_argument("--unknown-weight", type=float, default=0.0,
                   help="extra loss weight of latent pixels whose EV-0 frame is clipped (negative EVs) or black "
                        "(positive EVs): the regions the head must infer (default 0)")
    p.add_argument("--unseen-maps", action="store_true",
                   help="the head also reads the EV-0 frame's clipped and black fractions per latent cell")
    p.add_argument("--frame-channels", type=int, default=0, metavar="N",
                   help="the head also reads the EV-0 frame itself, through a patch stem of N features per latent "
                        "cell (default 0: off; the input image in image-to-HDR, the decoded z0 in text-to-HDR)")
    p.add_argument("--ev-conditioning", choices=("film", "input"), default="film",
                   help="how the EV reaches the head: FiLM in every block (the method), or, for the ablation, its "
                        "features as input channels and no FiLM (default film)")
    p.add_argument("--display-weight", type=float, default=0.0,
                   help="extra loss weight of latent channels by how much they move the decoded image (1 + W g_c^2 / "
                        "mean g^2): makes the codec's brightness channel count (default 0)")
    p.add_argument("--seed", type=int, default=0, help="seed for samples, batches and weights (default 0)")
    p.add_argument("--cache", metavar="DIR", help="latent cache folder (default RUN_DIR/cache)")
    p.add_argument("--select", choices=("last", "best"), default="last",
                   help="weights written to head.safetensors: the run's last EMA weights, or those of the "
                        "validation with the best identity/head latent-error ratio (default last)")
    add_run_options(p)
    p.set_defaults(handler=run_head)


def add_run_options(p) -> None:
    """Flags every training job shares: --resume, --dry-run, --threads, --no-progress, --overwrite."""
    p.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("--dry-run", action="store_true", help="print the resolved options and exit")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice; 1 can be much "
                                               "faster for small models on a busy machine)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    add_overwrite(p)


def run_head(args) -> int:
    options = head_options(args)
    check_shared_batch(options.batch_size)
    run_dir = Path(args.out)
    _check_run_dir(run_dir, args.resume, args.overwrite)
    command = head_command(options, args.out)
    if args.threads is not None:
        check_int("--threads", args.threads, 1, max_threads())
    if args.dry_run:
        report({"run_dir": str(run_dir), "cache": options.cache or str(run_dir / "cache"), "command": command,
                "options": options.to_dict(), "loop": asdict(options.loop_config()), "dry_run": True})
        return 0
    import torch

    from latenthdr.training.head import train_head

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    with training_job(run_dir):
        result = train_head(options, run_dir, resume=args.resume, overwrite=args.overwrite,
                            progress=not args.no_progress, command=command)
    keys = ("latent_mse", "identity_mse", "identity_over_head", "merged_pu21_psnr", "oracle_pu21_psnr",
            "input_pu21_psnr", "merged_stops", "reference_stops")
    report({"run_dir": str(result.run_dir), "head": str(result.head_path), "steps": result.steps,
            "duration_s": round(result.duration_s, 1), "stopped_by": result.stopped_by,
            "selected_step": result.selected_step, "cache_build_s": result.cache_build_s,
            "final_val": {k: result.final_val[k] for k in keys if k in result.final_val}})
    return 0


def head_options(args):
    """Validate the ``train head`` flags -> HeadTrainOptions (InputError names the flag)."""
    from latenthdr import exposure
    from latenthdr.training import data
    from latenthdr.training.head import HeadTrainOptions

    evs = exposure.parse_ev_ladder(args.evs, "--evs")
    if len(evs) < 2:
        raise InputError("--evs", f"got {args.evs!r}; accepted: a ladder of at least 2 EVs")
    _check_preset(args.preset)
    _int_at_least("--samples", args.samples, 1)
    _int_at_least("--val-samples", args.val_samples, 0)
    _int_at_least("--crop-size", args.crop_size, 8, multiple=8)
    pano_w, pano_h = _parse_pano_size(args.pano_size)
    _number_in("--pano-fraction", args.pano_fraction, 0.0, 1.0)
    _number_in("--white-balance", args.white_balance, 0.0, 2.0)
    _int_at_least("--scenes", args.scenes, 0)
    for flag, value in (("--batch-size", args.batch_size), ("--val-every", args.val_every),
                        ("--merged-every", args.merged_every),
                        ("--checkpoint-every", args.checkpoint_every)):
        _int_at_least(flag, value, 1)
    _int_at_least("--merged-samples", args.merged_samples, 0)
    _int_at_least("--warmup", args.warmup, 0)
    check_int("--seed", args.seed, 0, 2**63 - 1)
    _number_in("--lr", args.lr, 0.0, 1.0, open_low=True)
    _number_in("--pixel-loss", args.pixel_loss, 0.0, math.inf)
    _number_in("--unknown-weight", args.unknown_weight, 0.0, math.inf)
    _number_in("--display-weight", args.display_weight, 0.0, math.inf)
    _number_in("--ema-half-life", args.ema_half_life, 0.0, math.inf, open_low=True)
    steps = args.steps if args.steps is not None or args.minutes is not None else 2000
    if steps is not None:
        _int_at_least("--steps", steps, 1)
    if args.minutes is not None:
        _number_in("--minutes", args.minutes, 0.0, math.inf, open_low=True)
    for flag, folder in (("--data", args.data), ("--val", args.val)):
        data.list_hdr_files(folder, flag)
    if args.scenes > len(data.list_hdr_files(args.data)):
        raise InputError("--scenes", f"got {args.scenes}; {args.data} holds {len(data.list_hdr_files(args.data))} "
                                     "panoramas")
    sampling = data.SamplingConfig(crop_size=args.crop_size, pano_width=pano_w, pano_height=pano_h,
                                   pano_fraction=args.pano_fraction, white_balance_stops=args.white_balance)
    return HeadTrainOptions(
        codec=args.codec, data=args.data, val=args.val, evs=evs, preset=args.preset, samples=args.samples,
        val_samples=args.val_samples, sampling=sampling, batch_size=args.batch_size, lr=args.lr, steps=steps,
        minutes=args.minutes, warmup_steps=args.warmup, ema_half_life_steps=args.ema_half_life,
        val_every=args.val_every, merged_every=args.merged_every, merged_samples=args.merged_samples,
        checkpoint_every=args.checkpoint_every,
        pixel_loss=args.pixel_loss, unknown_weight=args.unknown_weight, display_weight=args.display_weight,
        unseen_maps=args.unseen_maps, frame_channels=args.frame_channels, ev_conditioning=args.ev_conditioning,
        seed=args.seed, cache=args.cache,
        select=args.select, scenes=args.scenes)


def head_command(options, out: str) -> str:
    """The canonical command line that reproduces ``options`` (recorded in the run and the head's metadata).
    The ladder is written ``--evs=-7:5:1``: argparse would read a separate ``-7:5:1`` as an option."""
    from latenthdr.exposure import format_ev_ladder

    s = options.sampling
    parts = ["latenthdr", "train", "head", "--codec", options.codec, "--data", options.data, "--val", options.val,
             f"--evs={format_ev_ladder(options.evs)}", "--out", out, "--preset", options.preset,
             "--samples", options.samples, "--val-samples", options.val_samples, "--crop-size", s.crop_size,
             "--pano-size", f"{s.pano_width}x{s.pano_height}", "--pano-fraction", s.pano_fraction,
             "--batch-size", options.batch_size,
             "--lr", options.lr, "--warmup", options.warmup_steps, "--ema-half-life", options.ema_half_life_steps,
             "--val-every", options.val_every, "--merged-every", options.merged_every,
             "--merged-samples", options.merged_samples,
             "--checkpoint-every", options.checkpoint_every, "--pixel-loss", options.pixel_loss,
             "--unknown-weight", options.unknown_weight, "--display-weight", options.display_weight,
             "--seed", options.seed]
    parts += ["--steps", options.steps] if options.steps is not None else []
    parts += ["--minutes", options.minutes] if options.minutes is not None else []
    parts += ["--cache", options.cache] if options.cache else []
    parts += ["--select", options.select] if options.select != "last" else []
    parts += ["--unseen-maps"] if options.unseen_maps else []
    parts += ["--frame-channels", options.frame_channels] if options.frame_channels else []
    parts += ["--ev-conditioning", options.ev_conditioning] if options.ev_conditioning != "film" else []
    parts += ["--white-balance", s.white_balance_stops] if s.white_balance_stops else []
    parts += ["--scenes", options.scenes] if options.scenes else []
    return shlex.join(str(p) for p in parts)


def _register_codec(models) -> None:
    p = models.add_parser("codec", help="train the embedded latent codec (ours) on HDR panoramas",
                          description="Train the embedded codec (models/tinycodec.py) on display-encoded bracket "
                                      "frames of HDR panoramas; resumable; writes RUN_DIR/codec.safetensors (EMA "
                                      "weights, float32) and codec-f16.safetensors. docs/codec.md has the recipe.")
    p.add_argument("--data", required=True, metavar="DIR", help="folder of training HDR panoramas (.hdr/.exr)")
    p.add_argument("--val", required=True, metavar="DIR", help="folder of validation HDR panoramas")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder (config, log, checkpoints, codec)")
    p.add_argument("--preset", default="tiny", help="architecture preset: narrow, tiny, wide (default tiny)")
    p.add_argument("--latent-channels", type=int, help="latent channels C (default: the preset's, 16)")
    p.add_argument("--name", help="weights name; the latent space id is latenthdr-NAME (default: the preset's)")
    p.add_argument("--evs", default="-7:5:1", help="EV ladder frames are drawn from (default -7:5:1)")
    p.add_argument("--samples", type=int, default=4000, help="sample specs in the training pool (default 4000)")
    p.add_argument("--evs-per-sample", type=int, default=2, help="frames kept per sample (default 2)")
    p.add_argument("--crop-size", type=int, default=128, help="training crop size, pixels (default 128)")
    p.add_argument("--batch-size", type=int, default=8, help="samples per step (default 8)")
    p.add_argument("--lr", type=float, default=2e-3, help="AdamW peak learning rate (default 2e-3)")
    p.add_argument("--steps", type=int, help="optimizer steps; the cosine schedule spans them (default 3000 "
                                             "unless only --minutes is given: then constant lr after warmup)")
    p.add_argument("--minutes", type=float, help="wall-time limit in minutes (cumulative over resumes)")
    p.add_argument("--pu21-loss", type=float, default=1.0, help="weight of the PU21 L1 loss (default 1)")
    p.add_argument("--edge-loss", type=float, default=0.0,
                   help="weight of the L1 error of the steps across 8-px latent-cell borders (block edges; "
                        "default 0)")
    p.add_argument("--l2-loss", type=float, default=0.0, help="weight of the display L2 loss (default 0)")
    p.add_argument("--init", metavar="CODEC_FILE", help="start from this trained codec and its architecture (--preset is then unused); "
                                                        "with --decoder-only it keeps its name, else give a new --name")
    p.add_argument("--decoder-only", action="store_true",
                   help="with --init: train only the decoder; the encoder, the latent statistics and so the "
                        "latent space (and its heads and prior) stay exactly as they were")
    p.add_argument("--latent-noise", type=float, default=0.0,
                   help="std of the noise added to latents before decoding in training, in latent std units "
                        "(default 0)")
    p.add_argument("--fp32", action="store_true", help="train in float32 (default: bfloat16 autocast, ~2x faster)")
    p.add_argument("--val-crops", type=int, default=10, help="fixed 256x256 val crops, all EVs each (default 10)")
    p.add_argument("--val-every", type=int, default=250, help="steps between validations (default 250)")
    p.add_argument("--checkpoint-every", type=int, default=250, help="steps between checkpoints (default 250)")
    p.add_argument("--seed", type=int, default=0, help="seed for samples, batches and weights (default 0)")
    add_run_options(p)
    p.set_defaults(handler=run_codec)


def run_codec(args) -> int:
    options = codec_options(args)
    check_shared_batch(options.batch_size)
    run_dir = Path(args.out)
    _check_run_dir(run_dir, args.resume, args.overwrite)
    command = codec_command(options, args.out)
    if args.threads is not None:
        check_int("--threads", args.threads, 1, max_threads())
    if args.dry_run:
        report({"run_dir": str(run_dir), "command": command, "options": options.to_dict(),
                "codec": options.codec_config().to_dict(), "loop": asdict(options.loop_config()),
                "dry_run": True})
        return 0
    import torch

    from latenthdr.training.codec import train_codec

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    with training_job(run_dir):
        result = train_codec(options, run_dir, resume=args.resume, overwrite=args.overwrite,
                             progress=not args.no_progress, command=command)
    keys = ("psnr", "psnr_informative", "psnr_informative_per_ev")
    report({"run_dir": str(result.run_dir), "codec": str(result.codec_path),
            "codec_f16": str(result.codec_f16_path), "steps": result.steps,
            "duration_s": round(result.duration_s, 1), "stopped_by": result.stopped_by,
            "final_val": {k: result.final_val[k] for k in keys if k in result.final_val},
            "final_val_f16": {k: result.final_val_f16[k] for k in keys if k in result.final_val_f16}})
    return 0


def codec_options(args):
    """Validate the ``train codec`` flags -> CodecTrainOptions (InputError names the flag)."""
    from latenthdr import exposure
    from latenthdr.models.tinycodec import CODEC_PRESETS
    from latenthdr.training import data
    from latenthdr.training.codec import TRAIN_SAMPLING, CodecTrainOptions

    evs = exposure.parse_ev_ladder(args.evs, "--evs")
    if args.preset not in CODEC_PRESETS:
        raise InputError("--preset", f"unknown preset {args.preset!r}; accepted: {', '.join(CODEC_PRESETS)}")
    if args.latent_channels is not None:
        _int_at_least("--latent-channels", args.latent_channels, 1)
    _int_at_least("--crop-size", args.crop_size, 16, multiple=8)
    for flag, value in (("--samples", args.samples), ("--batch-size", args.batch_size),
                        ("--val-every", args.val_every), ("--checkpoint-every", args.checkpoint_every)):
        _int_at_least(flag, value, 1)
    _int_at_least("--evs-per-sample", args.evs_per_sample, 1)
    if args.evs_per_sample > len(evs):
        raise InputError("--evs-per-sample", f"got {args.evs_per_sample}; accepted: at most {len(evs)} (the ladder)")
    _int_at_least("--val-crops", args.val_crops, 0)
    check_int("--seed", args.seed, 0, 2**63 - 1)
    _number_in("--lr", args.lr, 0.0, 1.0, open_low=True)
    _number_in("--pu21-loss", args.pu21_loss, 0.0, math.inf)
    _number_in("--l2-loss", args.l2_loss, 0.0, math.inf)
    _number_in("--latent-noise", args.latent_noise, 0.0, math.inf)
    _number_in("--edge-loss", args.edge_loss, 0.0, math.inf)
    if args.decoder_only and args.init is None:
        raise InputError("--decoder-only", "needs --init CODEC_FILE: the trained codec whose decoder to fine-tune")
    if args.init is not None:
        from latenthdr.models.tinycodec import read_codec_config

        if not Path(args.init).is_file():
            raise InputError("--init", f"{args.init}: no such file; accepted: a codec .safetensors file")
        read_codec_config(args.init)
    steps = args.steps if args.steps is not None or args.minutes is not None else 3000
    if steps is not None:
        _int_at_least("--steps", steps, 1)
    if args.minutes is not None:
        _number_in("--minutes", args.minutes, 0.0, math.inf, open_low=True)
    for flag, folder in (("--data", args.data), ("--val", args.val)):
        data.list_hdr_files(folder, flag)
    sampling = data.SamplingConfig(**{**asdict(TRAIN_SAMPLING), "crop_size": args.crop_size})
    return CodecTrainOptions(
        data=args.data, val=args.val, preset=args.preset, latent_channels=args.latent_channels, name=args.name,
        evs=evs, samples=args.samples, sampling=sampling, evs_per_sample=args.evs_per_sample,
        batch_size=args.batch_size, lr=args.lr, steps=steps, minutes=args.minutes, pu21_loss=args.pu21_loss,
        l2_loss=args.l2_loss, init=args.init, train_encoder=not args.decoder_only, latent_noise=args.latent_noise,
        edge_loss=args.edge_loss, bf16=not args.fp32, val_crops=args.val_crops, val_every=args.val_every,
        checkpoint_every=args.checkpoint_every, seed=args.seed)


def codec_command(options, out: str) -> str:
    """The canonical command line that reproduces ``options`` (recorded in the run and the weights' metadata)."""
    from latenthdr.exposure import format_ev_ladder

    parts = ["latenthdr", "train", "codec", "--data", options.data, "--val", options.val, "--out", out,
             "--preset", options.preset, f"--evs={format_ev_ladder(options.evs)}", "--samples", options.samples,
             "--evs-per-sample", options.evs_per_sample, "--crop-size", options.sampling.crop_size,
             "--batch-size", options.batch_size, "--lr", options.lr, "--pu21-loss", options.pu21_loss,
             "--l2-loss", options.l2_loss, "--latent-noise", options.latent_noise, "--edge-loss", options.edge_loss,
             "--val-crops", options.val_crops, "--val-every", options.val_every,
             "--checkpoint-every", options.checkpoint_every, "--seed", options.seed]
    parts += ["--latent-channels", options.latent_channels] if options.latent_channels is not None else []
    parts += [] if options.bf16 else ["--fp32"]
    parts += ["--name", options.name] if options.name is not None else []
    parts += ["--init", options.init] if options.init is not None else []
    parts += [] if options.train_encoder else ["--decoder-only"]
    parts += ["--steps", options.steps] if options.steps is not None else []
    parts += ["--minutes", options.minutes] if options.minutes is not None else []
    return shlex.join(str(p) for p in parts)


def report(obj) -> None:
    """``print_json`` on the main process only: under ``accelerate launch`` every process runs the command."""
    from latenthdr.distributed import is_main_process

    if is_main_process():
        print_json(obj)


def check_shared_batch(batch_size: int) -> None:
    """InputError naming --batch-size when a launch has more processes than the batch has rows to share
    (``distributed.batch_share``: every process computes a share of each global batch)."""
    from latenthdr.distributed import launched_processes

    count = launched_processes()
    if batch_size < count:
        raise InputError("--batch-size", f"got {batch_size}; accepted: at least the number of processes ({count}): "
                                         "the batch is the global one, shared between them (a multiple of it keeps "
                                         "every process equally busy)")


def _register_prior(models) -> None:
    from latenthdr.cli import train_prior  # the prior's flags and handler live in their own module

    train_prior.register(models)


@contextlib.contextmanager
def training_job(run_dir: Path):
    """Around a training job: its warnings (a damaged checkpoint skipped on --resume) as one stderr line each, and a
    RUN_DIR that this job created removed again when bad input stops it before its first checkpoint (so a rerun
    after the fix needs no --overwrite). An interrupted job keeps its folder: its latent cache is reused."""
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"latenthdr train: warning: {message}", file=sys.stderr)

    created = not run_dir.exists()
    with warnings.catch_warnings():
        warnings.showwarning = show
        try:
            yield
        except LatentHDRError:
            if created and run_dir.is_dir() and not any(run_dir.rglob("step-*.pt")):
                shutil.rmtree(run_dir, ignore_errors=True)
            raise


def _check_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    from latenthdr.training.rundir import check_writable

    if resume and overwrite:
        raise InputError("--resume/--overwrite", "give one of the two: continue the run, or replace it")
    check_writable(run_dir)
    if resume and not (run_dir / "config.json").is_file():
        raise InputError("--resume", f"{run_dir}: no run to resume")
    if not resume and not overwrite and run_dir.is_dir() and any(run_dir.iterdir()):
        raise OutputExistsError(run_dir)


def _check_preset(preset: str) -> None:
    from latenthdr.models.head import HEAD_PRESETS

    if preset not in HEAD_PRESETS:
        raise InputError("--preset", f"unknown preset {preset!r}; accepted: {', '.join(HEAD_PRESETS)}")


def _parse_pano_size(spec: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in spec.lower().split("x"))
    except ValueError:
        raise InputError("--pano-size", f"cannot parse {spec!r}; accepted: WxH such as 256x128") from None
    if height < 8 or width != 2 * height or height % 8:
        raise InputError("--pano-size", f"got {spec!r}; accepted: W = 2 H, H a multiple of 8 (>= 8)")
    return width, height


def _int_at_least(flag: str, value, low: int, multiple: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or value % multiple:
        extra = f", a multiple of {multiple}" if multiple > 1 else ""
        raise InputError(flag, f"got {value!r}; accepted: an integer >= {low}{extra}")


def _number_in(flag: str, value, low: float, high: float, open_low: bool = False) -> None:
    ok = isinstance(value, (int, float)) and math.isfinite(value) and (value > low if open_low else value >= low)
    if not ok or value > high:
        bound = f"> {low:g}" if open_low else f">= {low:g}"
        upper = f" and <= {high:g}" if high < math.inf else ""
        raise InputError(flag, f"got {value!r}; accepted: a finite number {bound}{upper}")
