"""Automatic metrics of a generation run: ``metrics.json`` + ``metrics.tsv`` beside its PNGs.

For every generated image (embedded with the run's frozen image encoder):

- **AIS** (audio-image similarity): cosine of g(audio), the clip's target in
  ``targets.parquet``, to the generated image's embedding; reference: the same cosine to the
  *other* clips' images (what a picture that ignores the sound reaches);
- **IIS** (image-image similarity): cosine of the generated image's embedding to the clip's
  real-frame embedding; reference: the same cosine to the other clips' real frames;
- **class agreement**: share of images nearest their own class's real-frame centroid
  (:mod:`wavbrivl.generate.agreement`), with its chance level;
- **FID / KID** (torch-fidelity, Inception weights from a local file, nothing fetched),
  only when both sets reach ``min_images_for_fid``; otherwise null with the reason.

Every mean carries a seeded percentile-bootstrap 95 % interval over clips. What each number
means: ``docs/generation-metrics.md``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from wavbrivl.atomic import write_text_atomic
from wavbrivl.configs import from_mapping
from wavbrivl.generate.agreement import class_agreement

METRICS_FORMAT = "wavbrivl.generation-metrics/1"
METRICS_JSON = "metrics.json"
METRICS_TSV = "metrics.tsv"
CI_LEVEL = 0.95
INCEPTION_LAYERS = ("64", "192", "768", "2048")
TSV_COLUMNS = ("metric", "value", "ci95_low", "ci95_high", "n", "reference", "note")


@dataclass(frozen=True)
class MetricsConfig:
    """The ``generate.metrics`` block (config.schema.yaml)."""

    inception_weights: str | None = None  # torch-fidelity's InceptionV3 state dict, local file
    min_images_for_fid: int = 50
    kid_subset_size: int = 1000
    bootstrap_samples: int = 1000
    seed: int = 0
    inception_layer: str = "2048"  # the standard FID features; smaller ones for quick checks

    def __post_init__(self) -> None:
        if self.inception_layer not in INCEPTION_LAYERS:
            raise ValueError(
                f"generate.metrics.inception_layer must be one of {list(INCEPTION_LAYERS)}, "
                f"got {self.inception_layer!r}"
            )
        if self.min_images_for_fid < 2:
            raise ValueError("generate.metrics.min_images_for_fid must be at least 2")
        if self.kid_subset_size < 2:
            raise ValueError("generate.metrics.kid_subset_size must be at least 2")
        if self.bootstrap_samples < 1:
            raise ValueError("generate.metrics.bootstrap_samples must be at least 1")


def metrics_config(block: Mapping[str, Any] | None) -> MetricsConfig:
    """The config from the ``generate.metrics`` block; a configured Inception file must exist."""
    cfg = from_mapping(MetricsConfig, block, "generate.metrics")
    if cfg.inception_weights and not Path(cfg.inception_weights).is_file():
        raise FileNotFoundError(
            f"generate.metrics.inception_weights: {cfg.inception_weights} is not a file"
        )
    return cfg


# --- statistics ----------------------------------------------------------------------------


def bootstrap_mean_ci(
    values: Sequence[float], n_boot: int, seed: int, level: float = CI_LEVEL
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (resampling them, seeded)."""
    data = np.asarray(values, dtype=np.float64)
    n = len(data)
    if n == 0:
        raise ValueError("no values to bootstrap")
    rng = np.random.default_rng(seed)
    chunk = max(1, 4_000_000 // n)  # bound the (chunk, n) index array
    means = []
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_boot - start), n))
        means.append(data[idx].mean(axis=1))
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(np.concatenate(means), [alpha, 1.0 - alpha])
    return float(low), float(high)


def mean_summary(values: Sequence[float], cfg: MetricsConfig) -> dict[str, Any]:
    """``{"mean", "ci95", "n"}``; mean and interval null when there is no value."""
    if len(values) == 0:
        return {"mean": None, "ci95": None, "n": 0}
    low, high = bootstrap_mean_ci(values, cfg.bootstrap_samples, cfg.seed)
    return {"mean": float(np.mean(values)), "ci95": [low, high], "n": len(values)}


def unit_rows(matrix: np.ndarray, what: str) -> np.ndarray:
    """Rows scaled to unit length; an all-zero or non-finite row is an error naming ``what``."""
    arr = np.asarray(matrix, dtype=np.float64)
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    bad = ~np.isfinite(norms[:, 0]) | (norms[:, 0] == 0)
    if bad.any():
        raise ValueError(f"{what}: zero or non-finite embedding at row {int(np.argmax(bad))}")
    return arr / norms


def mismatched_mean(a: np.ndarray, b: np.ndarray) -> float | None:
    """Mean cosine of row i of ``a`` to rows j != i of ``b`` (unit rows); null below 2 rows."""
    n = len(a)
    if n < 2:
        return None
    sims = a @ b.T  # (n, n)
    return float((sims.sum() - np.trace(sims)) / (n * (n - 1)))


# --- the numbers from embeddings -------------------------------------------------------------


def similarity_metrics(
    gen: Mapping[str, np.ndarray],
    targets: Mapping[str, np.ndarray],
    real: Mapping[str, np.ndarray],
    labels: Mapping[str, str],
    cfg: MetricsConfig,
) -> dict[str, Any]:
    """AIS, IIS and class agreement from embeddings keyed by clip id.

    ``gen``: generated images; ``targets``: g(audio); ``real``: real frames of the dataset
    (every clip with a frame, the class centroids' material); ``labels``: class of every clip.
    An embedding without a direction (zero, say g(audio) of silence, or non-finite) is left
    out of the figures it would enter and listed under ``unscored`` with the reason.
    """
    clips = sorted(gen)
    missing_target = [c for c in clips if c not in targets]
    if missing_target:
        raise ValueError(f"no target embedding for generated clip(s) {missing_target[:5]}")
    gen_ok, bad_gen = usable(gen, "the generated image's embedding")
    target_ok, bad_target = usable(
        {c: targets[c] for c in clips}, "g(audio) (silent or unusable audio?)"
    )
    real_ok, bad_real = usable(real, "the real frame's embedding")

    ais_clips = [c for c in clips if c in gen_ok and c in target_ok]
    out: dict[str, Any] = {"ais": pair_summary(target_ok, gen_ok, ais_clips, cfg)}
    out["ais"]["unscored"] = {
        c: bad_gen.get(c) or bad_target[c] for c in clips if c not in ais_clips
    }

    iis_clips = [c for c in clips if c in gen_ok and c in real_ok]
    out["iis"] = pair_summary(gen_ok, real_ok, iis_clips, cfg)
    out["iis"]["no_real_frame"] = [c for c in clips if c not in real]
    out["iis"]["unscored"] = {
        c: bad_gen.get(c) or bad_real[c] for c in clips if c in real and c not in iis_clips
    }
    scored = [c for c in clips if c in gen_ok]
    out["class_agreement"] = agreement_summary(gen_ok, real_ok, labels, scored, cfg)
    out["class_agreement"]["unscored"] = bad_gen
    return out


def usable(
    vectors: Mapping[str, np.ndarray], what: str
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(the vectors with a direction, ``{clip_id: reason}`` for zero or non-finite ones)."""
    kept, dropped = {}, {}
    for clip_id, vector in vectors.items():
        norm = np.linalg.norm(np.asarray(vector, dtype=np.float64))
        if np.isfinite(norm) and norm > 0:
            kept[clip_id] = vector
        else:
            dropped[clip_id] = f"{what} is zero or not finite"
    return kept, dropped


def pair_summary(
    first: Mapping[str, np.ndarray],
    second: Mapping[str, np.ndarray],
    clips: Sequence[str],
    cfg: MetricsConfig,
) -> dict[str, Any]:
    """Mean cos(first[c], second[c]) over ``clips`` with its interval, per clip, and the
    mismatched reference (each clip's first vector against the other clips' second)."""
    if not clips:
        return mean_summary([], cfg) | {"mismatched": None, "per_clip": {}}
    a = unit_rows(np.stack([first[c] for c in clips]), "embeddings")
    b = unit_rows(np.stack([second[c] for c in clips]), "embeddings")
    sims = np.sum(a * b, axis=1)  # (N,)
    return mean_summary(sims, cfg) | {
        "mismatched": mismatched_mean(a, b),
        "per_clip": dict(zip(clips, map(float, sims), strict=True)),
    }


def agreement_summary(
    gen: Mapping[str, np.ndarray],
    real: Mapping[str, np.ndarray],
    labels: Mapping[str, str],
    clips: Sequence[str],
    cfg: MetricsConfig,
) -> dict[str, Any]:
    """Class agreement of the generated ``clips`` with its chance level and interval."""
    unlabelled = sorted(c for c in [*clips, *real] if c not in labels)
    if unlabelled:
        raise ValueError(f"no class label for clip(s) {unlabelled[:5]}")
    if not clips or not real:
        reason = "no generated images" if not clips else "no real frames"
        return {"share": None, "ci95": None, "n": len(clips), "chance": None, "reason": reason}
    real_ids = sorted(real)
    res = class_agreement(
        np.stack([gen[c] for c in clips]),
        [labels[c] for c in clips],
        np.stack([real[c] for c in real_ids]),
        [labels[c] for c in real_ids],
    )
    hits = [float(p == labels[c]) for p, c in zip(res.predicted, clips, strict=True)]
    low, high = bootstrap_mean_ci(hits, cfg.bootstrap_samples, cfg.seed)
    return {
        "share": res.share,
        "ci95": [low, high],
        "n": res.n,
        "chance": res.chance,
        "per_class": res.per_class,
        "predicted": dict(zip(clips, res.predicted, strict=True)),
    }


# --- FID / KID --------------------------------------------------------------------------------


def fid_kid(
    gen_images: Sequence[Any],
    real_images: Sequence[Any],
    cfg: MetricsConfig,
    *,
    device: str = "cpu",
) -> dict[str, Any]:
    """FID and KID between two lists of PIL images, or nulls and the reason they are not there."""
    n_gen, n_real = len(gen_images), len(real_images)
    out: dict[str, Any] = {
        "fid": None,
        "kid_mean": None,
        "kid_std": None,
        "kid_subset_size": None,
        "n_generated": n_gen,
        "n_real": n_real,
        "reason": None,
    }
    if not cfg.inception_weights:
        out["reason"] = "no Inception weights configured (generate.metrics.inception_weights)"
        return out
    if min(n_gen, n_real) < cfg.min_images_for_fid:
        out["reason"] = (
            f"too few images: {n_gen} generated and {n_real} real frames, FID/KID need "
            f"{cfg.min_images_for_fid} of each (generate.metrics.min_images_for_fid)"
        )
        return out
    import torch_fidelity

    subset = min(cfg.kid_subset_size, n_gen, n_real)
    scores = torch_fidelity.calculate_metrics(
        input1=_ImageSet(gen_images),
        input2=_ImageSet(real_images),
        fid=True,
        kid=True,
        feature_extractor="inception-v3-compat",
        feature_extractor_weights_path=str(cfg.inception_weights),
        feature_layer_fid=cfg.inception_layer,
        feature_layer_kid=cfg.inception_layer,
        kid_subset_size=subset,
        cuda=str(device).startswith("cuda"),
        cache=False,
        verbose=False,
        save_cpu_ram=True,  # no DataLoader worker processes
        rng_seed=cfg.seed,
    )
    out["fid"] = float(scores["frechet_inception_distance"])
    out["kid_mean"] = float(scores["kernel_inception_distance_mean"])
    out["kid_std"] = float(scores["kernel_inception_distance_std"])
    out["kid_subset_size"] = subset
    out["inception_layer"] = cfg.inception_layer
    return out


class _ImageSet(Dataset):
    """PIL images as torch-fidelity's input: uint8 (3, H, W) tensors of one size.

    Images of mixed sizes are resized to Inception's 299 x 299 first (torch-fidelity stacks a
    batch, and resizes to 299 anyway).
    """

    def __init__(self, images: Sequence[Any]) -> None:
        self.images = list(images)
        sizes = {image.size for image in self.images}
        self.size = sizes.pop() if len(sizes) == 1 else (299, 299)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        image = self.images[i].convert("RGB")
        if image.size != self.size:
            image = image.resize(self.size)
        pixels = np.asarray(image, dtype=np.uint8)  # (H, W, 3)
        return torch.from_numpy(pixels.copy()).permute(2, 0, 1)  # (3, H, W)


# --- the run folder ---------------------------------------------------------------------------


def embed_pil(encoder: Any, images: Sequence[Any], batch_size: int = 16) -> np.ndarray:
    """(N, D) float embeddings of PIL images, without gradients."""
    chunks = []
    for start in range(0, len(images), batch_size):
        with torch.no_grad():
            emb = encoder.encode_images(list(images[start : start + batch_size]))
        chunks.append(emb.detach().float().cpu().numpy())
    return np.concatenate(chunks) if chunks else np.zeros((0, encoder.dim), dtype=np.float32)


def read_real_frames(media_paths: Sequence[str | os.PathLike]) -> dict[str, Any]:
    """``{clip_id: PIL image}`` of every ok clip of the media shards."""
    from wavbrivl.extract.media import decode_frame, iter_media_rows

    frames: dict[str, Any] = {}
    for path in media_paths:
        for batch in iter_media_rows(path, ["frame"], ok_only=True):
            for clip_id, jpeg in batch[["clip_id", "frame"]].itertuples(index=False):
                if clip_id in frames:
                    raise ValueError(f"{path}: clip {clip_id!r} appears twice in the media shards")
                if jpeg:
                    frames[clip_id] = decode_frame(jpeg)
    return frames


def run_metrics(
    run_dir: str | os.PathLike,
    media_paths: Sequence[str | os.PathLike],
    manifest_path: str | os.PathLike,
    encoder: Any,
    cfg: MetricsConfig,
    *,
    device: str = "cpu",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Compute the metrics of a finished generation folder and write them into it."""
    from PIL import Image

    from wavbrivl.generate.png import generated_png_path
    from wavbrivl.generate.records import GENERATION_JSON, TARGETS_PARQUET, read_targets
    from wavbrivl.manifest.labels import read_clip_labels

    run_dir = Path(run_dir)
    record = json.loads((run_dir / GENERATION_JSON).read_text(encoding="utf-8"))
    clips = [entry["clip_id"] for entry in record.get("clips", [])]
    targets = read_targets(run_dir / TARGETS_PARQUET)
    labels = {cid: lab.display for cid, lab in read_clip_labels(manifest_path).items()}

    gen_images = {}
    for clip_id in clips:
        with Image.open(generated_png_path(run_dir, clip_id)) as image:
            gen_images[clip_id] = image.convert("RGB")
    real_images = read_real_frames(media_paths)
    log(f"metrics: embedding {len(gen_images)} generated images, {len(real_images)} real frames")
    gen_emb = dict(zip(gen_images, embed_pil(encoder, list(gen_images.values())), strict=True))
    real_emb = dict(zip(real_images, embed_pil(encoder, list(real_images.values())), strict=True))

    metrics: dict[str, Any] = {
        "format": METRICS_FORMAT,
        "image_encoder": encoder.name,
        "image_encoder_fingerprint": encoder.fingerprint,
        "n_generated": len(gen_images),
        "n_real_frames": len(real_images),
        "config": asdict(cfg),
        "bootstrap": {"samples": cfg.bootstrap_samples, "seed": cfg.seed, "level": CI_LEVEL},
    }
    metrics |= similarity_metrics(gen_emb, targets, real_emb, labels, cfg)
    metrics["fid_kid"] = fid_kid(
        list(gen_images.values()), list(real_images.values()), cfg, device=device
    )
    write_metrics(run_dir, metrics)
    log(f"metrics: {summary_line(metrics)}")
    return metrics


# --- writing ----------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    return "" if value is None else f"{value:.6g}"


def metric_rows(metrics: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """The rows of metrics.tsv (columns :data:`TSV_COLUMNS`); empty cells for nulls."""
    rows = []
    for name in ("ais", "iis"):
        m = metrics[name]
        ci = m["ci95"] or (None, None)
        note = "reference = mean cosine to the other clips"
        rows.append(
            (
                name,
                _fmt(m["mean"]),
                _fmt(ci[0]),
                _fmt(ci[1]),
                str(m["n"]),
                _fmt(m["mismatched"]),
                note,
            )
        )
    agree = metrics["class_agreement"]
    ci = agree["ci95"] or (None, None)
    rows.append(
        (
            "class_agreement",
            _fmt(agree["share"]),
            _fmt(ci[0]),
            _fmt(ci[1]),
            str(agree["n"]),
            _fmt(agree["chance"]),
            agree.get("reason") or "reference = chance (1 / classes)",
        )
    )
    fk = metrics["fid_kid"]
    n = str(fk["n_generated"])
    reason = fk["reason"] or ""
    rows.append(("fid", _fmt(fk["fid"]), "", "", n, "", reason))
    kid_note = reason or f"std over subsets of {fk['kid_subset_size']}: {_fmt(fk['kid_std'])}"
    rows.append(("kid", _fmt(fk["kid_mean"]), "", "", n, "", kid_note))
    return rows


def write_metrics(out_dir: str | os.PathLike, metrics: Mapping[str, Any]) -> None:
    """metrics.json and metrics.tsv, atomically."""
    out_dir = Path(out_dir)
    write_text_atomic(out_dir / METRICS_JSON, json.dumps(metrics, indent=1, sort_keys=True) + "\n")
    lines = ["\t".join(TSV_COLUMNS)] + ["\t".join(row) for row in metric_rows(metrics)]
    write_text_atomic(out_dir / METRICS_TSV, "\n".join(lines) + "\n")


def summary_line(metrics: Mapping[str, Any]) -> str:
    """One line for the log."""
    agree = metrics["class_agreement"]
    fk = metrics["fid_kid"]
    fid = _fmt(fk["fid"]) if fk["fid"] is not None else f"skipped ({fk['reason']})"
    return (
        f"AIS {_fmt(metrics['ais']['mean'])}, IIS {_fmt(metrics['iis']['mean'])}, class "
        f"agreement {_fmt(agree['share'])} (chance {_fmt(agree['chance'])}), FID {fid}"
    )


def score_generation_folder(
    run_dir: str | os.PathLike,
    media_paths: Sequence[str | os.PathLike],
    manifest_path: str | os.PathLike,
    generate_block: Mapping[str, Any],
    embed_block: Mapping[str, Any],
    cfg: MetricsConfig,
    *,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """:func:`run_metrics` with the run's frozen encoder on the generation's device: the last
    step of every generation job, whatever the method (VQGAN, unCLIP)."""
    from wavbrivl.devices import pick_device
    from wavbrivl.encoders.from_config import encoder_from_config

    device = str(pick_device(generate_block.get("device", "auto")))
    encoder = encoder_from_config({**embed_block, "device": device})
    return run_metrics(run_dir, media_paths, manifest_path, encoder, cfg, device=device, log=log)


__all__ = [
    "score_generation_folder",
    "METRICS_JSON",
    "METRICS_TSV",
    "MetricsConfig",
    "bootstrap_mean_ci",
    "fid_kid",
    "metrics_config",
    "run_metrics",
    "similarity_metrics",
    "write_metrics",
]
