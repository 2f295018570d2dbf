"""A clip's display and class label, read from a manifest: one owner for every stage."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from wavbrivl.generate.png import generated_png_path, progress_png_path
from wavbrivl.manifest.labels import class_label, display_label, read_clip_labels


def test_display_label_prefers_names_and_joins_them():
    assert display_label(["/m/1", "/m/2"], ["Dog", "Bark"]) == "Dog; Bark"
    assert display_label(["/m/1", "/m/2"], None) == "/m/1; /m/2"
    assert display_label(["/m/1"], []) == "/m/1"
    assert display_label(None, None) == ""


def test_class_label_is_the_first_name_else_the_first_id():
    assert class_label(["/m/1", "/m/2"], ["Dog", "Bark"]) == "Dog"
    assert class_label(["/m/1"], [""]) == "/m/1"
    assert class_label([], []) == ""


def test_read_clip_labels_from_a_manifest(tmp_path):
    path = tmp_path / "m.parquet"
    pq.write_table(
        pa.table(
            {
                "clip_id": ["a_0", "b_0"],
                "labels": [["/m/1", "/m/2"], ["dog barking"]],
                "label_names": [["Dog", "Bark"], None],
            }
        ),
        path,
    )
    labels = read_clip_labels(path)
    assert labels["a_0"].display == "Dog; Bark" and labels["a_0"].first == "Dog"
    assert labels["a_0"].ids == ("/m/1", "/m/2")
    assert labels["b_0"].display == "dog barking" and labels["b_0"].names == ()


def test_generated_png_paths_are_spelled_in_one_place(tmp_path):
    assert generated_png_path(tmp_path, "abc_30000") == tmp_path / "abc_30000.png"
    assert progress_png_path(tmp_path / "progress", "abc_30000", 7) == (
        tmp_path / "progress" / "abc_30000" / "step_00007.png"
    )
    with pytest.raises(ValueError, match="unsafe clip id"):
        generated_png_path(tmp_path, "../evil")
