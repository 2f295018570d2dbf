"""Linear probe on frozen audio embeddings over the official folds (docs/benchmarks.md).

For each test fold: train on all other folds, test on it. The regularisation ``C`` of the
scikit-learn ``LogisticRegression`` is chosen on an inner split of the training folds (the
training fold that follows the test fold, cyclically, is held out for validation), then the
probe is refit on all training folds with that ``C``. Standardisation is fit on the data a
probe is trained on, never on its test or validation data. No clip is ever in its own
training data: :func:`check_no_leakage` asserts it for every split.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from wavbrivl.benchmark.zeroshot import (
    TOP_K,
    check_inputs,
    confusion_matrix,
    mean_std,
    per_class_accuracy,
    true_class_rank,
)

#: Inverse regularisation strengths tried on the inner split (smallest wins ties).
DEFAULT_C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)
MAX_ITER = 1000
MIN_FOLDS = 3  # a test fold, a validation fold, and at least one fold to train on


class FoldLeakError(AssertionError):
    """A clip in the training data of the fold it is tested on."""


def check_no_leakage(
    train_idx: np.ndarray, test_idx: np.ndarray, folds: np.ndarray, clip_ids: Sequence[str]
) -> None:
    """Assert that no test clip (by id: a row at both sides shares its id too) and no test
    fold is in the training data."""
    ids = np.asarray(clip_ids, dtype=object)
    shared_ids = set(ids[train_idx].tolist()) & set(ids[test_idx].tolist())
    shared_folds = set(folds[train_idx].tolist()) & set(folds[test_idx].tolist())
    if shared_ids or shared_folds:
        raise FoldLeakError(
            f"test clips in their own training data (folds {sorted(shared_folds)}): "
            f"{sorted(shared_ids)[:5]}"
        )


def validation_fold(test_fold, fold_values: Sequence) -> object:
    """The fold held out of the training folds to choose ``C``: the next one after
    ``test_fold`` in sorted order, cyclically."""
    ordered = sorted(fold_values)
    return ordered[(ordered.index(test_fold) + 1) % len(ordered)]


def fit_probe(x: np.ndarray, y: np.ndarray, c: float, seed: int):
    """A standardiser and a logistic regression fit on ``(x, y)`` only."""
    # Imported here: the Snakefile reads this module's constants when it builds the DAG,
    # and scikit-learn (with scipy) would add seconds to every Snakemake start.
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x)
    model = LogisticRegression(C=c, max_iter=MAX_ITER, random_state=seed)
    model.fit(scaler.transform(x), y)
    return scaler, model


def class_scores(scaler, model, x: np.ndarray, n_classes: int) -> np.ndarray:
    """(N, K) class probabilities; classes absent from the training data score -inf."""
    scores = np.full((len(x), n_classes), -np.inf)
    scores[:, model.classes_] = model.predict_proba(scaler.transform(x))
    return scores


def choose_c(
    x: np.ndarray, y: np.ndarray, inner_train: np.ndarray, inner_val: np.ndarray, c_grid, seed
) -> tuple[float, list[dict]]:
    """The ``C`` with the best validation top-1 (the smallest among equals) and each C's score."""
    tried = []
    for c in c_grid:
        scaler, model = fit_probe(x[inner_train], y[inner_train], c, seed)
        predicted = model.predict(scaler.transform(x[inner_val]))
        tried.append({"C": float(c), "val_top1": float(np.mean(predicted == y[inner_val]))})
    best = max(tried, key=lambda row: (row["val_top1"], -row["C"]))
    return best["C"], tried


def evaluate_linear_probe(
    audio_emb: np.ndarray,
    labels: np.ndarray,
    folds: np.ndarray,
    class_names: Sequence[str],
    clip_ids: Sequence[str],
    *,
    c_grid: Sequence[float] = DEFAULT_C_GRID,
    seed: int = 0,
) -> dict:
    """The linear-probe result: protocol (C grid, inner split, seed), per fold the chosen C,
    each C's validation accuracy and the test top-1/top-5, mean ± std over folds, chance,
    per-class accuracy and the confusion matrix of the test predictions."""
    n_classes = len(class_names)
    x, y, folds = check_inputs(audio_emb, labels, folds, n_classes)
    if len(clip_ids) != len(y):
        raise ValueError(f"{len(clip_ids)} clip ids for {len(y)} embeddings")
    grid = sorted(float(c) for c in c_grid)
    if not grid or grid[0] <= 0:
        raise ValueError(f"C grid must be non-empty and positive, got {list(c_grid)}")
    fold_values = sorted(set(folds.tolist()))
    if len(fold_values) < MIN_FOLDS:
        raise ValueError(
            f"the linear probe needs at least {MIN_FOLDS} folds (test, validation, train), "
            f"got {len(fold_values)}: {fold_values}"
        )
    fold_rows = []
    ranks = np.empty(len(y), dtype=np.int64)
    predicted = np.empty(len(y), dtype=np.int64)
    for test_fold in fold_values:
        test_idx = np.flatnonzero(folds == test_fold)
        train_idx = np.flatnonzero(folds != test_fold)
        check_no_leakage(train_idx, test_idx, folds, clip_ids)
        val_fold = validation_fold(test_fold, fold_values)
        inner_val = train_idx[folds[train_idx] == val_fold]
        inner_train = train_idx[folds[train_idx] != val_fold]
        check_no_leakage(inner_train, inner_val, folds, clip_ids)
        c, tried = choose_c(x, y, inner_train, inner_val, grid, seed)
        scaler, model = fit_probe(x[train_idx], y[train_idx], c, seed)
        scores = class_scores(scaler, model, x[test_idx], n_classes)
        ranks[test_idx] = true_class_rank(scores, y[test_idx])
        predicted[test_idx] = np.argmax(scores, axis=1)
        row = {
            "fold": int(test_fold),
            "n_train": len(train_idx),
            "n_test": len(test_idx),
            "validation_fold": int(val_fold),
            "C": c,
            "c_search": tried,
        }
        for k in TOP_K:
            row[f"top{k}"] = float(np.mean(ranks[test_idx] < k))
        fold_rows.append(row)
    return {
        "protocol": {
            "name": "linear_probe",
            "model": f"sklearn LogisticRegression (lbfgs, max_iter {MAX_ITER})",
            "standardise": "StandardScaler fit on the training data of each fit only",
            "c_grid": grid,
            "c_choice": "best validation top-1 on the inner split, the smallest C among equals",
            "inner_split": "the training fold after the test fold (cyclically) is held out",
            "seed": seed,
            "ties": "a class scoring equal to the true class counts above it",
            "std": "population standard deviation over folds (ddof=0)",
        },
        "n_clips": len(y),
        "n_classes": n_classes,
        "classes": list(class_names),
        "folds": [row["fold"] for row in fold_rows],
        "per_fold": fold_rows,
        **{f"top{k}": mean_std([row[f"top{k}"] for row in fold_rows]) for k in TOP_K},
        "chance": {f"top{k}": min(k, n_classes) / n_classes for k in TOP_K},
        "per_class": per_class_accuracy(y, ranks == 0, class_names),
        "confusion": confusion_matrix(y, predicted, n_classes).tolist(),
    }


__all__ = [
    "DEFAULT_C_GRID",
    "MAX_ITER",
    "MIN_FOLDS",
    "FoldLeakError",
    "check_no_leakage",
    "choose_c",
    "class_scores",
    "evaluate_linear_probe",
    "fit_probe",
    "validation_fold",
]
