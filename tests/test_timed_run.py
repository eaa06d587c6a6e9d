"""The tests' subprocess helper: limits from measured durations, and a stopped run that says where it was."""

from __future__ import annotations

import sys

import pytest

import timed_run
from timed_run import run_timed, time_limit


def test_the_limit_is_a_wide_multiple_of_the_measured_duration():
    assert timed_run.MARGIN >= 3
    assert time_limit(75) == timed_run.MARGIN * 75
    assert time_limit(1) == timed_run.FLOOR_S
    with pytest.raises(ValueError, match="positive duration"):
        time_limit(0)


def test_a_run_stopped_at_its_limit_says_how_long_what_and_where(monkeypatch):
    monkeypatch.setattr(timed_run, "FLOOR_S", 0.0)
    monkeypatch.setattr(timed_run, "MARGIN", 1)
    script = "import sys, time\nprint('rendering step 7', flush=True)\nprint('half way', file=sys.stderr, flush=True)\n" \
             "time.sleep(60)\n"
    with pytest.raises(pytest.fail.Exception) as stopped:
        run_timed([sys.executable, "-c", script], measured_s=3, doing="a script that hangs")
    message = str(stopped.value)
    assert message.startswith("a script that hangs: stopped after 3 s at its time limit of 3 s")
    assert "measured 3 s" in message and "command: " in message and "time.sleep(60)" in message
    assert "rendering step 7" in message and "half way" in message  # the tail of both streams


def test_a_finished_run_is_returned_and_its_duration_logged_on_request(tmp_path, monkeypatch):
    log = tmp_path / "durations.tsv"
    monkeypatch.setenv("TGAZSR_TEST_DURATIONS", str(log))
    done = run_timed([sys.executable, "-c", "print('ok')"], measured_s=5, doing="printing ok")
    assert done.returncode == 0 and done.stdout == "ok\n"
    seconds, measured, doing = log.read_text().strip().split("\t")
    assert float(seconds) >= 0 and measured == "5" and doing == "printing ok"


def test_each_worker_draws_rendezvous_ports_from_its_own_block(monkeypatch):
    """Parallel workers start launchers at the same time: their ports come from disjoint blocks, and a
    port another process holds is passed over."""
    import socket

    from conftest import PORT_BASE, PORT_BLOCK, free_port

    # workers gw6 and gw7 never run (at most 4 workers): their blocks are this test's alone
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw7")
    low, high = PORT_BASE + 7 * PORT_BLOCK, PORT_BASE + 8 * PORT_BLOCK
    assert high <= 32768  # below Linux's ephemeral ports
    port = free_port()
    assert low <= port < high
    with socket.socket() as held:
        held.bind(("127.0.0.1", low + (port + 1 - low) % PORT_BLOCK))  # the next draw's port, now taken
        held.listen()
        following = free_port()
        assert following != held.getsockname()[1] and low <= following < high
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw6")
    assert PORT_BASE + 6 * PORT_BLOCK <= free_port() < low
