"""Extraction stage: per clip, one square JPEG frame and 16 kHz mono FLAC audio (ffmpeg).

Modules: ``probe`` (stream facts from ``ffmpeg -i``), ``argv`` (pure ffmpeg argv builders),
``frame_policy`` (which moment the frame is taken at), ``runner`` (one shard, thread pool,
writes the media Parquet), ``media`` (schema, reader and decoders of that Parquet).
"""

from wavbrivl.extract.argv import extract_clip_argv
from wavbrivl.extract.frame_policy import FRAME_POLICIES, frame_time
from wavbrivl.extract.media import (
    MEDIA_SCHEMA,
    decode_audio,
    decode_frame,
    decode_frame_array,
    read_media,
    read_media_metadata,
)
from wavbrivl.extract.probe import MediaInfo, ProbeError, probe_media
from wavbrivl.extract.runner import ExtractConfig, extract_shard

__all__ = [
    "FRAME_POLICIES",
    "MEDIA_SCHEMA",
    "ExtractConfig",
    "MediaInfo",
    "ProbeError",
    "decode_audio",
    "decode_frame",
    "decode_frame_array",
    "extract_clip_argv",
    "extract_shard",
    "frame_time",
    "probe_media",
    "read_media",
    "read_media_metadata",
]
