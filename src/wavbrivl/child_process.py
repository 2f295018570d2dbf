"""Run a child process under a time limit and notice its exit the moment it happens.

``subprocess.run(..., timeout=...)`` without pipes waits in ``Popen.wait(timeout)``, which
in CPython 3.11 polls ``waitpid`` with sleeps that double up to 50 ms: a process ending
after 90 ms is noticed some 25 ms late, a quarter of a short ffmpeg run (docs/ffmpeg.md,
"What a clip costs"). On Linux a process file descriptor (``pidfd``) becomes readable when
the child exits, so waiting on it is exact; elsewhere this falls back to ``Popen.wait``.
"""

from __future__ import annotations

import math
import os
import select
import subprocess
import tempfile
from collections.abc import Sequence
from typing import IO, Any, NamedTuple

Stream = int | IO[Any] | None


def run(
    argv: Sequence[str],
    *,
    stdin: Stream = None,
    stdout: Stream = None,
    stderr: Stream = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """``subprocess.run`` for a child without pipes: its ``returncode`` (no output kept).

    On time-out the child is killed and reaped, and :class:`subprocess.TimeoutExpired`
    is raised, as ``subprocess.run`` does.
    """
    with subprocess.Popen(  # noqa: S603 - the caller's argv list, no shell
        list(argv), stdin=stdin, stdout=stdout, stderr=stderr
    ) as proc:
        try:
            returncode = wait(proc, timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    return subprocess.CompletedProcess(proc.args, returncode)


class LoggedRun(NamedTuple):
    returncode: int
    stderr: str  # UTF-8, undecodable bytes replaced


def run_logged(argv: Sequence[str], *, timeout: float | None) -> LoggedRun:
    """Run a child without stdin or stdout and return its exit status and its stderr.

    The stderr goes to an unnamed temporary file, not a pipe, so this process is not woken
    for each line the child logs (ffmpeg's ``showinfo`` logs a line per frame). On time-out
    the child is killed and :class:`subprocess.TimeoutExpired` is raised, as by :func:`run`.
    """
    with tempfile.TemporaryFile() as log:
        result = run(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, timeout=timeout
        )
        log.seek(0)
        text = log.read().decode(errors="replace")  # bytes.decode is UTF-8, whatever the locale
    return LoggedRun(result.returncode, text)


def wait(proc: subprocess.Popen, timeout: float | None) -> int:
    """``proc.wait(timeout)``, woken by the child's exit instead of by polling."""
    if timeout is None:
        return proc.wait()  # a blocking waitpid: exact already
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # not Linux, a kernel before 5.3, or a sandbox
        return proc.wait(timeout=timeout)
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        exited = poller.poll(max(0, math.ceil(timeout * 1000)))  # ms, never short
    finally:
        os.close(pidfd)
    if not exited:
        raise subprocess.TimeoutExpired(proc.args, timeout)
    return proc.wait()
