"""The evaluation sheets: the Figure-4 grid, the two-choice study kit and its Table-1 analysis.

Every sheet starts from one or more generation folders (one per run), read by their owner,
:mod:`wavbrivl.generate.records`:

    <folder>/<clip_id>.png      the image generated from the clip's audio
    <folder>/generation.json    {"clips": [{"clip_id": ..., "label": ..., "labels": [...],
                                            "seed": ..., "final_similarity": ...}, ...], ...}

``label`` is the display name of the clip's class (shown under the grid, written to the answer
key); ``labels`` (optional) are its class ids, used to decide that two clips are of *different*
classes (disjoint label sets). Without ``labels`` the display label is the class. Labels from
the manifest (:func:`wavbrivl.manifest.labels.read_clip_labels`) can replace both
(:meth:`GenerationRun.with_labels`).

Modules: :mod:`.grid` (figure), :mod:`.study` (trials, HTML page, answer key),
:mod:`.trials` (match, catch and comparison trials), :mod:`.analysis` (Table 1 from answer
CSVs), :mod:`.raters` (catch screening, Wilson intervals, Fleiss' kappa), :mod:`.power`
(raters needed), :mod:`.simulate` (simulated raters), :mod:`.report_html` (Table 1 for the
report), :mod:`.auto2afc` (the automatic two-choice score).
"""

from wavbrivl.generate.records import (
    GeneratedClip,
    GenerationRun,
    load_generation_run,
    load_generation_runs,
)

__all__ = ["GeneratedClip", "GenerationRun", "load_generation_run", "load_generation_runs"]
