"""Restart the interpreter once when a run needs variables that act only at interpreter start.

PYTHONHASHSEED only acts at interpreter start, so it cannot be set from inside a running
process, nor can the variables that pick the CPU kernels (--portable); CUBLAS_WORKSPACE_CONFIG
is set in the same step (a user's own value is kept). What a
run needs is read from its resolved options (``utils.engine.options.RunOptions``), never from the
command line's text: an abbreviated ``--repr`` and a resumed --repro run restart alike.
"""
from __future__ import annotations

import os
import sys
from typing import Mapping

from utils.base.repro import CUBLAS_WORKSPACE, PORTABLE_ENVIRONMENT


def required_environment(options) -> dict[str, str]:
    """The variables ``options`` (a RunOptions) need set before the interpreter starts:
    PYTHONHASHSEED for --repro, and for --portable the kernel-steering variables, whatever the
    user's environment said (each is recorded in repro.yaml)."""
    env = {"PYTHONHASHSEED": "0"} if options.repro else {}
    if options.portable:
        env.update(PORTABLE_ENVIRONMENT)
    return env


def needs_restart(options, environ: Mapping[str, str] = os.environ) -> bool:
    return any(environ.get(k) != v for k, v in required_environment(options).items())


def restart_command() -> list[str]:
    """This interpreter's command line as it was typed, interpreter flags (``-u``, ``-X``)
    included."""
    return [sys.executable, *sys.orig_argv[1:]]


def restart_if_needed(options) -> None:
    """Re-execute this process with the variables ``options`` need, when any is missing."""
    if not needs_restart(options):
        return
    env = dict(os.environ, **required_environment(options))
    env.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, restart_command(), env)
