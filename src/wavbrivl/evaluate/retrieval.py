"""Cross-modal retrieval metrics between audio and image embeddings, with chance levels.

Clip i's audio embedding and clip i's image embedding are a pair. Both directions are scored
(audio -> image and image -> audio) by cosine similarity, at two levels:

* instance: the one relevant item is the query's own pair;
* class: every gallery item whose label equals the query's label is relevant (its own pair
  included), so a clip of another "dog barking" video counts as a hit.

Per direction and level: R@1/5/10 (a relevant item in the top k), median rank of the first
relevant item, and mAP. Ties in similarity are broken *against* the relevant items, so a
collapsed model (all embeddings equal) scores at the bottom, never at the top.

Each metric carries its chance level, the value a random ranking gives: exact expectations
for R@k (hypergeometric) and mAP (closed form below), and for the median rank the median over
queries of the expected first relevant rank, (N + 1) / (n_relevant + 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

KS: tuple[int, ...] = (1, 5, 10)
DIRECTIONS: tuple[str, ...] = ("audio_to_image", "image_to_audio")
LEVELS: tuple[str, ...] = ("instance", "class")
_QUERY_CHUNK = 1024  # rows of the (N, N) similarity matrix held at once


def retrieval_metrics(
    audio_emb: np.ndarray, image_emb: np.ndarray, clip_labels: Sequence[str]
) -> dict[str, Any]:
    """Score retrieval between paired embeddings (row i of both = clip i).

    audio_emb (N, D), image_emb (N, D), clip_labels: N label strings (one per clip). Returns
    a JSON-serialisable dict::

        {"n_clips": N, "n_classes": C, "ks": [1, 5, 10],
         "audio_to_image": {"instance": {"R@1": {"value": v, "chance": c}, ...,
                                         "median_rank": {...}, "mAP": {...}},
                            "class": {...}},
         "image_to_audio": {...}}
    """
    audio = _unit_rows(audio_emb, "audio_emb")
    image = _unit_rows(image_emb, "image_emb")
    n = audio.shape[0]
    if image.shape != audio.shape:
        raise ValueError(
            f"audio_emb {audio.shape} and image_emb {image.shape} must have the same shape "
            "(row i of both is clip i)"
        )
    if len(clip_labels) != n:
        raise ValueError(f"{len(clip_labels)} labels for {n} clips")
    _, codes = np.unique(np.asarray([str(x) for x in clip_labels]), return_inverse=True)

    metrics: dict[str, Any] = {"n_clips": n, "n_classes": int(codes.max()) + 1, "ks": list(KS)}
    pairs = {"audio_to_image": (audio, image), "image_to_audio": (image, audio)}
    for direction, (queries, gallery) in pairs.items():
        metrics[direction] = {
            level: ranking_metrics(queries, gallery, codes, instance=(level == "instance"))
            for level in LEVELS
        }
    return metrics


def ranking_metrics(
    queries: np.ndarray, gallery: np.ndarray, codes: np.ndarray, *, instance: bool
) -> dict[str, dict[str, float]]:
    """Metrics for unit-row queries (N, D) against gallery (N, D); codes (N,) class ids."""
    first_ranks, aps, n_relevant = [], [], []
    n = queries.shape[0]
    for start in range(0, n, _QUERY_CHUNK):
        rows = np.arange(start, min(start + _QUERY_CHUNK, n))
        scores = queries[rows] @ gallery.T  # (c, N)
        if instance:
            relevant = np.zeros(scores.shape, dtype=bool)
            relevant[np.arange(len(rows)), rows] = True
        else:
            relevant = codes[rows, None] == codes[None, :]  # (c, N)
        first, ap = first_rank_and_ap(scores, relevant)
        first_ranks.append(first)
        aps.append(ap)
        n_relevant.append(relevant.sum(axis=1))
    first = np.concatenate(first_ranks)
    ap = np.concatenate(aps)
    n_rel = np.concatenate(n_relevant)

    out: dict[str, dict[str, float]] = {}
    for k in KS:
        out[f"R@{k}"] = {
            "value": float(np.mean(first <= k)),
            "chance": float(np.mean(chance_recall_at_k(n, n_rel, k))),
        }
    out["median_rank"] = {
        "value": float(np.median(first)),
        "chance": float(np.median((n + 1) / (n_rel + 1))),
    }
    out["mAP"] = {"value": float(np.mean(ap)), "chance": float(np.mean(chance_ap(n, n_rel)))}
    return out


def first_rank_and_ap(scores: np.ndarray, relevant: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per query row: 1-based rank of the first relevant item, and average precision.

    scores (Q, N) float, relevant (Q, N) bool with at least one True per row. Sorting is by
    descending score, ties broken with non-relevant items first (pessimistic).
    """
    # lexsort: the last key is primary. Descending score, then relevant (False < True).
    order = np.lexsort((relevant, -scores), axis=-1)  # (Q, N)
    hit = np.take_along_axis(relevant, order, axis=1)  # (Q, N) relevance in ranked order
    first = hit.argmax(axis=1) + 1  # (Q,)
    precision = np.cumsum(hit, axis=1) / np.arange(1, hit.shape[1] + 1)  # (Q, N)
    ap = (precision * hit).sum(axis=1) / hit.sum(axis=1)
    return first, ap


def chance_recall_at_k(n: int, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """P(at least one of n_relevant items in the top k of a random ranking of n)."""
    k = min(k, n)
    p_none = np.ones(n_relevant.shape, dtype=float)
    for i in range(k):  # hypergeometric: draw k without replacement, all irrelevant
        p_none *= np.clip(n - n_relevant - i, 0, None) / (n - i)
    return 1.0 - p_none


def chance_ap(n: int, n_relevant: np.ndarray) -> np.ndarray:
    """Expected average precision of a random ranking with R relevant items among n.

    E[AP] = (H_n + (R - 1) / (n - 1) * (n - H_n)) / n, H_n the n-th harmonic number:
    a relevant item sits at rank r with probability R/n, and then each of the r - 1 items
    above it is relevant with probability (R - 1)/(n - 1).
    """
    if n == 1:
        return np.ones(n_relevant.shape, dtype=float)
    h = float(np.sum(1.0 / np.arange(1, n + 1)))
    return (h + (n_relevant - 1) / (n - 1) * (n - h)) / n


def _unit_rows(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"{name} must be (N, D) with N >= 1, got shape {x.shape}")
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if bad.size:
        raise ValueError(f"{name}: rows {bad[:10].tolist()} have NaN/inf values")
    norms = np.linalg.norm(x, axis=1)
    zero = np.flatnonzero(norms == 0)
    if zero.size:
        raise ValueError(f"{name}: rows {zero[:10].tolist()} are zero vectors")
    return x / norms[:, None]


__all__ = [
    "DIRECTIONS",
    "KS",
    "LEVELS",
    "chance_ap",
    "chance_recall_at_k",
    "first_rank_and_ap",
    "ranking_metrics",
    "retrieval_metrics",
]
