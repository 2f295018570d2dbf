"""Zero-shot classification: known answers (text embeddings set to class centroids, counted by
brute force), top-5 by hand, template averaging, the chance verdict, and bad inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wavbrivl.benchmark.zeroshot import (
    DEFAULT_TEMPLATES,
    chance_verdict,
    class_prompts,
    class_text_embeddings,
    confusion_matrix,
    cosine_scores,
    evaluate_zeroshot,
    mean_std,
    per_class_accuracy,
    prompt_name,
    templates_for,
    true_class_rank,
)

CLASSES = ["dog", "rain", "church_bells", "sea_waves"]


def unit(v):
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def cos(a, b):
    return sum(x * y for x, y in zip(unit(a), unit(b), strict=True))


def clustered(seed: int, n: int = 80, dim: int = 6):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASSES), n)
    centres = rng.normal(size=(len(CLASSES), dim))
    emb = centres[labels] + 1.3 * rng.normal(size=(n, dim))
    folds = rng.integers(1, 4, n)
    return emb, labels, folds


class LookupText:
    """encode_text by table: prompt text -> vector, recording every call."""

    def __init__(self, table):
        self.table = table
        self.calls = []

    def __call__(self, prompts):
        self.calls.append(list(prompts))
        return np.array([self.table[p] for p in prompts])


def centroids(emb, labels):
    return {k: [float(x) for x in emb[labels == k].mean(axis=0)] for k in range(len(CLASSES))}


def test_text_set_to_class_centroids_gives_the_brute_force_nearest_centroid_accuracy():
    emb, labels, folds = clustered(1)
    cents = centroids(emb, labels)
    text = LookupText({f"{prompt_name(c)}": cents[k] for k, c in enumerate(CLASSES)})
    result = evaluate_zeroshot(emb, labels, folds, CLASSES, text, templates=["{}"])
    per_fold = {}
    totals = [0, 0]
    for i in range(len(labels)):
        sims = [cos(list(emb[i]), cents[k]) for k in range(len(CLASSES))]
        best = max(range(len(CLASSES)), key=lambda k: sims[k])
        hit = int(best == labels[i])
        n, c = per_fold.get(int(folds[i]), (0, 0))
        per_fold[int(folds[i])] = (n + 1, c + hit)
        totals[0] += 1
        totals[1] += hit
    expected = [
        {"fold": f, "n_clips": n, "top1": c / n, "top5": 1.0}
        for f, (n, c) in sorted(per_fold.items())
    ]
    assert result["per_fold"] == expected
    accs = [c / n for n, c in per_fold.values()]
    mean = sum(accs) / len(accs)
    std = math.sqrt(sum((a - mean) ** 2 for a in accs) / len(accs))
    assert result["top1"] == pytest.approx({"mean": mean, "std": std})
    assert result["top5"] == {"mean": 1.0, "std": 0.0}
    assert 0.5 < mean < 1.0  # the clusters overlap: neither trivial nor perfect
    assert result["chance_verdict"]["at_chance"] is False
    assert text.calls == [["dog", "rain", "church bells", "sea waves"]]


def test_templates_are_averaged_as_unit_vectors_and_renormalised():
    rng = np.random.default_rng(5)
    base = {c: list(rng.normal(size=3)) for c in CLASSES}
    offset = {"A {}": [3.0, 0.0, 0.0], "{} B": [0.0, 0.0, -2.0]}
    table = {}
    for template, off in offset.items():
        for c in CLASSES:
            table[template.replace("{}", prompt_name(c))] = [
                b + o for b, o in zip(base[c], off, strict=True)
            ]
    got = class_text_embeddings(CLASSES, list(offset), LookupText(table))
    for k, c in enumerate(CLASSES):
        parts = [
            unit([b + o for b, o in zip(base[c], off, strict=True)]) for off in offset.values()
        ]
        mean = [(x + y) / 2 for x, y in zip(*parts, strict=True)]
        assert got[k] == pytest.approx(unit(mean))


def test_top5_and_ties_by_hand():
    text = {f"x {prompt_name(c)}": list(np.eye(7)[k]) for k, c in enumerate("abcdefg")}
    audio = np.array(
        [
            [0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1],  # class 0, first: top-1
            [0.7, 0.5, 0.6, 0.1, 0.1, 0.1, 0.1],  # class 1, third: top-5 only
            [0.6, 0.5, 0.3, 0.4, 0.45, 0.35, 0.1],  # class 2, sixth: neither
            [0.2, 0.2, 0.2, 0.5, 0.5, 0.1, 0.1],  # class 3, tied with 4: counted second
        ]
    )
    labels = np.array([0, 1, 2, 3])
    folds = np.array([1, 1, 2, 2])
    result = evaluate_zeroshot(
        audio, labels, folds, list("abcdefg"), LookupText(text), templates=["x {}"]
    )
    assert result["per_fold"] == [
        {"fold": 1, "n_clips": 2, "top1": 0.5, "top5": 1.0},
        {"fold": 2, "n_clips": 2, "top1": 0.0, "top5": 0.5},
    ]
    assert result["top1"] == {"mean": 0.25, "std": 0.25}
    assert result["top5"] == {"mean": 0.75, "std": 0.25}
    assert result["chance"] == {"top1": 1 / 7, "top5": 5 / 7}
    assert result["folds"] == [1, 2]
    assert (result["n_clips"], result["n_classes"]) == (4, 7)
    assert result["classes"] == list("abcdefg")
    assert [row["accuracy"] for row in result["per_class"]] == [
        1.0,
        0.0,
        0.0,
        0.0,
        None,
        None,
        None,
    ]
    assert [row["n_clips"] for row in result["per_class"]] == [1, 1, 1, 1, 0, 0, 0]
    matrix = np.zeros((7, 7), dtype=int)
    matrix[0, 0] = matrix[1, 0] = matrix[2, 0] = 1
    matrix[3, 3] = 1  # argmax picks the first of the tied classes
    assert result["confusion"] == matrix.tolist()


def test_ranks_count_ties_against_the_clip():
    scores = np.array([[0.5, 0.5, 0.1], [0.2, 0.9, 0.2], [0.3, 0.3, 0.3], [0.1, 0.2, 0.3]])
    assert true_class_rank(scores, np.array([0, 1, 2, 0])).tolist() == [1, 0, 2, 2]


def test_constant_embeddings_are_never_counted_correct():
    audio = np.ones((6, 3))
    text = LookupText({c: [1.0, 1.0, 1.0] for c in "abc"})
    result = evaluate_zeroshot(
        audio, np.array([0, 1, 2, 0, 1, 2]), np.ones(6, int), list("abc"), text, templates=["{}"]
    )
    assert result["top1"]["mean"] == 0.0
    assert result["chance_verdict"]["at_chance"] is True


def test_protocol_records_every_template_and_prompt():
    emb, labels, folds = clustered(2, n=12)
    table = {}
    for t in DEFAULT_TEMPLATES["en"]:
        for k, c in enumerate(CLASSES):
            table[t.replace("{}", prompt_name(c))] = list(np.eye(6)[k] + 0.1)
    result = evaluate_zeroshot(emb, labels, folds, CLASSES, LookupText(table))
    protocol = result["protocol"]
    assert protocol["name"] == "zeroshot"
    assert protocol["language"] == "en"
    assert protocol["templates"] == list(DEFAULT_TEMPLATES["en"])
    assert protocol["prompts"][0] == [
        "the sound of dog.",
        "the sound of rain.",
        "the sound of church bells.",
        "the sound of sea waves.",
    ]
    assert len(protocol["prompts"]) == len(DEFAULT_TEMPLATES["en"])
    assert protocol == {
        "name": "zeroshot",
        "language": "en",
        "templates": list(DEFAULT_TEMPLATES["en"]),
        "prompts": class_prompts(CLASSES, DEFAULT_TEMPLATES["en"]),
        "text_embedding": "mean over templates of unit text embeddings, renormalised",
        "score": "cosine of the audio embedding to each class's text embedding",
        "ties": "a class scoring equal to the true class counts above it",
        "std": "population standard deviation over folds (ddof=0)",
        "chance_test": "one-sided exact binomial test of top-1 against 1/K, alpha 0.01",
    }
    zh = evaluate_zeroshot(emb, labels, folds, CLASSES, lambda p: np.eye(4, 6) + 0.1, language="zh")
    assert zh["protocol"]["language"] == "zh"
    assert zh["protocol"]["templates"] == list(DEFAULT_TEMPLATES["zh"])


def test_scores_are_float64_and_the_confusion_holds_integers():
    text = class_text_embeddings(["a", "b"], ["{}"], lambda p: np.eye(2, dtype=np.float32) + 0.3)
    assert text.dtype == np.float64
    scores = cosine_scores(np.ones((2, 2), dtype=np.float32), text.astype(np.float32))
    assert scores.dtype == np.float64
    result = evaluate_zeroshot(
        np.eye(2, dtype=np.float32),
        np.array([0, 1]),
        np.array([1, 1]),
        ["a", "b"],
        lambda p: np.eye(2, dtype=np.float32),
        templates=["{}"],
    )
    assert result["confusion"] == [[1, 0], [0, 1]]
    assert all(type(v) is int for row in result["confusion"] for v in row)
    assert confusion_matrix(np.array([0]), np.array([0]), 1).dtype == np.int64


def test_default_templates_per_language():
    assert templates_for("en") == list(DEFAULT_TEMPLATES["en"])
    assert templates_for("zh") == list(DEFAULT_TEMPLATES["zh"])
    assert len(DEFAULT_TEMPLATES["en"]) >= 3 and len(DEFAULT_TEMPLATES["zh"]) >= 3
    assert class_prompts(["狗"], templates_for("zh"))[0] == ["狗的声音"]
    assert templates_for("zh", ["{}!"]) == ["{}!"]
    with pytest.raises(ValueError) as info:
        templates_for("fr")
    assert (
        str(info.value)
        == "no default prompt templates for language 'fr' (known: en, zh); give templates"
    )


@pytest.mark.parametrize("bad", ["no slot", "{} and {}"])
def test_a_template_needs_exactly_one_slot(bad):
    with pytest.raises(ValueError) as info:
        templates_for("en", ["ok {}", bad])
    assert str(info.value) == f"prompt template {bad!r} must hold '{{}}' exactly once"


def test_no_templates_is_an_error():
    with pytest.raises(ValueError) as info:
        templates_for("en", [])
    assert str(info.value) == "no prompt templates given"


def test_prompts_replace_the_slot_literally():
    assert prompt_name("  crying__baby ") == "crying baby"
    assert class_prompts(["a_b", "{x}"], ["the {} sound", "{}"]) == [
        ["the a b sound", "the {x} sound"],
        ["a b", "{x}"],
    ]


def test_cosine_scores_by_hand():
    audio = np.array([[3.0, 4.0], [0.0, 2.0]])
    text = np.array([[1.0, 0.0], [0.0, 5.0], [1.0, 1.0]])
    expected = [[0.6, 0.8, 7 / 5 / math.sqrt(2)], [0.0, 1.0, 1 / math.sqrt(2)]]
    assert cosine_scores(audio, text) == pytest.approx(np.array(expected))


def test_cosine_scores_are_computed_in_double_precision():
    audio = np.array([[1.0, 3.0], [2.0, 7.0]], dtype=np.float32)
    text = np.array([[3.0, 1.0], [1.0, 1.0], [5.0, 9.0]], dtype=np.float32)
    expected = [
        [cos([1, 3], t) for t in ([3, 1], [1, 1], [5, 9])],
        [cos([2, 7], t) for t in ([3, 1], [1, 1], [5, 9])],
    ]
    got = cosine_scores(audio, text)
    np.testing.assert_allclose(got, np.array(expected), rtol=1e-13, atol=0)
    np.testing.assert_allclose(
        cosine_scores(audio, text.astype(np.float64)), expected, rtol=1e-13, atol=0
    )
    np.testing.assert_allclose(
        cosine_scores(audio.astype(np.float64), text), expected, rtol=1e-13, atol=0
    )


def test_templates_that_cancel_out_are_named():
    table = {"A x": [1.0, 2.0], "B x": [-1.0, -2.0]}
    with pytest.raises(ValueError) as info:
        class_text_embeddings(["x"], ["A {}", "B {}"], LookupText(table))
    assert str(info.value) == "mean text embedding: row 0 is all zeros"


def test_zero_vectors_are_named():
    with pytest.raises(ValueError) as info:
        cosine_scores(np.eye(2), np.array([[0.0, 0.0], [1.0, 0.0]]))
    assert str(info.value) == "class embedding: row 0 is all zeros"
    with pytest.raises(ValueError) as info:
        cosine_scores(np.array([[1.0, 0.0], [0.0, 0.0]]), np.eye(2))
    assert str(info.value) == "audio embedding: row 1 is all zeros"
    text = LookupText({"a": [1.0, 0.0], "b": [0.0, 0.0]})
    with pytest.raises(ValueError) as info:
        class_text_embeddings(["a", "b"], ["{}"], text)
    assert str(info.value) == "text embedding of template '{}': row 1 is all zeros"


def test_text_side_of_the_wrong_shape_or_space_is_refused():
    emb, labels, folds = clustered(3, n=10)
    short = LookupText({c: [1.0] * 6 for c in ["dog", "rain", "church bells"]})
    with pytest.raises(ValueError) as info:
        class_text_embeddings(["dog", "rain", "church_bells", "x"], ["{}"], lambda p: short(p[:3]))
    assert str(info.value) == "encode_text returned shape (3, 6) for 4 prompts of template '{}'"
    with pytest.raises(ValueError) as info:
        class_text_embeddings(["dog"], ["{}"], lambda p: np.ones(6))
    assert str(info.value) == "encode_text returned shape (6,) for 1 prompts of template '{}'"
    wide = LookupText({prompt_name(c): [1.0] * 5 + [float(k)] * 3 for k, c in enumerate(CLASSES)})
    with pytest.raises(ValueError) as info:
        evaluate_zeroshot(emb, labels, folds, CLASSES, wide, templates=["{}"])
    assert str(info.value) == "audio embeddings are 6-d, text embeddings 8-d: not the same space"


@pytest.mark.parametrize(
    ("labels", "folds", "message"),
    [
        ([0, 1], [1, 1, 1], "3 embeddings, but labels of shape (2,) and folds of shape (3,)"),
        ([0, 1, 2], [1, 1], "3 embeddings, but labels of shape (3,) and folds of shape (2,)"),
        ([0, 1, 4], [1, 1, 1], "labels must be integers in 0..3"),
        ([0, -1, 2], [1, 1, 1], "labels must be integers in 0..3"),
        ([0.0, 1.0, 2.0], [1, 1, 1], "labels must be integers in 0..3"),
    ],
)
def test_inputs_that_disagree_are_refused(labels, folds, message):
    text = LookupText({prompt_name(c): [1.0, float(k)] for k, c in enumerate(CLASSES)})
    with pytest.raises(ValueError) as info:
        evaluate_zeroshot(
            np.ones((3, 2)), np.array(labels), np.array(folds), CLASSES, text, templates=["{}"]
        )
    assert str(info.value) == message


def test_empty_or_flat_embeddings_are_refused():
    text = LookupText({prompt_name(c): [1.0, float(k)] for k, c in enumerate(CLASSES)})
    for emb in (np.ones((0, 2)), np.ones(3)):
        with pytest.raises(ValueError) as info:
            evaluate_zeroshot(
                emb,
                np.zeros(len(emb), int),
                np.ones(len(emb), int),
                CLASSES,
                text,
                templates=["{}"],
            )
        assert (
            str(info.value) == f"embeddings must be a non-empty (N, D) array, got shape {emb.shape}"
        )


def binomial_tail(k, n, p):
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))


def test_chance_verdict_is_an_exact_binomial_test():
    at = chance_verdict(13, 50, 5)  # 26 % against 20 %
    p = binomial_tail(13, 50, 0.2)
    assert at["p_value"] == pytest.approx(p)
    assert at["at_chance"] is True
    assert at["alpha"] == 0.01
    assert at["line"] == (
        f"zero-shot top-1 26.0% is at chance level (1/5 = 20.0%; binomial p = {p:.3g} >= 0.01): "
        "the text side does not tell these classes apart (a random text tower, as in the demo, "
        "gives this)"
    )
    above = chance_verdict(30, 50, 5)
    q = binomial_tail(30, 50, 0.2)
    assert above["p_value"] == pytest.approx(q)
    assert above["at_chance"] is False
    assert (
        above["line"]
        == f"zero-shot top-1 60.0% is above chance (1/5 = 20.0%; binomial p = {q:.3g} < 0.01)"
    )


def test_chance_verdict_at_the_threshold():
    # n=4, K=2: P(X >= 4) = 1/16 = 0.0625; with alpha 0.0625 that is "at chance" (p >= alpha)
    assert chance_verdict(4, 4, 2, alpha=0.0625)["at_chance"] is True
    assert chance_verdict(4, 4, 2, alpha=0.07)["at_chance"] is False


def test_helpers_by_hand():
    assert mean_std([0.5, 1.0, 0.0]) == pytest.approx({"mean": 0.5, "std": math.sqrt(1 / 6)})
    assert confusion_matrix(np.array([0, 0, 1, 2]), np.array([1, 1, 1, 0]), 3).tolist() == [
        [0, 2, 0],
        [0, 1, 0],
        [1, 0, 0],
    ]
    assert per_class_accuracy(
        np.array([1, 1, 0, 1]), np.array([True, False, False, True]), ["a", "b", "c"]
    ) == [
        {"class_index": 0, "class_name": "a", "n_clips": 1, "accuracy": 0.0},
        {"class_index": 1, "class_name": "b", "n_clips": 3, "accuracy": pytest.approx(2 / 3)},
        {"class_index": 2, "class_name": "c", "n_clips": 0, "accuracy": None},
    ]
