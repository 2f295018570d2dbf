"""The benchmark's result files, and the harness end to end on a small ESC-50 folder made here
(tones of one frequency band per class, one broken file), with a hand-written audio feature."""

from __future__ import annotations

import json
import warnings
import wave
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wavbrivl.benchmark.datasets import ESC50_COLUMNS, read_esc50
from wavbrivl.benchmark.harness import embed_table, run_protocols
from wavbrivl.benchmark.results import (
    fold_tsv,
    per_class_tsv,
    read_result,
    tick_labels,
    write_result,
)
from wavbrivl.benchmark.zeroshot import evaluate_zeroshot

RATE = 16_000


def by_hand_result():
    """The top-5 case of test_benchmark_zeroshot.py: per fold (0.5, 1.0) and (0.0, 0.5)."""
    names = list("abcdefg")
    text = {f"x {c}": np.eye(7)[k] for k, c in enumerate(names)}
    audio = np.array(
        [
            [0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1],
            [0.7, 0.5, 0.6, 0.1, 0.1, 0.1, 0.1],
            [0.6, 0.5, 0.3, 0.4, 0.45, 0.35, 0.1],
            [0.2, 0.2, 0.2, 0.5, 0.5, 0.1, 0.1],
        ]
    )
    return evaluate_zeroshot(
        audio,
        np.array([0, 1, 2, 3]),
        np.array([1, 1, 2, 2]),
        names,
        lambda prompts: np.array([text[p] for p in prompts]),
        templates=["x {}"],
    )


DATA = {
    "dataset": "esc50",
    "n_clips": 4,
    "n_skipped": 1,
    "n_classes": 7,
    "classes": list("abcdefg"),
    "folds": [1, 2],
    "skipped": [
        {"clip_id": "z.wav", "path": "/d/z.wav", "reason": "/d/z.wav: empty file (0 bytes)"}
    ],
}


def test_zeroshot_files_hold_the_result_protocol_and_skipped_clips(tmp_path):
    result = by_hand_result()
    paths = write_result(result, DATA, tmp_path / "out")
    out = tmp_path / "out"
    assert paths == {
        "json": out / "zeroshot.json",
        "tsv": out / "zeroshot.tsv",
        "per_class": out / "zeroshot_per_class.tsv",
        "confusion": out / "confusion.png",
    }
    assert sorted(p.name for p in out.iterdir()) == [
        "confusion.png",
        "zeroshot.json",
        "zeroshot.tsv",
        "zeroshot_per_class.tsv",
    ]
    document = read_result(out / "zeroshot.json")
    assert document == json.loads(json.dumps({**result, "data": DATA}))
    assert document["protocol"]["templates"] == ["x {}"]
    assert document["data"]["skipped"][0]["reason"] == "/d/z.wav: empty file (0 bytes)"
    assert document["chance_verdict"]["at_chance"] is True
    assert (out / "zeroshot.tsv").read_text() == (
        "fold\tn_clips\ttop1\ttop5\n"
        "1\t2\t0.500000\t1.000000\n"
        "2\t2\t0.000000\t0.500000\n"
        "mean\t4\t0.250000\t0.750000\n"
        "std\t4\t0.250000\t0.250000\n"
    )
    assert (out / "zeroshot_per_class.tsv").read_text() == (
        "class_index\tclass_name\tn_clips\ttop1\n"
        "0\ta\t1\t1.000000\n"
        "1\tb\t1\t0.000000\n"
        "2\tc\t1\t0.000000\n"
        "3\td\t1\t0.000000\n"
        "4\te\t0\t\n"
        "5\tf\t0\t\n"
        "6\tg\t0\t\n"
    )
    with Image.open(out / "confusion.png") as image:
        assert image.format == "PNG"
        assert image.size[0] >= 400 and image.size[1] >= 400


def test_chinese_names_stay_readable_in_the_json(tmp_path):
    result = by_hand_result()
    result["classes"][0] = "狗"
    result["per_class"][0]["class_name"] = "狗"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a missing glyph would warn
        write_result(result, DATA, tmp_path)
    assert '"狗"' in (tmp_path / "zeroshot.json").read_text(encoding="utf-8")
    assert "0\t狗\t1\t1.000000\n" in (tmp_path / "zeroshot_per_class.tsv").read_text()
    assert tick_labels(["狗", "cat"]) == ["0", "1"]
    assert tick_labels(["dog", "cat"]) == ["dog", "cat"]


def test_linear_probe_tsv_adds_the_chosen_c():
    result = {
        "protocol": {"name": "linear_probe"},
        "n_clips": 30,
        "per_fold": [
            {"fold": 1, "n_test": 10, "top1": 0.9, "top5": 1.0, "C": 0.1},
            {"fold": 2, "n_test": 12, "top1": 0.75, "top5": 1.0, "C": 10.0},
            {"fold": 3, "n_test": 8, "top1": 1.0, "top5": 1.0, "C": 100.0},
        ],
        "top1": {"mean": 0.883333, "std": 0.1},
        "top5": {"mean": 1.0, "std": 0.0},
    }
    assert fold_tsv(result) == (
        "fold\tn_clips\ttop1\ttop5\tC\n"
        "1\t10\t0.900000\t1.000000\t0.1\n"
        "2\t12\t0.750000\t1.000000\t10\n"
        "3\t8\t1.000000\t1.000000\t100\n"
        "mean\t30\t0.883333\t1.000000\t\n"
        "std\t30\t0.100000\t0.000000\t\n"
    )
    assert per_class_tsv({"per_class": []}) == "class_index\tclass_name\tn_clips\ttop1\n"


def test_unknown_protocol_is_refused(tmp_path):
    with pytest.raises(ValueError) as info:
        write_result({"protocol": {"name": "retrieval"}}, DATA, tmp_path)
    assert (
        str(info.value)
        == "unknown protocol 'retrieval'; expected one of ('zeroshot', 'linear_probe')"
    )
    assert list(tmp_path.iterdir()) == []


# -- the harness end to end ----------------------------------------------------------------

BANDS = (400.0, 1200.0, 3000.0)  # class k is a tone near BANDS[k]


def write_tone(path: Path, freq: float, rate: int) -> None:
    t = np.arange(rate // 2) / rate
    pcm = np.round(0.4 * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())


def band_energy(clips: list[np.ndarray]) -> np.ndarray:
    """A hand-written audio 'model': the spectrum's energy around each class's band."""
    rows = []
    for samples in clips:
        spectrum = np.abs(np.fft.rfft(samples))
        freqs = np.fft.rfftfreq(len(samples), 1 / RATE)
        rows.append([spectrum[np.abs(freqs - f) < 200].sum() for f in BANDS])
    return np.array(rows)


@pytest.fixture
def small_esc50(tmp_path):
    root = tmp_path / "esc"
    (root / "audio").mkdir(parents=True)
    (root / "meta").mkdir()
    rows = []
    rng = np.random.default_rng(0)
    for fold in (1, 2, 3):
        for k, name in enumerate(("low_hum", "whistle", "hiss")):
            for take in "AB":
                filename = f"{fold}-{k}{take}-A-{k}.wav"
                write_tone(root / "audio" / filename, BANDS[k] + rng.uniform(-50, 50), 44100)
                rows.append(f"{filename},{fold},{k},{name},False,{k},{take}")
    (root / "audio" / "2-1B-A-1.wav").write_bytes(b"\x00" * 100)  # broken
    header = ",".join(ESC50_COLUMNS)
    (root / "meta" / "esc50.csv").write_text("\n".join([header, *rows]) + "\n")
    return root


def test_harness_embeds_scores_and_writes_both_protocols(small_esc50, tmp_path):
    table = read_esc50(small_esc50)
    emb, kept = embed_table(table, band_energy, batch_size=4, progress=False)
    assert emb.shape == (17, 3) and emb.dtype == np.float32
    assert len(kept.rows) == 17
    assert [s["clip_id"] for s in kept.skipped] == ["2-1B-A-1.wav"]
    assert np.argmax(emb, axis=1).tolist() == kept.rows["class_index"].tolist()

    def encode_text(prompts):
        names = ("low hum", "whistle", "hiss")
        return np.array([np.eye(3)[[n in p for n in names].index(True)] for p in prompts])

    out = tmp_path / "results"
    written = run_protocols(kept, emb, out, encode_text=encode_text, c_grid=(0.1, 1.0))
    assert sorted(written) == ["linear_probe", "zeroshot"]
    zeroshot = read_result(written["zeroshot"]["json"])
    probe = read_result(written["linear_probe"]["json"])
    assert zeroshot["top1"] == {"mean": 1.0, "std": 0.0}
    assert probe["top1"]["mean"] == 1.0
    assert zeroshot["data"]["n_skipped"] == 1
    assert probe["data"]["skipped"] == kept.skipped
    assert [row["n_clips"] for row in zeroshot["per_fold"]] == [6, 5, 6]
    assert sorted(p.name for p in out.iterdir()) == [
        "confusion.png",
        "linear_probe.json",
        "linear_probe.tsv",
        "linear_probe_confusion.png",
        "linear_probe_per_class.tsv",
        "zeroshot.json",
        "zeroshot.tsv",
        "zeroshot_per_class.tsv",
    ]


def test_harness_without_text_side_or_folds_runs_what_it_can(small_esc50, tmp_path):
    table = read_esc50(small_esc50)
    emb, kept = embed_table(table, band_energy, batch_size=100, progress=False)
    written = run_protocols(kept, emb, tmp_path / "a", c_grid=(1.0,))
    assert sorted(written) == ["linear_probe"]
    kept.folds = [1, 2]
    assert run_protocols(kept, emb, tmp_path / "b") == {}


def test_embedding_errors_are_named(small_esc50, tmp_path):
    table = read_esc50(small_esc50)
    with pytest.raises(ValueError) as info:
        embed_table(table, lambda clips: np.ones((len(clips) + 1, 2)), batch_size=2, progress=False)
    assert str(info.value) == "encode_audio returned shape (3, 2) for 2 clips"
    with pytest.raises(ValueError, match="batch_size must be at least 1, got 0"):
        embed_table(table, band_energy, batch_size=0)
    for wav in (small_esc50 / "audio").iterdir():
        wav.write_bytes(b"")
    with pytest.raises(ValueError) as info:
        embed_table(table, band_energy, progress=False)
    assert str(info.value) == "esc50: no clip could be read (18 skipped)"
