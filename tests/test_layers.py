"""The import rules of docs/ARCHITECTURE.md, read from the folders: a module's layer is the folder
it sits in (`utils/<layer>/`, `models/`, `tools/`, the scripts at the top), so there is nothing to
register. Each module imports only its own layer or those below it, model and data do not import
each other, no module imports a script, no script imports a tool, and no two modules import each
other through any chain."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import ROOT

SCRIPTS = ("train", "test", "detect")
UTILS_LAYERS = ("base", "core", "data", "engine")
RANK = {"base": 0, "core": 1, "model": 2, "data": 2, "engine": 3, "tools": 4, "scripts": 5}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str | None:
    """The layer a module's path puts it in; None for a package that holds layers (`utils`)."""
    parts = module.split(".")
    if module in SCRIPTS:
        return "scripts"
    if parts[0] == "models":
        return "model"
    if parts[0] == "tools":
        return "tools"
    if parts[0] == "utils" and len(parts) >= 2:
        if parts[1] not in UTILS_LAYERS:
            raise AssertionError(f"{module}: utils/ holds only the layer folders {UTILS_LAYERS}")
        return parts[1]
    return None


SOURCES = sorted([*ROOT.glob("utils/**/*.py"), *ROOT.glob("models/**/*.py"),
                  *ROOT.glob("tools/**/*.py"), *(ROOT / f"{s}.py" for s in SCRIPTS)])
MODULES = {_module_name(p) for p in SOURCES}


def _imports(path: Path) -> set[str]:
    """The project's modules this file imports (a `from package import module` counts as the
    module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name in MODULES}


def test_utils_holds_only_layer_folders():
    loose = sorted(p.name for p in (ROOT / "utils").glob("*.py") if p.name != "__init__.py")
    assert loose == [], "a library module goes in the folder of its layer: utils/<layer>/"
    assert (ROOT / "scripts").exists() is False, "commands live in tools/"


@pytest.mark.parametrize("path", SOURCES, ids=_module_name)
def test_imports_go_down_only(path):
    me = _module_name(path)
    mine = layer_of(me)
    for other in _imports(path):
        theirs = layer_of(other)
        if mine is None or theirs is None or other == me:
            continue
        assert RANK[theirs] <= RANK[mine], f"{me} ({mine}) imports {other} ({theirs})"
        assert {mine, theirs} != {"model", "data"}, f"{me} ({mine}) imports {other} ({theirs})"
        assert theirs != "scripts", f"{me} imports the script {other}"
        assert not (mine == "scripts" and theirs == "tools"), \
            f"the script {me} imports the tool {other}: what it needs belongs in the library"


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """A chain of imports that comes back to where it started, or None."""
    done: set[str] = set()

    def visit(node: str, chain: list[str]) -> list[str] | None:
        if node in chain:
            return chain[chain.index(node):] + [node]
        if node in done:
            return None
        for nxt in sorted(graph.get(node, ())):
            if found := visit(nxt, chain + [node]):
                return found
        done.add(node)
        return None

    for module in sorted(graph):
        if found := visit(module, []):
            return found
    return None


def test_no_import_circle():
    graph = {_module_name(p): _imports(p) - {_module_name(p)} for p in SOURCES}
    circle = find_circle(graph)
    assert circle is None, "import circle: " + " -> ".join(circle or [])


def test_the_checks_can_fail():
    """The layer reader and the circle finder catch what they are there to catch."""
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
    assert layer_of("tools.drift") == "tools" and layer_of("utils.core.boxes") == "core"
    assert layer_of("train") == "scripts" and layer_of("models.darknet") == "model"
    with pytest.raises(AssertionError, match="utils/ holds only"):
        layer_of("utils.misc.thing")
