"""Cross-modal MoCo around the audio encoder: projection heads, momentum copies, queues.

Two embedding spaces meet here:

* the image space (``image_dim``): frozen BriVL image embeddings, and ``g(audio)``;
* the audio space (``out_dim`` of the audio encoder): audio embeddings, and ``f(image)``.

The paper's CXLoss = L(f(image), audio) + L(image, g(audio)) (see :mod:`wavbrivl.train.loss`)
contrasts, in each space, queries against keys from a momentum copy and against a queue of
past keys, as BriVL does. The audio side (encoder head, g, f) has a momentum copy updated by
:meth:`CrossModalMoCo.momentum_update`. The frozen image embedding has no encoder to copy: it
is its own key, and never receives a gradient. A frozen WavLM is shared by both copies (its
momentum average would equal itself), so its hidden states are computed once per step.

**The embedding used downstream** (retrieval, image generation) is ``g(audio)`` in the image
space, L2-normalised: :meth:`CrossModalMoCo.embed_audio`.

Training step, in order::

    out = model(waveforms, lengths, image_emb)
    loss, terms = cx_loss(out, model)
    loss.backward(); optimizer.step()
    model.momentum_update()      # once per optimizer step
    model.enqueue(out)           # after the loss that used the old queue
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from wavbrivl.audio.encoder import MLP, AudioEncoder
from wavbrivl.configs import check_block, default_field, from_mapping


@dataclass(frozen=True)
class MoCoConfig:
    """Contrastive training settings; defaults are BriVL's."""

    image_dim: int = 2048  # D_image: size of the frozen image embeddings (not a config key)
    # The workflow's `loss` block; defaults and valid ranges come from the config schema.
    momentum: float = default_field("loss", "momentum")  # m in key <- m*key + (1-m)*query
    queue_size: int = default_field("loss", "queue_size")  # K: past keys kept per queue
    temperature: float = default_field("loss", "temperature")
    topk: int = default_field("loss", "topk")  # 1: plain InfoNCE; >1: BriVL's top-k positives
    head_hidden: int = default_field("loss", "head_hidden")  # width of f and g's hidden layer
    # True: the other keys of the batch are negatives too (the contract of this project);
    # False: only the queue, exactly as BriVL's released code.
    batch_negatives: bool = default_field("loss", "batch_negatives")

    def __post_init__(self) -> None:
        check_block(self, "loss")
        if self.image_dim < 1:
            raise ValueError(f"image_dim must be positive, got {self.image_dim}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> MoCoConfig:
        return from_mapping(cls, values, "MoCoConfig")


@dataclass
class MoCoOutputs:
    """One step's embeddings; every tensor is L2-normalised, shape (B, dim)."""

    image: torch.Tensor  # frozen image embeddings (input), image space; query and key
    g_audio_q: torch.Tensor  # g(audio_q), image space; gradients flow
    g_audio_k: torch.Tensor  # momentum g(audio_k), image space; no gradient
    audio_q: torch.Tensor  # audio space; gradients flow
    audio_k: torch.Tensor  # momentum audio encoder, audio space; no gradient
    f_image_q: torch.Tensor  # f(image), audio space; gradients flow into f
    f_image_k: torch.Tensor  # momentum f(image), audio space; no gradient


#: Queue buffer name -> the MoCoOutputs key it stores.
QUEUES: dict[str, str] = {
    "queue_image": "image",
    "queue_g_audio": "g_audio_k",
    "queue_audio": "audio_k",
    "queue_f_image": "f_image_k",
}


class CrossModalMoCo(nn.Module):
    """Audio encoder + heads f, g + momentum copies + four key queues."""

    def __init__(self, audio_encoder: AudioEncoder, cfg: MoCoConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.audio_encoder = audio_encoder
        d_audio, d_image = audio_encoder.cfg.out_dim, cfg.image_dim
        self.f = MLP(d_image, cfg.head_hidden, d_audio)  # image space -> audio space
        self.g = MLP(d_audio, cfg.head_hidden, d_image)  # audio space -> image space

        # Momentum copies start equal to the online modules and never get gradients.
        self.audio_head_momentum = _frozen_copy(audio_encoder.head)
        self.f_momentum = _frozen_copy(self.f)
        self.g_momentum = _frozen_copy(self.g)
        # A frozen WavLM is its own momentum average: share it instead of copying.
        self.wavlm_momentum: nn.Module | None = (
            None if audio_encoder.frozen else _frozen_copy(audio_encoder.wavlm)
        )

        # Queues start as random unit vectors (as in BriVL and MoCo), rows are keys (K, D).
        dims = {"queue_image": d_image, "queue_g_audio": d_image}
        dims |= {"queue_audio": d_audio, "queue_f_image": d_audio}
        for name in QUEUES:
            self.register_buffer(name, F.normalize(torch.randn(cfg.queue_size, dims[name]), dim=1))
        # One pointer: the four queues are always written together.
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    # -- forward -------------------------------------------------------------------------

    def forward(
        self, waveforms: torch.Tensor, lengths: torch.Tensor, image_emb: torch.Tensor
    ) -> MoCoOutputs:
        """(B, T) waveforms at 16 kHz, (B,) lengths, (B, image_dim) frozen embeddings."""
        b = waveforms.shape[0]
        if image_emb.shape != (b, self.cfg.image_dim):
            raise ValueError(
                f"image_emb must be ({b}, {self.cfg.image_dim}), got {tuple(image_emb.shape)}"
            )
        image = _unit(image_emb.detach())  # (B, Di), frozen: no grad

        states, padding = self.audio_encoder.wavlm_states(waveforms, lengths)  # (S,B,F,H)
        audio_q = _unit(self.audio_encoder.head(states, padding))  # (B, Da)
        g_audio_q = _unit(self.g(audio_q))  # (B, Di)
        f_image_q = _unit(self.f(image))  # (B, Da)

        with torch.no_grad():
            if self.wavlm_momentum is not None:
                states, padding = self.audio_encoder.wavlm_states(
                    waveforms, lengths, wavlm=self.wavlm_momentum
                )
            audio_k = _unit(self.audio_head_momentum(states, padding))
            g_audio_k = _unit(self.g_momentum(audio_k))
            f_image_k = _unit(self.f_momentum(image))

        return MoCoOutputs(
            image=image,
            g_audio_q=g_audio_q,
            g_audio_k=g_audio_k,
            audio_q=audio_q,
            audio_k=audio_k,
            f_image_q=f_image_q,
            f_image_k=f_image_k,
        )

    @torch.no_grad()
    def embed_audio(
        self, waveforms: torch.Tensor, lengths: torch.Tensor, *, return_norm: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """THE downstream embedding: g(audio) in the image space, L2-normalised.

        (B, T) float at 16 kHz, (B,) valid samples -> (B, image_dim) float32 unit vectors.
        ``return_norm=True`` also returns the (B,) norms of g(audio) before normalisation: a
        near-zero norm (silence can give one) means the target has no direction.
        Runs in eval mode (no dropout) and restores the previous mode afterwards.
        """
        was_training = self.training
        self.train(False)
        try:
            audio = _unit(self.audio_encoder.encode_audio(waveforms, lengths))  # (B, Da)
            raw = self.g(audio).float()  # (B, Di)
        finally:
            self.train(was_training)
        unit = _unit(raw)
        return (unit, raw.norm(dim=-1)) if return_norm else unit

    # -- state updates -------------------------------------------------------------------

    def momentum_pairs(self) -> Iterator[tuple[nn.Module, nn.Module]]:
        """(online, momentum) module pairs."""
        yield self.audio_encoder.head, self.audio_head_momentum
        yield self.f, self.f_momentum
        yield self.g, self.g_momentum
        if self.wavlm_momentum is not None:
            yield self.audio_encoder.wavlm, self.wavlm_momentum

    @torch.no_grad()
    def momentum_update(self) -> None:
        """key <- m * key + (1 - m) * query for every momentum parameter."""
        m = self.cfg.momentum
        for online, momentum in self.momentum_pairs():
            for p_q, p_k in zip(online.parameters(), momentum.parameters(), strict=True):
                p_k.mul_(m).add_(p_q.detach(), alpha=1.0 - m)

    @torch.no_grad()
    def enqueue(self, out: MoCoOutputs) -> None:
        """Write this step's keys at the pointer, wrapping around the end of the queues.

        A batch larger than the queue keeps only its last ``queue_size`` keys.
        """
        k = self.cfg.queue_size
        b = out.image.shape[0]
        take = min(b, k)
        ptr = int(self.queue_ptr)
        rows = (ptr + torch.arange(take, device=self.queue_ptr.device)) % k  # (take,)
        for name, key in QUEUES.items():
            queue = getattr(self, name)
            queue[rows] = getattr(out, key)[b - take :].detach().to(queue.dtype)
        self.queue_ptr[0] = (ptr + take) % k

    # -- optimisation ----------------------------------------------------------------------

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Audio encoder (WavLM only when fine-tuned), f and g; never momentum copies."""
        online = [self.audio_encoder, self.f, self.g]
        return [p for module in online for p in module.parameters() if p.requires_grad]


def _unit(x: torch.Tensor) -> torch.Tensor:
    """L2-normalise rows in float32 (under autocast the heads return bf16)."""
    return F.normalize(x.float(), dim=-1)


def _frozen_copy(module: nn.Module) -> nn.Module:
    clone = copy.deepcopy(module)
    clone.requires_grad_(False)
    return clone


__all__ = ["QUEUES", "CrossModalMoCo", "MoCoConfig", "MoCoOutputs"]
