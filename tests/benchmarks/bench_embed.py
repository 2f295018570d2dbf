"""Benchmark: images/s of the embedding stage against the bare forward pass of the same model.

For each model (`tiny`, and the BriVL-1.0 B5 architecture at 456 px with random weights), the
stage (`embed_shard`: read the media Parquet, decode JPEGs, preprocess, encode, write Parquet)
is timed against the model's forward on pre-decoded, pre-normalised tensors at the same batch
size. Each measurement runs in a fresh process so peak RSS is its own. CPU, batch 8.
Prints figures; asserts nothing.

    .venv/bin/python tests/benchmarks/bench_embed.py [--skip-b5]
"""

from __future__ import annotations

import io
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path

BATCH = 8


def make_media(path: Path, n: int) -> None:
    import numpy as np
    import pyarrow as pa
    from PIL import Image

    from wavbrivl.atomic import write_table_atomic

    rng = np.random.default_rng(0)
    frames = []
    for _ in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)).save(
            buf, "JPEG", quality=90
        )
        frames.append(buf.getvalue())
    write_table_atomic(
        path,
        pa.table(
            {
                "clip_id": [f"c{i}_0" for i in range(n)],
                "status": ["ok"] * n,
                "reason": [""] * n,
                "frame": pa.array(frames, pa.binary()),
            }
        ),
    )


def build(model: str):
    import torch

    from wavbrivl.encoders.brivl import BRIVL_1_0, BriVLImageEncoder
    from wavbrivl.encoders.registry import BriVLEncoder, build_tiny

    torch.set_num_threads(2)
    if model == "tiny":
        return build_tiny(seed=0)
    return BriVLEncoder(
        BriVLImageEncoder(BRIVL_1_0),
        name="b5-random",
        box_mode="whole",
        weights_id={"random": True},
    )


def run_stage(model: str, media: str, out: str, queue) -> None:
    from wavbrivl.embed.stage import EmbedSettings, embed_shard

    encoder = build(model)
    import pyarrow.parquet as pq

    n = pq.ParquetFile(media).metadata.num_rows
    # Warm-up on a copy of the first rows, as the bare pass gets one.
    warm = Path(out).with_name("warm.parquet")
    pq.write_table(pq.read_table(media).slice(0, BATCH), warm)
    embed_shard(warm, out, encoder, EmbedSettings(), batch_size=BATCH, log=open("/dev/null", "w"))
    start = time.perf_counter()
    embed_shard(media, out, encoder, EmbedSettings(), batch_size=BATCH, log=open("/dev/null", "w"))
    queue.put(
        (n / (time.perf_counter() - start), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    )


def run_bare(model: str, n: int, queue) -> None:
    import torch

    from wavbrivl.encoders.boxes import boxes_for_batch

    encoder = build(model)
    size = encoder.preprocess.img_size
    pixels = torch.randn(BATCH, 3, size, size)
    boxes, n_boxes = boxes_for_batch("whole", BATCH, size, encoder.model.cfg.max_boxes)
    with torch.inference_mode():
        encoder.model.encode_image(pixels, boxes, n_boxes)  # warm-up
        start = time.perf_counter()
        for _ in range(n // BATCH):
            encoder.model.encode_image(pixels, boxes, n_boxes)
    queue.put(
        (
            (n // BATCH) * BATCH / (time.perf_counter() - start),
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        )
    )


def in_child(target, *args):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    models = [("tiny", 256)] + ([] if "--skip-b5" in sys.argv else [("b5-456", 32)])
    with tempfile.TemporaryDirectory() as tmp:
        print(
            f"{'model':<8} {'images':>6} {'stage img/s':>12} {'bare img/s':>11} {'ratio':>6} "
            f"{'stage RSS MB':>13} {'bare RSS MB':>12}"
        )
        for model, n in models:
            media = Path(tmp) / f"{model}.parquet"
            make_media(media, n)
            stage, stage_rss = in_child(
                run_stage, model, str(media), str(Path(tmp) / "out.parquet")
            )
            bare, bare_rss = in_child(run_bare, model, n)
            print(
                f"{model:<8} {n:>6} {stage:>12.2f} {bare:>11.2f} {stage / bare:>6.2f} "
                f"{stage_rss / 1024:>13.0f} {bare_rss / 1024:>12.0f}"
            )


if __name__ == "__main__":
    main()
