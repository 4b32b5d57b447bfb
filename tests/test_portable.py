"""--portable: the kernel settings that keep a CPU run's bits on other CPUs, and the golden
record of them kept in tests/golden/portable.json."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

import train
from tests.helpers import MICRO_CFG, ROOT, comparable, run_train
from tools import golden
from utils.base.errors import InputError
from utils.base.repro import PORTABLE_ENVIRONMENT

pytestmark = pytest.mark.slow
# What an AVX2-only or older CPU, or a user's own settings, would put in the environment.
LESSER_CPU = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
              "MKL_ENABLE_INSTRUCTIONS": "AVX2", "MKL_CBWR": "AUTO"}


def _train(data, project, name, mode, env, *extra):
    command = [sys.executable, "train.py", "--cfg", str(MICRO_CFG), "--data", str(data),
               "--img-size", "64", "--batch-size", "4", "--epochs", "2", "--quiet",
               "--project", str(project), "--name", name, mode, *extra]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                          env={**{k: v for k, v in os.environ.items()
                                  if k not in PORTABLE_ENVIRONMENT}, **env})
    assert done.returncode == 0, done.stdout + done.stderr
    return project / name


def test_portable_bits_ignore_what_the_environment_claims(tiny_data, tmp_path):
    plain = _train(tiny_data, tmp_path, "plain", "--portable", {})
    lesser = _train(tiny_data, tmp_path, "lesser", "--portable", LESSER_CPU)
    assert comparable(plain) == comparable(lesser)
    recorded = yaml.safe_load((lesser / "repro.yaml").read_text())["environment"]["machine"]
    assert recorded["variables"]["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert recorded["kernels"]["cpu_capability"] == "AVX2"
    assert not recorded["kernels"]["mkldnn_enabled"]
    # The same claims do change a --repro run's bits: the test above is not vacuous.
    repro_here = run_train(tiny_data, tmp_path, "--repro", "--name", "repro_here")
    repro_lesser = _train(tiny_data, tmp_path, "repro_lesser", "--repro", LESSER_CPU)
    assert comparable(repro_here) != comparable(repro_lesser)


def test_portable_refuses_what_it_cannot_keep(tiny_data, tmp_path):
    for extra, message in ((["--amp"], "drop --amp"), (["--device", "0"], "a CPU mode"),
                           ([], "started without its kernel settings")):
        with pytest.raises(InputError, match=message):
            run_train(tiny_data, tmp_path, "--portable", *extra)
    assert train.get_args_parser().parse_args(["--portable"]).portable


def test_golden_record_of_this_machine_holds(tmp_path, capsys):
    """On a machine already in the file the bits must match; on a new one the check says so,
    compares with the nearest records and passes."""
    code = golden.main(golden.get_args_parser().parse_args(["--file", str(golden.GOLDEN)]))
    out = capsys.readouterr().out
    if "new machine" in out:
        assert code == 0 and "this machine:" in out
    else:
        assert code == 0, out
        assert "same bits as recorded on" in out


def _trace(env, threads=2):
    done = subprocess.run([sys.executable, "-m", "tools.golden", "--trace", "--threads",
                           str(threads)], cwd=ROOT,
                          capture_output=True, text=True,
                          env=dict(os.environ, PYTHONHASHSEED="0", **env))
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_the_mkl_branch_portable_names_is_in_effect_on_this_cpu():
    """MKL ignores a branch the CPU's vendor does not get (its AVX2 branch is Intel-only: on an
    AMD EPYC it ran AUTO instead, without a word). The branch --portable names must change the
    first convolution's bits against MKL's own choice, here, or it pins nothing."""
    portable = _trace(PORTABLE_ENVIRONMENT)
    auto = _trace(dict(PORTABLE_ENVIRONMENT, MKL_CBWR="AUTO"))
    assert golden.first_trace_difference(portable, auto) == \
        "layer 0 (Conv2d+BatchNorm2d+LeakyReLU), forward"
    assert golden.first_trace_difference(portable, _trace(PORTABLE_ENVIRONMENT)) is None


def test_portable_bits_are_the_same_at_any_thread_count(tiny_data, tmp_path):
    """1, 2 and 3 threads (3 oversubscribes a 2-core machine): the same fingerprints every
    epoch, the same results, and every layer of the trace the same, forward and backward."""
    runs = [_train(tiny_data, tmp_path, f"portable{t}", "--portable", {}, "--threads", str(t))
            for t in (1, 2, 3)]
    assert comparable(runs[0]) == comparable(runs[1]) == comparable(runs[2])
    recorded = [yaml.safe_load((r / "repro.yaml").read_text()) for r in runs]
    assert [r["environment"]["torch_threads"] for r in recorded] == [1, 2, 3]
    assert all(r["options"]["portable_recipe"] == 2 for r in recorded)
    traces = [_trace(PORTABLE_ENVIRONMENT, threads) for threads in (1, 2, 3)]
    assert golden.first_trace_difference(traces[0], traces[1]) is None
    assert golden.first_trace_difference(traces[0], traces[2]) is None
    # Without --portable's order the thread count does part two runs: the test can fail.
    repro = [_train(tiny_data, tmp_path, f"repro{t}", "--repro", {}, "--threads", str(t))
             for t in (1, 2)]
    assert comparable(repro[0]) != comparable(repro[1])


def test_a_portable_run_resumes_at_another_thread_count_to_the_same_bits(tiny_data, tmp_path):
    """The count no longer decides the bits, so it is no longer pinned on resume: a run begun
    on 1 thread continues on 2 as if it had never stopped."""
    whole = _train(tiny_data, tmp_path, "whole", "--portable", {}, "--threads", "2")
    part = _train(tiny_data, tmp_path, "part", "--portable", {}, "--threads", "1",
                  "--stop-after", "1")
    done = subprocess.run([sys.executable, "train.py", "--resume", str(part / "weights"
                                                                        / "last.pt"),
                           "--threads", "2", "--quiet"], cwd=ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert comparable(part) == comparable(whole)
    recorded = yaml.safe_load((part / "repro.yaml").read_text())
    assert recorded["resumes"][0]["environment"]["torch_threads"] == 2
