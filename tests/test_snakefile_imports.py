"""The Snakefile stays light to import: every Snakemake start parses it (each dry run, each
local run, each SLURM job), so a heavy import there costs seconds many times over
(docs/development.md, "Commands": what the suite's time goes to)."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO

# Imported by jobs that use them, never while the DAG is built.
HEAVY = {"torch", "torchaudio", "transformers", "sklearn", "scipy", "yt_dlp", "matplotlib"}


def test_building_the_dag_imports_none_of_the_heavy_libraries(tmp_path):
    env = dict(os.environ, PYTHONPROFILEIMPORTTIME="1")
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-n", "--quiet"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "wavbrivl.sharding" in imported  # the workflow's own modules were seen
    assert {name.split(".")[0] for name in imported} & HEAVY == set()
