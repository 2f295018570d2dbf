"""Resume only what was started with the same recipe.

Snakemake reruns the training job in two very different cases: the previous attempt was
interrupted (resume from its checkpoints), or something it depends on changed (start afresh:
resuming a finished run of an old recipe would silently return the old model). The run folder
keeps ``recipe.json``: the job's settings plus the identity of every input file; a job whose
recipe differs clears the old checkpoints, log and curves before training.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from wavbrivl.atomic import write_text_atomic

RUN_STATE = ("checkpoints", "train_log.tsv", "curves.png")


def file_identity(paths: Iterable[str | os.PathLike]) -> list[list[Any]]:
    """(path, size, mtime_ns) of each input file or folder: any upstream rewrite changes it."""
    identity = []
    for path in sorted(str(p) for p in paths):
        stat = os.stat(path)
        identity.append([path, stat.st_size, stat.st_mtime_ns])
    return identity


def prepare_run_dir(
    out_dir: str | os.PathLike,
    settings: Mapping[str, Any],
    inputs: Iterable[str | os.PathLike],
    log: Callable[[str], None],
) -> bool:
    """Make ``out_dir`` ready for this recipe; True when earlier state was cleared."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    recipe = json.dumps(
        {"settings": settings, "inputs": file_identity(inputs)},
        sort_keys=True,
        indent=1,
        default=str,
    )
    path = out_dir / "recipe.json"
    cleared = False
    if path.exists() and path.read_text() != recipe:
        log(f"{out_dir}: settings or inputs changed since the last attempt; starting afresh")
        for name in RUN_STATE:
            target = out_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
        cleared = True
    write_text_atomic(path, recipe)
    return cleared
