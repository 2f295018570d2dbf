"""Table 1 from the two-choice study: % positive / negative / neither, per session and pooled.

An answer is *positive* when the participant chose the image generated from the clip they
heard, *negative* when they chose the other image, *neither* when they said so. Per run the
table gives the pooled percentages, their min–max range across sessions (as the paper
reports it) and a seeded bootstrap 95 % interval that resamples trials (all answers to a
drawn trial come along, so repeated sessions on the same trials are not counted as
independent). A comparison of two runs (``sheets.compare``) is a row ``A vs B`` whose
positive answers chose run A's image; catch trials (real frames) are a row of their own.

Each session is one rater (one exported file). Raters who failed more than
``max_catch_fail`` of their catch trials are left out of every row, and the table says who
and why; for the others each row adds Wilson 95 % intervals per answer kind (answers taken
as independent), Fleiss' kappa and the per-item agreement (:mod:`wavbrivl.sheets.raters`),
and a power section says how many raters would be needed (:mod:`wavbrivl.sheets.power`). Answer files that belong to another study, name unknown trials, or answer a
trial twice in one session are refused with the offending rows named.

Command line::

    python -m wavbrivl.sheets.analysis answers1.csv answers2.csv --key key.json \\
        --out table1.md [--auto auto2afc.json]

writes ``table1.md``, ``table1.tsv`` and ``table1.json`` (same stem as ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from wavbrivl.atomic import write_text_atomic
from wavbrivl.sheets.power import power_rows
from wavbrivl.sheets.raters import fleiss_kappa, screen_raters, wilson_interval
from wavbrivl.sheets.study import read_key
from wavbrivl.sheets.table1_text import OUTCOMES, render_markdown, render_tsv
from wavbrivl.sheets.trials import CHOICES

CSV_COLUMNS: tuple[str, ...] = ("study_id", "trial_id", "choice", "session_id", "timestamp")
N_BOOT = 10_000
CI_LEVEL = 0.95  # Table 1's interval: the level computed is the level reported
MAX_BOOT_WEIGHTS = 20_000_000  # bootstrap weights drawn at once (160 MB of int64)
_MAX_ROWS_NAMED = 20
MAX_CATCH_FAIL = 0.25  # share of failed catch trials a rater may have and still count
CATCH_ROW = "catch trials (real frames)"


class AnswerFileError(ValueError):
    """Answer CSVs that cannot be scored against the key; the message names the rows."""


# --- reading and checking ---------------------------------------------------------------


def read_answers(paths: Sequence[str | os.PathLike], key: Mapping[str, Any]) -> pd.DataFrame:
    """All answers of ``paths`` as one frame (+ ``file``, ``line``), checked against ``key``.

    Every problem in every file is collected first, then raised as one
    :class:`AnswerFileError`, so a participant's file can be fixed in one go.
    """
    if not paths:
        raise AnswerFileError("no answer files given")
    frames, problems = [], []
    for path in paths:
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        except pd.errors.EmptyDataError:
            problems.append(f"{path}: empty file (not even a header)")
            continue
        missing = [c for c in CSV_COLUMNS if c not in frame.columns]
        if missing:
            problems.append(f"{path}: missing column(s) {missing}; expected {list(CSV_COLUMNS)}")
            continue
        if frame.empty:
            problems.append(f"{path}: no answers")
            continue
        frame = frame[list(CSV_COLUMNS)].copy()
        frame["file"] = str(path)
        frame["line"] = np.arange(len(frame)) + 2  # line 1 is the header
        frames.append(frame)
    if frames:
        answers = pd.concat(frames, ignore_index=True)
        problems += _row_problems(answers, key)
    if problems:
        raise AnswerFileError("refused answer file(s):\n  " + "\n  ".join(problems))
    return answers


def _row_problems(answers: pd.DataFrame, key: Mapping[str, Any]) -> list[str]:
    known_trials = {t["trial_id"] for t in key["trials"]}
    checks = [
        (answers["study_id"] != key["study_id"], f"study_id is not {key['study_id']!r}"),
        (~answers["trial_id"].isin(known_trials), "trial_id not in the answer key"),
        (~answers["choice"].isin(CHOICES), f"choice not one of {list(CHOICES)}"),
        (answers["session_id"].str.strip() == "", "empty session_id"),
        (
            answers.duplicated(["session_id", "trial_id"], keep=False),
            "trial answered more than once in the same session",
        ),
    ]
    return [_name_rows(answers[mask], reason) for mask, reason in checks if mask.any()]


def _name_rows(rows: pd.DataFrame, reason: str) -> str:
    named = [
        f"{r.file} line {r.line} (study_id={r.study_id!r}, trial_id={r.trial_id!r}, "
        f"session_id={r.session_id!r}, choice={r.choice!r})"
        for r in rows.head(_MAX_ROWS_NAMED).itertuples()
    ]
    more = (
        f"\n    ... and {len(rows) - _MAX_ROWS_NAMED} more" if len(rows) > _MAX_ROWS_NAMED else ""
    )
    return f"{reason}: {len(rows)} row(s):\n    " + "\n    ".join(named) + more


def row_name(trial: Mapping[str, Any]) -> str:
    """The Table-1 row of a key's trial: its run, ``A vs B`` (comparison) or the catch row."""
    kind = trial.get("kind")  # a key without kinds (the first study kit) has only match trials
    if kind == "catch":
        return CATCH_ROW
    if kind == "compare":
        return f"{trial['run']} vs {trial['other_run']}"
    return trial["run"]


def score_answers(answers: pd.DataFrame, key: Mapping[str, Any]) -> pd.DataFrame:
    """Add ``run`` (the Table-1 row, :func:`row_name`), ``kind`` and ``outcome`` (positive /
    negative / neither) to checked answers."""
    trials = {t["trial_id"]: t for t in key["trials"]}
    scored = answers.copy()
    scored["run"] = [row_name(trials[tid]) for tid in scored["trial_id"]]
    scored["kind"] = [trials[tid].get("kind", "match") for tid in scored["trial_id"]]
    match = np.array([trials[tid]["match_side"] for tid in scored["trial_id"]])
    choice = scored["choice"].to_numpy()
    scored["outcome"] = np.where(
        choice == "neither", "neither", np.where(choice == match, "positive", "negative")
    )
    return scored


# --- statistics ---------------------------------------------------------------------------


def percentages(counts: np.ndarray) -> np.ndarray:
    """Counts (..., K) -> percentages of the last axis (NaN where there is nothing)."""
    counts = np.asarray(counts, dtype=float)
    total = counts.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 100.0 * counts / total


def bootstrap_percent_ci(
    trial_counts: np.ndarray, n_boot: int = N_BOOT, seed: int = 0, level: float = CI_LEVEL
) -> np.ndarray:
    """Percentile bootstrap interval for pooled percentages, resampling trials.

    trial_counts (T, K): per trial the number of answers in each of K categories (several
    sessions answer the same trial). Returns (K, 2) low/high percentages.
    """
    counts = np.asarray(trial_counts, dtype=float)
    n_trials = counts.shape[0]
    if n_trials == 0:
        raise ValueError("no trials to bootstrap")
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_boot, MAX_BOOT_WEIGHTS // n_trials))  # bound the (chunk, T) weights
    stats = []
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        weights = rng.multinomial(n_trials, np.full(n_trials, 1.0 / n_trials), size=size)
        stats.append(percentages(weights @ counts))  # (size, T) @ (T, K) -> (size, K)
    pct = np.concatenate(stats)
    alpha = (1.0 - level) / 2.0
    return np.nanquantile(pct, [alpha, 1.0 - alpha], axis=0).T  # (K, 2)


def screen_sessions(scored: pd.DataFrame, max_catch_fail: float) -> list[dict[str, Any]]:
    """Per session (rater): catch trials answered and failed, excluded or not, and why."""
    catch = scored["kind"] == "catch"
    failed = catch & (scored["outcome"] != "positive")
    per_session = {
        str(session): (int(catch[rows.index].sum()), int(failed[rows.index].sum()))
        for session, rows in scored.groupby("session_id", sort=True)
    }
    return [
        {
            "session_id": r.rater,
            "n_catch": r.n_catch,
            "n_failed": r.n_failed,
            "excluded": r.excluded,
            "reason": r.reason,
        }
        for r in screen_raters(per_session, max_catch_fail)
    ]


def agreement(counts: pd.DataFrame) -> dict[str, Any]:
    """Fleiss' kappa over a row's trials and each trial's agreement (trials x outcomes)."""
    fleiss = fleiss_kappa(counts.to_numpy())
    n_raters = counts.sum(axis=1)
    rated = counts.index[n_raters.to_numpy() >= 2]
    return {
        "fleiss_kappa": _nan_to_none(fleiss.kappa),
        "observed": _nan_to_none(fleiss.observed),
        "expected": _nan_to_none(fleiss.expected),
        "n_items": fleiss.n_items,
        "items": [
            {"trial_id": str(tid), "n_raters": int(n_raters[tid]), "agreement": float(a)}
            for tid, a in zip(rated, fleiss.per_item, strict=True)
        ],
    }


def _nan_to_none(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def table1(
    scored: pd.DataFrame,
    key: Mapping[str, Any],
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
    max_catch_fail: float = MAX_CATCH_FAIL,
) -> dict[str, Any]:
    """Table 1 as a JSON-serialisable dict (percent values, not rounded)."""
    rows_in_key = list(dict.fromkeys(row_name(t) for t in key["trials"]))
    raters = screen_sessions(scored, max_catch_fail)
    excluded = {r["session_id"] for r in raters if r["excluded"]}
    kept = scored[~scored["session_id"].isin(excluded)]
    result: dict[str, Any] = {
        "study_id": key["study_id"],
        "n_boot": n_boot,
        "seed": seed,
        "ci_level": CI_LEVEL,
        "max_catch_fail": max_catch_fail,
        "raters": raters,
        "runs": {},
    }
    for run in rows_in_key:
        rows = kept[kept["run"] == run]
        if rows.empty:
            continue
        counts = pd.crosstab(rows["trial_id"], rows["outcome"]).reindex(
            columns=list(OUTCOMES), fill_value=0
        )
        totals = counts.to_numpy().sum(axis=0)
        pooled = percentages(totals)
        ci = bootstrap_percent_ci(counts.to_numpy(), n_boot, seed)
        sessions = []
        for session_id, session_rows in rows.groupby("session_id", sort=True):
            n = session_rows["outcome"].value_counts().reindex(list(OUTCOMES), fill_value=0)
            pct = percentages(n.to_numpy())
            sessions.append(
                {"session_id": session_id, "n_answers": int(n.sum())}
                | {o: float(p) for o, p in zip(OUTCOMES, pct, strict=True)}
            )
        result["runs"][run] = {
            "kind": str(rows["kind"].iloc[0]),
            "n_trials_in_key": sum(row_name(t) == run for t in key["trials"]),
            "n_trials_answered": int(counts.shape[0]),
            "n_sessions": len(sessions),
            "n_answers": int(len(rows)),
            "pooled": {o: float(p) for o, p in zip(OUTCOMES, pooled, strict=True)},
            "range": {
                o: [min(s[o] for s in sessions), max(s[o] for s in sessions)] for o in OUTCOMES
            },
            "ci95": {o: [float(lo), float(hi)] for o, (lo, hi) in zip(OUTCOMES, ci, strict=True)},
            "wilson95": {
                o: [100.0 * b for b in wilson_interval(int(k), int(totals.sum()))]
                for o, k in zip(OUTCOMES, totals, strict=True)
            },
            "agreement": agreement(counts),
            "sessions": sessions,
        }
    per_match_run = [r["n_trials_in_key"] for r in result["runs"].values() if r["kind"] == "match"]
    if per_match_run:  # comparisons and catch trials alone have no power section
        trials_per_rater = max(per_match_run)
        result["power"] = {
            "trials_per_rater": trials_per_rater,
            "rows": power_rows(trials_per_rater),
        }
    return result


# --- writing ------------------------------------------------------------------------------


def write_table1(
    table: Mapping[str, Any], out_md: str | os.PathLike, auto: Mapping[str, Any] | None = None
) -> tuple[Path, Path, Path]:
    """Write ``<stem>.md``, ``<stem>.tsv`` and ``<stem>.json`` next to ``out_md``."""
    out_md = Path(out_md)
    paths = (out_md, out_md.with_suffix(".tsv"), out_md.with_suffix(".json"))
    write_text_atomic(paths[0], render_markdown(table, auto))
    write_text_atomic(paths[1], render_tsv(table, auto))
    payload = dict(table) | ({"automatic": dict(auto)} if auto else {})
    write_text_atomic(paths[2], json.dumps(payload, indent=1, ensure_ascii=False) + "\n")
    return paths


def analyse(
    answer_paths: Sequence[str | os.PathLike],
    key_path: str | os.PathLike,
    out_md: str | os.PathLike,
    *,
    auto_path: str | os.PathLike | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
    max_catch_fail: float = MAX_CATCH_FAIL,
) -> dict[str, Any]:
    """Read, check, score and write Table 1 (the one call a workflow script makes)."""
    key = read_key(key_path)
    scored = score_answers(read_answers(answer_paths, key), key)
    table = table1(scored, key, n_boot=n_boot, seed=seed, max_catch_fail=max_catch_fail)
    auto = None
    if auto_path is not None:
        auto = json.loads(Path(auto_path).read_text(encoding="utf-8"))
        if auto.get("study_id") != key["study_id"]:
            raise ValueError(
                f"{auto_path}: automatic score is for study {auto.get('study_id')!r}, "
                f"the key is {key['study_id']!r}"
            )
    write_table1(table, out_md, auto)
    return table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m wavbrivl.sheets.analysis", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("answers", nargs="+", help="answer CSVs exported from the study page")
    parser.add_argument("--key", required=True, help="the study's answer key (JSON)")
    parser.add_argument("--out", required=True, help="Table 1 markdown; .tsv/.json go beside it")
    parser.add_argument("--auto", help="automatic two-choice scores (JSON from auto2afc)")
    parser.add_argument("--n-boot", type=int, default=N_BOOT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--max-catch-fail",
        type=float,
        default=MAX_CATCH_FAIL,
        help="share of failed catch trials above which a rater is excluded",
    )
    args = parser.parse_args(argv)
    try:
        analyse(
            args.answers,
            args.key,
            args.out,
            auto_path=args.auto,
            n_boot=args.n_boot,
            seed=args.seed,
            max_catch_fail=args.max_catch_fail,
        )
    except (AnswerFileError, ValueError, KeyError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} (+ .tsv, .json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
