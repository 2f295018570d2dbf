"""Loading the official BriVL checkpoint format: numerical parity with the public code,
strict key checks with readable errors, refusal of untrusted pickles, streamed hashing."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch

from wavbrivl.checkpoints import CheckpointError, CheckpointMismatchError, UntrustedCheckpointError
from wavbrivl.encoders.brivl import TINY_BRIVL, BriVLImageEncoder
from wavbrivl.encoders.checkpoint import load_brivl_image_state, load_brivl_image_weights
from wavbrivl.hashing import sha256_of

PARITY = Path(__file__).parent / "fixtures" / "brivl_parity_tiny.pt"
# Max |ours - public| on the fixture, CPU float32: 5.2e-8 (2 threads), 1.6e-7 (1 thread).
# About 6x that: a LayerNorm eps of 1e-6 instead of 1e-5 (2.3e-5 off) or a BatchNorm eps of
# 2e-5 instead of 1e-5 (2.3e-4 off) fails; the former bound 1e-4 let the first through.
PARITY_ATOL = 1e-6


class NotAllowlisted:
    """Any class outside torch's weights-only allowlist (pickling it needs our code)."""


@pytest.fixture(scope="module")
def parity() -> dict:
    return torch.load(PARITY, weights_only=True)


@pytest.fixture
def model() -> BriVLImageEncoder:
    torch.manual_seed(1)
    return BriVLImageEncoder(TINY_BRIVL)


def _save_learnable(path: Path, learnable: dict, **extra) -> Path:
    torch.save({"learnable": learnable, **extra}, path)
    return path


def test_reproduces_public_brivl_output_through_the_loader(parity, model):
    """The fixture holds random weights, inputs and the output of the public BriVL image
    encoder (run at toy size by tests/parity/make_brivl_fixture.py); our model loaded through
    the checkpoint loader agrees to float32 rounding."""
    assert parity["config"] == TINY_BRIVL.to_dict()
    load_brivl_image_weights(model, PARITY)
    with torch.no_grad():
        out = model.encode_image(parity["images"], parity["boxes"], parity["n_boxes"])
    assert parity["n_boxes"].tolist() == [37, 1, 4]  # grid, whole image, detector-like boxes
    torch.testing.assert_close(out, parity["expected"], atol=PARITY_ATOL, rtol=0)


def test_state_keeps_only_the_image_encoder_without_prefix(parity):
    state = load_brivl_image_state(PARITY)
    image_keys = [k for k in parity["learnable"] if k.startswith("imgencoder.")]
    assert len(state) == len(image_keys) < len(parity["learnable"])
    assert "backbone.conv_stem.weight" in state and "learnable.imgFC.fc2.bias" in state
    assert not any(k.startswith(("imgencoder", "textencoder")) for k in state)
    # imgencoder_mom.* must not leak in under a stripped name
    torch.testing.assert_close(
        state["learnable.imgFC.fc2.bias"],
        parity["learnable"]["imgencoder.learnable.imgFC.fc2.bias"],
    )


def test_mismatch_lists_missing_unexpected_and_shapes_and_leaves_model_alone(
    parity, model, tmp_path
):
    learnable = dict(parity["learnable"])
    del learnable["imgencoder.learnable.imgFC.fc1.weight"]
    learnable["imgencoder.learnable.extra.weight"] = torch.zeros(2)
    learnable["imgencoder.learnable.imgFC.fc2.bias"] = torch.zeros(7)
    path = _save_learnable(tmp_path / "bad.pth", learnable)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointMismatchError) as err:
        load_brivl_image_weights(model, path)
    message = str(err.value)
    assert str(path) in message
    assert "1 missing: ['learnable.imgFC.fc1.weight']" in message
    assert "1 unexpected: ['learnable.extra.weight']" in message
    assert "learnable.imgFC.fc2.bias: checkpoint (7,) vs model (128,)" in message
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_mismatch_message_lists_at_most_ten_keys(model, tmp_path):
    path = _save_learnable(tmp_path / "few.pth", {"imgencoder.only.weight": torch.zeros(1)})
    with pytest.raises(CheckpointMismatchError, match=r"missing: \[.*\] \(\+\d+ more\)") as err:
        load_brivl_image_weights(model, path)
    missing_part = str(err.value).split("missing: ")[1].split("]")[0]
    assert missing_part.count("'") == 20  # ten quoted names


def test_pickle_needing_code_is_refused_as_untrusted(tmp_path):
    path = _save_learnable(tmp_path / "evil.pth", {}, extra=NotAllowlisted())
    with pytest.raises(UntrustedCheckpointError, match="refused as untrusted") as err:
        load_brivl_image_state(path)
    assert str(path) in str(err.value) and "NotAllowlisted" in str(err.value)


class RunsACommand:
    """Unpickling this calls ``os.system("true")`` (harmless, and never reached here)."""

    def __reduce__(self):
        return (os.system, ("true",))


def test_a_pickle_that_would_run_a_command_is_refused_by_name_without_unsafe_advice(tmp_path):
    path = _save_learnable(tmp_path / "command.pth", {}, extra=RunsACommand())
    with pytest.raises(UntrustedCheckpointError, match="refused as untrusted") as err:
        load_brivl_image_state(path)
    message = str(err.value)
    assert str(path) in message and f"{os.system.__module__}.system" in message
    assert "weights_only" not in message and "trusted source" not in message


def test_file_without_learnable_names_its_keys(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"state_dict": {}, "epoch": 3}, path)
    with pytest.raises(CheckpointError, match=r"no 'learnable' entry.*\['epoch', 'state_dict'\]"):
        load_brivl_image_state(path)


def test_learnable_without_image_encoder_is_an_error(tmp_path):
    path = _save_learnable(tmp_path / "text_only.pth", {"textencoder.x": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="no 'imgencoder.\\*' entries"):
        load_brivl_image_state(path)


@pytest.mark.parametrize("content", [b"", b"definitely not a checkpoint", b"PK\x03\x04trunc"])
def test_unreadable_files_raise_checkpoint_error(tmp_path, content):
    path = tmp_path / "broken.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint") as err:
        load_brivl_image_state(path)
    assert not isinstance(err.value, UntrustedCheckpointError)
    assert str(path) in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint file not found"):
        load_brivl_image_state(tmp_path / "nope.pth")


def test_sha256_of_streams_to_the_same_digest(tmp_path):
    data = bytes(range(256)) * 1000 + b"tail"
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert sha256_of(path, chunk_bytes=4096) == hashlib.sha256(data).hexdigest()
    assert sha256_of(path) == sha256_of(path, chunk_bytes=7)
