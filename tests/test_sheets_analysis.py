"""Table 1 of the two-choice study (``wavbrivl.sheets.analysis``), on small hand-made inputs.

The answer key and the answers are written here by hand (no study page, no media), so every
expected count, percentage and line of output below is worked out from the fixture itself.
The statistical meaning of the bootstrap interval (that it is the 95 % one) is checked in
``tests/test_sheets.py`` against the exact resampling law; here the interval is compared with
the same resampling written out in one plain numpy draw, to pin its defaults and arguments.
"""

from __future__ import annotations

import csv
import json
import locale
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from wavbrivl.sheets import analysis
from wavbrivl.sheets.analysis import (
    AnswerFileError,
    analyse,
    bootstrap_percent_ci,
    main,
    percentages,
    read_answers,
    render_markdown,
    render_tsv,
    row_name,
    score_answers,
    table1,
    write_table1,
)

STUDY = "wavbrivl-0123abcd4567"
HEADER = ["study_id", "trial_id", "choice", "session_id", "timestamp"]
OUTCOME_NAMES = ("positive", "negative", "neither")

# Runs in the key's order (not alphabetical): "zeta" first, "empty" has no answers at all,
# "alpha" has a trial nobody answered. Trial id -> (run, side of the matching image).
TRIALS = {
    "z1": ("zeta", "left"),
    "z2": ("zeta", "right"),
    "z3": ("zeta", "left"),
    "z4": ("zeta", "right"),
    "e1": ("empty", "left"),
    "a1": ("alpha", "right"),
    "a2": ("alpha", "left"),
    "a3": ("alpha", "left"),
}
KEY = {
    "format": "wavbrivl-2afc-key/1",
    "study_id": STUDY,
    "runs": {"zeta": "gen/zeta", "empty": "gen/empty", "alpha": "gen/alpha"},
    "trials": [
        {"trial_id": t, "run": run, "match_side": side} for t, (run, side) in TRIALS.items()
    ],
}

# Session s2 (its file is read first): zeta z1 z2 z3 positive, z4 negative; alpha a1
# positive, a2 negative. Session s1: zeta z1 positive, z2 z3 neither; alpha a1 positive.
S2 = [("z1", "left"), ("z2", "right"), ("z3", "left"), ("z4", "left"), ("a1", "right")]
S2 += [("a2", "right")]
S1 = [("z1", "left"), ("z2", "neither"), ("z3", "neither"), ("a1", "right")]

# Worked out by hand from S1 and S2. Per run, the answers per trial in trial id order,
# columns positive / negative / neither.
ZETA_TRIAL_COUNTS = [[2, 0, 0], [1, 0, 1], [1, 0, 1], [0, 1, 0]]
ALPHA_TRIAL_COUNTS = [[2, 0, 0], [0, 1, 0]]
EXPECTED_RUNS = {
    "zeta": {
        "n_trials_in_key": 4,
        "n_trials_answered": 4,
        "n_sessions": 2,
        "n_answers": 7,
        "pooled": {"positive": 400 / 7, "negative": 100 / 7, "neither": 200 / 7},
        "range": {"positive": [100 / 3, 75.0], "negative": [0.0, 25.0], "neither": [0.0, 200 / 3]},
        "sessions": [
            {"session_id": "s1", "n_answers": 3, "positive": 100 / 3, "negative": 0.0}
            | {"neither": 200 / 3},
            {"session_id": "s2", "n_answers": 4, "positive": 75.0, "negative": 25.0}
            | {"neither": 0.0},
        ],
    },
    "alpha": {
        "n_trials_in_key": 3,
        "n_trials_answered": 2,
        "n_sessions": 2,
        "n_answers": 3,
        "pooled": {"positive": 200 / 3, "negative": 100 / 3, "neither": 0.0},
        "range": {"positive": [50.0, 100.0], "negative": [0.0, 50.0], "neither": [0.0, 0.0]},
        "sessions": [
            {"session_id": "s1", "n_answers": 1, "positive": 100.0, "negative": 0.0}
            | {"neither": 0.0},
            {"session_id": "s2", "n_answers": 2, "positive": 50.0, "negative": 50.0}
            | {"neither": 0.0},
        ],
    },
}


def write_csv(path: Path, rows: list[dict], header: list[str] = HEADER) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return path


def rows_for(session: str, picks: list[tuple[str, str]], study: str = STUDY) -> list[dict]:
    return [
        {
            "study_id": study,
            "trial_id": trial,
            "choice": choice,
            "session_id": session,
            "timestamp": "2026-01-01T00:00:00Z",
        }
        for trial, choice in picks
    ]


def answer_files(folder: Path) -> list[Path]:
    return [
        write_csv(folder / "s2.csv", rows_for("s2", S2)),
        write_csv(folder / "s1.csv", rows_for("s1", S1)),
    ]


def write_key(folder: Path) -> Path:
    path = folder / "key.json"
    path.write_text(json.dumps(KEY))
    return path


def rounded(value, digits: int = 9):
    """Floats rounded all through a nested dict / list, to compare hand-computed fractions."""
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v, digits) for v in value]
    return round(value, digits) if isinstance(value, float) else value


def reference_interval(trial_counts, n_boot: int, seed: int, level: float = 0.95) -> np.ndarray:
    """The trial bootstrap in one numpy draw: n_boot resamples of T trials with replacement
    (counts of each trial drawn), pooled percentages, then the level's central quantiles.
    The function under test draws in chunks only to bound memory: same draws, same result."""
    counts = np.asarray(trial_counts, dtype=float)
    n = len(counts)
    drawn = np.random.default_rng(seed).multinomial(n, [1.0 / n] * n, size=n_boot)
    totals = drawn @ counts
    pct = 100 * totals / totals.sum(axis=1, keepdims=True)
    tail = (1 - level) / 2
    return np.quantile(pct, [tail, 1 - tail], axis=0).T


# --- reading and checking -------------------------------------------------------------------


def test_no_answer_files_is_refused():
    with pytest.raises(AnswerFileError, match="^no answer files given$"):
        read_answers([], KEY)


def test_every_broken_file_is_named_in_one_message(tmp_path):
    """A file that cannot be read does not stop the check of the files after it."""
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    no_time = write_csv(tmp_path / "no_time.csv", [], header=HEADER[:4])
    header_only = write_csv(tmp_path / "header_only.csv", [])
    rows = rows_for("s1", [("z1", "left"), ("z2", "left")])
    rows[1]["study_id"] = "wavbrivl-other"
    wrong_study = write_csv(tmp_path / "wrong_study.csv", rows)
    with pytest.raises(AnswerFileError) as err:
        read_answers([empty, no_time, header_only, wrong_study], KEY)
    assert str(err.value) == (
        "refused answer file(s):\n"
        f"  {empty}: empty file (not even a header)\n"
        f"  {no_time}: missing column(s) ['timestamp']; "
        "expected ['study_id', 'trial_id', 'choice', 'session_id', 'timestamp']\n"
        f"  {header_only}: no answers\n"
        f"  study_id is not '{STUDY}': 1 row(s):\n"
        f"    {wrong_study} line 3 (study_id='wavbrivl-other', trial_id='z2', "
        "session_id='s1', choice='left')"
    )


def test_each_row_problem_is_named_with_its_rows(tmp_path):
    picks = [("z1", "left"), ("z2", "left"), ("x9", "left"), ("z3", "Left"), ("z1", "right")]
    picks += [("a1", "left"), ("a1", "right")]
    rows = rows_for("s1", picks)
    rows[1]["study_id"] = "other"
    rows[4]["session_id"] = "   "  # blank after stripping
    path = write_csv(tmp_path / "a.csv", rows)

    def row(line, trial, choice, session="s1", study=STUDY):
        return (
            f"\n    {path} line {line} (study_id={study!r}, trial_id={trial!r}, "
            f"session_id={session!r}, choice={choice!r})"
        )

    with pytest.raises(AnswerFileError) as err:
        read_answers([path], KEY)
    assert str(err.value) == (
        "refused answer file(s):"
        f"\n  study_id is not '{STUDY}': 1 row(s):"
        + row(3, "z2", "left", study="other")
        + "\n  trial_id not in the answer key: 1 row(s):"
        + row(4, "x9", "left")
        + "\n  choice not one of ['left', 'right', 'neither']: 1 row(s):"
        + row(5, "z3", "Left")
        + "\n  empty session_id: 1 row(s):"
        + row(6, "z1", "right", session="   ")
        + "\n  trial answered more than once in the same session: 2 row(s):"
        + row(7, "a1", "left")
        + row(8, "a1", "right")
    )


def test_an_empty_session_id_is_refused_not_read_as_missing(tmp_path):
    """An empty CSV cell must stay "" (pandas would make it NaN and slip past the check)."""
    rows = rows_for("", [("z1", "left")])
    with pytest.raises(AnswerFileError, match="empty session_id: 1 row"):
        read_answers([write_csv(tmp_path / "a.csv", rows)], KEY)


def test_answers_of_several_files_form_one_frame_as_written(tmp_path):
    """Session ids as written ("007" stays a string, "NA" is not a missing value), each row
    with its file and line, the rows of all files numbered 0..n-1 in one frame."""
    files = [
        write_csv(tmp_path / "a.csv", rows_for("007", [("z1", "left")])),
        write_csv(tmp_path / "b.csv", rows_for("NA", [("z1", "right")])),
    ]
    answers = read_answers(files, KEY)
    assert list(answers["session_id"]) == ["007", "NA"]
    assert list(answers["file"]) == [str(f) for f in files]
    assert list(answers["line"]) == [2, 2]
    assert list(answers.index) == [0, 1]  # one frame: no index label repeated across files
    sessions = table1(score_answers(answers, KEY), KEY, n_boot=10)["runs"]["zeta"]["sessions"]
    assert [s["session_id"] for s in sessions] == ["007", "NA"]


@pytest.mark.parametrize(("n_bad", "tail"), [(20, ""), (21, "\n    ... and 1 more")])
def test_at_most_twenty_rows_are_named_per_problem(tmp_path, n_bad, tail):
    rows = rows_for("s1", [(f"x{i:02d}", "left") for i in range(n_bad)])
    path = write_csv(tmp_path / "a.csv", rows)
    with pytest.raises(AnswerFileError) as err:
        read_answers([path], KEY)
    message = str(err.value)
    assert f"trial_id not in the answer key: {n_bad} row(s):" in message
    assert message.count(f"{path} line ") == 20
    assert f"line 21 (study_id='{STUDY}', trial_id='x19'" in message  # the 20th row
    assert message.endswith("choice='left')" + tail)


def test_scoring_compares_the_choice_with_the_matching_side():
    answers = pd.DataFrame(
        {
            "trial_id": ["z1", "z2", "z3", "z4", "a1"],
            "choice": ["left", "left", "neither", "right", "right"],
        }
    )
    scored = score_answers(answers, KEY)
    assert list(scored["run"]) == ["zeta", "zeta", "zeta", "zeta", "alpha"]
    assert list(scored["outcome"]) == ["positive", "negative", "neither", "positive", "positive"]
    assert "outcome" not in answers  # the input frame is left alone


# --- statistics -----------------------------------------------------------------------------


def test_percentages_of_each_row_and_nan_without_a_warning_for_an_empty_row():
    counts = np.array([[1, 3, 0], [0, 0, 0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 0 / 0 must not warn
        pct = percentages(counts)
    np.testing.assert_array_equal(pct[0], [25.0, 75.0, 0.0])
    assert np.isnan(pct[1]).all()
    np.testing.assert_array_equal(percentages([2, 6, 12]), [10.0, 30.0, 60.0])


def test_bootstrap_of_one_trial_is_that_trial():
    """Every resample of a single trial is that trial: the interval collapses onto it."""
    ci = bootstrap_percent_ci(np.array([[1, 3, 0]]), n_boot=50)
    np.testing.assert_allclose(ci, [[25.0, 25.0], [75.0, 75.0], [0.0, 0.0]])


def test_bootstrap_refuses_no_trials():
    with pytest.raises(ValueError, match="^no trials to bootstrap$"):
        bootstrap_percent_ci(np.zeros((0, 3)))


def test_bootstrap_defaults_are_10000_resamples_seed_0_and_95_percent():
    rng = np.random.default_rng(11)
    counts = rng.integers(0, 4, size=(40, 3)) + np.eye(3, dtype=int)[np.arange(40) % 3]
    np.testing.assert_allclose(
        bootstrap_percent_ci(counts), reference_interval(counts, 10_000, 0), rtol=0, atol=1e-9
    )
    np.testing.assert_allclose(
        bootstrap_percent_ci(counts, n_boot=300, seed=4, level=0.5),
        reference_interval(counts, 300, 4, level=0.5),
        rtol=0,
        atol=1e-9,
    )


def test_bootstrap_drawn_in_chunks_is_the_one_draw(monkeypatch):
    # 40 trials and at most 1000 weights at once: chunks of 25 resamples, the last one of 10.
    monkeypatch.setattr(analysis, "MAX_BOOT_WEIGHTS", 1000)
    rng = np.random.default_rng(5)
    counts = rng.integers(0, 4, size=(40, 3)) + np.eye(3, dtype=int)[np.arange(40) % 3]
    np.testing.assert_allclose(
        bootstrap_percent_ci(counts, n_boot=310, seed=2),
        reference_interval(counts, 310, 2),
        rtol=0,
        atol=1e-9,
    )


# --- Table 1 --------------------------------------------------------------------------------


@pytest.mark.parametrize(("n_boot", "seed"), [(None, None), (300, 5)], ids=["defaults", "given"])
def test_table1_by_hand(tmp_path, n_boot, seed):
    """Runs in the key's order, the unanswered run left out, sessions sorted, every count
    and percentage as worked out by hand; the interval is the trial bootstrap of that run."""
    scored = score_answers(read_answers(answer_files(tmp_path), KEY), KEY)
    given = {} if n_boot is None else {"n_boot": n_boot, "seed": seed}
    table = table1(scored, KEY, **given)
    n_boot, seed = (10_000, 0) if n_boot is None else (n_boot, seed)
    assert table.keys() == {
        "study_id",
        "n_boot",
        "seed",
        "ci_level",
        "runs",
        "max_catch_fail",
        "raters",
        "power",
    }
    assert (table["study_id"], table["n_boot"], table["seed"]) == (STUDY, n_boot, seed)
    assert table["ci_level"] == 0.95
    assert table["max_catch_fail"] == 0.25
    # No catch trials in this key: both raters are kept, and said why.
    assert table["raters"] == [
        {"session_id": s, "n_catch": 0, "n_failed": 0, "excluded": False}
        | {"reason": "answered no catch trial"}
        for s in ("s1", "s2")
    ]
    # Each rater answers at most 4 trials of a run (zeta): 194 answers -> 49 raters, ...
    assert table["power"]["trials_per_rater"] == 4
    assert [(r["answers"], r["raters"]) for r in table["power"]["rows"]] == [
        (194, 49),
        (47, 12),
        (20, 5),
        (356, 89),
        (294, 74),
    ]
    assert list(table["runs"]) == ["zeta", "alpha"]
    for run, trial_counts in (("zeta", ZETA_TRIAL_COUNTS), ("alpha", ALPHA_TRIAL_COUNTS)):
        got = dict(table["runs"][run])
        assert got.pop("kind") == "match"
        assert rounded(got.pop("wilson95")) == rounded(EXPECTED_WILSON[run])
        assert rounded(got.pop("agreement")) == rounded(EXPECTED_AGREEMENT[run])
        ci = got.pop("ci95")
        assert rounded(got) == rounded(EXPECTED_RUNS[run])
        expect_ci = reference_interval(trial_counts, n_boot, seed).tolist()
        assert rounded(ci) == rounded(
            dict(zip(["positive", "negative", "neither"], expect_ci, strict=True))
        )
    assert table["runs"]["alpha"]["ci95"]["neither"] == [0.0, 0.0]


def test_table1_draws_its_interval_with_the_seed_it_is_given(tmp_path):
    # 30 trials of one run, one answer each (positive, negative, neither in turn but every
    # seventh negative): enough trials that the interval moves with the seed.
    choices = ["left", "right", "neither"]
    picks = [(f"t{i:02d}", "right" if i % 7 == 0 else choices[i % 3]) for i in range(30)]
    key = KEY | {
        "runs": {"zeta": "gen/zeta"},
        "trials": [{"trial_id": t, "run": "zeta", "match_side": "left"} for t, _ in picks],
    }
    outcome = {"left": [1, 0, 0], "right": [0, 1, 0], "neither": [0, 0, 1]}
    trial_counts = [outcome[choice] for _, choice in picks]
    scored = score_answers(
        read_answers([write_csv(tmp_path / "s.csv", rows_for("s", picks))], key), key
    )
    ci = table1(scored, key, n_boot=400, seed=9)["runs"]["zeta"]["ci95"]
    expected = reference_interval(trial_counts, 400, 9)
    assert not np.allclose(expected, reference_interval(trial_counts, 400, 10))  # seed-bound
    np.testing.assert_allclose([ci[o] for o in OUTCOME_NAMES], expected, rtol=0, atol=1e-9)


def wilson_by_quadratic(k: int, n: int) -> list[float]:
    """The Wilson interval as the two roots of (k/n - p)^2 = z^2 p (1 - p) / n, in percent."""
    z2 = 1.959963984540054**2
    phat = k / n
    a, b, c = 1 + z2 / n, -(2 * phat + z2 / n), phat**2
    root = np.sqrt(b * b - 4 * a * c)
    return [100 * (-b - root) / (2 * a), 100 * (-b + root) / (2 * a)]


# zeta answers 4 / 1 / 2 of 7, alpha 2 / 1 / 0 of 3.
EXPECTED_WILSON = {
    "zeta": {o: wilson_by_quadratic(k, 7) for o, k in zip(OUTCOME_NAMES, (4, 1, 2), strict=True)},
    "alpha": {o: wilson_by_quadratic(k, 3) for o, k in zip(OUTCOME_NAMES, (2, 1, 0), strict=True)},
}
# Trials answered by two raters: zeta z1 (both positive: agreement 1), z2 and z3 (positive
# + neither: 0); z4 has one rater. Mean agreement 1/3; the shares of those six answers are
# 4/6 positive and 2/6 neither, chance agreement 16/36 + 4/36 = 5/9, so
# kappa = (1/3 - 5/9) / (1 - 5/9) = -1/2. alpha: only a1 (both positive): agreement 1,
# chance 1, kappa undefined.
EXPECTED_AGREEMENT = {
    "zeta": {
        "fleiss_kappa": -0.5,
        "observed": 1 / 3,
        "expected": 5 / 9,
        "n_items": 3,
        "items": [
            {"trial_id": "z1", "n_raters": 2, "agreement": 1.0},
            {"trial_id": "z2", "n_raters": 2, "agreement": 0.0},
            {"trial_id": "z3", "n_raters": 2, "agreement": 0.0},
        ],
    },
    "alpha": {
        "fleiss_kappa": None,
        "observed": 1.0,
        "expected": 1.0,
        "n_items": 1,
        "items": [{"trial_id": "a1", "n_raters": 2, "agreement": 1.0}],
    },
}


# --- writing --------------------------------------------------------------------------------

# A table written by hand (not by table1): a run name with a "|", session ids with a newline
# and a tab, values that round differently at one and four decimals.
TABLE = {
    "study_id": STUDY,
    "n_boot": 500,
    "seed": 7,
    "ci_level": 0.95,
    "runs": {
        "enc|b": {
            "n_trials_in_key": 4,
            "n_trials_answered": 4,
            "n_sessions": 2,
            "n_answers": 7,
            "pooled": {"positive": 57.14286, "negative": 14.28571, "neither": 28.57143},
            "range": {
                "positive": [33.33333, 75.0],
                "negative": [0.0, 25.0],
                "neither": [0.0, 66.66667],
            },
            "ci95": {
                "positive": [28.57143, 85.71429],
                "negative": [0.0, 42.85714],
                "neither": [0.0, 71.42857],
            },
            "sessions": [
                {"session_id": "s1\nx", "n_answers": 3, "positive": 33.33333, "negative": 0.0}
                | {"neither": 66.66667},
                {"session_id": "s2", "n_answers": 4, "positive": 75.0, "negative": 25.0}
                | {"neither": 0.0},
            ],
        },
        "enc-a": {
            "n_trials_in_key": 3,
            "n_trials_answered": 3,
            "n_sessions": 1,
            "n_answers": 3,
            "pooled": {"positive": 66.66667, "negative": 33.33333, "neither": 0.0},
            "range": {
                "positive": [66.66667, 66.66667],
                "negative": [33.33333, 33.33333],
                "neither": [0.0, 0.0],
            },
            "ci95": {
                "positive": [33.33333, 100.0],
                "negative": [0.0, 66.66667],
                "neither": [0.0, 0.0],
            },
            "sessions": [
                {"session_id": "0\t7", "n_answers": 3, "positive": 66.66667}
                | {"negative": 33.33333, "neither": 0.0},
            ],
        },
    },
}
# Automatic scores for one of the two runs only.
AUTO = {
    "study_id": STUDY,
    "runs": {"enc|b": {"percent_correct": 75.0, "ci95": [50.0, 100.0], "n_trials": 4}},
}

MARKDOWN_HEAD = f"""# Table 1: two-choice study {STUDY}

Cells: pooled % (min–max across sessions) [bootstrap 95 % interval, 500 resamples of trials, seed 7].
"""
ROW_B = (
    "| enc\\|b | 2 | 7 | 57.1 (33.3–75.0) [28.6, 85.7] | 14.3 (0.0–25.0) [0.0, 42.9] "
    "| 28.6 (0.0–66.7) [0.0, 71.4] |"
)
ROW_A = (
    "| enc-a | 1 | 3 | 66.7 (66.7–66.7) [33.3, 100.0] | 33.3 (33.3–33.3) [0.0, 66.7] "
    "| 0.0 (0.0–0.0) [0.0, 0.0] |"
)
MARKDOWN_SESSIONS = """
## Sessions

| run | session | answers | positive % | negative % | neither % |
|---|---|---|---|---|---|
| enc\\|b | s1 x | 3 | 33.3 | 0.0 | 66.7 |
| enc\\|b | s2 | 4 | 75.0 | 25.0 | 0.0 |
| enc-a | 0\t7 | 3 | 66.7 | 33.3 | 0.0 |
"""


def test_markdown_table_without_automatic_scores():
    expected = (
        MARKDOWN_HEAD
        + "\n| run | sessions | answers | positive % | negative % | neither % |\n"
        + "|---|---|---|---|---|---|\n"
        + f"{ROW_B}\n{ROW_A}\n"
        + MARKDOWN_SESSIONS
    )
    assert render_markdown(TABLE) == expected
    assert render_markdown(TABLE, {"study_id": STUDY, "runs": {}}) == expected


def test_markdown_table_with_automatic_scores_and_a_dash_where_a_run_has_none():
    expected = (
        MARKDOWN_HEAD
        + "\n| run | sessions | answers | positive % | negative % | neither % "
        + "| automatic % correct |\n"
        + "|---|---|---|---|---|---|---|\n"
        + f"{ROW_B[:-1]}| 75.0 [50.0, 100.0] (n=4) |\n"
        + f"{ROW_A[:-1]}| – |\n"
        + "\nAutomatic: the audio target embedding prefers the matching image under the frozen "
        + "image encoder (cosine), same trials; ties count half.\n"
        + MARKDOWN_SESSIONS
    )
    assert render_markdown(TABLE, AUTO) == expected


TSV_ROWS = [
    "run\tscope\tsession_id\tn_answers\toutcome\tpercent\tci95_low\tci95_high\trange_min\trange_max",
    "enc|b\tpooled\t\t7\tpositive\t57.1429\t28.5714\t85.7143\t33.3333\t75.0000",
    "enc|b\tpooled\t\t7\tnegative\t14.2857\t0.0000\t42.8571\t0.0000\t25.0000",
    "enc|b\tpooled\t\t7\tneither\t28.5714\t0.0000\t71.4286\t0.0000\t66.6667",
    "enc|b\tsession\ts1 x\t3\tpositive\t33.3333\t\t\t\t",
    "enc|b\tsession\ts1 x\t3\tnegative\t0.0000\t\t\t\t",
    "enc|b\tsession\ts1 x\t3\tneither\t66.6667\t\t\t\t",
    "enc|b\tsession\ts2\t4\tpositive\t75.0000\t\t\t\t",
    "enc|b\tsession\ts2\t4\tnegative\t25.0000\t\t\t\t",
    "enc|b\tsession\ts2\t4\tneither\t0.0000\t\t\t\t",
    "enc-a\tpooled\t\t3\tpositive\t66.6667\t33.3333\t100.0000\t66.6667\t66.6667",
    "enc-a\tpooled\t\t3\tnegative\t33.3333\t0.0000\t66.6667\t33.3333\t33.3333",
    "enc-a\tpooled\t\t3\tneither\t0.0000\t0.0000\t0.0000\t0.0000\t0.0000",
    "enc-a\tsession\t0 7\t3\tpositive\t66.6667\t\t\t\t",
    "enc-a\tsession\t0 7\t3\tnegative\t33.3333\t\t\t\t",
    "enc-a\tsession\t0 7\t3\tneither\t0.0000\t\t\t\t",
]
TSV_AUTO_ROW = "enc|b\tautomatic\t\t4\tcorrect\t75.0000\t50.0000\t100.0000\t\t"


def test_tsv_has_ten_columns_in_every_row_and_no_stray_tabs_or_newlines():
    assert render_tsv(TABLE) == "\n".join(TSV_ROWS) + "\n"
    assert render_tsv(TABLE, {"study_id": STUDY}) == "\n".join(TSV_ROWS) + "\n"
    assert render_tsv(TABLE, AUTO) == "\n".join([*TSV_ROWS, TSV_AUTO_ROW]) + "\n"


def test_written_files_sit_beside_the_markdown_and_json_keeps_unicode(tmp_path):
    table = json.loads(json.dumps(TABLE))
    table["runs"]["enc-a"]["sessions"][0]["session_id"] = "Zoë"
    out = tmp_path / "t1.md"
    assert write_table1(table, out) == (out, tmp_path / "t1.tsv", tmp_path / "t1.json")
    assert (tmp_path / "t1.json").read_text(encoding="utf-8") == (
        json.dumps(table, indent=1, ensure_ascii=False) + "\n"
    )
    assert '"session_id": "Zoë"' in (tmp_path / "t1.json").read_text(encoding="utf-8")
    write_table1(table, out, AUTO)
    assert (tmp_path / "t1.json").read_text(encoding="utf-8") == (
        json.dumps(table | {"automatic": AUTO}, indent=1, ensure_ascii=False) + "\n"
    )
    assert out.read_text(encoding="utf-8").count("75.0 [50.0, 100.0] (n=4)") == 1
    assert (tmp_path / "t1.tsv").read_text(encoding="utf-8").endswith(TSV_AUTO_ROW + "\n")


# --- analyse and the command line -------------------------------------------------------------


def test_analyse_adds_the_automatic_scores_of_the_same_study(tmp_path):
    auto = tmp_path / "auto.json"
    auto.write_text(json.dumps({"study_id": STUDY, "runs": {"zeta": AUTO["runs"]["enc|b"]}}))
    out = tmp_path / "out" / "table1.md"
    table = analyse(answer_files(tmp_path), write_key(tmp_path), out, auto_path=auto, n_boot=20)
    assert list(table["runs"]) == ["zeta", "alpha"] and table["n_boot"] == 20
    assert table["runs"]["zeta"]["pooled"] == pytest.approx(EXPECTED_RUNS["zeta"]["pooled"])
    assert "| 75.0 [50.0, 100.0] (n=4) |" in out.read_text(encoding="utf-8")
    written = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert written["automatic"]["runs"]["zeta"]["n_trials"] == 4
    assert written["seed"] == 0


def test_analyse_refuses_automatic_scores_of_another_study(tmp_path):
    auto = tmp_path / "auto.json"
    auto.write_text(json.dumps({"study_id": "wavbrivl-other", "runs": {}}))
    out = tmp_path / "table1.md"
    with pytest.raises(ValueError) as err:
        analyse(answer_files(tmp_path), write_key(tmp_path), out, auto_path=auto, n_boot=20)
    assert str(err.value) == (
        f"{auto}: automatic score is for study 'wavbrivl-other', the key is '{STUDY}'"
    )
    assert not out.exists()


@pytest.fixture
def ascii_locale():
    """The C locale's ASCII as the default text encoding, for this test only."""
    old = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")
    yield
    locale.setlocale(locale.LC_CTYPE, old)


def test_automatic_scores_are_read_as_utf8_whatever_the_locale(tmp_path, ascii_locale):
    """Run names are free text: a non-ASCII one must not depend on the machine's locale."""
    key = json.loads(json.dumps(KEY).replace('"zeta"', '"z\u00eata"'))
    key_path = tmp_path / "key.json"
    key_path.write_text(json.dumps(key), encoding="utf-8")
    auto = tmp_path / "auto.json"
    payload = {"study_id": STUDY, "runs": {"z\u00eata": AUTO["runs"]["enc|b"]}}
    auto.write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "table1.md"
    analyse(answer_files(tmp_path), key_path, out, auto_path=auto, n_boot=20)
    assert "| z\u00eata | 2 | 7 |" in out.read_text(encoding="utf-8")
    assert "| 75.0 [50.0, 100.0] (n=4) |" in out.read_text(encoding="utf-8")


def test_command_line_defaults_and_options(tmp_path, capsys):
    a, b = answer_files(tmp_path)
    key = write_key(tmp_path)
    out = tmp_path / "t.md"
    assert main([str(a), str(b), "--key", str(key), "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"wrote {out} (+ .tsv, .json)\n"
    written = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert (written["n_boot"], written["seed"]) == (10_000, 0)
    assert written["runs"]["zeta"]["n_answers"] == 7  # both files read
    args = [str(a), "--key", str(key), "--out", str(out), "--n-boot", "30", "--seed", "3"]
    auto = tmp_path / "auto.json"
    auto.write_text(json.dumps(AUTO))
    assert main([*args, "--auto", str(auto)]) == 0
    written = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert (written["n_boot"], written["seed"]) == (30, 3)
    assert written["automatic"] == AUTO


def test_command_line_reports_refusals_on_stderr(tmp_path, capsys):
    auto = tmp_path / "auto.json"
    auto.write_text(json.dumps({"study_id": "wavbrivl-other"}))
    a, _ = answer_files(tmp_path)
    argv = [str(a), "--key", str(write_key(tmp_path)), "--out", str(tmp_path / "t.md")]
    assert main([*argv, "--auto", str(auto)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"error: {auto}: automatic score is for study 'wavbrivl-other', the key is '{STUDY}'\n"
    )


@pytest.mark.parametrize("missing", ["--key", "--out"])
def test_command_line_needs_key_and_out(tmp_path, capsys, missing):
    a, _ = answer_files(tmp_path)
    options = {"--key": str(write_key(tmp_path)), "--out": str(tmp_path / "t.md")}
    del options[missing]
    with pytest.raises(SystemExit) as exit_:
        main([str(a), *[x for item in options.items() for x in item]])
    assert exit_.value.code == 2
    assert f"the following arguments are required: {missing}" in capsys.readouterr().err


def test_command_line_help_names_the_program_and_each_option(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # one line per option
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: python -m wavbrivl.sheets.analysis [-h] --key KEY --out OUT")
    description = (
        "Table 1 from the two-choice study: % positive / negative / neither, per session and "
        "pooled."
    )
    assert f"\n\n{description}\n\n" in text
    for option, help_text in [
        ("answers", "answer CSVs exported from the study page"),
        ("--key KEY", "the study's answer key (JSON)"),
        ("--out OUT", "Table 1 markdown; .tsv/.json go beside it"),
        ("--auto AUTO", "automatic two-choice scores (JSON from auto2afc)"),
    ]:
        assert re.search(rf"^  {re.escape(option)} +{re.escape(help_text)}$", text, re.M), option
    # the longest option's help goes on the next line
    option, help_text = "--max-catch-fail MAX_CATCH_FAIL", "share of failed catch trials above"
    assert re.search(rf"^  {option}\n +{help_text} which a rater is excluded$", text, re.M)


# --- many raters: catch screening, Wilson, agreement, power -----------------------------------

# TABLE plus the v2 parts, written by hand: one excluded rater (with a "|" in the id), a run
# with agreement and one without any (kappa undefined, no items), values that round
# differently at one and three decimals.
TABLE_V2 = {
    **TABLE,
    "max_catch_fail": 0.25,
    "raters": [
        {"session_id": "bad|x", "n_catch": 4, "n_failed": 3, "excluded": True}
        | {"reason": "failed 3 of 4 catch trials (75 %, above the 25 % allowed)"},
        {"session_id": "s1", "n_catch": 4, "n_failed": 0, "excluded": False, "reason": "ok"},
        {"session_id": "s2", "n_catch": 0, "n_failed": 0, "excluded": False, "reason": "none"},
    ],
    "runs": {
        "enc|b": TABLE["runs"]["enc|b"]
        | {
            "wilson95": {
                "positive": [25.04, 84.16],
                "negative": [2.57, 51.31],
                "neither": [8.22, 64.11],
            },
            "agreement": {
                "fleiss_kappa": -0.12345,
                "n_items": 3,
                "items": [{"agreement": 1.0}, {"agreement": 0.33333}, {"agreement": 0.0}],
            },
        },
        "enc-a": TABLE["runs"]["enc-a"]
        | {
            "wilson95": {"positive": [20.77, 93.85], "negative": [6.15, 79.23]}
            | {"neither": [0.0, 56.15]},
            "agreement": {"fleiss_kappa": None, "n_items": 0, "items": []},
        },
    },
    "power": {
        "trials_per_rater": 4,
        "rows": [{"test": "60 % positive vs chance (50 %)", "answers": 194, "raters": 49}],
    },
}
MARKDOWN_V2_TAIL = """
## Raters and agreement

3 rater(s), 1 excluded (failed more than 25 % of their catch trials); the rows above and below count the others only.

| run | positive % [Wilson 95 %] | negative % [Wilson 95 %] | neither % [Wilson 95 %] | Fleiss' κ | item agreement mean (min) | items |
|---|---|---|---|---|---|---|
| enc\\|b | 57.1 [25.0, 84.2] | 14.3 [2.6, 51.3] | 28.6 [8.2, 64.1] | -0.123 | 0.444 (0.000) | 3 |
| enc-a | 66.7 [20.8, 93.8] | 33.3 [6.2, 79.2] | 0.0 [0.0, 56.1] | – | – | 0 |

Wilson intervals take every answer as independent; Fleiss' κ and the item agreement (share of agreeing rater pairs) use the trials answered by at least two raters.

| excluded rater | catch trials | failed | why |
|---|---|---|---|
| bad\\|x | 4 | 3 | failed 3 of 4 catch trials (75 %, above the 25 % allowed) |

## Raters needed

Normal approximation, two-sided α = 0.05, power 0.8, 4 trials of a run per rater, answers taken as independent.

| test | answers | raters |
|---|---|---|
| 60 % positive vs chance (50 %) | 194 | 49 |
"""


def test_markdown_adds_raters_agreement_exclusions_and_power():
    v1 = render_markdown(TABLE)
    assert render_markdown(TABLE_V2) == v1 + MARKDOWN_V2_TAIL
    # 0.6 is 60 %: a share scaled by anything but 100 rounds to another whole percent
    nobody_out = TABLE_V2 | {"raters": TABLE_V2["raters"][1:], "max_catch_fail": 0.6}
    text = render_markdown(nobody_out)
    assert "2 rater(s), 0 excluded (failed more than 60 % of" in text
    assert "| excluded rater |" not in text
    without_power = {k: v for k, v in TABLE_V2.items() if k != "power"}
    assert render_markdown(without_power) == v1 + MARKDOWN_V2_TAIL.split("\n## Raters needed")[0]


def test_tsv_adds_wilson_rows_after_the_pooled_ones():
    rows = render_tsv(TABLE_V2).splitlines()
    assert rows[4:7] == [
        "enc|b\twilson\t\t7\tpositive\t57.1429\t25.0400\t84.1600\t\t",
        "enc|b\twilson\t\t7\tnegative\t14.2857\t2.5700\t51.3100\t\t",
        "enc|b\twilson\t\t7\tneither\t28.5714\t8.2200\t64.1100\t\t",
    ]
    assert rows[:4] == TSV_ROWS[:4] and rows[7:13] == TSV_ROWS[4:10]
    assert len(rows) == len(TSV_ROWS) + 6
    assert rows[16:19] == [
        "enc-a\twilson\t\t3\tpositive\t66.6667\t20.7700\t93.8500\t\t",
        "enc-a\twilson\t\t3\tnegative\t33.3333\t6.1500\t79.2300\t\t",
        "enc-a\twilson\t\t3\tneither\t0.0000\t0.0000\t56.1500\t\t",
    ]


def catch_key() -> dict:
    """KEY plus two catch trials and a comparison trial of zeta against alpha."""
    trials = KEY["trials"] + [
        {"trial_id": "c1", "run": ":real-frames", "kind": "catch", "match_side": "left"},
        {"trial_id": "c2", "run": ":real-frames", "kind": "catch", "match_side": "right"},
        {"trial_id": "p1", "run": "zeta", "other_run": "alpha", "kind": "compare"}
        | {"match_side": "right"},
    ]
    return KEY | {"trials": trials}


def test_raters_failing_catch_trials_are_left_out_of_every_row(tmp_path):
    key = catch_key()
    # s1 fails both catch trials (neither, wrong side); s2 passes one of two; s3 none answered
    files = [
        write_csv(tmp_path / "s1.csv", rows_for("s1", S1 + [("c1", "neither"), ("c2", "left")])),
        write_csv(
            tmp_path / "s2.csv",
            rows_for("s2", S2 + [("c1", "left"), ("c2", "left"), ("p1", "right")]),
        ),
        write_csv(tmp_path / "s3.csv", rows_for("s3", [("z1", "right"), ("p1", "left")])),
    ]
    scored = score_answers(read_answers(files, key), key)
    assert scored.loc[scored["trial_id"] == "p1", "run"].tolist() == ["zeta vs alpha"] * 2
    assert scored.loc[scored["trial_id"] == "c1", "kind"].tolist() == ["catch", "catch"]
    table = table1(scored, key, n_boot=50, max_catch_fail=0.5)
    assert [
        (r["session_id"], r["n_catch"], r["n_failed"], r["excluded"]) for r in table["raters"]
    ] == [
        ("s1", 2, 2, True),
        ("s2", 2, 1, False),
        ("s3", 0, 0, False),
    ]
    assert table["max_catch_fail"] == 0.5
    assert list(table["runs"]) == ["zeta", "alpha", "catch trials (real frames)", "zeta vs alpha"]
    zeta = table["runs"]["zeta"]
    # s2's four zeta answers (3 positive, 1 negative) and s3's z1 (negative)
    assert (zeta["n_sessions"], zeta["n_answers"]) == (2, 5)
    assert zeta["pooled"] == {"positive": 60.0, "negative": 40.0, "neither": 0.0}
    assert [s["session_id"] for s in zeta["sessions"]] == ["s2", "s3"]
    # z1 answered by s2 (positive) and s3 (negative): agreement 0; kappa (0 - 0.5) / 0.5
    assert zeta["agreement"]["items"] == [{"trial_id": "z1", "n_raters": 2, "agreement": 0.0}]
    assert zeta["agreement"]["fleiss_kappa"] == -1.0
    catch = table["runs"]["catch trials (real frames)"]
    assert (catch["kind"], catch["n_answers"], catch["pooled"]["positive"]) == ("catch", 2, 50.0)
    compare = table["runs"]["zeta vs alpha"]
    assert compare["kind"] == "compare" and compare["n_trials_in_key"] == 1
    assert compare["pooled"] == {"positive": 50.0, "negative": 50.0, "neither": 0.0}
    assert table["power"]["trials_per_rater"] == 4  # zeta, a match row (not the 2 catch)
    # a stricter threshold also drops s2; nobody answered more than half wrong is kept at 1.0
    strict = table1(scored, key, n_boot=50, max_catch_fail=0.25)
    assert [r["session_id"] for r in strict["raters"] if r["excluded"]] == ["s1", "s2"]
    lenient = table1(scored, key, n_boot=50, max_catch_fail=1.0)
    assert not any(r["excluded"] for r in lenient["raters"])
    assert lenient["runs"]["zeta"]["n_sessions"] == 3


def test_a_key_of_comparisons_and_catch_trials_has_no_power_section(tmp_path):
    # Power is sized on a match run's trials per rater; without a match run there is none.
    key = catch_key()
    key = key | {"trials": [t for t in key["trials"] if t.get("kind") in ("catch", "compare")]}
    files = [write_csv(tmp_path / "s1.csv", rows_for("s1", [("c1", "left"), ("p1", "right")]))]
    table = table1(score_answers(read_answers(files, key), key), key, n_boot=50)
    assert list(table["runs"]) == ["catch trials (real frames)", "zeta vs alpha"]
    assert "power" not in table


def test_a_trial_without_a_kind_is_a_match_trial():
    assert row_name({"trial_id": "z1", "run": "zeta"}) == "zeta"
    assert row_name({"run": "zeta", "kind": "catch"}) == "catch trials (real frames)"
    assert row_name({"run": "zeta", "other_run": "alpha", "kind": "compare"}) == "zeta vs alpha"


def test_analyse_and_command_line_take_the_catch_threshold(tmp_path, capsys):
    key_path = tmp_path / "key.json"
    key_path.write_text(json.dumps(catch_key()))
    answers = write_csv(tmp_path / "s1.csv", rows_for("s1", [("c1", "left"), ("c2", "left")]))
    out = tmp_path / "t.md"
    assert analyse([answers], key_path, out, n_boot=20)["raters"][0]["excluded"] is True
    assert (
        analyse([answers], key_path, out, n_boot=20, max_catch_fail=0.5)["raters"][0]["excluded"]
        is False
    )
    args = [str(answers), "--key", str(key_path), "--out", str(out), "--n-boot", "20"]
    assert main([*args, "--max-catch-fail", "0.5"]) == 0
    assert json.loads(out.with_suffix(".json").read_text())["max_catch_fail"] == 0.5
    assert main(args) == 0
    assert json.loads(out.with_suffix(".json").read_text())["max_catch_fail"] == 0.25
    capsys.readouterr()
