"""The generation targets: g(audio) of each clip, from the trained audio model.

The target is ``CrossModalMoCo.embed_audio`` (g(audio) in the image space, unit length) and
the norm of g(audio) before normalisation, which says whether the audio gave the target a
direction at all (silence can give a near-zero g(audio)).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from wavbrivl.clip_ids import check_clip_id
from wavbrivl.extract.media import decode_audio


@dataclass(frozen=True)
class AudioTargets:
    """The targets of the clips whose audio was usable, in clip-id order."""

    clip_ids: list[str]
    vectors: torch.Tensor  # (N, D) float32 unit rows, on the CPU; N may be 0
    norms: list[float]  # (N,) norms of g(audio) before normalisation

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


def targets_for_clips(
    model: torch.nn.Module,
    audio: Mapping[str, bytes],
    *,
    device: torch.device,
    log: Callable[[str], None] = print,
) -> tuple[AudioTargets, dict[str, str]]:
    """Targets for the clips of ``audio`` (clip id -> FLAC bytes), and the unusable clips.

    One clip at a time: exact lengths, and one bad clip (undecodable, or too short for WavLM)
    costs only itself; it is returned with its reason instead of stopping the run.
    """
    clip_ids: list[str] = []
    vectors: list[torch.Tensor] = []
    norms: list[float] = []
    unusable: dict[str, str] = {}
    for clip_id in sorted(audio):
        check_clip_id(clip_id)  # it becomes a file name
        try:
            vector, norm = clip_target(model, audio[clip_id], device)
        except (ValueError, RuntimeError) as exc:
            unusable[clip_id] = f"audio not usable: {exc}"
            log(f"WARNING: skipping {clip_id}: {exc}")
            continue
        clip_ids.append(clip_id)
        vectors.append(vector)
        norms.append(norm)
    stacked = torch.stack(vectors) if vectors else torch.zeros(0, model.cfg.image_dim)
    return AudioTargets(clip_ids, stacked, norms), unusable


def clip_target(
    model: torch.nn.Module, flac: bytes, device: torch.device
) -> tuple[torch.Tensor, float]:
    """One clip's unit target (D,) on the CPU and the norm of g(audio) before normalisation."""
    wave = torch.from_numpy(decode_audio(flac)).to(device)  # (T,)
    lengths = torch.tensor([len(wave)], device=device)
    unit, norm = model.embed_audio(wave[None], lengths, return_norm=True)  # (1, D), (1,)
    return unit[0].cpu(), float(norm[0])


__all__ = ["AudioTargets", "clip_target", "targets_for_clips"]
