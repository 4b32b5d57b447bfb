"""The README as a newcomer reads it: every `python -m <module>` command it shows starts (its
`--help` exits 0), it stays short, and every relative link in it and in docs/ leads to a file."""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import pytest

from tests.helpers import ROOT

README = ROOT / "README.md"
MAX_LINES = 200
FENCED = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"`([^`\n]+)`")
# python or python3, interpreter flags such as -u, then -m and the module (a placeholder such
# as `tools.<name>` is no command).
COMMAND = re.compile(r"\bpython3?(?:\s+-(?!m\b)\w+)*\s+-m\s+([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)"
                     r"(?=\s|$|[`'\"])")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def readme_modules(text: str) -> list[str]:
    """The modules of every `python -m` / `python3 -m` command in the code blocks and inline
    code of ``text``, each once, in order of first appearance."""
    code = FENCED.findall(text)
    code += INLINE.findall(FENCED.sub("", text))
    found = [m.group(1) for block in code for m in COMMAND.finditer(block)]
    return list(dict.fromkeys(found))


MODULES = readme_modules(README.read_text())


def _help(module: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@cache
def help_results() -> dict[str, subprocess.CompletedProcess]:
    """Every module's `--help`, run once, in parallel: each imports torch."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(MODULES, pool.map(_help, MODULES)))


def test_the_command_reader_reads_what_the_readme_writes():
    text = ("```bash\npython train.py --repro\npython -m tools.drift a b  # x\n"
            "python3 -u -m tools.gpu_check --budget 540\n```\n"
            "Run `python -m tools.probe ckpt` or `python -m pytest -m \"not slow\"`, "
            "not `python -m tools.<name>`.\n")
    assert readme_modules(text) == ["tools.drift", "tools.gpu_check", "tools.probe", "pytest"]
    assert {"tools.drift", "tools.gpu_check", "pytest"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_readme_command_starts(module):
    ours = module.split(".")[0] in {"tools", "utils", "models"}
    if not ours and importlib.util.find_spec(module.split(".")[0]) is None:
        pytest.skip(f"{module} is not installed here")
    done = help_results()[module]
    assert done.returncode == 0, (f"python -m {module} --help exited {done.returncode}:\n"
                                  f"{done.stderr[-2000:]}")


def test_readme_is_short():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_LINES, f"README.md has {len(lines)} lines; at most {MAX_LINES}"


def _relative_links(path: Path) -> list[str]:
    text = FENCED.sub("", path.read_text())
    targets = [t.split("#", 1)[0] for t in LINK.findall(text)]
    return [t for t in targets if t and not re.match(r"[a-z][a-z0-9+.-]*:", t, re.I)]


DOCUMENTS = [README, *sorted((ROOT / "docs").rglob("*.md"))]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_lead_to_files(document):
    missing = [t for t in _relative_links(document) if not (document.parent / t).exists()]
    assert missing == [], f"{document.relative_to(ROOT)} links to missing files: {missing}"
