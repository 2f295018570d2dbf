"""Data-parallel training: 2 CPU ranks (gloo, torchrun on 127.0.0.1) against one process.

``batch_size`` is the global batch: each rank decodes its slice, the outputs are gathered and
the gradient shares summed, so the 2-rank run must reproduce the single-process run on the
same global batches. Tolerance: rtol 1e-4 on the logged losses, atol 1e-5 on the weights. The
two runs do the same float32 arithmetic in another grouping (WavLM on a half batch, the
gradient summed as two shares instead of one backward), which moves the last bits (~1e-7
relative per step); any real difference (a rank missing the other's negatives, a lost
gradient share, queues out of step) changes the loss in the second or third digit.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from test_train_data import FINGERPRINT, simple_shards, write_dataset

from wavbrivl.audio.tiny import TINY_AUDIO, TINY_MOCO, save_tiny_wavlm
from wavbrivl.train.checkpoint import list_checkpoints, read_audio_encoder
from wavbrivl.train.data import DataConfig, TrainData
from wavbrivl.train.stage import launch_training, torchrun_command, write_job

STEPS = 4


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    wavlm = save_tiny_wavlm(root / "wavlm", seed=0)
    dim = TINY_MOCO["image_dim"]
    manifest, pairs, _ = write_dataset(
        root / "data", simple_shards(3, 8, seconds=1.2), dim=dim, views=2
    )
    train_block = dict(
        steps=STEPS,
        batch_size=6,  # global: 3 clips per rank
        lr=1e-3,
        warmup_steps=1,
        window_s=1.0,
        num_workers=1,
        shuffle_buffer=8,
        val_fraction=0.25,
        eval_every=2,
        eval_max_clips=6,
        ckpt_every=2,
        log_every=1,
        device="cpu",
    )
    return dict(
        manifest=manifest,
        shards=pairs,
        audio={**TINY_AUDIO, "dropout": 0.0},  # no dropout: the two runs can agree exactly
        loss={"head_hidden": 64, "queue_size": 16},  # the queue wraps within 4 steps
        train_block=train_block,
        wavlm=str(wavlm),
        root=root,
    )


def launch(job: dict, out_dir: Path, gpus: int, lines: list[str]) -> tuple[Path, str]:
    kwargs = {k: v for k, v in job.items() if k != "root"}
    kwargs["train_block"] = {**job["train_block"], "gpus": gpus}
    stream_path = out_dir.parent / f"{out_dir.name}.ranks.log"
    with open(stream_path, "w") as stream:
        artefact = launch_training(**kwargs, out_dir=out_dir, log=lines.append, log_stream=stream)
    return artefact, stream_path.read_text()


def test_two_ranks_match_one_process_on_the_same_global_batch(job):
    root = job["root"]
    single_lines: list[str] = []
    single, _ = launch(job, root / "single", 1, single_lines)
    ddp_lines: list[str] = []
    ddp, ranks_output = launch(job, root / "ddp", 2, ddp_lines)
    assert "data-parallel training on 2 processes" in "\n".join(ddp_lines)
    assert "(rank 0 of 2)" in ranks_output and "(rank 1 of 2)" not in ranks_output  # rank 0 logs

    # The same losses step by step, one log row per step (only rank 0 writes the log).
    one, two = (
        read_rows(root / "single" / "train_log.tsv"),
        read_rows(root / "ddp" / "train_log.tsv"),
    )
    assert [(r["kind"], r["step"]) for r in two] == [(r["kind"], r["step"]) for r in one]
    train_one = [r for r in one if r["kind"] == "train"]
    train_two = [r for r in two if r["kind"] == "train"]
    assert [int(r["step"]) for r in train_two] == list(range(1, STEPS + 1))
    for a, b in zip(train_one, train_two, strict=True):
        for column in ("loss", "loss_loss_audio_space", "loss_loss_image_space", "grad_norm"):
            assert float(b[column]) == pytest.approx(float(a[column]), rel=1e-4), (
                a["step"],
                column,
            )
        assert b["samples_per_s"] and int(b["padded_clips"]) == int(a["padded_clips"])
    losses = [float(r["loss"]) for r in train_one]
    assert len(set(losses)) == STEPS  # the steps differ: the comparison is not of constants

    # Rank 0's artefacts; the trained weights and the queues (gathered keys) agree.
    assert ddp == root / "ddp" / "audio_encoder.pt"
    assert (root / "ddp" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert [p.name for p in list_checkpoints(root / "ddp" / "checkpoints")] == [
        "step_000000004.pt",
        "step_000000002.pt",
    ]
    a, b = read_audio_encoder(single)["state_dict"], read_audio_encoder(ddp)["state_dict"]
    assert set(a) == set(b)
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-5, rtol=1e-4), k
    assert int(b["queue_ptr"]) == (STEPS * 6) % 16
    state = torch.load(list_checkpoints(root / "ddp" / "checkpoints")[0], weights_only=True)
    assert len(state["rng_by_rank"]) == 2

    # A rerun resumes every rank from rank 0's final checkpoint and only redoes the end.
    again: list[str] = []
    _, ranks_output = launch(job, root / "ddp", 2, again)
    assert f"at step {STEPS}" in ranks_output
    rerun = read_audio_encoder(ddp)["state_dict"]
    assert all(torch.equal(rerun[k], b[k]) for k in b)
    assert [(r["kind"], r["step"]) for r in read_rows(root / "ddp" / "train_log.tsv")] == [
        (r["kind"], r["step"]) for r in two
    ]


def sliced_data(root: Path, shards, *, batch_size: int, rank: int = 0, world_size: int = 1):
    manifest, pairs, _ = write_dataset(root, shards)
    cfg = DataConfig(window_s=1.0, batch_size=batch_size, num_workers=0, val_fraction=0.0)
    return TrainData(
        manifest,
        pairs,
        cfg,
        fingerprint=FINGERPRINT,
        image_dim=8,
        rank=rank,
        world_size=world_size,
    )


def test_rank_slices_of_a_global_batch_are_the_single_process_batch(tmp_path):
    shards = simple_shards(2, 8)
    whole = sliced_data(tmp_path / "one", shards, batch_size=5)
    parts = [
        sliced_data(tmp_path / f"rank{r}", shards, batch_size=5, rank=r, world_size=2)
        for r in (0, 1)
    ]
    streams = [p.train_batches() for p in parts]
    for batch, position in _take(whole.train_batches(), 3):
        (b0, p0), (b1, p1) = (next(s) for s in streams)
        assert (len(b0["clip_id"]), len(b1["clip_id"])) == (2, 3)  # [0, 5//2), [5//2, 5)
        assert b0["clip_id"] + b1["clip_id"] == batch["clip_id"]
        assert torch.equal(torch.cat([b0["waveforms"], b1["waveforms"]]), batch["waveforms"])
        assert p0 == p1 == position  # one data position: rank 0's checkpoint resumes all


def _take(iterator, n):
    return [next(iterator) for _ in range(n)]


def test_a_rank_needs_a_clip_of_every_batch(tmp_path):
    with pytest.raises(
        ValueError, match=r"batch_size 2 \(the global batch\) is smaller than world_size 3"
    ):
        sliced_data(tmp_path, simple_shards(1, 4), batch_size=2, rank=0, world_size=3)


def test_job_spec_and_torchrun_command(tmp_path):
    path = write_job(
        tmp_path / "job.json",
        manifest=tmp_path / "m.parquet",
        shards=[(tmp_path / "e.parquet", tmp_path / "x.parquet")],
        out_dir=tmp_path / "run",
        audio={},
        loss={},
        train_block={"gpus": 4},
        wavlm=tmp_path / "wavlm",
    )
    from wavbrivl.train.ddp import read_job

    job = read_job(path)
    assert job["shards"] == [[str(tmp_path / "e.parquet"), str(tmp_path / "x.parquet")]]
    assert job["out_dir"] == str(tmp_path / "run")
    argv = torchrun_command(path, 4)
    assert argv[1:4] == ["-m", "torch.distributed.run", "--standalone"]
    assert "--nproc_per_node=4" in argv and argv[-2:] == ["wavbrivl.train.ddp", str(path)]
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="bad.json: a training job spec is a JSON object"):
        read_job(tmp_path / "bad.json")
