"""The harness end to end on a small ESC-50 folder made here (tones of one frequency band per
class, one broken file), with a hand-written audio feature as the audio model."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from wavbrivl.benchmark.datasets import ESC50_COLUMNS, read_esc50
from wavbrivl.benchmark.harness import embed_table, run_protocols
from wavbrivl.benchmark.results import read_result

RATE = 16_000


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
    two = (kept.rows["fold"] < 3).to_numpy()  # every clip of fold 3 skipped, say
    kept.rows = kept.rows[two].reset_index(drop=True)
    assert run_protocols(kept, emb[two], tmp_path / "b") == {}


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
