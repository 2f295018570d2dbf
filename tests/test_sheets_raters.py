"""Many raters: Wilson intervals, Fleiss' kappa, catch screening, power, simulated raters.

Expected values are pinned from the literature or computed here another way:
- Wilson intervals: Newcombe (1998), Table I, method 3 (81/263, 15/148, 0/20, 1/29);
- Fleiss' kappa: the worked example of the Wikipedia article "Fleiss' kappa" (10 subjects,
  14 raters, 5 categories: P-bar 0.378, P_e 0.213, kappa 0.210), and a brute-force count of
  agreeing rater pairs;
- power: the one-sample normal-approximation size for 0.5 vs 0.6 (194 answers) and the
  two-sample size for 0.5 vs 0.6 (388 per group), worked out by hand below.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from wavbrivl.hashing import seeded_int
from wavbrivl.sheets.analysis import CATCH_ROW, analyse
from wavbrivl.sheets.power import (
    answers_two_runs,
    answers_vs_chance,
    power_rows,
    raters_needed,
)
from wavbrivl.sheets.power import (
    main as power_main,
)
from wavbrivl.sheets.raters import (
    Z95,
    fleiss_kappa,
    item_agreement,
    screen_raters,
    wilson_interval,
)
from wavbrivl.sheets.simulate import rater_id, simulate_rater, write_simulated_answers

# --- Wilson -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611)]
    + [(1, 29, 0.0061, 0.1718)],
)
def test_wilson_interval_matches_newcombe_1998(k, n, low, high):
    lo, hi = wilson_interval(k, n)
    assert (round(lo, 4), round(hi, 4)) == (low, high)


def test_wilson_interval_edges_and_refusals():
    assert Z95 == pytest.approx(1.959963984540054, abs=1e-12)
    lo, hi = wilson_interval(20, 20)  # mirror image of 0/20
    assert (round(lo, 4), hi) == (1 - 0.1611, 1.0)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    # rounding would put these a hair outside [0, 1]; the interval stays inside
    assert wilson_interval(9, 9)[1] == 1.0 and wilson_interval(0, 21)[0] == 0.0
    # a wider z, a wider interval: 1/2 with z = 1 is 0.5 -/+ sqrt(1/8 + 1/16) / 1.5
    lo, hi = wilson_interval(1, 2, z=1.0)
    half = math.sqrt(1 / 8 + 1 / 16) / 1.5
    assert (lo, hi) == pytest.approx((0.5 - half, 0.5 + half), abs=1e-12)
    for bad in (-1, 3):
        with pytest.raises(ValueError, match=r"successes must be in \[0, 2\]"):
            wilson_interval(bad, 2)


# --- Fleiss' kappa -------------------------------------------------------------------------

WIKIPEDIA = np.array(
    [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
)


def pairs_agreeing(row) -> float:
    """Brute force: list every rater's category, count agreeing pairs among all pairs."""
    ratings = [j for j, count in enumerate(row) for _ in range(count)]
    pairs = list(itertools.combinations(ratings, 2))
    return sum(a == b for a, b in pairs) / len(pairs)


def test_fleiss_kappa_of_the_worked_example():
    result = fleiss_kappa(WIKIPEDIA)
    assert round(result.kappa, 3) == 0.210
    assert round(result.observed, 3) == 0.378 and round(result.expected, 3) == 0.213
    assert result.n_items == 10
    assert result.per_item == pytest.approx([pairs_agreeing(r) for r in WIKIPEDIA], abs=1e-12)
    shares = WIKIPEDIA.sum(axis=0) / 140  # 20, 28, 39, 21, 32 of 140 ratings
    expected = sum(s * s for s in shares)
    observed = np.mean([pairs_agreeing(r) for r in WIKIPEDIA])
    assert result.kappa == pytest.approx((observed - expected) / (1 - expected), abs=1e-12)


def test_fleiss_kappa_skips_single_ratings_and_handles_full_agreement(recwarn):
    counts = np.array([[3, 0], [0, 3], [1, 0], [0, 0]])
    result = fleiss_kappa(counts)
    # two items rated by 3: full agreement, shares 1/2 and 1/2 -> kappa 1
    assert (result.kappa, result.observed, result.expected, result.n_items) == (1.0, 1.0, 0.5, 2)
    only_one_category = fleiss_kappa(np.array([[2, 0], [3, 0]]))
    assert math.isnan(only_one_category.kappa) and only_one_category.expected == 1.0
    nothing = fleiss_kappa(np.array([[1, 0], [0, 1]]))
    assert math.isnan(nothing.kappa) and nothing.n_items == 0
    assert math.isnan(nothing.observed) and math.isnan(nothing.expected)
    assert nothing.per_item.shape == (0,)
    # one item rated twice or more: P_1 = (4 + 1 - 3) / 6 = 1/3, shares 2/3 and 1/3,
    # P_e = 5/9, kappa = (1/3 - 5/9) / (4/9) = -1/2
    one = fleiss_kappa(np.array([[2, 1], [1, 0]]))
    assert (one.kappa, one.n_items) == (pytest.approx(-0.5), 1)
    # unequal raters per item: each item's own pairs
    mixed = fleiss_kappa(np.array([[2, 1], [1, 1]]))
    assert mixed.per_item.tolist() == [pytest.approx(1 / 3), 0.0]
    assert mixed.expected == pytest.approx((3 / 5) ** 2 + (2 / 5) ** 2)
    item = item_agreement(np.array([[1, 0], [2, 2], [0, 0]]))
    assert math.isnan(item[0]) and item[1] == pytest.approx(pairs_agreeing([2, 2]))
    assert math.isnan(item[2])
    assert [str(w.message) for w in recwarn] == []  # items without pairs warn nothing


# --- catch screening ----------------------------------------------------------------------


def test_raters_above_the_catch_failure_threshold_are_excluded_with_the_reason():
    screens = screen_raters({"r2": (4, 1), "r1": (4, 2), "r3": (0, 0), "r4": (5, 0)}, 0.25)
    assert [s.rater for s in screens] == ["r1", "r2", "r3", "r4"]
    assert [s.excluded for s in screens] == [True, False, False, False]
    assert screens[0].reason == "failed 2 of 4 catch trials (50%, above the 25% allowed)"
    assert screens[1].reason == "failed 1 of 4 catch trials (25%, within the 25% allowed)"
    assert screens[2].reason == "answered no catch trial"
    assert (screens[2].n_catch, screens[2].n_failed, screens[2].excluded) == (0, 0, False)
    (three_of_four,) = screen_raters({"a": (4, 3)}, 0.6)
    assert three_of_four.reason == "failed 3 of 4 catch trials (75%, above the 60% allowed)"
    # a zero threshold is allowed: any failure excludes
    assert [s.excluded for s in screen_raters({"a": (4, 0), "b": (4, 1)}, 0.0)] == [False, True]
    assert (screens[0].n_catch, screens[0].n_failed) == (4, 2)
    assert [s.excluded for s in screen_raters({"a": (4, 1)}, 0.2)] == [True]
    assert [s.excluded for s in screen_raters({"a": (4, 4)}, 1.0)] == [False]
    for bad in (-0.1, 1.1):
        with pytest.raises(ValueError, match="catch-failure threshold"):
            screen_raters({}, bad)


# --- power --------------------------------------------------------------------------------


def test_answers_needed_match_the_hand_computation():
    # z_0.975 = 1.959964, z_0.8 = 0.841621.
    # 0.5 vs 0.6: (1.959964 * 0.5 + 0.841621 * sqrt(0.24))^2 / 0.01 = 193.85 -> 194
    assert answers_vs_chance(0.6) == 194
    assert answers_vs_chance(0.4) == 194  # symmetric about 0.5
    # 0.5 vs 0.6, two groups: (1.959964 sqrt(2 * 0.55 * 0.45) + 0.841621 sqrt(0.49))^2 / 0.01
    # = 387.34 -> 388 per run
    assert answers_two_runs(0.5, 0.6) == 388
    assert answers_two_runs(0.6, 0.5) == 388
    # one-sided-ish settings change it: alpha 0.1 -> z 1.644854:
    # (0.822427 + 0.412309)^2 / 0.01 = 152.46 -> 153; power 0.9 -> z 1.281552:
    # (0.979982 + 0.627823)^2 / 0.01 = 258.50 -> 259
    assert answers_vs_chance(0.6, alpha=0.1) == 153
    assert answers_vs_chance(0.6, power=0.9) == 259
    # against another chance level: 0.25 vs 0.5:
    # (1.959964 * 0.433013 + 0.841621 * 0.5)^2 / 0.0625 = 1.269504^2 / 0.0625 = 25.79 -> 26
    assert answers_vs_chance(0.5, p0=0.25) == 26


def test_raters_needed_round_up_and_refuse_nonsense():
    assert raters_needed(194, 40) == 5 and raters_needed(160, 40) == 4
    assert raters_needed(1, 1) == 1
    with pytest.raises(ValueError, match="at least 1"):
        raters_needed(10, 0)
    with pytest.raises(ValueError, match=r"^the two rates must differ, got \(0.5, 0.5\)$"):
        answers_vs_chance(0.5)
    with pytest.raises(ValueError, match=r"^the two rates must differ, got \(0.7, 0.7\)$"):
        answers_two_runs(0.7, 0.7)
    for p1, p2 in ((0.0, 0.5), (0.5, 1.0), (0.5, -0.2)):
        bad = p1 if p1 in (0.0,) else p2
        with pytest.raises(ValueError, match=rf"^rates must be in \(0, 1\), got {bad}$"):
            answers_two_runs(p1, p2)
    with pytest.raises(ValueError, match=r"^rates must be in \(0, 1\), got 1.0$"):
        answers_vs_chance(1.0)
    for alpha, power in ((0, 0.8), (1, 0.8), (1.5, 0.8), (0.05, 0), (0.05, 1), (0.05, 1.5)):
        message = rf"^alpha and power must be in \(0, 1\), got {alpha} and {power}$"
        with pytest.raises(ValueError, match=message):
            answers_vs_chance(0.6, alpha=alpha, power=power)
        with pytest.raises(ValueError, match=message):
            answers_two_runs(0.6, 0.7, alpha=alpha, power=power)


def test_power_rows_name_each_test():
    rows = power_rows(10, rates=(0.6,), pairs=((0.5, 0.6),))
    assert rows == [
        {"test": "60% positive vs chance (50%)", "answers": 194, "raters": 20},
        {"test": "two runs, 50% vs 60% positive (per run)", "answers": 388, "raters": 39},
    ]
    assert [r["answers"] for r in power_rows(1)] == [194, 47, 20, 356, 294]


def test_power_command_line(capsys):
    assert power_main(["0.6", "--trials", "40"]) == 0
    assert capsys.readouterr().out == "194 answers: 5 rater(s) x 40 trial(s)\n"
    assert power_main(["0.5", "--vs", "0.6"]) == 0
    assert capsys.readouterr().out == "388 answers per run: 388 rater(s) x 1 trial(s)\n"
    assert power_main(["0.6", "--alpha", "0.1", "--power", "0.9"]) == 0
    # (1.644854 * 0.5 + 1.281552 * 0.489898)^2 / 0.01 = 1.450257^2 / 0.01 = 210.32 -> 211
    assert capsys.readouterr().out.startswith("211 answers")
    # two runs at alpha 0.1, power 0.9: (1.644854 * sqrt(0.495) + 1.281552 * 0.7)^2 / 0.01
    # = 2.054344^2 / 0.01 = 422.03 -> 423
    assert power_main(["0.5", "--vs", "0.6", "--alpha", "0.1", "--power", "0.9"]) == 0
    assert capsys.readouterr().out == "423 answers per run: 423 rater(s) x 1 trial(s)\n"
    assert power_main(["0.5"]) == 2
    assert capsys.readouterr().err == "error: the two rates must differ, got (0.5, 0.5)\n"
    assert power_main(["0.6", "--trials", "0"]) == 2
    assert "trials per rater must be at least 1" in capsys.readouterr().err


def test_power_command_line_help_names_the_program_and_each_option(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # one line per option
    with pytest.raises(SystemExit) as exit_:
        power_main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: python -m wavbrivl.sheets.power [-h] [--vs VS]")
    description = (
        "How many raters x trials a two-choice study needs (normal approximation, two-sided test)."
    )
    assert f"\n\n{description}\n\n" in text
    for option, help_text in [
        ("rate", "the positive rate to detect"),
        ("--vs VS", "a second run's rate (default: chance, 0.5)"),
        ("--trials TRIALS", "trials each rater answers"),
    ]:
        assert re.search(rf"^  {re.escape(option)} +{re.escape(help_text)}$", text, re.M), option


# --- simulated raters ---------------------------------------------------------------------

KEY = {
    "format": "wavbrivl-2afc-key/1",
    "study_id": "wavbrivl-000000000000",
    "runs": {"a": "gen/a", "b": "gen/b"},
    "trials": [
        {"trial_id": f"t{i:03d}", "run": "a", "match_side": "left" if i % 2 else "right"}
        for i in range(1, 201)
    ]
    + [
        {
            "trial_id": f"c{i:03d}",
            "run": ":real-frames",
            "kind": "catch",
            "match_side": "right" if i % 2 else "left",
        }
        for i in range(1, 201)
    ]
    + [
        {
            "trial_id": f"p{i:03d}",
            "run": "a",
            "other_run": "b",
            "kind": "compare",
            "match_side": "left" if i % 3 else "right",
        }
        for i in range(1, 11)
    ],
}


def test_a_simulated_rater_answers_with_the_given_rates():
    frame = simulate_rater(KEY, 0, accuracy=0.8, neither=0.1, seed=1)
    assert list(frame.columns) == ["study_id", "trial_id", "choice", "session_id", "timestamp"]
    assert frame["trial_id"].tolist() == [t["trial_id"] for t in KEY["trials"]]
    assert set(frame["session_id"]) == {"sim01"} and set(frame["study_id"]) == {KEY["study_id"]}
    side = {t["trial_id"]: t["match_side"] for t in KEY["trials"]}
    main = frame[frame["trial_id"].str.startswith("t")]
    neither = (main["choice"] == "neither").mean()
    picked = main[main["choice"] != "neither"]
    right = (picked["choice"] == picked["trial_id"].map(side)).mean()
    # 200 draws: binomial sd of 0.1 is 0.021, of 0.8 is 0.03: 3.5 sd bounds
    assert 0.03 < neither < 0.18 and 0.69 < right < 0.91
    catch = frame[frame["trial_id"].str.startswith("c")]
    assert (catch["choice"] == catch["trial_id"].map(side)).all()  # diligent: all right
    assert frame["timestamp"].iloc[:2].tolist() == ["2000-01-01T00:00:00Z", "2000-01-01T00:00:10Z"]


def test_a_careless_rater_picks_catch_sides_at_random_and_never_neither():
    frame = simulate_rater(KEY, 3, accuracy=1.0, careless=True, seed=2)
    side = {t["trial_id"]: t["match_side"] for t in KEY["trials"]}
    catch = frame[frame["trial_id"].str.startswith("c")]
    right = (catch["choice"] == catch["trial_id"].map(side)).mean()
    assert 0.37 < right < 0.63  # 200 coin flips, 3.7 sd
    assert set(catch["choice"]) == {"left", "right"}
    main = frame[~frame["trial_id"].str.startswith("c")]
    assert (main["choice"] == main["trial_id"].map(side)).all()  # accuracy 1, neither 0
    assert set(frame["session_id"]) == {"sim04"}


def test_simulated_raters_are_seeded_and_differ_from_each_other():
    one = simulate_rater(KEY, 0, accuracy=0.6, neither=0.2, seed=5)
    again = simulate_rater(KEY, 0, accuracy=0.6, neither=0.2, seed=5)
    pd.testing.assert_frame_equal(one, again)
    other_seed = simulate_rater(KEY, 0, accuracy=0.6, neither=0.2, seed=6)
    other_rater = simulate_rater(KEY, 1, accuracy=0.6, neither=0.2, seed=5)
    assert not one["choice"].equals(other_seed["choice"])
    assert not one["choice"].equals(other_rater["choice"])
    for bad in ({"accuracy": 1.5}, {"accuracy": 0.5, "neither": -0.1}):
        with pytest.raises(ValueError, match="must be in"):
            simulate_rater(KEY, 0, **bad)


def test_simulated_answer_files_feed_the_analysis_and_careless_raters_are_excluded(tmp_path):
    paths = write_simulated_answers(
        KEY, tmp_path / "answers", raters=4, accuracy=0.9, neither=0.0, careless=1, seed=0
    )
    assert [p.name for p in paths] == ["sim01.csv", "sim02.csv", "sim03.csv", "sim04.csv"]
    assert [rater_id(i) for i in range(4)] == ["sim01", "sim02", "sim03", "sim04"]
    with open(paths[0], newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(KEY["trials"])
    key_path = tmp_path / "key.json"
    key_path.write_text(json.dumps(KEY))
    table = analyse(paths, key_path, tmp_path / "table1.md", n_boot=200)
    excluded = [r["session_id"] for r in table["raters"] if r["excluded"]]
    assert excluded == ["sim04"]  # the careless one fails about half of 200 catch trials
    assert list(table["runs"]) == ["a", CATCH_ROW, "a vs b"]
    assert table["runs"]["a"]["n_sessions"] == 3
    assert table["runs"][CATCH_ROW]["pooled"]["positive"] == 100.0
    assert table["runs"]["a vs b"]["kind"] == "compare"
    text = (tmp_path / "table1.md").read_text()
    assert "| sim04 | 200 |" in text and "above the 25% allowed" in text
    assert "## Raters needed" in text
    with pytest.raises(ValueError, match="need at least one rater"):
        write_simulated_answers(KEY, tmp_path, raters=2, accuracy=0.5, careless=3)
    with pytest.raises(ValueError, match="need at least one rater"):
        write_simulated_answers(KEY, tmp_path, raters=0, accuracy=0.5)


def by_the_documented_recipe(key, index, accuracy, neither, careless, seed):
    """The simulated choices drawn step by step as the module's docstring describes them."""
    rng = np.random.default_rng([seed, seeded_int("simulate", index)])
    choices = []
    for trial in key["trials"]:
        match = trial["match_side"]
        other = "right" if match == "left" else "left"
        if trial.get("kind") == "catch":
            choices.append(str(rng.choice(["left", "right"])) if careless else match)
        elif rng.random() < neither:
            choices.append("neither")
        else:
            choices.append(match if rng.random() < accuracy else other)
    return choices


@pytest.mark.parametrize("careless", [False, True])
def test_simulated_choices_follow_the_documented_draws(careless):
    frame = simulate_rater(KEY, 2, accuracy=0.7, neither=0.2, careless=careless, seed=9)
    assert frame["choice"].tolist() == by_the_documented_recipe(KEY, 2, 0.7, 0.2, careless, 9)


def test_simulation_defaults_are_no_neither_diligent_seed_0():
    pd.testing.assert_frame_equal(
        simulate_rater(KEY, 1, accuracy=0.6),
        simulate_rater(KEY, 1, accuracy=0.6, neither=0.0, careless=False, seed=0),
    )
    for name, args in (
        ("accuracy", {"accuracy": 1.5}),
        ("neither", {"accuracy": 1, "neither": -1}),
    ):
        with pytest.raises(ValueError, match=rf"^{name} must be in \[0, 1\], got -?1\.?5?$"):
            simulate_rater(KEY, 0, **args)


def test_answer_files_hold_exactly_the_raters_answers(tmp_path):
    out = tmp_path / "deep" / "answers"  # made with its parents
    paths = write_simulated_answers(
        KEY, out, raters=3, accuracy=0.7, neither=0.3, careless=3, seed=4
    )
    for index, path in enumerate(paths):
        frame = simulate_rater(KEY, index, accuracy=0.7, neither=0.3, careless=True, seed=4)
        lines = path.read_bytes().decode().split("\n")
        assert lines[0] == "study_id,trial_id,choice,session_id,timestamp"
        assert lines[-1] == "" and "\r" not in "".join(lines)
        assert lines[1:-1] == [",".join(row) for row in frame.itertuples(index=False)]
    # defaults: no careless rater, seed 0, no neither; writing again into the folder is fine
    again = write_simulated_answers(KEY, out, raters=1, accuracy=0.7)
    expected = simulate_rater(KEY, 0, accuracy=0.7, neither=0.0, careless=False, seed=0)
    assert pd.read_csv(again[0], dtype=str, keep_default_na=False).equals(expected)
