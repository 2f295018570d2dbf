"""Which weight files a config needs, and whether each is there and readable.

The workflow's ``check_weights`` rule (workflow/rules/weights.smk) runs this as the first step
of a run with real models; every rule that reads a weight waits for it. All problems are
reported together, each with its config key, path and what is wrong, pointing at
weights/README.md (who publishes each file, its size, where it goes). The checks are cheap
(headers, not full loads): a checkpoint must be a torch file (zip with ``data.pkl``, or a
legacy pickle), a YAML must parse into a taming model config, an HF folder must hold a WavLM
``config.json``, its preprocessor config and a weights file; a CLIP folder (HF or OpenCLIP) its
config, weights and tokenizer, and a hub name where a local path belongs is refused; BriVL's
text tokenizer folder a BERT ``config.json`` and a ``vocab.txt``.
"""

from __future__ import annotations

import json
import os
import re
import struct
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from wavbrivl.atomic import write_text_atomic

README = "weights/README.md"
UNCLIP_KEY = "generate.unclip.pipeline"


@dataclass(frozen=True)
class Weight:
    """One file (or folder) the run reads: its config key, path, kind and what it is."""

    key: str
    path: str
    kind: str  # a key of CHECKS
    what: str


class WeightsError(RuntimeError):
    """Weight files are missing or unreadable; the message lists every one."""


def is_local_path(value: str) -> bool:
    """Whether ``audio.wavlm`` names a local folder rather than a hub id (``org/name``).

    A path is local when it exists, is absolute or starts with ``.``, or when its first
    component is a folder here (``weights/wavlm-base-plus`` in a checkout, which has weights/).
    """
    if value.startswith(".") or os.path.exists(value):
        return True
    first = Path(value).parts[0]  # "/" for an absolute path, which always exists
    return os.path.isdir(first)


#: Encoders of open image spaces: encoder -> (check kind, what the weights are).
IMAGE_SPACES = {
    "clip": ("hf_clip", "HF-format CLIP model folder"),
    "open_clip": ("open_clip", "OpenCLIP checkpoint file or model folder"),
}


def required_weights(config: Mapping[str, Any]) -> list[Weight]:
    """The weight files the (defaults-filled) config reads; none for toy models."""
    weights = []
    if config["embed"]["encoder"] == "brivl":
        weights.append(
            Weight("embed.weights", config["embed"]["weights"], "torch", "BriVL-1.0 checkpoint")
        )
    encoder = config["embed"]["encoder"]
    if encoder in IMAGE_SPACES:
        kind, what = IMAGE_SPACES[encoder]
        weights.append(Weight("embed.weights", config["embed"]["weights"], kind, what))
    text_folder = config["embed"].get("text_tokenizer")
    if text_folder:
        weights.append(
            Weight(
                "embed.text_tokenizer",
                text_folder,
                "bert_text_folder",
                "chinese-roberta-wwm-ext config.json + vocab.txt",
            )
        )
    wavlm = config["audio"]["wavlm"]
    if wavlm != "tiny" and is_local_path(wavlm):
        weights.append(Weight("audio.wavlm", wavlm, "hf_wavlm", "WavLM Base+, HF format"))
    generates = any(ds.get("role") == "generation" for ds in config["datasets"].values())
    if generates and config["generate"].get("method") == "unclip":
        pipeline = config["generate"]["unclip"]["pipeline"]
        weights.append(
            Weight(UNCLIP_KEY, pipeline, "unclip_pipeline", "Stable unCLIP pipeline folder")
        )
        return weights  # the VQGAN is not read
    if generates and config["generate"]["vqgan"] == "taming":
        gen = config["generate"]
        weights.append(
            Weight("generate.vqgan_ckpt", gen["vqgan_ckpt"], "torch", "VQGAN checkpoint")
        )
        weights.append(
            Weight("generate.vqgan_yaml", gen["vqgan_yaml"], "taming_yaml", "VQGAN YAML")
        )
    return weights


# --- one check per kind: None when fine, else what is wrong ----------------------------------


def _file_problem(path: str) -> str | None:
    if not os.path.exists(path):
        return "missing"
    if os.path.isdir(path):
        return "a folder, not a file"
    if os.path.getsize(path) == 0:
        return "empty (0 bytes)"
    if not os.access(path, os.R_OK):
        return "not readable (permissions)"
    return None


def torch_problem(path: str) -> str | None:
    """A ``torch.save`` file: a zip holding ``<name>/data.pkl``, or a legacy pickle."""
    problem = _file_problem(path)
    if problem:
        return problem
    with open(path, "rb") as fh:
        head = fh.read(262)
    if head[257:262] == b"ustar":
        return "a tar archive: unpack it (tar -xf) and point the key at the .pth inside"
    if head[:2] == b"PK":
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile:
            return "truncated or damaged (a zip without a readable directory)"
        if not any(name.endswith("/data.pkl") for name in names):
            return "a zip file, but not a torch checkpoint (no data.pkl inside)"
        return None
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return None  # a legacy (pre-zip) torch pickle
    return "not a torch checkpoint (neither a torch zip nor a pickle)"


def taming_yaml_problem(path: str) -> str | None:
    """A taming-transformers model YAML: ``model.params.ddconfig`` must be there."""
    problem = _file_problem(path)
    if problem:
        return problem
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except yaml.MarkedYAMLError as err:  # syntax, or a tag safe_load refuses
        return f"not valid YAML ({err.problem} at line {err.problem_mark.line + 1})"
    except yaml.YAMLError as err:  # a character YAML does not allow (no line to point at)
        return f"not valid YAML ({str(err).splitlines()[0]})"
    except UnicodeDecodeError:
        return "not a text file"
    node = doc
    for key in ("model", "params", "ddconfig"):
        node = node.get(key) if isinstance(node, dict) else None
    if not isinstance(node, dict):
        return "not a taming model config (no model.params.ddconfig)"
    return None


def _safetensors_problem(path: str) -> str | None:
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            return "truncated (no header)"
        (length,) = struct.unpack("<Q", head)
        if 8 + length > size:
            return "truncated (header longer than the file)"
        try:
            header = json.loads(fh.read(length))
            ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            return "damaged (its header is not a safetensors header)"
    if 8 + length + max(ends, default=0) > size:
        return "truncated (shorter than its header says)"
    return None


def _config_json_problems(folder: str, model_type: str, what: str) -> list[str]:
    """The problems of a model folder's ``config.json``: missing, empty, or not ``model_type``."""
    config = os.path.join(folder, "config.json")
    problem = _file_problem(config)
    if problem:
        return [f"config.json {problem}"]
    try:
        found = json.loads(Path(config).read_text()).get("model_type")
    except (ValueError, AttributeError):
        found = "unreadable"
    if found != model_type:
        return [f"config.json is not a {what} config (model_type: {found})"]
    return []


def hf_wavlm_problem(path: str) -> str | None:
    """An HF-format WavLM folder (``save_pretrained``): config, preprocessor config, weights."""
    if not os.path.exists(path):
        return "missing"
    if not os.path.isdir(path):
        return "not a folder (an HF model folder is expected)"
    problems = _config_json_problems(path, "wavlm", "WavLM")
    preprocessor = os.path.join(path, "preprocessor_config.json")
    if _file_problem(preprocessor):
        problems.append(f"preprocessor_config.json {_file_problem(preprocessor)}")
    safetensors = os.path.join(path, "model.safetensors")
    binary = os.path.join(path, "pytorch_model.bin")
    if os.path.exists(safetensors):
        problem = _file_problem(safetensors) or _safetensors_problem(safetensors)
        if problem:
            problems.append(f"model.safetensors {problem}")
    elif os.path.exists(binary):
        problem = torch_problem(binary)
        if problem:
            problems.append(f"pytorch_model.bin {problem}")
    else:
        problems.append("no model.safetensors or pytorch_model.bin")
    return "; ".join(problems) or None


def looks_like_hub_name(value: str) -> bool:
    """``org/name`` that is not a path here (see :func:`is_local_path`): a hub id."""
    return bool(_HUB_NAME.match(value)) and not is_local_path(value)


_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def hub_name_problem(path: str) -> str | None:
    """A hub name (``org/name``, ``hf-hub:org/name``) given where a local path is expected."""
    name = path.removeprefix("hf-hub:")
    if name == path and not looks_like_hub_name(path):
        return None
    return hub_advice(name)


def hub_advice(name: str) -> str:
    """What to do with a hub name ``org/name``: download it into a local folder, by hand."""
    return (
        f"a Hugging Face hub name, not a local path, and nothing is downloaded here: "
        f"download it on a machine with internet (`hf download {name} --local-dir "
        f"weights/{name.split('/')[-1]}`) and set the key to that folder"
    )


def _weights_file_problem(path: str) -> str | None:
    """A weights file: safetensors by its header, anything else as a torch checkpoint."""
    if path.endswith(".safetensors"):
        return _file_problem(path) or _safetensors_problem(path)
    return torch_problem(path)


def hf_clip_problem(path: str) -> str | None:
    """An HF-format CLIP folder: config (model_type clip), preprocessor config, weights and
    tokenizer files (``tokenizer.json``, or ``vocab.json`` + ``merges.txt``)."""
    hub = hub_name_problem(path)
    if hub:
        return hub
    if not os.path.exists(path):
        return "missing"
    if not os.path.isdir(path):
        return "not a folder (an HF CLIP model folder is expected)"
    problems = _config_json_problems(path, "clip", "CLIP")
    preprocessor = os.path.join(path, "preprocessor_config.json")
    if _file_problem(preprocessor):
        problems.append(f"preprocessor_config.json {_file_problem(preprocessor)}")
    names = [n for n in HF_CLIP_WEIGHTS if os.path.exists(os.path.join(path, n))]
    if not names:
        problems.append(f"no {' or '.join(HF_CLIP_WEIGHTS)}")
    elif names[0] != "model.safetensors.index.json":  # shards: checked when loaded
        problem = _weights_file_problem(os.path.join(path, names[0]))
        if problem:
            problems.append(f"{names[0]} {problem}")
    tokenizer = [os.path.join(path, n) for n in ("vocab.json", "merges.txt")]
    if _file_problem(os.path.join(path, "tokenizer.json")) and any(map(_file_problem, tokenizer)):
        problems.append("no tokenizer.json (or vocab.json + merges.txt)")
    return "; ".join(problems) or None


def open_clip_problem(path: str) -> str | None:
    """An OpenCLIP checkpoint file, or a folder with ``open_clip_config.json`` and weights."""
    hub = hub_name_problem(path)
    if hub:
        return hub
    if not os.path.exists(path):
        return "missing (a pretrained tag such as `openai` is not accepted: it is a download)"
    if not os.path.isdir(path):
        return _weights_file_problem(path)
    problems = []
    config = os.path.join(path, "open_clip_config.json")
    if _file_problem(config):
        problems.append(f"open_clip_config.json {_file_problem(config)}")
    else:
        try:
            model_cfg = json.loads(Path(config).read_text()).get("model_cfg")
        except (ValueError, AttributeError):
            model_cfg = None
        if not isinstance(model_cfg, dict):
            problems.append("open_clip_config.json has no model_cfg")
    names = [n for n in OPEN_CLIP_WEIGHTS if os.path.exists(os.path.join(path, n))]
    if not names:
        problems.append(f"no weights file ({', '.join(OPEN_CLIP_WEIGHTS[:3])}, ...)")
    else:
        problem = _weights_file_problem(os.path.join(path, names[0]))
        if problem:
            problems.append(f"{names[0]} {problem}")
    return "; ".join(problems) or None


#: Weight files of an HF CLIP folder and of an OpenCLIP folder, in the libraries' preference.
HF_CLIP_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
OPEN_CLIP_WEIGHTS = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
    "open_clip_pytorch_model.pth",
    "model.safetensors",
    "pytorch_model.bin",
    "pytorch_model.pth",
    "model.pth",
)


def bert_text_folder_problem(path: str) -> str | None:
    """BriVL's text tokenizer folder: a BERT ``config.json`` and a ``vocab.txt`` (BERT's
    weights are read from the BriVL checkpoint, so none is needed here)."""
    if not os.path.exists(path):
        return "missing"
    if not os.path.isdir(path):
        return "not a folder (the hfl/chinese-roberta-wwm-ext folder is expected)"
    problems = _config_json_problems(path, "bert", "BERT")
    vocab = os.path.join(path, "vocab.txt")
    if _file_problem(vocab):
        problems.append(f"vocab.txt {_file_problem(vocab)}")
    return "; ".join(problems) or None


def unclip_pipeline_problem(path: str) -> str | None:
    """A diffusers Stable unCLIP folder: model_index.json and every component's files."""
    from wavbrivl.generate.unclip_folder import pipeline_folder_problem

    return pipeline_folder_problem(path)


CHECKS: dict[str, Callable[[str], str | None]] = {
    "torch": torch_problem,
    "taming_yaml": taming_yaml_problem,
    "hf_wavlm": hf_wavlm_problem,
    "hf_clip": hf_clip_problem,
    "open_clip": open_clip_problem,
    "bert_text_folder": bert_text_folder_problem,
    "unclip_pipeline": unclip_pipeline_problem,
}


def problems(weights: list[Weight]) -> list[str]:
    """``key: path: what is wrong (what it is)`` for every weight that is not usable."""
    found = []
    for weight in weights:
        problem = CHECKS[weight.kind](weight.path)
        if problem:
            found.append(f"{weight.key}: {weight.path}: {problem} ({weight.what})")
    return found


def check_weights(weights: list[Weight]) -> None:
    """Raise WeightsError listing every missing or unreadable weight, in one message."""
    found = problems(weights)
    if found:
        listing = "".join(f"\n  - {line}" for line in found)
        raise WeightsError(
            f"{len(found)} weight file(s) missing or unreadable:{listing}\n"
            f"{README} says who publishes each file, its size and where to put it; "
            "then run the workflow again (`snakemake check_weights` checks them alone)."
        )


def weight_stats(weights: list[Weight]) -> dict[str, Any]:
    """Path -> [size, mtime_ns] of each weight file (of each file in a folder); None if absent.

    The check_weights rule's params: when any of them changes, the files are checked again.
    """
    stats: dict[str, Any] = {}
    for weight in weights:
        path = Path(weight.path)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file())
            stats[weight.path] = {p.name: _stat(p) for p in files}
        else:
            stats[weight.path] = _stat(path) if path.is_file() else None
    return stats


def _stat(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def write_record(weights: list[Weight], out: str | os.PathLike) -> None:
    """Check, then record what was checked (the ``check_weights`` rule's output)."""
    check_weights(weights)
    record = [{"key": w.key, "path": w.path, "kind": w.kind} for w in weights]
    write_text_atomic(out, json.dumps(record) + "\n")
