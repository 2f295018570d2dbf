"""Zero-shot classification through a frozen space's text side (docs/benchmarks.md).

Each class name goes through every prompt template; the unit text embeddings of one class are
averaged over the templates and renormalised; a clip's score for a class is the cosine of its
audio embedding to that class's text embedding. Top-1 / top-5 per fold, mean and standard
deviation over folds, per-class accuracy and the top-1 confusion matrix, and a binomial test
saying whether top-1 is above chance (a random text tower, as in the demo, sits at chance).

Inputs are arrays and a callable ``encode_text(list[str]) -> (M, D)``: no model is loaded here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

EncodeText = Callable[[list[str]], np.ndarray]

#: Prompt templates per language; ``{}`` is replaced by the class name (underscores as spaces).
DEFAULT_TEMPLATES: dict[str, tuple[str, ...]] = {
    "en": (
        "the sound of {}.",
        "a recording of {}.",
        "an audio clip of {}.",
        "this is the sound of {}.",
        "a photo of {}.",
    ),
    "zh": (
        "{}的声音",
        "一段{}的录音",
        "这是{}的声音",
        "一张{}的照片",
    ),
}
TOP_K = (1, 5)
#: One-sided binomial test of top-1 against 1/K: at chance when p >= this.
CHANCE_ALPHA = 0.01


def templates_for(language: str, templates: Sequence[str] | None = None) -> list[str]:
    """The templates to use: ``templates`` when given, else the language's defaults; each
    must hold ``{}`` exactly once."""
    if templates is None:
        if language not in DEFAULT_TEMPLATES:
            raise ValueError(
                f"no default prompt templates for language {language!r} "
                f"(known: {', '.join(sorted(DEFAULT_TEMPLATES))}); give templates"
            )
        templates = DEFAULT_TEMPLATES[language]
    chosen = list(templates)
    if not chosen:
        raise ValueError("no prompt templates given")
    for template in chosen:
        if template.count("{}") != 1:
            raise ValueError(f"prompt template {template!r} must hold '{{}}' exactly once")
    return chosen


def prompt_name(class_name: str) -> str:
    """The class name as prompts spell it: ``crying_baby`` -> ``crying baby``."""
    return " ".join(class_name.replace("_", " ").split())


def class_prompts(class_names: Sequence[str], templates: Sequence[str]) -> list[list[str]]:
    """``[template][class]`` prompt texts (``{}`` replaced literally, never ``str.format``)."""
    return [[t.replace("{}", prompt_name(name)) for name in class_names] for t in templates]


def unit_rows(x: np.ndarray, what: str) -> np.ndarray:
    """Rows of ``x`` scaled to unit length; a zero row is an error naming ``what``."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError(f"{what}: row {int(np.argmin(norms[:, 0]))} is all zeros")
    return x / norms


def class_text_embeddings(
    class_names: Sequence[str], templates: Sequence[str], encode_text: EncodeText
) -> np.ndarray:
    """(K, D) unit text embeddings: per class, the mean of its templates' unit embeddings,
    renormalised."""
    total = None
    for template in templates:
        prompts = class_prompts(class_names, [template])[0]
        emb = np.asarray(encode_text(prompts), dtype=np.float64)  # (K, D)
        if emb.ndim != 2 or emb.shape[0] != len(class_names):
            raise ValueError(
                f"encode_text returned shape {emb.shape} for {len(class_names)} prompts "
                f"of template {template!r}"
            )
        emb = unit_rows(emb, f"text embedding of template {template!r}")
        total = emb if total is None else total + emb
    # the sum has the direction of the mean: renormalising either gives the same vectors
    return unit_rows(total, "mean text embedding")


def cosine_scores(audio_emb: np.ndarray, text_emb: np.ndarray) -> np.ndarray:
    """(N, K) cosine of each audio embedding (N, D) to each class embedding (K, D)."""
    audio = unit_rows(np.asarray(audio_emb, dtype=np.float64), "audio embedding")
    text = unit_rows(np.asarray(text_emb, dtype=np.float64), "class embedding")
    return audio @ text.T


def true_class_rank(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N,) how many other classes score at least as high as the true one: 0 = top-1.
    Ties count against the clip, so constant scores are never counted correct."""
    rows = np.arange(len(labels))
    true = scores[rows, labels][:, None]
    return (scores >= true).sum(axis=1) - 1


def mean_std(values: Sequence[float]) -> dict[str, float]:
    """Mean and population standard deviation (ddof=0) over folds."""
    return {"mean": float(np.mean(values)), "std": float(np.std(values))}


def per_fold_topk(
    ranks: np.ndarray, folds: np.ndarray, ks: Sequence[int] = TOP_K
) -> list[dict[str, float]]:
    """One row per fold present: fold, n_clips and top-k accuracy for each k."""
    rows = []
    for fold in np.unique(folds):
        mask = folds == fold
        row = {"fold": int(fold), "n_clips": int(mask.sum())}
        for k in ks:
            row[f"top{k}"] = float(np.mean(ranks[mask] < k))
        rows.append(row)
    return rows


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """(K, K) counts: row = true class, column = predicted class."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def per_class_accuracy(
    labels: np.ndarray, correct: np.ndarray, class_names: Sequence[str]
) -> list[dict]:
    """Per class: index, name, clip count and the fraction correct (None without clips)."""
    rows = []
    for index, name in enumerate(class_names):
        mask = labels == index
        n = int(mask.sum())
        rows.append(
            {
                "class_index": index,
                "class_name": name,
                "n_clips": n,
                "accuracy": float(correct[mask].mean()) if n else None,
            }
        )
    return rows


def chance_verdict(n_correct: int, n_clips: int, n_classes: int, alpha: float = CHANCE_ALPHA):
    """Is top-1 above chance? A one-sided exact binomial test against 1/K."""
    # Imported here: the Snakefile reads this package when it builds the DAG, and
    # scipy.stats would add seconds to every Snakemake start.
    from scipy.stats import binomtest

    chance = 1.0 / n_classes
    p_value = float(binomtest(n_correct, n_clips, chance, alternative="greater").pvalue)
    at_chance = p_value >= alpha
    accuracy = n_correct / n_clips
    if at_chance:
        line = (
            f"zero-shot top-1 {accuracy:.1%} is at chance level (1/{n_classes} = {chance:.1%}; "
            f"binomial p = {p_value:.3g} >= {alpha}): the text side does not tell these "
            "classes apart (a random text tower, as in the demo, gives this)"
        )
    else:
        line = (
            f"zero-shot top-1 {accuracy:.1%} is above chance (1/{n_classes} = {chance:.1%}; "
            f"binomial p = {p_value:.3g} < {alpha})"
        )
    return {"at_chance": at_chance, "p_value": p_value, "alpha": alpha, "line": line}


def check_inputs(
    emb: np.ndarray, labels: np.ndarray, folds: np.ndarray, n_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The inputs as arrays of agreeing lengths, labels in 0..K-1; else a one-line error."""
    emb = np.asarray(emb)
    labels = np.asarray(labels)
    folds = np.asarray(folds)
    if emb.ndim != 2 or len(emb) == 0:
        raise ValueError(f"embeddings must be a non-empty (N, D) array, got shape {emb.shape}")
    if labels.shape != (len(emb),) or folds.shape != (len(emb),):
        raise ValueError(
            f"{len(emb)} embeddings, but labels of shape {labels.shape} and folds of "
            f"shape {folds.shape}"
        )
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"labels must be integers in 0..{n_classes - 1}")
    return emb, labels.astype(np.int64), folds


def evaluate_zeroshot(
    audio_emb: np.ndarray,
    labels: np.ndarray,
    folds: np.ndarray,
    class_names: Sequence[str],
    encode_text: EncodeText,
    *,
    language: str = "en",
    templates: Sequence[str] | None = None,
) -> dict:
    """The zero-shot result: protocol (templates, prompts, folds), top-1/top-5 per fold and
    mean ± std, chance levels and verdict, per-class accuracy, confusion matrix."""
    n_classes = len(class_names)
    audio_emb, labels, folds = check_inputs(audio_emb, labels, folds, n_classes)
    used = templates_for(language, templates)
    text_emb = class_text_embeddings(class_names, used, encode_text)
    if text_emb.shape[1] != audio_emb.shape[1]:
        raise ValueError(
            f"audio embeddings are {audio_emb.shape[1]}-d, text embeddings "
            f"{text_emb.shape[1]}-d: not the same space"
        )
    scores = cosine_scores(audio_emb, text_emb)
    ranks = true_class_rank(scores, labels)
    fold_rows = per_fold_topk(ranks, folds)
    predicted = np.argmax(scores, axis=1)
    return {
        "protocol": {
            "name": "zeroshot",
            "language": language,
            "templates": used,
            "prompts": class_prompts(class_names, used),
            "text_embedding": "mean over templates of unit text embeddings, renormalised",
            "score": "cosine of the audio embedding to each class's text embedding",
            "ties": "a class scoring equal to the true class counts above it",
            "std": "population standard deviation over folds (ddof=0)",
            "chance_test": f"one-sided exact binomial test of top-1 against 1/K, alpha {CHANCE_ALPHA}",
        },
        "n_clips": len(labels),
        "n_classes": n_classes,
        "classes": list(class_names),
        "folds": [row["fold"] for row in fold_rows],
        "per_fold": fold_rows,
        **{f"top{k}": mean_std([row[f"top{k}"] for row in fold_rows]) for k in TOP_K},
        "chance": {f"top{k}": min(k, n_classes) / n_classes for k in TOP_K},
        "chance_verdict": chance_verdict(int((ranks == 0).sum()), len(labels), n_classes),
        "per_class": per_class_accuracy(labels, ranks == 0, class_names),
        "confusion": confusion_matrix(labels, predicted, n_classes).tolist(),
    }


__all__ = [
    "CHANCE_ALPHA",
    "DEFAULT_TEMPLATES",
    "TOP_K",
    "chance_verdict",
    "check_inputs",
    "class_prompts",
    "class_text_embeddings",
    "confusion_matrix",
    "cosine_scores",
    "evaluate_zeroshot",
    "mean_std",
    "per_class_accuracy",
    "per_fold_topk",
    "prompt_name",
    "templates_for",
    "true_class_rank",
    "unit_rows",
]
