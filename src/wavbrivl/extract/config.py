"""The ``extract:`` config block: frame size and policy, JPEG quality, audio rate, limits,
clips per ffmpeg process."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wavbrivl.configs import check_block, default_field, from_mapping
from wavbrivl.extract.frame_policy import FRAME_POLICIES


@dataclass(frozen=True)
class ExtractConfig:
    """Settings of the extraction stage (config block ``extract``)."""

    # The workflow's `extract` block; defaults and valid ranges come from the config schema.
    frame_size: int = default_field("extract", "frame_size")  # side of the square JPEG frame
    frame_policy: str = default_field("extract", "frame_policy")  # a key of FRAME_POLICIES
    seed: int = default_field("extract", "seed")  # for frame_policy=random
    jpeg_quality: int = default_field("extract", "jpeg_quality")  # Pillow quality
    sample_rate: int = default_field("extract", "sample_rate")  # Hz of the mono FLAC audio
    min_seconds: float = default_field("extract", "min_seconds")  # less audio is bad_media
    clip_timeout_s: float = default_field("extract", "clip_timeout_s")  # per clip of a process
    batch_size: int = default_field("extract", "batch_size")  # clips per ffmpeg process

    def __post_init__(self) -> None:
        check_block(self, "extract")
        if self.frame_policy not in FRAME_POLICIES:  # the schema's enum and the code must agree
            raise ValueError(f"frame_policy must be one of {sorted(FRAME_POLICIES)}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ExtractConfig:
        """Build from a config mapping; unknown keys are an error (a typo must not pass)."""
        return from_mapping(cls, values, "extract config")

    def parquet_metadata(self, resampler: str) -> dict[str, str]:
        return {
            "wavbrivl.frame_size": str(self.frame_size),
            "wavbrivl.sample_rate": str(self.sample_rate),
            "wavbrivl.frame_policy": self.frame_policy,
            "wavbrivl.frame_seed": str(self.seed),
            "wavbrivl.jpeg_quality": str(self.jpeg_quality),
            "wavbrivl.resampler": resampler,
        }
