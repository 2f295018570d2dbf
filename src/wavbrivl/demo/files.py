"""The demo's CSV and JSON files, as text (pure): VGGSound and AudioSet CSVs in the real
datasets' formats, the ``id,url`` source mapping and ``demo_info.json``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from pathlib import Path

from wavbrivl.demo.classes import DemoClass
from wavbrivl.demo.plan import AUDIOSET, VGGSOUND, ClipSpec, video_path

# The real AudioSet segment files start with these comment lines (counts filled in).
AUDIOSET_CREATED_LINE = "# Segments csv created Sun Mar  5 10:54:31 2017"
AUDIOSET_COLUMNS_LINE = "# YTID, start_seconds, end_seconds, positive_labels"


def vggsound_csv_text(plan: Iterable[ClipSpec]) -> str:
    """Headerless ``id,start,label,split`` rows; labels with commas are quoted."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for spec in plan:
        if spec.dataset == VGGSOUND:
            writer.writerow([spec.video_id, int(spec.start_s), spec.label, spec.split])
    return buf.getvalue()


def audioset_segments_text(plan: Iterable[ClipSpec]) -> str:
    """AudioSet segment CSV: three comment lines, then ``YTID, start, end, "labels"``."""
    rows = [spec for spec in plan if spec.dataset == AUDIOSET]
    n_labels = len({spec.mid for spec in rows})
    lines = [
        AUDIOSET_CREATED_LINE,
        f"# num_ytids={len({s.video_id for s in rows})}, num_segs={len(rows)}, "
        f"num_unique_labels={n_labels}, num_positive_labels={len(rows)}",
        AUDIOSET_COLUMNS_LINE,
    ]
    lines += [f'{s.video_id}, {s.start_s:.3f}, {s.end_s:.3f}, "{s.mid}"' for s in rows]
    return "\n".join(lines) + "\n"


def class_labels_text(classes: Sequence[DemoClass]) -> str:
    """``class_labels_indices.csv``: names always quoted, as in the real file."""
    lines = ["index,mid,display_name"]
    lines += [f"{i},{c.mid},{_csv_quote(c.name)}" for i, c in enumerate(classes)]
    return "\n".join(lines) + "\n"


def sources_csv_text(plan: Iterable[ClipSpec], videos_dir: Path) -> str:
    """``id,url`` with the absolute ``file://`` URL of each clip's mp4."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "url"])
    for spec in plan:
        writer.writerow([spec.video_id, video_path(videos_dir, spec).resolve().as_uri()])
    return buf.getvalue()


def demo_info(plan: Sequence[ClipSpec], classes: Sequence[DemoClass], **settings) -> dict:
    """The content of ``demo_info.json``: settings, classes and counts (no timings, so a
    re-run with the same parameters writes the same bytes)."""
    vgg = [s for s in plan if s.dataset == VGGSOUND]
    return {
        **settings,
        "classes": [
            {
                "index": i,
                "name": c.name,
                "mid": c.mid,
                "key": c.key,
                "sound": c.sound,
                "picture": c.picture,
            }
            for i, c in enumerate(classes)
        ],  # fmt: skip
        "counts": {
            "classes": len(classes),
            "vggsound": len(vgg),
            "vggsound_train": sum(s.split == "train" for s in vgg),
            "vggsound_test": sum(s.split == "test" for s in vgg),
            "audioset": len(plan) - len(vgg),
            "videos": len(plan),
        },
        "files": {
            "videos": "videos",
            "vggsound": "vggsound.csv",
            "audioset_segments": "audioset/segments.csv",
            "audioset_labels": "audioset/class_labels_indices.csv",
            "sources": "sources.csv",
        },
    }


def _csv_quote(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'
