"""Subprocesses of the tests, each under a time limit set from its measured duration.

``run_timed(cmd, measured_s=..., doing=...)`` is ``subprocess.run(cmd, capture_output=True, text=True)``
with a limit of ``MARGIN`` times the measured duration (at least ``FLOOR_S``). A run that reaches its
limit fails the test with what it was doing, how long it ran, the limit and the figure it came from,
the command, and the last lines of its output, so a stopped run says where it was.

The measured durations are those of BENCHMARKS.md ("Time limits of the tests"): each call site passes
the slowest figure measured for it. The margin is wide because the tests share their machine: on
two cores with another heavy job beside them, a run took more than 4 times its quiet duration.
To measure the figures again, set ``TGAZSR_TEST_DURATIONS`` to a file: each run appends a line with
its duration in seconds, its measured figure and what it was doing.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time

import pytest

MARGIN = 10
FLOOR_S = 180.0
TAIL_CHARS = 3000


def time_limit(measured_s: float) -> float:
    """The limit for a run measured at ``measured_s`` seconds."""
    if not measured_s > 0:
        raise ValueError(f"measured_s must be a positive duration in seconds, got {measured_s!r}")
    return max(FLOOR_S, MARGIN * float(measured_s))


def _text(data) -> str:
    if data is None:
        return ""
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data


def _tail(text: str, chars: int = TAIL_CHARS) -> str:
    return text if len(text) <= chars else "..." + text[-chars:]


def timeout_report(cmd, doing: str, elapsed: float, limit: float, measured_s: float, stdout, stderr) -> str:
    """The failure message of a run stopped at its limit."""
    command = cmd if isinstance(cmd, str) else shlex.join(str(part) for part in cmd)
    return (f"{doing}: stopped after {elapsed:.0f} s at its time limit of {limit:.0f} s "
            f"({MARGIN}x its measured {measured_s:g} s, at least {FLOOR_S:g} s; see BENCHMARKS.md)\n"
            f"command: {command}\n"
            f"last stdout:\n{_tail(_text(stdout)) or '(none)'}\n"
            f"last stderr:\n{_tail(_text(stderr)) or '(none)'}")


def run_timed(cmd, *, measured_s: float, doing: str, **kwargs) -> subprocess.CompletedProcess:
    """Run ``cmd`` (output captured as text) under ``time_limit(measured_s)``; on reaching the limit,
    fail the test with ``timeout_report``. ``kwargs`` go to ``subprocess.run`` (cwd, env, input)."""
    limit = time_limit(measured_s)
    start = time.monotonic()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, **kwargs)
    except subprocess.TimeoutExpired as stopped:
        pytest.fail(timeout_report(cmd, doing, time.monotonic() - start, limit, measured_s,
                                   stopped.stdout, stopped.stderr), pytrace=False)
    log = os.environ.get("TGAZSR_TEST_DURATIONS")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"{time.monotonic() - start:.1f}\t{measured_s:g}\t{doing}\n")
    return done
