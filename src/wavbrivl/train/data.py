"""Training batches: media shards and embedding shards joined by clip_id, streamed by workers.

What one training batch is: ``batch_size`` clips, each a random ``window_s`` window of its
16 kHz audio (zero-padded with its true length when the clip is shorter) and the frozen image
embedding of one of its cached frame views (view 0 = the clean frame, 1.. = augmented crops).

How the stream is built, and why:

- Splits come from the manifest: ``train_split`` clips are trained on, except a held-out
  ``val_fraction`` chosen by a seeded hash of the clip id (stable when the manifest grows,
  disjoint from train by construction); ``test_split`` clips are the test split.
- Only clips whose media row is ``ok`` *and* that have an embedding are usable; the catalogue
  of usable clips is read (ids only) when :class:`TrainData` is built, so an empty split, an
  embedding of the wrong size or from another encoder fails before any training step.
- A torch ``DataLoader`` runs ``num_workers`` processes over an ``IterableDataset``; each epoch
  the split's shards are permuted with the seed and dealt to the workers ("streams"), each
  stream passes its rows through a shuffle buffer that spans shard boundaries and cuts the
  result into whole batches.
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
import hashlib
import os
import signal
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from wavbrivl.embed.reader import FingerprintMismatch, check_fingerprint, iter_pairs
from wavbrivl.embed.store import read_header
from wavbrivl.extract.media import decode_audio
from wavbrivl.status import OK

PathLike = str | os.PathLike
SPLITS = ("train", "val", "test")
VIEW_MODES = ("random", "clean")
MANIFEST_COLUMNS = ("clip_id", "split", "labels", "label_names")


class EmptySplit(ValueError):
    """A split has no usable clip (or too few for one batch)."""


class EmbeddingDimMismatch(ValueError):
    """An embedding shard's size differs from the model's image space."""


@dataclass(frozen=True)
class DataConfig:
    """How clips become batches (the training loop's :class:`TrainConfig` fills it)."""

    window_s: float = 5.0  # audio window per clip and step, seconds
    batch_size: int = 64
    num_workers: int = 2  # DataLoader worker processes (0 = in the main process)
    shuffle_buffer: int = 512  # clips held per worker to shuffle across shard boundaries
    val_fraction: float = 0.05  # of the train split, held out by a seeded hash of clip_id
    seed: int = 0
    views: str = "random"  # "random": a random cached view per step; "clean": view 0 only
    train_split: str = "train"  # manifest split names
    test_split: str = "test"
    sample_rate: int = 16000
    min_samples: int = 400  # shorter audio cannot give one WavLM frame (25 ms): counted as bad
    prefetch_factor: int = 2

    def __post_init__(self) -> None:
        checks = {
            "window_s": self.window_s > 0,
            "batch_size": self.batch_size >= 1,
            "num_workers": self.num_workers >= 0,
            "shuffle_buffer": self.shuffle_buffer >= 1,
            "val_fraction": 0.0 <= self.val_fraction < 1.0,
            "seed": self.seed >= 0,
            "views": self.views in VIEW_MODES,
            "sample_rate": self.sample_rate > 0,
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
        return round(self.window_s * self.sample_rate)

    @property
    def n_streams(self) -> int:
        return max(1, self.num_workers)


@dataclass
class DataPosition:
    """Where the training stream stands: enough to resume it batch-exactly."""

    epoch: int = 0
    consumed: list[int] = field(default_factory=list)  # batches consumed per stream this epoch
    next_stream: int = 0  # the stream the next batch comes from (round-robin)

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "consumed": list(self.consumed),
            "next_stream": self.next_stream,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataPosition:
        return cls(int(d["epoch"]), [int(c) for c in d["consumed"]], int(d["next_stream"]))


# -- pure helpers -----------------------------------------------------------------------------


def _hash64(*parts: object) -> int:
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def held_out_for_val(clip_id: str, *, seed: int, fraction: float) -> bool:
    """Whether a train-split clip is held out for validation (seeded, order-free)."""
    return _hash64("val", seed, clip_id) < fraction * 2**64


def assign_split(clip_id: str, manifest_split: str, cfg: DataConfig) -> str | None:
    """``train`` / ``val`` / ``test``, or None for a manifest split training does not use."""
    if manifest_split == cfg.train_split:
        return (
            "val"
            if held_out_for_val(clip_id, seed=cfg.seed, fraction=cfg.val_fraction)
            else "train"
        )
    if manifest_split == cfg.test_split:
        return "test"
    return None


def clip_label(labels: Sequence[str] | None, label_names: Sequence[str] | None) -> str:
    """One label per clip for class-level retrieval: the first display name, else the first id.

    VGGSound clips have exactly one label; for multi-label sets this is the first listed.
    """
    for values in (label_names, labels):
        if values is not None and len(values) > 0 and values[0]:
            return str(values[0])
    return ""


def sample_rng(seed: int, epoch: int, clip_id: str) -> np.random.Generator:
    """The generator of one clip's random window and view in one epoch (order-independent)."""
    return np.random.default_rng([seed, epoch, _hash64("sample", clip_id)])


def crop_window(audio: np.ndarray, window: int, start: int) -> tuple[np.ndarray, int]:
    """``(window,)`` float32 from ``start``, zero-padded at the end; and the true length."""
    out = np.zeros(window, dtype=np.float32)
    piece = audio[start : start + window]
    out[: len(piece)] = piece
    return out, len(piece)


def shuffled(items: Iterable[Any], buffer_size: int, rng: np.random.Generator) -> Iterator[Any]:
    """Streaming shuffle: hold ``buffer_size`` items, emit a random one as each new one comes."""
    buffer: list[Any] = []
    for item in items:
        if len(buffer) < buffer_size:
            buffer.append(item)
            continue
        j = int(rng.integers(buffer_size))
        yield buffer[j]
        buffer[j] = item
    for j in rng.permutation(len(buffer)):
        yield buffer[j]


def chunked(items: Iterable[Any], size: int, *, drop_last: bool) -> Iterator[list[Any]]:
    group: list[Any] = []
    for item in items:
        group.append(item)
        if len(group) == size:
            yield group
            group = []
    if group and not drop_last:
        yield group


# -- the catalogue of usable clips -----------------------------------------------------------


@dataclass(frozen=True)
class ShardPair:
    """One shard: its embedding Parquet and its media Parquet."""

    embedding: Path
    media: Path

    @property
    def name(self) -> str:
        return self.media.stem


@dataclass
class _Catalogue:
    """Per split: usable clip -> label, and the shards (sorted) holding them. Plain data, so
    DataLoader workers can receive it."""

    labels: dict[str, dict[str, str]]
    shards: dict[str, list[ShardPair]]
    dim: int
    n_manifest: int
    n_unusable: int


def _read_manifest(path: Path) -> list[tuple[str, str, str]]:
    """``(clip_id, split, label)`` rows of the manifest."""
    schema = pq.read_schema(path)
    missing = [c for c in MANIFEST_COLUMNS if c not in schema.names]
    if missing:
        raise ValueError(f"{path}: manifest lacks column(s) {missing}")
    table = pq.read_table(path, columns=list(MANIFEST_COLUMNS))
    return [
        (clip_id, split, clip_label(labels, names))
        for clip_id, split, labels, names in zip(
            table.column("clip_id").to_pylist(),
            table.column("split").to_pylist(),
            table.column("labels").to_pylist(),
            table.column("label_names").to_pylist(),
            strict=True,
        )
    ]


def _usable_ids(pair: ShardPair) -> set[str]:
    """Clips of a shard with ``ok`` media and an embedding (ids only: no audio is read)."""
    media = pq.read_table(pair.media, columns=["clip_id", "status"])
    ok = {
        c
        for c, s in zip(
            media.column("clip_id").to_pylist(), media.column("status").to_pylist(), strict=True
        )
        if s == OK
    }
    embedded = set(pq.read_table(pair.embedding, columns=["clip_id"]).column("clip_id").to_pylist())
    return ok & embedded


def build_catalogue(
    manifest: PathLike,
    shards: Sequence[ShardPair],
    cfg: DataConfig,
    *,
    fingerprint: str | None,
    image_dim: int,
) -> _Catalogue:
    """Check every shard's header, then sort the usable clips into splits.

    With ``fingerprint=None`` the shards must still agree with each other: embeddings of two
    encoders are never mixed.
    """
    first: tuple[Path, str] | None = None
    for pair in shards:
        for path in (pair.embedding, pair.media):
            if not path.exists():
                raise FileNotFoundError(f"{path}: shard file missing")
        check_fingerprint(pair.embedding, fingerprint)
        header = read_header(pair.embedding)
        first = first or (pair.embedding, header.fingerprint)
        if header.fingerprint != first[1]:
            raise FingerprintMismatch(
                f"{pair.embedding} and {first[0]} were made by different image encoders "
                f"(fingerprints {header.fingerprint[:16]}... and {first[1][:16]}...)"
            )
        dim = header.dim
        if dim != image_dim:
            raise EmbeddingDimMismatch(
                f"{pair.embedding}: embeddings have {dim} dimensions but the model's image space "
                f"has {image_dim} (image_dim); embed with the matching image encoder"
            )
    rows = _read_manifest(Path(manifest))
    usable_by_shard = {pair: _usable_ids(pair) for pair in shards}
    shard_of_clip = {c: pair for pair, ids in usable_by_shard.items() for c in ids}
    labels: dict[str, dict[str, str]] = {s: {} for s in SPLITS}
    holding: dict[str, set[ShardPair]] = {s: set() for s in SPLITS}
    for clip_id, manifest_split, label in rows:
        split = assign_split(clip_id, manifest_split, cfg)
        pair = shard_of_clip.get(clip_id)
        if split is None or pair is None:
            continue
        labels[split][clip_id] = label
        holding[split].add(pair)
    n_usable = sum(len(v) for v in labels.values())
    return _Catalogue(
        labels=labels,
        shards={s: sorted(holding[s], key=lambda p: (p.name, str(p.media))) for s in SPLITS},
        dim=image_dim,
        n_manifest=len(rows),
        n_unusable=len(rows) - n_usable,
    )


# -- the worker side ---------------------------------------------------------------------------


@dataclass
class _Row:
    clip_id: str
    audio: bytes
    embeddings: np.ndarray  # (V, D)


class SplitStream(IterableDataset):
    """The batches of one split in one epoch; each DataLoader worker serves one stream.

    ``train`` mode: seeded shard permutation, shuffle buffer, random windows and views, whole
    batches only (a constant batch shape), ``skip[s]`` batches of stream ``s`` skipped without
    decoding (resume). ``eval`` mode: shard order, centred window, view 0, last batch kept.
    """

    def __init__(
        self,
        catalogue: _Catalogue,
        split: str,
        cfg: DataConfig,
        *,
        fingerprint: str | None,
        train: bool,
        epoch: int = 0,
        skip: Sequence[int] | None = None,
        start_stream: int = 0,
        clips: dict[str, str] | None = None,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.catalogue = catalogue
        self.split = split
        self.cfg = cfg
        self.fingerprint = fingerprint
        self.train = train
        self.epoch = epoch
        self.skip = list(skip) if skip is not None else [0] * cfg.n_streams
        self.start_stream = start_stream
        self.clips = clips if clips is not None else catalogue.labels[split]
        self.rank, self.world_size = rank, world_size

    def rank_slice(self, group: Sequence[_Row]) -> Sequence[_Row]:
        """This rank's contiguous part of a global batch (all of it with one process)."""
        n, w = len(group), self.world_size
        return group[self.rank * n // w : (self.rank + 1) * n // w]

    def stream_shards(self, stream: int) -> list[ShardPair]:
        """The shards stream ``stream`` reads this epoch."""
        shards = self.catalogue.shards[self.split]
        if self.train:
            order = np.random.default_rng(
                [self.cfg.seed, self.epoch, _hash64("shards")]
            ).permutation(len(shards))
            shards = [shards[i] for i in order]
        return shards[stream :: self.cfg.n_streams]

    def _rows(self, shards: Sequence[ShardPair]) -> Iterator[_Row]:
        for pair in shards:
            for frame in iter_pairs(
                [(pair.embedding, pair.media)],
                fingerprint=self.fingerprint,
                media_columns=("clip_id", "audio"),
            ):
                for clip_id, audio, embeddings in zip(
                    frame["clip_id"], frame["audio"], frame["embeddings"], strict=True
                ):
                    if clip_id in self.clips:
                        yield _Row(clip_id, audio, embeddings)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        slot = info.id if info is not None else 0
        stream = (self.start_stream + slot) % self.cfg.n_streams
        rows: Iterable[_Row] = self._rows(self.stream_shards(stream))
        if self.train:
            rng = np.random.default_rng([self.cfg.seed, self.epoch, stream, _hash64("buffer")])
            rows = shuffled(rows, self.cfg.shuffle_buffer, rng)
        for index, group in enumerate(chunked(rows, self.cfg.batch_size, drop_last=self.train)):
            if index < self.skip[stream]:
                continue  # consumed before the resume: its place in the stream is all we need
            batch = self.make_batch(self.rank_slice(group) if self.train else group)
            if not self.train and not batch["clip_id"]:
                continue
            batch["stream"], batch["index"] = stream, index
            yield batch

    def make_batch(self, group: Sequence[_Row]) -> dict[str, Any]:
        """Decode, window and stack a group of rows; undecodable clips are dropped and named."""
        cfg, window = self.cfg, self.cfg.window_samples
        waves, lengths, embs, views, ids, bad = [], [], [], [], [], []
        for row in group:
            try:
                audio = decode_audio(row.audio, expect_rate=cfg.sample_rate)  # (n,)
            except Exception as exc:  # one corrupt clip must not end the run: it is reported
                bad.append(f"{row.clip_id}: {type(exc).__name__}: {exc}")
                continue
            n = len(audio)
            if n < cfg.min_samples:
                bad.append(f"{row.clip_id}: {n} samples, fewer than {cfg.min_samples}")
                continue
            if self.train:
                rng = sample_rng(cfg.seed, self.epoch, row.clip_id)
                start = int(rng.integers(n - window + 1)) if n > window else 0
                view = int(rng.integers(len(row.embeddings))) if cfg.views == "random" else 0
            else:
                start, view = max(0, (n - window) // 2), 0
            wave, length = crop_window(audio, window, start)
            waves.append(wave)
            lengths.append(length)
            embs.append(row.embeddings[view])
            views.append(view)
            ids.append(row.clip_id)
        return {
            "waveforms": torch.from_numpy(
                np.stack(waves) if waves else np.zeros((0, window), np.float32)
            ),  # (B, T)
            "lengths": torch.tensor(lengths, dtype=torch.int64),  # (B,)
            "image_emb": torch.from_numpy(
                np.stack(embs).astype(np.float32)
                if embs
                else np.zeros((0, self.catalogue.dim), np.float32)
            ),  # (B, D)
            "view": torch.tensor(views, dtype=torch.int64),  # (B,)
            "clip_id": ids,
            "label": [self.clips[c] for c in ids],
            "n_padded": sum(1 for length in lengths if length < window),
            "bad_clips": bad,
        }


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


# -- the main-process side -----------------------------------------------------------------------


class TrainData:
    """The data of one training run: usable clips by split, and batch streams over them."""

    def __init__(
        self,
        manifest: PathLike,
        shards: Sequence[tuple[PathLike, PathLike] | ShardPair],
        cfg: DataConfig,
        *,
        fingerprint: str | None,
        image_dim: int,
        pin_memory: bool = False,
        check_train: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ):
        """``shards``: (embedding Parquet, media Parquet) pairs; ``fingerprint``: the image
        encoder's (None skips that check); ``image_dim``: the model's image space size;
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
        self.fingerprint = fingerprint
        self.pin_memory = pin_memory
        pairs = [
            s if isinstance(s, ShardPair) else ShardPair(Path(s[0]), Path(s[1])) for s in shards
        ]
        self.catalogue = build_catalogue(
            manifest, pairs, cfg, fingerprint=fingerprint, image_dim=image_dim
        )
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
        return (
            f"{sizes}; {self.catalogue.n_unusable} of {self.catalogue.n_manifest} manifest clips "
            "not usable (no ok media, no embedding, or another split)"
        )

    def _loader(self, stream: SplitStream, seed: int) -> DataLoader:
        workers = self.cfg.num_workers
        return DataLoader(
            stream,
            batch_size=None,  # streams yield whole batches
            num_workers=workers,
            worker_init_fn=_quiet_worker if workers else None,
            prefetch_factor=self.cfg.prefetch_factor if workers else None,
            pin_memory=self.pin_memory,
            # Its own generator: making a loader must not draw from the global torch RNG
            # (that would shift dropout after a resume).
            generator=torch.Generator().manual_seed(seed),
        )

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
        n = self.cfg.n_streams
        pos = position or DataPosition()
        if not pos.consumed:  # the start of an epoch: nothing consumed yet, by any stream
            pos = DataPosition(pos.epoch, [0] * n, 0)
        if len(pos.consumed) != n:
            raise ValueError(
                f"the saved data position has {len(pos.consumed)} streams but num_workers gives {n}; "
                f"resume with num_workers={len(pos.consumed)} (0 and 1 both mean one stream)"
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
            fresh_epoch = not any(pos.consumed)
            got = 0
            for batch in self._loader(
                stream, seed=_hash64("loader", self.cfg.seed, pos.epoch) % 2**63
            ):
                s = batch.pop("stream")
                batch.pop("index")
                pos.consumed[s] += 1
                pos.next_stream = (s + 1) % n
                got += 1
                yield batch, DataPosition(pos.epoch, list(pos.consumed), pos.next_stream)
            if fresh_epoch and got == 0:
                raise EmptySplit(
                    f"split 'train': an epoch gave no whole batch ({self.split_size('train')} clips "
                    f"over {n} stream(s) of batch_size {self.cfg.batch_size}); lower batch_size or num_workers"
                )
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
            keep = sorted(clips, key=lambda c: _hash64("subset", self.cfg.seed, c))[:max_clips]
            clips = {c: clips[c] for c in keep}
        stream = SplitStream(
            self.catalogue, split, self.cfg, fingerprint=self.fingerprint, train=False, clips=clips
        )
        return _track(self._eval_batches(stream))

    def _eval_batches(self, stream: SplitStream) -> Iterator[dict[str, Any]]:
        for batch in self._loader(stream, seed=self.cfg.seed):
            batch.pop("stream")
            batch.pop("index")
            yield batch
