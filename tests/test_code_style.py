"""ruff (lint and format, settings in pyproject.toml) and snakefmt are clean on the repository."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import REPO

RUFF = Path(sys.executable).parent / "ruff"


def test_ruff_check_is_clean():
    result = subprocess.run([RUFF, "check", "."], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]


def test_ruff_format_is_clean():
    result = subprocess.run(
        [RUFF, "format", "--check", "."], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-3000:]


def test_snakefmt_is_clean():
    """The Snakefile and rules keep the Snakemake catalog's format (snakefmt, pinned)."""
    snakefmt = Path(sys.executable).parent / "snakefmt"
    result = subprocess.run(
        [snakefmt, "--check", "Snakefile", "workflow/rules"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
