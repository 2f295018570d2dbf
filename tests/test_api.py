"""``wavbrivl.load`` and the export folder, on a tiny model saved in the test.

Expected embeddings come from the trained model called directly (``CrossModalMoCo.embed_audio``
on one window at a time, as the evaluation stage calls it), pooled by hand; search and
classification answers from vectors built so that the right answer is known.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import wavbrivl
from wavbrivl.api import (
    AudioModel,
    ImageSpaceMismatch,
    NoTextSide,
    check_same_space,
    load,
    rank,
    resolve_wavlm,
    split_windows,
    zero_shot,
)
from wavbrivl.audiofile import AudioFileError
from wavbrivl.embed.store import EmbeddingWriter
from wavbrivl.encoders.registry import build_tiny
from wavbrivl.export import (
    EXPORT_FORMAT,
    ExportError,
    export_run,
    inference_state,
    is_export,
    load_export,
    model_card,
    read_export,
)
from wavbrivl.train.checkpoint import build_trained_model, read_audio_encoder

SR = 16_000
WINDOW_S = 0.5
WINDOW = 8000
SPACE = build_tiny(seed=0).fingerprint  # the demo's image space: no text side


def save_model(directory: Path, fingerprint: str | None = SPACE) -> Path:
    from wavbrivl.audio.encoder import AudioEncoderConfig, build_audio_encoder
    from wavbrivl.audio.tiny import TINY_AUDIO, TINY_MOCO, save_tiny_wavlm
    from wavbrivl.train.checkpoint import save_audio_encoder
    from wavbrivl.train.moco import CrossModalMoCo, MoCoConfig

    directory.mkdir(parents=True, exist_ok=True)
    save_tiny_wavlm(directory / "wavlm", seed=0)
    torch.manual_seed(0)
    model = CrossModalMoCo(
        build_audio_encoder(AudioEncoderConfig(wavlm=str(directory / "wavlm"), **TINY_AUDIO)),
        MoCoConfig(**(TINY_MOCO | {"queue_size": 8})),
    )
    return save_audio_encoder(
        directory / "audio_encoder.pt",
        model,
        step=7,
        train_config={"window_s": WINDOW_S, "batch_size": 3, "lr": 0.01},
        image_encoder_fingerprint=fingerprint,
    )


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return save_model(tmp_path_factory.mktemp("model") / "run")


@pytest.fixture(scope="module")
def reference(model_path):
    """The trained model built without wavbrivl.api: the independent computation."""
    return build_trained_model(read_audio_encoder(model_path))


def direct(reference, piece: np.ndarray) -> np.ndarray:
    """One window embedded as evaluation does: padded to the window, true length given."""
    padded = torch.zeros(1, WINDOW)
    padded[0, : len(piece)] = torch.from_numpy(piece)
    return reference.embed_audio(padded, torch.tensor([len(piece)]))[0].numpy().astype(np.float64)


def signal(n: int, seed: int = 0) -> np.ndarray:
    return (0.3 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray, rate: int = SR) -> Path:
    sf.write(path, samples, rate, subtype="FLOAT")
    return path


# -- loading -----------------------------------------------------------------------------


def test_load_reads_the_artefact_the_run_folder_and_the_package_attribute(model_path):
    for target in (model_path, model_path.parent, str(model_path)):
        model = load(target)
        assert isinstance(model, AudioModel)
        assert model.fingerprint == SPACE
        assert model.dim == 128
        assert model.window == WINDOW
        assert model.info["step"] == 7
        assert model.min_samples == 400
    assert wavbrivl.load is load
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = wavbrivl.nope


def test_load_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'x.pt'}: no such model"):
        load(tmp_path / "x.pt")
    with pytest.raises(FileNotFoundError, match="neither an export folder"):
        load(tmp_path)


def test_a_relative_wavlm_is_found_from_the_workflow_folder(tmp_path):
    artefact = tmp_path / "results" / "models" / "run" / "audio_encoder.pt"
    (tmp_path / "results" / "models" / "_wavlm" / "w").mkdir(parents=True)
    found = resolve_wavlm("results/models/_wavlm/w", artefact)
    assert found == str(tmp_path / "results/models/_wavlm/w")
    assert resolve_wavlm("results/models/_wavlm/other", artefact) == "results/models/_wavlm/other"
    assert resolve_wavlm("/abs/wavlm", artefact) == "/abs/wavlm"
    assert resolve_wavlm("w", Path("audio_encoder.pt")) == "w"


# -- embedding ---------------------------------------------------------------------------


def test_a_clip_within_one_window_is_embedded_as_evaluation_does(model_path, reference, tmp_path):
    x = signal(6000)
    expected = direct(reference, x)
    expected /= np.linalg.norm(expected)
    model = load(model_path)
    got = model.embed_audio(x, sample_rate=SR)
    assert got.shape == (1, 128)
    np.testing.assert_allclose(got[0], expected, atol=1e-5)
    from_file = model.embed_audio([write_wav(tmp_path / "x.wav", x)])
    np.testing.assert_allclose(from_file[0], expected, atol=1e-5)
    assert np.linalg.norm(got[0]) == pytest.approx(1.0, abs=1e-6)


def test_a_long_clip_is_the_length_weighted_mean_of_its_windows(model_path, reference, tmp_path):
    x = signal(2 * WINDOW + 3000, seed=1)
    parts = [x[:WINDOW], x[WINDOW : 2 * WINDOW], x[2 * WINDOW :]]
    total = sum(len(p) * direct(reference, p) for p in parts)
    expected = total / np.linalg.norm(total)
    model = load(model_path)
    got = model.embed_audio([x, write_wav(tmp_path / "long.wav", x)], sample_rate=SR)
    np.testing.assert_allclose(got[0], expected, atol=1e-5)
    np.testing.assert_allclose(got[1], expected, atol=1e-5)
    # not the plain mean, not the first window alone
    plain = sum(direct(reference, p) for p in parts)
    assert np.abs(got[0] - plain / np.linalg.norm(plain)).max() > 1e-4


def test_batches_of_windows_give_the_same_embedding(model_path):
    x = signal(3 * WINDOW + 1234, seed=2)
    model = load(model_path)
    one = model.embed_windows(split_windows(x, WINDOW), batch_size=1)
    many = model.embed_windows(split_windows(x, WINDOW), batch_size=3)
    np.testing.assert_allclose(one, many, atol=1e-5)


def test_a_tail_shorter_than_one_wavlm_frame_is_dropped(model_path, reference):
    x = signal(WINDOW + 399, seed=3)
    expected = direct(reference, x[:WINDOW])
    got = load(model_path).embed_audio(x, sample_rate=SR)[0]
    np.testing.assert_allclose(got, expected / np.linalg.norm(expected), atol=1e-5)
    # 400 samples do make a frame: then the tail counts
    y = signal(WINDOW + 400, seed=3)
    assert np.abs(load(model_path).embed_audio(y, sample_rate=SR)[0] - got).max() > 1e-5


def test_audio_shorter_than_one_frame_is_an_error_naming_the_file(model_path, tmp_path):
    model = load(model_path)
    with pytest.raises(AudioFileError, match="too short: 399 samples"):
        model.embed_audio(np.zeros(399, np.float32), sample_rate=SR)
    path = write_wav(tmp_path / "tiny.wav", signal(200))
    with pytest.raises(AudioFileError, match=f"^{path}: too short: 200 samples"):
        model.embed_audio(path)
    assert model.embed_audio(np.zeros(400, np.float32), sample_rate=SR).shape == (1, 128)


def test_arrays_need_their_rate_and_are_resampled(model_path, reference):
    model = load(model_path)
    with pytest.raises(ValueError, match="sample_rate is required"):
        model.embed_audio(signal(1000))
    t = np.arange(4000) / 8000
    x8 = np.sin(2 * np.pi * 200 * t).astype(np.float32)
    got = model.embed_audio(torch.from_numpy(np.stack([x8, x8])), sample_rate=8000)
    from wavbrivl.audiofile import to_mono_16k

    expected = direct(reference, to_mono_16k(x8, 8000))
    np.testing.assert_allclose(got[0], expected / np.linalg.norm(expected), atol=1e-5)
    assert model.embed_audio([], sample_rate=SR).shape == (0, 128)


def test_embed_files_reports_each_bad_file_and_goes_on(model_path, tmp_path):
    good = write_wav(tmp_path / "good.wav", signal(3000))
    text = tmp_path / "notes.txt"
    text.write_text("hello\n" * 40)
    empty = tmp_path / "empty.flac"
    empty.write_bytes(b"")
    seen = []
    results = list(
        load(model_path).embed_files(
            [text, good, empty, tmp_path], progress=lambda xs: seen.append(len(xs)) or xs
        )
    )
    assert seen == [4]
    assert [r[0] for r in results] == [text, good, empty, tmp_path]
    assert [r[1] is None for r in results] == [True, False, True, True]
    assert results[1][2] is None and results[1][1].shape == (128,)
    # ffmpeg reads some text as a "tty" video (no audio stream), other text as invalid data
    assert results[0][2].startswith(f"{text}: ")
    assert "no audio stream" in results[0][2] or "invalid data" in results[0][2]
    assert results[2][2] == f"{empty}: empty file (0 bytes)"
    assert results[3][2] == f"{tmp_path}: is a directory, not an audio file"
    assert list(load(model_path).embed_files([good]))[0][2] is None


# -- search ------------------------------------------------------------------------------


def write_embeddings(path: Path, ids, vectors, fingerprint: str = SPACE, views=None) -> Path:
    vectors = np.asarray(vectors, np.float32)
    with EmbeddingWriter(path, vectors.shape[1], {"fingerprint": fingerprint}) as w:
        w.write(list(ids), list(views or [0] * len(ids)), vectors)
    return path


def test_search_finds_the_clip_whose_frame_matches_the_audio(model_path, tmp_path):
    model = load(model_path)
    x = signal(5000, seed=4)
    q = model.embed_audio(x, sample_rate=SR)[0]
    rng = np.random.default_rng(9)
    others = rng.standard_normal((4, 128))
    others -= np.outer(others @ q, q)  # orthogonal to the query: score 0
    a = write_embeddings(tmp_path / "a.parquet", ["o1", "o2", "hit"], [others[0], others[1], 3 * q])
    # view 1 (an augmented frame) of another clip equal to the query must not count
    b = write_embeddings(
        tmp_path / "b.parquet",
        ["o3", "aug", "half"],
        [others[2], q, q + others[3]],
        views=[0, 1, 0],
    )
    hits = model.search(x, [a, b], k=2, sample_rate=SR)[0]
    assert [h.clip_id for h in hits] == ["hit", "half"]
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    expected_half = 1 / np.linalg.norm(q + others[3])
    assert hits[1].score == pytest.approx(expected_half, abs=1e-5)
    assert len(model.search(x, a, k=10, sample_rate=SR)[0]) == 3
    with pytest.raises(ValueError, match="k must be at least 1"):
        model.search(x, a, k=0, sample_rate=SR)


def test_search_refuses_embeddings_of_another_image_space_naming_both(model_path, tmp_path):
    other = "f" * 64
    path = write_embeddings(tmp_path / "o.parquet", ["c"], np.ones((1, 128)), fingerprint=other)
    with pytest.raises(ImageSpaceMismatch) as info:
        load(model_path).search(signal(4000), path, k=1, sample_rate=SR)
    assert other in str(info.value) and SPACE in str(info.value) and str(path) in str(info.value)


def test_rank_orders_by_score_then_clip_id():
    queries = np.array([[1.0, 0.0]])
    ids = ["b", "a", "c", "z"]
    matrix = np.array([[2.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    hits = rank(queries, ids, matrix, 3)[0]
    assert [(h.clip_id, round(h.score, 6)) for h in hits] == [("a", 1.0), ("b", 1.0), ("c", 0.0)]
    assert rank(queries, [], np.zeros((0, 2)), 3) == [[]]
    assert rank(queries, ids, matrix, 1)[0][0].clip_id == "a"
    assert [h.clip_id for h in rank(queries, ids, matrix, 4)[0]][-2:] == ["c", "z"]


def test_search_returns_five_by_default_from_clean_frames_only(model_path, tmp_path):
    model = load(model_path)
    x = signal(5000, seed=4)
    q = model.embed_audio(x, sample_rate=SR)[0]
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((7, 128))
    ids = [f"c{i}" for i in range(7)]
    path = write_embeddings(tmp_path / "e.parquet", ids, vectors)
    hits = model.search(x, path, sample_rate=SR)[0]
    # by hand: cosines of the seven rows with the query, best five
    cos = vectors @ q / np.linalg.norm(vectors, axis=1) / np.linalg.norm(q)
    assert [h.clip_id for h in hits] == [ids[j] for j in np.argsort(-cos)[:5]]
    # an augmented view (1) of each clip beside its clean frame: only the clean rows count
    both = write_embeddings(
        tmp_path / "views.parquet",
        ids[:2] * 2,
        np.concatenate([vectors[:2], -vectors[:2]]),
        views=[0, 0, 1, 1],
    )
    index_ids, matrix = model.image_index(both)
    assert list(index_ids) == ids[:2]
    np.testing.assert_allclose(matrix, vectors[:2].astype(np.float32), rtol=1e-6)


def test_image_index_names_the_embeddings_of_another_space(model_path, tmp_path):
    other = "d" * 64
    path = write_embeddings(tmp_path / "o.parquet", ["c"], np.ones((1, 128)), fingerprint=other)
    with pytest.raises(ImageSpaceMismatch) as info:
        load(model_path).image_index(path)
    assert str(info.value).startswith(f"{path}: embeddings of image space {other}, but")


def test_rank_scores_cosines_of_unnormalised_and_zero_rows():
    queries = np.array([[0.6, 0.8], [1.0, 0.0]])
    ids = ["only"]
    # a single row is ranked, not taken for an empty index
    assert [
        (h.clip_id, round(h.score, 6)) for h in rank(queries, ids, np.array([[0.3, 0.4]]), 2)[0]
    ] == [("only", 1.0)]
    # rows shorter than 1 are scaled up to unit length; a zero row scores 0, not NaN
    matrix = np.array([[0.0, 0.0], [0.5, 0.0], [0.0, 0.25]])
    hits = rank(queries, ["zero", "x", "y"], matrix, 3)
    assert [(h.clip_id, round(h.score, 6)) for h in hits[0]] == [
        ("y", 0.8),
        ("x", 0.6),
        ("zero", 0.0),
    ]
    assert [(h.clip_id, round(h.score, 6)) for h in hits[1]] == [
        ("x", 1.0),
        ("y", 0.0),
        ("zero", 0.0),
    ]


def test_check_same_space_warns_when_the_model_records_none():
    with pytest.warns(UserWarning, match="records no image space fingerprint; cannot check E") as w:
        check_same_space(None, "abc", "embeddings", "E")
    assert w[0].filename == __file__  # the caller's line, not wavbrivl's (wavbrivl.warn)
    check_same_space("abc", "abc", "embeddings", "E")
    with pytest.raises(ImageSpaceMismatch, match="E: embeddings of image space \\(none\\)"):
        check_same_space("abc", None, "embeddings", "E")


# -- classify ----------------------------------------------------------------------------


class TextEncoder:
    """A fake encoder of the model's space whose text tower returns fixed vectors."""

    name = "fake-text"
    fingerprint = SPACE

    def __init__(self, vectors: dict[str, np.ndarray]) -> None:
        self.vectors = vectors
        self.prompts: list[str] = []

    def encode_text(self, prompts):
        self.prompts += prompts
        return torch.tensor(np.stack([self.vectors[p] for p in prompts]))


def test_classify_is_a_softmax_over_scaled_cosines_with_the_prompts(model_path):
    model = load(model_path)
    x = signal(5000, seed=5)
    q = model.embed_audio(x, sample_rate=SR)[0].astype(np.float64)
    rng = np.random.default_rng(1)
    r = rng.standard_normal(128)
    r -= (r @ q) * q
    r /= np.linalg.norm(r)
    # cosines 1.0, 0.6 and 0.0 with the audio embedding (vectors given unnormalised)
    vectors = {"a dog": 2 * q, "a cat": 0.6 * q + 0.8 * r, "a rain": 5 * r}
    encoder = TextEncoder(vectors)
    probs = model.classify(x, ["dog", "cat", "rain"], encoder, template="a {}", sample_rate=SR)[0]
    assert encoder.prompts == ["a dog", "a cat", "a rain"]
    logits = np.array([100.0, 60.0, 0.0])
    expected = np.exp(logits - 100) / np.exp(logits - 100).sum()
    assert list(probs) == ["dog", "cat", "rain"]
    np.testing.assert_allclose(list(probs.values()), expected, atol=1e-6)
    assert probs["cat"] == pytest.approx(np.exp(-40) / (1 + np.exp(-40) + np.exp(-100)), rel=1e-3)


def test_zero_shot_is_stable_for_large_logits():
    p = zero_shot(np.array([[1.0, 0.0]]), np.array([[1.0, 0.0], [0.0, 1.0]]), scale=1000.0)
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p[0], [1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(
        zero_shot(np.array([[1.0, 0.0]]), np.eye(2), scale=1.0)[0].sum(), 1.0
    )
    expected = np.exp(1) / (np.exp(1) + 1)
    assert zero_shot(np.array([[1.0, 0.0]]), np.eye(2), scale=1.0)[0][0] == pytest.approx(expected)
    assert zero_shot(np.array([[1.0, 0.0]]), np.eye(2))[0][0] == pytest.approx(
        1 / (1 + np.exp(-100))
    )


def test_zero_shot_normalises_each_query_on_its_own():
    # Two queries whose largest logits lie 1000 apart, three labels (N != L): each row is its
    # own softmax, by hand from the row's own largest logit.
    audio = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    text = np.array([[0.0, 1.0, 0.0], [0.0, -1.0, 0.0], [1.0, 0.0, 0.0]])
    p = zero_shot(audio, text, scale=1000.0)
    assert p.shape == (2, 3) and np.isfinite(p).all()
    np.testing.assert_allclose(p[0], [0.0, 0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(p[1], [1 / 3, 1 / 3, 1 / 3], rtol=1e-12)  # cosines all 0
    soft = zero_shot(np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0]]), text, scale=2.0)
    for row, cos in zip(soft, ([0.0, 0.0, 1.0], [0.8, -0.8, 0.6]), strict=True):
        e = np.exp(2.0 * np.array(cos))
        np.testing.assert_allclose(row, e / e.sum(), rtol=1e-12)


def test_classify_prompts_are_the_bare_labels_by_default(model_path):
    model = load(model_path)
    x = signal(5000, seed=5)
    q = model.embed_audio(x, sample_rate=SR)[0]
    encoder = TextEncoder({"dog": q, "cat": -q})
    probs = model.classify(x, ["dog", "cat"], encoder, sample_rate=SR)[0]
    assert encoder.prompts == ["dog", "cat"]
    assert probs["dog"] == pytest.approx(1 / (1 + np.exp(-200)))


def test_text_embeddings_are_unit_rows_of_the_bare_labels_by_default(model_path):
    model = load(model_path)
    encoder = TextEncoder({"dog": np.array([3.0, 4.0] + [0.0] * 126)})
    rows = model.text_embeddings(["dog"], encoder)
    assert encoder.prompts == ["dog"]
    np.testing.assert_allclose(rows[0, :2], [0.6, 0.8], rtol=1e-6)
    with pytest.raises(ValueError, match="^classify needs at least one label$"):
        model.text_embeddings([], encoder)


class NamelessText:
    """A text side without ``name`` or ``fingerprint`` attributes."""

    def encode_text(self, prompts):
        raise AssertionError("not reached: the space is checked first")


def test_a_nameless_text_encoder_of_unknown_space_is_named_by_its_class(model_path):
    with pytest.raises(ImageSpaceMismatch) as info:
        load(model_path).text_embeddings(["dog"], NamelessText())
    assert str(info.value).startswith(
        f"NamelessText: a text encoder of image space (none), but the model was trained "
        f"in image space {SPACE}"
    )


def test_classify_says_when_the_image_space_has_no_text_side(model_path):
    model = load(model_path)
    tiny = build_tiny(seed=0)  # the registry's demo encoder: image tower only
    with pytest.raises(NoTextSide) as info:
        model.classify(signal(4000), ["dog"], tiny, sample_rate=SR)
    message = str(info.value)
    assert "has no text side" in message and tiny.name in message and SPACE in message
    with pytest.raises(ValueError, match="at least one label"):
        model.classify(signal(4000), [], tiny, sample_rate=SR)


def test_classify_with_brivl_s_text_side_of_the_same_space(model_path):
    # The tiny encoder with a (random) BriVL text tower: same fingerprint, so it is accepted.
    folder = Path(__file__).parent / "fixtures" / "brivl_text_tiny"
    encoder = build_tiny(seed=0, text_folder=folder)
    model = load(model_path)
    x = signal(5000, seed=5)
    probs = model.classify(x, ["狗", "猫"], encoder, template="{}的声音", sample_rate=SR)[0]
    q = model.embed_audio(x, sample_rate=SR)[0].astype(np.float64)
    t = encoder.encode_text(["狗的声音", "猫的声音"]).numpy().astype(np.float64)
    logits = 100 * (t @ q)  # the rows are unit already
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose([probs["狗"], probs["猫"]], expected, atol=1e-5)


def test_classify_refuses_a_text_encoder_of_another_space(model_path):
    encoder = TextEncoder({})
    encoder.fingerprint = "e" * 64
    with pytest.raises(ImageSpaceMismatch, match="e{64}"):
        load(model_path).classify(signal(4000), ["dog"], encoder, sample_rate=SR)


# -- export ------------------------------------------------------------------------------


def safetensors_header(path: Path) -> dict:
    """The JSON header of a safetensors file, read by its documented layout."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n])


def test_export_is_self_contained_and_embeds_exactly_as_the_run(model_path, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(model_path.parent, run)
    out = export_run(run, tmp_path / "exported")
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "config.json",
        "image_space.json",
        "model.safetensors",
    ]
    x = signal(2 * WINDOW + 777, seed=6)
    before = load(run).embed_audio(x, sample_rate=SR)
    shutil.rmtree(run)  # the results tree, WavLM folder included, is gone
    exported = load(out)
    np.testing.assert_array_equal(exported.embed_audio(x, sample_rate=SR), before)
    assert exported.fingerprint == SPACE
    assert exported.window == WINDOW and exported.info["step"] == 7
    assert is_export(out) and not is_export(tmp_path)


def test_export_files_hold_weights_config_space_and_card(model_path, tmp_path):
    out = export_run(model_path, tmp_path / "e")
    header = safetensors_header(out / "model.safetensors")
    assert header["__metadata__"] == {"format": EXPORT_FORMAT}
    keys = {k for k in header if k != "__metadata__"}
    assert keys and all(k.startswith(("audio_encoder.", "g.")) for k in keys)
    assert "g.net.0.weight" in keys or any(k.startswith("g.") for k in keys)
    assert not any("momentum" in k or k.startswith(("f.", "queue")) for k in keys)
    state = read_audio_encoder(model_path)["state_dict"]
    assert keys == {k for k in state if k.startswith(("audio_encoder.", "g."))}
    config = json.loads((out / "config.json").read_text())
    assert config["format"] == EXPORT_FORMAT
    assert config["window_s"] == WINDOW_S and config["step"] == 7 and config["sample_rate"] == SR
    assert config["wavlm_config"]["hidden_size"] == 32
    assert config["normalize_waveform"] is False  # the tiny base WavLM takes raw audio
    assert json.loads((out / "image_space.json").read_text()) == {"fingerprint": SPACE, "dim": 128}
    card = (out / "README.md").read_text()
    assert SPACE in card and "- steps: 7 (batch size 3, window 0.5 s, lr 0.01)" in card
    assert "## Intended use" in card and "## Limits" in card
    assert not list(out.glob("*.pt")) and not list(tmp_path.glob(".e.*"))


def test_export_refuses_a_non_empty_folder_unless_told(model_path, tmp_path):
    out = tmp_path / "e"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(ExportError, match=f"{out}: exists and is not empty"):
        export_run(model_path, out)
    assert (out / "keep.txt").exists()
    export_run(model_path, out, overwrite=True)
    assert not (out / "keep.txt").exists() and is_export(out)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert is_export(export_run(model_path, empty))


def test_an_export_refuses_embeddings_of_another_space(model_path, tmp_path):
    out = export_run(model_path, tmp_path / "e")
    other = write_embeddings(tmp_path / "o.parquet", ["c"], np.ones((1, 128)), fingerprint="9" * 64)
    with pytest.raises(ImageSpaceMismatch, match=f"{'9' * 64}.*{SPACE}"):
        load(out).search(signal(3000), other, k=1, sample_rate=SR)


def test_read_export_names_a_broken_folder(model_path, tmp_path):
    out = export_run(model_path, tmp_path / "e")
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "format": "other/9"}))
    with pytest.raises(ExportError, match="not a wavbrivl.export/1 export \\(format 'other/9'\\)"):
        read_export(out)
    (out / "config.json").write_text("{")
    with pytest.raises(ExportError, match="unreadable JSON"):
        read_export(out)
    (out / "config.json").write_text(json.dumps(config))
    (out / "image_space.json").unlink()
    with pytest.raises(ExportError, match="incomplete export, image_space.json missing"):
        read_export(out)
    export_run(model_path, out, overwrite=True)
    (out / "model.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(ExportError, match="model.safetensors: unreadable"):
        read_export(out)


def test_weights_that_do_not_fit_the_config_are_refused(model_path, tmp_path):
    from safetensors.torch import load_file, save_file

    out = export_run(model_path, tmp_path / "e")
    weights = load_file(str(out / "model.safetensors"))
    dropped = sorted(k for k in weights if k.startswith("g."))[0]
    del weights[dropped]
    save_file(weights, str(out / "model.safetensors"), metadata={"format": EXPORT_FORMAT})
    with pytest.raises(
        ExportError, match=f"does not match its config.json \\(missing \\['{dropped}'\\]"
    ):
        load(out)


def test_a_misfit_lists_five_missing_and_five_unexpected_keys(model_path, tmp_path):
    import ast
    import re

    from safetensors.torch import load_file, save_file

    out = export_run(model_path, tmp_path / "e")
    weights = load_file(str(out / "model.safetensors"))
    moved = sorted(k for k in weights if k.startswith("audio_encoder."))[:7]
    for key in moved:
        weights[f"stray.{key}"] = weights.pop(key)
    save_file(weights, str(out / "model.safetensors"), metadata={"format": EXPORT_FORMAT})
    with pytest.raises(ExportError) as info:
        load(out)
    m = re.search(r"\(missing (\[.*?\]), unexpected (\[.*?\])\)$", str(info.value))
    assert m, str(info.value)
    missing, unexpected = ast.literal_eval(m[1]), ast.literal_eval(m[2])
    assert len(missing) == 5 and set(missing) <= set(moved)
    assert len(unexpected) == 5 and set(unexpected) <= {f"stray.{k}" for k in moved}


def test_an_export_keeps_its_waveform_normalisation_and_loads_onto_the_device(model_path, tmp_path):
    out = export_run(model_path, tmp_path / "e")
    config = json.loads((out / "config.json").read_text())
    for flag in (True, False):
        config["normalize_waveform"] = flag
        config.pop("train_config", None)
        config.pop("metrics", None)
        (out / "config.json").write_text(json.dumps(config))
        model, info = load_export(out, device=torch.device("cpu"))
        assert model.audio_encoder.normalize_waveform is flag
        assert model.audio_encoder.cfg.wavlm == str(out)  # where its WavLM came from
        assert info["train_config"] == {} and info["metrics"] == {}  # older exports lack them
    model, _ = load_export(out, device=torch.device("meta"))
    assert {p.device.type for p in model.parameters()} == {"meta"}
    assert not model.training


def test_inference_state_keeps_the_encoder_and_g_as_separate_tensors():
    base = torch.arange(6.0)
    state = {"audio_encoder.w": base[:3], "g.b": base[3:], "f.x": base, "queue_image": base}
    kept = inference_state(state)
    assert sorted(kept) == ["audio_encoder.w", "g.b"]
    assert kept["g.b"].tolist() == [3.0, 4.0, 5.0]
    kept["g.b"][0] = 99.0
    assert base[3] == 3.0  # a copy, not a view into the shared storage


def test_model_card_reports_the_run_facts():
    config = {
        "step": 12,
        "window_s": 2.0,
        "train_config": {"batch_size": 4, "lr": 0.001},
        "wavlm_config": {"num_hidden_layers": 12, "hidden_size": 768},
        "audio_config": {"freeze_wavlm": False},
        "model_fingerprint": "m" * 64,
        "metrics": {"audio_to_image": {"instance": {"R@1": {"value": 0.25, "chance": 0.5}}}},
    }
    facts = {
        "dataset": "vggsound",
        "data": "train 4 clips (1 shards), val 2 clips",
        "encoder": {"encoder": "brivl"},
        "test_metrics": {
            "n_clips": 6,
            "n_classes": 3,
            "audio_to_image": {"instance": {"R@1": {"value": 0.5, "chance": 1 / 6}}},
            "image_to_audio": {"instance": {"R@1": {"value": 0.0, "chance": 1 / 6}}},
        },
        "benchmark": {"s": "12.5", "max_rss": "800.1"},
    }
    card = model_card(config, {"fingerprint": "abc", "dim": 2048}, facts)
    assert '- fingerprint: `abc`\n- dimension: 2048\n- image encoder: {"encoder": "brivl"}' in card
    assert "- dataset: vggsound\n- clips: train 4 clips (1 shards), val 2 clips" in card
    assert "- steps: 12 (batch size 4, window 2.0 s, lr 0.001)" in card
    assert "- WavLM: 12 layers, hidden size 768, fine-tuned" in card
    assert (
        "- test split (6 clips, 3 classes): R@1 audio->image 0.500 (chance 0.167), "
        "image->audio 0.000 (chance 0.167)"
    ) in card
    assert "- last validation: R@1 audio->image 0.250 (chance 0.500)" in card
    assert "- wall time 12.5 s, peak RSS 800.1 MB" in card
    bare = model_card({**config, "metrics": {}}, {"fingerprint": None, "dim": 8}, {})
    assert "- dataset: not recorded\n- clips: not recorded" in bare
    assert "R@1 audio->image not recorded" in bare and "## Training cost\n\n- not recorded" in bare


# -- generate ----------------------------------------------------------------------------


def test_generate_steers_an_image_per_audio_with_the_workflows_seeds(model_path):
    from wavbrivl.generate.loop import GenerateConfig
    from wavbrivl.generate.stage import clip_seed
    from wavbrivl.vqgan import build_tiny_vqgan

    model = load(model_path)
    encoder = build_tiny(seed=0)
    cfg = GenerateConfig(steps=2, cutouts=2, size=(32, 32), min_cut_size=16)
    results = model.generate(
        [signal(4000, seed=7), signal(4000, seed=8)],
        vqgan=build_tiny_vqgan(seed=0),
        encoder=encoder,
        cfg=cfg,
        names=["dog", "rain"],
        sample_rate=SR,
    )
    assert [r.clip_id for r in results] == ["dog", "rain"]
    assert [r.seed for r in results] == [clip_seed(cfg.seed, "dog"), clip_seed(cfg.seed, "rain")]
    assert all(r.image.size == (32, 32) and len(r.trace) == 2 for r in results)
    # the target is the audio's embedding: the final similarity is the cosine with it
    target = model.embed_audio(signal(4000, seed=7), sample_rate=SR)[0]
    with torch.no_grad():
        image_emb = encoder.encode_images([np.asarray(results[0].image)])[0].numpy()
    assert results[0].final_similarity == pytest.approx(float(image_emb @ target), abs=1e-4)
    with pytest.raises(ValueError, match="1 names for 2 audio inputs"):
        model.generate(
            [signal(4000), signal(4000)],
            vqgan=build_tiny_vqgan(),
            encoder=encoder,
            cfg=cfg,
            names=["x"],
            sample_rate=SR,
        )


def test_generate_refuses_an_encoder_of_another_space(model_path):
    from wavbrivl.vqgan import build_tiny_vqgan

    other = build_tiny(seed=1)
    with pytest.raises(ImageSpaceMismatch, match=f"{other.fingerprint}.*{SPACE}"):
        load(model_path).generate(
            signal(4000), vqgan=build_tiny_vqgan(), encoder=other, sample_rate=SR
        )


def test_generate_hands_the_loop_default_names_the_device_and_the_log(model_path, monkeypatch):
    import wavbrivl.generate.loop as loop
    from wavbrivl.generate.stage import clip_seed

    seen = {}

    def spy(vqgan, encoder, targets, cfg, **kwargs):
        seen.update(kwargs, targets=targets, cfg=cfg)
        return ["done"]

    monkeypatch.setattr(loop, "generate", spy)
    model = load(model_path)
    model.device = "cpu:0"  # what the model was loaded onto, handed on as it is

    def log(line):
        return None

    out = model.generate(
        [signal(4000, seed=7), signal(4000, seed=8)],
        vqgan=None,
        encoder=build_tiny(seed=0),
        sample_rate=SR,
        log=log,
    )
    assert out == ["done"]
    assert seen["clip_ids"] == ["audio0", "audio1"]
    cfg = seen["cfg"]
    assert cfg == loop.GenerateConfig()
    assert seen["seeds"] == [clip_seed(cfg.seed, "audio0"), clip_seed(cfg.seed, "audio1")]
    assert seen["device"] == "cpu:0" and seen["log"] is log
    assert seen["targets"].shape == (2, 128)


class NamelessEncoder:
    """An image encoder without ``name`` or ``fingerprint`` attributes."""


def test_generate_names_a_nameless_encoder_of_unknown_space_by_its_class(model_path):
    with pytest.raises(ImageSpaceMismatch) as info:
        load(model_path).generate(
            signal(4000), vqgan=None, encoder=NamelessEncoder(), sample_rate=SR
        )
    assert str(info.value).startswith(
        f"NamelessEncoder: an image encoder of image space (none), but the model was trained "
        f"in image space {SPACE}"
    )
    other = build_tiny(seed=1)
    with pytest.raises(ImageSpaceMismatch) as info:
        load(model_path).generate(signal(4000), vqgan=None, encoder=other, sample_rate=SR)
    assert str(info.value).startswith(f"{other.name}: an image encoder of image space")


def test_run_facts_come_from_the_workflow_files_beside_the_model(tmp_path):
    from wavbrivl.export import run_facts

    run_dir = tmp_path / "results" / "models" / "r1"
    run_dir.mkdir(parents=True)
    artefact = run_dir / "audio_encoder.pt"
    assert run_facts(artefact) == {}
    (run_dir / "recipe.json").write_text(
        json.dumps({"settings": {"train": {"dataset": "vggsound"}, "encoder": {"encoder": "tiny"}}})
    )
    log = tmp_path / "logs" / "train_audio_encoder" / "r1.log"
    log.parent.mkdir(parents=True)
    log.write_text(
        "device cpu; train 9 clips\ndata: train 4 clips (1 shards), val 2 clips\nstep 1/6\n"
    )
    metrics = tmp_path / "results" / "eval" / "r1" / "metrics.json"
    metrics.parent.mkdir(parents=True)
    metrics.write_text(json.dumps({"n_clips": 6}))
    bench = tmp_path / "benchmarks" / "train_audio_encoder" / "r1.tsv"
    bench.parent.mkdir(parents=True)
    bench.write_text("s\tmax_rss\n10.5\t700\n12.5\t800.1\n")
    assert run_facts(artefact) == {
        "dataset": "vggsound",
        "encoder": {"encoder": "tiny"},
        "data": "train 4 clips (1 shards), val 2 clips",
        "test_metrics": {"n_clips": 6},
        "benchmark": {"s": "12.5", "max_rss": "800.1"},
    }
    assert run_facts(Path("/audio_encoder.pt")) == {}


def test_an_exports_info_matches_the_runs(model_path, tmp_path):
    out = export_run(model_path, tmp_path / "e")
    run, exported = load(model_path).info, load(out).info
    assert exported["source"] == str(out) and exported["format"] == EXPORT_FORMAT
    for key in (
        "step",
        "window_s",
        "sample_rate",
        "image_space",
        "model_fingerprint",
        "moco_config",
        "train_config",
        "metrics",
    ):
        assert exported[key] == run[key], key
    assert exported["train_config"] == {"window_s": WINDOW_S, "batch_size": 3, "lr": 0.01}
    assert exported["audio_config"] == {
        **run["audio_config"],
        "wavlm": "(in this file: wavlm_config)",
    }


def test_export_records_its_source_and_cleans_up_after_a_failure(model_path, tmp_path, monkeypatch):
    import wavbrivl.export as export

    out = export_run(model_path, tmp_path / "a" / "b" / "e")  # missing parents are made
    config = json.loads((out / "config.json").read_text())
    assert config["exported_from"] == "audio_encoder.pt" and config["metrics"] == {}
    assert config["model_fingerprint"] == load(model_path).info["model_fingerprint"]

    def broken(*_args):
        raise RuntimeError("card failed")

    monkeypatch.setattr(export, "model_card", broken)
    with pytest.raises(RuntimeError, match="card failed"):
        export_run(model_path, tmp_path / "f")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]  # no half folder, no temp
