"""tools.convert_labels killed at every step of writing a project: the project folder holds the
old project whole or the new one whole, never a mix, and the next run cleans up what the killed
one left beside it."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT
from tests.tools.test_convert_labels import _coco, _convert, _voc, _voc_object
from utils.base.errors import InputError

# Runs the converter with every file-system step counted; before step AT it sends itself SIG
# (its default action ends the process at once, as a kill from outside would). "fallback"
# makes the atomic exchange unavailable, so the two-rename swap runs instead.
KILLER = r"""
import errno, os, pathlib, shutil, signal, sys, time
import tools.convert_labels as tool
at, sig, mode = int(sys.argv[1]), getattr(signal, sys.argv[2]), sys.argv[3]
count = 0

def step(fn):
    def counted(*args, **kwargs):
        global count
        count += 1
        if count == at:
            os.kill(os.getpid(), sig)
            time.sleep(10)
        return fn(*args, **kwargs)
    return counted

def no_exchange(*args):
    raise OSError(errno.EINVAL, "no exchange here")

pathlib.Path.write_text = step(pathlib.Path.write_text)
pathlib.Path.symlink_to = step(pathlib.Path.symlink_to)
for name in ("rename", "replace", "link", "symlink"):
    setattr(os, name, step(getattr(os, name)))
shutil.copyfile, shutil.rmtree = step(shutil.copyfile), step(shutil.rmtree)
if hasattr(tool, "_exchange"):
    tool._exchange = step(no_exchange if mode == "fallback" else tool._exchange)
tool.main(tool.get_args_parser().parse_args(sys.argv[4:]))
print("steps", count)
"""


def _state(folder: Path) -> dict | None:
    """Every path under ``folder`` with what it holds (bytes, or a link's target)."""
    if not folder.exists():
        return None
    found = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            key = str(path.relative_to(folder))
            found[key] = (os.readlink(path) if path.is_symlink() else
                          "dir" if path.is_dir() else path.read_bytes())
    return found


def _kill_at(at: int, argv: list, sig: str = "SIGKILL", mode: str = "exchange"):
    return subprocess.run([sys.executable, "-c", KILLER, str(at), sig, mode, *map(str, argv)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def _restore(reference: Path | None, out: Path) -> None:
    """OUT as the old project (or absent), nothing beside it."""
    for path in out.parent.glob(f"{out.name}*"):
        shutil.rmtree(path)
    if reference is not None:
        shutil.copytree(reference, out, symlinks=True)


def _check_every_kill(tmp_path, argv, old_ref, new_state, steps, modes, rerun):
    out = Path(argv[-1])
    old_state = _state(old_ref) if old_ref else None
    for mode, sig in modes:
        for at in steps:
            _restore(old_ref, out)
            result = _kill_at(at, argv, sig, mode)
            assert result.returncode in (-9, -15), result.stderr
            left = sorted(p.name for p in out.parent.glob(f"{out.name}*"))
            state = _state(out)
            if mode == "exchange":
                assert state in (old_state, new_state), (mode, at, left)
            elif state is None and old_state is not None:  # between the two renames
                olds = list(out.parent.glob(f"{out.name}.replaced-*"))
                assert len(olds) == 1 and _state(olds[0]) == old_state, (at, left)
            else:
                assert state in (old_state, new_state), (mode, at, left)
            printed = rerun()
            assert _state(out) == new_state, (mode, at)
            assert sorted(p.name for p in out.parent.glob(f"{out.name}*")) == [out.name]
            if len(left) > 1 or (state is None and left):
                assert "left by a conversion that did not finish" in printed, (at, left)


def _steps(argv, mode: str = "exchange") -> int:
    result = _kill_at(0, argv, mode=mode)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split("steps ")[-1])


def test_voc_reconversion_killed_at_any_step(tmp_path, capsys):
    """5: a killed re-conversion mixed old and new label files under either report."""
    _voc(tmp_path / "VOC")
    argv = ["voc", tmp_path / "VOC", tmp_path / "work" / "out"]
    _convert("voc", tmp_path / "VOC", tmp_path / "old" / "out")
    xml = tmp_path / "VOC" / "Annotations" / "a.xml"
    xml.write_text(xml.read_text().replace(_voc_object("dog", (1, 1, 32, 24)),
                                           _voc_object("cat", (2, 2, 30, 20))))
    (tmp_path / "VOC" / "ImageSets" / "Main" / "val.txt").write_text("b\na\n")
    _convert("voc", tmp_path / "VOC", tmp_path / "new" / "out")
    new_state = _state(tmp_path / "new" / "out")
    assert new_state != _state(tmp_path / "old" / "out")
    _restore(tmp_path / "old" / "out", tmp_path / "work" / "out")
    total, fallback = _steps(argv), _steps(argv, "fallback")
    capsys.readouterr()

    def rerun():
        _convert(*argv)
        return capsys.readouterr().out

    _check_every_kill(tmp_path, argv, tmp_path / "old" / "out", new_state,
                      range(1, total + 1), [("exchange", "SIGKILL")], rerun)
    _check_every_kill(tmp_path, argv, tmp_path / "old" / "out", new_state,
                      [total // 2, total - 1], [("exchange", "SIGTERM")], rerun)
    _check_every_kill(tmp_path, argv, tmp_path / "old" / "out", new_state,
                      range(fallback - 5, fallback + 1), [("fallback", "SIGKILL")], rerun)
    _check_every_kill(tmp_path, argv, None, new_state, [1, 3, 5],
                      [("exchange", "SIGKILL")], rerun)


def test_coco_second_split_killed_at_any_step(tmp_path, capsys):
    instances = _coco(tmp_path)
    train = tmp_path / "instances_train.json"
    train.write_text(instances.read_text())
    for folder in ("old", "new"):
        _convert("coco", instances, tmp_path / "imgs", tmp_path / folder / "out")
    _convert("coco", train, tmp_path / "imgs", tmp_path / "new" / "out")
    argv = ["coco", train, tmp_path / "imgs", tmp_path / "work" / "out"]
    _restore(tmp_path / "old" / "out", tmp_path / "work" / "out")
    total = _steps(argv)
    capsys.readouterr()

    def rerun():
        _convert(*argv)
        return capsys.readouterr().out

    _check_every_kill(tmp_path, argv, tmp_path / "old" / "out", _state(tmp_path / "new" / "out"),
                      range(1, total + 1, 2), [("exchange", "SIGKILL")], rerun)


def test_a_running_conversion_is_not_disturbed(tmp_path):
    """A staging folder of a live process is another conversion at work: refused, untouched."""
    _voc(tmp_path / "VOC")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        staging = tmp_path / f"out.partial-{other.pid}"
        staging.mkdir()
        with pytest.raises(InputError, match=f"another conversion \\(process {other.pid}\\)"):
            _convert("voc", tmp_path / "VOC", tmp_path / "out")
        assert staging.is_dir() and not (tmp_path / "out").exists()
    finally:
        other.kill()
        other.wait()


def test_a_refused_conversion_leaves_the_old_project(tmp_path):
    instances = _coco(tmp_path)
    _convert("coco", instances, tmp_path / "imgs", tmp_path / "out")
    before = _state(tmp_path / "out")
    other = json.loads(instances.read_text())
    other["categories"][0]["name"] = "plane"
    (tmp_path / "instances_train.json").write_text(json.dumps(other))
    with pytest.raises(InputError, match="categories differ"):
        _convert("coco", tmp_path / "instances_train.json", tmp_path / "imgs", tmp_path / "out")
    assert _state(tmp_path / "out") == before
    assert sorted(p.name for p in tmp_path.glob("out*")) == ["out"]


def test_a_folder_that_only_looks_like_a_leftover_is_kept(tmp_path, capsys):
    """Only a folder holding a conversion report is taken for an old project. (Written with
    the fix.)"""
    _voc(tmp_path / "VOC")
    backup = tmp_path / "out.replaced-1"
    backup.mkdir()
    (backup / "mine.txt").write_text("mine")
    _convert("voc", tmp_path / "VOC", tmp_path / "out")
    assert (backup / "mine.txt").read_text() == "mine"
    assert f"left {backup} alone" in capsys.readouterr().out
