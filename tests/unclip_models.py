"""A tiny random Stable unCLIP pipeline in diffusers' folder layout, for the unCLIP tests.

:func:`save_tiny_unclip` writes ``StableUnCLIPImg2ImgPipeline.save_pretrained`` output whose
image encoder is the vision tower of the tiny HF CLIP folder of :mod:`tests.clip_models`
(same weights: the run's CLIP space is the pipeline's), a tiny UNet with ``projection``
class embeddings of the image embedding (24-d + its 24-d noise-level embedding), a tiny
AutoencoderKL, DDIM / DDPM schedulers, a CLIP text model and the CLIP folder's tokenizer with
``model_max_length=77``. Images come out 32 x 32. Nothing is downloaded: all weights are
random and seeded.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import torch
from clip_models import save_hf_clip


def vision_tower_of(clip_folder: Path, seed_offset: int | None = None):
    """A ``CLIPVisionModelWithProjection`` holding the CLIP folder's vision weights (or, with
    ``seed_offset``, random weights of the same shape: another space)."""
    from transformers import CLIPModel, CLIPVisionConfig, CLIPVisionModelWithProjection

    clip = CLIPModel.from_pretrained(clip_folder, local_files_only=True)
    config = CLIPVisionConfig(
        **clip.config.vision_config.to_dict() | {"projection_dim": clip.config.projection_dim}
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1000 + (seed_offset or 0))
        tower = CLIPVisionModelWithProjection(config)
    if seed_offset is None:
        own = {
            k: v
            for k, v in clip.state_dict().items()
            if k.startswith(("vision_model.", "visual_projection."))
        }
        missing, unexpected = tower.load_state_dict(own, strict=False)
        assert not unexpected and all("position_ids" in k for k in missing), (missing, unexpected)
    return tower


def save_tiny_unclip(folder: Path, clip_folder: Path, *, other_space: bool = False) -> Path:
    """The pipeline folder; ``other_space``: its image encoder is not the CLIP folder's."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        DDPMScheduler,
        StableUnCLIPImg2ImgPipeline,
        UNet2DConditionModel,
    )
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import (
        StableUnCLIPImageNormalizer,
    )
    from transformers import CLIPImageProcessor, CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(clip_folder, model_max_length=77)
    image_encoder = vision_tower_of(clip_folder, 7 if other_space else None)
    dim = image_encoder.config.projection_dim
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=16,
                intermediate_size=32,
                num_hidden_layers=1,
                num_attention_heads=2,
                max_position_embeddings=77,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
        unet = UNet2DConditionModel(
            sample_size=16,
            in_channels=4,
            out_channels=4,
            block_out_channels=(8, 16),
            layers_per_block=1,
            norm_num_groups=4,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=16,
            attention_head_dim=(2, 4),
            class_embed_type="projection",
            projection_class_embeddings_input_dim=2 * dim,
        )
        vae = AutoencoderKL(
            block_out_channels=(8, 16),
            norm_num_groups=4,
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
            latent_channels=4,
            sample_size=32,
        )
    pipe = StableUnCLIPImg2ImgPipeline(
        feature_extractor=CLIPImageProcessor.from_pretrained(clip_folder),
        image_encoder=image_encoder,
        image_normalizer=StableUnCLIPImageNormalizer(embedding_dim=dim),
        image_noising_scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2"),
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        unet=unet,
        scheduler=DDIMScheduler(
            beta_schedule="scaled_linear",
            beta_start=0.00085,
            beta_end=0.012,
            prediction_type="v_prediction",
            set_alpha_to_one=False,
            steps_offset=1,
        ),
        vae=vae,
    )
    pipe.save_pretrained(folder)
    return folder


def save_clip_and_unclip(root: Path, *, other_space: bool = False) -> tuple[Path, Path]:
    """``(clip folder, pipeline folder)`` under ``root``."""
    clip = save_hf_clip(root / "clip")
    return clip, save_tiny_unclip(root / "unclip", clip, other_space=other_space)


def cached_clip_and_unclip() -> tuple[Path, Path, Path]:
    """``(clip, pipeline, other-space pipeline)`` folders, built once per version of this file
    and of the libraries, in the temp folder: the mutation runs start a process per mutant.
    Tests only read them."""
    import diffusers
    import transformers

    key = hashlib.sha256(
        Path(__file__).read_bytes()
        + Path(__file__).with_name("clip_models.py").read_bytes()
        + f"{diffusers.__version__} {transformers.__version__} {torch.__version__}".encode()
    ).hexdigest()[:16]
    root = Path(tempfile.gettempdir()) / f"wavbrivl-test-unclip-{key}"
    if not root.is_dir():
        staging = Path(tempfile.mkdtemp(prefix=root.name + ".tmp"))
        clip, _ = save_clip_and_unclip(staging)
        save_tiny_unclip(staging / "other", clip, other_space=True)
        try:
            os.rename(staging, root)
        except OSError:  # another process got there first
            shutil.rmtree(staging, ignore_errors=True)
    return root / "clip", root / "unclip", root / "other"
