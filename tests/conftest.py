"""Shared fixtures: where the repository is, how to run the real Snakemake on it, and how a
test that cannot set itself up reports it (a skip locally, a failure under CI)."""

from __future__ import annotations

import fcntl
import importlib.machinery
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"


def _skip_mutmut_frames_in_warnings() -> None:
    """Under workflow/bin/mutate, mutmut's trampolines stand between a test and wavbrivl's
    functions: a warning's caller is the test's line all the same (wavbrivl.warn)."""
    from wavbrivl import warn

    spec = importlib.util.find_spec("mutmut")
    if spec is not None and spec.submodule_search_locations:
        warn.SKIPPED_DIRS.append(os.path.abspath(spec.submodule_search_locations[0]) + os.sep)


_skip_mutmut_frames_in_warnings()


def load_script(path: Path, name: str):
    """Import an executable script of workflow/bin (no .py suffix needed) as module ``name``."""
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader))
    sys.modules[name] = module  # dataclasses look their module up
    loader.exec_module(module)
    return module


def run_snakemake(workdir: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run the repository's workflow in ``workdir`` with the snakemake of this interpreter.

    The process also starts in ``workdir``, so relative ``--configfile`` paths resolve there.
    """
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(SNAKEFILE),
            "--directory",
            str(workdir),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=workdir,
        check=False,
    )


def planned_jobs(result) -> dict[str, int]:
    """Rule -> job count from the 'Job stats' table of a dry run ({} when nothing to do)."""
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:", 1)[1].split("Reasons:", 1)[0]
    return {
        m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m[1] != "total"
    }


@pytest.fixture
def snakemake_runner():
    return run_snakemake


def in_ci() -> bool:
    """True under CI: ``CI`` set to anything but empty, 0, false or no (CI services set true)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def cannot_run(reason: str) -> NoReturn:
    """Skip a test whose requirements this machine lacks; under CI fail instead, so the
    paths users rely on (a real SLURM, a real browser) can never go silently untested."""
    if in_ci():
        pytest.fail(f"{reason} (a failure, not a skip, because CI is set)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def small_demo_run(tmp_path_factory) -> Path:
    """The small demo (tests/small_demo.py), run once, uninterrupted; tests must not change it.

    Built once per test session and shared by ``workflow/bin/test``'s workers: the first to
    ask builds it under a file lock in the session's folder, the others wait for it and then
    read it. A test that changes a demo works on a copy of it.
    """
    from small_demo import run_small_demo

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's folder, common to its workers
    workdir, done = root / "small-demo", root / "small-demo.done"
    with open(root / "small-demo.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not done.exists():
            shutil.rmtree(workdir, ignore_errors=True)  # what a failed build left
            workdir.mkdir()
            run_small_demo(workdir)
            done.touch()
    return workdir


# Test files that use the session fixture ``small_demo_run``, in the order they start: the
# soak first (its own interrupted runs come before it needs the demo), then the readers.
SMALL_DEMO_FILES = tuple(
    f"tests/{name}.py"
    for name in ("test_workflow_soak", "test_cli", "test_workflow_demo", "test_workflow_benchmarks")
)


def pytest_collection_modifyitems(config, items):
    """Files with SLURM tests first, then the small demo's files, then the other files with
    slow tests, each file's own order kept. ``workflow/bin/test`` hands whole files to its
    workers in this order (``--dist loadfile --no-loadscope-reorder``: xdist's default starts
    the files with the most tests first, which put the few long ones last), so the long ones
    start at once and the short ones fill in around them, instead of a long file starting last
    and running alone. The SLURM run is the longest and mostly waits on status checks."""

    def files_marked(name: str) -> set[Path]:
        return {item.path for item in items if item.get_closest_marker(name)}

    def file_of(item) -> str:
        return item.nodeid.split("::")[0]

    users = {
        file_of(item) for item in items if "small_demo_run" in getattr(item, "fixturenames", ())
    }
    if unlisted := sorted(users - set(SMALL_DEMO_FILES)):
        raise pytest.UsageError(f"add {unlisted} to SMALL_DEMO_FILES in tests/conftest.py")
    slurm_files, slow_files = files_marked("slurm"), files_marked("slow")
    demo_rank = {name: i for i, name in enumerate(SMALL_DEMO_FILES)}
    items.sort(  # stable: each file's own order is kept
        key=lambda item: (
            item.path not in slurm_files,
            demo_rank.get(file_of(item), len(demo_rank)),
            item.path not in slow_files,
        )
    )
