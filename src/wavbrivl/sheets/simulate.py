"""Simulated raters: answer files for a study's answer key, to try the analysis end to end.

A simulated rater answers every trial of the key the way the study page would export it
(columns of :data:`wavbrivl.sheets.analysis.CSV_COLUMNS`, one file per rater):

- match and comparison trials: "neither" with probability ``neither``, otherwise the match
  side (the clip's own image; a comparison's first run) with probability ``accuracy``;
- catch trials: a diligent rater looks and picks the clip's real frame; a careless one (the
  last ``careless`` raters) picks a side at random, so fails about half of them.

Everything is drawn from one generator per rater, ``np.random.default_rng([seed,
seeded_int("simulate", index)])``, trial by trial in the key's order (catch trials of a
careless rater: one ``choice`` of the two sides; other trials: one ``random()`` against
``neither``, then, unless neither, one against ``accuracy``): the same arguments give the
same files. The demo's Table 1 comes from these (``sheets.simulate``, docs/stages.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from wavbrivl.atomic import write_text_atomic
from wavbrivl.hashing import seeded_int
from wavbrivl.sheets.trials import SIDES

OTHER_SIDE = {"left": "right", "right": "left"}
EPOCH = pd.Timestamp("2000-01-01T00:00:00Z")


def rater_id(index: int) -> str:
    return f"sim{index + 1:02d}"


def simulate_rater(
    key: Mapping[str, Any],
    index: int,
    *,
    accuracy: float,
    neither: float = 0.0,
    careless: bool = False,
    seed: int = 0,
) -> pd.DataFrame:
    """One rater's answers to every trial of ``key``, in the key's order."""
    for name, value in (("accuracy", accuracy), ("neither", neither)):
        if not 0 <= value <= 1:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    rng = np.random.default_rng([seed, seeded_int("simulate", index)])
    rows = []
    for number, trial in enumerate(key["trials"]):
        match = trial["match_side"]
        if trial.get("kind") == "catch":
            choice = str(rng.choice(SIDES)) if careless else match
        elif rng.random() < neither:
            choice = "neither"
        else:
            choice = match if rng.random() < accuracy else OTHER_SIDE[match]
        when = EPOCH + pd.Timedelta(seconds=10 * number)
        rows.append(
            {
                "study_id": key["study_id"],
                "trial_id": trial["trial_id"],
                "choice": choice,
                "session_id": rater_id(index),
                "timestamp": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )
    return pd.DataFrame(rows)


def write_simulated_answers(
    key: Mapping[str, Any],
    out_dir: str | os.PathLike,
    *,
    raters: int,
    accuracy: float,
    neither: float = 0.0,
    careless: int = 0,
    seed: int = 0,
) -> list[Path]:
    """``raters`` answer files ``<out_dir>/<rater>.csv``; the last ``careless`` are careless."""
    if raters < 1 or not 0 <= careless <= raters:
        raise ValueError(
            f"need at least one rater and 0 <= careless <= raters, got {raters} and {careless}"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(raters):
        frame = simulate_rater(
            key,
            index,
            accuracy=accuracy,
            neither=neither,
            careless=index >= raters - careless,
            seed=seed,
        )
        path = out / f"{rater_id(index)}.csv"
        write_text_atomic(path, frame.to_csv(index=False, lineterminator="\n"))
        paths.append(path)
    return paths


__all__ = ["rater_id", "simulate_rater", "write_simulated_answers"]
