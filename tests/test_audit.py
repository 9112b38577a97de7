"""The bad-input audit: every command given what a careless or hostile user gives it.

Each case asserts a non-zero exit code, exactly one line on stderr that names the argument (the flag, IN, or the
file) and says what is wrong, and that nothing in the workspace was created, changed or deleted. The cases that need
a real process (a full disk, a closed stdout, signals, a read-only folder) run the console entry point in a
subprocess. `benchmarks/audit_table.py` runs the same cases and writes the table in docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import zlib
import struct
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from latenthdr import io
from latenthdr.cli import main


@dataclass(frozen=True)
class Case:
    """One bad input: ``argv`` ({w} is the workspace folder), the argument the error must name, a few words."""

    what: str
    argv: tuple[str, ...]
    names: str

    @property
    def command(self) -> str:
        return self.argv[0] if self.argv[0] != "train" else " ".join(self.argv[:2])


def _case(what: str, argv: str, names: str) -> Case:
    return Case(what, tuple(argv.split()), names)


CASES = [
    # bracket
    _case("input missing", "bracket {w}/nope.exr -o {w}/b", "IN"),
    _case("input is a folder", "bracket {w}/userdir -o {w}/b", "IN"),
    _case("input empty (0 bytes)", "bracket {w}/empty.exr -o {w}/b", "IN"),
    _case("input with an unknown extension", "bracket {w}/notes.txt -o {w}/b", "IN"),
    _case("a PNG renamed .exr", "bracket {w}/fake.exr -o {w}/b", "IN"),
    _case("a truncated EXR", "bracket {w}/truncated.exr -o {w}/b", "IN"),
    _case("an EXR holding NaN", "bracket {w}/nan.exr -o {w}/b", "IN"),
    _case("a Radiance header that claims 30000x30000", "bracket {w}/huge.hdr -o {w}/b", "IN"),
    _case("EV ladder reversed", "bracket {w}/scene.exr -o {w}/b --evs 5:-7:1", "--evs"),
    _case("EV ladder with step 0", "bracket {w}/scene.exr -o {w}/b --evs -7:5:0", "--evs"),
    _case("EV ladder with too many frames", "bracket {w}/scene.exr -o {w}/b --evs -40:40:0.1", "--evs"),
    _case("EV ladder that is not numbers", "bracket {w}/scene.exr -o {w}/b --evs low:high", "--evs"),
    _case("EV ladder with a duplicate", "bracket {w}/scene.exr -o {w}/b --evs 0,0,1", "--evs"),
    _case("EV ladder beyond +-40 stops", "bracket {w}/scene.exr -o {w}/b --evs 0,100", "--evs"),
    _case("EV ladder empty", "bracket {w}/scene.exr -o {w}/b --evs=,", "--evs"),
    _case("--scale negative", "bracket {w}/scene.exr -o {w}/b --scale -1", "--scale"),
    _case("--scale 1e308 (overflows)", "bracket {w}/scene.exr -o {w}/b --scale 1e308", "--scale"),
    _case("--clip-fraction 2", "bracket {w}/scene.exr -o {w}/b --clip-fraction 2", "--clip-fraction"),
    _case("--percentile 0", "bracket {w}/scene.exr -o {w}/b --percentile 0", "--percentile"),
    _case("output is an existing file", "bracket {w}/scene.exr -o {w}/notes.txt", "--output"),
    _case("output is a folder of the user's files", "bracket {w}/scene.exr -o {w}/userdir --overwrite", "--output"),
    _case("output bracket exists, no --overwrite", "bracket {w}/scene.exr -o {w}/bracket", "exists"),
    _case("output parent missing", "bracket {w}/scene.exr -o {w}/no/such/b", "--output"),
    _case("output folder cannot be created", "bracket {w}/scene.exr -o /proc/latenthdr-b", "--output"),
    _case("input is a broken symbolic link", "bracket {w}/dangling.exr -o {w}/b", "IN"),
    _case("input is a symbolic link loop", "bracket {w}/loop.exr -o {w}/b", "IN"),
    _case("input name too long for the file system", "bracket {w}/" + "x" * 300 + ".exr -o {w}/b", "IN"),
    # merge
    _case("folder without bracket.json", "merge {w}/userdir -o {w}/m.exr", "IN"),
    _case("bracket.json not JSON", "merge {w}/bad-json -o {w}/m.exr", "IN"),
    _case("bracket.json not UTF-8", "merge {w}/bad-utf8 -o {w}/m.exr", "IN"),
    _case("bracket.json names a missing frame", "merge {w}/missing-frame -o {w}/m.exr", "IN"),
    _case("one photograph only", "merge {w}/photo.png -o {w}/m.exr --times 1", "IN"),
    _case("--times count differs from the photographs", "merge {w}/photo.png {w}/photo-b.png -o {w}/m.exr --times 1",
          "--times"),
    _case("--times with a zero", "merge {w}/photo.png {w}/photo-b.png -o {w}/m.exr --times 1,0", "--times"),
    _case("--times not numbers", "merge {w}/photo.png {w}/photo-b.png -o {w}/m.exr --times fast,slow", "--times"),
    _case("--times equal", "merge {w}/photo.png {w}/photo-b.png -o {w}/m.exr --times 1,1", "--times"),
    _case("photographs without EXIF and no --times", "merge {w}/photo.png {w}/photo-b.png -o {w}/m.exr", "--times"),
    _case("photographs of different sizes", "merge {w}/photo.png {w}/small.png -o {w}/m.exr --times 1,2", "IN"),
    _case("--restore-scale with photographs", "merge {w}/photo.png {w}/photo-b.png -o {w}/m.exr --times 1,2 "
          "--restore-scale", "--restore-scale"),
    _case("--times with a bracket folder", "merge {w}/bracket -o {w}/m.exr --times 1,2", "--times"),
    _case("output extension .png", "merge {w}/bracket -o {w}/m.png", "--output"),
    _case("output exists, no --overwrite", "merge {w}/bracket -o {w}/existing.exr", "exists"),
    # metrics
    _case("PRED missing", "metrics {w}/nope.exr {w}/scene.exr", "PRED"),
    _case("REF is an LDR file", "metrics {w}/scene.exr {w}/photo.png", "REF"),
    _case("--peak-nits negative", "metrics {w}/scene.exr {w}/scene.exr --peak-nits -5", "--peak-nits"),
    _case("--peak-nits nan", "metrics {w}/scene.exr {w}/scene.exr --peak-nits nan", "--peak-nits"),
    _case("PRED and REF differ in size", "metrics {w}/scene.exr {w}/other-size.exr", "PRED"),
    _case("--ldr differs in size", "metrics {w}/scene.exr {w}/scene.exr --ldr {w}/small.png", "--ldr"),
    # preview
    _case("--exposure 1e308", "preview {w}/scene.exr -o {w}/p.png --exposure 1e308", "--exposure"),
    _case("--exposure not a number", "preview {w}/scene.exr -o {w}/p.png --exposure bright", "--exposure"),
    _case("output extension .jpg", "preview {w}/scene.exr -o {w}/p.jpg", "--output"),
    _case("output exists, no --overwrite", "preview {w}/scene.exr -o {w}/existing.png", "exists"),
    _case("IN is an LDR file", "preview {w}/photo.png -o {w}/p.png", "IN"),
    # info
    _case("file missing", "info {w}/nope.png", "FILE"),
    _case("random bytes named .png", "info {w}/random.png", "FILE"),
    _case("a truncated JPEG", "info {w}/truncated.jpg", "FILE"),
    _case("a PNG that claims 30000x30000 pixels", "info {w}/huge.png", "FILE"),
    _case("a float TIFF", "info {w}/float.tif", "FILE"),
    # convert
    _case("input missing", "convert {w}/nope.png -o {w}/c.exr", "IN"),
    _case("input 1x1 pixel", "convert {w}/one.png -o {w}/c.exr", "IN"),
    _case("a PNG that claims 30000x30000 pixels", "convert {w}/huge.png -o {w}/c.exr", "IN"),
    _case("output extension .png", "convert {w}/photo.png -o {w}/c.png", "--output"),
    _case("output is the input (--overwrite)", "convert {w}/scene.exr -o {w}/scene.exr --overwrite", "--output"),
    _case("output exists, no --overwrite", "convert {w}/photo.png -o {w}/existing.exr", "exists"),
    _case("a companion exists, no --overwrite", "convert {w}/photo.png -o {w}/companion.exr", "exists"),
    _case("output parent missing", "convert {w}/photo.png -o {w}/no/such/c.exr", "--output"),
    _case("EV ladder without EV 0", "convert {w}/photo.png -o {w}/c.exr --evs 1:5:1", "--evs"),
    _case("EV ladder reversed", "convert {w}/photo.png -o {w}/c.exr --evs 5:-7:1", "--evs"),
    _case("--codec unknown", "convert {w}/photo.png -o {w}/c.exr --codec nope", "--codec"),
    _case("--head missing", "convert {w}/photo.png -o {w}/c.exr --head {w}/nope.safetensors", "--head"),
    _case("--head a pickle", "convert {w}/photo.png -o {w}/c.exr --head {w}/head.pt", "--head"),
    _case("--head not a safetensors file", "convert {w}/photo.png -o {w}/c.exr --head {w}/corrupt.safetensors",
          "--head"),
    _case("--highlight-shrink 5", "convert {w}/photo.png -o {w}/c.exr --highlight-shrink 5", "--highlight-shrink"),
    _case("--rim-bound negative", "convert {w}/photo.png -o {w}/c.exr --rim-bound -1", "--rim-bound"),
    _case("--decoded-only with a merge option", "convert {w}/photo.png -o {w}/c.exr --decoded-only "
          "--highlight-shrink 0.5", "--decoded-only"),
    _case("a job larger than --max-memory", "convert {w}/photo.png -o {w}/c.exr --max-memory 0.01", "--max-memory"),
    _case("--max-memory nan", "convert {w}/photo.png -o {w}/c.exr --max-memory nan", "--max-memory"),
    _case("--format png", "convert {w}/photo.png -o {w}/c.exr --format png", "--format"),
    _case("--format hdr with an .exr output", "convert {w}/photo.png -o {w}/c.exr --format hdr", "--format"),
    _case("--half with a Radiance output", "convert {w}/photo.png -o {w}/c.hdr --half", "--half"),
    _case("--half with values beyond half", "convert {w}/photo.png -o {w}/c.exr --half --white-nits 1e6", "--half"),
    _case("--layout unknown", "convert {w}/photo.png -o {w}/c.exr --layout maya", "--layout"),
    _case("--layout on a perspective picture", "convert {w}/small.png -o {w}/c.exr --layout blender", "--layout"),
    _case("--azimuth on a perspective picture", "convert {w}/small.png -o {w}/c.exr --azimuth 90", "--azimuth"),
    _case("--azimuth not a number", "convert {w}/photo.png -o {w}/c.exr --azimuth east", "--azimuth"),
    _case("--azimuth 1000", "convert {w}/photo.png -o {w}/c.exr --azimuth 1000", "--azimuth"),
    _case("--azimuth nan", "convert {w}/photo.png -o {w}/c.exr --azimuth nan", "--azimuth"),
    _case("--white-nits 0", "convert {w}/photo.png -o {w}/c.exr --white-nits 0", "--white-nits"),
    _case("--white-nits negative", "convert {w}/photo.png -o {w}/c.exr --white-nits -100", "--white-nits"),
    _case("--white-nits -1e3 (looks like a flag)", "convert {w}/photo.png -o {w}/c.exr --white-nits -1e3",
          "--white-nits"),
    _case("--white-nits nan", "convert {w}/photo.png -o {w}/c.exr --white-nits nan", "--white-nits"),
    _case("--white-nits not a number", "convert {w}/photo.png -o {w}/c.exr --white-nits bright", "--white-nits"),
    _case("--scale percentile 0", "convert {w}/photo.png -o {w}/c.exr --scale p0=16", "--scale"),
    _case("--scale percentile above 100", "convert {w}/photo.png -o {w}/c.exr --scale p100.5=16", "--scale"),
    _case("--scale value negative", "convert {w}/photo.png -o {w}/c.exr --scale p99=-1", "--scale"),
    _case("--scale value nan", "convert {w}/photo.png -o {w}/c.exr --scale p99=nan", "--scale"),
    _case("--scale without p", "convert {w}/photo.png -o {w}/c.exr --scale 99.5=16", "--scale"),
    _case("--scale without a value", "convert {w}/photo.png -o {w}/c.exr --scale p99.5", "--scale"),
    _case("--illuminance 0", "convert {w}/photo.png -o {w}/c.exr --illuminance 0", "--illuminance"),
    _case("--illuminance nan", "convert {w}/photo.png -o {w}/c.exr --illuminance nan", "--illuminance"),
    _case("--illuminance on a perspective picture", "convert {w}/small.png -o {w}/c.exr --illuminance 1000",
          "--illuminance"),
    _case("--white-nits with --scale", "convert {w}/photo.png -o {w}/c.exr --white-nits 100 --scale p99=16",
          "--scale"),
    _case("--white-nits with --illuminance", "convert {w}/photo.png -o {w}/c.exr --illuminance 1000 --white-nits 100",
          "--illuminance"),
    # generate
    _case("no prompt and no --prompts", "generate -o {w}/g.exr", "prompt"),
    _case("a prompt and --prompts", "generate a-barn --prompts {w}/prompts.txt -o {w}/g", "prompt"),
    _case("an empty prompt", "generate {space} -o {w}/g.exr", "prompt"),
    _case("a prompt of 5000 characters", "generate " + "a" * 5000 + " -o {w}/g.exr", "prompt"),
    _case("--width 8", "generate a-barn -o {w}/g.exr --width 8", "--width"),
    _case("--width 200000", "generate a-barn -o {w}/g.exr --width 200000", "--width"),
    _case("--width not a multiple of the prior's step", "generate a-barn -o {w}/g.exr --width 48", "--width"),
    _case("--width whose derived height is off-step", "generate a-barn -o {w}/g.exr --width 64", "--width"),
    _case("--steps 0", "generate a-barn -o {w}/g.exr --steps 0", "--steps"),
    _case("--threads 100000", "generate a-barn -o {w}/g.exr --threads 100000", "--threads"),
    _case("--threads 0", "generate a-barn -o {w}/g.exr --threads 0", "--threads"),
    _case("--seed negative", "generate a-barn -o {w}/g.exr --seed -1", "--seed"),
    _case("--seed beyond 64 bits", "generate a-barn -o {w}/g.exr --seed 18446744073709551616", "--seed"),
    _case("--guidance nan", "generate a-barn -o {w}/g.exr --guidance nan", "--guidance"),
    _case("--guidance negative", "generate a-barn -o {w}/g.exr --guidance -1", "--guidance"),
    _case("--prompts missing", "generate --prompts {w}/nope.txt -o {w}/g", "--prompts"),
    _case("--prompts not UTF-8", "generate --prompts {w}/latin1.txt -o {w}/g", "--prompts"),
    _case("--prompts JSON not a list", "generate --prompts {w}/dict.json -o {w}/g", "--prompts"),
    _case("--prompts JSON with a negative seed", "generate --prompts {w}/negative-seed.json -o {w}/g", "--prompts"),
    _case("--prompts with no prompts", "generate --prompts {w}/comments.txt -o {w}/g", "--prompts"),
    _case("--shard 5/2", "generate --prompts {w}/prompts.txt -o {w}/g --shard 5/2", "--shard"),
    _case("--shard without --prompts", "generate a-barn -o {w}/g.exr --shard 0/2", "--shard"),
    _case("output extension .png", "generate a-barn -o {w}/g.png", "--output"),
    _case("--prompts output is a file", "generate --prompts {w}/prompts.txt -o {w}/notes.txt", "--output"),
    _case("--multipass with --backbone", "generate a-barn -o {w}/g.exr --multipass --backbone sdxl", "--multipass"),
    _case("EV ladder without EV 0", "generate a-barn -o {w}/g.exr --evs 1,2", "--evs"),
    _case("output exists, no --overwrite", "generate a-barn -o {w}/existing.exr", "exists"),
    _case("--format exr with an .hdr output", "generate a-barn -o {w}/g.hdr --format exr", "--format"),
    _case("--layout without --panorama", "generate a-barn -o {w}/g.exr --layout unity", "--layout"),
    _case("--illuminance without --panorama", "generate a-barn -o {w}/g.exr --illuminance 1000", "--illuminance"),
    _case("--azimuth with a perspective item in --prompts", "generate --prompts {w}/kinds.txt -o {w}/g --azimuth 90",
          "--azimuth"),
    _case("--white-nits negative", "generate a-barn -o {w}/g.exr --panorama --white-nits -1", "--white-nits"),
    _case("--scale not pP=V", "generate a-barn -o {w}/g.exr --scale high", "--scale"),
    _case("--scale with --illuminance", "generate a-barn -o {w}/g.exr --panorama --scale p50=1 --illuminance 1000",
          "--illuminance"),
    # demo
    _case("--width 1000000", "demo -o {w}/d --width 1000000", "--width"),
    _case("--width not a multiple of 16", "demo -o {w}/d --width 100", "--width"),
    _case("output is a file", "demo -o {w}/notes.txt", "--output"),
    _case("EV ladder reversed", "demo -o {w}/d --evs 5:-7:1", "--evs"),
    _case("a demo larger than --max-memory", "demo -o {w}/d --width 8192 --max-memory 2", "--max-memory"),
    # train
    _case("--data missing", "train head --codec embedded --data {w}/nope --val {w}/userdir --out {w}/run", "--data"),
    _case("--data holds no HDR panoramas", "train head --codec embedded --data {w}/userdir --val {w}/userdir "
          "--out {w}/run", "--data"),
    _case("--data holds a corrupt HDR", "train head --codec embedded --data {w}/bad-hdrs --val {w}/hdrs --out {w}/run "
          "--no-progress", "--data"),
    _case("--data holds a truncated EXR whose name is not UTF-8", "train head --codec embedded --data {w}/odd-names "
          "--val {w}/hdrs --out {w}/run --no-progress", "--data"),
    _case("--threads 100000", "train head --codec embedded --data {w}/hdrs --val {w}/hdrs --out {w}/run "
          "--threads 100000", "--threads"),
    _case("--out is a file", "train head --codec embedded --data {w}/hdrs --val {w}/hdrs --out {w}/notes.txt",
          "--out"),
    _case("--resume of a run that does not exist", "train head --codec embedded --data {w}/hdrs --val "
          "{w}/hdrs --out {w}/no-run --resume", "--resume"),
    _case("--steps 0", "train codec --data {w}/hdrs --val {w}/hdrs --out {w}/run --steps 0", "--steps"),
    _case("--threads 0", "train prior --data {w}/hdrs --out {w}/run --threads 0", "--threads"),
]


def build_workspace(w: Path) -> None:
    """The files the cases read: valid ones, broken ones, a user's folder, existing outputs."""
    rng = np.random.default_rng(0)
    scene = np.exp(rng.normal(0, 2, (32, 64, 3))).astype(np.float32)
    io.write_exr(w / "scene.exr", scene)
    io.write_exr(w / "other-size.exr", scene[:16])
    data = (w / "scene.exr").read_bytes()
    (w / "truncated.exr").write_bytes(data[: len(data) // 2])
    nan = scene.copy()
    nan[0, 0, 0] = np.nan
    _write_nan_exr(w / "nan.exr", nan)
    (w / "empty.exr").write_bytes(b"")
    (w / "huge.hdr").write_bytes(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 30000 +X 30000\n" + bytes(64))
    photo = (rng.uniform(0, 1, (32, 64, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(w / "photo.png"), photo)
    cv2.imwrite(str(w / "photo-b.png"), photo // 2)
    cv2.imwrite(str(w / "small.png"), photo[:16, :16])
    cv2.imwrite(str(w / "one.png"), photo[:1, :1])
    cv2.imwrite(str(w / "float.tif"), photo.astype(np.float32) / 255)
    (w / "fake.exr").write_bytes((w / "photo.png").read_bytes())
    cv2.imwrite(str(w / "photo.jpg"), photo)
    jpeg = (w / "photo.jpg").read_bytes()
    (w / "truncated.jpg").write_bytes(jpeg[: len(jpeg) * 2 // 3])
    (w / "photo.jpg").unlink()
    (w / "random.png").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (w / "huge.png").write_bytes(_png_header_only(30000, 30000))
    (w / "notes.txt").write_text("my notes\n")
    (w / "dangling.exr").symlink_to(w / "gone.exr")
    (w / "loop.exr").symlink_to(w / "loop.exr")
    (w / "hdrs").mkdir()
    shutil.copy(w / "scene.exr", w / "hdrs" / "scene.exr")
    (w / "bad-hdrs").mkdir()
    shutil.copy(w / "scene.exr", w / "bad-hdrs" / "scene.exr")
    (w / "bad-hdrs" / "broken.hdr").write_text("garbage")
    (w / "odd-names").mkdir()
    shutil.copy(w / "truncated.exr", os.fsdecode(os.fsencode(str(w / "odd-names")) + b"/caf\xe9.exr"))
    (w / "userdir").mkdir()
    (w / "userdir" / "thesis.tex").write_text("months of work\n")
    io.write_exr(w / "existing.exr", scene)
    io.write_png(w / "existing.png", photo)
    io.write_png(w / "companion.preview.png", photo)
    io.write_bracket_dir(w / "bracket", [photo / 255.0, photo / 510.0], [0.0, -1.0], {"curve": "gamma2.2"})
    for name, text in (("bad-json", b"{not json"), ("bad-utf8", b'{"evs": [0], "frames": ["\xff\xfe.png"]}'),
                       ("missing-frame", b'{"evs": [0, 1], "frames": ["frame_00_ev+0.png", "frame_01_ev+1.png"]}')):
        (w / name).mkdir()
        (w / name / "bracket.json").write_bytes(text)
    shutil.copy(w / "bracket" / "frame_00_ev+0.png", w / "missing-frame" / "frame_00_ev+0.png")
    (w / "prompts.txt").write_text("a red barn\na snowy pass\n")
    (w / "kinds.txt").write_text("panorama | a snowy pass\nperspective | a red barn\n")
    (w / "latin1.txt").write_bytes("caf\xe9 at night\n".encode("latin-1"))
    (w / "dict.json").write_text('{"prompt": "a barn"}')
    (w / "negative-seed.json").write_text('[{"prompt": "a barn", "seed": -3}]')
    (w / "comments.txt").write_text("# nothing here\n\n")
    (w / "head.pt").write_bytes(b"\x80\x04\x95pickle")
    (w / "corrupt.safetensors").write_text("not a safetensors file")


def _write_nan_exr(path: Path, pixels: np.ndarray) -> None:
    import OpenEXR

    OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage},
                 {"RGB": np.ascontiguousarray(pixels)}).write(str(path))


def _png_header_only(width: int, height: int) -> bytes:
    """A small PNG whose header claims ``width`` x ``height`` RGB pixels (its data would run out long before)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = zlib.compress(b"\x00" * (3 * width + 1) * 64, 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every path under ``folder`` with its bytes' hash and mtime: any change, addition or removal shows."""
    out = {}
    for path in sorted(folder.rglob("*")):
        stat = path.lstat()
        plain = path.is_file() and not path.is_symlink()
        out[str(path.relative_to(folder))] = (stat.st_mode, stat.st_mtime_ns,
                                              zlib.crc32(path.read_bytes()) if plain else None)
    return out


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    w = tmp_path_factory.mktemp("audit")
    build_workspace(w)
    return w


def expand(case: Case, w: Path) -> list[str]:
    return [a.replace("{w}", str(w)).replace("{space}", " ") for a in case.argv]


def run_case(case: Case, w: Path, capsys) -> tuple[int, str]:
    code = main(expand(case, w))
    return code, capsys.readouterr().err


@pytest.mark.parametrize("case", CASES, ids=[f"{c.command}: {c.what}" for c in CASES])
def test_bad_input_gets_one_clear_line_and_changes_nothing(case, workspace, capsys):
    before = snapshot(workspace)
    code, err = run_case(case, workspace, capsys)
    lines = err.strip().splitlines()
    assert code != 0
    assert len(lines) == 1, err
    assert lines[0].startswith(f"latenthdr {case.argv[0]}: error: "), err
    assert case.names in lines[0], err
    assert "Traceback" not in err and "latenthdr-" not in lines[0].split("error: ", 1)[1].split(":")[0]
    assert snapshot(workspace) == before


def test_the_audit_covers_every_command_and_at_least_80_cases():
    commands = {c.command for c in CASES}
    assert len(CASES) >= 80 and commands >= {"bracket", "merge", "metrics", "preview", "info", "convert",
                                             "generate", "demo", "train head", "train codec", "train prior"}


# --- cases that need a process of their own ------------------------------------------------------------------------
def _cli(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "latenthdr", *map(str, args)], capture_output=True, text=True,
                          **kwargs)


def _limit_file_size(limit: int):
    def apply() -> None:  # a write past ``limit`` bytes fails with EFBIG, as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.parametrize("argv", [["bracket", "{w}/scene.exr", "-o", "{out}/b"],
                                  ["convert", "{w}/photo.png", "-o", "{out}/c.exr"],
                                  ["preview", "{w}/scene.exr", "-o", "{out}/p.png"]],
                         ids=["bracket", "convert", "preview"])
def test_a_full_disk_gets_one_line_and_leaves_nothing(argv, workspace, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    args = [a.replace("{w}", str(workspace)).replace("{out}", str(out)) for a in argv]
    result = _cli(args, preexec_fn=_limit_file_size(2000))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr  # the system refused: 1, not a bad argument
    assert "could not be written" in lines[0] and "latenthdr-" not in lines[0], lines[0]
    assert list(out.iterdir()) == []


def test_a_closed_or_full_stdout_is_not_a_traceback(workspace, tmp_path):
    closed = subprocess.run([sys.executable, "-m", "latenthdr", "info", str(workspace / "scene.exr")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, close_fds=True,
                            preexec_fn=lambda: os.close(1))
    assert closed.returncode == 0 and closed.stderr == ""
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "latenthdr", "info", str(workspace / "scene.exr")],
                                stdout=full, stderr=subprocess.PIPE, text=True)
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "No space left on device" in result.stderr


def test_a_read_only_output_folder_gets_one_line(workspace, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() == 0:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                                 capture_output=True)
        if mounted.returncode:
            pytest.skip("running as root without mount: no way to make a folder read-only")
    else:
        folder.chmod(0o555)
    try:
        for argv in (["bracket", workspace / "scene.exr", "-o", folder / "b"],
                     ["convert", workspace / "photo.png", "-o", folder / "c.exr"],
                     ["generate", "--prompts", workspace / "prompts.txt", "-o", folder / "g"],
                     ["demo", "-o", folder / "d", "--width", "64"]):
            result = _cli(argv)
            lines = result.stderr.strip().splitlines()
            assert result.returncode != 0 and len(lines) == 1, result.stderr
            assert "--output" in lines[0] and ("not writable" in lines[0] or "cannot create" in lines[0]), lines[0]
        assert list(folder.iterdir()) == []
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(folder)], capture_output=True)
        else:
            folder.chmod(0o755)


def test_sigterm_in_a_prompt_batch_keeps_whole_items_and_skip_existing_finishes(workspace, tmp_path):
    out = tmp_path / "g"
    argv = [sys.executable, "-m", "latenthdr", "generate", "--prompts", str(workspace / "prompts.txt"), "-o", str(out),
            "--width", "64", "--height", "32", "--steps", "2"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(out.glob("0000-*.json")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    if process.returncode == 0:
        pytest.skip("the batch finished before the signal arrived")
    assert process.returncode == 128 + signal.SIGTERM and "terminated" in err, err
    assert not [p for p in out.iterdir() if io.is_temporary(p.name)]
    stems = {p.name.split(".", 1)[0] for p in out.iterdir()}
    for stem in stems:  # every item on disk is whole: EXR, previews and the sidecar naming them
        sidecar = json.loads((out / f"{stem}.json").read_text())
        assert all(Path(p).is_file() for p in sidecar["output"].values())
    rerun = subprocess.run(argv + ["--skip-existing"], capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout)
    assert len(report["written"]) + len(report["skipped"]) == 2 and len(report["skipped"]) >= 1
    assert len(list(out.glob("*.json"))) == 2


def test_a_job_that_cannot_fit_in_the_available_memory_is_refused_up_front(workspace, capsys, monkeypatch):
    from latenthdr.cli import _common

    monkeypatch.setattr(_common, "available_memory", lambda: 200_000_000)
    before = snapshot(workspace)
    code = main(["convert", str(workspace / "photo.png"), "-o", str(workspace / "c.exr")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "needs about 0.5 GB at its peak, more than the memory available now (0.2 GB)" in err, err
    assert snapshot(workspace) == before
    monkeypatch.setattr(_common, "available_memory", lambda: 100_000_000_000)
    assert main(["convert", str(workspace / "photo.png"), "-o", str(workspace / "c.exr"), "--no-previews"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert 0.3 < report["memory_estimate_gb"] < 0.6
    for path in report["output"].values():
        Path(path).unlink()
