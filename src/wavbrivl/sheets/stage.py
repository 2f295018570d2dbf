"""The sheets stage as the workflow runs it: generation folders in, grid + study kit out."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wavbrivl.generate.records import GENERATION_JSON, TARGETS_PARQUET, read_targets
from wavbrivl.manifest.labels import read_clip_labels
from wavbrivl.sheets import load_generation_runs
from wavbrivl.sheets.study import read_key, write_study

# auto2afc (torch) and grid (matplotlib) are imported by the functions that use them: the
# simulated study's job needs neither, and they cost seconds to import.
if TYPE_CHECKING:
    from wavbrivl.sheets.auto2afc import RunComparison


def assemble_sheets(
    *,
    run_folders: Mapping[str, str | Path],
    media_paths: Sequence[str | Path],
    manifest_path: str | Path,
    out_dir: str | Path,
    encoder: Any,
    study_seed: int = 0,
    show_labels: bool = False,
    max_audio_seconds: float | None = None,
    max_columns: int = 12,
    real_frame_row: bool = False,
    compare: Sequence[str] | None = None,
    answers: Sequence[str | Path] = (),
    catch_rate: float = 0.0,
    max_catch_fail: float | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Figure-4 grid (PNG + PDF), the two-choice study page and its separate answer key, the
    automatic two-choice score, and Table 1 when answer CSVs are given.

    The grid has one row per run over clips every run generated (a first row of real frames
    from ``media_paths`` with ``real_frame_row``); ``compare`` (two run names) adds the
    automatic comparison of those two runs to auto2afc.json."""
    from wavbrivl.sheets.auto2afc import RunComparison, auto_two_choice_study, write_auto_scores
    from wavbrivl.sheets.grid import (
        common_clips,
        grid_columns,
        load_real_frames,
        run_row_label,
        write_grid,
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels = read_clip_labels(manifest_path)
    runs = {
        name: run.with_labels(labels) for name, run in load_generation_runs(run_folders).items()
    }
    pair = _check_compare(compare, run_folders) if compare is not None else None
    run_list = list(runs.values())
    shared = set(common_clips(run_list))
    for run in run_list:
        left_out = [cid for cid in run.clips if cid not in shared]
        if left_out:
            log(
                f"grid: {len(left_out)} clip(s) of run {run.name} left out, not in every "
                f"run: {left_out[:10]}"
            )
    columns = grid_columns(run_list, max_columns)
    real_frames = load_real_frames(media_paths, columns) if real_frame_row else None
    write_grid(
        run_list,
        out / "grid.png",
        out / "grid.pdf",
        columns,
        real_frames=real_frames,
        row_labels={name: run_row_label(run) for name, run in runs.items()},
    )
    log(
        f"grid: {len(runs)} run(s){' + real frames' if real_frame_row else ''} x "
        f"{len(columns)} clip(s)"
    )
    kit = write_study(
        list(runs.values()),
        media_paths,
        out / "study.html",
        out / "answer_key.json",
        seed=study_seed,
        show_labels=show_labels,
        max_audio_seconds=max_audio_seconds,
        catch_rate=catch_rate,
        compare=compare,
    )
    n_catch = sum(t.kind == "catch" for t in kit.trials)
    log(
        f"study {kit.study_id}: {len(kit.trials)} trials ({n_catch} catch); "
        "answer key kept apart from the page"
    )

    # The automatic score needs each run's frozen image encoder: runs generated with another
    # encoder than the configured one are left out (and named), never scored by the wrong one.
    scored, skipped = {}, {}
    for name, folder in run_folders.items():
        if _image_fingerprint(folder) == encoder.fingerprint:
            scored[name] = read_targets(Path(folder) / TARGETS_PARQUET)
        else:
            skipped[name] = "generated with another image encoder than the configured one"
    key = read_key(kit.key_path)
    key = {
        **key,
        "trials": [
            t for t in key["trials"] if t["run"] in scored and t.get("kind", "match") == "match"
        ],
    }
    scores = (
        auto_two_choice_study(key, {n: encoder for n in scored}, scored, run_folders)
        if scored
        else {}
    )
    comparison = None
    if pair is not None:
        comparison = _compare(pair, run_folders, runs, encoder, log)
    write_auto_scores(scores, kit.study_id, out / "auto2afc.json", comparison)
    for name, why in skipped.items():
        log(f"automatic score: run {name} skipped ({why})")
    for name, score in scores.items():
        log(
            f"automatic two-choice, run {name}: {score.percent_correct:.1f}% correct "
            f"(95% CI {score.ci95[0]:.1f}-{score.ci95[1]:.1f}, {score.n_trials} trials)"
        )

    if answers:
        from wavbrivl.sheets.analysis import MAX_CATCH_FAIL, analyse

        analyse(
            list(answers),
            kit.key_path,
            out / "table1.md",
            auto_path=out / "auto2afc.json",
            max_catch_fail=MAX_CATCH_FAIL if max_catch_fail is None else max_catch_fail,
        )
        log(f"Table 1 from {len(answers)} answer file(s): {out / 'table1.md'}")
    return {
        "study_id": kit.study_id,
        "columns": columns,
        "auto": {n: s.percent_correct for n, s in scores.items()},
        "comparison": comparison.share if isinstance(comparison, RunComparison) else None,
    }


def simulate_study(
    *,
    key_path: str | Path,
    auto_path: str | Path | None,
    answers_dir: str | Path,
    table_md: str | Path,
    raters: int,
    accuracy: float,
    neither: float = 0.0,
    careless: int = 0,
    seed: int = 0,
    max_catch_fail: float = 0.25,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Simulated raters answer the study (:mod:`wavbrivl.sheets.simulate`), one file each,
    and Table 1 is written from their files like from real ones (+ an HTML copy)."""
    from wavbrivl.sheets.analysis import analyse
    from wavbrivl.sheets.report_html import write_markdown_html
    from wavbrivl.sheets.simulate import write_simulated_answers

    paths = write_simulated_answers(
        read_key(key_path),
        answers_dir,
        raters=raters,
        accuracy=accuracy,
        neither=neither,
        careless=careless,
        seed=seed,
    )
    log(f"{len(paths)} simulated rater(s), {careless} careless, accuracy {accuracy}")
    table = analyse(
        paths, key_path, table_md, auto_path=auto_path, seed=seed, max_catch_fail=max_catch_fail
    )
    write_markdown_html(Path(table_md), Path(table_md).with_suffix(".html"))
    for rater in table["raters"]:
        if rater["excluded"]:
            log(f"excluded {rater['session_id']}: {rater['reason']}")
    for row, r in table["runs"].items():
        pooled = ", ".join(f"{o} {p:.1f} %" for o, p in r["pooled"].items())
        log(f"{row}: {pooled} ({r['n_sessions']} raters)")
    return table


def _image_fingerprint(folder: str | Path) -> str:
    generation = json.loads((Path(folder) / GENERATION_JSON).read_text(encoding="utf-8"))
    return generation["fingerprints"]["image_encoder"]


def _check_compare(compare: Sequence[str], run_folders: Mapping[str, Any]) -> tuple[str, str]:
    """``sheets.compare``: two different entries of the sheets' runs."""
    pair = tuple(compare)
    if len(pair) != 2 or pair[0] == pair[1]:
        raise ValueError(f"sheets.compare needs two different runs, got {list(pair)}")
    unknown = [name for name in pair if name not in run_folders]
    if unknown:
        raise ValueError(
            f"sheets.compare names {unknown}, which are not among the sheets' runs "
            f"{list(run_folders)}"
        )
    return pair[0], pair[1]


def _compare(
    pair: tuple[str, str],
    run_folders: Mapping[str, str | Path],
    runs: Mapping[str, Any],
    encoder: Any,
    log: Callable[[str], None],
) -> RunComparison | dict[str, Any]:
    """The automatic comparison, or a note saying why it was not made (another image space)."""
    from wavbrivl.sheets.auto2afc import compare_runs
    from wavbrivl.sheets.grid import common_clips

    other = [n for n in pair if _image_fingerprint(run_folders[n]) != encoder.fingerprint]
    if other:
        why = (
            f"run(s) {other} generated with another image encoder than the configured one "
            f"({encoder.fingerprint})"
        )
        log(f"automatic comparison {pair[0]} vs {pair[1]} not made: {why}")
        return {"runs": list(pair), "skipped": why}
    clips = common_clips([runs[pair[0]], runs[pair[1]]])
    result = compare_runs(
        pair,
        run_folders,
        encoder,
        {n: read_targets(Path(run_folders[n]) / TARGETS_PARQUET) for n in pair},
        clips,
    )
    a, b = pair
    log(
        f"automatic comparison over {result.n_clips} clip(s): {a} fits the sound better for "
        f"{result.share[a]:.1f}% (95% CI {result.ci95[a][0]:.1f}-{result.ci95[a][1]:.1f}), "
        f"{b} for {result.share[b]:.1f}% (95% CI {result.ci95[b][0]:.1f}-{result.ci95[b][1]:.1f})"
    )
    return result
