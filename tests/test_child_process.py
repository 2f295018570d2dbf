"""wavbrivl.child_process: subprocess.run's contract, an exact wait for the exit, a kill at
the time limit (real child processes: `sh`, `sleep`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from wavbrivl import child_process


def test_the_return_code_and_argv_come_back():
    done = child_process.run(["sh", "-c", "exit 3"], timeout=30)
    assert (done.returncode, done.args) == (3, ["sh", "-c", "exit 3"])
    assert child_process.run(("true",)).returncode == 0  # no time limit: a plain wait


def test_the_streams_go_where_they_are_sent(tmp_path):
    out, given = tmp_path / "out.txt", tmp_path / "in.txt"
    given.write_text("to-in\n")
    with out.open("wb") as stdout, given.open("rb") as stdin:
        child_process.run(
            ["sh", "-c", "cat; echo to-out; echo to-err >&2"],
            stdin=stdin,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            timeout=30,
        )
    assert out.read_text() == "to-in\nto-out\nto-err\n"


def test_a_child_past_its_time_limit_is_killed_and_reaped(tmp_path):
    pid_file = tmp_path / "pid"
    start = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired) as caught:
        child_process.run(["sh", "-c", f"echo $$ > {pid_file}; exec sleep 30"], timeout=0.5)
    assert time.monotonic() - start < 20  # nowhere near the child's 30 s
    assert caught.value.timeout == 0.5
    assert caught.value.cmd[0] == "sh"
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):  # killed and reaped: no zombie left behind
        os.kill(pid, 0)


def test_the_exit_is_noticed_at_once_not_at_the_next_poll(monkeypatch):
    """Popen.wait(timeout) sleeps 0.5, 1, 2, ... then 50 ms between polls of waitpid, so a
    child exiting at 70 ms is seen at about 113 ms. The pidfd wait never sleeps: counted,
    not timed, so the test holds on a loaded machine."""
    if not hasattr(os, "pidfd_open"):
        pytest.skip("no pidfd on this platform: the fallback polls")
    naps = []
    real_sleep = subprocess.time.sleep
    monkeypatch.setattr(subprocess.time, "sleep", lambda s: naps.append(s) or real_sleep(s))
    assert child_process.run(["sleep", "0.07"], timeout=30).returncode == 0
    assert naps == []
    subprocess.Popen(["sleep", "0.07"]).wait(timeout=30)  # the poll this module avoids
    assert len(naps) >= 5


def test_without_pidfd_the_wait_falls_back_to_popen(monkeypatch):
    def no_pidfd(pid):
        raise OSError("not here")

    monkeypatch.setattr(child_process.os, "pidfd_open", no_pidfd)
    assert child_process.run(["sh", "-c", "exit 4"], timeout=30).returncode == 4
    with pytest.raises(subprocess.TimeoutExpired):
        child_process.run(["sleep", "30"], timeout=0.3)


def test_the_pidfd_is_closed_after_each_wait():
    before = len(os.listdir("/proc/self/fd")) if sys.platform == "linux" else 0
    for _ in range(5):
        child_process.run(["true"], timeout=30)
    after = len(os.listdir("/proc/self/fd")) if sys.platform == "linux" else 0
    assert after == before


# --- run_logged: no stdin, no stdout, the stderr as text --------------------------------------


def test_a_logged_run_returns_the_exit_status_and_the_whole_stderr_as_text():
    # \377 is no UTF-8: replaced, not an error; the first character is kept.
    run = child_process.run_logged(
        ["sh", "-c", r"printf 'first\377 line\nsecond\n' >&2; exit 4"], timeout=30
    )
    assert run == (4, "first\ufffd line\nsecond\n")
    assert (run.returncode, run.stderr) == (4, "first\ufffd line\nsecond\n")


def test_a_logged_child_reads_no_stdin_and_writes_no_stdout(capfd):
    # The parent's stdin is a pipe with data in it: the child must not see it. Its stdout
    # must not reach the parent's (captured here at the file descriptor).
    read_end, write_end = os.pipe()
    os.write(write_end, b"the parent's input\n")
    os.close(write_end)
    saved = os.dup(0)
    os.dup2(read_end, 0)
    try:
        run = child_process.run_logged(["sh", "-c", "cat >&2; echo to-out"], timeout=30)
    finally:
        os.dup2(saved, 0)
        os.close(saved)
        os.close(read_end)
    assert run == (0, "")
    assert capfd.readouterr().out == ""


def test_a_logged_child_past_its_time_limit_raises():
    start = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired) as caught:
        child_process.run_logged(["sleep", "30"], timeout=0.3)
    assert caught.value.timeout == 0.3
    assert time.monotonic() - start < 20
