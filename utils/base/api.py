"""Scripts called from Python (a notebook) without building argv: ``train.run(epochs=3)``
goes through the script's own parser, so every default, check and refusal is the command
line's, and an unknown keyword is refused with its name."""
from __future__ import annotations

import argparse
import contextlib
import io

from utils.base.errors import InputError


def args_from_keywords(parser: argparse.ArgumentParser, options: dict, script: str
                       ) -> argparse.Namespace:
    """The Namespace ``parser`` makes of the command line these keywords stand for:
    ``batch_size=8`` is ``--batch-size 8``, ``repro=True`` is ``--repro``, ``tb=False`` is
    ``--no-tb``, a list is several values."""
    actions = {a.dest: a for a in parser._actions if a.option_strings}
    argv = []
    for key, value in options.items():
        action = actions.get(key)
        if action is None or key == "help":
            known = ", ".join(sorted(k for k in actions if k != "help"))
            raise InputError(f"{script}.run(): unknown option {key!r}; expected one of {known}")
        flag = next(s for s in action.option_strings if s.startswith("--"))
        argv += _words(action, flag, value)
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            return parser.parse_args(argv)
    except SystemExit:  # argparse's own refusal (a wrong type, a choice not offered)
        message = stderr.getvalue().strip().splitlines()[-1] if stderr.getvalue() else ""
        raise InputError(f"{script}.run(): {message.split('error: ')[-1]}") from None


def _words(action: argparse.Action, flag: str, value) -> list[str]:
    if isinstance(action, argparse.BooleanOptionalAction):
        return [flag] if value else [f"--no-{flag[2:]}"] if value is not None else []
    if action.nargs == 0:  # store_true and its kind
        return [flag] if value else []
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [flag, *map(str, value)]
    return [flag, str(value)]
