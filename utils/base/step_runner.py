"""Commands run one after another, each in its own process group under a time limit, inside
one overall budget, with a record of every step that is complete at any moment.

A step that outlives its limit gets SIGTERM, then SIGKILL after a grace period, sent to its
whole process group (a training's DataLoader workers die with it): a hung step costs its
limit, not the budget. A step starts only while the budget lasts (at least the seconds it is
expected to take are left) and only when the steps it needs succeeded; otherwise it is
skipped before it starts, and its record says why. SIGTERM or SIGINT sent to
the runner (from the moment ``run_all`` starts, the caller's setup included) stops the running
step the same way and marks the others, so the caller can still write its report:
``on_change`` is called when the run starts, whenever a step changes state, and once more after
such a stop.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

POLL_SECONDS = 0.1
CAUGHT_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass(frozen=True)
class Step:
    """One command. ``limit``: the seconds it may run; ``needs``: the steps that must have
    succeeded before it starts; ``ok_codes``: the exit statuses that count as success (a drift
    report's 1, "the runs differ", is a result, not a failure); ``expected``: the seconds a
    healthy run of it takes: with less than that left of the budget it is skipped before it
    starts (a training cut at the budget leaves no result worth its seconds, which a shorter
    step after it could have used)."""
    name: str
    command: tuple[str, ...]
    limit: float
    needs: tuple[str, ...] = ()
    ok_codes: tuple[int, ...] = (0,)
    env: Mapping[str, str] = field(default_factory=dict)
    expected: float = 0.0


@dataclass
class Record:
    """Where a step stands: pending, running, ok, failed, timed out, skipped, stopped or not
    run; ``detail`` says why for each state but ok and pending."""
    step: Step
    state: str = "pending"
    detail: str = ""
    seconds: float = 0.0
    limit: float | None = None
    exit_code: int | None = None
    log: Path | None = None
    started: float | None = None

    @property
    def ok(self) -> bool:
        return self.state == "ok"

    def status(self) -> str:
        return f"{self.state}: {self.detail}" if self.detail else self.state


class Stopped(Exception):
    """A signal asked the runner to stop."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StepRunner:
    def __init__(self, steps: list[Step], log_dir: Path, budget: float, cwd: Path | None = None,
                 grace: float = 10.0, min_start: float = 5.0,
                 on_change: Callable[[StepRunner], None] | None = None,
                 started: float | None = None):
        """``budget``: seconds from ``started`` (a time.monotonic(), default now) that all steps
        share; a step is cut to what is left of it and is skipped when under ``min_start``
        seconds are left. ``grace``: seconds between a step's SIGTERM and its SIGKILL."""
        names = [s.name for s in steps]
        if len(set(names)) != len(names):
            raise ValueError(f"step names repeat: {names}")
        self.records = [Record(s) for s in steps]
        self.log_dir, self.budget, self.cwd = Path(log_dir), budget, cwd
        self.grace, self.min_start, self.on_change = grace, min_start, on_change
        self.started = time.monotonic() if started is None else started
        self.stopped_by: int | None = None
        self._child: subprocess.Popen | None = None
        self._deferring = False
        self._pending_signal: int | None = None

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def record(self, name: str) -> Record:
        return next(r for r in self.records if r.step.name == name)

    def run_all(self, setup: Callable[[], None] | None = None) -> bool:
        """Every step in order. True when each was run or skipped, False when a signal
        stopped the run (``stopped_by`` holds it; the running step was killed, the steps
        after it are marked "not run"). ``setup``: what the steps need made first (their data,
        say), run once the signals are caught and the first report is written, so that a stop
        while it runs is reported like one during a step."""
        previous = self._catch_signals()
        try:
            self._changed()
            if setup is not None:
                setup()
            for record in self.records:
                self._run_step(record)
        except Stopped as stop:
            self._stop_everything(stop.signum)
            return False
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return True

    def _catch_signals(self) -> dict:
        if threading.current_thread() is not threading.main_thread():
            return {}  # Python runs handlers in the main thread only
        return {s: signal.signal(s, self._on_signal) for s in CAUGHT_SIGNALS}

    def _on_signal(self, signum, frame) -> None:
        if self._deferring:
            self._pending_signal = signum
            return
        raise Stopped(signum)

    @contextlib.contextmanager
    def _signals_deferred(self):
        """A signal that arrives here is raised at the end of the block: between the fork and
        the moment the child is known, a stop would leave it running unseen."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
            if self._pending_signal is not None:
                raise Stopped(self._pending_signal)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self)

    def _blocker(self, step: Step) -> Record | None:
        for name in step.needs:
            need = self.record(name)
            if not need.ok:
                return need
        return None

    def _run_step(self, record: Record) -> None:
        step = record.step
        blocker = self._blocker(step)
        left = self.budget - self.elapsed()
        if blocker is not None:
            record.state = "skipped"
            record.detail = f"needs {blocker.step.name}, which {_outcome(blocker)}"
        elif left < self.min_start:
            record.state = "skipped"
            record.detail = (f"budget spent ({self.elapsed():.0f} s of {self.budget:.0f} s "
                             "gone)")
        elif left < step.expected:
            record.state = "skipped"
            record.detail = (f"would not fit: takes about {step.expected:.0f} s, {left:.0f} s "
                             f"of the {self.budget:.0f} s budget left")
        else:
            self._execute(record, min(step.limit, left))
        self._changed()

    def _execute(self, record: Record, limit: float) -> None:
        step = record.step
        record.limit, record.started = limit, time.monotonic()
        record.log = self.log_dir / f"{step.name}.log"
        record.state, record.detail = "running", f"for up to {limit:.0f} s"
        self._changed()
        with open(record.log, "w") as log:
            log.write("$ " + " ".join(step.command) + "\n")
            log.flush()
            try:
                with self._signals_deferred():
                    self._child = subprocess.Popen(
                        step.command, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT,
                        env=dict(os.environ, **step.env), **_own_process_group())
            except OSError as err:  # no such program, say: this step fails, the others run
                record.seconds = time.monotonic() - record.started
                record.state, record.detail = "failed", f"could not start: {err}"
                return
            child = self._child
            how = self._wait_or_stop(child, limit)
            self._child = None  # ended, leftovers killed: a stop from here on leaves it be
            code = child.wait()
        record.seconds, record.exit_code = time.monotonic() - record.started, code
        if how:
            cut = " (what was left of the budget)" if limit < step.limit else ""
            record.state, record.detail = "timed out", f"limit {limit:.0f} s{cut}; {how}"
        elif code in step.ok_codes:
            record.state, record.detail = "ok", ""
        else:
            record.state, record.detail = "failed", _exit_text(code)

    def _wait_or_stop(self, child: subprocess.Popen, limit: float) -> str:
        """Wait for ``child`` up to ``limit`` seconds; past it, stop its group. Returns how it
        was stopped, "" when it ended by itself. The child is left unreaped, so its group id
        cannot be reused while its leftovers are killed."""
        if _exited_within(child, limit):
            _signal_group(child, signal.SIGKILL)  # leftovers only: the leader has exited
            return ""
        return self._terminate(child)

    def _terminate(self, child: subprocess.Popen) -> str:
        _signal_group(child, signal.SIGTERM)
        how = "stopped with SIGTERM"
        if not _exited_within(child, self.grace):
            how = f"killed with SIGKILL {self.grace:.0f} s after SIGTERM"
        _signal_group(child, signal.SIGKILL)
        return how

    def _stop_everything(self, signum: int) -> None:
        """After a signal: the running step is stopped, the later ones are marked, the report
        is written (before the child's grace period, in case a SIGKILL follows the signal
        here too), then the child is killed."""
        for s in CAUGHT_SIGNALS:
            with contextlib.suppress(ValueError):  # not the main thread
                signal.signal(s, signal.SIG_IGN)
        self.stopped_by = signum
        child, self._child = self._child, None
        if child is not None:
            _signal_group(child, signal.SIGTERM)
        why = f"{signal.Signals(signum).name} to the runner"
        for record in self.records:
            if record.state == "running":
                record.state, record.detail = "stopped", why
                record.seconds = time.monotonic() - (record.started or self.started)
            elif record.state == "pending":
                record.state, record.detail = "not run", why
        try:
            self._changed()
        finally:
            if child is not None:
                self._terminate(child)
                child.wait()


def _own_process_group() -> dict:
    """Popen's arguments for a child leading its own process group (so the group can be
    killed whole) in this session (so whoever ends this session ends it too)."""
    if sys.version_info >= (3, 11):
        return {"process_group": 0}
    return {"preexec_fn": os.setpgrp}


def _exited_within(child: subprocess.Popen, seconds: float) -> bool:
    """Whether ``child`` exits within ``seconds``, without reaping it."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            found = os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # already reaped
            return True
        if found is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(POLL_SECONDS, max(deadline - time.monotonic(), 0.0)))


def _signal_group(child: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signum)


def _exit_text(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit {code}"


def _outcome(record: Record) -> str:
    if record.state == "skipped":
        return "was skipped"
    return f"{record.state} ({record.detail})" if record.detail else record.state
