"""Encoders by name: interface, determinism, fingerprints, preprocessing and augmentation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from wavbrivl.encoders.brivl import TINY_BRIVL
from wavbrivl.encoders.preprocess import (
    GRAYSCALE_P,
    JITTER_P,
    BriVLPreprocess,
    brivl_train_augment,
    sample_augment_params,
    view_seed,
)
from wavbrivl.encoders.registry import ENCODERS, build_brivl, build_encoder, build_tiny
from wavbrivl.hashing import sha256_of

PARITY = Path(__file__).parent / "fixtures" / "brivl_parity_tiny.pt"


def _pictures() -> list[Image.Image]:
    """Different sizes and aspect ratios, plainly different content."""
    rng = np.random.default_rng(0)
    stripes = np.zeros((90, 160, 3), np.uint8)
    stripes[::10] = 255
    return [
        Image.new("RGB", (200, 120), (230, 20, 20)),
        Image.new("RGB", (64, 64), (20, 20, 230)),
        Image.fromarray(stripes),
        Image.fromarray((rng.random((300, 100, 3)) * 255).astype(np.uint8)),
    ]


@pytest.fixture(scope="module")
def tiny():
    return build_encoder("tiny", seed=0)


def test_tiny_encoder_interface_and_unit_outputs(tiny):
    assert "random" in tiny.name and "seed=0" in tiny.name
    assert tiny.dim == TINY_BRIVL.out_dim and tiny.device == torch.device("cpu")
    assert tiny.preprocess.img_size == TINY_BRIVL.img_size
    out = tiny.encode_images(_pictures())
    assert out.shape == (4, tiny.dim) and out.dtype == torch.float32
    torch.testing.assert_close(out.norm(dim=1), torch.ones(4))
    # a random head must not send every picture to the same point
    cos = out @ out.T
    assert cos[~torch.eye(4, dtype=torch.bool)].max() < 0.99


def test_numpy_and_pil_inputs_agree(tiny):
    pics = _pictures()
    from_pil = tiny.encode_images(pics)
    from_numpy = tiny.encode_images([np.asarray(p) for p in pics])
    torch.testing.assert_close(from_pil, from_numpy)


def test_tensor_input_matches_pil_and_keeps_gradients_to_pixels_only(tiny):
    pic = Image.new("RGB", (96, 96), (10, 200, 90))
    pixels = torch.from_numpy(np.asarray(pic).copy()).permute(2, 0, 1)[None].float() / 255
    pixels.requires_grad_(True)
    out = tiny.encode_images(pixels)
    torch.testing.assert_close(out.detach(), tiny.encode_images([pic]), atol=1e-5, rtol=0)
    out.sum().backward()
    assert pixels.grad is not None and pixels.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny.model.parameters())


def test_same_seed_same_model_other_seed_other_model():
    a, b, c = build_tiny(seed=3), build_tiny(seed=3), build_tiny(seed=4)
    pics = _pictures()
    assert torch.equal(a.encode_images(pics), b.encode_images(pics))
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert not torch.allclose(a.encode_images(pics), c.encode_images(pics))


def test_build_tiny_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_tiny(seed=9)
    assert torch.equal(torch.rand(3), expected)


def test_box_mode_changes_embeddings_and_fingerprint():
    whole, grid = build_tiny(box_mode="whole"), build_tiny(box_mode="grid")
    assert whole.fingerprint != grid.fingerprint
    pics = _pictures()
    assert (whole.encode_images(pics) - grid.encode_images(pics)).abs().max() > 1e-3


def test_unknown_names_list_the_known_ones():
    known = r"\['brivl', 'clip', 'demo', 'open_clip', 'tiny'\]"
    with pytest.raises(ValueError, match=rf"unknown encoder 'siglip'; known: {known}"):
        build_encoder("siglip")
    with pytest.raises(ValueError, match="unknown box mode 'boxes'"):
        build_tiny(box_mode="boxes")
    assert set(ENCODERS) == {"brivl", "tiny", "demo", "clip", "open_clip"}


def test_build_brivl_loads_official_format_and_fingerprints_the_file(tmp_path):
    """build_brivl with the toy config and the parity checkpoint (the real one is B5)."""
    enc = build_brivl(weights=PARITY, box_mode="grid", config=TINY_BRIVL)
    meta = enc.metadata()
    identity = json.loads(meta["identity"])
    assert identity["weights_sha256"] == sha256_of(PARITY)
    assert identity["preprocess"]["img_size"] == 128 and identity["box_mode"] == "grid"
    assert meta["fingerprint"] == enc.fingerprint and meta["box_mode"] == "grid"
    assert meta["image_size"] == "128" and meta["dim"] == "128"
    # same weights under another file name: same fingerprint; other weights: another one
    copy = tmp_path / "copy.pth"
    shutil.copy(PARITY, copy)
    assert (
        build_brivl(weights=copy, box_mode="grid", config=TINY_BRIVL).fingerprint == enc.fingerprint
    )
    payload = torch.load(PARITY, weights_only=True)
    payload["learnable"]["imgencoder.learnable.imgFC.fc2.bias"] += 1.0
    torch.save(payload, tmp_path / "other.pth")
    other = build_brivl(weights=tmp_path / "other.pth", box_mode="grid", config=TINY_BRIVL)
    assert other.fingerprint != enc.fingerprint


# --- preprocessing ---------------------------------------------------------------------


def test_preprocess_matches_the_released_transform_without_antialias():
    """ToTensor -> tensor Resize((S, S)) -> Normalize, as torchvision 0.9 computed it."""
    pic = _pictures()[3]  # 100 x 300: aspect ratio is not kept
    reference = transforms.Compose(
        [
            transforms.ToTensor(),
            transforms.Resize((128, 128), antialias=False),
            transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ]
    )(pic)
    ours = BriVLPreprocess(img_size=128)(pic)
    assert ours.shape == (3, 128, 128)
    torch.testing.assert_close(ours, reference, atol=1e-6, rtol=0)


def test_preprocess_rejects_unusable_inputs():
    prep = BriVLPreprocess(img_size=64)
    with pytest.raises(ValueError, match="uint8 \\(H, W, 3\\)"):
        prep(np.zeros((8, 8), np.uint8))
    with pytest.raises(TypeError, match="PIL image or a numpy array"):
        prep("frame.jpg")
    with pytest.raises(ValueError, match="2 aug_seeds for 1 images"):
        prep.batch([Image.new("RGB", (8, 8))], aug_seeds=[1, 2])


def test_preprocess_settings_name_everything_that_changes_pixels():
    settings = BriVLPreprocess(img_size=456).settings()
    assert settings["img_size"] == 456 and settings["interpolation"] == "bilinear"
    assert settings["antialias"] is False and settings["keep_aspect"] is False
    assert settings["mean"] == [0.485, 0.456, 0.406] and settings["std"] == [0.229, 0.224, 0.225]


# --- training augmentation -------------------------------------------------------------


def test_augmentation_is_a_function_of_the_seed():
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(brivl_train_augment(11)(image), brivl_train_augment(11)(image))
    views = [brivl_train_augment(s)(image) for s in range(8)]
    assert len({v.sum().item() for v in views}) > 4


def test_augmentation_probabilities_and_ranges_follow_brivl():
    draws = [sample_augment_params(s) for s in range(4000)]
    assert abs(np.mean([d.jitter for d in draws]) - JITTER_P) < 0.03
    assert abs(np.mean([d.grayscale for d in draws]) - GRAYSCALE_P) < 0.03
    assert all(0.6 <= d.brightness <= 1.4 and 0.6 <= d.saturation <= 1.4 for d in draws)
    assert all(0.6 <= d.contrast <= 1.4 and -0.1 <= d.hue <= 0.1 for d in draws)
    assert {d.order for d in draws[:200]} > {(0, 1, 2, 3)}  # the order is shuffled too


def test_grayscale_draw_gives_equal_channels():
    seed = next(s for s in range(1000) if sample_augment_params(s).grayscale)
    out = brivl_train_augment(seed)(torch.rand(3, 16, 16))
    assert torch.allclose(out[0], out[1]) and torch.allclose(out[1], out[2])


def test_augmented_views_differ_from_clean_but_repeat(tiny):
    pics = _pictures()
    seeds = [view_seed(f"clip{i}", view=1) for i in range(len(pics))]
    clean = tiny.encode_images(pics)
    first, again = tiny.encode_images(pics, seeds), tiny.encode_images(pics, seeds)
    assert torch.equal(first, again)
    assert (first - clean).abs().max() > 1e-4


def test_view_seed_is_stable_and_distinct():
    assert view_seed("abc_1000", 0) == view_seed("abc_1000", 0)
    seeds = {view_seed(c, v, b) for c in ("a_0", "b_0") for v in range(3) for b in (0, 1)}
    assert len(seeds) == 12 and all(0 <= s < 2**63 for s in seeds)
