"""The human two-choice study kit: the trials, the page and the answer key, written together.

The participant answers "this one" (left), "that one" (right) or "neither" for each trial
(:mod:`wavbrivl.sheets.trials`) on a self-contained page (:mod:`wavbrivl.sheets.page`); clip
ids, runs and the match side are only in the answer key, a separate JSON file for the
analysis.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from wavbrivl.atomic import write_text_atomic
from wavbrivl.extract.media import (
    OK,
    SAMPLE_RATE,
    collect_clip_audio,
    decode_audio,
    iter_media_rows,
)
from wavbrivl.generate.png import generated_png_name
from wavbrivl.sheets import GenerationRun
from wavbrivl.sheets.page import DEFAULT_TITLE, data_uri, page_data, render_page
from wavbrivl.sheets.trials import REAL, Trial, build_study_trials

KEY_FORMAT = "wavbrivl-2afc-key/1"
# Keys of this version add per trial ``kind`` (match / catch / compare) and ``other_run``;
# a key without them (older kits) reads as all match trials of one run.


@dataclass(frozen=True)
class StudyKit:
    """What :func:`write_study` wrote."""

    study_id: str
    trials: list[Trial]
    html_path: Path
    key_path: Path


# --- media ---


def load_clip_audio(
    media_paths: Iterable[str | os.PathLike], clip_ids: Iterable[str]
) -> dict[str, np.ndarray]:
    """``{clip_id: float32 (n,) at SAMPLE_RATE}`` for ``clip_ids`` from media Parquet shards.

    A clip with no ok audio in any shard is an error listing every such clip with its reason.
    """
    flac, reasons = collect_clip_audio(media_paths, clip_ids)
    if reasons:
        missing = sorted(reasons)[:10]
        why = "; ".join(f"{clip_id}: {reasons[clip_id]}" for clip_id in missing)
        raise KeyError(f"no ok audio in the media files for clip(s) {missing} ({why})")
    audio = {}
    for clip_id, data in flac.items():
        try:
            audio[clip_id] = decode_audio(data)
        except Exception as err:
            raise ValueError(f"clip {clip_id!r}: cannot decode audio ({err})") from err
    return audio


def collect_clip_frames(
    media_paths: Iterable[str | os.PathLike], clip_ids: Iterable[str]
) -> dict[str, bytes]:
    """``{clip_id: JPEG bytes}`` of the real frames of ``clip_ids`` (ok rows with a frame)."""
    wanted = set(clip_ids)
    frames: dict[str, bytes] = {}
    for path in media_paths:
        for rows in iter_media_rows(path, ["frame"], ok_only=True):
            for clip_id, status, jpeg in rows[["clip_id", "status", "frame"]].itertuples(
                index=False
            ):
                if clip_id in wanted and status == OK and jpeg:
                    frames[clip_id] = jpeg
    return frames


def wav_bytes(samples: np.ndarray, max_seconds: float | None = None) -> bytes:
    """16-bit PCM WAV at 16 kHz (every browser plays it), cut to ``max_seconds`` if given."""
    if max_seconds is not None:
        samples = samples[: int(round(max_seconds * SAMPLE_RATE))]
    buffer = io.BytesIO()
    sf.write(buffer, samples, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


# --- key and kit ---


def study_id_for(trials: Sequence[Trial], media_sha256: dict[str, str], seed: int) -> str:
    """A short id that changes whenever the trials or any embedded file changes."""
    payload = json.dumps(
        {"seed": seed, "trials": [asdict(t) for t in trials], "media": media_sha256},
        sort_keys=True,
    )
    return "wavbrivl-" + hashlib.sha256(payload.encode()).hexdigest()[:12]


def answer_key(
    study_id: str,
    trials: Sequence[Trial],
    runs: Sequence[GenerationRun],
    image_sha256: dict[tuple[str, str], str],
    *,
    seed: int,
    page_sha256: str,
) -> dict[str, Any]:
    """The key the analysis needs: per trial the match side, clip ids and labels."""
    return {
        "format": KEY_FORMAT,
        "study_id": study_id,
        "seed": seed,
        "page_sha256": page_sha256,
        "runs": {run.name: str(run.folder) for run in runs},
        "trials": [
            {
                **asdict(t),
                "left_clip_id": t.left_clip_id,
                "right_clip_id": t.right_clip_id,
                "left_source": t.left_source,
                "right_source": t.right_source,
                "match_image_sha256": image_sha256[(t.run, t.clip_id)],
                "other_image_sha256": image_sha256[(t.other_source, t.other_clip_id)],
            }
            for t in trials
        ],
    }


def write_study(
    runs: Sequence[GenerationRun],
    media_paths: Iterable[str | os.PathLike],
    html_path: str | os.PathLike,
    key_path: str | os.PathLike,
    *,
    seed: int = 0,
    title: str = DEFAULT_TITLE,
    show_labels: bool = False,
    max_audio_seconds: float | None = None,
    catch_rate: float = 0.0,
    compare: Sequence[str] | None = None,
) -> StudyKit:
    """Build the trials, write the self-contained page and the answer key (both atomically).

    ``show_labels`` prints the clip's label above the images; off by default so people judge
    by ear. ``max_audio_seconds`` cuts long clips to keep the page small. ``catch_rate`` is
    the share of catch trials (real frames from the media shards), ``compare`` two run names
    whose images of the same clip are put side by side (:mod:`wavbrivl.sheets.trials`).
    """
    media_paths = list(media_paths)
    frames: dict[str, bytes] = {}
    if catch_rate > 0:
        frames = collect_clip_frames(media_paths, {c for run in runs for c in run.clips})
    trials = build_study_trials(
        runs, seed, catch_rate=catch_rate, with_frame=set(frames), compare=compare
    )
    by_name = {run.name: run for run in runs}
    needed_images = {
        (source, clip_id)
        for t in trials
        for source, clip_id in ((t.run, t.clip_id), (t.other_source, t.other_clip_id))
    }
    image_bytes = {
        (source, cid): frames[cid]
        if source == REAL
        else by_name[source].clips[cid].image_path.read_bytes()
        for source, cid in needed_images
    }
    audio = load_clip_audio(media_paths, {t.clip_id for t in trials})
    audio_bytes = {cid: wav_bytes(samples, max_audio_seconds) for cid, samples in audio.items()}

    image_sha = {key: hashlib.sha256(b).hexdigest() for key, b in image_bytes.items()}
    media_sha = {f"{run}/{generated_png_name(cid)}": sha for (run, cid), sha in image_sha.items()}
    media_sha |= {f"audio/{cid}": hashlib.sha256(b).hexdigest() for cid, b in audio_bytes.items()}
    study_id = study_id_for(trials, media_sha, seed)

    data = page_data(
        study_id,
        trials,
        {cid: data_uri("audio/wav", b) for cid, b in audio_bytes.items()},
        {
            key: data_uri("image/jpeg" if key[0] == REAL else "image/png", b)
            for key, b in image_bytes.items()
        },
        show_labels=show_labels,
        seed=seed,
    )
    page = render_page(data, title)
    key = answer_key(
        study_id,
        trials,
        runs,
        image_sha,
        seed=seed,
        page_sha256=hashlib.sha256(page.encode("utf-8")).hexdigest(),
    )
    write_text_atomic(html_path, page)
    write_text_atomic(key_path, json.dumps(key, indent=1, ensure_ascii=False) + "\n")
    return StudyKit(study_id, trials, Path(html_path), Path(key_path))


def read_key(path: str | os.PathLike) -> dict[str, Any]:
    """Read an answer key written by :func:`write_study`, checking its format."""
    key = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(key, dict) or key.get("format") != KEY_FORMAT:
        raise ValueError(f"{path}: not a two-choice answer key (format {KEY_FORMAT!r} expected)")
    return key
