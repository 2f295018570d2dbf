"""Table 1 as text: the Markdown page and the long TSV (:mod:`wavbrivl.sheets.analysis`
computes the table; this module only renders it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

OUTCOMES: tuple[str, ...] = ("positive", "negative", "neither")


def _pct(value: float) -> str:
    return f"{value:.1f}"


def render_markdown(table: Mapping[str, Any], auto: Mapping[str, Any] | None = None) -> str:
    """Table 1 (pooled per run), then the per-session breakdown."""
    has_auto = bool(auto and auto.get("runs"))
    head = ["run", "sessions", "answers", *(f"{o} %" for o in OUTCOMES)]
    if has_auto:
        head.append("automatic % correct")
    lines = [
        f"# Table 1: two-choice study {table['study_id']}",
        "",
        "Cells: pooled % (min–max across sessions) [bootstrap 95 % interval, "
        f"{table['n_boot']} resamples of trials, seed {table['seed']}].",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for run, r in table["runs"].items():
        cells = [_escape_cell(run), str(r["n_sessions"]), str(r["n_answers"])]
        for o in OUTCOMES:
            lo, hi = r["range"][o]
            cl, ch = r["ci95"][o]
            cells.append(f"{_pct(r['pooled'][o])} ({_pct(lo)}–{_pct(hi)}) [{_pct(cl)}, {_pct(ch)}]")
        if has_auto:
            cells.append(_auto_cell(auto["runs"].get(run)))  # type: ignore[index]
        lines.append("| " + " | ".join(cells) + " |")
    if has_auto:
        lines += [
            "",
            "Automatic: the audio target embedding prefers the matching image under the frozen "
            "image encoder (cosine), same trials; ties count half.",
        ]
    lines += [
        "",
        "## Sessions",
        "",
        "| run | session | answers | " + " | ".join(f"{o} %" for o in OUTCOMES) + " |",
        "|" + "---|" * (3 + len(OUTCOMES)),
    ]
    for run, r in table["runs"].items():
        for s in r["sessions"]:
            cells = [_escape_cell(run), _escape_cell(s["session_id"]), str(s["n_answers"])]
            lines.append("| " + " | ".join(cells + [_pct(s[o]) for o in OUTCOMES]) + " |")
    if "raters" in table:
        lines += _raters_markdown(table)
    if "power" in table:
        lines += _power_markdown(table["power"])
    return "\n".join(lines) + "\n"


def _raters_markdown(table: Mapping[str, Any]) -> list[str]:
    """Intervals and agreement per row, then the raters left out by their catch trials."""
    raters = table["raters"]
    out = [r for r in raters if r["excluded"]]
    share = 100 * table["max_catch_fail"]
    lines = [
        "",
        "## Raters and agreement",
        "",
        f"{len(raters)} rater(s), {len(out)} excluded (failed more than {share:.0f} % of "
        "their catch trials); the rows above and below count the others only.",
        "",
        "| run | "
        + " | ".join(f"{o} % [Wilson 95 %]" for o in OUTCOMES)
        + " | Fleiss' κ | item agreement mean (min) | items |",
        "|" + "---|" * (len(OUTCOMES) + 4),
    ]
    for run, r in table["runs"].items():
        cells = [_escape_cell(run)]
        for o in OUTCOMES:
            lo, hi = r["wilson95"][o]
            cells.append(f"{_pct(r['pooled'][o])} [{_pct(lo)}, {_pct(hi)}]")
        agree = r["agreement"]
        kappa = agree["fleiss_kappa"]
        cells.append("–" if kappa is None else f"{kappa:.3f}")
        items = [i["agreement"] for i in agree["items"]]
        cells.append(f"{np.mean(items):.3f} ({min(items):.3f})" if items else "–")
        cells.append(str(agree["n_items"]))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Wilson intervals take every answer as independent; Fleiss' κ and the item agreement "
        "(share of agreeing rater pairs) use the trials answered by at least two raters.",
    ]
    if out:
        lines += ["", "| excluded rater | catch trials | failed | why |", "|---|---|---|---|"]
        for r in out:
            cells = [_escape_cell(r["session_id"]), str(r["n_catch"]), str(r["n_failed"])]
            lines.append("| " + " | ".join([*cells, _escape_cell(r["reason"])]) + " |")
    return lines


def _power_markdown(power: Mapping[str, Any]) -> list[str]:
    lines = [
        "",
        "## Raters needed",
        "",
        f"Normal approximation, two-sided α = 0.05, power 0.8, {power['trials_per_rater']} "
        "trials of a run per rater, answers taken as independent.",
        "",
        "| test | answers | raters |",
        "|---|---|---|",
    ]
    for row in power["rows"]:
        lines.append(f"| {row['test']} | {row['answers']} | {row['raters']} |")
    return lines


def _auto_cell(score: Mapping[str, Any] | None) -> str:
    if not score:
        return "–"
    lo, hi = score["ci95"]
    return f"{_pct(score['percent_correct'])} [{_pct(lo)}, {_pct(hi)}] (n={score['n_trials']})"


def _escape_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_tsv(table: Mapping[str, Any], auto: Mapping[str, Any] | None = None) -> str:
    """Long format: one row per run x scope (pooled / wilson / session / automatic) x outcome."""
    head = ["run", "scope", "session_id", "n_answers", "outcome", "percent"]
    head += ["ci95_low", "ci95_high", "range_min", "range_max"]
    rows = ["\t".join(head)]
    for run, r in table["runs"].items():
        for o in OUTCOMES:
            rows.append(
                _tsv_row(
                    run,
                    "pooled",
                    "",
                    r["n_answers"],
                    o,
                    r["pooled"][o],
                    *r["ci95"][o],
                    *r["range"][o],
                )
            )
        for o in OUTCOMES if "wilson95" in r else ():
            rows.append(
                _tsv_row(run, "wilson", "", r["n_answers"], o, r["pooled"][o], *r["wilson95"][o])
            )
        for s in r["sessions"]:
            for o in OUTCOMES:
                rows.append(_tsv_row(run, "session", s["session_id"], s["n_answers"], o, s[o]))
    for run, score in (auto or {}).get("runs", {}).items():
        rows.append(
            _tsv_row(
                run,
                "automatic",
                "",
                score["n_trials"],
                "correct",
                score["percent_correct"],
                *score["ci95"],
            )
        )
    return "\n".join(rows) + "\n"


def _tsv_row(*values: Any) -> str:
    cells = [f"{v:.4f}" if isinstance(v, float) else str(v) for v in values]
    cells += [""] * (10 - len(cells))
    return "\t".join(c.replace("\t", " ").replace("\n", " ") for c in cells)


__all__ = ["OUTCOMES", "render_markdown", "render_tsv"]
