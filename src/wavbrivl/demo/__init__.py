"""A synthetic audio-visual demo dataset made with ffmpeg, for machines without internet.

Eight classes pair a sound with a picture (hum <-> red, whistle <-> blue, noise <-> static,
...); clips are H.264/AAC mp4s described by VGGSound- and AudioSet-format CSVs and served to
the ordinary download code through ``file://`` URLs (``sources.csv``).
"""

from wavbrivl.demo.classes import DEMO_CLASSES, DemoClass
from wavbrivl.demo.plan import ClipSpec, clip_plan
from wavbrivl.demo.render import DemoSynthesisError, MissingFilter, ffmpeg_argv
from wavbrivl.demo.stage import synthesise_demo

__all__ = [
    "DEMO_CLASSES",
    "ClipSpec",
    "DemoClass",
    "DemoSynthesisError",
    "MissingFilter",
    "clip_plan",
    "ffmpeg_argv",
    "synthesise_demo",
]
