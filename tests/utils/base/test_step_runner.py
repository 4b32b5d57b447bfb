"""The step runner with tiny commands: a hang costs its limit, and every step's record says what
became of it. (A signal sent to the runner: tests/tools/test_gpu_check.py.)"""
import sys
import time

from tests.helpers import process_alive
from utils.base.step_runner import Step, StepRunner

PY = sys.executable
HANG = (PY, "-c", "import time; time.sleep(60)")
PASS = (PY, "-c", "pass")


def test_a_hung_step_is_stopped_at_its_limit_and_the_rest_go_on(tmp_path):
    steps = [Step("hang", HANG, limit=1), Step("after", PASS, limit=30),
             Step("needs_hang", PASS, limit=30, needs=("hang",))]
    seen = []
    runner = StepRunner(steps, tmp_path, budget=120, grace=5,
                        on_change=lambda r: seen.append([x.state for x in r.records]))
    start = time.monotonic()
    assert runner.run_all()
    assert time.monotonic() - start < 15
    hang, after, needs = runner.records
    assert hang.status() == "timed out: limit 1 s; stopped with SIGTERM"
    assert 1 <= hang.seconds < 5
    assert after.ok and after.exit_code == 0
    assert needs.status() == "skipped: needs hang, which timed out (limit 1 s; stopped with " \
                             "SIGTERM)"
    # Reported at the start, when each step starts and when it ends.
    assert seen[0] == ["pending"] * 3 and seen[1] == ["running", "pending", "pending"]
    assert seen[-1] == ["timed out", "ok", "skipped"]
    assert (tmp_path / "hang.log").read_text().startswith(f"$ {PY} -c import time")


def test_a_step_that_ignores_sigterm_is_killed_with_its_children(tmp_path):
    pids = tmp_path / "pids"
    stubborn = ("import os, signal, subprocess, sys, time\n"
                "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
                f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
                "time.sleep(60)\n")
    runner = StepRunner([Step("stubborn", (PY, "-c", stubborn), limit=2)], tmp_path,
                        budget=60, grace=1)
    assert runner.run_all()
    assert runner.records[0].status() == \
        "timed out: limit 2 s; killed with SIGKILL 1 s after SIGTERM"
    for pid in map(int, pids.read_text().split()):
        deadline = time.monotonic() + 5  # the orphaned grandchild is reaped by init
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not process_alive(pid), pid


def test_failures_and_the_budget_skip_with_their_reason(tmp_path):
    steps = [Step("fails", (PY, "-c", "raise SystemExit(3)"), limit=30),
             Step("differs", (PY, "-c", "raise SystemExit(1)"), limit=30, ok_codes=(0, 1)),
             Step("needs_fails", PASS, limit=30, needs=("differs", "fails")),
             Step("missing", (str(tmp_path / "no-such-program"),), limit=30),
             Step("cut", HANG, limit=30), Step("late", PASS, limit=30)]
    runner = StepRunner(steps, tmp_path, budget=3, min_start=1, grace=1)
    assert runner.run_all()
    fails, differs, needs, missing, cut, late = runner.records
    assert fails.status() == "failed: exit 3" and differs.ok
    assert needs.status() == "skipped: needs fails, which failed (exit 3)"
    assert missing.status().startswith("failed: could not start: [Errno 2]")
    assert cut.state == "timed out" and "(what was left of the budget)" in cut.detail
    assert late.status().startswith("skipped: budget spent (")
    assert runner.elapsed() < 10


def test_a_signal_during_the_setup_stops_the_run_with_a_report(tmp_path):
    """Issue 18: the caller's setup runs with the signals caught, after the first report."""
    import os
    import signal

    seen = []

    def setup():
        seen.append("setup")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the signal's handler ends this

    runner = StepRunner([Step("a", PASS, limit=30), Step("b", PASS, limit=30)], tmp_path,
                        budget=60, on_change=lambda r: seen.append([x.state for x in r.records]))
    assert not runner.run_all(setup=setup)
    assert runner.stopped_by == signal.SIGTERM
    assert seen == [["pending", "pending"], "setup", ["not run", "not run"]]
    assert runner.records[0].status() == "not run: SIGTERM to the runner"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handed back


def test_a_step_that_would_not_fit_is_skipped_before_it_starts(tmp_path):
    """Before, a step started whenever 5 s were left and was cut at the budget: a training
    that needs minutes spent the rest of the budget and left nothing."""
    marker = tmp_path / "started"
    steps = [Step("long", (PY, "-c", f"open({str(marker)!r}, 'w')"), limit=300, expected=120),
             Step("short", PASS, limit=30, expected=1)]
    runner = StepRunner(steps, tmp_path, budget=20, min_start=1)
    assert runner.run_all()
    long, short = runner.records
    assert long.state == "skipped" and not marker.exists() and long.log is None
    assert long.detail.startswith("would not fit: takes about 120 s, ")
    assert long.detail.endswith(" s of the 20 s budget left")
    assert short.ok
