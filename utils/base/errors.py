"""The project's own error types: each message names the file, the line and what was expected."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable


class InputError(ValueError):
    """Bad user input (a file or an option). ``str(err)`` is the whole message for the user."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        where = ""
        if self.path is not None:
            where = self.path if line is None else f"{self.path}:{line}"
            where += ": "
        super().__init__(where + message)


class CfgError(InputError):
    """A darknet .cfg file that cannot be turned into a model."""


class DataConfigError(InputError):
    """A .data file (or a path it names) that cannot be used."""


class LabelError(InputError):
    """One bad row in a YOLO label file."""


class ImageError(InputError):
    """An image file that cannot be decoded."""


class WeightsError(InputError):
    """A weights or checkpoint file that does not fit the model."""


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """'1 class', '3 classes': a count with its noun in the right number."""
    if count == 1:
        return f"1 {noun}"
    return f"{count} {plural or noun + ('es' if noun.endswith('s') else 's')}"


def report_input_error(err: InputError) -> int:
    """Print a bad-input message the way every command does; returns exit status 2."""
    print(f"error: {err}", file=sys.stderr)
    return 2


def run_script(main: Callable, parser) -> None:
    """Run a script's ``main`` on its parsed arguments; bad input ends it with its message and
    exit status 2, not a traceback."""
    try:
        main(parser.parse_args())
    except InputError as err:
        sys.exit(report_input_error(err))
