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

import csv
import dataclasses
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from wavbrivl.atomic import atomic_path
from wavbrivl.configs import from_mapping
from wavbrivl.train.checkpoint import (
    CHECKPOINT_FORMAT,
    checkpoint_path,
    load_latest_checkpoint,
    model_configs,
    prune_checkpoints,
    save_audio_encoder,
    save_checkpoint,
)
from wavbrivl.train.data import DataConfig, DataPosition
from wavbrivl.train.schedule import lr_at

LOG_NAME = "train_log.tsv"
CURVES_NAME = "curves.png"
ARTEFACT_NAME = "audio_encoder.pt"
CHECKPOINT_DIR = "checkpoints"
LOG_COLUMNS = [
    "kind",  # train | val
    "step",
    "epoch",
    "lr",
    "loss",  # mean over the finite steps since the previous row
    "grad_norm",
    "skipped_steps",  # non-finite steps so far
    "padded_clips",  # clips shorter than the window, since the previous row
    "bad_clips",  # undecodable clips dropped, since the previous row
    "samples_per_s",
    "elapsed_s",
    "val_r1_a2i",  # validation instance-level R@1, audio -> image and image -> audio
    "val_r1_i2a",
    "val_r1_chance",  # R@1 of random ranking on the same clips
]
# Fields that may change between a checkpoint and its resume without changing the result.
RESUME_FREE = frozenset(
    {"ckpt_every", "keep_checkpoints", "eval_every", "eval_max_clips", "log_every"}
)


class NonFiniteLoss(RuntimeError):
    """Too many optimizer steps in a row had a non-finite loss or gradient."""


class TrainingInterrupted(SystemExit):
    """A stop signal arrived; a checkpoint was saved. Exit code 0: rerun to resume."""

    def __init__(self, signal_name: str, checkpoint: Path, step: int):
        super().__init__(0)
        self.signal_name, self.checkpoint, self.step = signal_name, checkpoint, step

    def __str__(self) -> str:
        return f"{self.signal_name} at step {self.step}: saved {self.checkpoint}; rerun to resume"


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run's result (plus checkpoint/eval/log cadence)."""

    steps: int = 20000  # optimizer steps
    batch_size: int = 64  # clips per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float = 1e-4
    min_lr: float = 0.0
    weight_decay: float = 0.01  # not applied to biases and norm weights
    warmup_steps: int = 500
    grad_clip: float = 1.0  # max gradient norm; 0 = no clipping
    ckpt_every: int = 500
    keep_checkpoints: int = 2
    eval_every: int = 1000  # 0 = only at the end
    eval_max_clips: int = 2000  # validation subset (seeded), bounds eval time
    log_every: int = 10
    seed: int = 0
    window_s: float = 5.0
    max_nonfinite_in_row: int = 10
    num_workers: int = 2
    shuffle_buffer: int = 512
    val_fraction: float = 0.05
    views: str = "random"
    train_split: str = "train"
    test_split: str = "test"

    def __post_init__(self) -> None:
        positive = [
            "steps",
            "batch_size",
            "grad_accum",
            "ckpt_every",
            "keep_checkpoints",
            "log_every",
            "max_nonfinite_in_row",
            "eval_max_clips",
        ]
        bad = [n for n in positive if getattr(self, n) < 1]
        bad += [n for n in ("lr",) if not self.lr > 0]
        bad += [
            n
            for n in ("min_lr", "weight_decay", "grad_clip", "eval_every", "warmup_steps")
            if getattr(self, n) < 0
        ]
        if self.warmup_steps > self.steps:
            bad.append("warmup_steps")
        if self.min_lr > self.lr:
            bad.append("min_lr")
        if bad:
            raise ValueError(
                f"invalid train config value(s): {', '.join(f'{n}={getattr(self, n)!r}' for n in bad)}"
            )
        self.data_config()  # validates the data fields

    def data_config(self) -> DataConfig:
        return DataConfig(
            window_s=self.window_s,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            shuffle_buffer=self.shuffle_buffer,
            val_fraction=self.val_fraction,
            seed=self.seed,
            views=self.views,
            train_split=self.train_split,
            test_split=self.test_split,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        return from_mapping(cls, d, "train config")


class Collective(Protocol):
    """What :func:`train` needs to run as one rank of a data-parallel job."""

    rank: int
    world_size: int

    @property
    def is_main(self) -> bool: ...

    def gather_outputs(self, out: Any) -> Any:
        """The global batch's outputs; this rank's rows keep their gradient."""

    def all_true(self, flag: bool) -> bool: ...

    def any_true(self, flag: bool) -> bool: ...

    def sum_gradients(self, params: list[torch.nn.Parameter]) -> None: ...

    def sum_counts(self, counts: list[int]) -> list[int]: ...

    def broadcast_model(self, model: torch.nn.Module) -> None: ...

    def barrier(self) -> None: ...

    def gather_objects(self, obj: Any) -> list[Any]: ...


class SingleProcess:
    """The :class:`Collective` of a run with one process: every operation is the identity."""

    rank, world_size, is_main = 0, 1, True

    def gather_outputs(self, out: Any) -> Any:
        return out

    def all_true(self, flag: bool) -> bool:
        return flag

    def any_true(self, flag: bool) -> bool:
        return flag

    def sum_gradients(self, params: list[torch.nn.Parameter]) -> None:
        pass

    def sum_counts(self, counts: list[int]) -> list[int]:
        return counts

    def broadcast_model(self, model: torch.nn.Module) -> None:
        pass

    def barrier(self) -> None:
        pass

    def gather_objects(self, obj: Any) -> list[Any]:
        return [obj]


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


def _log_stderr(message: str) -> None:
    print(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- pieces of the loop ------------------------------------------------------------------------


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; no weight decay on vectors (biases, norms)."""
    params = list(model.trainable_parameters())
    if not params:
        raise ValueError("the model has no trainable parameters")
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr)


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


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _check_resumable(
    saved: dict[str, Any], cfg: TrainConfig, saved_models: dict, models: dict, path: Path
) -> None:
    """Refuse a checkpoint made with another recipe: resuming it would not give this run."""
    ours = cfg.to_dict()
    changed = [
        f"{k}: {saved.get(k)!r} -> {ours[k]!r}"
        for k in ours
        if k not in RESUME_FREE and saved.get(k) != ours[k]
    ]
    for side in ("audio", "moco"):
        a, b = saved_models.get(side, {}), models.get(side, {})
        changed += [
            f"{side}.{k}: {a.get(k)!r} -> {b.get(k)!r}"
            for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k)
        ]
    if changed:
        raise ValueError(
            f"{path} was made with another configuration ({'; '.join(changed)}); "
            f"restore it, or delete {path.parent} to start over"
        )


class _StopSignals:
    """Turns SIGTERM / SIGUSR1 into a flag the loop checks between steps."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: Any) -> None:
        self.received = signal.Signals(signum).name

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():  # Python's rule for handlers
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class TrainLog:
    """``train_log.tsv``: one row per log interval and per validation, appended as they come.

    On resume, rows after the checkpoint's step are cut (they will be redone), and so is the
    final validation of a finished run (it runs again). A row with a column the header lacks
    (a new loss term) widens the header: the file is small, so it is rewritten.
    """

    def __init__(self, path: Path, *, resume_step: int, final_step: int):
        self.path = path
        self.columns: list[str] = []
        if path.exists() and path.stat().st_size:
            with open(path, newline="") as fh:
                header, *lines = list(csv.reader(fh, delimiter="\t"))
            self.columns = header
            rows = [dict(zip(header, line, strict=False)) for line in lines if line]

            def kept(row: dict[str, str]) -> bool:
                step = int(row["step"])
                redone_final = row["kind"] == "val" and step == resume_step == final_step
                return step <= resume_step and not redone_final

            self._rewrite(self.columns, [r for r in rows if kept(r)])

    def _rewrite(self, columns: list[str], rows: list[dict[str, str]]) -> None:
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, columns, delimiter="\t", lineterminator="\n", restval="")
            writer.writeheader()
            writer.writerows(rows)

    def write(self, row: dict[str, Any]) -> None:
        # dict.fromkeys: a row key that is also a fixed column is added once, not twice.
        new = [k for k in dict.fromkeys((*LOG_COLUMNS, *sorted(row))) if k not in self.columns]
        if new:
            old_rows: list[dict[str, str]] = []
            if self.path.exists() and self.columns:
                with open(self.path, newline="") as fh:
                    old_rows = list(csv.DictReader(fh, delimiter="\t"))
            self.columns = self.columns + new
            self._rewrite(self.columns, old_rows)
        with open(self.path, "a", newline="") as fh:
            fh.write("\t".join(_cell(row.get(c)) for c in self.columns) + "\n")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _instance_r1(metrics: dict, direction: str, field: str = "value") -> float | None:
    """Instance-level R@1 (or its chance level) of one direction from
    :func:`~wavbrivl.evaluate.retrieval.retrieval_metrics`' nested dict."""
    node: Any = metrics
    for key in (direction, "instance", "R@1", field):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return float(node)


@torch.no_grad()
def embed_batches(
    model: torch.nn.Module,
    batches: Iterator[dict[str, Any]],
    *,
    device: torch.device,
    stop: Callable[[], bool] = lambda: False,
) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """``(audio (N, D), image (N, D), clip_ids, labels)``: the downstream audio embedding
    (``embed_audio``: g(audio), L2-normalised, image space) beside the clips' image embeddings."""
    was_training = model.training
    model.eval()
    audio, image, ids, labels = [], [], [], []
    try:
        for batch in batches:
            if stop():
                break
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
                emb = model.embed_audio(batch["waveforms"].to(device), batch["lengths"].to(device))
            audio.append(emb.float().cpu().numpy())
            image.append(F.normalize(batch["image_emb"].float(), dim=-1).numpy())
            ids += batch["clip_id"]
            labels += batch["label"]
    finally:
        model.train(was_training)
    if not audio:
        return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32), [], []
    return np.concatenate(audio), np.concatenate(image), ids, labels


def validate(
    model: torch.nn.Module,
    data: BatchSource,
    cfg: TrainConfig,
    *,
    device: torch.device,
    stop: Callable[[], bool] = lambda: False,
) -> dict | None:
    """Retrieval metrics on the validation subset (None when there is no val clip)."""
    if data.split_size("val") == 0:
        return None
    from wavbrivl.evaluate.retrieval import retrieval_metrics

    audio, image, _, labels = embed_batches(
        model, data.eval_batches("val", max_clips=cfg.eval_max_clips), device=device, stop=stop
    )
    if len(labels) < 2:
        return None
    return retrieval_metrics(audio, image, labels)


def write_curves(log_path: Path, out_path: Path) -> None:
    """``curves.png``: training loss, learning rate and validation R@1 against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    table = pd.read_csv(log_path, sep="\t")
    train_rows, val_rows = table[table["kind"] == "train"], table[table["kind"] == "val"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(train_rows["step"], train_rows["loss"])
    axes[0].set(title="training loss (CXLoss)", xlabel="step")
    axes[1].plot(train_rows["step"], train_rows["lr"])
    axes[1].set(title="learning rate", xlabel="step")
    for column, name in (("val_r1_a2i", "audio→image"), ("val_r1_i2a", "image→audio")):
        if column in val_rows and val_rows[column].notna().any():
            axes[2].plot(val_rows["step"], val_rows[column], marker="o", label=name)
    if "val_r1_chance" in val_rows and val_rows["val_r1_chance"].notna().any():
        axes[2].plot(val_rows["step"], val_rows["val_r1_chance"], "k--", label="chance")
    axes[2].set(title="validation R@1 (instance)", xlabel="step")
    if axes[2].has_data():
        axes[2].legend()
    fig.tight_layout()
    with atomic_path(out_path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


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
        found = load_latest_checkpoint(self.ckpt_dir, log=self.log)
        rank = self.dist.rank
        if found is None:
            torch.manual_seed(self.cfg.seed + rank)  # rank 0 = the single-process seed
            self.log(f"starting a new run in {self.out_dir}")
        else:
            path, state = found
            _check_resumable(
                state["train_config"], self.cfg, state.get("model_configs", {}), self.configs, path
            )
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            _restore_rng(state["rng"])
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
            _restore_rng(saved[rank])
        else:
            if rank == 0:
                self.log(
                    f"WARNING: the checkpoint holds {len(saved) if saved else 1} rank RNG state(s), "
                    f"this run has {world} ranks: ranks > 0 get fresh dropout seeds"
                )
            if rank > 0:
                torch.manual_seed(self.cfg.seed + 1000 * self.step + rank)

    def checkpoint(self) -> Path:
        """Save a checkpoint (main rank; every rank must call it: the RNG states are gathered)."""
        rng_by_rank = self.dist.gather_objects(_rng_state())
        path = checkpoint_path(self.ckpt_dir, self.step)
        if not self.dist.is_main:
            return path
        state = {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": _rng_state(),
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
            f"step {self.step}/{self.cfg.steps} loss {_cell(row['loss'])} lr {self.lr:.3g} "
            f"grad_norm {_cell(row['grad_norm'])} {row['samples_per_s']:.1f} clips/s"
        )
        return row

    def validate(self, stop: _StopSignals) -> dict | None:
        """Validation on the main rank; the other ranks wait for it (every rank calls this)."""
        if not self.dist.is_main:
            self.dist.barrier()
            return None
        try:
            return self._validate(stop)
        finally:
            self.dist.barrier()

    def _validate(self, stop: _StopSignals) -> dict | None:
        metrics = validate(
            self.model,
            self.data,
            self.cfg,
            device=self.device,
            stop=lambda: stop.received is not None,
        )
        if metrics is None or stop.received:
            return None
        row = {
            "kind": "val",
            "step": self.step,
            "val_r1_a2i": _instance_r1(metrics, "audio_to_image"),
            "val_r1_i2a": _instance_r1(metrics, "image_to_audio"),
            "val_r1_chance": _instance_r1(metrics, "audio_to_image", "chance"),
        }
        self.train_log.write(row)
        self.log(
            f"step {self.step}: validation R@1 audio->image {_cell(row['val_r1_a2i'])}, image->audio "
            f"{_cell(row['val_r1_i2a'])} (chance {_cell(row['val_r1_chance'])}, {metrics['n_clips']} clips)"
        )
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
    with _StopSignals() as stop:
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
    save_audio_encoder(artefact, model, step=run.step, train_config=cfg.to_dict(), metrics=metrics)
    if (out_dir / LOG_NAME).exists():
        write_curves(out_dir / LOG_NAME, out_dir / CURVES_NAME)
    log(
        f"wrote {artefact} after {run.step} steps ({run.counters['nonfinite_total']} skipped as non-finite)"
    )
    return artefact
