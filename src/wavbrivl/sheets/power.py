"""How many raters x trials a two-choice study needs (normal approximation, two-sided test).

- against chance: answers needed to tell a positive rate ``p1`` from ``p0`` (0.5, a rater
  who picks a side at random) with a one-sample test of a proportion,
  ``n = ((z_a sqrt(p0 q0) + z_b sqrt(p1 q1)) / (p1 - p0))^2``;
- two runs apart: answers needed *per run* to tell positive rates ``p1`` and ``p2`` apart,
  ``n = ((z_a sqrt(2 pbar qbar) + z_b sqrt(p1 q1 + p2 q2)) / (p1 - p2))^2``, pbar their mean
  (no continuity correction); the same formula sizes a comparison study (first run chosen
  at ``p1`` against 0.5 uses the one-sample form);

with ``z_a`` the normal quantile at ``1 - alpha / 2`` and ``z_b`` at ``power``, rounded up.
Raters = answers / trials per rater, rounded up. It treats answers as independent: raters
who differ from each other need more (the bootstrap over trials in Table 1 shows the spread).

Command line::

    python -m wavbrivl.sheets.power 0.6 [--vs 0.7] [--trials 40]
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from statistics import NormalDist

ALPHA = 0.05
POWER = 0.8
CHANCE = 0.5


def _z(alpha: float, power: float) -> tuple[float, float]:
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"alpha and power must be in (0, 1), got {alpha} and {power}")
    normal = NormalDist()
    return normal.inv_cdf(1 - alpha / 2), normal.inv_cdf(power)


def _check_rates(*rates: float) -> None:
    for p in rates:
        if not 0 < p < 1:
            raise ValueError(f"rates must be in (0, 1), got {p}")
    if len(set(rates)) < len(rates):
        raise ValueError(f"the two rates must differ, got {rates}")


def answers_vs_chance(
    p1: float, p0: float = CHANCE, alpha: float = ALPHA, power: float = POWER
) -> int:
    """Answers needed to tell a positive rate ``p1`` from ``p0``."""
    _check_rates(p1, p0)
    z_a, z_b = _z(alpha, power)
    root = z_a * math.sqrt(p0 * (1 - p0)) + z_b * math.sqrt(p1 * (1 - p1))
    return math.ceil((root / (p1 - p0)) ** 2)


def answers_two_runs(p1: float, p2: float, alpha: float = ALPHA, power: float = POWER) -> int:
    """Answers needed per run to tell two runs' positive rates apart."""
    _check_rates(p1, p2)
    z_a, z_b = _z(alpha, power)
    mean = (p1 + p2) / 2
    root = z_a * math.sqrt(2 * mean * (1 - mean)) + z_b * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    return math.ceil((root / (p1 - p2)) ** 2)


def raters_needed(answers: int, trials_per_rater: int) -> int:
    """Raters who each answer ``trials_per_rater`` trials to give ``answers`` answers."""
    if trials_per_rater < 1:
        raise ValueError(f"trials per rater must be at least 1, got {trials_per_rater}")
    return math.ceil(answers / trials_per_rater)


def power_rows(
    trials_per_rater: int,
    rates: Sequence[float] = (0.6, 0.7, 0.8),
    pairs: Sequence[tuple[float, float]] = ((0.6, 0.7), (0.7, 0.8)),
) -> list[dict]:
    """The rows Table 1 prints: answers and raters for each target (alpha 0.05, power 0.8)."""
    rows = []
    for p in rates:
        n = answers_vs_chance(p)
        rows.append(
            {
                "test": f"{p:.0%} positive vs chance ({CHANCE:.0%})",
                "answers": n,
                "raters": raters_needed(n, trials_per_rater),
            }
        )
    for p1, p2 in pairs:
        n = answers_two_runs(p1, p2)
        rows.append(
            {
                "test": f"two runs, {p1:.0%} vs {p2:.0%} positive (per run)",
                "answers": n,
                "raters": raters_needed(n, trials_per_rater),
            }
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m wavbrivl.sheets.power", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("rate", type=float, help="the positive rate to detect")
    parser.add_argument("--vs", type=float, help="a second run's rate (default: chance, 0.5)")
    parser.add_argument("--trials", type=int, default=1, help="trials each rater answers")
    parser.add_argument("--alpha", type=float, default=ALPHA)
    parser.add_argument("--power", type=float, default=POWER)
    args = parser.parse_args(argv)
    try:
        if args.vs is None:
            n = answers_vs_chance(args.rate, alpha=args.alpha, power=args.power)
        else:
            n = answers_two_runs(args.rate, args.vs, alpha=args.alpha, power=args.power)
        raters = raters_needed(n, args.trials)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    per = "" if args.vs is None else " per run"
    print(f"{n} answers{per}: {raters} rater(s) x {args.trials} trial(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
