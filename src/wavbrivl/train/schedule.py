"""The optimizer (AdamW) and its learning-rate schedule: linear warmup, then cosine decay to
``min_lr``.

The schedule is a pure function of the step, so a resumed run gets exactly the learning rate the
uninterrupted run would have had (nothing about the schedule lives in a checkpoint).
"""

from __future__ import annotations

import math
from typing import Any

import torch


def lr_at(
    step: int, *, base_lr: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0
) -> float:
    """Learning rate of optimizer step ``step`` (0-based) of a ``total_steps`` run.

    - ``step < warmup_steps``: linear ramp ``base_lr * (step + 1) / warmup_steps``, so the
      very first step already moves (a zero learning rate would waste it);
    - then half a cosine from ``base_lr`` (at ``step == warmup_steps``) down to ``min_lr``
      (reached at ``step == total_steps``; later steps stay there).
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(
            f"warmup_steps must be in [0, total_steps={total_steps}], got {warmup_steps}"
        )
    if not 0.0 <= min_lr <= base_lr:
        raise ValueError(f"need 0 <= min_lr <= base_lr, got min_lr={min_lr}, base_lr={base_lr}")
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def make_optimizer(model: torch.nn.Module, cfg: Any) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; no weight decay on vectors (biases, norms).
    ``cfg``: a :class:`~wavbrivl.train.config.TrainConfig` (``lr``, ``weight_decay``)."""
    params = list(model.trainable_parameters())
    if not params:
        raise ValueError("the model has no trainable parameters")
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr)
