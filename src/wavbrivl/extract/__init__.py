"""Extraction stage: per clip, one square JPEG frame and 16 kHz mono FLAC audio (ffmpeg).

Modules: ``probe`` (stream facts from ``ffmpeg -i``), ``argv`` (pure ffmpeg argv builders),
``frame_policy`` (which moment the frame is taken at), ``config`` (the ``extract:`` block),
``clip`` (one clip's media row), ``stage`` (the entry: one shard, thread pool, writes the
media Parquet), ``media`` (schema, readers and decoders of that Parquet).
"""

from wavbrivl.extract.argv import extract_clip_argv
from wavbrivl.extract.config import ExtractConfig
from wavbrivl.extract.frame_policy import FRAME_POLICIES, frame_time
from wavbrivl.extract.media import (
    MEDIA_SCHEMA,
    SAMPLE_RATE,
    collect_clip_audio,
    count_media_rows,
    decode_audio,
    decode_frame,
    iter_media_rows,
    read_media,
)
from wavbrivl.extract.probe import MediaInfo, ProbeError, probe_media
from wavbrivl.extract.stage import extract_shard

__all__ = [
    "FRAME_POLICIES",
    "MEDIA_SCHEMA",
    "SAMPLE_RATE",
    "ExtractConfig",
    "MediaInfo",
    "ProbeError",
    "decode_audio",
    "collect_clip_audio",
    "count_media_rows",
    "decode_frame",
    "extract_clip_argv",
    "extract_shard",
    "frame_time",
    "iter_media_rows",
    "probe_media",
    "read_media",
]
