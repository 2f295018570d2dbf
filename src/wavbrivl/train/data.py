"""Training batches: media shards and embedding shards joined by clip_id, streamed by workers.

What one training batch is: ``batch_size`` clips, each a random ``window_s`` window of its
16 kHz audio (zero-padded with its true length when the clip is shorter) and the frozen image
embedding of one of its cached frame views (view 0 = the clean frame, 1.. = augmented crops).

How the stream is built, and why:

- Which clips: :mod:`wavbrivl.train.catalogue` (the manifest's splits, usable clips only,
  checked before any training step).
- How a split becomes batches: :mod:`wavbrivl.train.streams`. A torch ``DataLoader`` runs
  ``num_workers`` processes over an ``IterableDataset``; each epoch the split's shards are
  permuted with the seed and dealt to the workers ("streams"), each stream passes its rows
  through a shuffle buffer that spans shard boundaries and cuts the result into whole batches.
- Exact resume: the random window and view of a clip are drawn from a generator seeded by
  ``(seed, epoch, clip_id)``, so they do not depend on order or timing; the order of batches is
  a deterministic round-robin over the streams (the DataLoader's in-order mode). A
  :class:`DataPosition` (epoch, batches consumed per stream, next stream) therefore pins the
  stream, and a resumed stream skips its consumed batches without decoding them.
- Data-parallel (``rank`` / ``world_size`` of :class:`TrainData`): ``batch_size`` stays the
  *global* batch. Every rank walks the same stream of global batches (same shards, shuffle
  and position, so a checkpoint of rank 0 resumes every rank, at any world size) and decodes
  only its contiguous slice of each, ``[rank * B // W, (rank + 1) * B // W)``: the ranks'
  slices, in rank order, are the single-process batch.
"""

from __future__ import annotations

import atexit
import os
import signal
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from wavbrivl.configs import check_block, default_field
from wavbrivl.extract.media import SAMPLE_RATE
from wavbrivl.hashing import seeded_int
from wavbrivl.train.catalogue import SPLITS, EmptySplit, ShardPair, build_catalogue
from wavbrivl.train.streams import SplitStream

PathLike = str | os.PathLike
VIEW_MODES = ("random", "clean")


@dataclass(frozen=True)
class DataConfig:
    """How clips become batches (the training loop's :class:`TrainConfig` fills it)."""

    # Keys of the workflow's `train` block: defaults and rules from the config schema.
    window_s: float = default_field("train", "window_s")  # audio window per clip and step
    batch_size: int = default_field("train", "batch_size")
    num_workers: int = default_field("train", "num_workers")  # 0 = main process; run-time only
    data_streams: int = default_field("train", "data_streams")  # fixed for a run
    shuffle_buffer: int = default_field("train", "shuffle_buffer")  # clips held per stream
    val_fraction: float = default_field("train", "val_fraction")  # held out by clip_id hash
    seed: int = default_field("train", "seed")
    views: str = default_field("train", "views")  # random cached view per step, or view 0
    train_split: str = default_field("train", "train_split")  # manifest split names
    test_split: str = default_field("train", "test_split")
    # Constants of the pipeline, not config keys.
    min_samples: int = 400  # shorter audio cannot give one WavLM frame (25 ms): counted as bad
    prefetch_factor: int = 2

    def __post_init__(self) -> None:
        check_block(self, "train")
        checks = {
            "views": self.views in VIEW_MODES,  # the schema's enum and the code must agree
            "min_samples": self.min_samples >= 1,
            "prefetch_factor": self.prefetch_factor >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(
                f"invalid data config value(s): {', '.join(f'{n}={getattr(self, n)!r}' for n in bad)}"
            )

    @property
    def window_samples(self) -> int:
        return round(self.window_s * SAMPLE_RATE)


@dataclass
class DataPosition:
    """Where the training stream stands: enough to resume it batch-exactly."""

    epoch: int = 0
    consumed: list[int] = field(default_factory=list)  # per logical stream, this epoch
    next_stream: int = 0  # where the round-robin over the streams goes on

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "consumed": list(self.consumed),
            "next_stream": self.next_stream,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataPosition:
        return cls(int(d["epoch"]), [int(c) for c in d["consumed"]], int(d["next_stream"]))


def _quiet_worker(_worker_id: int) -> None:
    """Workers ignore SIGTERM/SIGUSR1/SIGINT: a job-wide signal is for the main process, which
    saves a checkpoint and then shuts them down (a worker dying first would make torch raise
    in the main process at an arbitrary point). One thread each: the main process owns the
    cores. A worker whose main process is gone exits by itself (torch's watchdog)."""
    for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    torch.set_num_threads(1)


# Workers that ignore SIGTERM must be shut down by their loader, not by multiprocessing's
# exit hook (which terminates with SIGTERM and would then wait forever): every batch stream
# still open at interpreter exit is closed first (atexit runs the newest hook first).
_OPEN_STREAMS: weakref.WeakSet = weakref.WeakSet()


def _track(stream: Iterator[Any]) -> Iterator[Any]:
    _OPEN_STREAMS.add(stream)
    return stream


@atexit.register
def _close_open_streams() -> None:
    for stream in list(_OPEN_STREAMS):
        stream.close()


class TrainData:
    """The data of one training run: usable clips by split, and batch streams over them."""

    def __init__(
        self,
        manifest: PathLike,
        shards: Sequence[tuple[PathLike, PathLike] | ShardPair],
        cfg: DataConfig,
        *,
        fingerprint: str | None = None,
        image_dim: int | None = None,
        pin_memory: bool = False,
        check_train: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ):
        """``shards``: (embedding Parquet, media Parquet) pairs, whose embeddings must all come
        from one image encoder; ``fingerprint``: that encoder's, when it must be a given one
        (None: whichever made the shards); ``image_dim``: the model's image space size (None:
        whatever the shards hold); :attr:`fingerprint` and :attr:`image_dim` then say what
        the shards hold;
        ``pin_memory``: True when training on CUDA; ``check_train=False`` for evaluation only
        (no train split needed); ``rank`` / ``world_size``: this process's slice of every
        training batch in a data-parallel run (evaluation batches are never sliced)."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size {world_size})")
        if world_size > cfg.batch_size:
            raise ValueError(
                f"batch_size {cfg.batch_size} (the global batch) is smaller than world_size "
                f"{world_size}: every rank needs at least one clip per batch"
            )
        self.rank, self.world_size = rank, world_size
        self.cfg = cfg
        self.pin_memory = pin_memory
        pairs = [
            s if isinstance(s, ShardPair) else ShardPair(Path(s[0]), Path(s[1])) for s in shards
        ]
        self.catalogue = build_catalogue(
            manifest, pairs, cfg, fingerprint=fingerprint, image_dim=image_dim
        )
        self.fingerprint, self.image_dim = self.catalogue.fingerprint, self.catalogue.dim
        train = self.split_size("train")
        if check_train and train < cfg.batch_size:
            raise EmptySplit(
                f"split 'train' has {train} usable clip(s) (manifest split {cfg.train_split!r} minus "
                f"{cfg.val_fraction:.0%} held out for val, media ok and embedded), fewer than one "
                f"batch of {cfg.batch_size}"
            )

    def split_size(self, split: str) -> int:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; splits: {SPLITS}")
        return len(self.catalogue.labels[split])

    def describe(self) -> str:
        sizes = ", ".join(
            f"{s} {self.split_size(s)} clips ({len(self.catalogue.shards[s])} shards)"
            for s in SPLITS
        )
        streams, workers = self.cfg.data_streams, self.cfg.num_workers
        idle = (
            f" ({workers - streams} idle: raise data_streams to use them)"
            if workers > streams
            else ""
        )
        return (
            f"{sizes}; {self.catalogue.n_unusable} of {self.catalogue.n_manifest} manifest clips "
            f"not usable (no ok media, no embedding, or another split); {streams} data stream(s) "
            f"over {max(workers, 1)} process(es){idle}"
        )

    def _loader(self, stream: SplitStream, seed: int) -> Iterator[dict[str, Any]]:
        """The stream's batches in its order, made by ``num_workers`` processes."""
        workers = self.cfg.num_workers
        loader = DataLoader(
            stream,
            batch_size=None,  # streams yield whole batches
            num_workers=workers,
            worker_init_fn=_quiet_worker if workers else None,
            # Every worker yields an item per batch, its own or a place-holder: this many
            # requests in flight keep ``prefetch_factor`` real batches ahead per worker.
            prefetch_factor=self.cfg.prefetch_factor * workers if workers else None,
            pin_memory=self.pin_memory,
            # Its own generator: making a loader must not draw from the global torch RNG
            # (that would shift dropout after a resume).
            generator=torch.Generator().manual_seed(seed),
        )
        return (batch for batch in loader if batch is not None)

    def train_batches(
        self, position: DataPosition | None = None
    ) -> Iterator[tuple[dict[str, Any], DataPosition]]:
        """Endless training batches from ``position``, each with the position after it.

        Close the iterator (``.close()``) when done early: that stops the workers now.
        """
        return _track(self._train_batches(position))

    def _train_batches(
        self, position: DataPosition | None
    ) -> Iterator[tuple[dict[str, Any], DataPosition]]:
        n = self.cfg.data_streams
        pos = position or DataPosition()
        if not pos.consumed:  # the start of an epoch: nothing consumed yet, by any stream
            pos = DataPosition(pos.epoch, [0] * n, 0)
        if len(pos.consumed) != n:
            raise ValueError(
                f"the saved data position has {len(pos.consumed)} streams but data_streams is {n}; "
                f"resume with data_streams={len(pos.consumed)}"
            )
        pos = DataPosition(pos.epoch, list(pos.consumed), pos.next_stream)
        while True:
            stream = SplitStream(
                self.catalogue,
                "train",
                self.cfg,
                fingerprint=self.fingerprint,
                train=True,
                epoch=pos.epoch,
                skip=pos.consumed,
                start_stream=pos.next_stream,
                rank=self.rank,
                world_size=self.world_size,
            )
            if not any(pos.consumed) and not sum(stream.counts()):
                raise EmptySplit(
                    f"split 'train': an epoch gives no whole batch ({self.split_size('train')} clips "
                    f"over {n} stream(s) of batch_size {self.cfg.batch_size}); lower batch_size or data_streams"
                )
            for batch in self._loader(
                stream, seed=seeded_int("loader", self.cfg.seed, pos.epoch, bits=63)
            ):
                s = batch.pop("stream")
                batch.pop("index")
                pos.consumed[s] += 1
                pos.next_stream = (s + 1) % n
                yield batch, DataPosition(pos.epoch, list(pos.consumed), pos.next_stream)
            pos = DataPosition(pos.epoch + 1, [0] * n, 0)

    def eval_batches(self, split: str, *, max_clips: int | None = None) -> Iterator[dict[str, Any]]:
        """Every clip of ``split`` once (a seeded fixed subset of ``max_clips``), clean view,
        centred window; an empty split is an error now, not at the first batch."""
        if self.split_size(split) == 0:
            raise EmptySplit(
                f"split {split!r} has no usable clip ({self.describe()}); "
                + (
                    "raise val_fraction"
                    if split == "val"
                    else f"check the manifest's {self.cfg.test_split!r} rows"
                )
            )
        clips = self.catalogue.labels[split]
        if max_clips is not None and len(clips) > max_clips:
            keep = sorted(clips, key=lambda c: seeded_int("subset", self.cfg.seed, c))[:max_clips]
            clips = {c: clips[c] for c in keep}
        stream = SplitStream(
            self.catalogue, split, self.cfg, fingerprint=self.fingerprint, train=False, clips=clips
        )
        return _track(self._eval_batches(stream))

    def _eval_batches(self, stream: SplitStream) -> Iterator[dict[str, Any]]:
        for batch in self._loader(stream, seed=self.cfg.seed):
            batch.pop("stream")
            batch.pop("index")
            if batch["clip_id"]:  # not a batch of undecodable clips only
                yield batch
