"""Embed one media shard's frames with a frozen image encoder into an embedding Parquet.

Memory stays bounded however large the shard: the media file is read in row batches
(frames only, never the audio column), views are encoded ``batch_size`` at a time, and the
writer flushes each batch as a row group.

Views: view 0 is the clean frame; views 1..n_views-1 apply BriVL's training colour
augmentation with a seed derived from (seed, clip_id, view), so a rerun, another machine or
another batch size gives the same embeddings.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from wavbrivl.configs import check_block, default_field
from wavbrivl.embed.store import EmbeddingWriter
from wavbrivl.encoders.preprocess import view_seed
from wavbrivl.encoders.registry import ImageEncoder
from wavbrivl.extract.media import count_media_rows, decode_frame, iter_media_rows
from wavbrivl.status import OK


@dataclass(frozen=True)
class EmbedSettings:
    """What changes the embeddings besides the encoder itself (goes into the file metadata)."""

    # The `embed` block's n_views and view_seed: defaults and rules from the config schema.
    n_views: int = default_field("embed", "n_views")
    seed: int = default_field("embed", "view_seed")

    def __post_init__(self) -> None:
        check_block({"n_views": self.n_views, "view_seed": self.seed}, "embed")


@dataclass
class EmbedSummary:
    clips: int = 0
    embedded: int = 0
    rows: int = 0
    skipped: int = 0


def decode_jpeg(data: bytes) -> Image.Image:
    """JPEG bytes -> RGB image; raises ValueError with the reason for a corrupt frame."""
    try:
        return decode_frame(data)  # decoded now, so truncation shows here, not in the encoder
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"corrupt JPEG frame: {exc}") from None


def _frames(media_path: Path, batch_rows: int) -> Iterator[tuple[str, str, str, bytes | None]]:
    """(clip_id, status, reason, frame bytes or None) for each media row, streamed."""
    for rows in iter_media_rows(media_path, ["frame"], batch_rows=batch_rows):
        yield from rows[["clip_id", "status", "reason", "frame"]].itertuples(index=False)


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def embed_shard(
    media_path: str | Path,
    out_path: str | Path,
    encoder: ImageEncoder,
    settings: EmbedSettings,
    *,
    batch_size: int = 16,
    log: TextIO = sys.stderr,
) -> EmbedSummary:
    """Embed every ok frame of ``media_path`` (all views) and write ``out_path`` atomically."""
    media_path = Path(media_path)
    metadata = {
        **encoder.metadata(),  # name, fingerprint, dim, image size, box mode, preprocessing
        "n_views": str(settings.n_views),
        "view_seed": str(settings.seed),
        "media_file": media_path.name,
    }
    if encoder.device.type == "cuda" and hasattr(encoder, "model"):
        encoder.model.to(memory_format=torch.channels_last)

    summary = EmbedSummary()
    total = count_media_rows(media_path)
    pending: list[tuple[str, int, Image.Image]] = []

    def flush(writer: EmbeddingWriter) -> None:
        if not pending:
            return
        clip_ids = [c for c, _, _ in pending]
        views = [v for _, v, _ in pending]
        seeds = [view_seed(c, v, settings.seed) if v > 0 else None for c, v, _ in pending]
        with torch.inference_mode(), _autocast(encoder.device):
            if any(s is not None for s in seeds):
                # Augmented and clean views are encoded separately: aug_seeds applies to all.
                out = np.empty((len(pending), encoder.dim), dtype=np.float32)
                clean = [i for i, s in enumerate(seeds) if s is None]
                aug = [i for i, s in enumerate(seeds) if s is not None]
                if clean:
                    out[clean] = _encode(encoder, [pending[i][2] for i in clean], None)
                out[aug] = _encode(encoder, [pending[i][2] for i in aug], [seeds[i] for i in aug])
            else:
                out = _encode(encoder, [img for _, _, img in pending], None)
        writer.write(clip_ids, views, out)
        summary.rows += len(pending)
        pending.clear()

    with EmbeddingWriter(out_path, encoder.dim, metadata) as writer:
        bar = tqdm(
            total=total,
            desc=f"embed {media_path.name}",
            unit="clip",
            file=log,
            mininterval=5,
            dynamic_ncols=False,
            ascii=True,
        )
        for clip_id, status, reason, frame in _frames(media_path, batch_rows=max(batch_size, 64)):
            summary.clips += 1
            bar.update(1)
            if status != OK or frame is None:
                writer.skip(clip_id, f"media status {status}: {reason}".strip())
                summary.skipped += 1
                continue
            try:
                image = decode_jpeg(frame)
            except ValueError as exc:
                writer.skip(clip_id, str(exc))
                summary.skipped += 1
                print(f"skip {clip_id}: {exc}", file=log)
                continue
            summary.embedded += 1
            pending.extend((clip_id, view, image) for view in range(settings.n_views))
            if len(pending) >= batch_size:
                flush(writer)
        flush(writer)
        bar.close()
    print(
        f"{out_path}: {summary.embedded} of {summary.clips} clips embedded "
        f"({summary.rows} rows, {settings.n_views} view(s) each), {summary.skipped} skipped; "
        f"encoder {encoder.name}",
        file=log,
    )
    return summary


def _encode(encoder: ImageEncoder, images, aug_seeds) -> np.ndarray:
    return encoder.encode_images(images, aug_seeds).float().cpu().numpy()  # (B, D)
