"""The SLURM profile (profiles/slurm) and the local GPU cap (profiles/default).

The fast tests read the profiles through Snakemake itself and need no SLURM. The slow one
starts a real one-node SLURM on localhost (tests/slurm/start.sh: Debian's slurm-wlm and munge,
installed with apt-get when missing) and runs the small demo through the profile. It is part
of the default run; where SLURM cannot be set up (not root, no apt-get, another SLURM
running) it is skipped, and under CI it fails instead.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
import yte
from conftest import REPO, cannot_run, run_snakemake

SLURM_PROFILE = REPO / "profiles" / "slurm"
DEFAULT_PROFILE = REPO / "profiles" / "default" / "config.yaml"
SLURM_SCRIPTS = REPO / "tests" / "slurm"
PROFILE_ENV = (
    "WAVBRIVL_SLURM_PARTITION",
    "WAVBRIVL_SLURM_GPU_PARTITION",
    "WAVBRIVL_SLURM_ACCOUNT",
    "WAVBRIVL_SLURM_GPU_MODEL",
    "WAVBRIVL_SLURM_CONDA",
)


@pytest.fixture
def profile_env(monkeypatch):
    """No WAVBRIVL_SLURM_* from the caller's shell; the test sets what it needs."""
    for name in PROFILE_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def planned_resources(output: str) -> dict[str, list[dict[str, str]]]:
    """Rule -> the resources of each of its jobs, from a dry run's job listing."""
    jobs: dict[str, list[dict[str, str]]] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        resources = re.search(r"^\s+resources: (.*)$", block, re.M)
        if rule and resources:
            pairs = (item.split("=", 1) for item in resources[1].split(", "))
            jobs.setdefault(rule[1], []).append(dict(pairs))
    return jobs


# --- profile-level checks (no SLURM needed) --------------------------------------------------


def test_missing_partition_stops_the_run_before_anything_is_submitted(tmp_path, profile_env):
    # An sbatch that records being called: the run must end before it is.
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    calls = tmp_path / "sbatch-calls"
    sbatch = fake_bin / "sbatch"
    sbatch.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexit 1\n')
    sbatch.chmod(sbatch.stat().st_mode | stat.S_IEXEC)
    profile_env.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")

    result = run_snakemake(tmp_path, "--profile", str(SLURM_PROFILE), timeout=120)

    assert result.returncode != 0
    assert "WAVBRIVL_SLURM_PARTITION is not set" in result.stderr
    assert not calls.exists()
    assert not (tmp_path / "results").exists()


def test_profile_maps_partitions_account_and_gpus(tmp_path, profile_env):
    profile_env.setenv("WAVBRIVL_SLURM_PARTITION", "cpu_part")
    profile_env.setenv("WAVBRIVL_SLURM_GPU_PARTITION", "gpu_part")
    profile_env.setenv("WAVBRIVL_SLURM_ACCOUNT", "proj42")
    profile_env.setenv("WAVBRIVL_SLURM_GPU_MODEL", "a100")
    profile_env.setenv("WAVBRIVL_SLURM_CONDA", "0")

    result = run_snakemake(tmp_path, "--profile", str(SLURM_PROFILE), "-n", timeout=120)

    assert result.returncode == 0, result.stderr[-3000:]
    jobs = planned_resources(result.stdout)
    assert {"extract_media", "embed_images", "train_audio_encoder", "generate_images"} <= set(jobs)
    for res in jobs["extract_media"]:
        assert res["slurm_partition"] == "cpu_part"
        assert res["slurm_account"] == "proj42"
        assert "gpu" not in res
    for rule in ("embed_images", "train_audio_encoder", "generate_images"):
        for res in jobs[rule]:
            assert res["slurm_partition"] == "gpu_part"
            assert res["slurm_account"] == "proj42"
            assert (res["gpu"], res["gpu_model"]) == ("1", "a100")
            assert int(res["cpus_per_gpu"]) >= 1


def test_generation_has_its_own_gpu_request(tmp_path, profile_env):
    # Its own entry in the profile, not training's: the rendered values differ from training's
    # (memory, time) and stay one GPU when training asks for several (train.gpus in the demo
    # config is 0: the GPU comes from the profile alone).
    profile_env.setenv("WAVBRIVL_SLURM_PARTITION", "cpu_part")
    profile_env.setenv("WAVBRIVL_SLURM_CONDA", "0")
    with open(SLURM_PROFILE / "config.yaml") as stream:
        profile = yte.process_yaml(stream, require_use_yte=True)
    generate = profile["set-resources"]["generate_images"]
    train = profile["set-resources"]["train_audio_encoder"]
    assert generate is not train
    assert (generate["slurm_partition"], generate["gpu"]) == ("'cpu_part'", 1)
    assert "gpu_model" not in generate  # WAVBRIVL_SLURM_GPU_MODEL unset: any GPU
    assert generate["cpus_per_gpu"] == 4 and generate["runtime"] == 480
    assert generate["mem_mb"] == "32000 * attempt"
    assert profile["set-threads"]["generate_images"] == 4

    result = run_snakemake(tmp_path, "--profile", str(SLURM_PROFILE), "-n", timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    (res,) = planned_resources(result.stdout)["generate_images"]
    assert (res["slurm_partition"], res["gpu"], res["cpus_per_gpu"]) == ("cpu_part", "1", "4")
    assert (res["mem_mb"], res["runtime"]) == ("32000", "480")


def test_partition_names_stay_strings(tmp_path, profile_env):
    # Resource values are Python expressions: an unquoted partition named like a name in
    # Snakemake's namespace (`input`) would be evaluated instead of passed through.
    profile_env.setenv("WAVBRIVL_SLURM_PARTITION", "input")
    profile_env.setenv("WAVBRIVL_SLURM_CONDA", "0")

    result = run_snakemake(tmp_path, "--profile", str(SLURM_PROFILE), "-n", timeout=120)

    assert result.returncode == 0, result.stderr[-3000:]
    partitions = {
        res["slurm_partition"] for js in planned_resources(result.stdout).values() for res in js
    }
    assert partitions == {"input"}


# Each job marks its start, then waits (at most $WAIT_S) until the other job has started.
# Jobs that may run together therefore overlap however late the second one starts (WAIT_S
# is generous), and jobs run one after the other never do; no wall-clock margin decides.
GPU_TOY_SNAKEFILE = """
rule all:
    input: ["a.txt", "b.txt"]

rule hold_a_gpu:
    output: "{x}.txt"
    params: other=lambda w: "b" if w.x == "a" else "a"
    resources: gpu=1
    shell:
        "date +%s.%N > {output}.tmp; touch {wildcards.x}.started; "
        "for i in $(seq $((WAIT_S * 10))); do [ -e {params.other}.started ] && break; sleep 0.1; done; "
        "date +%s.%N >> {output}.tmp; mv {output}.tmp {output}"
"""


def _gpu_toy_overlap(tmp_path: Path, gpus: str | None, wait_s: int) -> bool:
    """Run two 1-GPU jobs with 2 cores under profiles/default; did they overlap in time?"""
    workdir = tmp_path / f"gpus-{gpus}"
    (workdir / "profiles" / "default").mkdir(parents=True)
    (workdir / "profiles" / "default" / "config.yaml").write_text(DEFAULT_PROFILE.read_text())
    (workdir / "Snakefile").write_text(GPU_TOY_SNAKEFILE)
    env = dict(os.environ, WAVBRIVL_LOCAL_GPUS=gpus or "", WAIT_S=str(wait_s))
    if gpus is None:
        env["CUDA_VISIBLE_DEVICES"] = ""  # what a machine without usable GPUs shows
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (a0, a1), (b0, b1) = (
        [float(t) for t in (workdir / f"{x}.txt").read_text().split()] for x in "ab"
    )
    return a0 < b1 and b0 < a1


def test_default_profile_runs_one_gpu_job_per_gpu(tmp_path):
    # One GPU: the first job waits its full 3 s for a second job that must not start.
    assert not _gpu_toy_overlap(tmp_path, "1", wait_s=3)
    assert _gpu_toy_overlap(tmp_path, "2", wait_s=120)


def test_default_profile_sets_no_gpu_limit_without_gpus(tmp_path):
    # No GPU found: GPU rules still run (on the CPU), in parallel as cores allow.
    assert _gpu_toy_overlap(tmp_path, None, wait_s=120)


# --- a real SLURM on localhost ---------------------------------------------------------------

TEST_PARTITION = "wavbrivl-test"


SLURM_DAEMONS = ("slurmctld", "slurmd", "slurmstepd")


def running(names) -> list[str]:
    """``pgrep -a`` lines of the processes named exactly one of ``names``."""
    found = []
    for name in names:
        pgrep = subprocess.run(["pgrep", "-a", "-x", name], capture_output=True, text=True)
        found += pgrep.stdout.splitlines()
    return found


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """A one-node SLURM started by tests/slurm/start.sh; stopped (and /etc restored) after.

    Where SLURM cannot be set up the test is skipped, or fails under CI. After stop.sh no
    SLURM daemon may be left (start.sh refuses to run beside another SLURM, so any one
    still running is this test's), nor a munged that start.sh started.
    """
    state = tmp_path_factory.mktemp("slurm-state")
    stop = [str(SLURM_SCRIPTS / "stop.sh")]
    munged_before = running(["munged"])
    try:
        started = subprocess.run(
            [str(SLURM_SCRIPTS / "start.sh"), str(state), TEST_PARTITION],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    except subprocess.TimeoutExpired:
        subprocess.run(stop, timeout=300, check=False)
        pytest.fail("tests/slurm/start.sh did not finish within 900 s")
    if started.returncode != 0:
        subprocess.run(stop, timeout=300, check=False)
        if started.returncode == 77:
            cannot_run(started.stderr.strip().splitlines()[-1])
        logs = "".join(
            f"\n--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(state.glob("*.log"))
        )
        pytest.fail(f"start.sh failed ({started.returncode}):\n{started.stderr}{logs}")
    try:
        yield state
    finally:
        subprocess.run(stop, timeout=300, check=False)
        left = running(SLURM_DAEMONS) + sorted(set(running(["munged"])) - set(munged_before))
        assert not left, f"tests/slurm/stop.sh left processes running: {left}"


def cpu_node_profile(target: Path, node_cpus: int) -> Path:
    """profiles/slurm rendered for the test's single CPU node, as a plain profile.

    Only what the node cannot give changes: no GPUs (and no per-GPU CPUs), a memory request
    that fits, at most its CPUs per job, and job status from squeue (no accounting database).
    """
    with open(SLURM_PROFILE / "config.yaml") as stream:
        profile = yte.process_yaml(stream, require_use_yte=True)
    profile["default-resources"]["mem_mb"] = 1000
    for resources in profile["set-resources"].values():
        for key in ("gpu", "gpu_model", "cpus_per_gpu"):
            resources.pop(key, None)
        if "mem_mb" in resources:
            resources["mem_mb"] = 1000
    profile["max-threads"] = node_cpus
    profile["slurm-status-command"] = "squeue"
    # The plugin's first status check comes this long after a submission, each next one
    # 10 s later than the last until a job is seen finished (checks at 5, 20, 45 s...). Most
    # demo jobs take 8-20 s: with a first check at 10 s they were seen at 30 s.
    profile["slurm-init-seconds-before-status-checks"] = 5
    target.mkdir(parents=True)
    (target / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return target


@pytest.mark.slow
@pytest.mark.slurm
def test_demo_runs_to_completion_through_the_slurm_profile(slurm_cluster, tmp_path, profile_env):
    from small_demo import small_demo_config, write_toy_checkpoint

    profile_env.setenv("WAVBRIVL_SLURM_PARTITION", TEST_PARTITION)
    profile_env.setenv("WAVBRIVL_SLURM_CONDA", "0")  # no conda here: jobs use this venv
    profile = cpu_node_profile(tmp_path / "profile", node_cpus=os.cpu_count() or 1)
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "cfg.yaml").write_text(yaml.safe_dump(small_demo_config()))
    write_toy_checkpoint(workdir / "weights/toy-brivl.pth", seed=0)

    started = time.monotonic()
    # The demo up to its evaluation (15 jobs): generation and the study kit would add two more
    # rounds of status checks, and their SLURM resources are checked by the dry runs above.
    targets = ("media", "embeddings", "model")
    result = run_snakemake(
        workdir, "--profile", str(profile), *targets, "--configfile", "cfg.yaml", timeout=1500
    )
    elapsed = time.monotonic() - started
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-6000:]
    print(f"demo through SLURM: {elapsed:.0f} s")

    # Every job went through sbatch, on the partition from the environment.
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", out)
    assert len(submitted) >= 10
    rules_run = set(re.findall(r"^(?:rule|checkpoint) (\w+):", out, re.M))
    assert {
        "download_clips",
        "extract_media",
        "embed_images",
        "train_audio_encoder",
        "evaluate_retrieval",
    } <= rules_run
    # Seconds-long jobs ran on the submit host (docs/cluster.md, "Local rules").
    local_run = set(re.findall(r"^local(?:rule|checkpoint) (\w+):", out, re.M))
    assert {"synthesise_demo", "build_manifest", "prepare_tiny_wavlm"} <= local_run
    assert not local_run & rules_run

    results = workdir / "results"
    assert len(list((results / "media/vggsound").glob("*.parquet"))) == 2
    assert len(list(results.glob("embeddings/*/vggsound/*.parquet"))) == 2
    assert (results / "models/demo/audio_encoder.pt").stat().st_size > 0
    metrics = yaml.safe_load((results / "eval/demo/metrics.json").read_text())
    assert metrics
