import torch

from utils.base.host_memory import allocator_state
from utils.engine.run_record import environment, file_digest, files_digest, next_run_dir


def test_run_folders_are_never_reused(tmp_path):
    first = next_run_dir(tmp_path / "runs", "exp")
    second = next_run_dir(tmp_path / "runs", "exp")
    assert (first.name, second.name) == ("exp", "exp2") and first.is_dir() and second.is_dir()


def test_digests_see_names_and_bytes(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("1")
    b.write_text("2")
    both = files_digest([a, b])
    assert both == files_digest([b, a])  # order of the list does not matter
    b.write_text("3")
    assert files_digest([a, b]) != both
    a.rename(tmp_path / "c.txt")
    assert files_digest([tmp_path / "c.txt", b]) != files_digest([a.with_name("a2"), b])
    assert len(file_digest(b)) == 64


def test_environment_names_what_changes_bits():
    env = environment(torch.device("cpu"))
    for key in ("torch", "device", "torch_threads", "deterministic_algorithms", "cudnn_allow_tf32",
                "PYTHONHASHSEED", "numpy", "opencv"):
        assert key in env
    assert env["torch"] == str(torch.__version__) and env["device"] == "cpu"


def test_environment_records_the_host_allocator():
    # What training_setup's retain_freed_memory() decided for this process (the tests'
    # process may or may not have trained yet): the record reads it, it does not decide it.
    state = environment(torch.device("cpu"))["host_allocator"]
    assert state == allocator_state() and state


def test_a_cfg_differing_only_by_the_fitted_anchors_is_not_a_changed_cfg():
    """A resumed run's checkpoint holds the cfg with autoanchor's anchors; the file never had
    them, so only another difference is reported (check_inputs_unchanged)."""
    import numpy as np

    from models.darknet import anchored_cfg_text, cfg_anchors
    from tests.helpers import MICRO_CFG
    from utils.engine.run_record import _cfg_changed
    text = MICRO_CFG.read_text()
    slots, _ = cfg_anchors(text)
    fitted = anchored_cfg_text(text, slots * 1.5 + np.arange(12).reshape(6, 2))
    assert not _cfg_changed(text, text, MICRO_CFG)
    assert not _cfg_changed(text, fitted, MICRO_CFG)
    assert _cfg_changed(text.replace("classes=4", "classes=3"), fitted, MICRO_CFG)
    assert _cfg_changed(text.replace("anchors = 6,6,", "anchors = 7,7,"), text, MICRO_CFG)
    assert _cfg_changed("[net]\n", fitted, MICRO_CFG)  # no longer a cfg: changed
