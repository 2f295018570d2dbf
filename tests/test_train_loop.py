"""wavbrivl.train.loop.train on a small fake CrossModalMoCo and a fake batch source.

The fake model has the CrossModalMoCo interface (forward / momentum_update / enqueue /
embed_audio / trainable_parameters, ``cfg`` and ``audio_encoder.cfg``) around a learnable toy
problem: the image embedding is a fixed linear map of features hidden in the waveform. Its
stand-in loss (cosine distance) is a per-clip mean, so gradient accumulation must reproduce
one big batch exactly. test_train_resume.py imports these fakes.
"""

from __future__ import annotations

import copy
import csv
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from wavbrivl.train.checkpoint import ARTEFACT_FORMAT, list_checkpoints, read_audio_encoder
from wavbrivl.train.config import TrainConfig
from wavbrivl.train.data import DataPosition
from wavbrivl.train.loop import NonFiniteLoss, train

CPU = torch.device("cpu")


# -- fakes ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FakeCfg:
    image_dim: int = 8
    feat: int = 16  # features read from the first samples of the waveform
    dropout: float = 0.0
    momentum: float = 0.9
    queue_size: int = 24

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FakeOut:
    image: torch.Tensor
    g_audio_q: torch.Tensor
    g_audio_k: torch.Tensor


class FakeEncoder(nn.Module):
    def __init__(self, cfg: FakeCfg):
        super().__init__()
        self.cfg = cfg
        self.proj = nn.Linear(cfg.feat, cfg.feat)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(waveforms[:, : self.cfg.feat]))  # (B, T) -> (B, F)


class FakeMoCo(nn.Module):
    """CrossModalMoCo's interface on a toy: encoder + g, a momentum g, one key queue."""

    def __init__(self, cfg: FakeCfg = FakeCfg(), seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.cfg = cfg
        self.audio_encoder = FakeEncoder(cfg)
        self.g = nn.Linear(cfg.feat, cfg.image_dim)
        self.g_momentum = copy.deepcopy(self.g).requires_grad_(False)
        self.register_buffer(
            "queue", F.normalize(torch.randn(cfg.queue_size, cfg.image_dim), dim=1)
        )
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))
        self.momentum_updates = 0

    def forward(self, waveforms, lengths, image_emb) -> FakeOut:
        audio = self.audio_encoder(waveforms, lengths)
        q = F.normalize(self.g(audio), dim=-1)
        with torch.no_grad():
            k = F.normalize(self.g_momentum(audio), dim=-1)
        return FakeOut(image=F.normalize(image_emb, dim=-1), g_audio_q=q, g_audio_k=k)

    @torch.no_grad()
    def momentum_update(self) -> None:
        self.momentum_updates += 1
        for p_q, p_k in zip(self.g.parameters(), self.g_momentum.parameters(), strict=True):
            p_k.mul_(self.cfg.momentum).add_(p_q, alpha=1 - self.cfg.momentum)

    @torch.no_grad()
    def enqueue(self, out: FakeOut) -> None:
        b, k = out.g_audio_k.shape[0], self.cfg.queue_size
        rows = (int(self.queue_ptr) + torch.arange(b)) % k
        self.queue[rows] = out.g_audio_k
        self.queue_ptr[0] = (int(self.queue_ptr) + b) % k

    @torch.no_grad()
    def embed_audio(self, waveforms, lengths) -> torch.Tensor:
        was = self.training
        self.eval()
        try:
            return F.normalize(self.g(self.audio_encoder(waveforms, lengths)), dim=-1)
        finally:
            self.train(was)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [*self.audio_encoder.parameters(), *self.g.parameters()]


def cosine_loss(out: FakeOut, model: nn.Module) -> tuple[torch.Tensor, dict[str, float]]:
    """Stand-in for cx_loss: mean cosine distance of g(audio) to its image (per-clip mean)."""
    cos = (out.g_audio_q * out.image).sum(-1)  # (B,)
    loss = (1 - cos).mean()
    return loss, {"cos": float(cos.detach().mean())}


class FakeData:
    """Clip i: features x_i ~ N(0, 1) in the first samples of its waveform, image = W x_i."""

    def __init__(
        self,
        batch_size: int,
        *,
        feat: int = 16,
        dim: int = 8,
        window: int = 64,
        n_val: int = 0,
        seed: int = 0,
    ):
        self.batch_size, self.feat, self.window, self.n_val, self.seed = (
            batch_size,
            feat,
            window,
            n_val,
            seed,
        )
        self.W = np.random.default_rng(1000 + seed).standard_normal((dim, feat)).astype(np.float32)

    def batch(self, indices, labels=None) -> dict:
        xs = np.stack(
            [np.random.default_rng([self.seed, i]).standard_normal(self.feat) for i in indices]
        ).astype(np.float32)
        waves = np.zeros((len(indices), self.window), np.float32)
        waves[:, : self.feat] = xs
        return {
            "waveforms": torch.from_numpy(waves),
            "lengths": torch.full((len(indices),), self.window, dtype=torch.int64),
            "image_emb": torch.from_numpy(xs @ self.W.T),
            "clip_id": [f"clip{i}" for i in indices],
            "label": labels or [f"class{i % 3}" for i in indices],
            "n_padded": 0,
            "bad_clips": [],
        }

    def train_batches(self, position: DataPosition | None = None):
        k = position.consumed[0] if position is not None else 0
        while True:
            batch = self.batch(range(k * self.batch_size, (k + 1) * self.batch_size))
            k += 1
            yield batch, DataPosition(0, [k], 0)

    def eval_batches(self, split, *, max_clips=None):
        n = min(self.n_val, max_clips or self.n_val)
        for start in range(0, n, 8):
            yield self.batch(range(10**6 + start, 10**6 + min(n, start + 8)))

    def split_size(self, split: str) -> int:
        return self.n_val if split == "val" else 10**6

    def describe(self) -> str:
        return "fake toy data"

    fingerprint = "fp-fake-image-encoder"


def toy_config(**kw) -> TrainConfig:
    base = dict(
        steps=40,
        batch_size=16,
        lr=1e-2,
        warmup_steps=4,
        weight_decay=0.0,
        grad_clip=10.0,
        ckpt_every=10,
        eval_every=0,
        log_every=5,
        num_workers=0,
    )
    return TrainConfig.from_dict(base | kw)


def read_log(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def params_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class Recorder:
    def __init__(self):
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)

    def text(self) -> str:
        return "\n".join(self.lines)


# -- tests ---------------------------------------------------------------------------------------


def test_loss_goes_down_and_the_run_leaves_its_artefacts(tmp_path):
    model = FakeMoCo()
    log = Recorder()
    artefact = train(
        model, FakeData(16), toy_config(), tmp_path, device=CPU, log=log, loss_fn=cosine_loss
    )

    rows = [r for r in read_log(tmp_path / "train_log.tsv") if r["kind"] == "train"]
    assert [int(r["step"]) for r in rows] == list(range(5, 41, 5))
    losses = [float(r["loss"]) for r in rows]
    assert losses[-1] < 0.3 * losses[0], losses
    assert float(rows[-1]["loss_cos"]) > float(rows[0]["loss_cos"])
    assert float(rows[0]["lr"]) > float(rows[-1]["lr"])  # the schedule reached the loop
    assert model.momentum_updates == 40 and int(model.queue_ptr) == (40 * 16) % 24

    # audio_encoder.pt: plain data (weights_only), both configs, every weight of the model.
    state = read_audio_encoder(artefact)
    assert artefact == tmp_path / "audio_encoder.pt" and state["format"] == ARTEFACT_FORMAT
    assert (
        state["audio_config"] == FakeCfg().to_dict() and state["moco_config"] == FakeCfg().to_dict()
    )
    assert state["step"] == 40 and state["train_config"]["steps"] == 40
    assert set(state["state_dict"]) == set(model.state_dict())
    assert all(torch.equal(state["state_dict"][k], v) for k, v in model.state_dict().items())
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == [
        "step_000000040.pt",
        "step_000000030.pt",
    ]
    assert "starting a new run" in log.text() and "wrote" in log.text()


def test_a_finished_run_rerun_only_rewrites_the_artefact(tmp_path):
    train(
        FakeMoCo(),
        FakeData(16),
        toy_config(steps=10),
        tmp_path,
        device=CPU,
        log=Recorder(),
        loss_fn=cosine_loss,
    )
    first = read_audio_encoder(tmp_path / "audio_encoder.pt")["state_dict"]
    (tmp_path / "audio_encoder.pt").unlink()
    again = FakeMoCo(seed=5)  # other initial weights: the checkpoint must replace them
    log = Recorder()
    train(
        again,
        FakeData(16),
        toy_config(steps=10),
        tmp_path,
        device=CPU,
        log=log,
        loss_fn=cosine_loss,
    )
    assert "resumed from" in log.text() and "at step 10" in log.text()
    second = read_audio_encoder(tmp_path / "audio_encoder.pt")["state_dict"]
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert again.momentum_updates == 0


def test_non_finite_loss_skips_the_step_and_counts(tmp_path):
    calls = {"n": 0}

    def flaky(out, model):
        calls["n"] += 1
        loss, terms = cosine_loss(out, model)
        return (loss * float("nan") if calls["n"] in (3, 4) else loss), terms

    model = FakeMoCo()
    snapshots = {}
    log = Recorder()
    train(
        model,
        FakeData(8),
        toy_config(steps=10, log_every=1),
        tmp_path,
        device=CPU,
        log=log,
        loss_fn=flaky,
        on_step=lambda s: snapshots.__setitem__(s, params_of(model)),
    )
    # Steps 3 and 4 (1-based) changed nothing: no update, no momentum move, no enqueue.
    for k in snapshots[2]:
        assert torch.equal(snapshots[2][k], snapshots[4][k]), k
    assert not torch.equal(snapshots[4]["g.weight"], snapshots[5]["g.weight"])
    assert model.momentum_updates == 8
    rows = {int(r["step"]): r for r in read_log(tmp_path / "train_log.tsv")}
    assert (
        rows[2]["skipped_steps"] == "0"
        and rows[4]["skipped_steps"] == "2"
        and rows[10]["skipped_steps"] == "2"
    )
    assert rows[3]["loss"] == ""  # no finite loss in that interval
    assert log.text().count("non-finite loss or gradient, step skipped") == 2


class InfiniteGrad(torch.autograd.Function):
    """Identity forward, infinite gradient backward: a finite loss with a non-finite gradient."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


def test_k_non_finite_steps_in_a_row_stop_with_a_clear_error(tmp_path):
    calls = {"n": 0}

    def breaks_at_5(out, model):
        calls["n"] += 1
        loss, terms = cosine_loss(out, model)
        return (InfiniteGrad.apply(loss) if calls["n"] >= 5 else loss), terms

    model = FakeMoCo()
    with pytest.raises(NonFiniteLoss, match=r"3 optimizer steps in a row \(up to step 7\)"):
        train(
            model,
            FakeData(8),
            toy_config(steps=20, max_nonfinite_in_row=3),
            tmp_path,
            device=CPU,
            log=Recorder(),
            loss_fn=breaks_at_5,
        )
    assert model.momentum_updates == 4


def test_gradient_accumulation_matches_one_big_batch(tmp_path):
    def final(batch_size, accum, name):
        model = FakeMoCo(seed=1)
        cfg = toy_config(steps=12, batch_size=batch_size, grad_accum=accum, grad_clip=0.5)
        train(
            model,
            FakeData(batch_size),
            cfg,
            tmp_path / name,
            device=CPU,
            log=Recorder(),
            loss_fn=cosine_loss,
        )
        return params_of(model)

    big, accumulated, small = final(8, 1, "big"), final(4, 2, "accum"), final(4, 1, "small")
    for k in big:
        if k != "queue":  # the queue holds the same keys, written in other order chunks
            assert torch.allclose(big[k], accumulated[k], atol=1e-5, rtol=1e-4), k
    assert not torch.allclose(big["g.weight"], small["g.weight"], atol=1e-3)


def test_validation_rows_use_retrieval_metrics(tmp_path):
    data = FakeData(16, n_val=24)
    # Validation (every 4) comes before the first train row (every 5): the header must
    # widen for the loss terms that arrive later.
    cfg = toy_config(steps=20, eval_every=4, log_every=5)
    artefact = train(
        FakeMoCo(), data, cfg, tmp_path, device=CPU, log=Recorder(), loss_fn=cosine_loss
    )
    rows = read_log(tmp_path / "train_log.tsv")
    val = [r for r in rows if r["kind"] == "val"]
    assert [int(r["step"]) for r in val] == [4, 8, 12, 16, 20]
    r1 = [float(r["val_r1_a2i"]) for r in val]
    assert all(0.0 <= v <= 1.0 for v in r1)
    assert r1[-1] > 3 * float(val[-1]["val_r1_chance"]) > 0  # learnt, well above chance
    assert all(r["loss_cos"] for r in rows if r["kind"] == "train")
    assert read_audio_encoder(artefact)["metrics"]["n_clips"] == 24

    # Rerunning the finished run redoes only the final validation, without duplicating it.
    train(FakeMoCo(), data, cfg, tmp_path, device=CPU, log=Recorder(), loss_fn=cosine_loss)
    again = read_log(tmp_path / "train_log.tsv")
    assert [(r["kind"], r["step"]) for r in again] == [(r["kind"], r["step"]) for r in rows]


def test_train_config_from_dict_names_unknown_keys_and_checks_values():
    cfg = TrainConfig.from_dict({"steps": 5, "warmup_steps": 1})
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match=r"unknown train config key\(s\) \['stepz'\]"):
        TrainConfig.from_dict({"stepz": 5})
    with pytest.raises(ValueError, match="warmup_steps=10"):
        TrainConfig(steps=5, warmup_steps=10)
    with pytest.raises(ValueError, match=r"'train\.views': 'noisy' is not one of"):
        TrainConfig.from_dict({"views": "noisy"})
    # The flat form (the workflow's train block) maps onto the nested data config.
    cfg = TrainConfig.from_dict({"batch_size": 8, "seed": 3, "steps": 7, "warmup_steps": 0})
    assert (cfg.data.batch_size, cfg.data.seed, cfg.steps) == (8, 3, 7)
    assert cfg.to_dict()["batch_size"] == 8 and "data" not in cfg.to_dict()


# -- integration: the real tiny CrossModalMoCo, cx_loss and the real data pipeline ---------------


def test_the_real_tiny_model_trains_resumes_and_reloads(tmp_path):
    from test_train_data import FINGERPRINT, simple_shards, write_dataset

    from wavbrivl.audio.encoder import AudioEncoderConfig, build_audio_encoder
    from wavbrivl.audio.tiny import TINY_AUDIO, TINY_MOCO, save_tiny_wavlm
    from wavbrivl.train.checkpoint import load_trained_model
    from wavbrivl.train.data import TrainData
    from wavbrivl.train.moco import CrossModalMoCo, MoCoConfig

    wavlm_dir = save_tiny_wavlm(tmp_path / "wavlm", seed=0)
    image_dim = TINY_MOCO["image_dim"]
    manifest, pairs, _ = write_dataset(
        tmp_path / "data", simple_shards(3, 10, seconds=1.2), dim=image_dim, views=2
    )
    cfg = TrainConfig.from_dict(
        dict(
            steps=6,
            batch_size=4,
            lr=1e-3,
            warmup_steps=2,
            window_s=1.0,
            num_workers=2,
            shuffle_buffer=8,
            val_fraction=0.3,
            eval_every=3,
            eval_max_clips=8,
            ckpt_every=3,
            log_every=1,
        )
    )
    data = TrainData(manifest, pairs, cfg.data, fingerprint=FINGERPRINT, image_dim=image_dim)

    def build() -> CrossModalMoCo:
        torch.manual_seed(0)
        audio = AudioEncoderConfig(wavlm=str(wavlm_dir), **TINY_AUDIO)
        return CrossModalMoCo(
            build_audio_encoder(audio), MoCoConfig(**(TINY_MOCO | {"queue_size": 32}))
        )

    model = build()
    before = params_of(model)

    def crash_at_4(step):
        if step == 4:
            raise KeyboardInterrupt  # an interrupted session

    with pytest.raises(KeyboardInterrupt):
        train(model, data, cfg, tmp_path / "run", device=CPU, log=Recorder(), on_step=crash_at_4)
    model = build()
    log = Recorder()
    artefact = train(model, data, cfg, tmp_path / "run", device=CPU, log=log)  # the real cx_loss
    assert "at step 3" in log.text()

    # Resumed == uninterrupted (queues, momentum copies, dropout RNG included).
    straight = build()
    train(straight, data, cfg, tmp_path / "straight", device=CPU, log=Recorder())
    after = params_of(model)
    for k, v in params_of(straight).items():
        assert torch.allclose(v, after[k], rtol=1e-5, atol=1e-6), k

    wavlm_keys = [k for k in after if k.startswith("audio_encoder.wavlm.")]
    assert wavlm_keys and all(torch.equal(before[k], after[k]) for k in wavlm_keys)  # frozen
    trained = [k for k in after if k.startswith(("g.", "f.", "audio_encoder.head."))]
    assert trained and all(not torch.equal(before[k], after[k]) for k in trained)
    assert int(model.queue_ptr) == (6 * 4) % 32

    rows = read_log(tmp_path / "run" / "train_log.tsv")
    train_rows = [r for r in rows if r["kind"] == "train"]
    assert [int(r["step"]) for r in train_rows] == [1, 2, 3, 4, 5, 6]
    assert all(np.isfinite(float(r["loss"])) for r in train_rows)
    assert any(k.startswith("loss_") for k in train_rows[0])  # cx_loss's terms are logged
    assert [int(r["step"]) for r in rows if r["kind"] == "val"] == [3, 6]

    # audio_encoder.pt records the embeddings' encoder, and rebuilds the model: its
    # embed_audio is the trained one's.
    assert read_audio_encoder(artefact)["image_encoder_fingerprint"] == FINGERPRINT
    reloaded = load_trained_model(artefact)
    batch = next(data.eval_batches("val"))
    expected = model.embed_audio(batch["waveforms"], batch["lengths"])
    got = reloaded.embed_audio(batch["waveforms"], batch["lengths"])
    assert got.shape == (len(batch["clip_id"]), image_dim)
    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.allclose(got.norm(dim=-1), torch.ones(len(got)), atol=1e-4)


def test_two_trainings_from_the_same_inputs_give_the_same_bytes_and_fingerprint(tmp_path):
    """Same inputs, same bytes: the model file and the checkpoints are byte-identical, so the
    fingerprint that generated PNGs carry is too (issue 10, point 7)."""
    from test_train_data import FINGERPRINT, simple_shards, write_dataset

    from wavbrivl.audio.encoder import AudioEncoderConfig, build_audio_encoder
    from wavbrivl.audio.tiny import TINY_AUDIO, TINY_MOCO, save_tiny_wavlm
    from wavbrivl.generate.stage import load_audio_model
    from wavbrivl.train.data import TrainData
    from wavbrivl.train.moco import CrossModalMoCo, MoCoConfig

    wavlm_dir = save_tiny_wavlm(tmp_path / "wavlm", seed=0)
    image_dim = TINY_MOCO["image_dim"]
    manifest, pairs, _ = write_dataset(
        tmp_path / "data", simple_shards(2, 6, seconds=1.2), dim=image_dim, views=1
    )
    cfg = TrainConfig.from_dict(
        dict(steps=2, batch_size=4, warmup_steps=1, window_s=1.0, num_workers=0, shuffle_buffer=4)
        | dict(val_fraction=0.0, eval_every=0, ckpt_every=1, log_every=1)
    )
    data = TrainData(manifest, pairs, cfg.data, fingerprint=FINGERPRINT, image_dim=image_dim)

    def trained(run: str, cfg: TrainConfig = cfg) -> Path:
        torch.manual_seed(0)
        audio = AudioEncoderConfig(wavlm=str(wavlm_dir), **TINY_AUDIO)
        model = CrossModalMoCo(
            build_audio_encoder(audio), MoCoConfig(**(TINY_MOCO | {"queue_size": 8}))
        )
        return train(model, data, cfg, tmp_path / run, device=CPU, log=Recorder())

    a, b = trained("a"), trained("b")
    assert a.read_bytes() == b.read_bytes()
    # run-time keys (wavbrivl.config_keys) are not part of the result, nor of its bytes
    runtime_only = TrainConfig.from_dict(cfg.to_dict() | dict(ckpt_every=2, log_every=2))
    assert trained("c", runtime_only).read_bytes() == a.read_bytes()
    steps_a, steps_b = (
        list_checkpoints(a.parent / "checkpoints"),
        list_checkpoints(b.parent / "checkpoints"),
    )
    assert steps_a and [p.read_bytes() for p in steps_a] == [p.read_bytes() for p in steps_b]

    class ImageSpace:  # what the generate stage checks the model against
        dim, name, fingerprint = image_dim, "image encoder", FINGERPRINT

    (_, fingerprint_a), (_, fingerprint_b) = (
        load_audio_model(p, ImageSpace, CPU, None) for p in (a, b)
    )
    assert len(fingerprint_a) == 64 and fingerprint_a == fingerprint_b
