"""Benchmark datasets in their official layouts: ESC-50, UrbanSound8K, the VGGSound test split.

The folders are made here, with odd WAVs written by the ``wave`` module (8-bit, 24-bit,
stereo, 96 kHz, zero frames), an empty file, a text file named .wav, and a file the CSV lists
but the folder lacks. Expected tables and samples are written out by hand.
"""

from __future__ import annotations

import io
import wave
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from media_factory import dominant_hz

from wavbrivl.benchmark.datasets import (
    ESC50_COLUMNS,
    FILES,
    MEDIA_SHARDS,
    READERS,
    US8K_COLUMNS,
    BenchmarkFormatError,
    BenchmarkTable,
    iter_clip_audio,
    read_esc50,
    read_metadata_csv,
    read_urbansound8k,
    read_vggsound_test,
    without_skipped,
)
from wavbrivl.extract.media import MEDIA_SCHEMA
from wavbrivl.manifest.build import MANIFEST_SCHEMA

RATE = 16_000


def tone(freq: float, seconds: float, rate: int) -> np.ndarray:
    return 0.5 * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)


def write_wav(path: Path, channels: list[np.ndarray], rate: int, width: int) -> Path:
    """PCM WAV through the wave module: width 1 (unsigned 8-bit), 2, 3 (24-bit) bytes."""
    frames = np.stack(channels, axis=1) if channels else np.zeros((0, 1))
    if width == 1:
        data = np.round(frames * 127 + 128).astype(np.uint8).tobytes()
    else:
        ints = np.round(frames * (2 ** (8 * width - 1) - 1)).astype("<i4")
        data = ints.view(np.uint8).reshape(-1, 4)[:, :width].tobytes()  # little-endian low bytes
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(max(len(channels), 1))
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(data)
    return path


def write_csv(path: Path, header: tuple[str, ...] | list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join(header)] + [",".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# Each ESC-50 file: (filename, fold, target, category, esc10) and how it is written.
ESC_ROWS = [
    ["1-100-A-0.wav", 1, 0, "dog", "True", 100, "A"],
    ["1-101-A-1.wav", 1, 1, "rooster", "False", 101, "A"],
    ["2-102-A-2.wav", 2, 2, "crying_baby", "True", 102, "A"],
    ["3-103-A-0.wav", 3, 0, "dog", "True", 103, "A"],
    ["4-104-A-1.wav", 4, 1, "rooster", "False", 104, "A"],
    ["5-105-A-2.wav", 5, 2, "crying_baby", "True", 105, "A"],
    ["5-106-A-0.wav", 5, 0, "dog", "True", 106, "A"],
    ["2-107-A-1.wav", 2, 1, "rooster", "False", 107, "A"],
    ["3-108-A-2.wav", 3, 2, "crying_baby", "True", 108, "A"],
    ["4-109-A-0.wav", 4, 0, "dog", "True", 109, "A"],
]


@pytest.fixture
def esc50(tmp_path):
    root = tmp_path / "ESC-50"
    audio = root / "audio"
    write_wav(audio / "1-100-A-0.wav", [tone(440, 1.0, 8000)], 8000, 1)  # 8-bit, 8 kHz
    write_wav(audio / "1-101-A-1.wav", [tone(600, 1.0, 44100)], 44100, 3)  # 24-bit
    write_wav(  # stereo: a tone left, silence right
        audio / "2-102-A-2.wav", [tone(800, 0.5, 44100), np.zeros(22050)], 44100, 2
    )
    write_wav(audio / "3-103-A-0.wav", [tone(1000, 0.25, 96000)], 96000, 2)  # 96 kHz
    write_wav(audio / "4-104-A-1.wav", [], 44100, 2)  # a valid header, zero frames
    (audio / "5-105-A-2.wav").write_bytes(b"")  # zero bytes
    (audio / "5-106-A-0.wav").write_text("this is not a WAV file\n" * 20)  # not media
    # 2-107-A-1.wav is listed but missing
    write_wav(audio / "3-108-A-2.wav", [tone(500, 0.5, 44100)], 44100, 2)
    write_wav(audio / "4-109-A-0.wav", [tone(700, 0.5, 22050)], 22050, 2)
    write_wav(audio / "9-999-A-9.wav", [tone(300, 0.5, 44100)], 44100, 2)  # not listed
    write_csv(root / "meta" / "esc50.csv", ESC50_COLUMNS, ESC_ROWS)
    return root


def table_rows(table: BenchmarkTable) -> list[tuple]:
    return [tuple(row) for row in table.rows.itertuples(index=False)]


def test_esc50_table_lists_each_clip_with_fold_and_class(esc50):
    table = read_esc50(esc50)
    audio = esc50 / "audio"
    assert table.name == "esc50"
    assert table.audio_from == FILES
    assert list(table.rows.columns) == ["clip_id", "path", "fold", "class_index", "class_name"]
    assert table_rows(table) == [
        ("1-100-A-0.wav", str(audio / "1-100-A-0.wav"), 1, 0, "dog"),
        ("1-101-A-1.wav", str(audio / "1-101-A-1.wav"), 1, 1, "rooster"),
        ("2-102-A-2.wav", str(audio / "2-102-A-2.wav"), 2, 2, "crying_baby"),
        ("3-103-A-0.wav", str(audio / "3-103-A-0.wav"), 3, 0, "dog"),
        ("4-104-A-1.wav", str(audio / "4-104-A-1.wav"), 4, 1, "rooster"),
        ("5-105-A-2.wav", str(audio / "5-105-A-2.wav"), 5, 2, "crying_baby"),
        ("5-106-A-0.wav", str(audio / "5-106-A-0.wav"), 5, 0, "dog"),
        ("3-108-A-2.wav", str(audio / "3-108-A-2.wav"), 3, 2, "crying_baby"),
        ("4-109-A-0.wav", str(audio / "4-109-A-0.wav"), 4, 0, "dog"),
    ]
    assert str(table.rows["fold"].dtype) == "int64"
    assert str(table.rows["class_index"].dtype) == "int64"
    assert table.classes == ["dog", "rooster", "crying_baby"]
    assert table.folds == [1, 2, 3, 4, 5]
    meta = esc50 / "meta" / "esc50.csv"
    assert table.skipped == [
        {
            "clip_id": "2-107-A-1.wav",
            "path": str(audio / "2-107-A-1.wav"),
            "reason": f"listed in {meta}, no such file",
        }
    ]


def test_esc10_keeps_the_subset_and_reindexes_it_in_target_order(esc50):
    table = read_esc50(esc50, esc10=True)
    audio = esc50 / "audio"
    assert table.name == "esc10"
    assert table.classes == ["dog", "crying_baby"]
    assert table_rows(table) == [
        ("1-100-A-0.wav", str(audio / "1-100-A-0.wav"), 1, 0, "dog"),
        ("2-102-A-2.wav", str(audio / "2-102-A-2.wav"), 2, 1, "crying_baby"),
        ("3-103-A-0.wav", str(audio / "3-103-A-0.wav"), 3, 0, "dog"),
        ("5-105-A-2.wav", str(audio / "5-105-A-2.wav"), 5, 1, "crying_baby"),
        ("5-106-A-0.wav", str(audio / "5-106-A-0.wav"), 5, 0, "dog"),
        ("3-108-A-2.wav", str(audio / "3-108-A-2.wav"), 3, 1, "crying_baby"),
        ("4-109-A-0.wav", str(audio / "4-109-A-0.wav"), 4, 0, "dog"),
    ]
    assert table.skipped == []
    assert table_rows(READERS["esc10"](esc50)) == table_rows(table)
    assert table_rows(READERS["esc50"](esc50)) == table_rows(read_esc50(esc50))


def test_esc10_flag_is_read_without_regard_to_case(tmp_path):
    rows = [
        ["a.wav", 1, 0, "dog", "TRUE", 1, "A"],
        ["b.wav", 1, 1, "cat", "false", 2, "A"],
        ["c.wav", 2, 2, "cow", "true", 3, "A"],
    ]
    write_csv(tmp_path / "meta" / "esc50.csv", ESC50_COLUMNS, rows)
    table = read_esc50(tmp_path, esc10=True)
    assert table.classes == ["dog", "cow"]
    assert [s["clip_id"] for s in table.skipped] == ["a.wav", "c.wav"]  # no audio folder


def test_every_odd_file_decodes_to_16k_mono_or_is_skipped_with_its_reason(esc50):
    table = read_esc50(esc50)
    got = {table.rows["clip_id"][i]: (s, r) for i, s, r in iter_clip_audio(table)}
    assert list(got) == list(table.rows["clip_id"])
    expected_tones = {  # clip: (frequency, seconds, amplitude after the downmix)
        "1-100-A-0.wav": (440, 1.0, 0.5),
        "1-101-A-1.wav": (600, 1.0, 0.5),
        # ffmpeg's stereo -> mono (-ac 1) mixes each channel at -3 dB: 0.5 / sqrt(2)
        "2-102-A-2.wav": (800, 0.5, 0.5 / np.sqrt(2)),
        "3-103-A-0.wav": (1000, 0.25, 0.5),
        "3-108-A-2.wav": (500, 0.5, 0.5),
        "4-109-A-0.wav": (700, 0.5, 0.5),
    }
    for clip, (freq, seconds, amplitude) in expected_tones.items():
        samples, reason = got[clip]
        assert reason == ""
        assert samples.dtype == np.float32 and samples.ndim == 1
        assert abs(len(samples) - seconds * RATE) <= 32, clip
        assert abs(dominant_hz(samples, RATE) - freq) < 5, clip
        peak = np.abs(samples[200:-200]).max()
        assert abs(peak - amplitude) < 0.03, (clip, peak)
    audio = esc50 / "audio"
    assert got["4-104-A-1.wav"] == (
        None,
        f"{audio / '4-104-A-1.wav'}: no audio samples (zero length)",
    )
    assert got["5-105-A-2.wav"] == (None, f"{audio / '5-105-A-2.wav'}: empty file (0 bytes)")
    samples, reason = got["5-106-A-0.wav"]
    assert samples is None
    assert reason.startswith(f"{audio / '5-106-A-0.wav'}: ")
    assert "\n" not in reason


def test_unreadable_clips_move_to_the_skipped_list_in_the_report(esc50):
    table = read_esc50(esc50)
    reasons = {i: r for i, s, r in iter_clip_audio(table) if s is None}
    kept = without_skipped(table, reasons)
    assert list(kept.rows["clip_id"]) == [
        "1-100-A-0.wav",
        "1-101-A-1.wav",
        "2-102-A-2.wav",
        "3-103-A-0.wav",
        "3-108-A-2.wav",
        "4-109-A-0.wav",
    ]
    assert list(kept.rows.index) == list(range(6))
    assert list(kept.rows.columns) == ["clip_id", "path", "fold", "class_index", "class_name"]
    assert [s["clip_id"] for s in kept.skipped] == [
        "2-107-A-1.wav",
        "4-104-A-1.wav",
        "5-105-A-2.wav",
        "5-106-A-0.wav",
    ]
    assert kept.skipped[1] == {
        "clip_id": "4-104-A-1.wav",
        "path": str(esc50 / "audio" / "4-104-A-1.wav"),
        "reason": reasons[4],
    }
    assert (kept.name, kept.classes, kept.folds, kept.audio_from) == (
        "esc50",
        ["dog", "rooster", "crying_baby"],
        [1, 2, 3, 4, 5],
        FILES,
    )
    assert kept.report() == {
        "dataset": "esc50",
        "n_clips": 6,
        "n_skipped": 4,
        "n_classes": 3,
        "classes": ["dog", "rooster", "crying_baby"],
        "folds": [1, 2, 3, 4, 5],
        "skipped": kept.skipped,
    }
    assert len(table.skipped) == 1  # the original table is left alone


def test_a_missing_column_is_named_with_the_file(tmp_path):
    header = [c for c in ESC50_COLUMNS if c not in ("fold", "take")]
    meta = write_csv(tmp_path / "meta" / "esc50.csv", header, [])
    with pytest.raises(BenchmarkFormatError) as info:
        read_esc50(tmp_path)
    assert str(info.value) == (
        f"{meta}: missing column(s) fold, take (header: filename,target,category,esc10,src_file)"
    )


def test_missing_metadata_file_is_named(tmp_path):
    with pytest.raises(BenchmarkFormatError) as info:
        read_urbansound8k(tmp_path)
    assert (
        str(info.value) == f"{tmp_path / 'metadata' / 'UrbanSound8K.csv'}: metadata file not found"
    )


def test_header_names_are_stripped_and_a_bom_is_ignored(tmp_path):
    meta = tmp_path / "meta.csv"
    meta.write_text("\ufeff a , b\n1 ,2\n3, 4 \n", encoding="utf-8")
    assert read_metadata_csv(meta, ("a", "b")) == [
        (2, {"a": "1", "b": "2"}),
        (3, {"a": "3", "b": "4"}),
    ]


def test_short_row_is_named_by_line(tmp_path):
    meta = tmp_path / "meta.csv"
    meta.write_text("a,b,c\n1,2,3\n4,5\n", encoding="utf-8")
    with pytest.raises(BenchmarkFormatError) as info:
        read_metadata_csv(meta, ("a", "c"))
    assert str(info.value) == f"{meta} line 3: expected 3 fields"


def test_long_row_is_named_by_line(tmp_path):
    meta = tmp_path / "meta.csv"
    meta.write_text("a,b\n1,2\n4,5,6\n", encoding="utf-8")
    with pytest.raises(BenchmarkFormatError) as info:
        read_metadata_csv(meta, ("a",))
    assert str(info.value) == f"{meta} line 3: expected 2 fields"


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("fold", "x", "fold 'x' is not an integer"),
        ("fold", "0", "fold 0 is not in 1..5"),
        ("fold", "6", "fold 6 is not in 1..5"),
        ("target", "-1", "target -1 is not in 0..49"),
        ("target", "50", "target 50 is not in 0..49"),
        ("esc10", "yes", "esc10 'yes' is not True or False"),
        ("filename", "../x.wav", "'../x.wav' is not a plain file name"),
        ("filename", "a\\b.wav", "'a\\\\b.wav' is not a plain file name"),
        ("filename", "..", "'..' is not a plain file name"),
        ("filename", ".", "'.' is not a plain file name"),
        ("filename", "", "'' is not a plain file name"),
    ],
)
def test_bad_esc50_values_are_named_by_line(tmp_path, column, value, message):
    rows = [list(r) for r in ESC_ROWS[:3]]
    rows[1][ESC50_COLUMNS.index(column)] = value
    meta = write_csv(tmp_path / "meta" / "esc50.csv", ESC50_COLUMNS, rows)
    with pytest.raises(BenchmarkFormatError) as info:
        read_esc50(tmp_path)
    assert str(info.value) == f"{meta} line 3: {message}"


def test_edge_values_are_accepted(tmp_path):
    rows = [
        ["a.wav", 1, 0, "c0", "False", 1, "A"],
        ["b.wav", 5, 49, "c49", "False", 1, "A"],
    ]
    rows += [[f"x{t}.wav", 3, t, f"c{t}", "False", 1, "A"] for t in range(1, 49)]
    write_csv(tmp_path / "meta" / "esc50.csv", ESC50_COLUMNS, rows)
    table = read_esc50(tmp_path)
    assert table.classes == [f"c{t}" for t in range(50)]
    assert [s["clip_id"] for s in table.skipped][:2] == ["a.wav", "b.wav"]
    assert table.rows.empty


def test_a_class_index_with_two_names_is_an_error(tmp_path):
    rows = [list(r) for r in ESC_ROWS[:4]]
    rows[3][3] = "wolf"  # target 0 was "dog"
    meta = write_csv(tmp_path / "meta" / "esc50.csv", ESC50_COLUMNS, rows)
    with pytest.raises(BenchmarkFormatError) as info:
        read_esc50(tmp_path)
    assert str(info.value) == f"{meta}: class index 0 has two names, 'dog' and 'wolf'"


def test_class_indices_must_run_from_zero_without_gaps(tmp_path):
    rows = [list(r) for r in ESC_ROWS[:3]]
    rows[1][2] = 3  # targets 0, 3, 2: index 1 missing
    meta = write_csv(tmp_path / "meta" / "esc50.csv", ESC50_COLUMNS, rows)
    with pytest.raises(BenchmarkFormatError) as info:
        read_esc50(tmp_path)
    assert str(info.value) == f"{meta}: class indices are not 0..2: missing [1]"


def test_a_file_listed_twice_is_an_error(tmp_path):
    rows = [list(r) for r in ESC_ROWS[:3]] + [list(ESC_ROWS[0])]
    meta = write_csv(tmp_path / "meta" / "esc50.csv", ESC50_COLUMNS, rows)
    with pytest.raises(BenchmarkFormatError) as info:
        read_esc50(tmp_path)
    assert str(info.value) == f"{meta}: 1-100-A-0.wav is listed twice"


# -- UrbanSound8K --------------------------------------------------------------------------

US8K_ROWS = [
    ["100-0-0-0.wav", 100, 0.0, 1.0, 1, 1, 0, "air_conditioner"],
    ["101-1-0-0.wav", 101, 0.0, 1.0, 2, 1, 1, "car_horn"],
    ["102-0-0-1.wav", 102, 0.5, 1.5, 1, 10, 0, "air_conditioner"],
    ["103-2-0-0.wav", 103, 0.0, 0.5, 1, 7, 2, "children_playing"],
    ["104-1-0-0.wav", 104, 0.0, 0.5, 2, 10, 1, "car_horn"],
]


@pytest.fixture
def urbansound(tmp_path):
    root = tmp_path / "UrbanSound8K"
    audio = root / "audio"
    write_wav(audio / "fold1" / "100-0-0-0.wav", [tone(440, 0.5, 48000)] * 2, 48000, 3)
    write_wav(audio / "fold1" / "101-1-0-0.wav", [tone(900, 0.5, 11025)], 11025, 1)
    write_wav(audio / "fold10" / "102-0-0-1.wav", [tone(620, 0.5, 96000)], 96000, 2)
    (audio / "fold7").mkdir(parents=True)
    (audio / "fold7" / "103-2-0-0.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 8)
    # 104-1-0-0.wav sits in the wrong fold folder: the CSV's fold decides where it is read
    write_wav(audio / "fold1" / "104-1-0-0.wav", [tone(300, 0.5, 16000)], 16000, 2)
    write_csv(root / "metadata" / "UrbanSound8K.csv", US8K_COLUMNS, US8K_ROWS)
    return root


def test_urbansound8k_reads_each_clip_from_its_fold_folder(urbansound):
    table = read_urbansound8k(urbansound)
    audio = urbansound / "audio"
    meta = urbansound / "metadata" / "UrbanSound8K.csv"
    assert table.name == "urbansound8k"
    assert table_rows(table) == [
        ("100-0-0-0.wav", str(audio / "fold1" / "100-0-0-0.wav"), 1, 0, "air_conditioner"),
        ("101-1-0-0.wav", str(audio / "fold1" / "101-1-0-0.wav"), 1, 1, "car_horn"),
        ("102-0-0-1.wav", str(audio / "fold10" / "102-0-0-1.wav"), 10, 0, "air_conditioner"),
        ("103-2-0-0.wav", str(audio / "fold7" / "103-2-0-0.wav"), 7, 2, "children_playing"),
    ]
    assert table.classes == ["air_conditioner", "car_horn", "children_playing"]
    assert table.folds == list(range(1, 11))
    assert table.skipped == [
        {
            "clip_id": "104-1-0-0.wav",
            "path": str(audio / "fold10" / "104-1-0-0.wav"),
            "reason": f"listed in {meta}, no such file",
        }
    ]
    assert table_rows(READERS["urbansound8k"](urbansound)) == table_rows(table)


def test_urbansound8k_audio_is_16k_mono_whatever_the_source(urbansound):
    table = read_urbansound8k(urbansound)
    got = list(iter_clip_audio(table))
    assert [position for position, _, _ in got] == [0, 1, 2, 3]
    for position, freq in ((0, 440), (1, 900), (2, 620)):
        _, samples, reason = got[position]
        assert reason == ""
        assert abs(len(samples) - RATE // 2) <= 32
        assert abs(dominant_hz(samples, RATE) - freq) < 5
    _, samples, reason = got[3]
    assert samples is None
    assert reason.startswith(str(urbansound / "audio" / "fold7" / "103-2-0-0.wav"))


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("fold", "11", "fold 11 is not in 1..10"),
        ("fold", "0", "fold 0 is not in 1..10"),
        ("classID", "10", "classID 10 is not in 0..9"),
        ("classID", "-1", "classID -1 is not in 0..9"),
        ("slice_file_name", "fold1/x.wav", "'fold1/x.wav' is not a plain file name"),
    ],
)
def test_bad_urbansound8k_values_are_named_by_line(tmp_path, column, value, message):
    rows = [list(r) for r in US8K_ROWS]
    rows[2][US8K_COLUMNS.index(column)] = value
    meta = write_csv(tmp_path / "metadata" / "UrbanSound8K.csv", US8K_COLUMNS, rows)
    with pytest.raises(BenchmarkFormatError) as info:
        read_urbansound8k(tmp_path)
    assert str(info.value) == f"{meta} line 4: {message}"


def test_urbansound8k_edge_values_are_accepted(tmp_path):
    rows = [
        ["a.wav", 1, 0, 1, 1, 1, 0, "c0"],
        ["b.wav", 1, 0, 1, 1, 10, 9, "c9"],
    ] + [[f"x{t}.wav", 1, 0, 1, 1, 5, t, f"c{t}"] for t in range(1, 9)]
    write_csv(tmp_path / "metadata" / "UrbanSound8K.csv", US8K_COLUMNS, rows)
    table = read_urbansound8k(tmp_path)
    assert table.classes == [f"c{t}" for t in range(10)]
    assert table.skipped[1]["path"] == str(tmp_path / "audio" / "fold10" / "b.wav")


def test_urbansound8k_missing_column_is_named(tmp_path):
    header = [c for c in US8K_COLUMNS if c != "classID"]
    meta = write_csv(tmp_path / "metadata" / "UrbanSound8K.csv", header, [])
    with pytest.raises(BenchmarkFormatError) as info:
        read_urbansound8k(tmp_path)
    assert str(info.value).startswith(f"{meta}: missing column(s) classID (header: ")


# -- VGGSound test split from this project's own media shards -------------------------------


def flac(samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples.astype(np.float32), RATE, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def write_manifest(path: Path, rows: list[tuple[str, list[str], list[str], str]]) -> Path:
    full = [
        {
            "clip_id": clip_id,
            "source_id": clip_id[:-2],
            "url": "",
            "start_s": 0.0,
            "end_s": 10.0,
            "labels": labels,
            "label_names": names,
            "split": split,
            "shard": "0",
        }
        for clip_id, labels, names, split in rows
    ]
    pq.write_table(pa.Table.from_pylist(full, schema=MANIFEST_SCHEMA), path)
    return path


def write_media(path: Path, rows: list[dict]) -> Path:
    full = [{name: row.get(name) for name in MEDIA_SCHEMA.names} for row in rows]
    pq.write_table(pa.Table.from_pylist(full, schema=MEDIA_SCHEMA), path)
    return path


@pytest.fixture
def vggsound(tmp_path):
    manifest = write_manifest(
        tmp_path / "vggsound.parquet",
        [
            ("dog_0", ["dog barking"], [], "test"),
            ("cat_0", ["cat meowing"], [], "test"),
            ("train_0", ["dog barking"], [], "train"),
            ("gone_0", ["dog barking"], [], "test"),
            ("two_0", ["a", "b"], [], "test"),
            ("named_0", ["/m/0bt9lr"], ["bird song"], "test"),
            ("lost_0", ["cat meowing"], [], "test"),
            ("bad_0", ["cat meowing"], [], "test"),
        ],
    )
    shard_a = write_media(
        tmp_path / "0.parquet",
        [
            {
                "clip_id": "train_0",
                "status": "ok",
                "reason": "",
                "audio": flac(tone(100, 0.1, RATE)),
            },
            {"clip_id": "dog_0", "status": "ok", "reason": "", "audio": flac(tone(500, 0.2, RATE))},
            {"clip_id": "gone_0", "status": "unavailable", "reason": "Video unavailable"},
            {"clip_id": "bad_0", "status": "ok", "reason": "", "audio": b"not flac"},
        ],
    )
    shard_b = write_media(
        tmp_path / "1.parquet",
        [
            {
                "clip_id": "named_0",
                "status": "ok",
                "reason": "",
                "audio": flac(tone(700, 0.3, RATE)),
            },
            {"clip_id": "cat_0", "status": "ok", "reason": "", "audio": flac(tone(900, 0.1, RATE))},
        ],
    )
    return manifest, [shard_a, shard_b]


def test_vggsound_test_split_comes_from_the_manifest_and_media_shards(vggsound):
    manifest, (a, b) = vggsound
    table = read_vggsound_test(manifest, [a, b])
    assert table.name == "vggsound_test"
    assert table.audio_from == MEDIA_SHARDS
    assert table.classes == ["bird song", "cat meowing", "dog barking"]
    assert table.folds == [1]
    assert table_rows(table) == [  # in shard order
        ("dog_0", str(a), 1, 2, "dog barking"),
        ("bad_0", str(a), 1, 1, "cat meowing"),
        ("named_0", str(b), 1, 0, "bird song"),
        ("cat_0", str(b), 1, 1, "cat meowing"),
    ]
    assert table.skipped == [
        {"clip_id": "two_0", "path": str(manifest), "reason": "2 labels, not one"},
        {
            "clip_id": "gone_0",
            "path": str(a),
            "reason": "media status unavailable: Video unavailable",
        },
        {"clip_id": "lost_0", "path": str(manifest), "reason": "not in the media shards"},
    ]


def test_vggsound_audio_is_decoded_from_the_shards_in_row_order(vggsound):
    manifest, shards = vggsound
    table = read_vggsound_test(manifest, shards)
    got = list(iter_clip_audio(table))
    assert [p for p, _, _ in got] == [0, 1, 2, 3]
    assert got[1][1] is None
    assert got[1][2].startswith(f"{shards[0]}: bad_0: ")
    for position, freq, seconds in ((0, 500, 0.2), (2, 700, 0.3), (3, 900, 0.1)):
        _, samples, reason = got[position]
        assert reason == ""
        assert len(samples) == int(seconds * RATE)
        assert abs(dominant_hz(samples, RATE) - freq) < 12


def test_vggsound_clip_missing_from_its_shard_at_decode_time_is_a_reason(vggsound, tmp_path):
    manifest, shards = vggsound
    table = read_vggsound_test(manifest, shards)
    rows = table.rows.copy()
    rows.loc[len(rows)] = ["ghost_0", str(shards[1]), 1, 1, "cat meowing"]
    rows.loc[len(rows)] = ["gone_0", str(shards[0]), 1, 2, "dog barking"]  # not ok there
    ghost = BenchmarkTable("x", rows, table.classes, [1], MEDIA_SHARDS, [])
    got = list(iter_clip_audio(ghost))
    assert [p for p, _, _ in got] == [0, 1, 2, 3, 4, 5]
    assert got[4][1:] == (None, "not found in its media shard")
    assert got[5][1:] == (None, "not found in its media shard")
    assert abs(dominant_hz(got[3][1], RATE) - 900) < 12


def test_vggsound_other_split_and_empty_split(vggsound):
    manifest, shards = vggsound
    table = read_vggsound_test(manifest, shards, split="train")
    assert table_rows(table) == [("train_0", str(shards[0]), 1, 0, "dog barking")]
    assert table.name == "vggsound_train"
    with pytest.raises(BenchmarkFormatError) as info:
        read_vggsound_test(manifest, shards, split="val")
    assert str(info.value) == f"{manifest}: no clips in split 'val'"


def test_a_clip_in_two_shards_is_an_error(vggsound, tmp_path):
    manifest, (a, b) = vggsound
    c = write_media(tmp_path / "2.parquet", [{"clip_id": "cat_0", "status": "ok", "reason": ""}])
    with pytest.raises(BenchmarkFormatError) as info:
        read_vggsound_test(manifest, [a, b, c])
    assert str(info.value) == f"{c}: clip 'cat_0' is in two shards"


def test_tables_are_pandas_frames_with_the_five_columns(esc50, vggsound):
    for table in (read_esc50(esc50), read_vggsound_test(*vggsound)):
        assert isinstance(table.rows, pd.DataFrame)
        assert list(table.rows.columns) == ["clip_id", "path", "fold", "class_index", "class_name"]


def test_rows_out_of_shard_order_still_come_back_in_row_order(vggsound):
    manifest, shards = vggsound
    table = read_vggsound_test(manifest, shards)
    rows = table.rows.iloc[::-1].reset_index(drop=True)  # cat, named, bad, dog
    reordered = BenchmarkTable("x", rows, table.classes, [1], MEDIA_SHARDS, [])
    got = list(iter_clip_audio(reordered))
    assert [p for p, _, _ in got] == [0, 1, 2, 3]
    assert got[2][1] is None
    for position, freq in ((0, 900), (1, 700), (3, 500)):
        assert abs(dominant_hz(got[position][1], RATE) - freq) < 12


def test_an_empty_metadata_file_names_every_missing_column(tmp_path):
    meta = tmp_path / "metadata" / "UrbanSound8K.csv"
    meta.parent.mkdir()
    meta.write_text("")
    with pytest.raises(BenchmarkFormatError) as info:
        read_urbansound8k(tmp_path)
    assert str(info.value) == (
        f"{meta}: missing column(s) slice_file_name, fsID, start, end, salience, fold, classID, "
        "class (header: )"
    )


def test_a_clip_found_after_a_missing_one_is_still_returned(vggsound):
    manifest, shards = vggsound
    table = read_vggsound_test(manifest, shards)
    rows = table.rows.copy()
    rows.loc[-1] = ["ghost_0", str(shards[1]), 1, 1, "cat meowing"]  # first, and in no shard
    rows = rows.sort_index().reset_index(drop=True)
    got = list(iter_clip_audio(BenchmarkTable("x", rows, table.classes, [1], MEDIA_SHARDS, [])))
    assert [p for p, _, _ in got] == [0, 1, 2, 3, 4]
    assert got[0][1:] == (None, "not found in its media shard")
    assert abs(dominant_hz(got[1][1], RATE) - 500) < 12
    assert abs(dominant_hz(got[4][1], RATE) - 900) < 12


def test_quoted_fields_keep_their_line_breaks(tmp_path):
    meta = tmp_path / "meta.csv"
    meta.write_bytes(b'a,b\r\n1,"two\r\nlines"\r\n')
    assert read_metadata_csv(meta, ("a", "b")) == [(3, {"a": "1", "b": "two\r\nlines"})]
