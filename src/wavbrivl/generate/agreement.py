"""Class agreement of generated images: does each picture land nearest its own class?

Every generated image's embedding (under the frozen image encoder) is compared by cosine
with the centroid of each class's real-frame embeddings; the nearest centroid is the class
the picture "looks like". The share of generated images whose nearest centroid is their own
class is the class agreement; ``1 / number of classes with a centroid`` is what a picture
drawn at random would reach (chance). See ``docs/generation-metrics.md``.

Only numpy: the sheets and the demo report import this without torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class AgreementResult:
    """Share of generated images nearest their own class's real-frame centroid.

    ``per_class`` maps each generated image's class to ``{"n": images, "share": agreeing
    share}``; ``predicted`` holds the nearest-centroid class of every generated image, in
    input order.
    """

    share: float
    chance: float
    n: int
    per_class: dict = field(default_factory=dict)
    predicted: tuple = ()


def _normalise(emb: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(emb, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{what} must be an (N, D) array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} holds non-finite values")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError(f"{what} holds an all-zero embedding (row {int(np.argmin(norms))})")
    return arr / norms


def class_centroids(real_emb: np.ndarray, real_labels: Sequence) -> tuple[list, np.ndarray]:
    """The classes (sorted) and their unit-length centroids of L2-normalised real embeddings."""
    real = _normalise(real_emb, "real-frame embeddings")
    labels = [str(x) for x in real_labels]
    if len(labels) != len(real):
        raise ValueError(f"{len(real)} real-frame embeddings but {len(labels)} labels")
    classes = sorted(set(labels))
    if not classes:
        raise ValueError("no real-frame embeddings: class agreement needs a centroid per class")
    lab = np.array(labels, dtype=object)
    cents = np.stack([real[lab == c].mean(axis=0) for c in classes])
    norms = np.linalg.norm(cents, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return classes, cents / norms


def class_agreement(gen_emb, gen_labels, real_emb, real_labels) -> AgreementResult:
    """Share of generated images whose nearest real-frame class centroid (cosine) is their class.

    ``gen_emb`` (N, D) and ``real_emb`` (M, D) are L2-normalised here; labels are compared as
    strings. A generated image whose class has no real frames can never agree; it still counts
    in ``n``. ``chance`` is ``1 / number of classes with a centroid``.
    """
    classes, cents = class_centroids(real_emb, real_labels)
    gen = _normalise(gen_emb, "generated-image embeddings")
    labels = [str(x) for x in gen_labels]
    if len(labels) != len(gen):
        raise ValueError(f"{len(gen)} generated-image embeddings but {len(labels)} labels")
    if len(gen) == 0:
        raise ValueError("no generated-image embeddings to score")
    if gen.shape[1] != cents.shape[1]:
        raise ValueError(
            f"generated-image embeddings are {gen.shape[1]}-d but real-frame embeddings are "
            f"{cents.shape[1]}-d"
        )
    nearest = np.argmax(gen @ cents.T, axis=1)  # (N, C) -> (N,)
    predicted = tuple(classes[i] for i in nearest)
    hits = np.array([p == t for p, t in zip(predicted, labels, strict=True)])
    per_class = {}
    for c in sorted(set(labels)):
        mask = np.array([t == c for t in labels])
        per_class[c] = {"n": int(mask.sum()), "share": float(hits[mask].mean())}
    return AgreementResult(
        share=float(hits.mean()),
        chance=1.0 / len(classes),
        n=len(labels),
        per_class=per_class,
        predicted=predicted,
    )
