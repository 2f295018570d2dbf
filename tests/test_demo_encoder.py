"""The demo's image-encoder training (wavbrivl.demo.encoder_train) on tiny sets of known pictures.

Expected values come from a hand computation of the loss, from the BriVL loader that reads
official checkpoints, or from the pictures themselves, never from the training code's numbers.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from test_demo_vqgan import jpeg, write_shard

from wavbrivl.configs import config_schema
from wavbrivl.demo.encoder_train import (
    DEMO_ENCODER_PATH,
    DemoEncoderConfig,
    embed_views,
    info_nce,
    run_demo_image_encoder,
    save_brivl_checkpoint,
    train_demo_image_encoder,
    write_loss_log,
)
from wavbrivl.encoders.brivl import TINY_BRIVL, BriVLImageEncoder
from wavbrivl.encoders.from_config import encoder_from_config
from wavbrivl.encoders.registry import build_encoder


def picture(kind: str, size: int = 32) -> torch.Tensor:
    """(3, size, size) in [0, 1]: a colour field, a checkerboard or stripes."""
    x = torch.zeros(3, size, size)
    grid = torch.arange(size)
    if kind == "red":
        x[0] = 1
    elif kind == "blue":
        x[2] = 1
    elif kind == "checker":
        x[:] = (((grid[:, None] // 4) + (grid[None, :] // 4)) % 2).float()
    elif kind == "stripes":
        x[1] = ((grid[None, :] // 2) % 2).float().expand(size, size)
    return x


FRAMES = torch.stack([picture(k) for k in ("red", "blue", "checker", "stripes")])
QUICK = {"steps": 12, "batch_size": 4, "image_size": 32, "min_cut_size": 16, "lr": 0.002}


def quick(**kwargs) -> DemoEncoderConfig:
    return DemoEncoderConfig.from_dict({**QUICK, **kwargs})


# -- settings -----------------------------------------------------------------------------------


def test_config_defaults_come_from_the_schema():
    props = config_schema()["properties"]["demo"]["properties"]["image_encoder"]["properties"]
    defaults = DemoEncoderConfig()
    for key, prop in props.items():
        assert getattr(defaults, key) == prop["default"], key
    assert set(props) == set(vars(defaults))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"steps": 0}, "demo.image_encoder.steps must be at least 1"),
        ({"image_size": 0}, "demo.image_encoder.image_size must be at least 1"),
        ({"min_cut_size": 0}, "demo.image_encoder.min_cut_size must be at least 1"),
        ({"batch_size": 1}, "batch_size must be at least 2"),
        ({"lr": 0.0}, "lr and temperature must be positive"),
        ({"temperature": 0.0}, "lr and temperature must be positive"),
        ({"cut_noise": -0.1}, "cut_noise must not be negative"),
        ({"stepz": 3}, "unknown demo.image_encoder config key"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(values, message):
    with pytest.raises(ValueError, match=message):
        DemoEncoderConfig.from_dict(values)


def test_edge_settings_are_accepted():
    cfg = DemoEncoderConfig(steps=1, batch_size=2, image_size=1, min_cut_size=1, cut_noise=0.0)
    assert (cfg.steps, cfg.batch_size, cfg.cut_noise) == (1, 2, 0.0)


def test_views_are_two_generation_cutouts_of_each_frame():
    settings = quick(min_cut_size=20, cut_noise=0.3).cutouts()
    assert (settings.n, settings.min_size, settings.noise) == (2, 20, 0.3)
    assert settings.flip and settings.cut_pow == 1.0  # generation's defaults


# -- the loss -----------------------------------------------------------------------------------


def test_info_nce_matches_a_hand_computation():
    a = F.normalize(torch.tensor([[1.0, 0.0], [0.6, 0.8]]), dim=1)
    b = F.normalize(torch.tensor([[0.8, 0.6], [0.0, 1.0]]), dim=1)
    t = 0.5
    s = (a @ b.T).tolist()  # [[0.8, 0], [0.84, 0.8]]

    def row_loss(logits, i):
        return -logits[i] + math.log(sum(math.exp(v) for v in logits))

    rows = [row_loss([v / t for v in s[i]], i) for i in range(2)]
    cols = [row_loss([s[j][i] / t for j in range(2)], i) for i in range(2)]
    want = (sum(rows) / 2 + sum(cols) / 2) / 2
    assert info_nce(a, b, t).item() == pytest.approx(want, rel=1e-6)


def test_info_nce_is_low_when_each_row_finds_its_partner():
    eye = torch.eye(3)
    shuffled = eye[[1, 2, 0]]
    assert info_nce(eye, eye, 0.1) < 0.01 < 5 < info_nce(eye, shuffled, 0.1)


def test_views_are_embedded_as_unit_rows_with_gradients():
    torch.manual_seed(0)
    model = BriVLImageEncoder(TINY_BRIVL, frozen=False)
    views = torch.rand(3, 3, TINY_BRIVL.img_size, TINY_BRIVL.img_size)
    emb = embed_views(model, views)
    assert emb.shape == (3, TINY_BRIVL.out_dim)
    assert torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)
    emb.sum().backward()
    assert model.backbone.conv_stem.weight.grad is not None


# -- training -----------------------------------------------------------------------------------


def test_training_lowers_the_loss_and_leaves_a_frozen_model():
    trained = train_demo_image_encoder(FRAMES, quick(steps=25))
    first, last = sum(trained.losses[:5]) / 5, sum(trained.losses[-5:]) / 5
    assert len(trained.losses) == 25
    assert last < first / 4, (first, last)
    assert trained.model.frozen and not trained.model.training
    assert not any(p.requires_grad for p in trained.model.parameters())


def test_training_is_seeded_and_leaves_the_callers_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    one = train_demo_image_encoder(FRAMES, quick(steps=2, seed=5))
    after = torch.rand(1)
    two = train_demo_image_encoder(FRAMES, quick(steps=2, seed=5))
    other = train_demo_image_encoder(FRAMES, quick(steps=2, seed=6))
    assert torch.equal(before, after)
    assert one.losses == two.losses != other.losses


def test_a_batch_never_repeats_a_frame():
    # Two frames, batch 4: the batch shrinks to 2 distinct frames. With a repeat, a frame's
    # views would be negatives of themselves and the two-frame loss could not reach ~0.
    two = FRAMES[:2]
    trained = train_demo_image_encoder(two, quick(steps=30, batch_size=4, cut_noise=0.0))
    assert min(trained.losses) < 0.05


def test_fewer_than_two_frames_is_an_error():
    with pytest.raises(ValueError, match="1 training frame"):
        train_demo_image_encoder(FRAMES[:1], quick())


def test_progress_is_logged_ten_times_and_at_the_end():
    messages = []
    train_demo_image_encoder(FRAMES[:2], quick(steps=12, batch_size=2), log=messages.append)
    assert [m.split(":")[0] for m in messages] == [f"step {k}/12" for k in range(1, 13)]
    messages.clear()
    train_demo_image_encoder(FRAMES[:2], quick(steps=21, batch_size=2), log=messages.append)
    assert [m.split(":")[0] for m in messages] == [f"step {k}/21" for k in (*range(2, 21, 2), 21)]


# -- files ------------------------------------------------------------------------------------


def test_checkpoint_loads_with_the_brivl_loader_and_embeds_the_same(tmp_path):
    trained = train_demo_image_encoder(FRAMES, quick(steps=2))
    save_brivl_checkpoint(trained.model, tmp_path / "enc.pth")
    loaded = build_encoder("demo", weights=tmp_path / "enc.pth")
    brivl = build_encoder("brivl", weights=tmp_path / "enc.pth", config=TINY_BRIVL)
    images = [Image.new("RGB", (40, 40), (200, 30, 10)), Image.new("RGB", (40, 40), (0, 0, 99))]
    with torch.no_grad():
        want = embed_views(trained.model, torch.stack([picture("red"), picture("blue")]))
    pixels = torch.stack([picture("red"), picture("blue")])
    assert torch.allclose(loaded.encode_images(pixels), want, atol=1e-5)
    assert torch.allclose(loaded.encode_images(images), brivl.encode_images(images), atol=1e-6)
    assert loaded.name == "demo-trained-tiny-brivl"
    assert loaded.fingerprint != brivl.fingerprint != build_encoder("tiny").fingerprint


def test_the_text_side_is_the_tiny_encoders(tmp_path):
    from wavbrivl.demo.tiny_text import save_tiny_text_folder

    text_folder = save_tiny_text_folder(tmp_path / "text")
    save_brivl_checkpoint(BriVLImageEncoder(TINY_BRIVL), tmp_path / "enc.pth")
    demo = build_encoder("demo", weights=tmp_path / "enc.pth", seed=3, text_folder=text_folder)
    tiny = build_encoder("tiny", seed=3, text_folder=text_folder)
    other = build_encoder("demo", weights=tmp_path / "enc.pth", seed=4, text_folder=text_folder)
    texts = ["a red field", "a checkerboard"]
    assert torch.equal(demo.encode_text(texts), tiny.encode_text(texts))
    assert demo.fingerprint != other.fingerprint  # the text seed is part of the identity


def test_loss_log_is_a_tsv_with_a_header(tmp_path):
    write_loss_log([1.5, 0.25], tmp_path / "log.tsv")
    assert (tmp_path / "log.tsv").read_text() == "step\tinfo_nce\n1\t1.5\n2\t0.25\n"


def test_run_trains_on_the_clips_asked_for_and_writes_both_files(tmp_path):
    colours = [(255, 0, 0), (0, 0, 255), (0, 255, 0)]
    shard = write_shard(
        tmp_path / "000.parquet",
        [
            {
                "clip_id": f"c{i}",
                "status": "ok",
                "reason": "",
                "frame": jpeg(Image.new("RGB", (24, 24), rgb)),
            }
            for i, rgb in enumerate(colours)
        ],
    )
    messages = []
    out = tmp_path / "out"
    trained = run_demo_image_encoder(
        media_paths=[shard],
        clip_ids=["c0", "c2"],
        ckpt_path=out / "enc.pth",
        log_path=out / "log.tsv",
        block={**QUICK, "steps": 2},
        log=messages.append,
    )
    assert messages[0] == "training the demo image encoder on 2 frames, 2 steps"
    assert len((out / "log.tsv").read_text().splitlines()) == 3
    state = torch.load(out / "enc.pth", weights_only=True)["learnable"]
    for name, want in trained.model.state_dict().items():
        assert torch.equal(state[f"imgencoder.{name}"], want), name


def test_run_refuses_an_unknown_setting_before_reading(tmp_path):
    with pytest.raises(ValueError, match="unknown demo.image_encoder config key"):
        run_demo_image_encoder(
            media_paths=[tmp_path / "absent.parquet"],
            clip_ids=[],
            ckpt_path=tmp_path / "enc.pth",
            log_path=tmp_path / "log.tsv",
            block={"step": 2},
            log=print,
        )


# -- the workflow's view ----------------------------------------------------------------------------


def test_the_config_reads_the_demo_encoder_from_its_fixed_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the path is relative to the workflow's directory
    (tmp_path / DEMO_ENCODER_PATH).parent.mkdir(parents=True)
    save_brivl_checkpoint(BriVLImageEncoder(TINY_BRIVL), tmp_path / DEMO_ENCODER_PATH)
    cfg = {"encoder": "demo", "seed": 0, "box_mode": "whole", "device": "cpu"}
    encoder = encoder_from_config(cfg)
    assert encoder.name == "demo-trained-tiny-brivl"
    assert (
        encoder.metadata()["identity"]
        == build_encoder("demo", weights=DEMO_ENCODER_PATH).metadata()["identity"]
    )
