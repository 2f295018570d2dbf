"""Audio-guided image generation (the VQGAN-CLIP loop with a g(audio) target).

Modules: ``stage`` (the entry module: ``run_generation`` for the workflow,
``generate_for_clips`` on built models), ``targets`` (g(audio) per clip), ``loop``
(``generate``: the optimisation on given targets), ``cutouts``, ``png`` (generated image
files and their paths), ``records`` (the run folder's other files).

The names below load their module on first use, so a reader of generated PNGs (the sheets)
can import :mod:`wavbrivl.generate.png` without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CutoutRng": "cutouts",
    "CutoutSettings": "cutouts",
    "make_cutouts": "cutouts",
    "GenerateConfig": "loop",
    "GenerationResult": "loop",
    "generate": "loop",
    "read_png_metadata": "png",
    "save_png": "png",
    "clip_seed": "stage",
    "generate_for_clips": "stage",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = sorted(_EXPORTS)
