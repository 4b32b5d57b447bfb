"""``results.txt``: one line per epoch, in the ultralytics column order, then mAP@0.5:0.95 and a
fingerprint of the raw weights. Reads this format and the original 15-column one.

Floats are written with ``repr``, the shortest text that reads back to the same float, so two
runs that differ in the last bit differ in the file too.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from utils.base.atomic_io import atomic_write_text
from utils.base.errors import InputError

COLUMNS = ("epoch", "mem_gb", "box", "obj", "cls", "total", "targets", "img_size", "P", "R",
           "mAP@0.5", "F1", "val_box", "val_obj", "val_cls", "mAP@0.5:0.95", "fingerprint")
ULTRALYTICS_COLUMNS = COLUMNS[:15]
# Columns whose values depend on the machine's load or memory, not on the training's numbers.
NOT_COMPARED = ("mem_gb",)
HEADER = "# " + " ".join(f"{c:>22}" for c in COLUMNS)[2:]


@dataclass
class EpochResult:
    epoch: int
    epochs: int
    values: dict[str, float]  # every numeric column but epoch
    fingerprint: str | None
    line: int  # line number in the file, for messages


def format_line(epoch: int, epochs: int, values: dict[str, float], fingerprint: str) -> str:
    cells = [f"{epoch}/{epochs - 1}"]
    for name in COLUMNS[1:-1]:
        v = values[name]
        cells.append(str(int(v)) if name in ("targets", "img_size") else repr(float(v)))
    cells.append(fingerprint)
    return " ".join(f"{c:>22}" for c in cells)


def write_results(path: str | Path, lines: list[str]) -> None:
    """Rewrite the whole file atomically: header, then one line per finished epoch; and
    results.csv beside it, the same columns and numbers for a spreadsheet or pandas."""
    atomic_write_text(path, "\n".join([HEADER, *lines]) + "\n")
    atomic_write_text(Path(path).with_suffix(".csv"), results_csv(lines))


def results_csv(lines: list[str]) -> str:
    """results.txt's lines as CSV: a header of :data:`COLUMNS`, the epoch as a number, every
    other cell as results.txt writes it (``repr`` of the float: full precision)."""
    out = [",".join(COLUMNS)]
    for line in lines:
        cells = line.split()
        out.append(",".join([cells[0].split("/")[0], *cells[1:]]))
    return "\n".join(out) + "\n"


def read_results(path: str | Path) -> list[EpochResult]:
    """Parse our results.txt or the original ultralytics one. Raises InputError with file and
    line on anything else."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.txt"
    if not path.is_file():
        raise InputError("no such results file (expected a run folder or a results.txt)", path)
    rows = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        cells = line.split()
        if len(cells) == len(COLUMNS):
            names, fingerprint = COLUMNS[1:-1], cells[-1]
            numbers = cells[1:-1]
        elif len(cells) == len(ULTRALYTICS_COLUMNS):
            names, fingerprint, numbers = ULTRALYTICS_COLUMNS[1:], None, cells[1:]
        else:
            raise InputError(f"{len(cells)} columns, expected {len(COLUMNS)} (this project's "
                             f"format) or {len(ULTRALYTICS_COLUMNS)} (ultralytics)", path, number)
        try:
            epoch_text, last_text = cells[0].split("/")
            epoch, epochs = int(epoch_text), int(last_text) + 1
            values = {n: float(v.rstrip("G")) for n, v in zip(names, numbers)}
        except ValueError:
            raise InputError(f"expected 'epoch/last' then numbers, got {line[:80]!r}",
                             path, number) from None
        rows.append(EpochResult(epoch, epochs, values, fingerprint, number))
    if not rows:
        raise InputError("no epoch lines", path)
    return rows


PLOTTED = ("box", "obj", "cls", "P", "R", "val_box", "val_obj", "val_cls", "mAP@0.5",
           "mAP@0.5:0.95")


def plot_panels(rows: list[EpochResult]) -> list[tuple[str, list[float], str | None]]:
    """(column, its values by epoch, a note drawn instead of a curve). A class loss that is 0
    at every epoch is a one-class model's (the loss has no class term then): a flat line at 0
    would read as a perfect classifier, so the panel says why it is empty."""
    panels = []
    for name in PLOTTED:
        values = [r.values.get(name, float("nan")) for r in rows]
        note = "one class: no class loss" if name in ("cls", "val_cls") and values and \
            all(v == 0.0 for v in values) else None
        panels.append((name, values, note))
    return panels


def plot_results(path: str | Path, out: str | Path) -> None:
    """Plot each metric of a results.txt against the epoch into ``out`` (results.png)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_results(path)
    fig, axes = plt.subplots(2, 5, figsize=(15, 6), tight_layout=True)
    epochs = [r.epoch for r in rows]
    for ax, (name, values, note) in zip(axes.ravel(), plot_panels(rows)):
        ax.set_title(name)
        ax.set_xlabel("epoch")
        if note:
            ax.text(0.5, 0.5, note, ha="center", va="center", transform=ax.transAxes,
                    color="grey")
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        ax.plot(epochs, values, marker=".")
    fig.savefig(out, dpi=120)
    plt.close(fig)
