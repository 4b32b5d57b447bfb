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
