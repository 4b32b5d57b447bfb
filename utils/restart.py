"""Restart the interpreter once with PYTHONHASHSEED fixed, for --repro runs.

PYTHONHASHSEED only acts at interpreter start, so it cannot be set from inside a running
process; CUBLAS_WORKSPACE_CONFIG is set in the same step because it must precede CUDA's start.
A resumed run is a --repro run when its recorded options say so, whatever the command line.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

from utils.repro import CUBLAS_WORKSPACE


def _option_value(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def wants_repro(argv: list[str]) -> bool:
    """Whether train.py's arguments ask for a --repro run, directly or by resuming one."""
    if "--repro" in argv:
        return True
    resume = _option_value(argv, "--resume")
    if not resume:
        return False
    path = Path(resume)
    options = (path if path.is_dir() else path.parent.parent) / "opt.yaml"
    try:
        return bool((yaml.safe_load(options.read_text()) or {}).get("repro"))
    except (OSError, yaml.YAMLError, AttributeError):
        return False  # train.py itself reports an unreadable run


def restart_command() -> list[str]:
    """This interpreter's command line as it was typed, interpreter flags (``-u``, ``-X``)
    included."""
    return [sys.executable, *sys.orig_argv[1:]]


def restart_with_fixed_hash_seed() -> None:
    """Re-execute this process with PYTHONHASHSEED=0 when a --repro run starts without it."""
    if os.environ.get("PYTHONHASHSEED") == "0" or not wants_repro(sys.argv[1:]):
        return
    env = dict(os.environ, PYTHONHASHSEED="0")
    env.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    os.execve(sys.executable, restart_command(), env)
