"""tools/article_table.sh with a stand-in for python that records each command and makes the
run folder where train.py would: a second call compares its own runs."""
import os
import stat
import subprocess

from tests.helpers import ROOT

FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >> "$COMMANDS"
if [ "$1" = train.py ]; then
  while [ $# -gt 0 ]; do
    case $1 in --project) project=$2; shift ;; --name) name=$2; shift ;; esac
    shift
  done
  dir=$project/$name; k=2  # train.py's naming: name2, name3, ... when taken
  while [ -e "$dir" ]; do dir=$project/$name$k; k=$((k + 1)); done
  mkdir -p "$dir"
fi
"""


def test_a_second_call_trains_and_compares_in_its_own_attempt_folder(tmp_path):
    bin_dir, folder, commands = tmp_path / "bin", tmp_path / "article", tmp_path / "commands"
    bin_dir.mkdir()
    (bin_dir / "python").write_text(FAKE_PYTHON)
    (bin_dir / "python").chmod(stat.S_IRWXU)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", COMMANDS=str(commands))
    for _ in range(2):
        subprocess.run(["bash", str(ROOT / "tools" / "article_table.sh"), "1", str(folder)],
                       check=True, env=env, capture_output=True)
    second = commands.read_text().splitlines()[len(commands.read_text().splitlines()) // 2:]
    attempt = folder / "attempt2"
    assert sorted(p.name for p in attempt.iterdir()) == [
        "ordinary_a", "ordinary_b", "repro_1thread", "repro_a", "repro_b", "seed1", "seed2"]
    drifts = [line for line in second if line.startswith("-m tools.drift")]
    assert drifts[0] == (f"-m tools.drift {attempt}/ordinary_a {attempt}/ordinary_b "
                         f"--out {attempt}/drift_ordinary_a_ordinary_b")
    assert len(drifts) == 4 and all("attempt1" not in line for line in second)
    assert second[-1].startswith(f"-m tools.compare_groups --a {attempt}/ordinary_a ")
