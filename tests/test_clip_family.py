"""What the CLIP-family encoders share (wavbrivl.encoders.clip_family), without any library
model: the tensor-path preprocessing against hand-computed sizes, offsets and pixels, and the
encoder interface on a fake two-layer model."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from wavbrivl.encoders.clip_family import (
    ClipFamilyEncoder,
    ClipPreprocess,
    LocalWeightsError,
    as_rgb_image,
    augment,
    fingerprint_of,
    freeze,
    hub_name_error,
    identity_json,
    without_volatile,
)
from wavbrivl.encoders.preprocess import brivl_train_augment

MEAN = (0.5, 0.25, 0.125)
STD = (0.5, 0.25, 2.0)


def _pre(**kw) -> ClipPreprocess:
    return ClipPreprocess(**{"size": 32, "crop": 32, "mean": MEAN, "std": STD, **kw})


# --- ClipPreprocess ---------------------------------------------------------------------------


def test_settings_and_input_side():
    pre = _pre(size=40, crop=36, resize_mode="squash", interpolation="bilinear")
    assert pre.img_size == 36
    assert pre.settings() == {
        "size": 40,
        "crop": 36,
        "mean": [0.5, 0.25, 0.125],
        "std": [0.5, 0.25, 2.0],
        "resize_mode": "squash",
        "interpolation": "bilinear",
        "crop_offset": "floor",
    }


def test_unsupported_settings_are_refused():
    with pytest.raises(ValueError, match=r"resize mode 'longest'; supported: \('shortest'"):
        _pre(resize_mode="longest")
    with pytest.raises(ValueError, match=r"crop offset 'ceil'; supported: \('floor', 'round'\)"):
        _pre(crop_offset="ceil")
    with pytest.raises(ValueError, match="crop 33 is larger than the resized side 32"):
        _pre(crop=33)
    _pre(crop=32)  # equal is fine


@pytest.mark.parametrize(
    ("hw", "shortest", "squash"),
    [
        ((45, 75), (32, 53), (32, 32)),  # 32 * 75 / 45 = 53.33 -> 53
        ((70, 41), (54, 32), (32, 32)),  # 32 * 70 / 41 = 54.63 -> 54 (truncated, not rounded)
        ((64, 64), (32, 32), (32, 32)),
        ((10, 10), (32, 32), (32, 32)),  # upsampling
    ],
)
def test_resized_shape(hw, shortest, squash):
    assert _pre().resized_shape(*hw) == shortest
    assert _pre(resize_mode="squash").resized_shape(*hw) == squash


@pytest.mark.parametrize(
    ("length", "floor", "round_"),
    [(55, 11, 12), (53, 10, 10), (32, 0, 0), (34, 1, 1), (57, 12, 12), (59, 13, 14)],
)
def test_crop_start(length, floor, round_):
    # (length - 32) / 2: 11.5, 10.5, 0, 1, 12.5, 13.5; Python's round goes to even, as
    # torchvision's int(round(x)) does
    assert _pre(crop_offset="floor").crop_start(length) == floor
    assert _pre(crop_offset="round").crop_start(length) == round_


def test_from_tensor_crops_the_centre_and_normalises():
    # 32 x 55: already the target size, so the resize keeps every pixel; the crop takes
    # columns 11..42 (floor) or 12..43 (round)
    x = torch.rand(2, 3, 32, 55, generator=torch.Generator().manual_seed(0))
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    for offset, start in (("floor", 11), ("round", 12)):
        out = _pre(crop_offset=offset).from_tensor(x)
        expected = (x[:, :, :, start : start + 32] - mean) / std
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


def test_from_tensor_resizes_with_antialiasing_and_clips_overshoot():
    # a hard edge downsampled by 2: bicubic overshoots; the pixels stay in [0, 1]
    x = torch.zeros(1, 3, 64, 64)
    x[:, :, :, 32:] = 1.0
    pre = _pre(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    out = pre.from_tensor(x)
    assert out.shape == (1, 3, 32, 32)
    assert out.min() == 0.0 and out.max() == 1.0
    raw = F.interpolate(x, size=(32, 32), mode="bicubic", align_corners=False, antialias=True)
    assert raw.min() < 0 and raw.max() > 1  # what the clamp removes
    torch.testing.assert_close(out, raw.clamp(0, 1))
    # antialiased: a one-pixel checkerboard averages to grey, not to a sample of it
    checker = ((torch.arange(64)[:, None] + torch.arange(64)[None, :]) % 2).float()
    grey = pre.from_tensor(checker.expand(1, 3, 64, 64))
    assert (grey[..., 4:-4, 4:-4] - 0.5).abs().max() < 0.02
    bilinear = _pre(mean=(0.0,) * 3, std=(1.0,) * 3, interpolation="bilinear").from_tensor(x)
    assert (bilinear - out).abs().max() > 1e-3  # the interpolation setting is used


def test_from_tensor_portrait_and_squash():
    x = torch.rand(1, 3, 90, 45)  # portrait: short side 45 -> 32, long 64; crop rows 16..47
    pre = _pre(mean=(0.0,) * 3, std=(1.0,) * 3)
    resized = F.interpolate(x, size=(64, 32), mode="bicubic", align_corners=False, antialias=True)
    torch.testing.assert_close(pre.from_tensor(x), resized.clamp(0, 1)[:, :, 16:48])
    squash = _pre(mean=(0.0,) * 3, std=(1.0,) * 3, resize_mode="squash")
    whole = F.interpolate(x, size=(32, 32), mode="bicubic", align_corners=False, antialias=True)
    torch.testing.assert_close(squash.from_tensor(x), whole.clamp(0, 1))


def test_from_tensor_shape_errors():
    for bad in (torch.zeros(3, 32, 32), torch.zeros(1, 4, 32, 32)):
        with pytest.raises(ValueError, match=r"images must be \(B, 3, H, W\)"):
            _pre().from_tensor(bad)


def test_normalize_by_hand_and_back():
    x = torch.tensor([1.0, 0.5, 0.0]).view(1, 3, 1, 1)
    # (1 - .5) / .5 = 1; (.5 - .25) / .25 = 1; (0 - .125) / 2 = -0.0625
    expected = torch.tensor([1.0, 1.0, -0.0625]).view(1, 3, 1, 1)
    torch.testing.assert_close(_pre().normalize(x), expected)
    torch.testing.assert_close(_pre().denormalize(expected), x)
    # the statistics follow the pixels' dtype and device (half stays half; "meta" stays there)
    assert _pre().normalize(x.half()).dtype == torch.float16
    assert _pre().denormalize(x.half()).dtype == torch.float16
    assert _pre().normalize(x.to("meta")).device.type == "meta"


def test_from_tensor_applies_seeded_augmentation_before_normalising():
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    pre = _pre()
    out = pre.from_tensor(x, aug_seeds=[3, 4])
    expected = torch.stack([brivl_train_augment(3)(x[0]), brivl_train_augment(4)(x[1])])
    torch.testing.assert_close(out, pre.normalize(expected), rtol=0, atol=1e-5)


# --- helpers ----------------------------------------------------------------------------------


def test_augment():
    x = torch.rand(2, 3, 8, 8)
    assert augment(x, None) is x
    with pytest.raises(ValueError, match="3 aug_seeds for 2 images"):
        augment(x, [1, 2, 3])
    torch.testing.assert_close(augment(x, [5, 6])[1], brivl_train_augment(6)(x[1]))


def test_without_volatile_at_every_depth():
    config = {
        "_name_or_path": "/some/folder",
        "transformers_version": "5.0",
        "a": 1,
        "nested": {
            "_commit_hash": "x",
            "attn_implementation": "sdpa",
            "_attn_implementation_autoset": True,
            "_attn_implementation_internal": "eager",
            "b": [{"_name_or_path": 1}],
        },
        "pair": (1, 2),
    }
    assert without_volatile(config) == {"a": 1, "nested": {"b": [{}]}, "pair": [1, 2]}


def test_fingerprint_of():
    identity = {"b": 2, "a": [1, "x"]}
    by_hand = hashlib.sha256(b'{"a": [1, "x"], "b": 2}').hexdigest()
    assert fingerprint_of(identity) == by_hand
    assert fingerprint_of({"a": [1, "x"], "b": 2}) == by_hand  # key order does not matter
    assert fingerprint_of({"a": (1, 2)}) == fingerprint_of({"a": [1, 2]})
    assert (
        fingerprint_of({"p": torch.float32})
        == hashlib.sha256(b'{"p": "torch.float32"}').hexdigest()
    )


def test_as_rgb_image():
    grey = Image.new("L", (4, 3), 7)
    rgb = as_rgb_image(grey)
    assert rgb.mode == "RGB" and np.asarray(rgb)[0, 0].tolist() == [7, 7, 7]
    array = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    assert np.array_equal(np.asarray(as_rgb_image(array)), array)
    for bad in (array.astype(np.float32), array[:, :, :2], array[:, :, 0]):
        with pytest.raises(ValueError, match="numpy images must be uint8"):
            as_rgb_image(bad)
    with pytest.raises(TypeError, match="expected a PIL image or a numpy array, got list"):
        as_rgb_image([1, 2])


def test_hub_name_error():
    err = hub_name_error("embed.weights", "org/model-x")
    assert isinstance(err, LocalWeightsError) and isinstance(err, FileNotFoundError)
    assert str(err).startswith("embed.weights: org/model-x: a Hugging Face hub name")
    assert "--local-dir weights/model-x" in str(err) and str(err).endswith("(weights/README.md)")


def test_freeze():
    layer = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5))
    assert freeze(layer) is layer
    assert not layer.training and not any(p.requires_grad for p in layer.parameters())


# --- the encoder interface on a fake model -----------------------------------------------------


class FakeEncoder(ClipFamilyEncoder):
    """Image features: the mean colour through a 3x4 matrix; text: the length and vowels."""

    family = "fake"

    def __init__(self, device="cpu"):
        self.model = torch.nn.Linear(3, 4, bias=False)
        with torch.no_grad():
            self.model.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 2, 0], [0, 0, 3], [1, 1, 1]]))
        freeze(self.model)
        pre = ClipPreprocess(size=8, crop=8, mean=(0.5,) * 3, std=(0.5,) * 3)
        super().__init__(name="fake", dim=4, preprocess=pre, identity={"w": 1}, device=device)

    def _library_pixels(self, images):
        arrays = [np.asarray(img.resize((8, 8), Image.NEAREST)) for img in images]
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255
        return self.preprocess.normalize(x)

    def _image_features(self, pixels):
        return self.model(pixels.mean(dim=(2, 3)))  # (B, 3) -> (B, 4)

    def _text_features(self, texts):
        return torch.tensor([[len(t), sum(c in "aeiou" for c in t), 1.0, 0.0] for t in texts])


def test_list_path_uses_the_library_pixels_without_gradients():
    enc = FakeEncoder()
    images = [Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("L", (8, 8), 255)]
    out = enc.encode_images(images)
    # red: normalised (1, -1, -1) -> (1, -2, -3, -1) / sqrt(15); white: (1, 1, 1) -> (1, 2, 3, 3)
    expected = torch.tensor([[1.0, -2, -3, -1], [1, 2, 3, 3]])
    expected = expected / expected.norm(dim=1, keepdim=True)
    torch.testing.assert_close(out, expected)
    assert out.dtype == torch.float32 and not out.requires_grad
    with pytest.raises(ValueError, match="^no images to embed$"):
        enc.encode_images([])


def test_list_path_augments_between_denormalising_and_normalising():
    enc = FakeEncoder()
    image = Image.fromarray((np.random.default_rng(0).random((8, 8, 3)) * 255).astype(np.uint8))
    x = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float()[None] / 255
    jittered = brivl_train_augment(1)(x)
    plain = enc._image_features(enc.preprocess.normalize(jittered))
    out = enc.encode_images([image], aug_seeds=[1])
    torch.testing.assert_close(out, F.normalize(plain, dim=-1), rtol=0, atol=1e-5)
    assert (out - enc.encode_images([image])).abs().max() > 1e-3


def test_tensor_path_keeps_the_graph():
    enc = FakeEncoder()
    x = torch.full((1, 3, 8, 8), 0.75, requires_grad=True)
    out = enc.encode_images(x)
    # normalised 0.5 everywhere -> (0.5, 1, 1.5, 1.5) / norm
    torch.testing.assert_close(out[0], F.normalize(torch.tensor([0.5, 1, 1.5, 1.5]), dim=0))
    out[0, 0].backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    y = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    jittered = torch.stack([brivl_train_augment(1)(y[0]), brivl_train_augment(2)(y[1])])
    expected = F.normalize(enc._image_features(enc.preprocess.normalize(jittered)), dim=-1)
    torch.testing.assert_close(enc.encode_images(y, aug_seeds=[1, 2]), expected)


class OnDevice(FakeEncoder):
    """Runs on PyTorch's "meta" device (shapes only) and records where its pixels were."""

    def __init__(self):
        super().__init__(device="meta")
        self.seen = []

    def _image_features(self, pixels):
        self.seen.append(pixels.device.type)
        return pixels.mean(dim=(2, 3))

    def _text_features(self, texts):
        return torch.ones(len(texts), 4, device=self.device)


def test_pixels_are_moved_to_the_encoders_device():
    enc = OnDevice()
    assert enc.encode_images(torch.rand(1, 3, 8, 8)).device.type == "meta"
    assert enc.encode_images([Image.new("RGB", (8, 8))]).device.type == "meta"
    assert enc.seen == ["meta", "meta"]


def test_text_is_unit_rows_without_gradients():
    enc = FakeEncoder()
    out = enc.encode_text(("a dog", "owl"))
    expected = F.normalize(torch.tensor([[5.0, 2, 1, 0], [3, 1, 1, 0]]), dim=-1)
    torch.testing.assert_close(out, expected)
    assert out.dtype == torch.float32 and not out.requires_grad
    for bad in ([], "a dog"):
        with pytest.raises(ValueError, match="^encode_text takes a non-empty list of strings$"):
            enc.encode_text(bad)


def test_identity_fingerprint_and_metadata():
    enc = FakeEncoder()
    assert enc.device == torch.device("cpu")
    identity = {"family": "fake", "w": 1, "tensor_path": enc.preprocess.settings()}
    assert (
        enc.fingerprint == hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    )
    meta = enc.metadata()
    assert meta == {
        "encoder": "fake",
        "fingerprint": enc.fingerprint,
        "dim": "4",
        "image_size": "8",
        "box_mode": "none",
        "preprocessing": json.dumps(enc.preprocess.settings(), sort_keys=True),
        "identity": json.dumps(identity, sort_keys=True),
    }


def test_identity_json_writes_any_value():
    assert identity_json({"b": torch.float16, "a": (1,)}) == '{"a": [1], "b": "torch.float16"}'


def test_the_base_class_needs_the_three_model_steps():
    base = ClipFamilyEncoder(
        name="x", dim=1, preprocess=_pre(), identity={}, device=torch.device("cpu")
    )
    assert base.family == "clip-family"
    for call in (
        lambda: base._library_pixels([]),
        lambda: base._image_features(torch.zeros(1)),
        lambda: base._text_features(["a"]),
    ):
        with pytest.raises(NotImplementedError):
            call()
