"""Every rule runs in a pinned conda environment that exists (a lint Snakemake lacks).

`snakemake --lint` flags rules without a `conda:` directive but not a directive whose file
is missing, and conda itself is not available here; this test reads the rule files.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import yaml
from conftest import REPO

RULE_START = re.compile(r"^(?:rule|checkpoint)\s+(\w+)\s*:", re.M)
CONDA_LINE = re.compile(r"^\s+conda:\s*\n\s+\"([^\"]+)\"", re.M)


def env_problems(repo: Path) -> list[str]:
    problems = []
    for smk in sorted((repo / "workflow" / "rules").glob("*.smk")):
        text = smk.read_text()
        starts = list(RULE_START.finditer(text))
        for i, match in enumerate(starts):
            body = text[match.end() : starts[i + 1].start() if i + 1 < len(starts) else len(text)]
            conda = CONDA_LINE.search(body)
            if conda is None:
                problems.append(f"{smk.name}: rule {match[1]} names no conda environment")
                continue
            env = (smk.parent / conda[1]).resolve()
            if not env.is_file():
                problems.append(
                    f"{smk.name}: rule {match[1]}: environment {conda[1]} does not exist"
                )
    return problems


def test_every_rule_names_an_existing_environment():
    # (the Snakefile's target rules run nothing; every rule doing work is in workflow/rules)
    n_rules = sum(
        len(RULE_START.findall(p.read_text())) for p in (REPO / "workflow/rules").glob("*.smk")
    )
    assert n_rules >= 8
    assert env_problems(REPO) == []


def test_a_missing_environment_file_is_caught(tmp_path):
    copy = tmp_path / "repo"
    shutil.copytree(REPO / "workflow", copy / "workflow")
    shutil.copytree(REPO / "envs", copy / "envs")
    rules = copy / "workflow" / "rules" / "extract.smk"
    rules.write_text(rules.read_text().replace("envs/media.yaml", "envs/missing.yaml"))
    assert env_problems(copy) == [
        "extract.smk: rule extract_media: environment ../../envs/missing.yaml does not exist"
    ]


def test_environments_are_pinned_with_explicit_channels():
    for path in sorted((REPO / "envs").glob("*.yaml")):
        env = yaml.safe_load(path.read_text())
        assert env["channels"][-1] == "nodefaults", path.name
        assert "conda-forge" in env["channels"], path.name
        for dep in env["dependencies"]:
            specs = dep["pip"] if isinstance(dep, dict) else [dep]
            for spec in specs:
                assert re.search(r"[=]=?\d", spec), f"{path.name}: {spec} is not pinned"
        # only third-party packages: the project is imported from the checkout
        names = [d for d in env["dependencies"] if isinstance(d, str)]
        assert not any(n.startswith("wavbrivl") for n in names)
