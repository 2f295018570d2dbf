"""Checkpoint helpers shared by every model loader: read weights-only, check, fingerprint.

Files are read with ``weights_only=True``: a checkpoint that needs arbitrary code to
unpickle is refused, never executed. Errors name the file and say what is wrong.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
from pathlib import Path

import torch
from torch import nn

SHOW = 10  # how many offending keys an error message lists


class CheckpointError(ValueError):
    """A checkpoint cannot be used; the message names the file and the reason."""


class UntrustedCheckpointError(CheckpointError):
    """The pickle needs code outside the weights-only allowlist, so it is not loaded."""


class CheckpointMismatchError(CheckpointError):
    """The checkpoint's image encoder does not fit the model (keys or shapes)."""


def read_checkpoint(path: str | os.PathLike) -> dict:
    """``torch.load`` with ``weights_only=True`` and errors that say what went wrong."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        names = _refused_globals(str(err))
        if names:
            raise untrusted_error(path, names + _unsafe_globals(path)) from err
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_safe(err)})") from err
    except (EOFError, RuntimeError) as err:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_safe(err)})") from err
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: expected a dict at top level, got {type(payload).__name__}")
    return payload


def state_dict_entry(payload: dict, key: str, path: str | os.PathLike, kind: str) -> dict:
    """``payload[key]``, which must be a state dict; errors name the file and what it holds."""
    if key not in payload:
        raise CheckpointError(
            f"{path}: no {key!r} entry (not {kind}?); top-level keys: "
            f"{sorted(map(str, payload))[:SHOW]}"
        )
    entry = payload[key]
    if not isinstance(entry, dict):
        raise CheckpointError(f"{path}: {key!r} is a {type(entry).__name__}, not a state dict")
    return entry


def check_state_fits(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    path: str | os.PathLike,
    what: str = "image encoder weights do not match the model",
) -> None:
    """Raise :class:`CheckpointMismatchError` unless ``state`` matches ``model`` key for key
    and shape for shape (what a strict ``load_state_dict`` needs)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if not (missing or unexpected or wrong_shape):
        return
    parts = [f"{path}: {what}"]
    for label, items in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("shape mismatch", wrong_shape),
    ):
        if items:
            more = f" (+{len(items) - SHOW} more)" if len(items) > SHOW else ""
            parts.append(f"{len(items)} {label}: {items[:SHOW]}{more}")
    raise CheckpointMismatchError("; ".join(parts))


def state_dict_sha256(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of a state dict, in key order."""
    digest = hashlib.sha256()
    for key, tensor in state.items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def untrusted_error(path: str | os.PathLike, names: list[str]) -> UntrustedCheckpointError:
    """The refusal of a checkpoint whose pickle needs ``names`` (globals outside the
    weights-only allowlist). It never suggests loading with ``weights_only=False``."""
    shown = sorted(set(names))
    return UntrustedCheckpointError(
        f"{path}: refused as untrusted: unpickling it would run code outside torch's "
        f"weights-only allowlist (globals {shown[:SHOW] or ['(unnamed)']}); "
        "only plain weights are loaded from checkpoints"
    )


# torch names the refused global as "Unsupported global: GLOBAL pkg.Cls was not ...",
# "unsupported GLOBAL posix.system whose module posix is blocked" or "Unsupported class pkg.Cls".
_GLOBAL = re.compile(r"(?:GLOBAL|Unsupported class)\s+([\w.]+)")
# torch's advice to retry with weights_only=False (arbitrary code execution): never passed on.
_UNSAFE_ADVICE = re.compile(r"weights_only|trusted source|two options|allowlist this global", re.I)


def _refused_globals(text: str) -> list[str]:
    return [name.rstrip(".") for name in _GLOBAL.findall(text)]


def _unsafe_globals(path: Path) -> list[str]:
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # not a zip archive, or a damaged one: the caller still refuses it
        return []


def _safe(err: BaseException) -> str:
    """``err``'s text without any line that advises turning weights-only loading off."""
    lines = [line.strip() for line in str(err).splitlines()]
    kept = [line for line in lines if line and not _UNSAFE_ADVICE.search(line)]
    return " ".join(kept) or type(err).__name__
