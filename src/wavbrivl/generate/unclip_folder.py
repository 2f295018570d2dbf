"""A Stable unCLIP pipeline folder in diffusers' layout: what it must hold (no torch here).

``StableUnCLIPImg2ImgPipeline.save_pretrained`` (or a download of e.g.
stable-diffusion-2-1-unclip) writes ``model_index.json`` and one folder per component;
:func:`pipeline_folder_problem` says what is missing in one line, for the workflow's
``check_weights`` (before any job starts) and for the loader (docs/generation-unclip.md).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

KEY = "generate.unclip.pipeline"
PIPELINE_CLASS = "StableUnCLIPImg2ImgPipeline"
WEIGHT_SUFFIXES = (".safetensors", ".bin")
#: Each component's folder and the files it needs (``WEIGHTS``: a .safetensors or .bin file;
#: ``TOKENIZER``: tokenizer.json, or vocab.json + merges.txt).
WEIGHTS = "weights"
TOKENIZER = "tokenizer files"
COMPONENTS: dict[str, tuple[str, ...]] = {
    "feature_extractor": ("preprocessor_config.json",),
    "image_encoder": ("config.json", WEIGHTS),
    "image_normalizer": ("config.json", WEIGHTS),
    "image_noising_scheduler": ("scheduler_config.json",),
    "tokenizer": (TOKENIZER,),
    "text_encoder": ("config.json", WEIGHTS),
    "unet": ("config.json", WEIGHTS),
    "scheduler": ("scheduler_config.json",),
    "vae": ("config.json", WEIGHTS),
}


def missing_components(folder: str | os.PathLike) -> list[str]:
    """``component (what it lacks)`` for every component short of a file; empty if none."""
    root = Path(folder)
    problems = []
    for component, needs in COMPONENTS.items():
        sub = root / component
        for need in needs:
            if need == WEIGHTS:
                present = sub.is_dir() and any(
                    p.name.endswith(WEIGHT_SUFFIXES) for p in sub.iterdir()
                )
                need = "*.safetensors or *.bin"
            elif need == TOKENIZER:
                present = (sub / "tokenizer.json").is_file() or all(
                    (sub / n).is_file() for n in ("vocab.json", "merges.txt")
                )
                need = "tokenizer.json or vocab.json + merges.txt"
            else:
                present = (sub / need).is_file()
            if not present:
                problems.append(f"{component} ({component}/{need})")
    return problems


def pipeline_folder_problem(path: str) -> str | None:
    """What is wrong with a pipeline folder, in one phrase; None when it is complete."""
    from wavbrivl.weights_check import hub_name_problem

    hub = hub_name_problem(path)
    if hub:
        return hub
    if not os.path.isdir(path):
        return "no such folder"
    index = Path(path) / "model_index.json"
    if not index.is_file():
        return "no model_index.json (not a diffusers pipeline folder)"
    try:
        class_name = json.loads(index.read_bytes()).get("_class_name")  # UTF-8/16/32
    except (json.JSONDecodeError, AttributeError, UnicodeDecodeError):
        return "model_index.json is not a JSON object"
    if class_name != PIPELINE_CLASS:
        return f"model_index.json names {class_name!r}, not {PIPELINE_CLASS!r}"
    missing = missing_components(path)
    if missing:
        return f"missing component(s) {'; '.join(missing)}"
    return None


def check_pipeline_folder(folder: str | os.PathLike | None, key: str = KEY) -> Path:
    """The folder as a Path, or a one-line ``LocalWeightsError`` naming it and what is wrong."""
    from wavbrivl.encoders.clip_family import LocalWeightsError

    if folder is None:
        raise LocalWeightsError(
            f"{key} is not set: generate.method unclip needs a local folder of a "
            f"{PIPELINE_CLASS} in diffusers' layout (docs/generation-unclip.md)"
        )
    problem = pipeline_folder_problem(os.fspath(folder))
    if problem:
        raise LocalWeightsError(f"{key}: {os.fspath(folder)}: {problem}")
    return Path(folder)


__all__ = [
    "COMPONENTS",
    "KEY",
    "PIPELINE_CLASS",
    "check_pipeline_folder",
    "missing_components",
    "pipeline_folder_problem",
]
