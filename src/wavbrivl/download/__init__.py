"""The download stage: one shard's clips fetched with yt-dlp, resumable (docs/architecture.md, "Artefacts").

``stage.download_shard`` is the entry point; ``options.DownloadConfig`` is the ``download:``
config block; ``status_table`` owns the per-clip status table the stage writes
(``read_status``); ``worker`` downloads one clip; ``journal`` makes a shard resumable.
"""

import importlib

# The names below load their module on first use (PEP 562): the Snakefile imports
# wavbrivl.download.sources when it builds the DAG, and yt-dlp's import would add most of a
# second to every Snakemake start.
_EXPORTS = {
    "DEFAULT_FORMAT": "options",
    "DownloadConfig": "options",
    "build_ydl_options": "options",
    "download_shard": "stage",
    "STATUS_SCHEMA": "status_table",
    "read_status": "status_table",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
