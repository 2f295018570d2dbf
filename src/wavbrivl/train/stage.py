"""The training stage as the workflow runs it: config blocks in, ``audio_encoder.pt`` out.

:func:`launch_training` is what the workflow calls: with ``train.gpus`` > 1 it starts a
data-parallel ``torchrun`` job (:mod:`wavbrivl.train.ddp`) on this node, else it trains in
this process (:func:`run_training`).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import torch

from wavbrivl.atomic import write_text_atomic
from wavbrivl.audio.encoder import AudioEncoderConfig, build_audio_encoder
from wavbrivl.configs import from_mapping
from wavbrivl.devices import pick_device
from wavbrivl.embed.store import read_common_header
from wavbrivl.train.checkpoint import list_checkpoints
from wavbrivl.train.config import TrainConfig
from wavbrivl.train.data import TrainData
from wavbrivl.train.ddp import Collective
from wavbrivl.train.loop import ARTEFACT_NAME, CHECKPOINT_DIR, train
from wavbrivl.train.moco import CrossModalMoCo, MoCoConfig
from wavbrivl.train.signals import TrainingInterrupted

Log = Callable[[str], None]


def build_model(audio: dict[str, Any], loss: dict[str, Any], *, wavlm: str, image_dim: int):
    audio_values = {k: v for k, v in audio.items() if k not in ("wavlm", "tiny_seed")}
    audio_cfg = from_mapping(AudioEncoderConfig, {**audio_values, "wavlm": wavlm}, "audio config")
    moco_cfg = from_mapping(MoCoConfig, {**loss, "image_dim": image_dim}, "loss config")
    return CrossModalMoCo(build_audio_encoder(audio_cfg), moco_cfg)


def run_training(
    *,
    manifest: str | Path,
    shards: Sequence[tuple[str | Path, str | Path]],
    out_dir: str | Path,
    audio: dict[str, Any],
    loss: dict[str, Any],
    train_block: dict[str, Any],
    wavlm: str,
    log: Log,
    collective: Collective | None = None,
    device: torch.device | None = None,
) -> Path:
    """Train the audio encoder; returns ``<out_dir>/audio_encoder.pt``.

    The image encoder's fingerprint and embedding size come from the embedding files'
    headers (all shards must agree); the fingerprint is recorded in the artefact.
    ``collective`` / ``device``: set by :mod:`wavbrivl.train.ddp` for one rank of a
    data-parallel job (``train_block["batch_size"]`` is then the global batch)."""
    cfg = TrainConfig.from_block(train_block)
    device = device or pick_device(train_block.get("device", "auto"))
    rank, world = (collective.rank, collective.world_size) if collective else (0, 1)
    header = read_common_header([embedding for embedding, _ in shards])
    torch.manual_seed(cfg.data.seed)  # the same initial weights and queues on every rank
    model = build_model(audio, loss, wavlm=wavlm, image_dim=header.dim)
    data = TrainData(
        manifest,
        shards,
        cfg.data,
        fingerprint=header.fingerprint,
        image_dim=header.dim,
        pin_memory=device.type == "cuda",
        rank=rank,
        world_size=world,
    )
    log(f"device {device} (rank {rank} of {world}); {data.describe()}")
    return train(model, data, cfg, Path(out_dir), device=device, log=log, collective=collective)


# -- data-parallel launch ------------------------------------------------------------------------

JOB_NAME = "ddp_job.json"


def write_job(path: str | Path, **training_kwargs: Any) -> Path:
    """The JSON job spec every rank reads: :func:`run_training`'s keyword arguments."""
    job = dict(training_kwargs)
    job["shards"] = [[str(e), str(m)] for e, m in job["shards"]]
    for key in ("manifest", "out_dir", "wavlm"):
        job[key] = str(job[key])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(job, indent=1, sort_keys=True) + "\n")
    return path


def torchrun_command(job: str | Path, gpus: int) -> list[str]:
    """``torchrun`` (as ``python -m torch.distributed.run``, this interpreter's) on one node:
    ``--standalone`` picks a free local port, so two jobs on one node do not collide."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={gpus}",
        "-m",
        "wavbrivl.train.ddp",
        str(job),
    ]


def _ignore_sigusr1() -> None:
    # Runs in the child before exec: torchrun would die of SIGUSR1 (no handler of its own);
    # ignored, it lets the ranks (which install their own handler) save and exit.
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)


def launch_training(*, log: Log, log_stream: IO[str] | None = None, **training_kwargs: Any) -> Path:
    """Train with ``train_block["gpus"]`` processes on this node; returns ``audio_encoder.pt``.

    ``gpus`` <= 1 (or absent): :func:`run_training` in this process. Otherwise a ``torchrun``
    job whose ranks' output goes to ``log_stream`` (default: this process's stderr).
    SIGTERM / SIGUSR1 received here are passed to torchrun as SIGTERM (it forwards them to
    the ranks, which checkpoint and exit); like the single-process run, a stopped run raises
    :class:`TrainingInterrupted` (exit code 0, rerun to resume).
    """
    gpus = int(training_kwargs["train_block"].get("gpus", 1) or 1)
    if gpus <= 1:
        return run_training(log=log, **training_kwargs)
    TrainConfig.from_block(
        training_kwargs["train_block"]
    )  # a bad config fails here, not in N ranks
    out_dir = Path(training_kwargs["out_dir"])
    job = write_job(out_dir / JOB_NAME, **training_kwargs)
    argv = torchrun_command(job, gpus)
    log(f"data-parallel training on {gpus} processes: {' '.join(argv)}")
    stream = log_stream if log_stream is not None else sys.stderr
    stream.flush()
    received: list[str] = []
    proc = subprocess.Popen(  # noqa: S603 - argv list from the pure builder, no shell
        argv, stdout=stream, stderr=stream, preexec_fn=_ignore_sigusr1
    )

    def forward(signum: int, _frame: Any) -> None:
        received.append(signal.Signals(signum).name)
        proc.send_signal(signal.SIGTERM)

    previous = {}
    if threading.current_thread() is threading.main_thread():  # Python's rule for handlers
        previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGUSR1)}
    try:
        returncode = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    artefact = out_dir / ARTEFACT_NAME
    if returncode == 0 and artefact.exists():
        return artefact
    saved = list_checkpoints(out_dir / CHECKPOINT_DIR)
    if (received or returncode == 0) and saved:
        step = int(saved[0].stem.split("_")[1])
        raise TrainingInterrupted(received[0] if received else "signal", saved[0], step)
    raise RuntimeError(
        f"data-parallel training ({' '.join(argv)}) exited with code {returncode} "
        f"without writing {artefact}; see the ranks' messages above"
    )
