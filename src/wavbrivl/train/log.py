"""The training log and its curves: ``train_log.tsv`` (one row per log interval and per
validation) and ``curves.png`` drawn from it."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from wavbrivl.atomic import atomic_path

LOG_NAME = "train_log.tsv"
CURVES_NAME = "curves.png"
LOG_COLUMNS = [
    "kind",  # train | val
    "step",
    "epoch",
    "lr",
    "loss",  # mean over the finite steps since the previous row
    "grad_norm",
    "skipped_steps",  # non-finite steps so far
    "padded_clips",  # clips shorter than the window, since the previous row
    "bad_clips",  # undecodable clips dropped, since the previous row
    "samples_per_s",
    "elapsed_s",
    "val_r1_a2i",  # validation instance-level R@1, audio -> image and image -> audio
    "val_r1_i2a",
    "val_r1_chance",  # R@1 of random ranking on the same clips
]
# Fields that may change between a checkpoint and its resume without changing the result.


class TrainLog:
    """``train_log.tsv``: one row per log interval and per validation, appended as they come.

    On resume, rows after the checkpoint's step are cut (they will be redone), and so is the
    final validation of a finished run (it runs again). A row with a column the header lacks
    (a new loss term) widens the header: the file is small, so it is rewritten.
    """

    def __init__(self, path: Path, *, resume_step: int, final_step: int):
        self.path = path
        self.columns: list[str] = []
        if path.exists() and path.stat().st_size:
            with open(path, newline="") as fh:
                header, *lines = list(csv.reader(fh, delimiter="\t"))
            self.columns = header
            rows = [dict(zip(header, line, strict=False)) for line in lines if line]

            def kept(row: dict[str, str]) -> bool:
                step = int(row["step"])
                redone_final = row["kind"] == "val" and step == resume_step == final_step
                return step <= resume_step and not redone_final

            self._rewrite(self.columns, [r for r in rows if kept(r)])

    def _rewrite(self, columns: list[str], rows: list[dict[str, str]]) -> None:
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, columns, delimiter="\t", lineterminator="\n", restval="")
            writer.writeheader()
            writer.writerows(rows)

    def write(self, row: dict[str, Any]) -> None:
        # dict.fromkeys: a row key that is also a fixed column is added once, not twice.
        new = [k for k in dict.fromkeys((*LOG_COLUMNS, *sorted(row))) if k not in self.columns]
        if new:
            old_rows: list[dict[str, str]] = []
            if self.path.exists() and self.columns:
                with open(self.path, newline="") as fh:
                    old_rows = list(csv.DictReader(fh, delimiter="\t"))
            self.columns = self.columns + new
            self._rewrite(self.columns, old_rows)
        with open(self.path, "a", newline="") as fh:
            fh.write("\t".join(cell(row.get(c)) for c in self.columns) + "\n")


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_curves(log_path: Path, out_path: Path) -> None:
    """``curves.png``: training loss, learning rate and validation R@1 against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    table = pd.read_csv(log_path, sep="\t")
    train_rows, val_rows = table[table["kind"] == "train"], table[table["kind"] == "val"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(train_rows["step"], train_rows["loss"])
    axes[0].set(title="training loss (CXLoss)", xlabel="step")
    axes[1].plot(train_rows["step"], train_rows["lr"])
    axes[1].set(title="learning rate", xlabel="step")
    for column, name in (("val_r1_a2i", "audio→image"), ("val_r1_i2a", "image→audio")):
        if column in val_rows and val_rows[column].notna().any():
            axes[2].plot(val_rows["step"], val_rows[column], marker="o", label=name)
    if "val_r1_chance" in val_rows and val_rows["val_r1_chance"].notna().any():
        axes[2].plot(val_rows["step"], val_rows["val_r1_chance"], "k--", label="chance")
    axes[2].set(title="validation R@1 (instance)", xlabel="step")
    if axes[2].has_data():
        axes[2].legend()
    fig.tight_layout()
    with atomic_path(out_path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
