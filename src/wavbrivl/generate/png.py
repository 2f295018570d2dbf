"""Generated PNGs: where a clip's image lives, and files that carry their own provenance.

A generation run's folder holds ``<clip_id>.png`` per clip (:func:`generated_png_path`, the
one place that spells it) and ``progress/<clip_id>/step_<n>.png`` when asked for.

Each generated image records which clip, label, seed, step count, similarity and models
(fingerprints) made it, so a PNG copied out of ``results/`` still says where it came from.
Values are written as UTF-8 ``iTXt`` chunks (labels may be Chinese or accented).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from PIL import Image, PngImagePlugin

from wavbrivl.atomic import atomic_path
from wavbrivl.clip_ids import check_clip_id

SOFTWARE = "wavbrivl"


def generated_png_name(clip_id: str) -> str:
    """The file name of a clip's generated image (the clip id is checked to be a safe name)."""
    return f"{check_clip_id(clip_id)}.png"


def generated_png_path(run_dir: str | os.PathLike, clip_id: str) -> Path:
    """A clip's generated image in a generation run's folder."""
    return Path(run_dir) / generated_png_name(clip_id)


def progress_png_path(progress_dir: str | os.PathLike, clip_id: str, step: int) -> Path:
    """An intermediate image of a clip in the run's ``progress/`` folder."""
    return Path(progress_dir) / check_clip_id(clip_id) / f"step_{step:05d}.png"


def _check_key(key: str) -> None:
    # PNG keywords: 1-79 Latin-1 characters, no leading/trailing/double spaces.
    if not (0 < len(key) < 80) or key != key.strip() or "  " in key:
        raise ValueError(f"invalid PNG text key {key!r} (1-79 characters, no edge spaces)")
    try:
        key.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"invalid PNG text key {key!r} (must be Latin-1)") from None


def save_png(image: Image.Image, path: str | os.PathLike, *, metadata: Mapping[str, str]) -> None:
    """Write ``image`` as PNG to ``path`` atomically, with ``metadata`` as text chunks."""
    info = PngImagePlugin.PngInfo()
    for key, value in {"Software": SOFTWARE, **metadata}.items():
        _check_key(key)
        if not isinstance(value, str):
            raise TypeError(f"PNG text value for {key!r} must be str, got {type(value).__name__}")
        info.add_itxt(key, value)
    with atomic_path(path, suffix=".png") as tmp:
        image.save(tmp, format="PNG", pnginfo=info)


def read_png_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The text chunks of a PNG (``Software`` included) as a dict."""
    with Image.open(path) as image:
        if image.format != "PNG":
            raise ValueError(f"{path}: not a PNG file ({image.format})")
        image.load()  # text chunks after the image data are read only on load
        return {str(k): str(v) for k, v in image.text.items()}


__all__ = [
    "SOFTWARE",
    "generated_png_name",
    "generated_png_path",
    "progress_png_path",
    "read_png_metadata",
    "save_png",
]
