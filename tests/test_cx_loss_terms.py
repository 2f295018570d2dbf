"""What the training log reports: every direction's loss and top-1 accuracy of CXLoss under
its own name, checked against a brute-force numpy computation on fixtures where the four
directions all differ, and the loss's tensors kept on the inputs' device."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wavbrivl.train.loss import cross_modal_loss, cx_loss
from wavbrivl.train.moco import MoCoConfig, MoCoOutputs

T = 0.1
B, K = 6, 5  # a batch of 6 against a queue of 5: logits are (6, 6 + 5) or (6, 1 + 5)
D_AUDIO, D_IMAGE = 8, 12

#: The columns of train_log.tsv (as loss_<name>): a renamed term is a silently lost column.
TERMS = {
    "loss",
    "loss_audio_space",
    "loss_image_space",
    "loss_f_image_to_audio",
    "loss_audio_to_f_image",
    "loss_image_to_g_audio",
    "loss_g_audio_to_image",
    "acc_audio_to_f_image",
    "acc_g_audio_to_image",
    "extra_positives_audio_space",
    "extra_positives_image_space",
}


# -- numpy reference, one query row at a time ----------------------------------------------------


def _np_row_logits(q, keys, queue, i, batch_negatives):
    """Row i's logits: [its own key only, or every key of the batch] then the queue."""
    batch = keys if batch_negatives else keys[i : i + 1]
    return np.array([k @ q[i] for k in batch] + [e @ q[i] for e in queue]) / T


def _np_loss(q, keys, queue, batch_negatives):
    """Mean of -log softmax at the row's own key (no extra positives: topk = 1)."""
    total = 0.0
    for i in range(len(q)):
        logits = _np_row_logits(q, keys, queue, i, batch_negatives)
        own = i if batch_negatives else 0
        total += np.logaddexp.reduce(logits) - logits[own]
    return total / len(q)


def _np_accuracy(q, keys, queue, batch_negatives):
    """Fraction of rows whose largest logit is their own key's column."""
    hits = []
    for i in range(len(q)):
        logits = _np_row_logits(q, keys, queue, i, batch_negatives)
        hits.append(int(np.argmax(logits)) == (i if batch_negatives else 0))
    return float(np.mean(hits))


# -- fixtures: every direction hits and misses different rows -----------------------------------

#: Per direction: rows whose key is replaced by noise (its pair is lost, a miss unless luck),
#: and rows whose query is planted in the queue (a queued key beats its own key: a miss).
LOST_AND_PLANTED = {
    "f_image_to_audio": ([3], [0]),
    "audio_to_f_image": ([5], []),
    "image_to_g_audio": ([1, 3], [0, 5]),
    "g_audio_to_image": ([4], [0, 1]),
}


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _fixture(seed=0):
    """MoCoOutputs and queues as numpy arrays: each key is its query plus a little noise,
    except the lost rows; each queue is random unit rows, except the planted queries."""
    rng = np.random.default_rng(seed)

    def near(q, lost):
        noise = np.full(len(q), 0.05)
        noise[lost] = 5.0
        return _unit(q + noise[:, None] * rng.normal(size=q.shape))

    def queue(q, planted):
        rows = _unit(rng.normal(size=(K, q.shape[1])))
        rows[: len(planted)] = q[planted]
        return rows

    image = _unit(rng.normal(size=(B, D_IMAGE)))
    f_image_q = _unit(rng.normal(size=(B, D_AUDIO)))
    audio_q = _unit(rng.normal(size=(B, D_AUDIO)))
    (lost_fa, planted_fa), (lost_af, planted_af), (lost_ig, planted_ig), (lost_gi, planted_gi) = (
        LOST_AND_PLANTED.values()
    )
    out = {
        "image": image,  # image -> g(audio) queries, and the keys of g(audio) -> image
        "f_image_q": f_image_q,
        "audio_q": audio_q,
        "audio_k": near(f_image_q, lost_fa),
        "f_image_k": near(audio_q, lost_af),
        "g_audio_k": near(image, lost_ig),
        "g_audio_q": near(image, lost_gi),
    }
    queues = {
        "queue_audio": queue(f_image_q, planted_fa),
        "queue_f_image": queue(audio_q, planted_af),
        "queue_g_audio": queue(image, planted_ig),
        "queue_image": queue(out["g_audio_q"], planted_gi),
    }
    return out, queues


def _directions(out, queues):
    """name -> (queries, keys, queue) of the four directions, written from the paper's CXLoss."""
    return {
        "f_image_to_audio": (out["f_image_q"], out["audio_k"], queues["queue_audio"]),
        "audio_to_f_image": (out["audio_q"], out["f_image_k"], queues["queue_f_image"]),
        "image_to_g_audio": (out["image"], out["g_audio_k"], queues["queue_g_audio"]),
        "g_audio_to_image": (out["g_audio_q"], out["image"], queues["queue_image"]),
    }


def _model(queues, batch_negatives):
    """What cx_loss reads from the model: its config and the four queues."""
    cfg = MoCoConfig(image_dim=D_IMAGE, queue_size=K, temperature=T, topk=1)
    cfg = MoCoConfig.from_dict({**cfg.to_dict(), "batch_negatives": batch_negatives})
    return SimpleNamespace(
        cfg=cfg, **{n: torch.tensor(q, dtype=torch.float32) for n, q in queues.items()}
    )


def _torch_outputs(out):
    return MoCoOutputs(**{n: torch.tensor(v, dtype=torch.float32) for n, v in out.items()})


@pytest.mark.parametrize("batch_negatives", [True, False])
def test_the_fixture_tells_every_direction_apart(batch_negatives):
    """Guard on the fixture itself: a swapped name or direction changes a reported value."""
    out, queues = _fixture()
    found = {
        name: (_np_loss(*d, batch_negatives), _np_accuracy(*d, batch_negatives))
        for name, d in _directions(out, queues).items()
    }
    losses = sorted(loss for loss, _ in found.values())
    assert min(np.diff(losses)) > 0.01, found
    accuracies = [acc for _, acc in found.values()]
    assert len(set(accuracies)) == 4 and 0 < min(accuracies) and max(accuracies) < 1, found


# -- cx_loss: the logged terms ---------------------------------------------------------------------


@pytest.mark.parametrize("batch_negatives", [True, False])
def test_every_logged_term_is_its_own_direction(batch_negatives):
    out, queues = _fixture()
    loss, terms = cx_loss(_torch_outputs(out), _model(queues, batch_negatives))
    assert set(terms) == TERMS
    expected = {
        name: (_np_loss(*d, batch_negatives), _np_accuracy(*d, batch_negatives))
        for name, d in _directions(out, queues).items()
    }
    for name, (direction_loss, _) in expected.items():
        assert terms[f"loss_{name}"] == pytest.approx(direction_loss, rel=1e-5), name
    # The accuracies the log reports: audio and g(audio) queries, the trained directions.
    assert terms["acc_audio_to_f_image"] == pytest.approx(expected["audio_to_f_image"][1])
    assert terms["acc_g_audio_to_image"] == pytest.approx(expected["g_audio_to_image"][1])
    audio_space = expected["f_image_to_audio"][0] + expected["audio_to_f_image"][0]
    image_space = expected["image_to_g_audio"][0] + expected["g_audio_to_image"][0]
    assert terms["loss_audio_space"] == pytest.approx(audio_space, rel=1e-5)
    assert terms["loss_image_space"] == pytest.approx(image_space, rel=1e-5)
    assert loss.item() == pytest.approx(audio_space + image_space, rel=1e-5)
    assert terms["extra_positives_audio_space"] == terms["extra_positives_image_space"] == 0.0


def test_accuracy_counts_the_own_key_column_by_hand():
    """Three queries, written out: logits [batch keys | queue] per row.

    row 0: own key (column 0) is best                        -> hit either way
    row 1: batch key 2 beats own key 1; with only its own key
           and the queue, its own key (column 0) is best     -> miss / hit
    row 2: the queue entry beats everything                  -> miss either way
    """
    e = torch.eye(4)
    q = e[:3]
    k = torch.stack([e[0], F.normalize(e[1] + 2 * e[3], dim=0), e[1]])  # key 2 == query 1
    queue = torch.stack([e[2], -e[0]])  # queue entry 0 == query 2
    for batch_negatives, expected in ((True, 1 / 3), (False, 2 / 3)):
        terms = cross_modal_loss(
            q, k, queue, q, k, queue, temperature=T, topk=1, batch_negatives=batch_negatives
        )
        assert terms["acc_x_to_y"].item() == pytest.approx(expected), batch_negatives


# -- cross_modal_loss: both directions, each with its own name -------------------------------------


@pytest.mark.parametrize("batch_negatives", [True, False])
def test_cross_modal_loss_reports_both_directions_by_name(batch_negatives):
    out, queues = _fixture()
    x_to_y = _directions(out, queues)["f_image_to_audio"]  # x queries, y keys, y queue
    y_to_x = _directions(out, queues)["audio_to_f_image"]  # y queries, x keys, x queue
    (x_q, y_k, y_queue), (y_q, x_k, x_queue) = x_to_y, y_to_x
    terms = cross_modal_loss(
        *(torch.tensor(a, dtype=torch.float32) for a in (x_q, x_k, x_queue, y_q, y_k, y_queue)),
        temperature=T,
        topk=1,
        batch_negatives=batch_negatives,
    )
    assert set(terms) == {"loss", "x_to_y", "y_to_x", "acc_x_to_y", "acc_y_to_x", "extra_positives"}
    assert terms["x_to_y"].item() == pytest.approx(_np_loss(*x_to_y, batch_negatives), rel=1e-5)
    assert terms["y_to_x"].item() == pytest.approx(_np_loss(*y_to_x, batch_negatives), rel=1e-5)
    acc_x, acc_y = (_np_accuracy(*d, batch_negatives) for d in (x_to_y, y_to_x))
    assert acc_x != acc_y  # the fixture tells the two directions apart
    assert terms["acc_x_to_y"].item() == pytest.approx(acc_x)
    assert terms["acc_y_to_x"].item() == pytest.approx(acc_y)


# -- devices ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("topk", [1, 2])
@pytest.mark.parametrize("batch_negatives", [True, False])
def test_loss_tensors_stay_on_the_inputs_device(topk, batch_negatives):
    """Masks and indices are made on the inputs' device: on a GPU a CPU mask fails the step.
    No GPU in CI: the meta device refuses mixing devices the same way, and computes nothing."""

    def meta(*shape):
        return torch.empty(*shape, device="meta")

    terms = cross_modal_loss(
        meta(3, 8), meta(3, 8), meta(5, 8), meta(3, 8), meta(3, 8), meta(5, 8),
        temperature=T, topk=topk, batch_negatives=batch_negatives,
    )  # fmt: skip
    assert {name: t.device.type for name, t in terms.items()} == dict.fromkeys(terms, "meta")
