"""How one split becomes batches: logical streams, dealt to the DataLoader's workers.

The batches of an epoch do not depend on how many workers make them. There are
``data_streams`` logical streams (a config key, fixed for a run): each epoch the split's shards
are permuted with the seed and dealt to the streams; a stream passes its rows through its own
shuffle buffer (spanning shard boundaries) and cuts the result into whole batches. A clip's
random window and view are drawn from a generator seeded by ``(seed, epoch, clip_id)``, so
they do not depend on order or timing either.

The epoch's order of batches is a round-robin over the streams that still have batches
(:func:`batch_order`); how many batches each stream has is known in advance from the
catalogue. Worker ``w`` of ``W`` (the main process: ``0`` of ``1``) makes the batches of the
streams ``s`` with ``s % W == w``. The DataLoader returns its workers' items in turn, so every
worker yields one item per batch of the order: the batch when it is its own, else ``None``
(a place-holder, dropped by the main process). The batches thus come out in the same order
for any worker count, and a :class:`~wavbrivl.train.data.DataPosition` (batches consumed per
logical stream, next stream) resumes them exactly under another ``num_workers``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from wavbrivl.embed.reader import check_fingerprint, load_embeddings
from wavbrivl.extract.media import SAMPLE_RATE, decode_audio, iter_media_rows
from wavbrivl.hashing import seeded_int

if TYPE_CHECKING:
    from wavbrivl.train.catalogue import Catalogue, ShardPair
    from wavbrivl.train.data import DataConfig


def sample_rng(seed: int, epoch: int, clip_id: str) -> np.random.Generator:
    """The generator of one clip's random window and view in one epoch (order-independent)."""
    return np.random.default_rng([seed, epoch, seeded_int("sample", clip_id)])


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


def batch_order(counts: Sequence[int], consumed: Sequence[int], next_stream: int) -> Iterator[int]:
    """The stream of every remaining batch of an epoch: round-robin from ``next_stream`` over
    the streams with batches left (``counts[s]`` batches in all, ``consumed[s]`` already taken)."""
    left = [c - k for c, k in zip(counts, consumed, strict=True)]
    stream, remaining = next_stream, sum(left)
    while remaining > 0:
        if left[stream] > 0:
            yield stream
            left[stream] -= 1
            remaining -= 1
        stream = (stream + 1) % len(left)


@dataclass
class _Row:
    clip_id: str
    audio: bytes
    embeddings: np.ndarray  # (V, D)


class SplitStream(IterableDataset):
    """The batches of one split in one epoch, from ``data_streams`` logical streams.

    ``train`` mode: seeded shard permutation, shuffle buffer, random windows and views, whole
    batches only (a constant batch shape), ``skip[s]`` batches of stream ``s`` skipped without
    decoding (resume). ``eval`` mode: shard order, centred window, view 0, last batch kept.
    Yields, per batch of :func:`batch_order`, the batch or ``None`` (another worker's).
    """

    def __init__(
        self,
        catalogue: Catalogue,
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
        self.skip = list(skip) if skip is not None else [0] * cfg.data_streams
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
                [self.cfg.seed, self.epoch, seeded_int("shards")]
            ).permutation(len(shards))
            shards = [shards[i] for i in order]
        return shards[stream :: self.cfg.data_streams]

    def counts(self) -> list[int]:
        """Batches per stream this epoch (from the catalogue: no shard is read)."""
        shard_of = self.catalogue.shard_of
        per_shard: dict[ShardPair, int] = {}
        for clip_id in self.clips:
            per_shard[shard_of[clip_id]] = per_shard.get(shard_of[clip_id], 0) + 1
        rows = [
            sum(per_shard.get(p, 0) for p in self.stream_shards(s))
            for s in range(self.cfg.data_streams)
        ]
        b = self.cfg.batch_size
        return [n // b if self.train else math.ceil(n / b) for n in rows]

    def _rows(self, shards: Sequence[ShardPair]) -> Iterator[_Row]:
        """The catalogue's clips of ``shards``, each once (so the counts above hold)."""
        for pair in shards:
            check_fingerprint(pair.embedding, self.fingerprint)
            embeddings = load_embeddings(pair.embedding)  # clip_id -> (V, D)
            seen: set[str] = set()
            for frame in iter_media_rows(pair.media, ["audio"], ok_only=True):
                for clip_id, audio in zip(frame["clip_id"], frame["audio"], strict=True):
                    if (
                        clip_id in self.clips
                        and self.catalogue.shard_of[clip_id] == pair
                        and clip_id not in seen
                    ):
                        seen.add(clip_id)
                        yield _Row(clip_id, audio, embeddings[clip_id])

    def _stream_batches(self, stream: int) -> Iterator[dict[str, Any]]:
        rows: Iterable[_Row] = self._rows(self.stream_shards(stream))
        if self.train:
            rng = np.random.default_rng([self.cfg.seed, self.epoch, stream, seeded_int("buffer")])
            rows = shuffled(rows, self.cfg.shuffle_buffer, rng)
        for index, group in enumerate(chunked(rows, self.cfg.batch_size, drop_last=self.train)):
            if index < self.skip[stream]:
                continue  # consumed before the resume: its place in the stream is all we need
            batch = self.make_batch(self.rank_slice(group) if self.train else group)
            batch["stream"], batch["index"] = stream, index
            yield batch

    def __iter__(self) -> Iterator[dict[str, Any] | None]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        mine = {
            s: self._stream_batches(s)
            for s in range(self.cfg.data_streams)
            if s % workers == worker
        }
        for stream in batch_order(self.counts(), self.skip, self.start_stream):
            if stream not in mine:
                yield None  # another worker's batch: keeps the DataLoader's turns in this order
                continue
            batch = next(mine[stream], None)
            if batch is None:
                raise RuntimeError(
                    f"stream {stream} of split {self.split!r} ended before its "
                    f"{self.counts()[stream]} batches: a shard changed while it was read"
                )
            yield batch

    def make_batch(self, group: Sequence[_Row]) -> dict[str, Any]:
        """Decode, window and stack a group of rows; undecodable clips are dropped and named."""
        cfg, window = self.cfg, self.cfg.window_samples
        waves, lengths, embs, views, ids, bad = [], [], [], [], [], []
        for row in group:
            try:
                audio = decode_audio(row.audio, expect_rate=SAMPLE_RATE)  # (n,)
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
