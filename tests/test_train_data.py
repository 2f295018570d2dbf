"""wavbrivl.train.data: media + embedding shards -> training batches, split by the manifest.

The shards are written here in the real formats (media Parquet with FLAC audio, embedding
Parquet through EmbeddingWriter, manifest Parquet). Every clip's embedding encodes which clip
and which view it is, so a test can tell what a batch really holds.
"""

from __future__ import annotations

import io
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch

from wavbrivl.embed.reader import FingerprintMismatch
from wavbrivl.embed.store import EmbeddingWriter, read_common_header
from wavbrivl.extract.media import decode_audio
from wavbrivl.train.catalogue import (
    EmbeddingDimMismatch,
    EmptySplit,
    assign_split,
    held_out_for_val,
)
from wavbrivl.train.data import DataConfig, DataPosition, TrainData
from wavbrivl.train.streams import SplitStream, shuffled

SR = 16000
FINGERPRINT = "fp-test-encoder"


@dataclass
class Clip:
    clip_id: str
    seconds: float = 1.5
    split: str = "train"
    label: str = "dog"
    broken: bool = False  # FLAC bytes that do not decode


def flac_bytes(samples: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples.astype(np.float32), SR, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def clip_audio(index: int, n: int) -> np.ndarray:
    """A clip-specific chirp-like signal, so windows of different clips never coincide."""
    t = np.arange(n) / SR
    return (0.5 * np.sin(2 * np.pi * (110 + 17 * index) * t * (1 + t))).astype(np.float32)


def clip_embedding(index: int, view: int, dim: int) -> np.ndarray:
    """(dim,): [clip index, view, then clip-specific noise]; tests read back the first two."""
    rng = np.random.default_rng(index)
    vec = rng.standard_normal(dim).astype(np.float32)
    vec[0], vec[1] = index, view
    return vec


def embedding_metadata(fingerprint: str) -> dict[str, str]:
    return {"encoder": "test", "fingerprint": fingerprint}


def write_dataset(
    root: Path,
    shards: dict[str, list[Clip]],
    *,
    dim: int = 8,
    views: int = 1,
    fingerprint: str = FINGERPRINT,
) -> tuple[Path, list[tuple[Path, Path]], dict[str, int]]:
    """Write media + embedding shards and a manifest; returns (manifest, pairs, clip index)."""
    media_dir, emb_dir = root / "media", root / "embeddings"
    media_dir.mkdir(parents=True, exist_ok=True)
    index: dict[str, int] = {}
    manifest_rows = []
    pairs = []
    for shard, clips in shards.items():
        rows = []
        with EmbeddingWriter(
            emb_dir / f"{shard}.parquet", dim, metadata=embedding_metadata(fingerprint)
        ) as writer:
            for clip in clips:
                i = index.setdefault(clip.clip_id, len(index))
                n = round(clip.seconds * SR)
                audio = b"not a flac file" if clip.broken else flac_bytes(clip_audio(i, n))
                rows.append(
                    {"clip_id": clip.clip_id, "status": "ok", "audio": audio, "n_samples": n}
                )
                writer.write(
                    [clip.clip_id] * views,
                    list(range(views)),
                    np.stack([clip_embedding(i, v, dim) for v in range(views)]),
                )
                manifest_rows.append(
                    (clip.clip_id, [f"/m/{clip.label}"], [clip.label], clip.split, shard)
                )
        # A failed clip in the media shard (not usable, and never in a batch).
        rows.append(
            {
                "clip_id": f"failed_{shard}",
                "status": "unavailable",
                "audio": None,
                "n_samples": None,
            }
        )
        table = pa.table(
            {
                "clip_id": pa.array([r["clip_id"] for r in rows], pa.string()),
                "status": pa.array([r["status"] for r in rows], pa.string()),
                "reason": pa.array(["" if r["status"] == "ok" else "gone" for r in rows]),
                "audio": pa.array([r["audio"] for r in rows], pa.binary()),
                "n_samples": pa.array([r["n_samples"] for r in rows], pa.int64()),
            }
        )
        pq.write_table(table, media_dir / f"{shard}.parquet")
        pairs.append((emb_dir / f"{shard}.parquet", media_dir / f"{shard}.parquet"))
        manifest_rows.append((f"failed_{shard}", ["/m/x"], ["x"], "train", shard))
    manifest = root / "manifest.parquet"
    pq.write_table(
        pa.table(
            {
                "clip_id": [r[0] for r in manifest_rows],
                "labels": pa.array([r[1] for r in manifest_rows], pa.list_(pa.string())),
                "label_names": pa.array([r[2] for r in manifest_rows], pa.list_(pa.string())),
                "split": [r[3] for r in manifest_rows],
                "shard": [r[4] for r in manifest_rows],
            }
        ),
        manifest,
    )
    return manifest, pairs, index


def simple_shards(
    n_shards: int = 3, per_shard: int = 8, seconds: float = 1.5, test_per_shard: int = 0
) -> dict[str, list[Clip]]:
    return {
        f"{s:03d}": [
            Clip(f"s{s}c{c}", seconds, label=("dog", "cat")[c % 2]) for c in range(per_shard)
        ]
        + [Clip(f"s{s}t{c}", seconds, split="test", label="bird") for c in range(test_per_shard)]
        for s in range(n_shards)
    }


def make_data(
    tmp_path, shards=None, *, dim=8, n_views=1, **cfg
) -> tuple[TrainData, dict[str, int]]:
    manifest, pairs, index = write_dataset(
        tmp_path, shards or simple_shards(), dim=dim, views=n_views
    )
    defaults = dict(
        window_s=1.0, batch_size=4, num_workers=0, shuffle_buffer=8, val_fraction=0.0, seed=0
    )
    data = TrainData(
        manifest, pairs, DataConfig(**(defaults | cfg)), fingerprint=FINGERPRINT, image_dim=dim
    )
    return data, index


def take(iterator, n):
    return [next(iterator) for _ in range(n)]


# -- windows and padding --------------------------------------------------------------------------


def test_train_windows_have_the_window_length_and_come_from_the_clip(tmp_path):
    data, index = make_data(tmp_path)
    batches = [b for b, _ in take(data.train_batches(), 4)]
    for batch in batches:
        assert batch["waveforms"].shape == (4, SR) and batch["waveforms"].dtype.is_floating_point
        assert batch["lengths"].tolist() == [SR] * 4
        assert batch["image_emb"].shape == (4, 8)
        assert batch["n_padded"] == 0
        for row, clip_id in enumerate(batch["clip_id"]):
            i = index[clip_id]
            assert batch["image_emb"][row, 0].item() == i  # the embedding is this clip's
            full = clip_audio(i, round(1.5 * SR))
            window = batch["waveforms"][row].numpy()
            # The window is a contiguous piece of the clip (up to 16-bit quantisation).
            starts = [
                s
                for s in range(0, len(full) - SR + 1)
                if abs(full[s] - window[0]) < 1e-4 and abs(full[s + 100] - window[100]) < 1e-4
            ]
            assert any(np.allclose(full[s : s + SR], window, atol=1e-4) for s in starts)
    # Random windows: over 16 clips, not every one starts at sample 0.
    firsts = {round(float(b["waveforms"][r, 0]), 4) for b in batches for r in range(4)}
    assert len(firsts) > 8


def test_short_clips_are_padded_masked_and_counted(tmp_path):
    shards = {
        "000": [Clip("long1", 2.0), Clip("short1", 0.25), Clip("long2", 2.0), Clip("short2", 0.5)]
    }
    data, index = make_data(tmp_path, shards, batch_size=4, window_s=1.0)
    batch, _ = next(data.train_batches())
    lengths = dict(zip(batch["clip_id"], batch["lengths"].tolist(), strict=True))
    assert lengths == {"long1": SR, "long2": SR, "short1": SR // 4, "short2": SR // 2}
    assert batch["n_padded"] == 2
    for row, clip_id in enumerate(batch["clip_id"]):
        n = lengths[clip_id]
        wave = batch["waveforms"][row]
        assert wave.shape == (SR,)
        assert (wave[n:] == 0).all()  # padding is silence, beyond the true length
        if clip_id.startswith("short"):
            assert np.allclose(wave[:n].numpy(), clip_audio(index[clip_id], n), atol=1e-4)


def test_eval_batches_use_the_centred_window_and_the_clean_view(tmp_path):
    shards = {
        "000": [Clip(f"c{i}", 3.0, split="test") for i in range(3)]
        + [Clip(f"t{i}") for i in range(4)]
    }
    data, index = make_data(tmp_path, shards, n_views=3)
    batches = list(data.eval_batches("test"))
    ids = [c for b in batches for c in b["clip_id"]]
    assert sorted(ids) == ["c0", "c1", "c2"]
    for batch in batches:
        assert batch["view"].tolist() == [0] * len(batch["clip_id"])
        for row, clip_id in enumerate(batch["clip_id"]):
            full = clip_audio(index[clip_id], 3 * SR)
            assert np.allclose(batch["waveforms"][row].numpy(), full[SR : 2 * SR], atol=1e-4)
            assert batch["label"][row] == "dog"


# -- workers, shuffling, positions ----------------------------------------------------------------


def test_two_workers_split_the_shards_without_duplicates_or_losses(tmp_path):
    # 4 shards of 8 clips and batches of 4: every stream holds whole batches, so one epoch
    # must return every clip exactly once.
    data, _ = make_data(tmp_path, simple_shards(4, 8), num_workers=2, batch_size=4)
    stream = SplitStream(data.catalogue, "train", data.cfg, fingerprint=FINGERPRINT, train=True)
    first, second = stream.stream_shards(0), stream.stream_shards(1)
    assert len(first) == len(second) == 2 and not set(first) & set(second)
    epoch_ids = []
    positions = []
    for batch, pos in data.train_batches():
        if pos.epoch > 0 or sum(pos.consumed) > 8:
            break
        epoch_ids += batch["clip_id"]
        positions.append(pos)
    assert len(epoch_ids) == 32 and len(set(epoch_ids)) == 32
    assert sorted(epoch_ids) == sorted(data.catalogue.labels["train"])
    assert positions[-1].consumed == [4, 4]  # both workers served batches
    eval_ids = [c for b in data.eval_batches("train") for c in b["clip_id"]]
    assert sorted(eval_ids) == sorted(epoch_ids)


def test_the_shuffle_buffer_mixes_shards(tmp_path):
    data, _ = make_data(
        tmp_path, simple_shards(3, 8), num_workers=0, shuffle_buffer=16, batch_size=4
    )

    def shard_of(clip_id: str) -> str:
        return clip_id.split("c")[0]

    batches = [b for b, _ in take(data.train_batches(), 6)]
    ids = [c for b in batches for c in b["clip_id"]]
    assert any(len({shard_of(c) for c in b["clip_id"]}) > 1 for b in batches)
    # Not the file order: read sequentially, the first 8 clips would all come from one shard.
    assert len({shard_of(c) for c in ids[:8]}) > 1


def test_shuffled_keeps_every_item_once_and_depends_on_the_seed():
    items = list(range(100))
    a = list(shuffled(items, 10, np.random.default_rng(1)))
    b = list(shuffled(items, 10, np.random.default_rng(1)))
    c = list(shuffled(items, 10, np.random.default_rng(2)))
    assert sorted(a) == items and a == b and a != c and a != items


def test_epochs_differ_and_a_resumed_stream_continues_exactly(tmp_path):
    data, _ = make_data(tmp_path, simple_shards(4, 8), num_workers=2, batch_size=4)
    full = take(data.train_batches(), 21)  # 2 epochs of 8 batches and part of a third
    ids = [b["clip_id"] for b, _ in full]
    assert full[8][1].epoch == 1 and ids[:8] != ids[8:16]
    for cut in (3, 8, 13):
        resumed = take(data.train_batches(full[cut - 1][1]), 21 - cut)
        assert [b["clip_id"] for b, _ in resumed] == ids[cut:]
        assert all(
            (b["waveforms"] == f["waveforms"]).all() and (b["image_emb"] == f["image_emb"]).all()
            for (b, _), (f, _) in zip(resumed, full[cut:], strict=True)
        )
    with pytest.raises(ValueError, match="has 3 streams.*resume with data_streams=3"):
        next(data.train_batches(DataPosition(0, [1, 1, 1], 0)))


def test_the_batches_do_not_depend_on_the_worker_count(tmp_path):
    # 5 shards of uneven size over 3 logical streams: the streams run out at different
    # times, and 2 workers serve them unevenly (streams 0 and 2, and stream 1).
    shards = {f"{s:03d}": [Clip(f"s{s}c{c}", 1.2) for c in range(4 + 3 * s)] for s in range(5)}
    manifest, pairs, _ = write_dataset(tmp_path, shards)

    def batches(workers, position=None, n=18):
        cfg = DataConfig(
            window_s=1.0,
            batch_size=3,
            num_workers=workers,
            data_streams=3,
            shuffle_buffer=5,
            val_fraction=0.0,
        )
        data = TrainData(manifest, pairs, cfg, fingerprint=FINGERPRINT, image_dim=8)
        stream = data.train_batches(position)
        try:
            return [(b["clip_id"], b["waveforms"], p) for b, p in take(stream, n)]
        finally:
            stream.close()

    reference = batches(0)  # an epoch is 7 + 5 + 3 batches here: this crosses into the next
    assert [p.epoch for _, _, p in reference] == [0] * 15 + [1] * 3
    for workers in (1, 2, 3, 4):
        got = batches(workers)
        assert [ids for ids, _, _ in got] == [ids for ids, _, _ in reference], workers
        assert all(torch.equal(a[1], b[1]) for a, b in zip(got, reference, strict=True))
        assert [p for _, _, p in got] == [p for _, _, p in reference]
    # A position saved under one worker count resumes under another.
    resumed = batches(2, position=reference[4][2], n=13)
    assert [ids for ids, _, _ in resumed] == [ids for ids, _, _ in reference[5:]]


# -- splits ------------------------------------------------------------------------------------


def test_val_split_is_seeded_deterministic_and_disjoint_from_train(tmp_path):
    manifest, pairs, _ = write_dataset(tmp_path, simple_shards(4, 25, test_per_shard=2))

    def splits(seed):
        cfg = DataConfig(batch_size=4, num_workers=0, val_fraction=0.2, seed=seed)
        data = TrainData(manifest, pairs, cfg, fingerprint=FINGERPRINT, image_dim=8)
        return {s: set(data.catalogue.labels[s]) for s in ("train", "val", "test")}

    a, b, c = splits(0), splits(0), splits(1)
    assert a == b
    assert a["val"] != c["val"]
    assert not a["train"] & a["val"]
    assert a["train"] | a["val"] == {f"s{s}c{i}" for s in range(4) for i in range(25)}
    assert 8 <= len(a["val"]) <= 35  # 20 % of 100, loosely
    assert a["test"] == {f"s{s}t{i}" for s in range(4) for i in range(2)}


def test_held_out_fraction_is_close_to_the_request():
    ids = [f"clip{i}" for i in range(4000)]
    share = np.mean([held_out_for_val(c, seed=3, fraction=0.1) for c in ids])
    assert 0.08 < share < 0.12
    cfg = DataConfig(val_fraction=0.1, seed=3)
    assert {assign_split(c, "test", cfg) for c in ids[:50]} == {"test"}
    assert assign_split("x", "unbalanced_train", cfg) is None


def test_augmented_views_are_chosen_when_present(tmp_path):
    data, index = make_data(tmp_path, simple_shards(2, 8), n_views=3)
    used = Counter()
    for batch, _ in take(data.train_batches(), 12):
        for row, clip_id in enumerate(batch["clip_id"]):
            view = int(batch["view"][row])
            used[view] += 1
            assert batch["image_emb"][row, 0].item() == index[clip_id]
            assert batch["image_emb"][row, 1].item() == view  # the emb of the chosen view
    assert set(used) == {0, 1, 2}
    data_clean, _ = make_data(tmp_path / "clean", simple_shards(2, 8), n_views=3, views="clean")
    for batch, _ in take(data_clean.train_batches(), 4):
        assert batch["view"].tolist() == [0] * 4


def test_an_empty_split_is_a_clear_error_naming_it(tmp_path):
    data, _ = make_data(tmp_path)  # no test clips, val_fraction 0
    with pytest.raises(EmptySplit, match="split 'test'"):
        next(data.eval_batches("test"))
    with pytest.raises(EmptySplit, match="split 'val'"):
        next(data.eval_batches("val"))
    manifest, pairs, _ = write_dataset(tmp_path / "few", {"000": [Clip("a"), Clip("b")]})
    with pytest.raises(EmptySplit, match="split 'train' has 2 usable clip"):
        TrainData(manifest, pairs, DataConfig(batch_size=4), fingerprint=FINGERPRINT, image_dim=8)


def test_embedding_dim_mismatch_fails_before_any_batch(tmp_path):
    manifest, pairs, _ = write_dataset(tmp_path, simple_shards(2, 4), dim=8)
    with pytest.raises(EmbeddingDimMismatch, match=r"000\.parquet.*8 dimensions.*16"):
        TrainData(manifest, pairs, DataConfig(batch_size=4), fingerprint=FINGERPRINT, image_dim=16)


def test_embeddings_of_another_encoder_are_refused(tmp_path):
    manifest, pairs, _ = write_dataset(tmp_path, simple_shards(2, 4), fingerprint="other-encoder")
    with pytest.raises(FingerprintMismatch, match="000.parquet"):
        TrainData(manifest, pairs, DataConfig(batch_size=4), fingerprint=FINGERPRINT, image_dim=8)


def test_shards_of_two_encoders_are_not_mixed_even_unchecked(tmp_path):
    manifest, pairs, _ = write_dataset(tmp_path / "a", {"000": [Clip(f"a{i}") for i in range(4)]})
    _, other, _ = write_dataset(
        tmp_path / "b", {"001": [Clip(f"b{i}") for i in range(4)]}, fingerprint="other"
    )
    with pytest.raises(
        FingerprintMismatch, match="001.parquet and .*000.parquet were made by different"
    ):
        TrainData(manifest, pairs + other, DataConfig(batch_size=4), fingerprint=None, image_dim=8)


def test_the_encoder_is_read_from_the_headers_and_a_mix_is_refused_naming_both(tmp_path):
    manifest, pairs, _ = write_dataset(tmp_path / "a", simple_shards(2, 4), dim=8)
    data = TrainData(manifest, pairs, DataConfig(batch_size=4))  # no fingerprint, no dim given
    assert (data.fingerprint, data.image_dim) == (FINGERPRINT, 8)
    header = read_common_header([e for e, _ in pairs])
    assert (header.fingerprint, header.dim, header.path) == (FINGERPRINT, 8, pairs[0][0])
    _, other, _ = write_dataset(
        tmp_path / "b", {"009": [Clip("b0")]}, fingerprint="fp-another-encoder"
    )
    with pytest.raises(FingerprintMismatch) as info:
        read_common_header([pairs[0][0], other[0][0]])
    message = str(info.value)
    assert str(other[0][0]) in message and str(pairs[0][0]) in message
    assert "fp-another-encod" in message and FINGERPRINT[:16] in message


def test_a_corrupt_clip_is_dropped_and_named_not_fatal(tmp_path):
    shards = {"000": [Clip("good1"), Clip("bad", broken=True), Clip("good2"), Clip("good3")]}
    data, _ = make_data(tmp_path, shards, batch_size=4)
    batch, _ = next(data.train_batches())
    assert sorted(batch["clip_id"]) == ["good1", "good2", "good3"]
    assert batch["waveforms"].shape == (3, SR)
    assert len(batch["bad_clips"]) == 1 and batch["bad_clips"][0].startswith("bad: ")


def test_unusable_clips_never_appear(tmp_path):
    data, _ = make_data(tmp_path, simple_shards(2, 4))
    assert data.split_size("train") == 8  # the failed_* media rows are not usable
    assert "2 of 10 manifest clips not usable" in data.describe()


def test_a_manifest_without_split_column_is_named(tmp_path):
    manifest, pairs, _ = write_dataset(tmp_path, simple_shards(1, 4))
    table = pq.read_table(manifest).drop_columns(["split"])
    pq.write_table(table, manifest)
    with pytest.raises(
        ValueError, match=r"manifest\.parquet: manifest lacks column\(s\) \['split'\]"
    ):
        TrainData(manifest, pairs, DataConfig(batch_size=4), fingerprint=FINGERPRINT, image_dim=8)


def test_decode_helper_roundtrip():
    # The writer above and the pipeline's decoder agree (16-bit FLAC, 16 kHz mono).
    x = clip_audio(3, 1000)
    assert np.allclose(decode_audio(flac_bytes(x), expect_rate=SR), x, atol=1e-4)


EXIT_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from wavbrivl.train.data import DataConfig, TrainData
data = TrainData({manifest!r}, {pairs!r}, DataConfig(window_s=1.0, batch_size=4, num_workers=2, val_fraction=0.0),
                 fingerprint={fingerprint!r}, image_dim=8)
stream = data.train_batches()  # left open at exit, workers running
batch, _ = next(stream)
print(len(batch["clip_id"]))
"""


def test_a_process_exits_with_a_stream_left_open(tmp_path):
    # Workers ignore SIGTERM (it is for the main process); multiprocessing's exit hook would
    # then wait for them forever unless the open stream is closed first.
    manifest, pairs, _ = write_dataset(tmp_path, simple_shards(2, 8))
    script = tmp_path / "open_stream.py"
    script.write_text(
        EXIT_SCRIPT.format(
            tests=str(Path(__file__).parent),
            manifest=str(manifest),
            pairs=[(str(a), str(b)) for a, b in pairs],
            fingerprint=FINGERPRINT,
        )
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "4"
