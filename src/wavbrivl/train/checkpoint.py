"""Resume checkpoints and the final ``audio_encoder.pt`` artefact.

Resume checkpoints live in ``<run>/checkpoints/step_<step>.pt``, each with a
``.sha256`` sidecar written *after* it: a checkpoint counts as good only when its digest
matches and it loads with ``torch.load(weights_only=True)``. Writes are atomic (temp name,
then rename) and byte-reproducible (same contents, same bytes), and the newest ``keep`` good ones are kept, so a checkpoint spoiled after the
fact (disk, copy, a kill between the two writes) costs one interval, not the run.

Everything saved is plain data (tensors, dicts, lists, numbers, strings), so both files load
with ``weights_only=True``: no pickled code runs on load.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from wavbrivl.atomic import atomic_path, write_text_atomic
from wavbrivl.checkpoints import CheckpointError, read_checkpoint, state_dict_sha256
from wavbrivl.config_keys import RUNTIME, keys_of, resume_checked
from wavbrivl.hashing import sha256_of

CHECKPOINT_FORMAT = "wavbrivl.train_checkpoint/1"
ARTEFACT_FORMAT = "wavbrivl.audio_encoder/1"
CHECKPOINT_KEYS = (
    "format",
    "step",
    "model",
    "optimizer",
    "rng",
    "data_position",
    "counters",
    "train_config",
)
_NAME = re.compile(r"^step_(\d+)\.pt$")
# What a write killed mid-way leaves: atomic_path's temporary name of a checkpoint or sidecar.
_INTERRUPTED = re.compile(r"^\.step_\d+\.pt(\.sha256)?\..+\.tmp$")

PathLike = str | os.PathLike


class CorruptCheckpoint(RuntimeError):
    """A checkpoint file that is missing its digest, fails it, or does not load."""


def checkpoint_path(directory: PathLike, step: int) -> Path:
    return Path(directory) / f"step_{step:09d}.pt"


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def save_checkpoint(path: PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically, then its digest sidecar (the mark of a finished file)."""
    path = Path(path)
    save_torch_atomic(state, path)
    write_text_atomic(_sidecar(path), sha256_of(path) + "\n")
    return path


def save_torch_atomic(state: Any, path: PathLike) -> None:
    """``torch.save`` to ``path`` atomically and byte-reproducibly.

    Given a path, ``torch.save`` names the records inside its zip archive after the file,
    here the random temporary name, so equal contents gave different bytes on every run.
    Saved through an open file object, the archive is always called ``archive``.
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(state, fh)


def load_checkpoint(path: PathLike) -> dict[str, Any]:
    """Load and check one checkpoint; :class:`CorruptCheckpoint` says why it is not usable."""
    path = Path(path)
    sidecar = _sidecar(path)
    if not sidecar.exists():
        raise CorruptCheckpoint(f"{path}: no {sidecar.name} (the save did not finish)")
    expected = sidecar.read_text().strip()
    actual = sha256_of(path)
    if actual != expected:
        raise CorruptCheckpoint(
            f"{path}: sha256 {actual[:12]}... differs from {sidecar.name} {expected[:12]}..."
        )
    try:
        state = read_checkpoint(path)  # weights-only; refuses pickled code by name
    except CheckpointError as exc:  # any unpickling failure means the same: not usable
        raise CorruptCheckpoint(f"does not load: {exc}") from exc
    missing = [k for k in CHECKPOINT_KEYS if k not in state]
    if missing or state.get("format") != CHECKPOINT_FORMAT:
        raise CorruptCheckpoint(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint (missing {missing})")
    return state


def list_checkpoints(directory: PathLike) -> list[Path]:
    """Checkpoint files in ``directory``, newest (highest step) first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def load_latest_checkpoint(
    directory: PathLike, *, log: Callable[[str], None]
) -> tuple[Path, dict[str, Any]] | None:
    """The newest good checkpoint, reporting every newer one skipped and why; None if none."""
    for path in list_checkpoints(directory):
        try:
            return path, load_checkpoint(path)
        except CorruptCheckpoint as exc:
            log(f"WARNING: skipping unusable checkpoint: {exc}; trying the previous one")
    return None


def remove_interrupted_writes(directory: PathLike) -> list[Path]:
    """Delete the temporary files of checkpoint writes that a kill (SIGKILL, OOM, a node lost)
    cut short; returns them. Only the one process that owns ``directory`` may call it."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    leftovers = sorted(p for p in directory.iterdir() if _INTERRUPTED.match(p.name))
    for path in leftovers:
        path.unlink(missing_ok=True)
    return leftovers


def prune_checkpoints(directory: PathLike, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints (and their sidecars)."""
    for path in list_checkpoints(directory)[keep:]:
        path.unlink(missing_ok=True)
        _sidecar(path).unlink(missing_ok=True)


# -- resuming ------------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def check_resumable(
    saved: dict[str, Any], ours: dict[str, Any], saved_models: dict, models: dict, path: Path
) -> None:
    """Refuse a checkpoint made with another recipe: resuming it would not give this run.

    ``saved`` / ``ours``: the flat train configs (:meth:`TrainConfig.to_dict`); keys that are
    safe to change on resume (:mod:`wavbrivl.config_keys`) may differ.
    """
    changed = [
        f"{k}: {saved.get(k)!r} -> {ours[k]!r}"
        for k in ours
        if resume_checked("train", k) and saved.get(k) != ours[k]
    ]
    for side in ("audio", "moco"):
        a, b = saved_models.get(side, {}), models.get(side, {})
        changed += [
            f"{side}.{k}: {a.get(k)!r} -> {b.get(k)!r}"
            for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k)
        ]
    if changed:
        raise ValueError(
            f"{path} was made with another configuration ({'; '.join(changed)}); "
            f"restore it, or delete {path.parent} to start over"
        )


# -- the final artefact ---------------------------------------------------------------------------


def model_configs(model: torch.nn.Module) -> dict[str, dict[str, Any]]:
    """The two configs that rebuild a CrossModalMoCo: its audio encoder's and its own."""
    return {"audio": model.audio_encoder.cfg.to_dict(), "moco": model.cfg.to_dict()}


def _without_runtime_keys(train_config: dict[str, Any]) -> dict[str, Any]:
    runtime = set(keys_of("train", RUNTIME))
    return {k: v for k, v in train_config.items() if k not in runtime}


def save_audio_encoder(
    path: PathLike,
    model: torch.nn.Module,
    *,
    step: int,
    train_config: dict[str, Any],
    metrics: dict | None = None,
    image_encoder_fingerprint: str | None = None,
) -> Path:
    """``audio_encoder.pt``: the whole CrossModalMoCo's weights with both configs inside.

    Downstream rebuilds the model with :func:`load_trained_model` and embeds audio with
    ``embed_audio`` (g(audio), L2-normalised, in the image space). The image encoder's
    fingerprint says which image space that is (the embeddings it was trained on). The
    training config is recorded without its run-time keys (``wavbrivl.config_keys``), so a
    run that only checkpointed more often, or on another device, saves the same bytes.
    """
    state = {
        "format": ARTEFACT_FORMAT,
        **{f"{k}_config": v for k, v in model_configs(model).items()},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "step": step,
        "train_config": _without_runtime_keys(train_config),
        "metrics": metrics or {},
        "image_encoder_fingerprint": image_encoder_fingerprint,
    }
    path = Path(path)
    save_torch_atomic(state, path)
    return path


def read_audio_encoder(path: PathLike) -> dict[str, Any]:
    """The artefact's contents (weights_only load), checked for its format.

    A file that needs pickled code raises :class:`~wavbrivl.checkpoints.UntrustedCheckpointError`,
    an unreadable one :class:`~wavbrivl.checkpoints.CheckpointError`; both name the file."""
    state = read_checkpoint(path)
    if state.get("format") != ARTEFACT_FORMAT:
        raise ValueError(f"{path}: not a {ARTEFACT_FORMAT} file (format {state.get('format')!r})")
    return state


def audio_model_fingerprint(state: dict[str, Any]) -> str:
    """Hex SHA-256 of what a trained model computes: both configs and the weights.

    ``state`` is :func:`read_audio_encoder`'s contents. The step, metrics and training
    recipe stored beside the weights, and the file's serialisation, do not change the model,
    so they do not change its fingerprint.
    """
    identity = {
        "audio_config": state["audio_config"],
        "moco_config": state["moco_config"],
        "weights_sha256": state_dict_sha256(state["state_dict"]),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def load_trained_model(
    path: PathLike, *, device: torch.device | str = "cpu", wavlm: str | None = None
):
    """Rebuild the trained CrossModalMoCo from ``audio_encoder.pt``, in eval mode.

    ``wavlm`` replaces the WavLM directory recorded at training time (another machine); its
    config must match, since every weight is then overwritten from the artefact.
    """
    return build_trained_model(read_audio_encoder(path), device=device, wavlm=wavlm)


def build_trained_model(
    state: dict[str, Any], *, device: torch.device | str = "cpu", wavlm: str | None = None
):
    """The trained CrossModalMoCo from :func:`read_audio_encoder`'s contents, in eval mode."""
    from wavbrivl.audio.encoder import AudioEncoderConfig, build_audio_encoder
    from wavbrivl.train.moco import CrossModalMoCo, MoCoConfig

    audio = dict(state["audio_config"])
    if wavlm is not None:
        audio["wavlm"] = wavlm
    model = CrossModalMoCo(
        build_audio_encoder(AudioEncoderConfig.from_dict(audio)),
        MoCoConfig.from_dict(state["moco_config"]),
    )
    model.load_state_dict(state["state_dict"])
    return model.to(device).eval()
