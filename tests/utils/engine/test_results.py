"""utils.engine.results: results.txt written and read back, and what results.png draws."""
from utils.engine.results import (
    COLUMNS,
    format_line,
    plot_panels,
    plot_results,
    read_results,
    write_results,
)


def _results(tmp_path, cls_values):
    lines = []
    for epoch, cls in enumerate(cls_values):
        values = {name: 0.5 for name in COLUMNS[1:-1]}
        values.update(cls=cls, val_cls=cls, targets=3, img_size=64)
        lines.append(format_line(epoch, len(cls_values), values, "0" * 16))
    path = tmp_path / "results.txt"
    write_results(path, lines)
    return path


def test_a_one_class_runs_class_loss_panels_say_why_they_are_empty(tmp_path):
    one_class = {name: note for name, _, note in plot_panels(read_results(
        _results(tmp_path, [0.0, 0.0, 0.0])))}
    assert one_class["cls"] == one_class["val_cls"] == "one class: no class loss"
    assert one_class["box"] is None
    several = {name: note for name, _, note in plot_panels(read_results(
        _results(tmp_path, [0.3, 0.2, 0.0])))}
    assert several["cls"] is None and several["val_cls"] is None
    plot_results(tmp_path / "results.txt", tmp_path / "results.png")
    assert (tmp_path / "results.png").stat().st_size > 10_000
