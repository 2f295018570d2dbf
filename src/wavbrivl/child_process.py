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
from collections.abc import Sequence
from typing import IO, Any

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
