"""Many raters: catch-trial screening, Wilson intervals, Fleiss' kappa, per-item agreement.

Every function here is plain arithmetic on counts, so the analysis
(:mod:`wavbrivl.sheets.analysis`) can be checked against hand computations:

- :func:`wilson_interval`: the Wilson score interval of a proportion (Wilson 1927;
  Newcombe 1998, method 3), no continuity correction;
- :func:`fleiss_kappa`: Fleiss' kappa (Fleiss 1971) over items rated by at least two raters.
  With the same number of raters per item it is exactly Fleiss' statistic; with differing
  numbers each item's agreement uses its own count (P_i = (sum_j n_ij^2 - n_i) /
  (n_i (n_i - 1))) and the category shares p_j pool all ratings;
- :func:`screen_raters`: which raters failed more catch trials than allowed, and why.

A *rater* is one session of the study page (one exported answer file).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

Z95 = NormalDist().inv_cdf(0.975)  # 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of ``successes / n`` as fractions; (nan, nan) when ``n`` is 0."""
    if n == 0:
        return (math.nan, math.nan)
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, {n}], got {successes}")
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class Agreement:
    """Fleiss' kappa and its parts; ``per_item`` is P_i of each item with >= 2 ratings."""

    kappa: float  # nan when there are no such items or chance agreement is 1
    observed: float  # P-bar, the mean of per_item
    expected: float  # P_e, the sum of squared category shares
    n_items: int
    per_item: np.ndarray  # (n_items,)


def item_agreement(counts: np.ndarray) -> np.ndarray:
    """(N, K) ratings per item and category -> (N,) share of agreeing rater pairs.

    Items with fewer than two ratings have no pairs: NaN.
    """
    counts = np.asarray(counts)
    n = counts.sum(axis=1)
    with np.errstate(invalid="ignore"):  # no pairs: 0 / 0 (the numerator is 0 too)
        return ((counts**2).sum(axis=1) - n) / (n * (n - 1))


def fleiss_kappa(counts: np.ndarray) -> Agreement:
    """Fleiss' kappa of (N, K) counts: ``counts[i, j]`` raters put item i in category j."""
    counts = np.asarray(counts)
    rated = counts[counts.sum(axis=1) >= 2]
    if rated.shape[0] == 0:
        return Agreement(math.nan, math.nan, math.nan, 0, np.zeros(0))
    per_item = item_agreement(rated)
    shares = rated.sum(axis=0) / rated.sum()
    observed = float(per_item.mean())
    expected = float((shares**2).sum())
    kappa = (observed - expected) / (1 - expected) if expected < 1 else math.nan
    return Agreement(kappa, observed, expected, int(rated.shape[0]), per_item)


@dataclass(frozen=True)
class RaterScreen:
    """One rater's catch trials: answered, failed, and whether that excludes the rater."""

    rater: str
    n_catch: int
    n_failed: int
    excluded: bool
    reason: str


def screen_raters(
    catch_failures: Mapping[str, tuple[int, int]], max_fail_share: float
) -> list[RaterScreen]:
    """``{rater: (catch trials answered, failed)}`` -> one screen per rater, sorted by rater.

    A rater is excluded when the share of failed catch trials is above ``max_fail_share``;
    a rater who answered no catch trial is kept (and said so).
    """
    if not 0 <= max_fail_share <= 1:
        raise ValueError(f"the catch-failure threshold must be in [0, 1], got {max_fail_share}")
    screens = []
    for rater in sorted(catch_failures):
        n_catch, n_failed = catch_failures[rater]
        if n_catch == 0:
            screens.append(RaterScreen(rater, 0, 0, False, "answered no catch trial"))
            continue
        share = n_failed / n_catch
        excluded = share > max_fail_share
        verdict = "above" if excluded else "within"
        reason = (
            f"failed {n_failed} of {n_catch} catch trials ({share:.0%}, "
            f"{verdict} the {max_fail_share:.0%} allowed)"
        )
        screens.append(RaterScreen(rater, n_catch, n_failed, excluded, reason))
    return screens


__all__ = [
    "Agreement",
    "RaterScreen",
    "Z95",
    "fleiss_kappa",
    "item_agreement",
    "screen_raters",
    "wilson_interval",
]
