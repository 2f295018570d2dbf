"""`snakemake --lint` reports nothing on the workflow (logs, conda envs, no path '+', ...)."""

from __future__ import annotations

from conftest import run_snakemake


def test_lint_is_clean(tmp_path):
    result = run_snakemake(tmp_path, "--lint")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert "Lints for" not in out, out[-3000:]
