"""A killed run's Snakemake lock is removed on the rerun, a live run's never (issue 10, point 6).

Real Snakemake through ``workflow/bin/demo`` on a one-rule Snakefile whose job waits while a
file ``hold`` exists, so a run can be caught holding its lock and then killed with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wavbrivl.stale_lock import directory_arg, is_snakemake, lock_files, unlock_if_stale

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "workflow" / "bin" / "demo"

SNAKEFILE = """\
rule done:
    output: "done.txt"
    shell: "while [ -e hold ]; do sleep 0.1; done; echo ok > {output}"
"""


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    (tmp_path / "hold").touch()
    return tmp_path


def demo_argv(workdir: Path) -> list[str]:
    return [str(DEMO), "-s", str(workdir / "Snakefile"), "--directory", str(workdir), "done.txt"]


def start(workdir: Path) -> subprocess.Popen:
    """Start the demo command and wait until its Snakemake holds the lock."""
    proc = subprocess.Popen(
        demo_argv(workdir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not lock_files(workdir):
        assert proc.poll() is None, "snakemake ended before it locked"
        assert time.monotonic() < deadline, "snakemake never locked"
        time.sleep(0.1)
    return proc


def rerun(workdir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        demo_argv(workdir), capture_output=True, text=True, timeout=300, check=False
    )


def test_rerun_after_sigkill_unlocks_and_resumes(workdir):
    killed = start(workdir)
    os.killpg(killed.pid, signal.SIGKILL)  # the run and its job, as a time limit would
    killed.wait()
    assert lock_files(workdir), "a SIGKILLed snakemake leaves its lock"
    (workdir / "hold").unlink()

    result = rerun(workdir)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert "no live Snakemake process holds it, so its lock was removed" in out
    assert (workdir / "done.txt").read_text() == "ok\n"
    assert not lock_files(workdir)


def test_live_run_keeps_its_lock(workdir):
    live = start(workdir)
    try:
        before = {p.name: p.read_bytes() for p in lock_files(workdir)}
        helper = subprocess.run(
            [sys.executable, "-m", "wavbrivl.stale_lock", str(workdir)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO / "src")},
            check=False,
        )
        assert helper.returncode == 1, helper.stderr
        assert "locked by a live Snakemake process" in helper.stderr
        assert f"PID {live.pid} (runs in this directory)" in helper.stderr

        second = rerun(workdir)
        out = second.stdout + second.stderr
        assert second.returncode != 0, out[-3000:]
        assert f"PID {live.pid}" in out
        assert "Directory cannot be locked" in out
        assert {p.name: p.read_bytes() for p in lock_files(workdir)} == before
    finally:
        (workdir / "hold").unlink(missing_ok=True)
        assert live.wait(timeout=120) == 0
    assert (workdir / "done.txt").read_text() == "ok\n"
    assert not lock_files(workdir)


def test_no_proc_means_no_unlock(tmp_path):
    lockdir = tmp_path / ".snakemake" / "locks"
    lockdir.mkdir(parents=True)
    (lockdir / "0.input.lock").write_text("a\n")
    outcome = unlock_if_stale(tmp_path, proc=tmp_path / "no-proc")
    assert not outcome.unlocked and "no /proc" in outcome.message
    assert (lockdir / "0.input.lock").exists()
    assert unlock_if_stale(tmp_path / "elsewhere").message.endswith("not locked; nothing to do.")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["snakemake", "--cores", "1"], True),
        (["/v/bin/python3.11", "/v/bin/snakemake", "-n"], True),
        (["python", "-m", "snakemake", "-s", "S"], True),
        (["python", "/w/.snakemake/scripts/tmp.script.py"], False),
        (["bash", "-c", "snakemake"], False),
        ([], False),
    ],
)
def test_is_snakemake(argv, expected):
    assert is_snakemake(argv) is expected


def test_directory_arg():
    assert directory_arg(["snakemake", "-d", "a", "--directory=b"]) == "b"
    assert directory_arg(["snakemake", "--directory", "c"]) == "c"
    assert directory_arg(["snakemake"]) is None
