"""Where the ffmpeg binary is.

Order: ``$WAVBRIVL_FFMPEG``, then ``ffmpeg`` on PATH (Debian's package, a conda env, or the
link our set-up script puts in the venv), then the static build shipped by the
``imageio-ffmpeg`` wheel. We never need ffprobe: the imageio build lacks it, so stream
properties are read from ``ffmpeg -i`` (see wavbrivl.extract.probe).
"""

from __future__ import annotations

import functools
import os
import shutil


class FfmpegNotFound(RuntimeError):
    pass


@functools.cache
def ffmpeg_exe() -> str:
    explicit = os.environ.get("WAVBRIVL_FFMPEG")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise FfmpegNotFound(f"WAVBRIVL_FFMPEG={explicit!r} is not an executable file")
        return explicit
    on_path = shutil.which("ffmpeg")
    if on_path:
        return on_path
    try:
        import imageio_ffmpeg
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise FfmpegNotFound(
            "ffmpeg not found: install Debian's ffmpeg or `pip install imageio-ffmpeg`, "
            "or set WAVBRIVL_FFMPEG"
        ) from exc
    return imageio_ffmpeg.get_ffmpeg_exe()
