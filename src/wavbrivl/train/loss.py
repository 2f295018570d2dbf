"""The paper's CXLoss in BriVL's MoCo form.

    CXLoss = L(f(image), audio) + L(image, g(audio))

Each L(x, y) is bidirectional, summed like BriVL's ``i2t_loss + t2i_loss``:

* x queries against y keys: the positive is the matching momentum key y_k[i]; the negatives
  are the other keys of the batch (``MoCoConfig.batch_negatives``) and the y queue;
* y queries against x keys, the same way with the x queue.

Per direction: ``-sum(log_softmax(logits / T)[positives]) / B``. With ``topk > 1`` a queue
entry j is an extra positive of row i when j is among the ``topk`` queue entries most similar
to x_k[i] in the x queue *and* among the ``topk`` most similar to y_k[i] in the y queue (both
modalities agree that entry j looks like pair i): BriVL's multi-label rule. ``topk = 1`` is
plain InfoNCE (BriVL's released default, ``multi_label=False``).

In the image space the frozen image embedding is both query and key; its direction
(image -> g(audio) keys) therefore has no gradient and only reports progress.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from wavbrivl.train.moco import CrossModalMoCo, MoCoOutputs


def shared_topk_positives(
    x_k: torch.Tensor, x_queue: torch.Tensor, y_k: torch.Tensor, y_queue: torch.Tensor, topk: int
) -> torch.Tensor:
    """Queue entries both modalities rank in their top-k: (B, Dx), (K, Dx), (B, Dy), (K, Dy)
    -> (B, K) bool. All False when ``topk <= 1``."""
    b, k = x_k.shape[0], x_queue.shape[0]
    extra = torch.zeros(b, k, dtype=torch.bool, device=x_k.device)
    if topk <= 1:
        return extra
    n = min(topk, k)
    top_x = (x_k @ x_queue.T).topk(n, dim=1).indices  # (B, n)
    top_y = (y_k @ y_queue.T).topk(n, dim=1).indices  # (B, n)
    in_x = extra.scatter(1, top_x, True)
    in_y = extra.scatter(1, top_y, True)
    return in_x & in_y


def moco_infonce(
    q: torch.Tensor,
    k: torch.Tensor,
    queue: torch.Tensor,
    temperature: float,
    extra_positives: torch.Tensor,
    batch_negatives: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One direction: queries (B, D) vs keys (B, D) + queue (K, D).

    ``extra_positives`` (B, K) marks queue entries counted as positives. Returns the loss
    (scalar) and the top-1 accuracy (fraction of queries whose best logit is their key).
    """
    b = q.shape[0]
    if batch_negatives:
        key_logits = q @ k.T  # (B, B), positives on the diagonal
        key_positive = torch.eye(b, dtype=torch.bool, device=q.device)
    else:
        key_logits = (q * k).sum(dim=1, keepdim=True)  # (B, 1)
        key_positive = torch.ones(b, 1, dtype=torch.bool, device=q.device)
    logits = torch.cat([key_logits, q @ queue.T], dim=1) / temperature  # (B, B|1 + K)
    positives = torch.cat([key_positive, extra_positives], dim=1)
    log_prob = F.log_softmax(logits, dim=1)
    loss = -torch.where(positives, log_prob, torch.zeros_like(log_prob)).sum() / b
    # Column of each row's own key: the diagonal of the batch block, or the single key column.
    own = torch.arange(b, device=q.device) * int(batch_negatives)  # (B,)
    accuracy = (logits.argmax(dim=1) == own).float().mean()
    return loss, accuracy


def cross_modal_loss(
    x_q: torch.Tensor,
    x_k: torch.Tensor,
    x_queue: torch.Tensor,
    y_q: torch.Tensor,
    y_k: torch.Tensor,
    y_queue: torch.Tensor,
    *,
    temperature: float,
    topk: int,
    batch_negatives: bool,
) -> dict[str, torch.Tensor]:
    """L(x, y) = x->y + y->x, with one extra-positive mask shared by both directions."""
    extra = shared_topk_positives(x_k, x_queue, y_k, y_queue, topk)  # (B, K)
    x_to_y, acc_x = moco_infonce(x_q, y_k, y_queue, temperature, extra, batch_negatives)
    y_to_x, acc_y = moco_infonce(y_q, x_k, x_queue, temperature, extra, batch_negatives)
    return {
        "loss": x_to_y + y_to_x,
        "x_to_y": x_to_y,
        "y_to_x": y_to_x,
        "acc_x_to_y": acc_x,
        "acc_y_to_x": acc_y,
        "extra_positives": extra.sum(dim=1).float().mean(),
    }


def cx_loss(out: MoCoOutputs, model: CrossModalMoCo) -> tuple[torch.Tensor, dict[str, float]]:
    """CXLoss on one step's outputs; queues, temperature, topk come from ``model``.

    Returns the scalar loss (float32) and a dict of floats for logging.
    """
    cfg = model.cfg
    settings = {
        "temperature": cfg.temperature,
        "topk": cfg.topk,
        "batch_negatives": cfg.batch_negatives,
    }

    def f32(t: torch.Tensor) -> torch.Tensor:
        return t.float()

    def queue(name: str) -> torch.Tensor:  # the queue as it was before this step's enqueue
        return getattr(model, name).detach().float()

    # Logits over thousands of queue keys at T = 0.07 need float32: autocast would redo the
    # matmuls in bf16 (3 significant digits), so it is switched off here.
    with torch.autocast(out.image.device.type, enabled=False):
        # L(f(image), audio), in the audio space.
        audio_space = cross_modal_loss(
            x_q=f32(out.f_image_q),
            x_k=f32(out.f_image_k),
            x_queue=queue("queue_f_image"),
            y_q=f32(out.audio_q),
            y_k=f32(out.audio_k),
            y_queue=queue("queue_audio"),
            **settings,
        )
        # L(image, g(audio)), in the image space; the frozen image is its own key.
        image_space = cross_modal_loss(
            x_q=f32(out.image),
            x_k=f32(out.image),
            x_queue=queue("queue_image"),
            y_q=f32(out.g_audio_q),
            y_k=f32(out.g_audio_k),
            y_queue=queue("queue_g_audio"),
            **settings,
        )
    loss = audio_space["loss"] + image_space["loss"]

    named = {
        "loss": loss,
        "loss_audio_space": audio_space["loss"],
        "loss_image_space": image_space["loss"],
        "loss_f_image_to_audio": audio_space["x_to_y"],
        "loss_audio_to_f_image": audio_space["y_to_x"],
        "loss_image_to_g_audio": image_space["x_to_y"],
        "loss_g_audio_to_image": image_space["y_to_x"],
        "acc_audio_to_f_image": audio_space["acc_y_to_x"],
        "acc_g_audio_to_image": image_space["acc_y_to_x"],
        "extra_positives_audio_space": audio_space["extra_positives"],
        "extra_positives_image_space": image_space["extra_positives"],
    }
    # One device->host copy for all terms instead of one sync per .item().
    values = torch.stack([v.detach().float() for v in named.values()]).cpu().tolist()
    return loss, dict(zip(named, values, strict=True))


__all__ = ["cross_modal_loss", "cx_loss", "moco_infonce", "shared_topk_positives"]
