"""VQGAN (Esser et al., taming-transformers) written from its description, checkpoint-compatible.

Module and parameter names follow ``taming.models.vqgan.VQModel`` so that its Lightning
checkpoints (``state_dict`` minus ``loss.*``) load strictly: ``encoder.down.<level>.block.<i>``,
``decoder.up.<level>.attn.<i>``, ``quantize.embedding.weight``, ``quant_conv``,
``post_quant_conv``. Level 0 is the full resolution in both the encoder and the decoder.

Shapes below use ``f = 2 ** (len(ch_mult) - 1)`` (the downsampling factor), ``D = embed_dim``
and ``Z = z_channels``: an image (B, 3, H, W) in [-1, 1] maps to latents (B, D, H/f, W/f).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from wavbrivl.configs import from_mapping

_GROUPS = 32  # GroupNorm groups: every normalised width must be a multiple of this


@dataclass(frozen=True)
class VQGANConfig:
    """Architecture of a VQModel: taming's ``ddconfig`` plus ``embed_dim`` and ``n_embed``."""

    embed_dim: int = 256  # codebook vector size D
    n_embed: int = 16384  # codebook entries
    ch: int = 128  # base width; level i has ch * ch_mult[i] channels
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2  # per level in the encoder (the decoder has one more)
    attn_resolutions: tuple[int, ...] = (16,)  # feature-map sizes that get self-attention
    z_channels: int = 256
    resolution: int = 256  # training image size: decides where attention sits
    in_channels: int = 3
    out_ch: int = 3
    dropout: float = 0.0
    double_z: bool = False

    def __post_init__(self) -> None:
        # YAML/JSON give lists; keep tuples so the config stays hashable and comparable.
        object.__setattr__(self, "ch_mult", tuple(int(m) for m in self.ch_mult))
        object.__setattr__(self, "attn_resolutions", tuple(int(r) for r in self.attn_resolutions))
        if not self.ch_mult:
            raise ValueError("VQGANConfig.ch_mult must name at least one level")
        if self.double_z:
            # A VQModel's quant_conv takes z_channels inputs; double_z is for the KL autoencoder.
            raise ValueError("VQGANConfig.double_z must be false for a VQGAN (VQModel)")
        bad = [self.ch * m for m in self.ch_mult if (self.ch * m) % _GROUPS]
        if bad:
            raise ValueError(
                f"VQGANConfig: widths {bad} (ch * ch_mult) are not multiples of {_GROUPS} "
                "(GroupNorm groups)"
            )

    @property
    def downsample_factor(self) -> int:
        """f: image side / latent side."""
        return 2 ** (len(self.ch_mult) - 1)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["ch_mult"] = list(self.ch_mult)
        out["attn_resolutions"] = list(self.attn_resolutions)
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> VQGANConfig:
        return from_mapping(cls, values, "VQGAN config")

    @classmethod
    def from_taming_yaml(cls, path: str | Path) -> VQGANConfig:
        """Read a taming-transformers model YAML (``model.params.ddconfig``, ``embed_dim``,
        ``n_embed``), e.g. ``vqgan_imagenet_f16_16384.yaml``; see :mod:`wavbrivl.vqgan.checkpoint`."""
        from wavbrivl.vqgan.checkpoint import read_taming_yaml

        return read_taming_yaml(path)


VQGAN_IMAGENET_F16_16384 = VQGANConfig()

# Toy size for tests and the demo: every kind of block (attention in a level and in the
# middle, width changes with 1x1 shortcuts, two resamplings), f = 4, ~0.5 M parameters.
# The wide level is the first one only because that keeps the parity fixture under 2 MB.
TINY_VQGAN = VQGANConfig(
    embed_dim=16,
    n_embed=64,
    ch=32,
    ch_mult=(2, 1, 1),
    num_res_blocks=1,
    attn_resolutions=(8,),
    z_channels=32,
    resolution=32,
)


def swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


def Normalize(channels: int) -> nn.GroupNorm:
    """GroupNorm(32, eps=1e-6) with affine weights: the normalisation of every VQGAN block."""
    return nn.GroupNorm(_GROUPS, channels, eps=1e-6, affine=True)


def _conv3x3(c_in: int, c_out: int, stride: int = 1, padding: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=padding)


def _conv1x1(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=1)


class ResnetBlock(nn.Module):
    """norm-swish-conv twice plus a skip; a 1x1 ``nin_shortcut`` when the width changes.

    (B, c_in, h, w) -> (B, c_out, h, w).
    """

    def __init__(self, c_in: int, c_out: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = Normalize(c_in)
        self.conv1 = _conv3x3(c_in, c_out)
        self.norm2 = Normalize(c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _conv3x3(c_out, c_out)
        if c_in != c_out:
            self.nin_shortcut = _conv1x1(c_in, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(self.dropout(swish(self.norm2(h))))
        skip = self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x
        return skip + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all h*w positions, residual. (B, C, h, w) -> same."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = Normalize(channels)
        self.q = _conv1x1(channels, channels)
        self.k = _conv1x1(channels, channels)
        self.v = _conv1x1(channels, channels)
        self.proj_out = _conv1x1(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        normed = self.norm(x)

        def tokens(conv: nn.Conv2d) -> torch.Tensor:  # (B, C, h, w) -> (B, h*w, C)
            return conv(normed).flatten(2).transpose(1, 2)

        # softmax(q k^T / sqrt(C)) v, the scale of the original; fused kernel saves memory.
        out = F.scaled_dot_product_attention(tokens(self.q), tokens(self.k), tokens(self.v))
        out = out.transpose(1, 2).reshape(b, c, h, w)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Stride-2 3x3 conv after padding one zero row/column at the bottom/right: (h, w) -> (h/2, w/2)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = _conv3x3(channels, channels, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # asymmetric, as the checkpoints were trained


class Upsample(nn.Module):
    """Nearest-neighbour x2 then a 3x3 conv: (h, w) -> (2h, 2w)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = _conv3x3(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Level(nn.Module):
    """One resolution level: resnet blocks, each followed by attention where the level has it."""

    def __init__(self, widths: list[tuple[int, int]], with_attn: bool, dropout: float) -> None:
        super().__init__()
        self.block = nn.ModuleList(ResnetBlock(i, o, dropout) for i, o in widths)
        self.attn = nn.ModuleList(AttnBlock(o) for _, o in widths) if with_attn else nn.ModuleList()

    def run_blocks(self, h: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.block):
            h = block(h)
            if len(self.attn):
                h = self.attn[i](h)
        return h


class _Middle(nn.Module):
    """resnet - attention - resnet at the lowest resolution."""

    def __init__(self, channels: int, dropout: float) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels, dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(h)))


def _level_has_attn(cfg: VQGANConfig, level: int) -> bool:
    return cfg.resolution // 2**level in cfg.attn_resolutions


class Encoder(nn.Module):
    """(B, in_channels, H, W) -> (B, Z, H/f, W/f)."""

    def __init__(self, cfg: VQGANConfig) -> None:
        super().__init__()
        widths = [cfg.ch * m for m in cfg.ch_mult]
        self.conv_in = _conv3x3(cfg.in_channels, cfg.ch)
        self.down = nn.ModuleList()
        c = cfg.ch
        for level, c_out in enumerate(widths):
            blocks = [(c, c_out)] + [(c_out, c_out)] * (cfg.num_res_blocks - 1)
            stage = _Level(blocks, _level_has_attn(cfg, level), cfg.dropout)
            if level != len(widths) - 1:
                stage.downsample = Downsample(c_out)
            self.down.append(stage)
            c = c_out
        self.mid = _Middle(c, cfg.dropout)
        self.norm_out = Normalize(c)
        self.conv_out = _conv3x3(c, 2 * cfg.z_channels if cfg.double_z else cfg.z_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for stage in self.down:
            h = stage.run_blocks(h)
            if hasattr(stage, "downsample"):
                h = stage.downsample(h)
        h = self.mid(h)
        return self.conv_out(swish(self.norm_out(h)))


class Decoder(nn.Module):
    """(B, Z, h, w) -> (B, out_ch, f*h, f*w); runs the levels from the lowest resolution up."""

    def __init__(self, cfg: VQGANConfig) -> None:
        super().__init__()
        widths = [cfg.ch * m for m in cfg.ch_mult]
        self.conv_in = _conv3x3(cfg.z_channels, widths[-1])
        self.mid = _Middle(widths[-1], cfg.dropout)
        self.up = nn.ModuleList()
        for level, c_out in enumerate(widths):
            c_in = widths[min(level + 1, len(widths) - 1)]  # what the level below hands up
            blocks = [(c_in, c_out)] + [(c_out, c_out)] * cfg.num_res_blocks
            stage = _Level(blocks, _level_has_attn(cfg, level), cfg.dropout)
            if level != 0:
                stage.upsample = Upsample(c_out)
            self.up.append(stage)
        self.norm_out = Normalize(widths[0])
        self.conv_out = _conv3x3(widths[0], cfg.out_ch)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for stage in reversed(self.up):
            h = stage.run_blocks(h)
            if hasattr(stage, "upsample"):
                h = stage.upsample(h)
        return self.conv_out(swish(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    """Nearest-codebook quantisation of (B, D, h, w) latents; ``embedding``: (n_embed, D)."""

    def __init__(self, n_embed: int, embed_dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_embed, embed_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / n_embed, 1.0 / n_embed)

    @torch.no_grad()
    def nearest_indices(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D, h, w) -> (B, h, w) int64 index of the closest codebook vector (L2)."""
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)  # (B*h*w, D)
        book = self.embedding.weight  # (n_embed, D)
        # |z - e|^2 = |z|^2 + |e|^2 - 2 z.e, without materialising the differences
        dist = flat.pow(2).sum(1, keepdim=True) + book.pow(2).sum(1) - 2 * flat @ book.t()
        return dist.argmin(dim=1).reshape(b, h, w)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, h, w) token indices -> (B, D, h, w) codebook vectors."""
        return self.embedding(indices).permute(0, 3, 1, 2).contiguous()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Quantise with a straight-through gradient: the value is z_q, the gradient flows to z."""
        z_q = self.lookup(self.nearest_indices(z))
        return z + (z_q - z).detach()


class VQGAN(nn.Module):
    """Encoder, quantiser and decoder of a taming ``VQModel`` (without its training loss)."""

    def __init__(self, cfg: VQGANConfig = VQGAN_IMAGENET_F16_16384) -> None:
        super().__init__()
        self.cfg = cfg
        # Set by the loaders (wavbrivl.vqgan.checkpoint); None until weights are known.
        self.name = "vqgan(random init)"
        self.fingerprint: str | None = None
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quantize = VectorQuantizer(cfg.n_embed, cfg.embed_dim)
        self.quant_conv = _conv1x1(cfg.z_channels, cfg.embed_dim)
        self.post_quant_conv = _conv1x1(cfg.embed_dim, cfg.z_channels)

    @property
    def downsample_factor(self) -> int:
        return self.cfg.downsample_factor

    @property
    def codebook(self) -> torch.Tensor:
        """(n_embed, D) codebook vectors (the embedding weight itself, not a copy)."""
        return self.quantize.embedding.weight

    def latent_size(self, height: int, width: int) -> tuple[int, int]:
        """Latent (h, w) for an image of (height, width); both must be multiples of f."""
        f = self.downsample_factor
        if height % f or width % f:
            raise ValueError(f"image size {height}x{width} is not a multiple of f={f}")
        return height // f, width // f

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, D, H/f, W/f) latents before quantisation."""
        return self.quant_conv(self.encoder(x))

    def quantize_st(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D, h, w) -> nearest codebook vectors, straight-through gradient to z."""
        return self.quantize(z)

    def tokens_to_latent(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, h, w) codebook indices -> (B, D, h, w) latents."""
        return self.quantize.lookup(indices)

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        """(B, D, h, w) -> (B, out_ch, f*h, f*w) images, roughly in [-1, 1]."""
        return self.decoder(self.post_quant_conv(z_q))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction: encode, quantise, decode."""
        return self.decode(self.quantize_st(self.encode(x)))
