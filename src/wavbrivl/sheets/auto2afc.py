"""The automatic two-choice score, on the same trials as the human study.

For each trial: does the audio target embedding g(audio) prefer the image generated from
that clip over the other image, under the frozen image encoder? Both images are embedded
with ``encoder.encode_images``; the trial is correct when cos(target, match) > cos(target,
other), half correct on an exact tie (so a collapsed encoder scores chance, 50 %, not 0 or
100). Reported as % correct with a seeded bootstrap 95 % interval over trials.

Two runs can also be compared (:func:`compare_runs`, ``sheets.compare``): for each clip both
runs generated, which of the two images fits the sound better, i.e. has the larger cosine to
the clip's audio target under the frozen encoder. The target is the normalised sum of the
two runs' unit g(audio) (neither run's audio encoder is favoured; for two generators of one
trained run it is that run's g(audio)). Each run's share of wins (a tie counts half to each)
is reported with a seeded bootstrap 95 % interval over clips.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from wavbrivl.atomic import write_text_atomic
from wavbrivl.generate.png import generated_png_path
from wavbrivl.hashing import sha256_of
from wavbrivl.sheets.analysis import N_BOOT, bootstrap_percent_ci


@dataclass(frozen=True)
class AutoScore:
    """Automatic two-choice result of one run."""

    run: str
    n_trials: int
    percent_correct: float
    ci95: tuple[float, float]
    n_ties: int
    encoder: str  # the image encoder's name
    encoder_fingerprint: str
    margins: dict[str, float]  # trial_id -> cos(target, match) - cos(target, other)


def embed_images(
    encoder: Any, paths: Mapping[str, Path], batch_size: int = 16
) -> dict[str, np.ndarray]:
    """``{name: unit (D,)}`` for image files, embedded by ``encoder`` without gradients."""
    names = list(paths)
    out: dict[str, np.ndarray] = {}
    for start in range(0, len(names), batch_size):
        batch = names[start : start + batch_size]
        images = []
        for name in batch:
            with Image.open(paths[name]) as image:
                images.append(image.convert("RGB"))
        with torch.no_grad():
            emb = encoder.encode_images(images).detach().float().cpu().numpy()  # (B, D)
        out.update(zip(batch, emb, strict=True))
    return out


def _unit(vector: np.ndarray, what: str) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float64)
    norm = np.linalg.norm(vector)
    if not np.isfinite(norm) or norm == 0:
        raise ValueError(f"{what}: zero or non-finite vector")
    return vector / norm


def auto_two_choice(
    trials: Sequence[Mapping[str, Any]],
    run_folder: str | os.PathLike,
    encoder: Any,
    targets: Mapping[str, np.ndarray],
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
    batch_size: int = 16,
) -> AutoScore:
    """Score one run's trials (answer-key entries with the same ``run``).

    The images are read from ``run_folder`` and must be the ones the study showed: their
    SHA-256 is checked against the key, so a regenerated folder cannot be scored silently.
    """
    if not trials:
        raise ValueError("no trials to score")
    runs = {t["run"] for t in trials}
    if len(runs) != 1:
        raise ValueError(f"trials of one run expected, got runs {sorted(runs)}")
    run = runs.pop()
    folder = Path(run_folder)
    expected_sha = {}
    for t in trials:
        expected_sha[t["clip_id"]] = t["match_image_sha256"]
        expected_sha[t["other_clip_id"]] = t["other_image_sha256"]
    paths = {cid: generated_png_path(folder, cid) for cid in expected_sha}
    changed = [cid for cid, path in paths.items() if sha256_of(path) != expected_sha[cid]]
    if changed:
        raise ValueError(
            f"run {run!r}: image(s) in {folder} differ from the ones in the study: {changed[:10]}"
        )
    missing = sorted({t["clip_id"] for t in trials} - set(targets))
    if missing:
        raise KeyError(f"run {run!r}: no audio target for clip(s) {missing[:10]}")

    image_emb = embed_images(encoder, paths, batch_size)
    margins: dict[str, float] = {}
    for t in trials:
        target = _unit(targets[t["clip_id"]], f"target of {t['clip_id']}")
        if target.shape != image_emb[t["clip_id"]].shape:
            raise ValueError(
                f"target of {t['clip_id']} has shape {target.shape}, the image encoder gives "
                f"{image_emb[t['clip_id']].shape}"
            )
        match = _unit(image_emb[t["clip_id"]], f"image of {t['clip_id']}")
        other = _unit(image_emb[t["other_clip_id"]], f"image of {t['other_clip_id']}")
        margins[t["trial_id"]] = float(target @ match - target @ other)

    margin = np.array(list(margins.values()))
    correct = np.where(margin > 0, 1.0, np.where(margin == 0, 0.5, 0.0))  # (T,)
    ci = bootstrap_percent_ci(np.stack([correct, 1.0 - correct], axis=1), n_boot, seed)[0]
    return AutoScore(
        run=run,
        n_trials=len(trials),
        percent_correct=float(100.0 * correct.mean()),
        ci95=(float(ci[0]), float(ci[1])),
        n_ties=int((margin == 0).sum()),
        encoder=str(getattr(encoder, "name", type(encoder).__name__)),
        encoder_fingerprint=str(getattr(encoder, "fingerprint", "")),
        margins=margins,
    )


def auto_two_choice_study(
    key: Mapping[str, Any],
    encoders: Mapping[str, Any],
    targets: Mapping[str, Mapping[str, np.ndarray]],
    run_folders: Mapping[str, str | os.PathLike] | None = None,
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> dict[str, AutoScore]:
    """Score every run of a study: ``encoders`` and ``targets`` are keyed by run name.

    ``run_folders`` defaults to the folders recorded in the key.
    """
    folders = dict(run_folders) if run_folders is not None else dict(key["runs"])
    scores = {}
    for run in dict.fromkeys(t["run"] for t in key["trials"]):
        for what, mapping in (
            ("image encoder", encoders),
            ("targets", targets),
            ("folder", folders),
        ):
            if run not in mapping:
                raise KeyError(f"no {what} given for run {run!r}")
        trials = [t for t in key["trials"] if t["run"] == run]
        scores[run] = auto_two_choice(
            trials, folders[run], encoders[run], targets[run], n_boot=n_boot, seed=seed
        )
    return scores


@dataclass(frozen=True)
class RunComparison:
    """Automatic two-choice comparison of two runs over the clips both generated."""

    runs: tuple[str, str]
    n_clips: int
    share: dict[str, float]  # run -> % of clips whose image of this run fits the sound better
    ci95: dict[str, tuple[float, float]]  # run -> bootstrap 95 % interval of its share
    n_ties: int
    encoder: str
    encoder_fingerprint: str
    margins: dict[str, float]  # clip_id -> cos(target, image of runs[0]) - cos(target, runs[1])


def compare_runs(
    runs: tuple[str, str],
    folders: Mapping[str, str | os.PathLike],
    encoder: Any,
    targets: Mapping[str, Mapping[str, np.ndarray]],
    clip_ids: Sequence[str],
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
    batch_size: int = 16,
) -> RunComparison:
    """Which of the two runs' images (``<folder>/<clip_id>.png``) fits each clip's sound better.

    ``targets`` is keyed by run, then clip (each run's g(audio)); every clip of ``clip_ids``
    needs both runs' image and target, else an error names the run and the clips.
    """
    run_a, run_b = runs
    if run_a == run_b:
        raise ValueError(f"compare two different runs, got {run_a!r} twice")
    if not clip_ids:
        raise ValueError(f"runs {run_a!r} and {run_b!r}: no clip to compare")
    image_emb = {}
    for run in runs:
        missing = [cid for cid in clip_ids if cid not in targets[run]]
        if missing:
            raise KeyError(f"run {run!r}: no audio target for clip(s) {missing[:10]}")
        folder = Path(folders[run])
        paths = {cid: generated_png_path(folder, cid) for cid in clip_ids}
        lacking = [cid for cid, path in paths.items() if not path.is_file()]
        if lacking:
            raise FileNotFoundError(f"run {run!r}: no image in {folder} for clip(s) {lacking[:10]}")
        image_emb[run] = embed_images(encoder, paths, batch_size)
    margins: dict[str, float] = {}
    for cid in clip_ids:
        t_a = _unit(targets[run_a][cid], f"run {run_a!r}: target of {cid}")
        t_b = _unit(targets[run_b][cid], f"run {run_b!r}: target of {cid}")
        if t_a.shape != t_b.shape or t_a.shape != image_emb[run_a][cid].shape:
            raise ValueError(
                f"clip {cid}: targets of shapes {t_a.shape} ({run_a}) and {t_b.shape} ({run_b}), "
                f"the image encoder gives {image_emb[run_a][cid].shape}"
            )
        target = _unit(t_a + t_b, f"summed targets of {cid}")
        sim_a = target @ _unit(image_emb[run_a][cid], f"run {run_a!r}: image of {cid}")
        sim_b = target @ _unit(image_emb[run_b][cid], f"run {run_b!r}: image of {cid}")
        margins[cid] = float(sim_a - sim_b)
    margin = np.array(list(margins.values()))  # (C,)
    wins_a = np.where(margin > 0, 1.0, np.where(margin == 0, 0.5, 0.0))  # (C,)
    ci = bootstrap_percent_ci(np.stack([wins_a, 1.0 - wins_a], axis=1), n_boot, seed)  # (2, 2)
    share_a = float(100.0 * wins_a.mean())
    return RunComparison(
        runs=(run_a, run_b),
        n_clips=len(margins),
        share={run_a: share_a, run_b: 100.0 - share_a},
        ci95={run_a: (float(ci[0, 0]), float(ci[0, 1])), run_b: (float(ci[1, 0]), float(ci[1, 1]))},
        n_ties=int((margin == 0).sum()),
        encoder=str(getattr(encoder, "name", type(encoder).__name__)),
        encoder_fingerprint=str(getattr(encoder, "fingerprint", "")),
        margins=margins,
    )


def write_auto_scores(
    scores: Mapping[str, AutoScore],
    study_id: str,
    path: str | os.PathLike,
    comparison: RunComparison | Mapping[str, Any] | None = None,
) -> None:
    """JSON read by ``wavbrivl.sheets.analysis --auto`` (put beside Table 1).

    ``comparison`` (a :class:`RunComparison`, or a dict saying why none was made) goes under
    the key ``comparison``; without one the key is absent.
    """
    payload: dict[str, Any] = {
        "study_id": study_id,
        "runs": {run: asdict(s) for run, s in scores.items()},
    }
    if comparison is not None:
        payload["comparison"] = (
            asdict(comparison) if isinstance(comparison, RunComparison) else dict(comparison)
        )
    write_text_atomic(path, json.dumps(payload, indent=1) + "\n")
