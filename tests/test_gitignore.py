"""The repository's .gitignore: generated data never makes a clean checkout look modified
(repro.yaml records the commit "with uncommitted changes" when git status shows anything)."""
import shutil
import subprocess

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


@pytest.mark.parametrize("kind", ["folder", "symlink"])
def test_built_in_data_is_ignored_as_a_folder_or_a_symlink(tmp_path, kind):
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    shutil.copy(ROOT / ".gitignore", repo / ".gitignore")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", ".gitignore"], check=True)
    if kind == "folder":
        (repo / "data" / "shapes").mkdir()
        (repo / "data" / "shapes" / "x.png").write_bytes(b"x")
    else:
        (tmp_path / "elsewhere").mkdir()
        (repo / "data" / "shapes").symlink_to(tmp_path / "elsewhere")
    status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain"],
                            capture_output=True, text=True, check=True).stdout
    assert status.splitlines() == ["A  .gitignore"]
