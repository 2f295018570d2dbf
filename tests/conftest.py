"""Shared fixtures: where the repository is, how to run the real Snakemake on it, and how a
test that cannot set itself up reports it (a skip locally, a failure under CI)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"


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
    """The small demo (tests/small_demo.py), run once, uninterrupted; tests must not change it."""
    from small_demo import run_small_demo

    workdir = tmp_path_factory.mktemp("small-demo")
    run_small_demo(workdir)
    return workdir


# Test files that use the session fixture ``small_demo_run``: ``workflow/bin/test`` runs them
# on one worker, one after the other, so the small demo is built once, not once per worker.
SMALL_DEMO_FILES = frozenset(
    f"tests/{name}.py"
    for name in ("test_workflow_soak", "test_workflow_demo", "test_cli", "test_workflow_benchmarks")
)


def pytest_collection_modifyitems(config, items):
    """Files with SLURM tests first, then the small demo's files, then files with slow tests,
    each file's own order kept. ``workflow/bin/test`` hands whole files to its workers in this
    order (``pytest_xdist_make_scheduler``), so the long ones start at once and the short ones
    fill in around them, instead of a long file starting last and running alone. The SLURM run
    is the longest and mostly waits on the scheduler's status checks, so it goes first."""

    def files_marked(name: str) -> set[Path]:
        return {item.path for item in items if item.get_closest_marker(name)}

    unlisted = sorted(
        {
            item.nodeid.split("::")[0]
            for item in items
            if "small_demo_run" in getattr(item, "fixturenames", ())
        }
        - SMALL_DEMO_FILES
    )
    if unlisted:
        raise pytest.UsageError(f"add {unlisted} to SMALL_DEMO_FILES in tests/conftest.py")
    slurm_files, slow_files = files_marked("slurm"), files_marked("slow")
    items.sort(  # stable: each file's own order is kept
        key=lambda item: (
            item.path not in slurm_files,
            item.nodeid.split("::")[0] not in SMALL_DEMO_FILES,
            item.path not in slow_files,
        )
    )


def pytest_xdist_make_scheduler(config, log):
    """Whole files per worker, in the collection order above (xdist's own ``loadfile`` starts
    the files with the most tests first, which put the few long ones last); the small demo's
    files count as one unit."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class FilesInOrder(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "small demo" if path in SMALL_DEMO_FILES else path

    config.option.loadscopereorder = False
    return FilesInOrder(config, log)
