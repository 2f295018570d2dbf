"""``wavbrivl export``: a trained run as a self-contained folder, without pickle.

An export folder holds

- ``model.safetensors``: the weights used for inference (the audio encoder, WavLM included,
  and the projection ``g`` into the image space); the training-only parts (``f``, the
  momentum copies, the queues) are left out;
- ``config.json``: the format, both model configs, the WavLM configuration (so the WavLM
  directory of the training machine is not needed), the waveform normalisation, the window
  ``embed_audio`` uses, the step count and the training config;
- ``image_space.json``: the frozen image space's fingerprint and dimension; ``wavbrivl.load``
  refuses embeddings (and text encoders) of any other space, naming both fingerprints;
- ``README.md``: a model card (training data, steps, evaluation and benchmark figures,
  intended use, limits), written from the run's own files.

The folder is written under a temporary name and renamed when complete. Loading it reads
JSON and safetensors only: no code in it runs.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

PathLike = str | os.PathLike
EXPORT_FORMAT = "wavbrivl.export/1"
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
SPACE_NAME = "image_space.json"
CARD_NAME = "README.md"
#: State-dict prefixes that ``embed_audio`` uses; everything else serves training only.
INFERENCE_PREFIXES = ("audio_encoder.", "g.")


class ExportError(ValueError):
    """An export that cannot be written or read; the message names the file."""


def is_export(path: PathLike) -> bool:
    path = Path(path)
    return path.is_dir() and (path / CONFIG_NAME).is_file() and (path / WEIGHTS_NAME).is_file()


def inference_state(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The entries ``embed_audio`` needs, as contiguous tensors of their own (safetensors
    refuses views that share memory)."""
    return {
        k: v.detach().cpu().contiguous().clone()
        for k, v in state_dict.items()
        if k.startswith(INFERENCE_PREFIXES)
    }


# -- writing ---------------------------------------------------------------------------------


def export_run(
    run: PathLike, out: PathLike, *, wavlm: str | None = None, overwrite: bool = False
) -> Path:
    """Write the export folder ``out`` for the run at ``run`` (``audio_encoder.pt`` or its
    folder); returns ``out``. An existing non-empty ``out`` is refused unless ``overwrite``."""
    from safetensors.torch import save_file

    from wavbrivl.api import load

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise ExportError(f"{out}: exists and is not empty; choose another folder or remove it")
    model = load(run, wavlm=wavlm)
    info = model.info
    artefact = Path(info["source"])
    encoder = model.model.audio_encoder

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        save_file(
            inference_state(model.model.state_dict()),
            str(tmp / WEIGHTS_NAME),
            metadata={"format": EXPORT_FORMAT},
        )
        config = {
            "format": EXPORT_FORMAT,
            "audio_config": {**info["audio_config"], "wavlm": "(in this file: wavlm_config)"},
            "moco_config": info["moco_config"],
            "wavlm_config": encoder.wavlm.config.to_dict(),
            "normalize_waveform": bool(encoder.normalize_waveform),
            "sample_rate": info["sample_rate"],
            "window_s": info["window_s"],
            "step": info["step"],
            "model_fingerprint": info["model_fingerprint"],
            "train_config": info["train_config"],
            "metrics": info["metrics"],
            "exported_from": artefact.name,
        }
        _write_json(tmp / CONFIG_NAME, config)
        _write_json(tmp / SPACE_NAME, info["image_space"])
        (tmp / CARD_NAME).write_text(model_card(config, info["image_space"], run_facts(artefact)))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=1, sort_keys=True, default=str) + "\n")


def run_facts(artefact: Path) -> dict[str, Any]:
    """What the workflow's files say about the run beside its model (each fact optional):
    ``<dir>/results/models/<run>/audio_encoder.pt`` -> the training log's data line, the test
    metrics of ``results/eval/<run>/metrics.json``, ``benchmarks/train_audio_encoder/<run>.tsv``.
    """
    facts: dict[str, Any] = {}
    run_dir = artefact.resolve().parent
    run = run_dir.name
    parents = run_dir.parents
    if len(parents) < 3:
        return facts
    root = parents[2]  # results/models/<run> -> the workflow's working directory
    recipe = run_dir / "recipe.json"
    if recipe.is_file():
        settings = json.loads(recipe.read_text()).get("settings", {})
        facts["dataset"] = settings.get("train", {}).get("dataset")
        facts["encoder"] = settings.get("encoder")
    log = root / "logs" / "train_audio_encoder" / f"{run}.log"
    if log.is_file():
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("data: "):
                facts["data"] = line[len("data: ") :]
    metrics = root / "results" / "eval" / run / "metrics.json"
    if metrics.is_file():
        facts["test_metrics"] = json.loads(metrics.read_text())
    bench = root / "benchmarks" / "train_audio_encoder" / f"{run}.tsv"
    if bench.is_file():
        with open(bench, newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        if rows:
            facts["benchmark"] = rows[-1]
    return facts


def _r1(metrics: dict[str, Any], direction: str) -> str:
    try:
        cell = metrics[direction]["instance"]["R@1"]
        return f"{cell['value']:.3f} (chance {cell['chance']:.3f})"
    except (KeyError, TypeError):
        return "not recorded"


def model_card(config: dict[str, Any], space: dict[str, Any], facts: dict[str, Any]) -> str:
    """The export's README.md, from its config and the run's files (``run_facts``)."""
    train = config.get("train_config", {})
    test = facts.get("test_metrics", {})
    bench = facts.get("benchmark", {})
    lines = [
        "# WavBriVL audio encoder",
        "",
        "Maps audio (16 kHz mono) into a frozen image embedding space: g(audio), L2-normalised.",
        'Load it with `wavbrivl.load("<this folder>")` or use `wavbrivl embed-audio <this folder> FILES`.',
        "",
        "## Image space",
        "",
        f"- fingerprint: `{space.get('fingerprint')}`",
        f"- dimension: {space.get('dim')}",
        f"- image encoder: {json.dumps(facts['encoder'], sort_keys=True) if facts.get('encoder') else 'not recorded'}",
        "",
        "Embeddings, text encoders and generators of another space are refused.",
        "",
        "## Training",
        "",
        f"- dataset: {facts.get('dataset') or 'not recorded'}",
        f"- clips: {facts.get('data') or 'not recorded'}",
        f"- steps: {config.get('step')} (batch size {train.get('batch_size', '?')}, "
        f"window {config.get('window_s')} s, lr {train.get('lr', '?')})",
        f"- WavLM: {config['wavlm_config'].get('num_hidden_layers')} layers, hidden size "
        f"{config['wavlm_config'].get('hidden_size')}, "
        f"{'frozen' if config['audio_config'].get('freeze_wavlm') else 'fine-tuned'}",
        f"- model fingerprint: `{config.get('model_fingerprint')}`",
        "",
        "## Evaluation",
        "",
        f"- test split ({test.get('n_clips', '?')} clips, {test.get('n_classes', '?')} classes): "
        f"R@1 audio->image {_r1(test, 'audio_to_image')}, image->audio {_r1(test, 'image_to_audio')}",
        f"- last validation: R@1 audio->image {_r1(config.get('metrics', {}), 'audio_to_image')}",
        "",
        "## Training cost",
        "",
        (
            f"- wall time {bench.get('s', '?')} s, peak RSS {bench.get('max_rss', '?')} MB "
            "(Snakemake benchmark of train_audio_encoder)"
            if bench
            else "- not recorded"
        ),
        "",
        "## Intended use",
        "",
        "Research: embedding audio in the image space for retrieval, zero-shot classification "
        "(where the space has a text side) and image generation from sound.",
        "",
        "## Limits",
        "",
        "- Trained only on the clips above; sounds unlike them embed unreliably.",
        f"- Audio longer than {config.get('window_s')} s is embedded as the length-weighted mean "
        "of consecutive windows; nothing shorter than 25 ms can be embedded.",
        "- Figures on a small or synthetic dataset (the demo) say nothing about real audio.",
        "",
    ]
    return "\n".join(lines)


# -- reading ---------------------------------------------------------------------------------


def read_export(path: PathLike) -> tuple[dict[str, Any], dict[str, Any], dict[str, torch.Tensor]]:
    """``(config, image_space, weights)`` of an export folder, checked for its format."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    try:
        config = json.loads((path / CONFIG_NAME).read_text())
        space = json.loads((path / SPACE_NAME).read_text())
    except FileNotFoundError as exc:
        raise ExportError(f"{path}: incomplete export, {Path(exc.filename).name} missing") from None
    except json.JSONDecodeError as exc:
        raise ExportError(f"{path}: unreadable JSON ({exc})") from None
    if config.get("format") != EXPORT_FORMAT:
        raise ExportError(
            f"{path / CONFIG_NAME}: not a {EXPORT_FORMAT} export (format {config.get('format')!r})"
        )
    try:
        weights = load_file(str(path / WEIGHTS_NAME))
    except (SafetensorError, OSError) as exc:
        raise ExportError(f"{path / WEIGHTS_NAME}: unreadable ({exc})") from None
    return config, space, weights


def load_export(path: PathLike, *, device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The model (eval mode, on ``device``) and its info dict from an export folder."""
    from transformers import WavLMConfig, WavLMModel

    from wavbrivl.audio.encoder import WAVLM_OVERRIDES, AudioEncoder, AudioEncoderConfig
    from wavbrivl.train.moco import CrossModalMoCo, MoCoConfig

    config, space, weights = read_export(path)
    wavlm = WavLMModel(WavLMConfig.from_dict({**config["wavlm_config"], **WAVLM_OVERRIDES}))
    audio_cfg = AudioEncoderConfig.from_dict({**config["audio_config"], "wavlm": str(path)})
    encoder = AudioEncoder(audio_cfg, wavlm, normalize_waveform=config["normalize_waveform"])
    model = CrossModalMoCo(encoder, MoCoConfig.from_dict(config["moco_config"]))
    result = model.load_state_dict(weights, strict=False)
    missing = [k for k in result.missing_keys if k.startswith(INFERENCE_PREFIXES)]
    if missing or result.unexpected_keys:
        raise ExportError(
            f"{Path(path) / WEIGHTS_NAME}: does not match its config.json (missing "
            f"{missing[:5]}, unexpected {list(result.unexpected_keys)[:5]})"
        )
    info = {
        "source": str(path),
        "format": config["format"],
        "step": config.get("step"),
        "window_s": config["window_s"],
        "sample_rate": config["sample_rate"],
        "image_space": space,
        "model_fingerprint": config.get("model_fingerprint"),
        "audio_config": config["audio_config"],
        "moco_config": config["moco_config"],
        "train_config": config.get("train_config", {}),
        "metrics": config.get("metrics", {}),
    }
    return model.to(device).eval(), info


__all__ = [
    "EXPORT_FORMAT",
    "ExportError",
    "export_run",
    "inference_state",
    "is_export",
    "load_export",
    "model_card",
    "read_export",
    "run_facts",
]
