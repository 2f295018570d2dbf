"""A training rerun resumes only the same recipe; anything changed starts afresh."""

from __future__ import annotations

import os

from wavbrivl.train.recipe import prepare_run_dir


def _run_state(run):
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    (run / "checkpoints" / "step_000000010.pt").write_bytes(b"ckpt")
    (run / "train_log.tsv").write_text("step\n10\n")
    (run / "curves.png").write_bytes(b"png")


def test_same_recipe_keeps_checkpoints_changed_recipe_clears_them(tmp_path):
    data = tmp_path / "emb.parquet"
    data.write_bytes(b"v1")
    run = tmp_path / "run"
    logs = []
    assert prepare_run_dir(run, {"lr": 1e-3}, [data], logs.append) is False
    _run_state(run)
    # an interrupted job rerun with nothing changed: resume
    assert prepare_run_dir(run, {"lr": 1e-3}, [data], logs.append) is False
    assert (run / "checkpoints" / "step_000000010.pt").exists()
    # a setting changed: start afresh
    assert prepare_run_dir(run, {"lr": 2e-3}, [data], logs.append) is True
    assert not (run / "checkpoints").exists()
    assert not (run / "train_log.tsv").exists() and not (run / "curves.png").exists()
    assert "starting afresh" in logs[-1]


def test_a_rewritten_input_starts_afresh(tmp_path):
    data = tmp_path / "emb.parquet"
    data.write_bytes(b"v1")
    run = tmp_path / "run"
    prepare_run_dir(run, {}, [data], print)
    _run_state(run)
    stat = data.stat()
    data.write_bytes(b"v2")
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert prepare_run_dir(run, {}, [data], print) is True
    assert not (run / "checkpoints").exists()
