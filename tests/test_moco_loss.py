"""Cross-modal MoCo and CXLoss: queues, momentum updates, the loss against a hand
computation (numpy), BriVL's TOPK extra positives, where gradients flow, embed_audio."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wavbrivl.audio import TINY_AUDIO, TINY_MOCO, AudioEncoderConfig, build_audio_encoder
from wavbrivl.audio.tiny import save_tiny_wavlm
from wavbrivl.train.loss import cross_modal_loss, cx_loss, shared_topk_positives
from wavbrivl.train.moco import QUEUES, CrossModalMoCo, MoCoConfig, MoCoOutputs

SR = 16000
D_AUDIO = TINY_AUDIO["out_dim"]
D_IMAGE = TINY_MOCO["image_dim"]


@pytest.fixture(scope="module")
def wavlm_dir(tmp_path_factory):
    return save_tiny_wavlm(tmp_path_factory.mktemp("wavlm") / "tiny", seed=0)


def _model(wavlm_dir, freeze: bool = True, **moco) -> CrossModalMoCo:
    torch.manual_seed(0)
    audio_cfg = AudioEncoderConfig(wavlm=str(wavlm_dir), freeze_wavlm=freeze, **TINY_AUDIO)
    return CrossModalMoCo(build_audio_encoder(audio_cfg), MoCoConfig(**{**TINY_MOCO, **moco}))


def _batch(b: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    waveforms = torch.randn(b, SR, generator=g)
    lengths = torch.tensor([SR, SR // 2, 3 * SR // 4, SR][:b])
    image = torch.randn(b, D_IMAGE, generator=g)
    return waveforms, lengths, image


def _unit(*shape, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def _outputs(b: int, seed: int = 0) -> MoCoOutputs:
    dims = {"image": D_IMAGE, "g_audio_q": D_IMAGE, "g_audio_k": D_IMAGE}
    dims |= {"audio_q": D_AUDIO, "audio_k": D_AUDIO, "f_image_q": D_AUDIO, "f_image_k": D_AUDIO}
    return MoCoOutputs(**{n: _unit(b, d, seed=seed + i) for i, (n, d) in enumerate(dims.items())})


# -- numpy reference (written from the definition, independent of the implementation) -------


def _np_direction(q, k, queue, t, extra, batch_negatives):
    """Mean over rows of -sum(log p[positives]); logits = [batch keys | queue] / t."""
    total = 0.0
    for i in range(len(q)):
        keys = k if batch_negatives else k[i : i + 1]
        logits = np.concatenate([keys @ q[i], queue @ q[i]]) / t
        log_p = logits - np.log(np.exp(logits - logits.max()).sum()) - logits.max()
        own = i if batch_negatives else 0
        positives = [own] + [len(keys) + j for j in range(len(queue)) if extra[i, j]]
        total -= log_p[positives].sum()
    return total / len(q)


def _np_cx(out: MoCoOutputs, queues: dict, t, extra_audio, extra_image, batch_negatives=True):
    o = {f.name: getattr(out, f.name).double().numpy() for f in dataclasses.fields(out)}
    qs = {name: q.double().numpy() for name, q in queues.items()}
    bn = batch_negatives
    return (
        _np_direction(o["f_image_q"], o["audio_k"], qs["queue_audio"], t, extra_audio, bn)
        + _np_direction(o["audio_q"], o["f_image_k"], qs["queue_f_image"], t, extra_audio, bn)
        + _np_direction(o["image"], o["g_audio_k"], qs["queue_g_audio"], t, extra_image, bn)
        + _np_direction(o["g_audio_q"], o["image"], qs["queue_image"], t, extra_image, bn)
    )


def _queues(model) -> dict[str, torch.Tensor]:
    return {name: getattr(model, name).clone() for name in QUEUES}


# -- configuration --------------------------------------------------------------------------


def test_config_round_trip_and_validation():
    cfg = MoCoConfig(**TINY_MOCO, topk=3)
    assert MoCoConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert (MoCoConfig().queue_size, MoCoConfig().momentum, MoCoConfig().temperature) == (
        9600,
        0.99,
        0.07,
    )
    with pytest.raises(ValueError, match=r"unknown MoCoConfig key\(s\) \['queue_sise'\]"):
        MoCoConfig.from_dict({"queue_sise": 10})
    with pytest.raises(ValueError, match="momentum"):
        MoCoConfig(momentum=1.0)
    with pytest.raises(ValueError, match="temperature"):
        MoCoConfig(temperature=0.0)
    assert MoCoConfig(image_dim=1).image_dim == 1  # the smallest valid embedding
    with pytest.raises(ValueError, match="image_dim must be positive, got 0"):
        MoCoConfig(image_dim=0)


# -- queues -----------------------------------------------------------------------------------


def test_queues_are_unit_buffers_in_the_state_dict(wavlm_dir):
    model = _model(wavlm_dir, queue_size=10)
    state = model.state_dict()
    for name in QUEUES:
        assert name in state
        assert getattr(model, name).shape[0] == 10
        torch.testing.assert_close(getattr(model, name).norm(dim=1), torch.ones(10))
    assert "queue_ptr" in state and int(model.queue_ptr) == 0
    assert state["queue_ptr"].dtype == torch.int64  # an index: exact at any queue size
    assert {id(b) for b in model.buffers()} >= {id(getattr(model, n)) for n in QUEUES}


def test_enqueue_writes_keys_and_wraps_around(wavlm_dir):
    model = _model(wavlm_dir, queue_size=10)
    batches = [_outputs(4, seed=10 * i) for i in range(3)]
    initial = _queues(model)
    model.enqueue(batches[0])
    model.enqueue(batches[1])
    assert int(model.queue_ptr) == 8
    model.enqueue(batches[2])  # rows 8, 9, then wraps to 0, 1
    assert int(model.queue_ptr) == 2
    for name, key in QUEUES.items():
        queue = getattr(model, name)
        third = getattr(batches[2], key)
        torch.testing.assert_close(queue[[8, 9, 0, 1]], third)
        torch.testing.assert_close(queue[2:4], getattr(batches[0], key)[2:4])
        torch.testing.assert_close(queue[4:8], getattr(batches[1], key))
        assert not torch.equal(queue, initial[name])


def test_enqueue_batch_larger_than_queue_keeps_the_newest(wavlm_dir):
    model = _model(wavlm_dir, queue_size=3)
    model.enqueue(_outputs(2, seed=1))  # ptr 2
    big = _outputs(5, seed=2)
    model.enqueue(big)
    assert int(model.queue_ptr) == 2
    torch.testing.assert_close(model.queue_image[[2, 0, 1]], big.image[2:])


# -- momentum ---------------------------------------------------------------------------------


@pytest.mark.parametrize("freeze", [True, False])
def test_momentum_update_is_an_ema(wavlm_dir, freeze):
    model = _model(wavlm_dir, freeze=freeze, momentum=0.9)
    pairs = list(model.momentum_pairs())
    assert (model.wavlm_momentum is None) is freeze
    assert len(pairs) == (3 if freeze else 4)
    for online, momentum in pairs:  # copies start equal and take no gradient
        for p_q, p_k in zip(online.parameters(), momentum.parameters(), strict=True):
            assert torch.equal(p_q, p_k) and not p_k.requires_grad
    with torch.no_grad():  # move the online weights as an optimizer step would
        for online, _ in pairs:
            for p in online.parameters():
                p.add_(torch.randn_like(p))
    before = [[p.clone() for p in m.parameters()] for _, m in pairs]
    model.momentum_update()
    for (online, momentum), old in zip(pairs, before, strict=True):
        for p_q, p_k, p_old in zip(online.parameters(), momentum.parameters(), old, strict=True):
            torch.testing.assert_close(p_k, 0.9 * p_old + 0.1 * p_q)


def test_frozen_wavlm_is_shared_not_copied(wavlm_dir):
    model = _model(wavlm_dir)
    keys = model.state_dict().keys()
    assert not any(k.startswith("wavlm_momentum") for k in keys)
    model.train()
    assert not model.audio_encoder.wavlm.training
    assert model.audio_head_momentum.training  # momentum copies follow the parent mode


# -- the loss against a hand computation -----------------------------------------------------


@pytest.mark.parametrize("batch_negatives", [True, False])
def test_cx_loss_equals_numpy_infonce_with_queue_negatives(wavlm_dir, batch_negatives):
    model = _model(wavlm_dir, queue_size=6, temperature=0.1, batch_negatives=batch_negatives)
    model.enqueue(_outputs(6, seed=100))  # queues hold real keys, not their random init
    out = _outputs(3, seed=7)
    loss, terms = cx_loss(out, model)
    none = np.zeros((3, 6), dtype=bool)
    expected = _np_cx(out, _queues(model), 0.1, none, none, batch_negatives)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert terms["loss"] == pytest.approx(expected, rel=1e-5)
    assert terms["loss_audio_space"] + terms["loss_image_space"] == pytest.approx(
        expected, rel=1e-5
    )
    assert terms["extra_positives_audio_space"] == 0.0


def test_cx_loss_stays_float32_under_autocast(wavlm_dir):
    """bf16 logits at T = 0.07 would be off by whole units; the loss must ignore autocast."""
    model = _model(wavlm_dir, queue_size=64)
    out = _outputs(8, seed=11)
    plain, _ = cx_loss(out, model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed, terms = cx_loss(out, model)
    assert mixed.dtype == torch.float32
    assert mixed.item() == pytest.approx(plain.item(), rel=1e-6)
    waveforms, lengths, image = _batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = model(waveforms, lengths, image)
    assert all(getattr(outputs, f.name).dtype == torch.float32 for f in dataclasses.fields(outputs))


def test_queue_negatives_change_the_loss(wavlm_dir):
    """The queue is part of the denominator: a queued key equal to a query dominates it."""
    model = _model(wavlm_dir, queue_size=4)
    out = _outputs(2, seed=3)
    _, base = cx_loss(out, model)
    model.queue_audio[0] = out.f_image_q[0]  # a negative with logit 1 / T for query 0
    _, harder = cx_loss(out, model)
    assert harder["loss_f_image_to_audio"] > base["loss_f_image_to_audio"] + 2.0
    assert harder["loss_image_space"] == base["loss_image_space"]


def _topk_example():
    """B=2 rows, queue of 4 unit vectors (the first 4 axes).

    x keys rank the queue [0,1,2,3] and [3,2,1,0]: top-2 {0,1} and {2,3}.
    y keys rank it [2,1,3,0] and [0,3,2,1]: top-2 {1,2} and {0,3}.
    Shared: row 0 -> {1}, row 1 -> {3}.
    """
    x_k = F.normalize(torch.tensor([[3.0, 2, 1, 0], [0, 1, 2, 3]]), dim=1)
    y_k = F.normalize(torch.tensor([[0.0, 2, 3, 1], [3, 0, 1, 2]]), dim=1)
    expected = np.array([[False, True, False, False], [False, False, False, True]])
    return x_k, y_k, expected


def _embed(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Put 4-d vectors into the first axes of a dim-d space."""
    return F.pad(x, (0, dim - x.shape[1]))


def test_topk_extra_positives_follow_brivl_rule():
    x_k, y_k, expected = _topk_example()
    eye = torch.eye(4)
    assert np.array_equal(shared_topk_positives(x_k, eye, y_k, eye, topk=2).numpy(), expected)
    assert not shared_topk_positives(x_k, eye, y_k, eye, topk=1).any()  # TOPK=1: plain
    assert shared_topk_positives(x_k, eye, y_k, eye, topk=4).all()  # everything shared


def test_cx_loss_with_topk_counts_extra_positives(wavlm_dir):
    model = _model(wavlm_dir, queue_size=4, topk=2, temperature=0.2)
    x_k, y_k, extra = _topk_example()
    with torch.no_grad():
        model.queue_f_image.copy_(_embed(torch.eye(4), D_AUDIO))
        model.queue_audio.copy_(_embed(torch.eye(4), D_AUDIO))
        model.queue_image.copy_(_embed(torch.eye(4), D_IMAGE))
        model.queue_g_audio.copy_(_embed(torch.eye(4), D_IMAGE))
    out = _outputs(2, seed=5)
    out.f_image_k, out.audio_k = _embed(x_k, D_AUDIO), _embed(y_k, D_AUDIO)
    out.image, out.g_audio_k = _embed(x_k, D_IMAGE), _embed(y_k, D_IMAGE)
    loss, terms = cx_loss(out, model)
    expected = _np_cx(out, _queues(model), 0.2, extra, extra)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert terms["extra_positives_audio_space"] == terms["extra_positives_image_space"] == 1.0
    plain = _np_cx(out, _queues(model), 0.2, ~extra & False, ~extra & False)
    assert abs(expected - plain) > 0.1  # the extra positives really enter the loss


def test_cross_modal_loss_sums_both_directions():
    x_q, y_q = _unit(3, 8, seed=1), _unit(3, 8, seed=2)
    x_k, y_k = _unit(3, 8, seed=3), _unit(3, 8, seed=4)
    qx, qy = _unit(5, 8, seed=5), _unit(5, 8, seed=6)
    terms = cross_modal_loss(
        x_q, x_k, qx, y_q, y_k, qy, temperature=0.07, topk=1, batch_negatives=True
    )
    none = np.zeros((3, 5), dtype=bool)
    n = lambda t: t.double().numpy()  # noqa: E731
    x_to_y = _np_direction(n(x_q), n(y_k), n(qy), 0.07, none, True)
    y_to_x = _np_direction(n(y_q), n(x_k), n(qx), 0.07, none, True)
    assert terms["x_to_y"].item() == pytest.approx(x_to_y, rel=1e-5)
    assert terms["y_to_x"].item() == pytest.approx(y_to_x, rel=1e-5)
    assert terms["loss"].item() == pytest.approx(x_to_y + y_to_x, rel=1e-5)


# -- forward, gradients, embeddings ----------------------------------------------------------


def test_forward_outputs_are_unit_vectors_in_their_spaces(wavlm_dir):
    model = _model(wavlm_dir).train()
    out = model(*_batch())
    for field in dataclasses.fields(out):
        t = getattr(out, field.name)
        dim = D_IMAGE if field.name in ("image", "g_audio_q", "g_audio_k") else D_AUDIO
        assert t.shape == (4, dim), field.name
        torch.testing.assert_close(t.norm(dim=1), torch.ones(4))
    assert out.g_audio_q.requires_grad and out.f_image_q.requires_grad
    assert not (out.g_audio_k.requires_grad or out.audio_k.requires_grad or out.image.requires_grad)
    with pytest.raises(ValueError, match=r"image_emb must be \(4, 128\)"):
        model(*_batch()[:2], torch.zeros(4, 7))


def _np_unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _np_mlp(mlp, x: np.ndarray) -> np.ndarray:
    """f and g by hand: fc1, ReLU, fc2, from the module's weights."""
    w1, b1, w2, b2 = (
        t.detach().double().numpy()
        for t in (mlp.fc1.weight, mlp.fc1.bias, mlp.fc2.weight, mlp.fc2.bias)
    )
    return np.maximum(x @ w1.T + b1, 0.0) @ w2.T + b2


@pytest.mark.parametrize("freeze", [True, False])
def test_keys_come_from_the_momentum_copies_and_queries_from_the_online_modules(wavlm_dir, freeze):
    """MoCo's contract, with every momentum copy moved away from its online module (as after
    training steps) so that a key computed by the online module shows."""
    model = _model(wavlm_dir, freeze=freeze).eval()  # eval: no dropout, one answer per input
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _, momentum in model.momentum_pairs():  # with the momentum WavLM when fine-tuned
            for p in momentum.parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=g))
    waveforms, lengths, image_emb = _batch()
    encoder = model.audio_encoder
    with torch.no_grad():
        out = model(waveforms, lengths, image_emb)
        online = encoder.wavlm_states(waveforms, lengths)
        momentum = (
            online if freeze else encoder.wavlm_states(waveforms, lengths, model.wavlm_momentum)
        )
        audio_q = F.normalize(encoder.head(*online), dim=-1).double().numpy()
        audio_k = F.normalize(model.audio_head_momentum(*momentum), dim=-1).double().numpy()
        mixed = F.normalize(model.audio_head_momentum(*online), dim=-1).double().numpy()
    image = _np_unit(image_emb.double().numpy())
    expected = {
        "image": image,
        "audio_q": audio_q,
        "audio_k": audio_k,
        "f_image_q": _np_unit(_np_mlp(model.f, image)),
        "f_image_k": _np_unit(_np_mlp(model.f_momentum, image)),
        "g_audio_q": _np_unit(_np_mlp(model.g, audio_q)),
        "g_audio_k": _np_unit(_np_mlp(model.g_momentum, audio_k)),
    }
    for name, value in expected.items():
        np.testing.assert_allclose(getattr(out, name).numpy(), value, atol=1e-5, err_msg=name)
    # The fixture tells the copies apart: every key is far from its query, and a fine-tuned
    # WavLM's momentum copy changes the audio key by itself.
    for q, k in (("audio_q", "audio_k"), ("f_image_q", "f_image_k"), ("g_audio_q", "g_audio_k")):
        assert np.abs(expected[q] - expected[k]).max() > 0.05, k
    assert freeze or np.abs(mixed - audio_k).max() > 0.05


def test_gradients_flow_only_where_they_belong(wavlm_dir):
    model = _model(wavlm_dir).train()
    waveforms, lengths, image = _batch()
    image.requires_grad_(True)
    loss, _ = cx_loss(model(waveforms, lengths, image), model)
    loss.backward()

    def grad_sum(module):
        return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)

    assert image.grad is None  # the frozen image embedding is a constant
    for frozen in (
        model.audio_encoder.wavlm,
        model.audio_head_momentum,
        model.f_momentum,
        model.g_momentum,
    ):
        assert all(p.grad is None for p in frozen.parameters())
    head = model.audio_encoder.head
    for name, module in {
        "g": model.g,
        "f": model.f,
        "transformer": head.transformer,
        "mlp": head.mlp,
    }.items():
        assert all(p.grad is not None for p in module.parameters()), name
        assert grad_sum(module) > 0, name
    assert bool((head.layer_logits.grad != 0).all())


def test_trainable_parameters_exclude_frozen_and_momentum(wavlm_dir):
    model = _model(wavlm_dir)
    ids = {id(p) for p in model.trainable_parameters()}
    expected = {id(p) for m in (model.audio_encoder.head, model.f, model.g) for p in m.parameters()}
    assert ids == expected
    tuned = _model(wavlm_dir, freeze=False)
    tuned_ids = {id(p) for p in tuned.trainable_parameters()}
    assert {id(p) for p in tuned.audio_encoder.wavlm.parameters()} <= tuned_ids
    assert not tuned_ids & {id(p) for p in tuned.wavlm_momentum.parameters()}


def test_embed_audio_is_g_of_audio_unit_in_image_space(wavlm_dir):
    model = _model(wavlm_dir).train()
    waveforms, lengths, _ = _batch()
    emb = model.embed_audio(waveforms, lengths)
    assert emb.shape == (4, D_IMAGE) and emb.dtype == torch.float32
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(4))
    assert model.training  # mode restored
    assert torch.equal(emb, model.embed_audio(waveforms, lengths))  # no dropout inside
    model.eval()
    with torch.no_grad():
        audio = F.normalize(model.audio_encoder.encode_audio(waveforms, lengths), dim=-1)
        expected = F.normalize(model.g(audio), dim=-1)
    torch.testing.assert_close(emb, expected)


def test_embed_audio_can_return_the_norm_of_g_before_normalisation(wavlm_dir):
    model = _model(wavlm_dir).train()
    waveforms, lengths, _ = _batch()
    unit, norm = model.embed_audio(waveforms, lengths, return_norm=True)
    assert model.training  # mode restored
    assert norm.shape == (4,) and norm.dtype == torch.float32
    torch.testing.assert_close(unit, model.embed_audio(waveforms, lengths))
    model.eval()
    with torch.no_grad():
        audio = F.normalize(model.audio_encoder.encode_audio(waveforms, lengths), dim=-1)
        raw = model.g(audio)  # (B, D_IMAGE), not normalised
    torch.testing.assert_close(norm, raw.norm(dim=-1))
    torch.testing.assert_close(unit * norm[:, None], raw)


def test_state_dict_round_trip_rebuilds_the_same_embedding(wavlm_dir, tmp_path):
    model = _model(wavlm_dir).eval()
    model.enqueue(_outputs(3, seed=9))
    payload = {
        "model": model.state_dict(),
        "audio_config": model.audio_encoder.cfg.to_dict(),
        "moco_config": model.cfg.to_dict(),
    }
    torch.save(payload, tmp_path / "m.pt")
    loaded = torch.load(tmp_path / "m.pt", weights_only=True)
    torch.manual_seed(123)  # a different random head: the weights must come from the file
    rebuilt = CrossModalMoCo(
        build_audio_encoder(AudioEncoderConfig.from_dict(loaded["audio_config"])),
        MoCoConfig.from_dict(loaded["moco_config"]),
    )
    rebuilt.load_state_dict(loaded["model"])
    waveforms, lengths, _ = _batch()
    torch.testing.assert_close(
        rebuilt.embed_audio(waveforms, lengths), model.embed_audio(waveforms, lengths)
    )
    assert int(rebuilt.queue_ptr) == 3
