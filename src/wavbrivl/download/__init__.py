"""The download stage: one shard's clips fetched with yt-dlp, resumable (docs/architecture.md, "Artefacts").

``stage.download_shard`` is the entry point; ``options.DownloadConfig`` is the ``download:``
config block; ``status_table`` owns the per-clip status table the stage writes
(``read_status``); ``worker`` downloads one clip; ``journal`` makes a shard resumable.
"""

from wavbrivl.download.options import DEFAULT_FORMAT, DownloadConfig, build_ydl_options
from wavbrivl.download.stage import download_shard
from wavbrivl.download.status_table import STATUS_SCHEMA, read_status

__all__ = [
    "DEFAULT_FORMAT",
    "STATUS_SCHEMA",
    "DownloadConfig",
    "build_ydl_options",
    "download_shard",
    "read_status",
]
