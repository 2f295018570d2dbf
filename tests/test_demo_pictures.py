"""The class agreement of a generation run's pictures (wavbrivl.demo.pictures), with an
encoder whose embedding is the image's mean colour, so the expected answer is worked out by
hand from the colours."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from wavbrivl.demo.pictures import real_frame_embeddings, score_pictures, summary_line
from wavbrivl.extract.media import MEDIA_SCHEMA
from wavbrivl.generate.png import generated_png_path

RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 255, 0)


class MeanColour:
    name = "mean-colour"
    fingerprint = "f" * 64

    def encode_images(self, images):
        rows = [
            torch.tensor(list(im.convert("RGB").getpixel((0, 0))), dtype=torch.float32) + 1
            for im in images
        ]
        emb = torch.stack(rows)
        return emb / emb.norm(dim=1, keepdim=True)


def jpeg(rgb):
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), rgb).save(buffer, format="JPEG", quality=100)
    return buffer.getvalue()


@pytest.fixture
def run(tmp_path):
    # clips: class r (real red, generated red), class b (real blue, generated blue),
    # class g (real green, generated red): 2 of 3 agree, chance 1/3.
    clips = {"r1": ("r", RED, RED), "b1": ("b", BLUE, BLUE), "g1": ("g", GREEN, RED)}
    folder = tmp_path / "gen" / "demo" / "audioset_gen"
    folder.mkdir(parents=True)
    for cid, (_, _, gen) in clips.items():
        Image.new("RGB", (8, 8), gen).save(generated_png_path(folder, cid))
    entries = [
        {"clip_id": cid, "label": cls, "labels": [cls]} for cid, (cls, _, _) in clips.items()
    ]
    (folder / "generation.json").write_text(json.dumps({"clips": entries}))
    manifest = tmp_path / "manifest.parquet"
    pq.write_table(
        pa.table(
            {
                "clip_id": list(clips),
                "labels": [[cls] for cls, _, _ in clips.values()],
                "label_names": [[f"name {cls}"] for cls, _, _ in clips.values()],
            }
        ),
        manifest,
    )
    rows = [
        {"clip_id": cid, "status": "ok", "reason": "", "frame": jpeg(real)}
        for cid, (_, real, _) in clips.items()
    ] + [{"clip_id": "gone", "status": "unavailable", "reason": "x"}]
    media = tmp_path / "000.parquet"
    full = [{name: row.get(name) for name in MEDIA_SCHEMA.names} for row in rows]
    pq.write_table(pa.Table.from_pylist(full, schema=MEDIA_SCHEMA), media)
    return folder, media, manifest


def test_agreement_is_the_share_nearest_their_own_class(run):
    folder, media, manifest = run
    record = score_pictures("demo", folder, [media], manifest, MeanColour())
    assert record["class_agreement"] == pytest.approx(2 / 3)
    assert record["chance"] == pytest.approx(1 / 3)
    assert (record["n_images"], record["n_agreeing"], record["n_real_frames"]) == (3, 2, 3)
    assert record["nearest_class"] == {"r1": "name r", "b1": "name b", "g1": "name r"}
    assert record["per_class"]["name g"] == {"n": 1, "share": 0.0}
    assert (record["run"], record["folder"]) == ("demo", str(folder))
    assert record["encoder"] == "mean-colour"
    assert record["encoder_fingerprint"] == "f" * 64
    assert summary_line(record) == (
        "demo pictures (run demo): class agreement 0.67 (2 of 3 generated images nearest "
        "their own class's real frames; chance 0.333)"
    )


def test_no_real_frame_is_an_error_naming_the_shards(run, tmp_path):
    folder, _, manifest = run
    empty = tmp_path / "001.parquet"
    pq.write_table(pa.Table.from_pylist([], schema=MEDIA_SCHEMA), empty)
    with pytest.raises(ValueError, match="no ok real frame of the generated clips.*001.parquet"):
        score_pictures("demo", folder, [empty], manifest, MeanColour())


def test_a_generated_clip_unknown_to_the_manifest_is_named(run, tmp_path):
    folder, media, _ = run
    other = tmp_path / "other.parquet"
    pq.write_table(
        pa.table({"clip_id": ["r1"], "labels": [["r"]], "label_names": [["name r"]]}), other
    )
    with pytest.raises(KeyError, match=r"no labels for generated clip\(s\) \['b1', 'g1'\]"):
        score_pictures("demo", folder, [media], other, MeanColour())


def media_shard(path, rows):
    full = [{name: row.get(name) for name in MEDIA_SCHEMA.names} for row in rows]
    pq.write_table(pa.Table.from_pylist(full, schema=MEDIA_SCHEMA), path)
    return path


def test_real_frames_are_the_ok_rows_of_the_clips_asked_for_in_every_batch(tmp_path):
    shard = media_shard(
        tmp_path / "002.parquet",
        [
            {"clip_id": "x0", "status": "ok", "reason": "", "frame": jpeg(BLUE)},  # not asked
            {"clip_id": "b1", "status": "bad_media", "reason": "x", "frame": jpeg(BLUE)},
            {"clip_id": "g1", "status": "ok", "reason": "", "frame": jpeg(GREEN)},
            {"clip_id": "r1", "status": "ok", "reason": "", "frame": jpeg(RED)},
        ],
    )
    # one row per batch: the first batch keeps nothing, the next two keep one frame each
    ids, emb = real_frame_embeddings(MeanColour(), [shard], {"b1", "g1", "r1"}, batch_size=1)
    assert ids == ["g1", "r1"]
    expected = torch.tensor([GREEN, RED], dtype=torch.float32) + 1
    expected = expected / expected.norm(dim=1, keepdim=True)
    assert emb.shape == (2, 3)
    assert torch.allclose(torch.from_numpy(emb), expected, atol=0.02)  # JPEG's colour error


def test_a_run_folder_without_its_record_names_the_run(tmp_path, run):
    _, media, manifest = run
    with pytest.raises(FileNotFoundError, match="run 'demo': .*generation.json does not exist"):
        score_pictures("demo", tmp_path / "empty", [media], manifest, MeanColour())


def test_at_most_ten_unknown_clips_are_named(run, tmp_path):
    _, media, manifest = run
    folder = tmp_path / "many"
    folder.mkdir()
    ids = [f"u{i:02d}" for i in range(12)]
    for cid in ids:
        Image.new("RGB", (8, 8), RED).save(generated_png_path(folder, cid))
    entries = [{"clip_id": cid, "label": "r", "labels": ["r"]} for cid in ids]
    (folder / "generation.json").write_text(json.dumps({"clips": entries}))
    with pytest.raises(KeyError) as raised:
        score_pictures("demo", folder, [media], manifest, MeanColour())
    assert str(ids[:10]) in str(raised.value) and "u10" not in str(raised.value)
