"""The ``extract:`` config block: frame size and policy, JPEG quality, audio rate, limits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wavbrivl.configs import from_mapping
from wavbrivl.extract.frame_policy import FRAME_POLICIES
from wavbrivl.extract.media import SAMPLE_RATE


@dataclass(frozen=True)
class ExtractConfig:
    """Settings of the extraction stage (config block ``extract``)."""

    frame_size: int = 224  # side of the square JPEG frame, pixels
    frame_policy: str = "middle"  # a key of wavbrivl.extract.frame_policy.FRAME_POLICIES
    seed: int = 0  # for frame_policy=random
    jpeg_quality: int = 90  # Pillow quality, 1-100 (Pillow advises against more than 95)
    sample_rate: int = SAMPLE_RATE  # Hz of the mono FLAC audio
    min_seconds: float = 1.0  # a clip with less audio than this is bad_media
    clip_timeout_s: float = 120.0  # per ffmpeg process

    def __post_init__(self) -> None:
        problems = []
        if self.frame_size < 1:
            problems.append(f"frame_size must be >= 1, got {self.frame_size}")
        if self.frame_policy not in FRAME_POLICIES:
            problems.append(f"frame_policy must be one of {sorted(FRAME_POLICIES)}")
        if not 1 <= self.jpeg_quality <= 100:
            problems.append(f"jpeg_quality must be in [1, 100], got {self.jpeg_quality}")
        if self.sample_rate < 1:
            problems.append(f"sample_rate must be >= 1, got {self.sample_rate}")
        if self.min_seconds < 0:
            problems.append(f"min_seconds must be >= 0, got {self.min_seconds}")
        if self.clip_timeout_s <= 0:
            problems.append(f"clip_timeout_s must be > 0, got {self.clip_timeout_s}")
        if problems:
            raise ValueError("bad extract config: " + "; ".join(problems))

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
