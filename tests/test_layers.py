"""The import rules of docs/ARCHITECTURE.md: each module imports only its own layer or those
below it, model and data do not import each other, and no module imports a script."""
from __future__ import annotations

import ast

import pytest

from tests.helpers import ROOT

LAYERS = {
    "base": {"utils.errors", "utils.repro", "utils.atomic_io", "utils.device", "utils.machine",
             "utils.host_memory"},
    "core": {"utils.boxes", "utils.loss", "utils.nms", "utils.metrics", "utils.schedule",
             "utils.bootstrap", "utils.significance"},
    "model": {"models", "models.cfg_parser", "models.darknet", "models.layers",
              "models.darknet_weights"},
    "data": {"utils.data_config", "utils.labels", "utils.image_io", "utils.augment",
             "utils.datasets", "utils.shapes", "utils.coco_json", "utils.inputs", "utils.plots",
             "utils.hyp"},
    "engine": {"utils.engine", "utils.evaluation", "utils.checkpoint", "utils.ema",
               "utils.run_plan", "utils.run_record", "utils.results", "utils.precision",
               "utils.distributed", "utils.restart", "utils.training_setup"},
    "tools": {"utils.drift", "utils.probe", "utils.benchmark", "utils.roofline",
              "utils.convert_weights",
              "utils.compare_groups", "utils.seed_groups", "utils.export", "utils.convert_labels",
              "utils.golden", "utils.step_runner", "utils.gpu_summary",
              "scripts", "scripts.gpu_check", "scripts.seed_group"},
    "scripts": {"train", "test", "detect"},
}
RANK = {"base": 0, "core": 1, "model": 2, "data": 2, "engine": 3, "tools": 4, "scripts": 5}
LAYER_OF = {module: layer for layer, modules in LAYERS.items() for module in modules}


def _module_name(path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name in LAYER_OF}


SOURCES = sorted([*ROOT.glob("utils/*.py"), *ROOT.glob("models/*.py"),
                  *ROOT.glob("scripts/*.py"), ROOT / "train.py", ROOT / "test.py",
                  ROOT / "detect.py"])


def test_every_module_has_a_layer():
    names = {_module_name(p) for p in SOURCES} - {"utils"}
    assert names - set(LAYER_OF) == set(), "add new modules to LAYERS and ARCHITECTURE.md"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: _module_name(p))
def test_imports_go_down_only(path):
    me = _module_name(path)
    if me == "utils":
        return
    mine = LAYER_OF[me]
    for other in _imports(path):
        theirs = LAYER_OF[other]
        assert RANK[theirs] <= RANK[mine], f"{me} ({mine}) imports {other} ({theirs})"
        assert {mine, theirs} != {"model", "data"}, f"{me} ({mine}) imports {other} ({theirs})"
        assert theirs != "scripts" or me == other, f"{me} imports the script {other}"
