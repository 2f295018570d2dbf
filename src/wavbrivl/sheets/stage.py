"""The sheets stage as the workflow runs it: generation folders in, grid + study kit out."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from wavbrivl.generate.records import GENERATION_JSON, TARGETS_PARQUET, read_targets
from wavbrivl.manifest.labels import read_clip_labels
from wavbrivl.sheets import load_generation_runs
from wavbrivl.sheets.auto2afc import auto_two_choice_study, write_auto_scores
from wavbrivl.sheets.grid import write_grid
from wavbrivl.sheets.study import read_key, write_study


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
    answers: Sequence[str | Path] = (),
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Figure-4 grid (PNG + PDF), the two-choice study page and its separate answer key, the
    automatic two-choice score, and Table 1 when answer CSVs are given."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels = read_clip_labels(manifest_path)
    runs = {
        name: run.with_labels(labels) for name, run in load_generation_runs(run_folders).items()
    }
    columns = write_grid(
        list(runs.values()), out / "grid.png", out / "grid.pdf", max_columns=max_columns
    )
    log(f"grid: {len(runs)} run(s) x {len(columns)} clip(s)")
    kit = write_study(
        list(runs.values()),
        media_paths,
        out / "study.html",
        out / "answer_key.json",
        seed=study_seed,
        show_labels=show_labels,
        max_audio_seconds=max_audio_seconds,
    )
    log(f"study {kit.study_id}: {len(kit.trials)} trials; answer key kept apart from the page")

    # The automatic score needs each run's frozen image encoder: runs generated with another
    # encoder than the configured one are left out (and named), never scored by the wrong one.
    scored, skipped = {}, {}
    for name, folder in run_folders.items():
        generation = json.loads((Path(folder) / GENERATION_JSON).read_text())
        if generation["fingerprints"]["image_encoder"] == encoder.fingerprint:
            scored[name] = read_targets(Path(folder) / TARGETS_PARQUET)
        else:
            skipped[name] = "generated with another image encoder than the configured one"
    key = read_key(kit.key_path)
    key = {**key, "trials": [t for t in key["trials"] if t["run"] in scored]}
    scores = (
        auto_two_choice_study(key, {n: encoder for n in scored}, scored, run_folders)
        if scored
        else {}
    )
    write_auto_scores(scores, kit.study_id, out / "auto2afc.json")
    for name, why in skipped.items():
        log(f"automatic score: run {name} skipped ({why})")
    for name, score in scores.items():
        log(
            f"automatic two-choice, run {name}: {score.percent_correct:.1f}% correct "
            f"(95% CI {score.ci95[0]:.1f}-{score.ci95[1]:.1f}, {score.n_trials} trials)"
        )

    if answers:
        from wavbrivl.sheets.analysis import analyse

        analyse(list(answers), kit.key_path, out / "table1.md", auto_path=out / "auto2afc.json")
        log(f"Table 1 from {len(answers)} answer file(s): {out / 'table1.md'}")
    return {
        "study_id": kit.study_id,
        "columns": columns,
        "auto": {n: s.percent_correct for n, s in scores.items()},
    }
