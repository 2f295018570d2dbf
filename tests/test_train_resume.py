"""Checkpoints and resume: an interrupted run, resumed, ends where the uninterrupted run ends.

Real data pipeline (media + embedding shards, 2 DataLoader workers, shuffle buffer, random
windows) and the fake model of test_train_loop.py with dropout on, so the data position, the
optimizer state and the RNG state must all be restored for the weights to match.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_train_data import FINGERPRINT, simple_shards, write_dataset
from test_train_loop import CPU, FakeCfg, FakeMoCo, Recorder, cosine_loss, read_log

from wavbrivl.checkpoints import UntrustedCheckpointError
from wavbrivl.train.checkpoint import (
    CorruptCheckpoint,
    checkpoint_path,
    list_checkpoints,
    load_checkpoint,
    read_audio_encoder,
    save_checkpoint,
)
from wavbrivl.train.config import TrainConfig
from wavbrivl.train.data import TrainData
from wavbrivl.train.loop import train
from wavbrivl.train.signals import TrainingInterrupted

TESTS = Path(__file__).resolve().parent
MODEL_CFG = FakeCfg(image_dim=8, feat=16, dropout=0.2)


def resume_config(**kw) -> TrainConfig:
    base = dict(
        steps=12,
        batch_size=4,
        lr=5e-3,
        warmup_steps=2,
        ckpt_every=3,
        keep_checkpoints=2,
        eval_every=0,
        log_every=1,
        num_workers=2,
        shuffle_buffer=6,
        window_s=0.5,
        val_fraction=0.0,
    )
    return TrainConfig.from_dict(base | kw)


def run(
    data_files, out_dir: Path, cfg: TrainConfig | None = None, *, on_step=None, log=None
) -> FakeMoCo:
    cfg = cfg or resume_config()
    manifest, pairs = data_files
    data = TrainData(manifest, pairs, cfg.data, fingerprint=FINGERPRINT, image_dim=8)
    model = FakeMoCo(MODEL_CFG, seed=0)
    train(
        model,
        data,
        cfg,
        out_dir,
        device=CPU,
        log=log or Recorder(),
        loss_fn=cosine_loss,
        on_step=on_step,
    )
    return model


@pytest.fixture(scope="module")
def data_files(tmp_path_factory):
    # 4 shards x 6 clips: 6 batches of 4 per epoch, so 12 steps cross an epoch boundary.
    manifest, pairs, _ = write_dataset(
        tmp_path_factory.mktemp("data"), simple_shards(4, 6, seconds=0.8)
    )
    return manifest, pairs


@pytest.fixture(scope="module")
def reference(data_files, tmp_path_factory):
    """The uninterrupted run: final weights and its log rows."""
    out = tmp_path_factory.mktemp("reference")
    model = run(data_files, out)
    return model.state_dict(), read_log(out / "train_log.tsv")


def assert_same_weights(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-6, atol=1e-7), k


def comparable(rows):
    return [{k: v for k, v in r.items() if k not in ("samples_per_s", "elapsed_s")} for r in rows]


class Crash(RuntimeError):
    pass


def crash_at(n):
    def on_step(step):
        if step == n:
            raise Crash(f"simulated crash after step {n}")

    return on_step


def test_a_crashed_run_resumes_to_the_same_weights(data_files, reference, tmp_path):
    with pytest.raises(Crash):
        run(data_files, tmp_path, on_step=crash_at(8))  # checkpoints at 3 and 6
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == [
        "step_000000006.pt",
        "step_000000003.pt",
    ]
    log = Recorder()
    model = run(data_files, tmp_path, log=log)
    assert "at step 6 (epoch 0)" in log.text()
    assert_same_weights(model.state_dict(), reference[0])
    # The log is cut back to the checkpoint, then continued: every step once, same values.
    assert comparable(read_log(tmp_path / "train_log.tsv")) == comparable(reference[1])


def test_a_resumed_run_removes_what_a_killed_checkpoint_write_left(data_files, reference, tmp_path):
    with pytest.raises(Crash):
        run(data_files, tmp_path, on_step=crash_at(8))
    ckpt = tmp_path / "checkpoints"
    # What SIGKILL inside save_checkpoint leaves (atomic_path's names), and two bystanders.
    killed = [ckpt / ".step_000000009.pt.k2j4x.tmp", ckpt / ".step_000000009.pt.sha256.q1w2.tmp"]
    bystanders = [ckpt / ".notes.tmp", ckpt / "step_000000009.pt.tmp"]
    for path in killed + bystanders:
        path.write_bytes(b"half")
    log = Recorder()
    model = run(data_files, tmp_path, log=log)
    assert [p for p in killed if p.exists()] == []
    assert all(p.exists() for p in bystanders)
    assert f"removed {killed[0].name}" in log.text() and f"removed {killed[1].name}" in log.text()
    assert_same_weights(model.state_dict(), reference[0])


@pytest.mark.parametrize(("before", "after"), [(2, 0), (0, 2), (2, 1)])
def test_a_run_resumed_with_another_num_workers_ends_with_the_same_weights(
    data_files, reference, tmp_path, before, after
):
    # num_workers is run-time only: the batches, hence the weights, do not depend on it.
    # The same batches pass through the same operations on the same CPU, so the weights are
    # equal to the bit, not just close.
    with pytest.raises(Crash):
        run(data_files, tmp_path, resume_config(num_workers=before), on_step=crash_at(8))
    log = Recorder()
    model = run(data_files, tmp_path, resume_config(num_workers=after), log=log)
    assert "resumed from" in log.text() and "at step 6 " in log.text()
    for k, v in reference[0].items():
        assert torch.equal(model.state_dict()[k], v), k
    assert comparable(read_log(tmp_path / "train_log.tsv")) == comparable(reference[1])


def test_a_corrupt_latest_checkpoint_is_reported_and_the_previous_one_used(
    data_files, reference, tmp_path
):
    with pytest.raises(Crash):
        run(data_files, tmp_path, on_step=crash_at(7))
    latest = checkpoint_path(tmp_path / "checkpoints", 6)
    blob = bytearray(latest.read_bytes())
    blob[len(blob) // 2 : len(blob) // 2 + 64] = b"\0" * 64
    latest.write_bytes(bytes(blob))
    log = Recorder()
    model = run(data_files, tmp_path, log=log)
    assert (
        "skipping unusable checkpoint" in log.text() and "step_000000006.pt: sha256" in log.text()
    )
    assert "at step 3 (epoch 0)" in log.text()
    assert_same_weights(model.state_dict(), reference[0])


def test_sigusr1_saves_a_checkpoint_and_exits_with_code_0(data_files, reference, tmp_path):
    def signal_at_4(step):
        if step == 4:
            os.kill(os.getpid(), signal.SIGUSR1)

    with pytest.raises(TrainingInterrupted) as info:
        run(data_files, tmp_path, on_step=signal_at_4)
    assert info.value.code == 0 and info.value.step == 4 and info.value.signal_name == "SIGUSR1"
    assert info.value.checkpoint == checkpoint_path(tmp_path / "checkpoints", 4)
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL  # the handler was put back
    assert not (tmp_path / "audio_encoder.pt").exists()
    model = run(data_files, tmp_path)
    assert_same_weights(model.state_dict(), reference[0])


def test_a_signal_before_the_first_step_checkpoints_step_0(data_files, reference, tmp_path):
    class SignalOnStart(Recorder):
        def __call__(self, line):
            super().__call__(line)
            if line.startswith("data:"):
                os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(TrainingInterrupted) as info:
        run(data_files, tmp_path, log=SignalOnStart())
    assert info.value.step == 0 and info.value.checkpoint.name == "step_000000000.pt"
    model = run(data_files, tmp_path)
    assert_same_weights(model.state_dict(), reference[0])


def test_a_checkpoint_of_another_recipe_is_refused_by_name(data_files, tmp_path):
    with pytest.raises(Crash):
        run(data_files, tmp_path, on_step=crash_at(3))
    with pytest.raises(
        ValueError,
        match=r"step_000000003\.pt was made with another configuration \(lr: 0\.005 -> 0\.001\)",
    ):
        run(data_files, tmp_path, resume_config(lr=1e-3))
    # Cadence fields may change: resuming with another ckpt_every is fine.
    run(data_files, tmp_path, resume_config(ckpt_every=4))


class RunsACommand:
    """Unpickling this calls ``os.system("true")`` (harmless, and never reached here)."""

    def __reduce__(self):
        return (os.system, ("true",))


def test_checkpoints_needing_code_are_refused_by_name_without_unsafe_advice(tmp_path):
    path = save_checkpoint(tmp_path / "step_000000001.pt", {"format": RunsACommand()})
    with pytest.raises(CorruptCheckpoint, match="refused as untrusted") as err:
        load_checkpoint(path)
    artefact = tmp_path / "audio_encoder.pt"
    torch.save({"format": RunsACommand()}, artefact)
    with pytest.raises(UntrustedCheckpointError, match="refused as untrusted") as err2:
        read_audio_encoder(artefact)
    for message in (str(err.value), str(err2.value)):
        assert f"{os.system.__module__}.system" in message and "weights_only" not in message


def test_checkpoint_files_are_checked_before_use(tmp_path):
    path = save_checkpoint(tmp_path / "step_000000001.pt", {"format": "wrong"})
    with pytest.raises(CorruptCheckpoint, match="not a wavbrivl.train_checkpoint/1"):
        load_checkpoint(path)
    (tmp_path / "step_000000001.pt.sha256").unlink()
    with pytest.raises(CorruptCheckpoint, match="no step_000000001.pt.sha256"):
        load_checkpoint(path)


SCRIPT = """
import json, os, sys, time
from pathlib import Path
import torch
sys.path.insert(0, {tests!r})
from test_train_loop import FakeCfg, FakeMoCo, cosine_loss
from test_train_resume import resume_config
from wavbrivl.train.data import TrainData
from wavbrivl.train.loop import train

args = json.loads(sys.argv[1])
out = Path(args["out"])
cfg = resume_config(steps=60, ckpt_every=1000)
data = TrainData(args["manifest"], args["pairs"], cfg.data, fingerprint=args["fingerprint"], image_dim=8)

def on_step(step):
    (out / "progress.txt").write_text(str(step))
    time.sleep(args["delay"])

train(FakeMoCo(FakeCfg(dropout=0.2)), data, cfg, out, device=torch.device("cpu"), loss_fn=cosine_loss, on_step=on_step)
"""


def test_sigterm_to_a_training_process_saves_exits_0_and_a_rerun_resumes(data_files, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    script = tmp_path / "train_script.py"
    script.write_text(SCRIPT.format(tests=str(TESTS)))
    manifest, pairs = data_files

    def start(delay):
        args = {
            "out": str(out),
            "manifest": str(manifest),
            "pairs": [[str(a), str(b)] for a, b in pairs],
            "fingerprint": FINGERPRINT,
            "delay": delay,
        }
        # Own session: the signal goes to the whole process group (as SLURM signals a job
        # step), DataLoader workers included.
        return subprocess.Popen(
            [sys.executable, str(script), json.dumps(args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    proc = start(delay=0.1)
    deadline = time.monotonic() + 60
    progress = out / "progress.txt"
    while time.monotonic() < deadline and not (
        progress.exists() and progress.read_text() and int(progress.read_text()) >= 5
    ):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "SIGTERM: saved" in stderr
    saved = list_checkpoints(out / "checkpoints")
    assert len(saved) == 1  # ckpt_every=1000: this one is the signal's
    step = int(saved[0].stem.split("_")[1])
    assert 5 <= step < 60
    assert not (out / "audio_encoder.pt").exists()

    proc = start(delay=0.0)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert f"at step {step} " in stderr
    assert read_audio_encoder(out / "audio_encoder.pt")["step"] == 60
    steps = [int(r["step"]) for r in read_log(out / "train_log.tsv")]
    assert steps == list(range(1, 61))
