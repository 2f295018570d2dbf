"""The BriVL image encoder: architecture identical to the public code, masking, freezing,
RoI geometry, input checks, and the detector-free box layouts."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from wavbrivl.encoders.boxes import BOX_MODES, boxes_for_batch, grid_boxes, whole_image_boxes
from wavbrivl.encoders.brivl import (
    BRIVL_1_0,
    TINY_BRIVL,
    BriVLImageConfig,
    BriVLImageEncoder,
    roi_grid_sample,
)

FIXTURES = Path(__file__).parent / "fixtures"
S = TINY_BRIVL.img_size


@pytest.fixture(scope="module")
def tiny() -> BriVLImageEncoder:
    torch.manual_seed(0)
    return BriVLImageEncoder(TINY_BRIVL)


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, S, S, generator=torch.Generator().manual_seed(seed))


def test_b5_state_dict_matches_public_brivl_image_encoder():
    """Key names, order and shapes equal the public ImgLearnableEncoder (frozen in the
    fixture from the public code), so the official checkpoint loads strictly."""
    public = json.loads((FIXTURES / "brivl_b5_state_keys.json").read_text())["state_keys"]
    with torch.device("meta"):  # full size without allocating or initialising weights
        model = BriVLImageEncoder(BRIVL_1_0)
    ours = [[key, list(t.shape)] for key, t in model.state_dict().items()]
    assert len(ours) == len(public) == 908
    assert ours == public


def _tf_same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding of one axis: output ceil(size / stride), the odd pixel of
    padding at the end (bottom/right)."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def tf_backbone_problems(backbone: nn.Module, size: int = 16) -> list[str]:
    """What differs from a TensorFlow-ported EfficientNet (timm ``tf_*``): BatchNorm eps 1e-3,
    and every strided conv padding TF-"SAME" (checked numerically on random weights and a
    ``size`` x ``size`` input; the modules may live on the meta device)."""
    problems = []
    eps = sorted({m.eps for m in backbone.modules() if isinstance(m, nn.BatchNorm2d)})
    if eps != [1e-3]:
        problems.append(f"BatchNorm eps {eps}, TF's is 1e-3")
    gen = torch.Generator().manual_seed(0)
    for name, conv in backbone.named_modules():
        if not isinstance(conv, nn.Conv2d) or conv.stride == (1, 1):
            continue
        conv = copy.deepcopy(conv).to_empty(device="cpu")  # the caller's module stays as is
        with torch.no_grad():
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen))
            if conv.bias is not None:
                conv.bias.zero_()
            x = torch.randn(1, conv.in_channels, size, size, generator=gen)
            (top, bottom), (left, right) = (
                _tf_same_pad(size, k, s) for k, s in zip(conv.kernel_size, conv.stride, strict=True)
            )
            expected = F.conv2d(
                F.pad(x, (left, right, top, bottom)),
                conv.weight,
                conv.bias,
                conv.stride,
                groups=conv.groups,
            )
            out = conv(x)
        if out.shape != expected.shape or not torch.allclose(out, expected, atol=1e-5):
            problems.append(f"{name} (k={conv.kernel_size}, s={conv.stride}): not TF-SAME padding")
    return problems


def test_paper_config_builds_tf_efficientnet_b5():
    """BriVL-1.0's backbone is TF-ported (tf_efficientnet_b5_ns): "SAME" padding, asymmetric
    for the strided convs, and BatchNorm eps 1e-3. The released weights assume both."""
    with torch.device("meta"):
        model = BriVLImageEncoder(BRIVL_1_0)
    assert BRIVL_1_0.backbone == "tf_efficientnet_b5"
    assert tf_backbone_problems(model.backbone) == []


def test_plain_efficientnet_b5_has_the_same_keys_but_fails_the_pin():
    """timm's PyTorch-style efficientnet_b5 has the very same state-dict keys and shapes (so
    the checkpoint would load strictly into it) but symmetric padding and eps 1e-5."""
    public = json.loads((FIXTURES / "brivl_b5_state_keys.json").read_text())["state_keys"]
    with torch.device("meta"):
        plain = BriVLImageEncoder(BriVLImageConfig(backbone="efficientnet_b5"))
    assert [[key, list(t.shape)] for key, t in plain.state_dict().items()] == public
    problems = tf_backbone_problems(plain.backbone)
    assert problems[0] == "BatchNorm eps [1e-05], TF's is 1e-3"
    assert len(problems) == 1 + 5  # eps, and the stem and four strided depthwise convs
    assert problems[1].startswith("conv_stem (k=(3, 3), s=(2, 2)): not TF-SAME")


def test_embeddings_are_unit_vectors_of_out_dim(tiny):
    boxes, n = boxes_for_batch("grid", 3, S, TINY_BRIVL.max_boxes)
    with torch.no_grad():
        out = tiny.encode_image(_images(3), boxes, n)
    assert out.shape == (3, TINY_BRIVL.out_dim)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3))


def test_padding_boxes_are_masked_out(tiny):
    """An image with one valid box embeds the same alone (N=1) and batched next to an image
    with 37 valid boxes, whatever sits in its padding rows."""
    images = _images(2)
    grid, n_grid = grid_boxes(S, 37)
    whole, _ = whole_image_boxes(S, 37)
    garbage = whole.clone()
    garbage[1:] = torch.tensor([5.0, 9.0, 60.0, 100.0])  # padding rows that are not zeros
    with torch.no_grad():
        alone = tiny.encode_image(images[1:], whole[None, :1], torch.tensor([1]))
        batched = tiny.encode_image(images, torch.stack([grid, garbage]), torch.tensor([n_grid, 1]))
    torch.testing.assert_close(batched[1:], alone, atol=1e-6, rtol=0)


def test_boxes_change_the_embedding(tiny):
    images = _images(1)
    left = torch.tensor([[[0.0, 0.0, S / 2, S]]])
    right = torch.tensor([[[S / 2, 0.0, S, S]]])
    with torch.no_grad():
        a = tiny.encode_image(images, left, torch.tensor([1]))
        b = tiny.encode_image(images, right, torch.tensor([1]))
    assert (a - b).abs().max() > 1e-3


def test_frozen_by_default_and_stays_in_eval_under_parent_train():
    torch.manual_seed(0)
    enc = BriVLImageEncoder(TINY_BRIVL)
    parent = nn.ModuleDict({"image": enc, "head": nn.Linear(2, 2)})
    parent.train()
    assert not enc.training and not any(m.training for m in enc.modules())
    assert not any(p.requires_grad for p in enc.parameters())
    assert parent["head"].training
    boxes, n = boxes_for_batch("grid", 2, S, 37)
    x = _images(2)
    with torch.no_grad():
        first, second = enc.encode_image(x, boxes, n), enc.encode_image(x, boxes, n)
    assert torch.equal(first, second)  # no dropout, no BatchNorm statistics update


def test_unfrozen_encoder_in_train_mode_applies_dropout():
    """The counterpart of the test above: the same call does vary when training is allowed."""
    torch.manual_seed(0)
    enc = BriVLImageEncoder(TINY_BRIVL, frozen=False).train()
    assert all(p.requires_grad for p in enc.parameters())
    boxes, n = boxes_for_batch("grid", 2, S, 37)
    x = _images(2)
    with torch.no_grad():
        first, second = enc.encode_image(x, boxes, n), enc.encode_image(x, boxes, n)
    assert not torch.equal(first, second)


def test_roi_grid_sample_follows_brivl_box_convention():
    """Sample points of a box, from BriVL's mapping: pixels -> feature cells by one stride,
    grid centres (2k+1)/g - 1 scaled by the box half-extent over (size - 1), read back with
    align_corners=False. On a ramp map the sampled value is the sample's coordinate."""
    h = w = 8
    img_size, g = 64, 4
    cols = torch.arange(w, dtype=torch.float32).expand(h, w)
    rows = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w)
    fmap = torch.stack([cols, rows])[None]  # (1, 2, h, w): channel 0 = x, channel 1 = y
    box = torch.tensor([[[16.0, 8.0, 48.0, 40.0]]])  # pixels; inside the map
    out = roi_grid_sample(fmap, box, img_size, g)  # (1, 1, 2, g, g)

    def expected(lo_px: float, hi_px: float, size: int) -> torch.Tensor:
        lo, hi = lo_px / (img_size / h), hi_px / (img_size / h)
        centres = (2 * torch.arange(g) + 1) / g - 1
        normed = centres * (hi - lo) / (size - 1) + (lo + hi - size + 1) / (size - 1)
        return ((normed + 1) * size - 1) / 2

    torch.testing.assert_close(
        out[0, 0, 0], expected(16, 48, w).expand(g, g)
    )  # x varies along columns
    torch.testing.assert_close(out[0, 0, 1], expected(8, 40, h)[:, None].expand(g, g))
    # A box on the left samples smaller x than one on the right (interior boxes: the
    # convention shifts samples by about half a cell, so edge boxes partly read zeros).
    lr = roi_grid_sample(fmap, torch.tensor([[[8.0, 8, 24, 40], [32.0, 8, 48, 40]]]), img_size, g)
    assert lr[0, 0, 0].max() < lr[0, 1, 0].min()


@pytest.mark.parametrize(
    ("images", "boxes", "n_boxes", "message"),
    [
        (torch.zeros(1, 3, 64, 64), torch.zeros(1, 1, 4), torch.tensor([1]), "images must be"),
        (torch.zeros(1, 3, S, S), torch.zeros(2, 1, 4), torch.tensor([1]), "boxes must be"),
        (torch.zeros(1, 3, S, S), torch.zeros(1, 38, 4), torch.tensor([1]), "allowed 1..37"),
        (torch.zeros(1, 3, S, S), torch.zeros(1, 3, 4), torch.tensor([0]), "n_boxes must be in"),
        (torch.zeros(1, 3, S, S), torch.zeros(1, 3, 4), torch.tensor([4]), "n_boxes must be in"),
        (torch.zeros(1, 3, S, S), torch.zeros(1, 3, 4), torch.tensor([1.0]), "integers"),
    ],
)
def test_bad_inputs_raise_clear_errors(tiny, images, boxes, n_boxes, message):
    with pytest.raises(ValueError, match=message):
        tiny.encode_image(images, boxes, n_boxes)


def test_backbone_width_must_equal_feature_dim():
    with pytest.raises(ValueError, match="128 channels but feature_dim is 64"):
        BriVLImageEncoder(BriVLImageConfig(**{**TINY_BRIVL.to_dict(), "feature_dim": 64}))


def test_config_round_trips_and_rejects_unknown_keys():
    assert BriVLImageConfig.from_dict(TINY_BRIVL.to_dict()) == TINY_BRIVL
    with pytest.raises(ValueError, match=r"unknown BriVLImageConfig key\(s\) \['heads'\]"):
        BriVLImageConfig.from_dict({"heads": 4})


# --- detector-free box layouts ---------------------------------------------------------


def test_whole_image_boxes_is_one_valid_box_then_zeros():
    boxes, n = whole_image_boxes(456, 37)
    assert n == 1 and boxes.shape == (37, 4) and boxes.dtype == torch.float32
    assert boxes[0].tolist() == [0.0, 0.0, 456.0, 456.0]
    assert not boxes[1:].any()


def test_grid_boxes_tile_the_image_then_add_the_whole_image():
    boxes, n = grid_boxes(456, 37, grid=6)
    assert n == 37 and boxes.shape == (37, 4)
    cells = boxes[:36]
    widths, heights = cells[:, 2] - cells[:, 0], cells[:, 3] - cells[:, 1]
    torch.testing.assert_close(widths, torch.full((36,), 76.0))
    torch.testing.assert_close(heights, torch.full((36,), 76.0))
    assert len({tuple(c) for c in cells.tolist()}) == 36  # no cell twice
    # x is the outer loop (public order): the first six cells share x1 = 0.
    assert cells[:6, 0].eq(0).all() and cells[:6, 1].tolist() == [0, 76, 152, 228, 304, 380]
    assert boxes[36].tolist() == [0.0, 0.0, 456.0, 456.0]


def test_grid_boxes_pad_or_refuse_by_max_boxes():
    boxes, n = grid_boxes(128, 37, grid=2)
    assert n == 5 and not boxes[5:].any()
    with pytest.raises(ValueError, match="do not fit"):
        grid_boxes(128, 37, grid=7)


def test_box_modes_registry_and_batches():
    assert set(BOX_MODES) == {"whole", "grid"}
    boxes, n = boxes_for_batch("grid", 3, 128, 37)
    assert boxes.shape == (3, 37, 4) and n.tolist() == [37, 37, 37]
    with pytest.raises(ValueError, match="unknown box mode 'grids'"):
        boxes_for_batch("grids", 1, 128, 37)
