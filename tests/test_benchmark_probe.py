"""Linear probe over the official folds: separable embeddings far above chance, noise at
chance, no clip in its own training data, standardisation and C chosen on training folds only."""

from __future__ import annotations

import numpy as np
import pytest

from wavbrivl.benchmark import linear_probe
from wavbrivl.benchmark.linear_probe import (
    DEFAULT_C_GRID,
    FoldLeakError,
    check_no_leakage,
    choose_c,
    class_scores,
    evaluate_linear_probe,
    fit_probe,
    validation_fold,
)

CLASSES = ["a", "b", "c", "d"]


def dataset(seed: int, *, separable: bool, per_cell: int = 10, n_folds: int = 5, dim: int = 8):
    rng = np.random.default_rng(seed)
    labels = np.tile(np.repeat(np.arange(len(CLASSES)), per_cell), n_folds)
    folds = np.repeat(np.arange(1, n_folds + 1), len(CLASSES) * per_cell)
    noise = rng.normal(size=(len(labels), dim))
    if separable:
        centres = 4.0 * rng.normal(size=(len(CLASSES), dim))
        emb = centres[labels] + noise
    else:
        emb = noise
    ids = [f"clip{i}" for i in range(len(labels))]
    return emb, labels, folds, ids


def test_separable_embeddings_are_far_above_chance():
    emb, labels, folds, ids = dataset(0, separable=True)
    result = evaluate_linear_probe(emb, labels, folds, CLASSES, ids, c_grid=(0.01, 1.0))
    assert result["top1"]["mean"] > 0.95
    assert result["chance"] == {"top1": 0.25, "top5": 1.0}
    assert result["protocol"]["seed"] == 0  # the default seed
    assert result["top5"] == {"mean": 1.0, "std": 0.0}
    assert [row["fold"] for row in result["per_fold"]] == [1, 2, 3, 4, 5]
    assert result["folds"] == [1, 2, 3, 4, 5]
    assert [(row["n_train"], row["n_test"]) for row in result["per_fold"]] == [(160, 40)] * 5
    assert [row["validation_fold"] for row in result["per_fold"]] == [2, 3, 4, 5, 1]
    assert (result["n_clips"], result["n_classes"], result["classes"]) == (200, 4, CLASSES)
    assert [row["n_clips"] for row in result["per_class"]] == [50] * 4
    assert all(row["accuracy"] > 0.9 for row in result["per_class"])
    matrix = np.array(result["confusion"])
    assert matrix.sum() == 200 and matrix.sum(axis=1).tolist() == [50] * 4
    assert np.trace(matrix) == round(result["top1"]["mean"] * 200)


def test_pure_noise_is_at_chance():
    emb, labels, folds, ids = dataset(1, separable=False, per_cell=25)
    result = evaluate_linear_probe(emb, labels, folds, CLASSES, ids)
    assert abs(result["top1"]["mean"] - 0.25) < 0.08
    per_fold = [row["top1"] for row in result["per_fold"]]
    assert result["top1"]["mean"] == pytest.approx(np.mean(per_fold))
    assert result["top1"]["std"] == pytest.approx(np.std(per_fold))


def test_protocol_is_recorded():
    emb, labels, folds, ids = dataset(2, separable=True, per_cell=3, n_folds=3)
    result = evaluate_linear_probe(emb, labels, folds, CLASSES, ids, c_grid=(10, 0.1, 1), seed=7)
    protocol = result["protocol"]
    assert protocol == {
        "name": "linear_probe",
        "model": "sklearn LogisticRegression (lbfgs, max_iter 1000)",
        "standardise": "StandardScaler fit on the training data of each fit only",
        "c_grid": [0.1, 1.0, 10.0],
        "c_choice": "best validation top-1 on the inner split, the smallest C among equals",
        "inner_split": "the training fold after the test fold (cyclically) is held out",
        "seed": 7,
        "ties": "a class scoring equal to the true class counts above it",
        "std": "population standard deviation over folds (ddof=0)",
    }
    for row in result["per_fold"]:
        assert [t["C"] for t in row["c_search"]] == [0.1, 1.0, 10.0]
        best = max(t["val_top1"] for t in row["c_search"])
        assert row["C"] == min(t["C"] for t in row["c_search"] if t["val_top1"] == best)
    assert DEFAULT_C_GRID == (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)


def test_standardisation_and_c_are_fit_on_training_folds_only(monkeypatch):
    emb, labels, folds, ids = dataset(3, separable=True, per_cell=2, n_folds=4)
    fits = []
    real = linear_probe.fit_probe

    def spy(x, y, c, seed):
        fits.append((x.copy(), y.copy(), c, seed))
        return real(x, y, c, seed)

    monkeypatch.setattr(linear_probe, "fit_probe", spy)
    evaluate_linear_probe(emb, labels, folds, CLASSES, ids, c_grid=(0.1, 1.0), seed=3)

    def rows(*fold_values):
        return np.isin(folds, fold_values)

    # test fold -> (validation fold, inner training folds, training folds), worked out by hand
    plan = {
        1: (2, (3, 4), (2, 3, 4)),
        2: (3, (1, 4), (1, 3, 4)),
        3: (4, (1, 2), (1, 2, 4)),
        4: (1, (2, 3), (1, 2, 3)),
    }
    expected = []
    for _, (_, inner, train) in plan.items():
        expected += [(rows(*inner), 0.1), (rows(*inner), 1.0), (rows(*train), None)]
    assert len(fits) == len(expected)
    for (x, y, c, seed), (mask, want_c) in zip(fits, expected, strict=True):
        np.testing.assert_array_equal(x, emb[mask])
        np.testing.assert_array_equal(y, labels[mask])
        assert seed == 3
        if want_c is not None:
            assert c == want_c


def test_a_clip_in_two_folds_is_caught():
    emb, labels, folds, ids = dataset(4, separable=True, per_cell=2, n_folds=3)
    ids[0] = ids[-1]  # the same file listed in fold 1 and fold 3
    with pytest.raises(FoldLeakError) as info:
        evaluate_linear_probe(emb, labels, folds, CLASSES, ids)
    assert str(info.value) == f"test clips in their own training data (folds []): ['{ids[0]}']"


def test_leakage_check_by_position_by_id_and_by_fold():
    folds = np.array([1, 1, 2, 2, 3])
    ids = ["a", "b", "c", "d", "e"]
    check_no_leakage(np.array([2, 3, 4]), np.array([0, 1]), folds, ids)  # fine
    with pytest.raises(FoldLeakError) as info:
        check_no_leakage(np.array([1, 2, 3]), np.array([0, 1]), folds, ids)
    assert str(info.value) == "test clips in their own training data (folds [1]): ['b']"
    with pytest.raises(FoldLeakError) as info:
        check_no_leakage(np.array([0, 2]), np.array([1, 3]), folds, ids)
    assert str(info.value) == "test clips in their own training data (folds [1, 2]): []"
    with pytest.raises(FoldLeakError) as info:
        check_no_leakage(np.array([2, 3]), np.array([0, 1]), folds, ["a", "b", "c", "a", "e"])
    assert str(info.value) == "test clips in their own training data (folds []): ['a']"
    assert issubclass(FoldLeakError, AssertionError)


def test_at_most_five_shared_clips_are_named_in_order():
    folds = np.array([1] * 7 + [2] * 7)
    ids = [f"c{i}" for i in (6, 5, 4, 3, 2, 1, 0)] * 2
    with pytest.raises(FoldLeakError) as info:
        check_no_leakage(np.arange(7), np.arange(7, 14), folds, ids)
    assert str(info.value) == (
        "test clips in their own training data (folds []): ['c0', 'c1', 'c2', 'c3', 'c4']"
    )


def test_validation_fold_is_the_next_one_cyclically():
    assert [validation_fold(f, [3, 1, 2]) for f in (1, 2, 3)] == [2, 3, 1]
    assert validation_fold(10, list(range(1, 11))) == 1


def test_c_is_the_best_on_validation_and_the_smallest_among_equals(monkeypatch):
    x = np.arange(12, dtype=float).reshape(6, 2)
    y = np.array([0, 1, 0, 1, 0, 1])
    right = {0.5, 2.0}  # these Cs predict the validation labels; the others do not

    class Fake:
        def __init__(self, c):
            self.c = c

        def predict(self, z):
            return y[3:] if self.c in right else 1 - y[3:]

    class Same:
        def transform(self, z):
            return z

    monkeypatch.setattr(linear_probe, "fit_probe", lambda x, y, c, seed: (Same(), Fake(c)))
    c, tried = choose_c(x, y, np.arange(3), np.arange(3, 6), [0.1, 0.5, 2.0, 8.0], 0)
    assert c == 0.5
    assert tried == [
        {"C": 0.1, "val_top1": 0.0},
        {"C": 0.5, "val_top1": 1.0},
        {"C": 2.0, "val_top1": 1.0},
        {"C": 8.0, "val_top1": 0.0},
    ]


def test_probe_standardises_on_its_own_data():
    rng = np.random.default_rng(6)
    x = rng.normal(loc=5.0, scale=3.0, size=(40, 3))
    y = (x[:, 0] > 5.0).astype(int)
    scaler, model = fit_probe(x, y, 2.0, 5)
    np.testing.assert_allclose(scaler.mean_, x.mean(axis=0))
    np.testing.assert_allclose(scaler.scale_, x.std(axis=0))
    assert model.C == 2.0
    assert model.max_iter == 1000
    assert model.random_state == 5
    # the model was fit on the standardised data: its decision is w . (x - mean) / scale + b
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    np.testing.assert_allclose(
        model.decision_function(z), model.decision_function(scaler.transform(x))
    )
    assert model.score(z, y) > 0.9


def test_classes_missing_from_training_score_minus_infinity():
    x = np.array([[0.0], [0.1], [5.0], [5.1]])
    y = np.array([0, 0, 2, 2])
    scaler, model = fit_probe(x, y, 1.0, 0)
    scores = class_scores(scaler, model, np.array([[0.05], [5.05]]), 3)
    assert np.isneginf(scores[:, 1]).all()
    assert scores[:, [0, 2]].sum(axis=1) == pytest.approx([1.0, 1.0])
    assert scores[0, 0] > 0.5 and scores[1, 2] > 0.5


def test_too_few_folds_and_bad_settings_are_refused():
    emb, labels, folds, ids = dataset(5, separable=True, per_cell=2, n_folds=2)
    with pytest.raises(ValueError) as info:
        evaluate_linear_probe(emb, labels, folds, CLASSES, ids)
    assert str(info.value) == (
        "the linear probe needs at least 3 folds (test, validation, train), got 2: [1, 2]"
    )
    emb, labels, folds, ids = dataset(5, separable=True, per_cell=2, n_folds=3)
    for grid in ([], [0.0, 1.0], [-1.0]):
        with pytest.raises(ValueError) as info:
            evaluate_linear_probe(emb, labels, folds, CLASSES, ids, c_grid=grid)
        assert str(info.value) == f"C grid must be non-empty and positive, got {grid}"
    with pytest.raises(ValueError) as info:
        evaluate_linear_probe(emb, labels, folds, CLASSES, ids[:-1])
    assert str(info.value) == f"{len(ids) - 1} clip ids for {len(ids)} embeddings"


def test_probe_is_deterministic():
    emb, labels, folds, ids = dataset(8, separable=False, per_cell=4, n_folds=3)
    first = evaluate_linear_probe(emb, labels, folds, CLASSES, ids, c_grid=(0.1, 1.0))
    again = evaluate_linear_probe(emb, labels, folds, CLASSES, ids, c_grid=(0.1, 1.0))
    assert first == again
