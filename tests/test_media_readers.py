"""The media shard's owner API: the readers every later stage uses."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from wavbrivl.extract.media import (
    MEDIA_SCHEMA,
    SAMPLE_RATE,
    collect_clip_audio,
    count_media_rows,
    decode_audio,
    iter_media_rows,
)


def flac(samples: np.ndarray, rate: int = SAMPLE_RATE) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def write_shard(path, rows):
    full = [{name: row.get(name) for name in MEDIA_SCHEMA.names} for row in rows]
    pq.write_table(pa.Table.from_pylist(full, schema=MEDIA_SCHEMA), path)
    return path


@pytest.fixture
def shards(tmp_path):
    tone = (0.5 * np.sin(np.arange(1600) / 5)).astype(np.float32)
    a = write_shard(
        tmp_path / "000.parquet",
        [
            {"clip_id": "ok1_0", "status": "ok", "reason": "", "audio": flac(tone)},
            {"clip_id": "gone_0", "status": "unavailable", "reason": "Video unavailable"},
            {"clip_id": "empty_0", "status": "ok", "reason": "", "audio": b""},
        ]
        + [
            {"clip_id": f"more{i}_0", "status": "ok", "reason": "", "audio": flac(tone)}
            for i in range(5)
        ],
    )
    b = write_shard(
        tmp_path / "001.parquet",
        [{"clip_id": "ok2_0", "status": "ok", "reason": "", "audio": flac(-tone)}],
    )
    return a, b, tone


def test_rows_stream_in_batches_with_status_and_reason(shards):
    a, _, _ = shards
    batches = list(iter_media_rows(a, ["n_samples"], batch_rows=3))
    assert [len(b) for b in batches] == [3, 3, 2]
    assert list(batches[0].columns) == ["clip_id", "status", "reason", "n_samples"]
    ok = [c for b in iter_media_rows(a, ok_only=True, batch_rows=2) for c in b["clip_id"]]
    assert ok == ["ok1_0", "empty_0"] + [f"more{i}_0" for i in range(5)]
    assert count_media_rows(a) == 8  # every row, whatever its status


def test_clip_audio_ok_clips_decoded_and_others_with_their_reason(shards):
    a, b, tone = shards
    audio, skipped = collect_clip_audio([a, b], ["ok1_0", "ok2_0", "gone_0", "empty_0", "nope_0"])
    assert sorted(audio) == ["ok1_0", "ok2_0"]
    np.testing.assert_allclose(decode_audio(audio["ok2_0"]), -tone, atol=1 / 2**14)
    assert skipped == {
        "gone_0": "media status unavailable: Video unavailable",
        "empty_0": "no audio",
        "nope_0": "not in the media shards",
    }
    everything, _ = collect_clip_audio([a, b])
    assert len(everything) == 7


def test_a_clip_in_two_shards_is_an_error_naming_the_file(shards, tmp_path):
    a, _, tone = shards
    twin = write_shard(
        tmp_path / "002.parquet",
        [{"clip_id": "ok1_0", "status": "ok", "reason": "", "audio": flac(tone)}],
    )
    with pytest.raises(ValueError, match=r"002\.parquet.*ok1_0.*twice"):
        collect_clip_audio([a, twin])


def test_audio_at_another_rate_is_refused_by_default():
    with pytest.raises(ValueError, match="16000 Hz"):
        decode_audio(flac(np.zeros(800, np.float32), rate=8000))
