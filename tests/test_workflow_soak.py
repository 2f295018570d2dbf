"""SIGKILL soak: the demo DAG killed at seeded random moments, rerun with the same command each
time, ends exactly where one uninterrupted run ends.

The killed chain runs the README's command (`workflow/bin/demo`, which also clears the lock a
killed Snakemake leaves) on the small demo of tests/small_demo.py and kills the whole process
group with SIGKILL, as an out-of-memory killer or a cluster's time limit would: once inside a
download shard, once at a random moment, once after a training checkpoint was written and once
while images are being generated. Each kill lands a seeded random delay after its moment comes.
The last run goes to the end; its artefacts are compared with the shared uninterrupted run
(`small_demo_run`). Replay a failure with `WAVBRIVL_SOAK_SEED=<seed>` (the seed is in the
message of every assertion).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, planned_jobs, run_snakemake
from small_demo import TARGETS, prepare_small_demo, small_demo_config

from wavbrivl.download.journal import JOURNAL_NAME
from wavbrivl.embed.reader import load_embeddings

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("WAVBRIVL_SOAK_SEED", "20261202"))
POLL_S = 0.02
RUN_TIMEOUT_S = 600


# --- the moments ------------------------------------------------------------------------------


def downloading(workdir: Path, since: float) -> bool:
    """A download shard has finished some clips and has not written its status table yet."""
    for journal in (workdir / "results/download").glob(f"*/*/{JOURNAL_NAME}"):
        shard_dir = journal.parent
        status = shard_dir.with_name(f"{shard_dir.name}.status.parquet")
        if journal.stat().st_size > 0 and not status.exists():
            return True
    return False


def started(workdir: Path, since: float) -> bool:
    return True


def checkpoints(workdir: Path) -> list[Path]:
    return sorted((workdir / "results/models/demo/checkpoints").glob("step_*.pt"))


def checkpointed(workdir: Path, since: float) -> bool:
    """This run's training has saved a resume checkpoint (the soak saves one every step)."""
    return any(p.stat().st_mtime >= since for p in checkpoints(workdir))


def generating(workdir: Path, since: float) -> bool:
    """The generation job has started writing into its (declared, so fresh) output folder."""
    out = workdir / "results/generation/demo/audioset_gen"
    return out.is_dir() and any(out.iterdir())


@dataclass(frozen=True)
class Kill:
    moment: str
    has_come: Callable[[Path, float], bool]  # (workdir, when the run started)
    delay_s: tuple[float, float]  # the kill lands uniformly this long after the moment


KILLS = (
    Kill("inside a download shard", downloading, (0.0, 0.3)),
    Kill("at a random moment", started, (2.0, 20.0)),
    # A step takes ~50 ms here: kill at once, so that training has steps left to resume.
    Kill("after a training checkpoint", checkpointed, (0.0, 0.05)),
    Kill("while generating images", generating, (0.0, 1.0)),
)


# --- running and killing ----------------------------------------------------------------------


def start_demo(workdir: Path, log: Path) -> subprocess.Popen:
    """The README's quick-start command on ``workdir``, in a process group of its own."""
    argv = [
        str(REPO / "workflow/bin/demo"),
        *TARGETS,
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "cfg.yaml"),
    ]
    with open(log, "wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def run_and_kill(workdir: Path, kill: Kill, delay: float, log: Path) -> str:
    """Run the demo until ``kill``'s moment has come plus ``delay``, then SIGKILL its group.

    Returns what happened, for the assertion messages; fails when the run ended first."""
    since = time.time() - 1.0  # file times may lag the clock a little
    proc = start_demo(workdir, log)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        while not kill.has_come(workdir, since):
            assert proc.poll() is None, (
                f"seed {SEED}: the run ended (exit {proc.returncode}) before the moment "
                f"'{kill.moment}' came:\n{log.read_text()[-3000:]}"
            )
            assert time.monotonic() < deadline, f"seed {SEED}: no '{kill.moment}' in time"
            time.sleep(POLL_S)
        time.sleep(delay)
        ended_first = proc.poll() is not None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not ended_first, f"seed {SEED}: the run ended within {delay:.2f} s of '{kill.moment}'"
    return f"{kill.moment} (+{delay:.2f} s)"


@dataclass
class Soak:
    workdir: Path
    kills: list[str]
    checkpoint_steps: list[int]  # checkpoints on disk after the kill after a checkpoint


@pytest.fixture(scope="module")
def soaked_run(tmp_path_factory) -> Soak:
    """The small demo, killed at every moment of KILLS in turn and finally run to its end."""
    workdir = tmp_path_factory.mktemp("soak")
    cfg = small_demo_config()
    # Run-time only (wavbrivl.config_keys): results must equal the reference's all the same.
    cfg["train"]["ckpt_every"] = 1
    prepare_small_demo(workdir, cfg)
    rng = random.Random(SEED)
    soak = Soak(workdir, [], [])
    for i, kill in enumerate(KILLS):
        delay = rng.uniform(*kill.delay_s)
        soak.kills.append(run_and_kill(workdir, kill, delay, workdir / f"run{i}.log"))
        if kill.has_come is checkpointed:
            soak.checkpoint_steps = [int(p.stem.split("_")[1]) for p in checkpoints(workdir)]
    final = start_demo(workdir, workdir / "final.log")
    assert final.wait(timeout=RUN_TIMEOUT_S) == 0, (
        f"seed {SEED}: the rerun after {soak.kills} failed:\n"
        f"{(workdir / 'final.log').read_text()[-4000:]}"
    )
    return soak


# --- what must hold ---------------------------------------------------------------------------


def shard_tables(workdir: Path, pattern: str) -> dict[str, pd.DataFrame]:
    return {
        str(p.relative_to(workdir)): pd.read_parquet(p)
        for p in sorted((workdir / "results").glob(pattern))
    }


def by_clip(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    return frame[columns].sort_values("clip_id").reset_index(drop=True)


def test_every_kill_landed_where_it_was_meant_to(soaked_run):
    assert [k.split(" (+")[0] for k in soaked_run.kills] == [k.moment for k in KILLS]


def test_training_was_killed_with_steps_left_and_resumed_from_its_checkpoint(soaked_run):
    steps = small_demo_config()["train"]["steps"]
    assert soaked_run.checkpoint_steps, f"seed {SEED}: no checkpoint on disk after the kill"
    last = max(soaked_run.checkpoint_steps)
    assert 0 < last < steps, f"seed {SEED}: killed at step {last} of {steps}"
    # the run after that kill resumed there (the final run had no training left to do)
    log = (soaked_run.workdir / "logs/train_audio_encoder/demo.log").read_text()
    assert f"resumed from results/models/demo/checkpoints/step_{last:09d}.pt at step {last}" in log


def test_the_rerun_leaves_nothing_to_do(soaked_run):
    workdir, kills = soaked_run.workdir, soaked_run.kills
    plan = run_snakemake(workdir, "-n", *TARGETS, "--configfile", "cfg.yaml")
    assert planned_jobs(plan) == {}, f"seed {SEED}, kills {kills}"


def test_no_temporary_file_or_lock_is_left(soaked_run):
    workdir, kills = soaked_run.workdir, soaked_run.kills
    leftovers = [
        str(p.relative_to(workdir))
        for p in workdir.rglob("*")
        if p.name.startswith(".tmp-")
        or p.name.endswith((".tmp", ".part", ".ytdl", ".temp"))
        or ".snakemake/incomplete/" in str(p)
        or ".snakemake/locks/" in str(p)
        or ".snakemake/shadow/" in str(p)
    ]
    assert leftovers == [], f"seed {SEED}, kills {kills}"


def test_same_clips_once_each_in_every_shard(soaked_run, small_demo_run):
    workdir, kills = soaked_run.workdir, soaked_run.kills
    for pattern in ("manifest/*.parquet", "download/*/*.status.parquet", "media/*/*.parquet"):
        soaked, reference = shard_tables(workdir, pattern), shard_tables(small_demo_run, pattern)
        assert soaked.keys() == reference.keys(), pattern
        for name, table in soaked.items():
            assert not table["clip_id"].duplicated().any(), f"seed {SEED}, {kills}: {name}"
            assert sorted(table["clip_id"]) == sorted(reference[name]["clip_id"]), name
            assert (table["status"] == "ok").all() if "status" in table else True, name


def test_media_and_embeddings_equal_the_uninterrupted_run(soaked_run, small_demo_run):
    workdir, kills = soaked_run.workdir, soaked_run.kills
    media = shard_tables(workdir, "media/*/*.parquet")
    reference = shard_tables(small_demo_run, "media/*/*.parquet")
    for name, table in media.items():
        columns = ["clip_id", "frame", "audio", "n_samples"]
        pd.testing.assert_frame_equal(
            by_clip(table, columns), by_clip(reference[name], columns), obj=name
        )
    for path in sorted((small_demo_run / "results/embeddings").glob("*/*/*.parquet")):
        name = path.relative_to(small_demo_run)
        ours, theirs = load_embeddings(workdir / name), load_embeddings(path)
        assert ours.keys() == theirs.keys(), f"seed {SEED}, {kills}: {name}"
        for clip_id, vectors in theirs.items():
            np.testing.assert_array_equal(ours[clip_id], vectors, err_msg=f"{name} {clip_id}")


def test_model_bytes_and_metrics_equal_the_uninterrupted_run(soaked_run, small_demo_run):
    workdir, kills = soaked_run.workdir, soaked_run.kills
    model = "results/models/demo/audio_encoder.pt"
    assert (workdir / model).read_bytes() == (small_demo_run / model).read_bytes(), (
        f"seed {SEED}, kills {kills}: the resumed training saved other weights"
    )
    metrics = "results/eval/demo/metrics.json"
    assert json.loads((workdir / metrics).read_text()) == json.loads(
        (small_demo_run / metrics).read_text()
    )


def test_generated_images_and_study_equal_the_uninterrupted_run(soaked_run, small_demo_run):
    workdir, kills = soaked_run.workdir, soaked_run.kills
    folder = "results/generation/demo/audioset_gen"
    pngs = sorted(p.name for p in (small_demo_run / folder).glob("*.png"))
    assert pngs and sorted(p.name for p in (workdir / folder).glob("*.png")) == pngs
    for name in pngs:
        assert (workdir / folder / name).read_bytes() == (
            small_demo_run / folder / name
        ).read_bytes(), f"seed {SEED}, kills {kills}: {name}"
    key = "results/sheets/demo/answer_key.json"
    assert json.loads((workdir / key).read_text()) == json.loads((small_demo_run / key).read_text())
