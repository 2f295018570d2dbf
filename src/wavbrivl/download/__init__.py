"""The download stage: one shard's clips fetched with yt-dlp, resumable (docs/architecture.md, "Artefacts").

``download_shard`` is the entry point; ``DownloadConfig`` is the ``download:`` config block;
``read_status`` reads the per-clip status table the stage writes.
"""

from wavbrivl.download.options import DEFAULT_FORMAT, DownloadConfig, build_ydl_options
from wavbrivl.download.runner import STATUS_SCHEMA, download_shard, read_status

__all__ = [
    "DEFAULT_FORMAT",
    "STATUS_SCHEMA",
    "DownloadConfig",
    "build_ydl_options",
    "download_shard",
    "read_status",
]
