"""The harness as workflow stages (wavbrivl.benchmark.stage): which protocols run, embedding a
table with skips, the embeddings file, and scoring from it."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from wavbrivl.api import ImageSpaceMismatch
from wavbrivl.benchmark import stage
from wavbrivl.benchmark.datasets import TABLE_COLUMNS, build_table
from wavbrivl.benchmark.stage import (
    BenchmarkConfigError,
    check_space,
    embed_table,
    load_embedded,
    metadata_file,
    protocols_for,
    read_dataset,
    save_embedded,
    score,
)
from wavbrivl.benchmark.zeroshot import DEFAULT_TEMPLATES

SR = 16_000


@pytest.mark.parametrize(
    ("fmt", "has_text", "expected"),
    [
        ("esc50", True, ["zeroshot", "linear_probe"]),
        ("esc10", False, ["linear_probe"]),
        ("urbansound8k", True, ["zeroshot", "linear_probe"]),
        ("vggsound_test", True, ["zeroshot"]),  # one fold: no probe
        ("vggsound_test", False, []),
    ],
)
def test_protocols_follow_the_text_side_and_the_folds(fmt, has_text, expected):
    assert protocols_for({"format": fmt}, has_text) == expected


def test_metadata_files_lie_where_the_official_layouts_put_them():
    assert metadata_file({"format": "esc50", "root": "d/esc"}, "k") == "d/esc/meta/esc50.csv"
    assert metadata_file({"format": "esc10", "root": "e"}, "k") == "e/meta/esc50.csv"
    assert (
        metadata_file({"format": "urbansound8k", "root": "u"}, "k") == "u/metadata/UrbanSound8K.csv"
    )
    with pytest.raises(BenchmarkConfigError, match=r"^benchmarks\.datasets\.x\.root: a esc50"):
        metadata_file({"format": "esc50"}, "benchmarks.datasets.x")


class MeanModel:
    """A stand-in audio model: (mean, std, length) of the clip; too short below 100 samples."""

    dim = 3
    min_samples = 100
    sample_rate = SR

    def __init__(self):
        self.calls = []

    def embed(self, clips):
        self.calls.append(len(clips))
        rows = np.array([[c.mean(), c.std(), len(c) / SR] for c in clips], dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def make_table(tmp_path, lengths):
    entries = []
    for i, n in enumerate(lengths):
        path = tmp_path / f"c{i}.wav"
        if n is not None:
            sf.write(path, np.full(n, 0.1 * (i + 1), np.float32), SR, subtype="FLOAT")
        entries.append((f"c{i}.wav", path, i % 3 + 1, i % 2, ["dog", "rain"][i % 2]))
    return build_table("toy", entries, [1, 2, 3], tmp_path / "meta.csv")


def test_embedding_skips_missing_and_too_short_clips_with_reasons(tmp_path):
    table = make_table(tmp_path, [1600, 50, None, 3200, 1600, 800])
    model = MeanModel()
    embeddings, kept = embed_table(table, model, batch_size=2)
    assert kept.rows["clip_id"].tolist() == ["c0.wav", "c3.wav", "c4.wav", "c5.wav"]
    assert embeddings.shape == (4, 3) and embeddings.dtype == np.float32
    expected = np.array([[0.1, 0.0, 0.1], [0.4, 0.0, 0.2], [0.5, 0.0, 0.1], [0.6, 0.0, 0.05]])
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(embeddings, expected, atol=1e-5)
    reasons = {s["clip_id"]: s["reason"] for s in kept.skipped}
    assert sorted(reasons) == ["c1.wav", "c2.wav"]
    assert "no such file" in reasons["c2.wav"]
    assert "50" in reasons["c1.wav"] and "100" in reasons["c1.wav"]
    assert sum(model.calls) == 4 and max(model.calls) <= 2  # batches of at most 2


def test_nothing_embeddable_is_an_error_naming_the_dataset(tmp_path):
    table = make_table(tmp_path, [None, 10])
    with pytest.raises(ValueError, match=r"^toy: no clip could be embedded \(2 skipped\)"):
        embed_table(table, MeanModel())


def test_the_embeddings_file_round_trips(tmp_path):
    table = make_table(tmp_path, [1600, None, 1600, 1600])
    embeddings, kept = embed_table(table, MeanModel())
    record = {"name": "m", "fingerprint": "f" * 64, "space_fingerprint": "s" * 64}
    save_embedded(tmp_path / "e.npz", embeddings, kept, record)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    got, table2, model = load_embedded(tmp_path / "e.npz")
    np.testing.assert_array_equal(got, embeddings)
    assert model == record
    assert table2.rows["clip_id"].tolist() == ["c0.wav", "c2.wav", "c3.wav"]
    assert table2.rows["fold"].tolist() == [1, 3, 1]
    assert table2.rows["class_name"].tolist() == ["dog", "dog", "rain"]
    assert table2.classes == ["dog", "rain"] and table2.folds == [1, 2, 3]
    assert table2.report() == kept.report() | {"skipped": kept.skipped}
    assert [s["clip_id"] for s in table2.skipped] == ["c1.wav"]


def separable(tmp_path, n_per_class=6):
    """Embeddings of 3 classes along 3 axes, over 3 folds, saved as an embeddings file."""
    rng = np.random.default_rng(0)
    entries, rows = [], []
    for k in range(3):
        for i in range(n_per_class):
            path = tmp_path / f"k{k}_{i}.wav"
            path.write_bytes(b"")
            entries.append((path.name, path, i % 3 + 1, k, f"class {k}"))
            v = np.eye(3)[k] + 0.05 * rng.standard_normal(3)
            rows.append(v / np.linalg.norm(v))
    table = build_table("sep", entries, [1, 2, 3], tmp_path / "m.csv")
    path = tmp_path / "emb.npz"
    save_embedded(path, np.array(rows, np.float32), table, {"space_fingerprint": "abc"})
    return path


def test_scoring_writes_each_protocols_files(tmp_path):
    embedded = separable(tmp_path)
    out = tmp_path / "out"
    probe = score(embedded, "linear_probe", out, seed=0)
    assert sorted(p.name for p in probe.values()) == [
        "linear_probe.json",
        "linear_probe.tsv",
        "linear_probe_confusion.png",
        "linear_probe_per_class.tsv",
    ]
    assert json.loads(probe["json"].read_text())["top1"]["mean"] == 1.0

    def axes(texts):  # "a sound of class k" -> axis k: a perfect text side
        return np.array([np.eye(3)[int(t.rstrip(".").split()[-1])] for t in texts])

    zs = score(embedded, "zeroshot", out, encode_text=axes, templates=["a sound of {}."])
    result = json.loads(zs["json"].read_text())
    assert result["top1"]["mean"] == 1.0
    assert result["protocol"]["templates"] == ["a sound of {}."]
    assert zs["confusion"].name == "confusion.png"


def test_scoring_needs_a_text_side_for_zero_shot_and_a_known_protocol(tmp_path):
    embedded = separable(tmp_path)
    with pytest.raises(ValueError, match=r"^zero-shot needs a text side \(encode_text\)$"):
        score(embedded, "zeroshot", tmp_path / "o")
    with pytest.raises(ValueError, match="unknown protocol 'retrieval'"):
        score(embedded, "retrieval", tmp_path / "o")


def test_a_text_side_of_another_space_is_refused_naming_both():
    model = {"name": "wavbrivl(run)", "space_fingerprint": "aaa"}
    check_space(model, SimpleNamespace(name="tiny", fingerprint="aaa"), "e.npz")
    check_space({"name": "w2c", "space_fingerprint": None}, SimpleNamespace(), "e.npz")
    with pytest.raises(
        ImageSpaceMismatch,
        match=r"^e\.npz: the text side clip is of image space bbb, the audio model wavbrivl\(run\) of aaa$",
    ):
        check_space(model, SimpleNamespace(name="clip", fingerprint="bbb"), "e.npz")


def test_read_dataset_dispatches_on_the_format(tmp_path):
    root = tmp_path / "esc"
    (root / "meta").mkdir(parents=True)
    (root / "audio").mkdir()
    (root / "meta/esc50.csv").write_text(
        "filename,fold,target,category,esc10,src_file,take\n"
        "1-1-A-0.wav,1,0,dog,True,1,A\n1-2-A-1.wav,2,1,rain,False,2,A\n"
    )
    for name in ("1-1-A-0.wav", "1-2-A-1.wav"):
        sf.write(root / "audio" / name, np.zeros(1000, np.float32), SR)
    assert read_dataset({"format": "esc50", "root": str(root)}).classes == ["dog", "rain"]
    assert read_dataset({"format": "esc10", "root": str(root)}).classes == ["dog"]


def test_the_probe_needs_three_folds_exactly(monkeypatch):
    monkeypatch.setitem(stage.DATASET_FOLDS, "three", 3)
    monkeypatch.setitem(stage.DATASET_FOLDS, "two", 2)
    assert protocols_for({"format": "three"}, False) == ["linear_probe"]
    assert protocols_for({"format": "two"}, False) == []


def test_clips_are_embedded_in_batches_and_unreadable_ones_skipped_in_place(tmp_path):
    table = make_table(tmp_path, [1600, 1600, 1600, 1600, 1600, 1600])
    (tmp_path / "c1.wav").write_bytes(b"RIFF but not really a wave file" * 10)
    model, seen = MeanModel(), []

    def progress(items):
        for item in items:
            seen.append(item[0])
            yield item

    embeddings, kept = embed_table(table, model, batch_size=2, progress=progress)
    assert seen == [0, 1, 2, 3, 4, 5]  # the progress wrapper saw every clip
    assert model.calls == [2, 2, 1]
    assert kept.rows["clip_id"].tolist() == ["c0.wav", "c2.wav", "c3.wav", "c4.wav", "c5.wav"]
    (skip,) = kept.skipped
    assert skip["clip_id"] == "c1.wav" and "c1.wav" in skip["reason"] and skip["reason"]
    assert len(embeddings) == 5


def test_the_default_batch_is_sixteen_clips(tmp_path):
    table = make_table(tmp_path, [1600] * 20)
    model = MeanModel()
    embed_table(table, model)
    assert model.calls == [16, 4]


def test_the_embeddings_file_keeps_float32_and_the_table_columns(tmp_path):
    table = make_table(tmp_path, [1600, 1600])
    save_embedded(tmp_path / "e.npz", np.eye(2, 3, dtype=np.float64), table, {})
    got, table2, _ = load_embedded(tmp_path / "e.npz")
    assert got.dtype == np.float32
    assert list(table2.rows.columns) == list(TABLE_COLUMNS)
    assert table2.rows["path"].tolist() == ["", ""]


def test_read_dataset_passes_the_manifest_and_shards_and_reads_urbansound8k(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(stage, "read_vggsound_test", lambda *a, **k: calls.append((a, k)))
    read_dataset({"format": "vggsound_test"}, manifest="m.parquet", media_shards=("a", "b"))
    assert calls == [(("m.parquet", ["a", "b"]), {})]

    root = tmp_path / "us8k"
    (root / "metadata").mkdir(parents=True)
    (root / "audio/fold2").mkdir(parents=True)
    (root / "metadata/UrbanSound8K.csv").write_text(
        "slice_file_name,fsID,start,end,salience,fold,classID,class\n"
        "1-0-0-0.wav,1,0,1,1,2,0,dog_bark\n"
    )
    sf.write(root / "audio/fold2/1-0-0-0.wav", np.zeros(800, np.float32), 8000)
    table = read_dataset({"format": "urbansound8k", "root": str(root)})
    assert table.name == "urbansound8k" and table.rows["clip_id"].tolist() == ["1-0-0-0.wav"]


def test_a_text_side_without_a_name_is_shown_as_a_question_mark():
    with pytest.raises(ImageSpaceMismatch, match=r"the text side \? is of image space None"):
        check_space({"name": "m", "space_fingerprint": "a"}, object(), "e.npz")


def test_scoring_records_the_language_templates_seed_grid_and_data(tmp_path):
    embedded = separable(tmp_path)

    def axes(texts):
        return np.ones((len(texts), 3))

    zs = json.loads(
        score(embedded, "zeroshot", tmp_path / "a", encode_text=axes)["json"].read_text()
    )
    assert zs["protocol"]["templates"] == list(DEFAULT_TEMPLATES["en"])
    assert zs["data"]["n_clips"] == 18 and zs["data"]["dataset"] == "sep"
    zh = score(embedded, "zeroshot", tmp_path / "b", encode_text=axes, language="zh")
    assert json.loads(zh["json"].read_text())["protocol"]["templates"] == list(
        DEFAULT_TEMPLATES["zh"]
    )
    probe = score(embedded, "linear_probe", tmp_path / "c", c_grid=[0.5, 2.0], seed=7)
    protocol = json.loads(probe["json"].read_text())["protocol"]
    assert protocol["c_grid"] == [0.5, 2.0] and protocol["seed"] == 7
    default = score(embedded, "linear_probe", tmp_path / "d")
    assert json.loads(default["json"].read_text())["protocol"]["seed"] == 0
