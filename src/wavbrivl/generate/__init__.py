"""Audio-guided image generation (the VQGAN-CLIP loop with a g(audio) target).

``generate_for_clips`` is the workflow's call; ``generate`` the optimisation on given targets.
"""

from wavbrivl.generate.cutouts import CutoutRng, CutoutSettings, make_cutouts
from wavbrivl.generate.loop import GenerateConfig, GenerationResult, generate
from wavbrivl.generate.png import read_png_metadata, save_png
from wavbrivl.generate.run import audio_targets, clip_seed, generate_for_clips

__all__ = [
    "CutoutRng",
    "CutoutSettings",
    "GenerateConfig",
    "GenerationResult",
    "audio_targets",
    "clip_seed",
    "generate",
    "generate_for_clips",
    "make_cutouts",
    "read_png_metadata",
    "save_png",
]
