import sys

import yaml

from utils.restart import restart_command, wants_repro


def test_repro_on_the_command_line_or_in_the_resumed_run(tmp_path):
    assert wants_repro(["--repro", "--epochs", "3"])
    assert not wants_repro(["--epochs", "3"])
    run = tmp_path / "exp"
    (run / "weights").mkdir(parents=True)
    (run / "opt.yaml").write_text(yaml.safe_dump({"repro": True}))
    assert wants_repro(["--resume", str(run)])
    assert wants_repro([f"--resume={run / 'weights' / 'last.pt'}"])
    (run / "opt.yaml").write_text(yaml.safe_dump({"repro": False}))
    assert not wants_repro(["--resume", str(run)])
    assert not wants_repro(["--resume", str(tmp_path / "missing")])


def test_restart_keeps_interpreter_flags(monkeypatch):
    monkeypatch.setattr(sys, "orig_argv", ["python3", "-u", "-X", "dev", "train.py", "--repro"])
    assert restart_command() == [sys.executable, "-u", "-X", "dev", "train.py", "--repro"]
