"""The CLIP-family encoders through the existing stages, unchanged: the embedding stage writes
their embeddings and headers (training and evaluation read dimension and fingerprint from
there), and guided generation optimises pixels through their tensor path."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pytest
from clip_models import register_tiny_open_clip, save_hf_clip, save_open_clip_file
from PIL import Image

from wavbrivl.atomic import write_table_atomic
from wavbrivl.embed.reader import check_fingerprint
from wavbrivl.embed.stage import EmbedSettings, embed_shard
from wavbrivl.embed.store import read_common_header, read_embeddings
from wavbrivl.encoders.from_config import encoder_from_config
from wavbrivl.generate.loop import GenerateConfig, generate
from wavbrivl.vqgan.checkpoint import build_tiny_vqgan


def _jpeg(color, size=(48, 36)) -> bytes:
    buf = io.BytesIO()
    img = Image.new("RGB", size, color)
    img.paste((255 - color[0], color[1] // 2, 40), (4, 4, size[0] // 2, size[1] // 2))
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _media_shard(path):
    rows = [
        {"clip_id": f"c{i}_0", "status": "ok", "reason": "", "frame": _jpeg(col)}
        for i, col in enumerate([(200, 30, 30), (30, 30, 200), (120, 200, 20)])
    ]
    rows.append({"clip_id": "bad_0", "status": "ok", "reason": "", "frame": b"not a jpeg"})
    for row in rows:
        row.update(audio=b"x", n_samples=16000)
    write_table_atomic(path, pa.Table.from_pylist(rows))
    return path


@pytest.fixture(scope="module")
def hf_block(tmp_path_factory):
    folder = save_hf_clip(tmp_path_factory.mktemp("w") / "tiny-clip")
    return {"encoder": "clip", "weights": str(folder), "device": "cpu", "box_mode": "whole"}


@pytest.fixture(scope="module")
def oc_block(tmp_path_factory):
    name = register_tiny_open_clip(tmp_path_factory.mktemp("cfg"))
    path = save_open_clip_file(tmp_path_factory.mktemp("w") / "tiny.pt")
    return {"encoder": "open_clip", "weights": str(path), "model_name": name, "device": "cpu"}


@pytest.mark.parametrize("which", ["hf_block", "oc_block"])
def test_the_embedding_stage_writes_clip_spaces(which, request, tmp_path):
    encoder = encoder_from_config(request.getfixturevalue(which))
    media = _media_shard(tmp_path / "media" / "000.parquet")
    out = tmp_path / "emb" / "000.parquet"
    summary = embed_shard(
        media, out, encoder, EmbedSettings(n_views=2, seed=3), batch_size=4, log=io.StringIO()
    )
    assert (summary.embedded, summary.skipped, summary.rows) == (3, 1, 6)
    header = read_common_header([out])
    assert header.dim == encoder.dim and header.fingerprint == encoder.fingerprint
    assert header.meta["encoder"] == encoder.name and "corrupt JPEG" in header.skipped["bad_0"]
    assert json.loads(header.meta["identity"])["family"] in ("hf_clip", "open_clip")
    check_fingerprint(out, encoder.fingerprint)  # what training and evaluation check
    ids, clean = read_embeddings([out], view=0)
    _, augmented = read_embeddings([out], view=1)
    assert ids == ["c0_0", "c1_0", "c2_0"] and clean.shape == (3, encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(clean, axis=1), 1.0, atol=1e-5)
    # view 0 is the library's embedding of the frame; view 1 its seeded augmentation
    frame = Image.open(io.BytesIO(_jpeg((200, 30, 30))))
    np.testing.assert_allclose(clean[0], encoder.encode_images([frame])[0].numpy(), atol=1e-5)
    assert np.abs(augmented - clean).max() > 1e-3


def test_generation_optimises_pixels_through_the_clip_tensor_path(oc_block):
    encoder = encoder_from_config(oc_block)
    vqgan = build_tiny_vqgan(seed=0)
    target = encoder.encode_text(["a red square"])  # any direction of the space
    cfg = GenerateConfig(steps=4, cutouts=2, size=[32, 32], lr=0.2)
    lines = []
    (result,) = generate(
        vqgan, encoder, target, cfg, clip_ids=["c0_0"], seeds=[1], log=lines.append
    )
    assert len(result.trace) == 4 and all(np.isfinite(result.trace))
    assert result.trace[-1] != result.trace[0]  # the pixels moved along the gradient
    assert result.image.size == (32, 32)
