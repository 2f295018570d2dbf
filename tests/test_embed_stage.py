"""The embedding stage: media shard in, embedding Parquet out, and the training reader."""

from __future__ import annotations

import io
import json

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from wavbrivl.atomic import write_table_atomic
from wavbrivl.embed.reader import FingerprintMismatch, check_fingerprint, load_embeddings
from wavbrivl.embed.stage import EmbedSettings, embed_shard
from wavbrivl.embed.store import EmbeddingWriter, read_header
from wavbrivl.encoders.registry import build_tiny
from wavbrivl.extract.media import MEDIA_SCHEMA


def jpeg(color: tuple[int, int, int], size: int = 48) -> bytes:
    buf = io.BytesIO()
    img = Image.new("RGB", (size, size), color)
    img.paste((255 - color[0], color[1] // 2, 40), (8, 8, size // 2, size // 2))
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def encoder():
    return build_tiny(seed=0)


@pytest.fixture
def media_shard(tmp_path):
    good = [f"clip{i}_1000" for i in range(7)]
    colors = [
        (200, 30, 30),
        (30, 30, 200),
        (120, 120, 120),
        (90, 60, 20),
        (0, 0, 0),
        (250, 250, 0),
        (0, 200, 90),
    ]
    rows = [
        {
            "clip_id": c,
            "status": "ok",
            "reason": "",
            "frame": jpeg(col),
            "audio": b"x",
            "n_samples": 16000,
        }
        for c, col in zip(good, colors, strict=True)
    ]
    rows.append(
        {
            "clip_id": "broken_1000",
            "status": "ok",
            "reason": "",
            "frame": jpeg((1, 2, 3))[:200],
            "audio": b"x",
            "n_samples": 16000,
        }
    )
    rows.append(
        {
            "clip_id": "garbage_1000",
            "status": "ok",
            "reason": "",
            "frame": b"not a jpeg",
            "audio": b"x",
            "n_samples": 16000,
        }
    )
    rows.append(
        {
            "clip_id": "gone_1000",
            "status": "unavailable",
            "reason": "download: Video unavailable",
            "frame": None,
            "audio": None,
            "n_samples": None,
        }
    )
    path = tmp_path / "media" / "000.parquet"
    write_table_atomic(path, pa.Table.from_pylist(rows))
    return path, good


def test_embeds_every_ok_frame_and_records_skips(tmp_path, media_shard, encoder):
    media, good = media_shard
    out = tmp_path / "emb" / "000.parquet"
    summary = embed_shard(
        media, out, encoder, EmbedSettings(n_views=1), batch_size=3, log=io.StringIO()
    )
    table = pq.read_table(out)
    assert table.column("clip_id").to_pylist() == good
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), encoder.dim)
    emb = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # different pictures give different embeddings
    assert np.max(np.abs(emb[0] - emb[1])) > 1e-3
    header = read_header(out)
    assert header.fingerprint == encoder.fingerprint
    assert header.meta["encoder"].startswith("tiny-random-brivl")
    assert header.meta["image_size"] == str(encoder.preprocess.img_size)
    assert header.meta["box_mode"] == "whole"
    assert json.loads(header.meta["preprocessing"])["img_size"] == encoder.preprocess.img_size
    assert set(header.skipped) == {"broken_1000", "garbage_1000", "gone_1000"}
    assert "corrupt JPEG" in header.skipped["garbage_1000"]
    assert "unavailable" in header.skipped["gone_1000"]
    assert (summary.embedded, summary.skipped, summary.rows) == (7, 3, 7)
    # row groups are flushed per batch: bounded memory
    assert pq.ParquetFile(out).metadata.num_row_groups >= 2


def test_views_are_seeded_and_view0_is_the_clean_frame(tmp_path, media_shard, encoder):
    media, good = media_shard
    a = tmp_path / "a.parquet"
    b = tmp_path / "b.parquet"
    embed_shard(
        media, a, encoder, EmbedSettings(n_views=3, seed=5), batch_size=4, log=io.StringIO()
    )
    embed_shard(
        media, b, encoder, EmbedSettings(n_views=3, seed=5), batch_size=1, log=io.StringIO()
    )
    ea, eb = load_embeddings(a), load_embeddings(b)
    assert set(ea) == set(good)
    for clip in good:
        assert ea[clip].shape == (3, encoder.dim)
        # independent of batching
        np.testing.assert_allclose(ea[clip], eb[clip], atol=1e-5)
    clean = embed_shard(
        media, tmp_path / "c.parquet", encoder, EmbedSettings(n_views=1), log=io.StringIO()
    )
    assert clean.rows == 7
    ec = load_embeddings(tmp_path / "c.parquet")
    for clip in good:
        np.testing.assert_allclose(ea[clip][0], ec[clip][0], atol=1e-5)
    # augmented views differ from the clean one for at least most clips
    moved = [np.abs(ea[c][1] - ea[c][0]).max() > 1e-4 for c in good]
    assert sum(moved) >= 5
    # another seed gives other augmentations
    embed_shard(
        media, tmp_path / "d.parquet", encoder, EmbedSettings(n_views=3, seed=6), log=io.StringIO()
    )
    ed = load_embeddings(tmp_path / "d.parquet")
    assert any(np.abs(ed[c][1] - ea[c][1]).max() > 1e-4 for c in good)


def test_readable_by_pandas_pyarrow_polars_duckdb(tmp_path, media_shard, encoder):
    media, good = media_shard
    out = tmp_path / "e.parquet"
    embed_shard(media, out, encoder, EmbedSettings(n_views=2), log=io.StringIO())
    frame = pd.read_parquet(out)
    assert len(frame) == 14 and len(frame["embedding"].iloc[0]) == encoder.dim
    pl_frame = pl.read_parquet(out)
    assert pl_frame.height == 14
    assert pl_frame["embedding"].dtype == pl.Array(pl.Float32, encoder.dim)
    count, n_views = duckdb.sql(
        f"select count(distinct clip_id), max(view) + 1 from read_parquet('{out}')"
    ).fetchall()[0]
    assert (count, n_views) == (7, 2)
    dim = duckdb.sql(f"select len(embedding) from read_parquet('{out}') limit 1").fetchall()[0][0]
    assert dim == encoder.dim


def test_empty_shard_gives_a_valid_empty_file(tmp_path, encoder):
    media = tmp_path / "m.parquet"
    write_table_atomic(media, MEDIA_SCHEMA.empty_table())
    out = tmp_path / "o.parquet"
    embed_shard(media, out, encoder, EmbedSettings(), log=io.StringIO())
    assert read_header(out).num_rows == 0
    assert read_header(out).dim == encoder.dim


def test_a_failed_run_leaves_no_file(tmp_path, encoder):
    out = tmp_path / "x.parquet"
    with pytest.raises(RuntimeError), EmbeddingWriter(out, 4, {"fingerprint": "f"}) as writer:
        writer.write(["a"], [0], np.zeros((1, 4)))
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_writer_rejects_wrong_dimension(tmp_path):
    with (
        pytest.raises(ValueError, match=r"\(N, 4\)"),
        EmbeddingWriter(tmp_path / "x.parquet", 4, {}) as w,
    ):
        w.write(["a"], [0], np.zeros((1, 5)))


def test_reader_gives_each_good_clips_views_and_refuses_other_encoders(
    tmp_path, media_shard, encoder
):
    media, good = media_shard
    out = tmp_path / "e.parquet"
    embed_shard(media, out, encoder, EmbedSettings(n_views=2), log=io.StringIO())
    check_fingerprint(out, encoder.fingerprint)
    embeddings = load_embeddings(out)
    # clips whose frame was corrupt have audio but no embedding
    assert sorted(embeddings) == sorted(good)
    assert all(e.shape == (2, encoder.dim) for e in embeddings.values())
    other = build_tiny(seed=1)
    assert other.fingerprint != encoder.fingerprint
    with pytest.raises(FingerprintMismatch, match="e.parquet"):
        check_fingerprint(out, other.fingerprint)
