"""The training loop of the audio encoder: AdamW on the CXLoss, checkpointed and resumable.

One optimizer step, in order: set the learning rate from :func:`lr_at`; for each of
``grad_accum`` micro-batches run the model (bf16 autocast on CUDA only), compute the loss in
float32 and backpropagate ``loss / grad_accum``; clip the gradient norm; step; move the
momentum copy; push the step's keys into the MoCo queues. A non-finite loss or gradient skips
the whole step (no update, no enqueue), is counted and logged, and ``max_nonfinite_in_row``
of them in a row stop the run with :class:`NonFiniteLoss`.

A run directory holds ``checkpoints/`` (resume), ``train_log.tsv``, ``curves.png`` and the
final ``audio_encoder.pt``. On start, the newest good checkpoint is resumed: model, optimizer,
torch RNG, data position, counters; the result equals the uninterrupted run's (CPU, same
seed). SIGTERM / SIGUSR1 (SLURM's pre-emption and time-limit warnings) save a checkpoint and
raise :class:`TrainingInterrupted`, a ``SystemExit`` with code 0.

Data-parallel runs (:mod:`wavbrivl.train.ddp`) pass a :class:`Collective`: each rank runs its
slice of every global batch, the step's outputs are gathered so every rank computes the
global batch's loss and enqueues the same keys, gradients are summed over ranks, and the
decisions that must agree (non-finite skip, stop signal) are taken jointly. Only the main
rank writes files and validates. :class:`SingleProcess`, the default, does nothing.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm import tqdm

from wavbrivl.train.checkpoint import (
    CHECKPOINT_FORMAT,
    check_resumable,
    checkpoint_path,
    load_latest_checkpoint,
    model_configs,
    prune_checkpoints,
    remove_interrupted_writes,
    restore_rng,
    rng_state,
    save_audio_encoder,
    save_checkpoint,
)
from wavbrivl.train.config import TrainConfig
from wavbrivl.train.data import DataPosition
from wavbrivl.train.ddp import Collective, SingleProcess
from wavbrivl.train.log import CURVES_NAME, LOG_NAME, TrainLog, cell, write_curves
from wavbrivl.train.schedule import lr_at, make_optimizer
from wavbrivl.train.signals import StopSignals, TrainingInterrupted
from wavbrivl.train.validation import describe_validation, val_row, validate

ARTEFACT_NAME = "audio_encoder.pt"
CHECKPOINT_DIR = "checkpoints"


class NonFiniteLoss(RuntimeError):
    """Too many optimizer steps in a row had a non-finite loss or gradient."""


class BatchSource(Protocol):
    """What :func:`train` needs from the data (:class:`wavbrivl.train.data.TrainData`)."""

    def train_batches(
        self, position: DataPosition | None = None
    ) -> Iterator[tuple[dict[str, Any], DataPosition]]: ...

    def eval_batches(
        self, split: str, *, max_clips: int | None = None
    ) -> Iterator[dict[str, Any]]: ...

    def split_size(self, split: str) -> int: ...

    def describe(self) -> str: ...

    #: The fingerprint of the image encoder that made the image embeddings (recorded in
    #: ``audio_encoder.pt``, checked by the evaluation), or None.
    fingerprint: str | None


def _log_stderr(message: str) -> None:
    print(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- pieces of the loop ------------------------------------------------------------------------


def _float32(out: Any) -> Any:
    """The model outputs in float32: the loss (logits / 0.07) is computed outside autocast."""
    if dataclasses.is_dataclass(out):
        return dataclasses.replace(
            out,
            **{
                f.name: getattr(out, f.name).float()
                for f in fields(out)
                if torch.is_tensor(getattr(out, f.name))
            },
        )
    return out


# -- the loop ------------------------------------------------------------------------------------


class _Interval:
    """What happened since the previous log row."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.grad_norms: list[float] = []
        self.terms: dict[str, list[float]] = {}
        self.padded = self.bad = self.samples = 0
        self.started = time.monotonic()


class _Run:
    """The state of one training run and the operations on it; :func:`train` sequences them."""

    def __init__(self, model, data, cfg, out_dir, device, log, loss_fn, collective) -> None:
        self.model, self.data, self.cfg, self.device, self.log, self.loss_fn = (
            model,
            data,
            cfg,
            device,
            log,
            loss_fn,
        )
        self.dist: Collective = collective
        self.out_dir, self.ckpt_dir = out_dir, out_dir / CHECKPOINT_DIR
        self.optimizer = make_optimizer(model, cfg)
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.configs = model_configs(model)
        self.step = 0
        self.position: DataPosition | None = None
        self.counters = {"nonfinite_total": 0, "nonfinite_in_row": 0}
        self.interval = _Interval()
        self.started = time.monotonic()
        self.autocast = dict(
            device_type="cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"
        )
        self.train_log: TrainLog | None = None
        self.lr = cfg.lr  # of the latest step

    def resume_or_start(self) -> None:
        """Restore the newest good checkpoint (model, optimizer, RNG, data position, counters),
        or seed a fresh run."""
        if self.dist.is_main:
            for leftover in remove_interrupted_writes(self.ckpt_dir):
                self.log(f"removed {leftover.name}, left by a checkpoint write that was killed")
        found = load_latest_checkpoint(self.ckpt_dir, log=self.log)
        rank = self.dist.rank
        if found is None:
            torch.manual_seed(self.cfg.data.seed + rank)  # rank 0 = the single-process seed
            self.log(f"starting a new run in {self.out_dir}")
        else:
            path, state = found
            check_resumable(
                state["train_config"],
                self.cfg.to_dict(),
                state.get("model_configs", {}),
                self.configs,
                path,
            )
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            restore_rng(state["rng"])
            self.step = int(state["step"])
            if self.dist.world_size > 1:
                self._restore_rank_rng(state.get("rng_by_rank"))
            self.position = DataPosition.from_dict(state["data_position"])
            self.counters.update(state["counters"])
            self.log(f"resumed from {path} at step {self.step} (epoch {self.position.epoch})")
        # Every rank starts from rank 0's weights and queues (equal already; now guaranteed).
        self.dist.broadcast_model(self.model)
        if self.dist.is_main:
            self.train_log = TrainLog(
                self.out_dir / LOG_NAME, resume_step=self.step, final_step=self.cfg.steps
            )

    def _restore_rank_rng(self, saved: list[dict[str, Any]] | None) -> None:
        """Each rank's own RNG (dropout) from a data-parallel checkpoint of the same size;
        otherwise (another world size) a fresh per-rank seed: the data order is unaffected."""
        rank, world = self.dist.rank, self.dist.world_size
        if saved is not None and len(saved) == world:
            restore_rng(saved[rank])
        else:
            if rank == 0:
                self.log(
                    f"WARNING: the checkpoint holds {len(saved) if saved else 1} rank RNG state(s), "
                    f"this run has {world} ranks: ranks > 0 get fresh dropout seeds"
                )
            if rank > 0:
                torch.manual_seed(self.cfg.data.seed + 1000 * self.step + rank)

    def checkpoint(self) -> Path:
        """Save a checkpoint (main rank; every rank must call it: the RNG states are gathered)."""
        rng_by_rank = self.dist.gather_objects(rng_state())
        path = checkpoint_path(self.ckpt_dir, self.step)
        if not self.dist.is_main:
            return path
        state = {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": rng_state(),
            "data_position": (self.position or DataPosition()).to_dict(),
            "counters": dict(self.counters),
            "train_config": self.cfg.to_dict(),
            "model_configs": self.configs,
        }
        if self.dist.world_size > 1:
            state["rng_by_rank"] = rng_by_rank
        path = save_checkpoint(path, state)
        prune_checkpoints(self.ckpt_dir, self.cfg.keep_checkpoints)
        return path

    def next_batch(self, batches: Iterator[tuple[dict[str, Any], DataPosition]]) -> dict[str, Any]:
        """The next batch with at least one clip (on every rank: they skip together);
        undecodable clips are logged by name."""
        while True:
            batch, self.position = next(batches)
            self.interval.bad += len(batch["bad_clips"])
            for bad in batch["bad_clips"]:
                self.log(f"WARNING: dropped clip {bad}")
            if self.dist.all_true(bool(batch["clip_id"])):
                self.interval.padded += batch["n_padded"]
                self.interval.samples += len(batch["clip_id"])
                return batch

    def optimizer_step(self, batches: Iterator[tuple[dict[str, Any], DataPosition]]) -> None:
        """One optimizer step over ``grad_accum`` micro-batches, or a counted skip."""
        cfg, model = self.cfg, self.model
        lr = lr_at(
            self.step,
            base_lr=cfg.lr,
            warmup_steps=cfg.warmup_steps,
            total_steps=cfg.steps,
            min_lr=cfg.min_lr,
        )
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.lr = lr
        self.optimizer.zero_grad(set_to_none=True)

        # Accumulate: the model runs under autocast, the loss in float32; the outputs are
        # kept (not yet enqueued) until the step is known to be finite.
        outs, step_loss, step_terms, finite = [], 0.0, {}, True
        for _ in range(cfg.grad_accum):
            batch = self.next_batch(batches)
            with torch.autocast(**self.autocast):
                out = model(
                    batch["waveforms"].to(self.device, non_blocking=True),  # (B, T)
                    batch["lengths"].to(self.device, non_blocking=True),  # (B,)
                    batch["image_emb"].to(self.device, non_blocking=True),  # (B, D)
                )
            # Data-parallel: the global batch's outputs (B_global, D), so the loss, its
            # in-batch negatives and the enqueued keys are those of one process on that batch.
            out = self.dist.gather_outputs(out)
            loss, terms = self.loss_fn(_float32(out), model)
            if not self.dist.all_true(bool(torch.isfinite(loss))):
                finite = False
                break
            (loss / cfg.grad_accum).backward()
            outs.append(out)
            step_loss += loss.item() / cfg.grad_accum
            for k, v in terms.items():
                step_terms[k] = step_terms.get(k, 0.0) + float(v) / cfg.grad_accum
        grad_norm = math.nan
        if finite:
            # Each rank's gradient is its rows' share of the global loss: their sum is the
            # single-process gradient (identical on every rank from here on).
            self.dist.sum_gradients(self.params)
            max_norm = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, max_norm))
            finite = math.isfinite(grad_norm)

        # Update, or skip: a skipped step leaves the model, the queues and the optimizer as
        # they were, and too many skips in a row end the run.
        if finite:
            self.optimizer.step()
            model.momentum_update()
            for out in outs:
                model.enqueue(out)
            self.counters["nonfinite_in_row"] = 0
            self.interval.losses.append(step_loss)
            self.interval.grad_norms.append(grad_norm)
            for k, v in step_terms.items():
                self.interval.terms.setdefault(k, []).append(v)
        else:
            self.optimizer.zero_grad(set_to_none=True)
            self.counters["nonfinite_total"] += 1
            self.counters["nonfinite_in_row"] += 1
            in_row = self.counters["nonfinite_in_row"]
            self.log(
                f"WARNING: step {self.step + 1}: non-finite loss or gradient, step skipped ({in_row} in a row)"
            )
            if in_row >= cfg.max_nonfinite_in_row:
                raise NonFiniteLoss(
                    f"{in_row} optimizer steps in a row (up to step {self.step + 1}) had a non-finite loss "
                    f"or gradient (lr {lr:.3g}); lower lr, check the inputs, or raise max_nonfinite_in_row"
                )
        self.step += 1

    def write_interval(self) -> dict[str, Any]:
        """The interval's log row (every rank: the clip counts are summed over ranks); only
        the main rank writes it."""
        iv, seconds = self.interval, time.monotonic() - self.interval.started
        iv.padded, iv.bad, iv.samples = self.dist.sum_counts([iv.padded, iv.bad, iv.samples])
        row = {
            "kind": "train",
            "step": self.step,
            "epoch": self.position.epoch if self.position else 0,
            "lr": self.lr,
            "loss": float(np.mean(iv.losses)) if iv.losses else None,
            "grad_norm": float(np.mean(iv.grad_norms)) if iv.grad_norms else None,
            "skipped_steps": self.counters["nonfinite_total"],
            "padded_clips": iv.padded,
            "bad_clips": iv.bad,
            "samples_per_s": iv.samples / max(seconds, 1e-9),
            "elapsed_s": time.monotonic() - self.started,
            **{f"loss_{k}": float(np.mean(v)) for k, v in iv.terms.items()},
        }
        self.interval = _Interval()
        if not self.dist.is_main:
            return row
        self.train_log.write(row)
        self.log(
            f"step {self.step}/{self.cfg.steps} loss {cell(row['loss'])} lr {self.lr:.3g} "
            f"grad_norm {cell(row['grad_norm'])} {row['samples_per_s']:.1f} clips/s"
        )
        return row

    def validate(self, stop: StopSignals) -> dict | None:
        """Validation on the main rank; the other ranks wait for it (every rank calls this)."""
        if not self.dist.is_main:
            self.dist.barrier()
            return None
        try:
            return self._validate(stop)
        finally:
            self.dist.barrier()

    def _validate(self, stop: StopSignals) -> dict | None:
        metrics = validate(
            self.model,
            self.data,
            max_clips=self.cfg.eval_max_clips,
            device=self.device,
            stop=lambda: stop.received is not None,
        )
        if metrics is None or stop.received:
            return None
        row = val_row(self.step, metrics)
        self.train_log.write(row)
        self.log(describe_validation(row, metrics))
        return metrics


def train(
    model: torch.nn.Module,
    data: BatchSource,
    cfg: TrainConfig,
    out_dir: Path,
    *,
    device: torch.device,
    log: Callable[[str], None] = _log_stderr,
    loss_fn: Callable[[Any, torch.nn.Module], tuple[torch.Tensor, dict[str, float]]] | None = None,
    on_step: Callable[[int], None] | None = None,
    collective: Collective | None = None,
) -> Path:
    """Train ``model`` (a CrossModalMoCo) to ``cfg.steps`` and return ``audio_encoder.pt``.

    ``loss_fn`` defaults to :func:`wavbrivl.train.loss.cx_loss`; ``on_step(step)`` is called
    after every optimizer step (monitoring, tests). ``collective``: this process's place in a
    data-parallel job (:mod:`wavbrivl.train.ddp`); ``data`` then yields this rank's slice of
    each global batch. Every rank returns the artefact's path; only the main rank writes it.
    """
    dist = collective or SingleProcess()
    if loss_fn is None:
        from wavbrivl.train.loss import cx_loss as loss_fn
    out_dir, device = Path(out_dir), torch.device(device)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.to(device)
    model.train()
    run = _Run(model, data, cfg, out_dir, device, log, loss_fn, dist)

    # Signals are caught from here on: one that arrives while resuming is acted on before
    # the first step.
    with StopSignals() as stop:
        run.resume_or_start()
        log(f"data: {data.describe()}")
        if data.split_size("val") == 0:
            log("WARNING: no validation clips (val_fraction too small for this data): no val R@1")
        batches = data.train_batches(run.position)
        progress = tqdm(
            total=cfg.steps,
            initial=run.step,
            desc="train",
            disable=None if dist.is_main else True,
            file=sys.stderr,
        )
        try:
            while run.step < cfg.steps:
                # A stop signal between two steps: checkpoint here, exit 0, resume later.
                # Data-parallel ranks stop at the same step when any of them got a signal.
                if dist.any_true(stop.received is not None):
                    signal_name = stop.received or "a signal to another rank"
                    path = run.checkpoint()
                    log(
                        f"{signal_name}: saved {path} at step {run.step}; exiting so the job can be resumed"
                    )
                    raise TrainingInterrupted(signal_name, path, run.step)

                run.optimizer_step(batches)
                progress.update(1)

                # Bookkeeping: log row, validation, checkpoint.
                if run.step % cfg.log_every == 0 or run.step == cfg.steps:
                    progress.set_postfix(loss=run.write_interval()["loss"], lr=run.lr)
                if cfg.eval_every and run.step % cfg.eval_every == 0 and run.step < cfg.steps:
                    run.validate(stop)
                if run.step % cfg.ckpt_every == 0 or run.step == cfg.steps:
                    run.checkpoint()
                if on_step is not None:
                    on_step(run.step)
        finally:
            # Stops the DataLoader workers now, also when the loop ends by an exception.
            batches.close()
            progress.close()

        # The end: a final checkpoint exists (resuming after this point only redoes the
        # artefact); validate, write the artefact and the curves.
        if dist.any_true(dist.is_main and not checkpoint_path(run.ckpt_dir, run.step).exists()):
            run.checkpoint()
        metrics = run.validate(stop)
    artefact = out_dir / ARTEFACT_NAME
    if not dist.is_main:
        return artefact
    save_audio_encoder(
        artefact,
        model,
        step=run.step,
        train_config=cfg.to_dict(),
        metrics=metrics,
        image_encoder_fingerprint=data.fingerprint,
    )
    if (out_dir / LOG_NAME).exists():
        write_curves(out_dir / LOG_NAME, out_dir / CURVES_NAME)
    log(
        f"wrote {artefact} after {run.step} steps ({run.counters['nonfinite_total']} skipped as non-finite)"
    )
    return artefact
