"""wavbrivl.generate.loop at toy size: every step checked against an independent computation.

tests/test_generate.py runs the loop with the tiny BriVL encoder (seconds per test); here a
linear toy encoder on 8 x 8 pixels and a toy VQGAN (a 1x1 mixing of a 6 x 4 codebook,
upsampled x2) make a whole run take milliseconds, so each step's numbers can be recomputed
in the test by hand (numpy, or autograd through the test's own formula) and the mutation
run (docs/testing.md) stays short.
"""

from __future__ import annotations

import functools
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from wavbrivl.generate import loop
from wavbrivl.generate.cutouts import CutoutSettings
from wavbrivl.generate.loop import (
    MIN_TARGET_NORM,
    GenerateConfig,
    clamp_inward,
    downsample_factor,
    generate,
    init_random_tokens,
    latent_grid,
    spherical_distance_sq,
    synthesize,
    to_pil,
)
from wavbrivl.generate.png import read_png_metadata

QUIET = lambda line: None  # noqa: E731

#: 6 codebook entries of 4 channels (n_embed != C, and no two columns share a range).
CODEBOOK = torch.tensor(
    [
        [0.9, -0.2, 0.1, 0.4],
        [-0.5, 0.7, -0.3, 0.0],
        [0.2, 0.1, 0.8, -0.6],
        [-0.1, -0.9, 0.3, 0.5],
        [0.6, 0.3, -0.7, -0.2],
        [-0.8, 0.5, 0.4, 0.9],
    ]
)


class ToyVQGAN(nn.Module):
    """The VQGAN interface (codebook, quantize_st, decode) at toy size, f = 2.

    decode: pixels = tanh(scale * (A @ z_q + bias)) per cell, each cell a 2 x 2 block.
    Records every latent handed to the quantiser and every ``to`` call.
    """

    downsample_factor = 2

    def __init__(self, scale: float = 1.5) -> None:
        super().__init__()
        self.embedding = nn.Parameter(CODEBOOK.clone())
        gen = torch.Generator().manual_seed(3)
        self.mix = nn.Parameter(torch.randn(3, 4, generator=gen))
        self.bias = nn.Parameter(torch.tensor([0.1, -0.2, 0.05]))
        self.scale = scale
        self.latents: list[torch.Tensor] = []
        self.moved_to: list[object] = []

    @property
    def codebook(self) -> torch.Tensor:
        return self.embedding

    def to(self, *args, **kwargs):
        self.moved_to.append(args[0] if args else kwargs.get("device"))
        return super().to(*args, **kwargs)

    def quantize_st(self, z: torch.Tensor) -> torch.Tensor:
        self.latents.append(z.detach().clone())
        return self.quantize_reference(z)

    def quantize_reference(self, z: torch.Tensor) -> torch.Tensor:
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        index = torch.cdist(flat, self.embedding).argmin(-1)
        z_q = self.embedding[index].view(z.shape[0], z.shape[2], z.shape[3], -1)
        return z + (z_q.permute(0, 3, 1, 2) - z).detach()

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        cells = torch.einsum("kc,bchw->bkhw", self.mix, z_q) + self.bias[None, :, None, None]
        pixels = torch.tanh(self.scale * cells)
        return pixels.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


class ToyEncoder:
    """A linear image encoder on 8 x 8 RGB: unit(W @ pixels); records the cutout embeddings."""

    name = "toy"
    dim = 5

    def __init__(self, device: str | None = "cpu") -> None:
        self.preprocess = types.SimpleNamespace(img_size=8)
        if device is not None:
            self.device = torch.device(device)
        self.weight = torch.randn(3 * 8 * 8, 5, generator=torch.Generator().manual_seed(5))
        self.cutout_embeddings: list[np.ndarray] = []

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        return F.normalize(pixels.reshape(pixels.shape[0], -1) @ self.weight, dim=1)

    def encode_images(self, images):
        if isinstance(images, torch.Tensor):  # the cutouts, already 8 x 8
            out = self.embed(images)
            self.cutout_embeddings.append(out.detach().numpy().copy())
            return out
        pixels = np.stack([np.asarray(im, dtype=np.float32) / 255 for im in images])
        return self.embed(torch.from_numpy(pixels).permute(0, 3, 1, 2))  # the saved PNGs


def toy_cfg(**kw) -> GenerateConfig:
    # 8 x 8 images = the encoder's size: every cutout is the whole image (an exact resize).
    base = {"steps": 3, "cutouts": 3, "size": (8, 8), "cut_noise": 0.0, "cut_flip": False}
    return _config(tuple(sorted((base | kw).items())))


@functools.cache
def _config(items: tuple) -> GenerateConfig:
    # Checking a config against the schema takes a fair part of a second: build each once.
    return GenerateConfig(**dict(items))


def targets_for(n: int, seed: int = 11) -> torch.Tensor:
    """Rows of different norms (1.5, 2.5, ...) and directions."""
    rows = F.normalize(torch.randn(n, 5, generator=torch.Generator().manual_seed(seed)), dim=1)
    return rows * (1.5 + torch.arange(n, dtype=torch.float32))[:, None]


def run(n: int = 2, cfg: GenerateConfig | None = None, **kw):
    vqgan, encoder = kw.pop("vqgan", None) or ToyVQGAN(), kw.pop("encoder", None) or ToyEncoder()
    kw.setdefault("clip_ids", [f"c{i}_0" for i in range(n)])
    kw.setdefault("seeds", [7 + 3 * i for i in range(n)])
    kw.setdefault("log", QUIET)
    targets = kw.pop("targets", None)
    targets = targets_for(n) if targets is None else targets
    results = generate(vqgan, encoder, targets, cfg or toy_cfg(), **kw)
    return results, vqgan, encoder


def reference_loss(vqgan: ToyVQGAN, encoder: ToyEncoder, z: torch.Tensor, unit_targets):
    """The loss of the module docstring, written out: sum over clips of 2 arcsin(|e - t|/2)^2
    (all cutouts are the whole image here, so the mean over cutouts is that one value)."""
    pixels = ((vqgan.decode(vqgan.quantize_reference(z)) + 1) / 2).clamp(0, 1)
    emb = encoder.embed(pixels)
    chord = (emb - unit_targets).norm(dim=1) / 2
    return (2 * torch.arcsin(chord) ** 2).sum()


# -- the optimisation ---------------------------------------------------------------------------


def test_first_update_is_one_adam_step_on_the_summed_per_clip_loss():
    # Adam's first step moves each element by lr * g / (|g| + eps). A decoder of tiny output
    # scale makes |g| comparable to eps = 1e-8, so the step's size shows the gradient's
    # scale: a loss averaged over the clips (not summed) or another lr moves z differently.
    lr = 0.05
    results, vqgan, encoder = run(2, toy_cfg(steps=1, lr=lr), vqgan=ToyVQGAN(scale=1e-6))
    z0, z1 = vqgan.latents[0], vqgan.latents[1]  # before the update; the final decode's
    unit = F.normalize(targets_for(2), dim=1)
    z = z0.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(reference_loss(vqgan, encoder, z, unit), [z])
    step = lr * g / (g.abs() + 1e-8)
    lo = CODEBOOK.min(dim=0).values[None, :, None, None]
    hi = CODEBOOK.max(dim=0).values[None, :, None, None]
    expected = torch.maximum(torch.minimum(z0 - step, hi), lo)
    # the regime the test relies on: steps well below lr, and different from clip to clip
    assert 0.2 * lr < step.abs().median() < 0.9 * lr
    np.testing.assert_allclose(z1.numpy(), expected.numpy(), atol=2e-4 * lr)
    assert not torch.equal(z1, z0)


def test_latents_start_from_each_clips_seeded_codebook_tokens_and_stay_in_range():
    results, vqgan, _ = run(2, toy_cfg(steps=4, lr=2.0))
    z0 = vqgan.latents[0]
    assert z0.shape == (2, 4, 4, 4)  # (b, C, h, w): 8 x 8 pixels at f = 2
    for clip, seed in enumerate([7, 10]):
        tokens = torch.randint(6, (4, 4), generator=torch.Generator().manual_seed(seed))
        np.testing.assert_array_equal(z0[clip].numpy(), CODEBOOK[tokens].permute(2, 0, 1))
    lo, hi = CODEBOOK.min(dim=0).values, CODEBOOK.max(dim=0).values
    for z in vqgan.latents[1:]:
        per_channel = z.permute(1, 0, 2, 3).reshape(4, -1)
        assert (per_channel >= lo[:, None]).all() and (per_channel <= hi[:, None]).all()
    # lr 2 overshoots: the bounds were reached (the clamp, not small steps, kept z inside)
    assert any((z == hi[None, :, None, None]).any() for z in vqgan.latents[1:])
    assert any((z == lo[None, :, None, None]).any() for z in vqgan.latents[1:])


def test_trace_is_the_mean_cutout_similarity_and_the_result_is_the_saved_image():
    # Noise and flips make the cutouts differ, so the mean is not any single cutout's value.
    cfg = toy_cfg(steps=3, cutouts=4, cut_noise=0.3, cut_flip=True)
    results, vqgan, encoder = run(2, cfg)
    unit = F.normalize(targets_for(2), dim=1).numpy()
    assert len(encoder.cutout_embeddings) == 3
    for step, emb in enumerate(encoder.cutout_embeddings):
        per_cut = np.einsum("bnd,bd->bn", emb.reshape(2, 4, 5), unit)
        assert np.ptp(per_cut, axis=1).min() > 1e-3
        for i, result in enumerate(results):
            assert result.trace[step] == pytest.approx(per_cut[i].mean(), abs=1e-6)
    # The image: the final latent decoded, in 8-bit; its similarity: that PNG embedded.
    final = ((vqgan.decode(vqgan.quantize_reference(vqgan.latents[-1])) + 1) / 2).clamp(0, 1)
    for i, result in enumerate(results):
        pixels = np.rint(final[i].detach().numpy().transpose(1, 2, 0) * 255)
        np.testing.assert_array_equal(np.asarray(result.image, dtype=float), pixels)
        assert result.image.mode == "RGB"
        emb = encoder.weight.numpy().T @ (pixels.transpose(2, 0, 1).reshape(-1) / 255)
        expected = emb @ unit[i] / np.linalg.norm(emb)
        assert result.final_similarity == pytest.approx(expected, abs=1e-5)
        assert isinstance(result.final_similarity, float)


def test_clips_come_back_in_order_in_batches_with_their_own_fields():
    lines: list[str] = []
    targets = targets_for(3)
    results, *_ = run(
        3,
        toy_cfg(steps=2, batch_clips=2),
        clip_ids=["x_0", "y_0", "z_0"],
        labels=["dog", "rain", "bell"],
        seeds=[4, 8, 15],
        targets=targets,
        log=lines.append,
    )
    assert [r.clip_id for r in results] == ["x_0", "y_0", "z_0"]
    assert [r.label for r in results] == ["dog", "rain", "bell"]
    assert [r.seed for r in results] == [4, 8, 15]
    assert [r.steps for r in results] == [2, 2, 2]
    assert [r.notes for r in results] == [[], [], []]
    assert [len(r.trace) for r in results] == [2, 2, 2]
    assert [r.target_norm for r in results] == pytest.approx([1.5, 2.5, 3.5], rel=1e-6)
    assert [line for line in lines if line.startswith("generating")] == [
        "generating clips 1-2 of 3",
        "generating clips 3-3 of 3",
    ]
    # A clip's image does not depend on its neighbours: the third, alone, is the same.
    alone, *_ = run(1, toy_cfg(steps=2), clip_ids=["z_0"], seeds=[15], targets=targets[2:])
    assert alone[0].trace == pytest.approx(results[2].trace, abs=1e-6)


def test_labels_default_to_empty_and_given_target_norms_are_recorded():
    results, *_ = run(2, target_norms=[0.25, 4.0])
    assert [r.label for r in results] == ["", ""]
    assert [r.target_norm for r in results] == [0.25, 4.0]


def test_step_log_every_tenth_of_the_run_and_at_the_end():
    def step_lines(steps: int) -> list[str]:
        lines: list[str] = []
        results, *_ = run(2, toy_cfg(steps=steps), log=lines.append)
        logged = [line for line in lines if line.startswith("  step")]
        for line in logged:  # the logged value: the mean over clips of that step's trace
            k = int(line.split()[1].split("/")[0]) - 1
            mean = (results[0].trace[k] + results[1].trace[k]) / 2
            assert line.endswith(f"similarity {mean:.4f}"), line
        return [line.split(":")[0] for line in logged]

    # 21 steps: every 21 // 10 = 2 steps, and the last one.
    assert step_lines(21) == [f"  step {k}/21" for k in (*range(2, 21, 2), 21)]
    assert step_lines(3) == ["  step 1/3", "  step 2/3", "  step 3/3"]  # fewer than 10: each
    assert step_lines(30) == [f"  step {k}/30" for k in range(3, 31, 3)]
    lines: list[str] = []
    run(1, toy_cfg(steps=2), log=lines.append)
    assert lines[-1].startswith("  step 2/2: mean cutout similarity ")


def test_a_target_without_direction_is_not_guided_and_says_so():
    lines: list[str] = []
    norms = [0.0, 3e-9, MIN_TARGET_NORM, 2.0]
    targets = torch.cat([torch.zeros(1, 5), targets_for(3)])
    results, *_ = run(
        4, targets=targets, target_norms=norms, clip_ids=["a_0", "b_0", "c_0", "d_0"],
        log=lines.append,
    )  # fmt: skip
    assert results[0].notes == ["target norm 0: no direction, the image is not guided"]
    assert results[1].notes == ["target norm 3e-09: no direction, the image is not guided"]
    assert results[2].notes == [] and results[3].notes == []  # at the bound: guided
    assert [line for line in lines if line.startswith("WARNING")] == [
        "WARNING: a_0: target norm 0: no direction, the image is not guided",
        "WARNING: b_0: target norm 3e-09: no direction, the image is not guided",
    ]
    assert results[0].trace == [0.0, 0.0, 0.0] and results[0].final_similarity == 0.0


def test_computed_target_norms_are_per_row():
    results, *_ = run(3, target_norms=None)
    assert [r.target_norm for r in results] == pytest.approx([1.5, 2.5, 3.5], rel=1e-6)


def test_the_vqgan_codebook_and_cutout_streams_are_put_on_the_generation_device(monkeypatch):
    # Only a CPU here, so the calls are recorded: each is asked for the device explicitly
    # (on a GPU a CPU default would put the noise generator on the wrong device).
    rng_devices: list[object] = []

    class RecordingRng(loop.CutoutRng):
        def __init__(self, seed, device="no device given"):
            rng_devices.append(device)
            super().__init__(seed, "cpu")

    moves: dict[str, list[object]] = {"codebook": [], "final embeddings": [], "targets": []}

    def recording(tensor: torch.Tensor, what: str) -> torch.Tensor:
        class Recording(torch.Tensor):
            def to(self, *args, **kwargs):
                moves[what].append(args[0] if args else kwargs.get("device"))
                return super().to(*args, **kwargs).as_subclass(torch.Tensor)

        return tensor.as_subclass(Recording)

    class CodebookSpy(ToyVQGAN):
        @property
        def codebook(self) -> torch.Tensor:  # e.g. a codebook kept outside the parameters
            return recording(self.embedding, "codebook")

    class EmbeddingSpy(ToyEncoder):
        def encode_images(self, images):
            out = super().encode_images(images)
            return out if isinstance(images, torch.Tensor) else recording(out, "final embeddings")

    monkeypatch.setattr(loop, "CutoutRng", RecordingRng)
    vqgan = CodebookSpy().train()
    targets = recording(targets_for(2), "targets")  # e.g. targets left on the CPU
    run(2, vqgan=vqgan, encoder=EmbeddingSpy(), targets=targets, device="cpu")
    assert vqgan.moved_to == [torch.device("cpu")] and not vqgan.training
    assert rng_devices == [torch.device("cpu")] * 2
    cpu = [torch.device("cpu")]
    assert moves == {"codebook": cpu, "final embeddings": cpu, "targets": cpu}
    # An encoder without a device attribute is taken to be on the generation device.
    run(1, encoder=ToyEncoder(device=None))


def test_mismatched_inputs_are_refused_with_what_does_not_match():
    same = "do not describe the same clips"
    cases = [
        dict(targets=targets_for(2)[0]),  # 1-D
        dict(targets=targets_for(3)),
        dict(seeds=[1]),
        dict(labels=["one"]),
    ]
    for case in cases:
        with pytest.raises(ValueError, match=same):
            run(2, **case)
    with pytest.raises(ValueError) as err:
        run(2, seeds=[1, 2, 3])
    assert str(err.value) == (
        "targets (2, 5), 2 clip ids, 3 seeds and 2 labels do not describe the same clips"
    )
    for norms in ([1.0], [1.0, 2.0, 3.0]):  # one norm per clip, or none at all
        with pytest.raises(ValueError) as err:
            run(2, target_norms=norms)
        assert str(err.value) == f"{len(norms)} target norms for 2 clips"
    with pytest.raises(ValueError) as err:
        run(2, targets=torch.ones(2, 4))
    assert str(err.value) == (
        "target embeddings have 4 dimensions, the image encoder 'toy' embeds into 5: "
        "the audio model was trained against another image encoder"
    )
    with pytest.raises(ValueError) as err:
        run(2, encoder=ToyEncoder(device="meta"))
    assert str(err.value) == (
        "the image encoder is on meta, generation asked for cpu: "
        "build the encoder on the generation device"
    )


def test_progress_frames_every_k_steps_with_their_step_in_the_png(tmp_path):
    run(2, toy_cfg(steps=5, save_every=2), clip_ids=["p_0", "q_0"], progress_dir=str(tmp_path))
    assert sorted(p.name for p in (tmp_path / "q_0").iterdir()) == [
        "step_00000.png",
        "step_00002.png",
        "step_00004.png",
    ]
    meta = read_png_metadata(tmp_path / "p_0" / "step_00002.png")
    assert meta["clip_id"] == "p_0" and meta["step"] == "2"
    # save_every 0: no frames even with a folder; no folder: no frames, no error.
    run(1, toy_cfg(save_every=0), progress_dir=tmp_path / "none")
    assert not (tmp_path / "none").exists()
    run(1, toy_cfg(save_every=1))


# -- the pieces -------------------------------------------------------------------------------


def test_spherical_distance_over_the_last_axis_of_a_batch():
    # (b, n, D) against (b, 1, D): each row's own target; expected 2 * (angle / 2) ** 2.
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2, 3, 4))
    a /= np.linalg.norm(a, axis=-1, keepdims=True)
    t = rng.normal(size=(2, 1, 4))
    t /= np.linalg.norm(t, axis=-1, keepdims=True)
    angle = np.arccos(np.clip((a * t).sum(-1), -1, 1))
    got = spherical_distance_sq(torch.tensor(a), torch.tensor(t))
    assert got.shape == (2, 3)
    np.testing.assert_allclose(got.numpy(), 2 * (angle / 2) ** 2, rtol=1e-9)


def test_spherical_distance_of_opposite_vectors_survives_rounding():
    # float32 unit vectors can have norms a hair above 1: |a - b| / 2 > 1 must not give NaN.
    a = torch.tensor([1.0, 0.0])
    b = torch.tensor([-1.000001, 0.0])
    assert float((a - b).norm() / 2) > 1.0
    assert float(spherical_distance_sq(a, b)) == pytest.approx(2 * (np.pi / 2) ** 2)


def test_clamp_inward_with_its_own_bounds():
    x = torch.tensor([-3.0, -3.0, 0.0, 3.0, 3.0], requires_grad=True)
    y = clamp_inward(x, -1.0, 2.0)
    assert y.tolist() == [-1.0, -1.0, 0.0, 2.0, 2.0]
    (grad,) = torch.autograd.grad(y, x, torch.tensor([2.0, -2.0, 0.5, 2.0, -2.0]))
    assert grad.tolist() == [0.0, -2.0, 0.5, 2.0, 0.0]


def test_downsample_factor_from_the_attribute_or_the_channel_multipliers():
    ns = types.SimpleNamespace
    assert downsample_factor(ns(downsample_factor=4.0)) == 4
    assert type(downsample_factor(ns(downsample_factor=4.0))) is int
    assert downsample_factor(ns(cfg=ns(ch_mult=[1, 1, 2, 4]))) == 8  # 2 ** (4 - 1)
    assert downsample_factor(ns(config=ns(ch_mult=[1, 2]))) == 2
    assert downsample_factor(ns(cfg=ns(ch_mult=[1, 2, 2, 4, 4]), config=None)) == 16
    for bad in (ns(), ns(cfg=ns(resolution=256))):
        with pytest.raises(TypeError) as err:
            downsample_factor(bad)
        assert str(err.value) == "SimpleNamespace has neither downsample_factor nor cfg.ch_mult"


def test_latent_grid_divides_each_side_by_f():
    vqgan = types.SimpleNamespace(downsample_factor=4)
    grid = latent_grid(vqgan, (64, 32))
    assert grid == (16, 8) and all(type(v) is int for v in grid)
    for size in [(66, 64), (64, 66)]:
        with pytest.raises(ValueError) as err:
            latent_grid(vqgan, size)
        assert str(err.value) == (
            f"size {size} is not a multiple of the VQGAN's downsample factor 4"
        )


def test_random_tokens_are_codebook_rows_drawn_per_seed():
    z = init_random_tokens(CODEBOOK, (3, 5), [1, 2])
    assert z.shape == (2, 4, 3, 5) and z.is_contiguous()
    rows = z.permute(0, 2, 3, 1).reshape(-1, 4)
    index = (rows[:, None, :] == CODEBOOK[None]).all(-1).float().argmax(-1)
    assert torch.equal(CODEBOOK[index], rows)  # each cell is a codebook row
    assert index.max() >= 4  # from all 6 rows, not the first C = 4
    again = init_random_tokens(CODEBOOK, (3, 5), [1])
    assert torch.equal(again[0], z[0])  # a clip's draw does not depend on its neighbours
    assert not torch.equal(z[0], z[1])


def test_synthesize_maps_the_decoder_range_to_unit_pixels():
    class Passthrough:
        def quantize_st(self, z):
            return z * 2

        def decode(self, z_q):
            return z_q - 0.5

    z = torch.tensor([[[[-0.5, 0.0, 0.5, 0.8]]]])
    # decode(quantize(z)) = 2 z - 0.5 -> (. + 1) / 2, clamped to [0, 1]
    assert synthesize(Passthrough(), z).flatten().tolist() == [0.0, 0.25, 0.75, 1.0]


def test_to_pil_rounds_clamps_and_keeps_the_channel_order():
    image = torch.zeros(3, 2, 3)
    image[0] = torch.tensor([[0.5, 1.2, -0.1], [0.002, 0.1, 1.0]])
    image[1] = 0.25
    image[2, 1, 2] = 0.9
    got = np.asarray(to_pil(image))
    expected = np.zeros((2, 3, 3), dtype=np.uint8)
    expected[..., 0] = [[128, 255, 0], [1, 26, 255]]
    expected[..., 1] = 64
    expected[1, 2, 2] = 230
    assert to_pil(image).mode == "RGB"
    np.testing.assert_array_equal(got, expected)


def test_config_carries_the_cutout_fields_and_round_trips_as_plain_values():
    cfg = GenerateConfig(
        cutouts=3, cut_pow=2.5, min_cut_size=9, cut_flip=False, cut_noise=0.4, size=[16, 24]
    )
    assert cfg.cutout_settings() == CutoutSettings(
        n=3, cut_pow=2.5, min_size=9, flip=False, noise=0.4
    )
    assert cfg.size == (16, 24) and hash(cfg)
    plain = cfg.to_dict()
    assert plain["size"] == [16, 24] and type(plain["size"]) is list
    assert GenerateConfig.from_dict(plain) == cfg
    with pytest.raises(ValueError) as err:
        GenerateConfig.from_dict({"stepz": 3})
    assert str(err.value).startswith("unknown GenerateConfig key(s) ['stepz']")
    with pytest.raises(ValueError) as err:
        GenerateConfig(steps=0)
    assert str(err.value).startswith("invalid config at 'generate.steps'")
    with pytest.raises(ValueError) as err:
        GenerateConfig(init="zeros")
    assert str(err.value).startswith("invalid config at 'generate.init'")


def test_an_init_the_schema_allows_but_the_code_lacks_is_refused(monkeypatch):
    monkeypatch.setattr(loop, "INITS", {"other": loop.init_random_tokens})
    with pytest.raises(ValueError) as err:
        GenerateConfig()
    assert str(err.value) == "unknown init 'random_tokens'; known: ['other']"
