"""Class agreement (generate/agreement.py) against hand-worked and brute-force answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wavbrivl.generate.agreement import AgreementResult, class_agreement, class_centroids


def _brute_force(gen, gen_labels, real, real_labels):
    """Nearest centroid by plain Python loops (independent of the module's numpy path)."""

    def unit(v):
        n = math.sqrt(sum(x * x for x in v))
        return [x / n for x in v]

    real_u = [unit(list(r)) for r in real]
    classes = sorted(set(real_labels))
    cents = {}
    for c in classes:
        rows = [r for r, lab in zip(real_u, real_labels, strict=True) if lab == c]
        mean = [sum(col) / len(rows) for col in zip(*rows, strict=True)]
        cents[c] = unit(mean)
    hits = 0
    for g, lab in zip(gen, gen_labels, strict=True):
        gu = unit(list(g))
        best = max(classes, key=lambda c: sum(a * b for a, b in zip(gu, cents[c], strict=True)))
        hits += best == lab
    return hits / len(gen), 1 / len(classes)


def test_hand_worked_three_classes():
    # Real frames: class a along x, b along y, c along z (two frames each, unequal lengths).
    real = np.array([[2, 0, 0], [1, 0.1, 0], [0, 3, 0], [0, 1, 0.1], [0, 0, 5], [0.1, 0, 1]])
    real_labels = ["a", "a", "b", "b", "c", "c"]
    # Generated: a->x (hit), b->x (miss: looks like a), c->z (hit), a->y (miss).
    gen = np.array([[10, 1, 0], [1, 0.2, 0], [0, 0.1, 7], [0.1, 4, 0]])
    gen_labels = ["a", "b", "c", "a"]
    res = class_agreement(gen, gen_labels, real, real_labels)
    assert isinstance(res, AgreementResult)
    assert res.share == pytest.approx(0.5)
    assert res.chance == pytest.approx(1 / 3)
    assert res.n == 4
    assert res.predicted == ("a", "a", "c", "b")
    assert res.per_class == {
        "a": {"n": 2, "share": 0.5},
        "b": {"n": 1, "share": 0.0},
        "c": {"n": 1, "share": 1.0},
    }


def test_normalisation_matters_for_centroid():
    # Without L2-normalising real frames, the long 'a' frame would pull its centroid; with
    # normalisation the centroid of a is the bisector of x and y (45 degrees), so a generated
    # image at 40 degrees from x is nearer a than b (b sits at 80 degrees).
    def ang(deg, length=1.0):
        r = math.radians(deg)
        return [length * math.cos(r), length * math.sin(r)]

    real = np.array([ang(0, 100.0), ang(90, 0.01), ang(80, 1.0)])
    real_labels = ["a", "a", "b"]
    gen = np.array([ang(40, 3.0), ang(70, 0.5)])
    res = class_agreement(gen, ["a", "b"], real, real_labels)
    # 70 degrees: 25 from a's centroid (45), 10 from b's (80) -> b; 40: 5 from a -> a.
    assert res.predicted == ("a", "b")
    assert res.share == 1.0
    assert res.chance == 0.5


def test_gen_scale_does_not_matter():
    real = np.array([[1.0, 0.0], [0.0, 1.0]])
    gen = np.array([[1e-6, 0.0], [0.0, 1e6]])
    res = class_agreement(gen, [0, 1], real, [0, 1])
    assert res.share == 1.0
    assert res.predicted == ("0", "1")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    n_classes, dim = 5, 7
    real_labels = [f"k{i % n_classes}" for i in range(23)]
    real = (
        rng.normal(size=(23, dim)) + np.eye(n_classes, dim)[[i % n_classes for i in range(23)]] * 2
    )
    gen_labels = [f"k{int(x)}" for x in rng.integers(0, n_classes, size=40)]
    gen = (
        rng.normal(size=(40, dim)) + 1.5 * np.eye(n_classes, dim)[[int(s[1:]) for s in gen_labels]]
    )
    want_share, want_chance = _brute_force(gen, gen_labels, real, real_labels)
    res = class_agreement(gen, gen_labels, real, real_labels)
    assert res.share == pytest.approx(want_share)
    assert res.chance == pytest.approx(want_chance)
    assert res.n == 40
    assert 0 < res.share < 1  # the case is neither trivially all right nor all wrong


def test_class_without_real_frames_never_agrees():
    real = np.array([[1.0, 0.0], [0.0, 1.0]])
    res = class_agreement(np.array([[1.0, 0.0], [1.0, 0.0]]), ["a", "z"], real, ["a", "b"])
    assert res.share == 0.5
    assert res.chance == 0.5
    assert res.per_class["z"] == {"n": 1, "share": 0.0}


def test_chance_counts_classes_with_centroid_not_generated_ones():
    real = np.eye(4)
    res = class_agreement(np.array([[1.0, 0, 0, 0]]), ["a"], real, ["a", "b", "c", "d"])
    assert res.chance == 0.25
    assert res.n == 1


def test_centroids_sorted_and_unit():
    classes, cents = class_centroids(np.array([[0, 2.0], [3.0, 0], [0, 0.5]]), ["y", "x", "y"])
    assert classes == ["x", "y"]
    np.testing.assert_allclose(cents, [[1.0, 0.0], [0.0, 1.0]])


def test_opposite_real_frames_give_zero_centroid_not_nan():
    classes, cents = class_centroids(np.array([[1.0, 0], [-1.0, 0], [0, 1.0]]), ["a", "a", "b"])
    assert np.all(np.isfinite(cents))
    np.testing.assert_allclose(cents[0], [0.0, 0.0])


@pytest.mark.parametrize(
    "gen, gen_labels, real, real_labels, match",
    [
        (
            np.zeros((1, 2)),
            ["a"],
            np.eye(2),
            ["a", "b"],
            "generated-image embeddings holds an all-zero",
        ),
        (np.eye(2), ["a"], np.eye(2), ["a", "b"], "2 generated-image embeddings but 1 labels"),
        (np.eye(2), ["a", "b"], np.eye(2), ["a"], "2 real-frame embeddings but 1 labels"),
        (np.ones(2), ["a"], np.eye(2), ["a", "b"], r"\(N, D\) array, got shape \(2,\)"),
        (
            np.eye(3),
            ["a", "b", "c"],
            np.eye(2),
            ["a", "b"],
            "3-d but real-frame embeddings are 2-d",
        ),
        (np.zeros((0, 2)), [], np.eye(2), ["a", "b"], "^no generated-image embeddings to score$"),
        (
            np.eye(2),
            ["a", "b"],
            np.zeros((0, 2)),
            [],
            "^no real-frame embeddings: class agreement needs a centroid per class$",
        ),
        (np.array([[np.nan, 1.0]]), ["a"], np.eye(2), ["a", "b"], "non-finite"),
        (
            np.eye(2),
            ["a", "b"],
            np.array([[1.0, 0], [0, 0]]),
            ["a", "b"],
            r"real-frame embeddings holds an all-zero embedding \(row 1\)",
        ),
    ],
)
def test_bad_input_is_named(gen, gen_labels, real, real_labels, match):
    with pytest.raises(ValueError, match=match):
        class_agreement(gen, gen_labels, real, real_labels)


def test_half_precision_input_is_computed_in_double():
    # float16 squares of 1000 overflow (max 65504): a norm taken in half precision would be
    # inf and every row would collapse to zero.
    real = (np.array([[1.0, 0.0], [0.0, 1.0]]) * 1000).astype(np.float16)
    gen = (np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]]) * 1000).astype(np.float16)
    res = class_agreement(gen, ["a", "b", "a"], real, ["a", "b"])
    assert res.predicted == ("a", "b", "b")
    assert res.share == pytest.approx(2 / 3)
