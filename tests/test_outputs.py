"""Output sets (io.output_set): a set of files is written whole or not at all, under failures, signals and kill -9;
what killed runs left is completed or cleaned by the next run (io.recover_outputs)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from latenthdr import io
from latenthdr.cli import Terminated, _raise_terminated
from latenthdr.errors import InputError, LatentHDRError, OutputExistsError


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _old_set(folder: Path) -> dict[str, Path]:
    paths = {"exr": folder / "a.exr", "preview": folder / "a.preview.png", "json": folder / "a.json"}
    for path in paths.values():
        path.write_text(f"old {path.name}")
    return paths


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_set_is_committed_whole_in_order_with_the_sidecar_last(tmp_path, monkeypatch):
    paths = _old_set(tmp_path)
    renamed = []
    real_replace = os.replace
    monkeypatch.setattr(io.os, "replace", lambda a, b: (renamed.append(Path(b).name), real_replace(a, b)))
    with io.output_set(paths, overwrite=True) as temps:
        assert {t.parent for t in temps.values()} == {tmp_path} and all(io.is_temporary(t.name) for t in temps.values())
        for key, temp in temps.items():
            temp.write_text(f"new {key}")
        assert paths["exr"].read_text() == "old a.exr"  # nothing final changes before the commit
    assert renamed == ["a.exr", "a.preview.png", "a.json"]
    assert [paths[k].read_text() for k in paths] == ["new exr", "new preview", "new json"]
    assert _names(tmp_path) == ["a.exr", "a.json", "a.preview.png"]


def test_a_failure_or_a_missing_file_leaves_the_old_set_exactly_as_it_was(tmp_path):
    paths = _old_set(tmp_path)
    with pytest.raises(RuntimeError, match="renderer crashed"):
        with io.output_set(paths, overwrite=True) as temps:
            temps["exr"].write_text("new")
            raise RuntimeError("renderer crashed")
    with pytest.raises(LatentHDRError, match=r"a\.json: the writer produced no file"):
        with io.output_set(paths, overwrite=True) as temps:
            temps["exr"].write_text("new")
            temps["preview"].write_text("new")
    assert [p.read_text() for p in paths.values()] == ["old a.exr", "old a.preview.png", "old a.json"]
    assert _names(tmp_path) == ["a.exr", "a.json", "a.preview.png"]


def test_a_writer_error_names_the_final_file_not_the_temporary(tmp_path):
    with pytest.raises(InputError) as error:
        with io.output_set({"png": tmp_path / "p.png", "json": tmp_path / "p.json"}) as temps:
            io.write_png(temps["png"], np.full((4, 4, 3), 2.0, np.float32))
    assert "latenthdr-" not in str(error.value) and _names(tmp_path) == []
    with pytest.raises(LatentHDRError) as error:
        with io.output_set({"png": tmp_path / "p.png"}) as temps:
            raise io.write_failed(temps["png"], "No space left on device")
    assert f"{tmp_path / 'p.png'}: could not be written (No space left" in str(error.value)
    assert "latenthdr-" not in str(error.value) and _names(tmp_path) == []


def test_an_existing_set_needs_overwrite_and_an_input_is_never_an_output(tmp_path):
    paths = _old_set(tmp_path)
    with pytest.raises(OutputExistsError):
        with io.output_set(paths):
            pass
    link = tmp_path / "link.exr"
    link.symlink_to(paths["exr"])
    with pytest.raises(InputError, match="is the input"):
        with io.output_set({"exr": link, "json": tmp_path / "b.json"}, overwrite=True, inputs=(paths["exr"],)):
            pass
    assert paths["exr"].read_text() == "old a.exr"


def test_stale_companions_are_removed_at_the_commit_only(tmp_path):
    paths = _old_set(tmp_path)
    new = {"exr": paths["exr"], "json": paths["json"]}
    with pytest.raises(RuntimeError):
        with io.output_set(new, overwrite=True, remove=(paths["preview"],)):
            raise RuntimeError("stop")
    assert paths["preview"].is_file()
    with io.output_set(new, overwrite=True, remove=(paths["preview"],)) as temps:
        for temp in temps.values():
            temp.write_text("new")
    assert _names(tmp_path) == ["a.exr", "a.json"]


def test_sigterm_while_writing_removes_the_new_files(tmp_path):
    paths = _old_set(tmp_path)
    saved = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        with pytest.raises(Terminated):
            with io.output_set(paths, overwrite=True) as temps:
                temps["exr"].write_text("new")
                os.kill(os.getpid(), signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, saved)
    assert [p.read_text() for p in paths.values()] == ["old a.exr", "old a.preview.png", "old a.json"]
    assert _names(tmp_path) == ["a.exr", "a.json", "a.preview.png"]


def test_a_signal_during_the_commit_is_delivered_after_it(tmp_path, monkeypatch):
    paths = _old_set(tmp_path)
    real_replace = os.replace
    sent = []

    def replace_and_signal(a, b):
        if not sent:
            sent.append(os.kill(os.getpid(), signal.SIGTERM))
        real_replace(a, b)

    monkeypatch.setattr(io.os, "replace", replace_and_signal)
    saved = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        with pytest.raises(Terminated):
            with io.output_set(paths, overwrite=True) as temps:
                for temp in temps.values():
                    temp.write_text("new")
    finally:
        signal.signal(signal.SIGTERM, saved)
    assert [p.read_text() for p in paths.values()] == ["new"] * 3 and _names(tmp_path) == ["a.exr", "a.json",
                                                                                            "a.preview.png"]


KILL_MID_COMMIT = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from latenthdr import io
    folder = Path(sys.argv[1])
    real_replace, count = os.replace, []
    def replace_then_die(a, b):
        real_replace(a, b)
        count.append(b)
        if len(count) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
    paths = {k: folder / n for k, n in (("exr", "a.exr"), ("preview", "a.preview.png"), ("json", "a.json"))}
    with io.output_set(paths, overwrite=True) as temps:
        for key, temp in temps.items():
            temp.write_text("new " + key)
        os.replace = replace_then_die
""")


def test_kill_9_in_the_middle_of_the_commit_is_completed_by_the_next_run(tmp_path):
    paths = _old_set(tmp_path)
    result = subprocess.run([sys.executable, "-c", KILL_MID_COMMIT, str(tmp_path)], capture_output=True)
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert paths["preview"].read_text() == "new preview" and paths["json"].read_text() == "old a.json"  # torn
    assert any(name.endswith(".journal") for name in _names(tmp_path))
    io.recover_outputs(tmp_path)
    assert [paths[k].read_text() for k in paths] == ["new exr", "new preview", "new json"]
    assert _names(tmp_path) == ["a.exr", "a.json", "a.preview.png"]


def test_dead_writers_temporaries_are_cleaned_and_live_ones_kept(tmp_path):
    dead, live = _dead_pid(), os.getpid()
    leftovers = [tmp_path / f".a.exr.latenthdr-{dead}-0123abcd.exr", tmp_path / f".a.json.latenthdr-{dead}-0123abcd.journal"]
    mine = tmp_path / f".b.exr.latenthdr-{live}-0123abcd.exr"
    for path in leftovers + [mine]:
        path.write_text("{torn")
    (tmp_path / "user.latenthdr-1-0123abcd.exr").write_text("a user's file, not a temporary")
    io.recover_outputs(tmp_path)
    assert _names(tmp_path) == [mine.name, "user.latenthdr-1-0123abcd.exr"]


def test_a_killed_bracket_folder_is_taken_over_by_the_next_run(tmp_path):
    d = tmp_path / "br"
    d.mkdir()
    (d / f".frame_00_ev+0.png.latenthdr-{_dead_pid()}-0123abcd.png").write_bytes(b"\x89PNG torn")
    frames = [np.full((4, 4, 3), v, np.float32) for v in (0.2, 0.5)]
    io.write_bracket_dir(d, frames, [-1.0, 0.0], {})
    assert _names(d) == ["bracket.json", "frame_00_ev-1.png", "frame_01_ev+0.png"]


def test_replacing_a_bracket_deletes_only_files_it_wrote(tmp_path):
    d = tmp_path / "br"
    frames = [np.full((4, 4, 3), v, np.float32) for v in (0.1, 0.2, 0.5)]
    io.write_bracket_dir(d, frames, [-2.0, -1.0, 0.0], {})
    meta = json.loads((d / "bracket.json").read_text())
    meta["frames"] += ["thesis.tex", "../outside.png", "frame_09_ev+3.png"]
    (d / "bracket.json").write_text(json.dumps(meta))
    (d / "thesis.tex").write_text("months of work")
    (tmp_path / "outside.png").write_text("not in the folder")
    io.write_bracket_dir(d, frames[1:], [-1.0, 0.0], {}, overwrite=True)
    assert _names(d) == ["bracket.json", "frame_00_ev-1.png", "frame_01_ev+0.png", "thesis.tex"]
    assert (tmp_path / "outside.png").is_file()


def test_a_bracket_folder_created_by_a_failed_write_is_removed(tmp_path):
    with pytest.raises(InputError):
        io.write_bracket_dir(tmp_path / "new", [np.full((4, 4, 3), 3.0, np.float32)], [0.0], {})
    assert _names(tmp_path) == []
