"""The GPU script's dry run: every step on the CPU with tiny settings, so a mistake shows here,
not on the borrowed machine."""
import pytest

from scripts.gpu_check import get_args_parser, main

pytestmark = pytest.mark.slow


def test_dry_run_runs_every_step_and_writes_the_summary(tmp_path):
    summary = main(get_args_parser().parse_args(["--dry-run", "--out", str(tmp_path)]))
    text = summary.read_text()
    steps = ["pytest_cuda", "gpu_repro_a", "gpu_repro_b", "cpu_repro", "gpu_ordinary_a",
             "gpu_ordinary_b", "drift_gpu_repro", "drift_gpu_ordinary", "drift_cpu_vs_gpu",
             "probe_cpu_vs_gpu", "benchmark"]
    for step in steps:
        assert f"| {step} | ok |" in text, step
    assert "- **gpu_repro**: identical to the last bit through epoch 1" in text
    assert "- **cpu_vs_gpu**:" in text and "every layer matched" in text
    assert text.count("| micro | 64 |") == 3  # repro fp32, fp32, amp rows
    assert (tmp_path / "runs" / "gpu_repro_a" / "results.txt").is_file()
