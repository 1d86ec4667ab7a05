"""A compact 3D U-Net for vesicle segmentation, with tile-independent normalisation.

The network is deliberately plain (conv-BN-ReLU blocks, max-pool down, transposed-conv up,
skip connections by concatenation) so that it is fast on a CPU and easy to reason about:

- Batch norm (folded into the convolutions for inference, see :mod:`synapseg.model.fast`) or no
  normalisation at all: never instance norm, whose per-tile statistics would make tiled and
  whole-volume predictions differ.
- It is translation-equivariant for shifts that are multiples of ``2 ** depth`` voxels, so a
  tiled prediction whose tiles start on that lattice equals the whole-volume prediction once
  each tile carries a halo of ``receptive_field // 2`` voxels (see ``synapseg.infer.tiling``).
- An optional space-to-depth stem (``stem=2``) folds each 2x2x2 block of input voxels into
  8 channels, runs the U-Net at half resolution and unfolds the output logits back to full
  resolution (a 3D pixel-(un)shuffle). No information is thrown away, but the costly
  full-resolution convolutions disappear: ~3x the CPU throughput of a plain U-Net of similar
  capacity (measured, see docs/model.md). This is the default.
- Input sizes must be multiples of ``stem * 2 ** depth`` (:attr:`UNetConfig.size_multiple`).

The forward pass returns logits, one channel per entry of the model card's
``output_channels`` (channel 0 = vesicle foreground incl. membrane).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

NORMS = ("batch", "none")
UPSAMPLES = ("transpose", "trilinear")


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of :class:`UNet3D`; stored in the model card as a plain dict.

    Parameters
    ----------
    in_channels, out_channels
        Input channels (1: the tomogram) and output channels (logits; 0 = vesicle).
    stem
        Space-to-depth factor (1: plain U-Net; 2: fold 2x2x2 voxels into channels first).
    base_channels
        Feature channels at the first U-Net level (full resolution divided by ``stem``).
    depth
        Number of 2x down-samplings (levels below full resolution).
    channel_multiplier
        Channel growth per level.
    max_channels
        Cap on the channels of any level.
    convs_per_level
        3x3x3 convolutions per encoder/decoder block.
    norm
        ``"batch"`` or ``"none"``; instance norm is deliberately not offered.
    upsample
        ``"transpose"`` (2x2x2 transposed conv) or ``"trilinear"`` (+ 1x1x1 conv).
    dropout
        Dropout probability in the bottleneck (training only).
    """

    in_channels: int = 1
    out_channels: int = 1
    stem: int = 2
    base_channels: int = 16
    depth: int = 3
    channel_multiplier: float = 2.0
    max_channels: int = 64
    convs_per_level: int = 2
    norm: str = "batch"
    upsample: str = "transpose"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.upsample not in UPSAMPLES:
            raise ValueError(f"upsample must be one of {UPSAMPLES}, got {self.upsample!r}")
        if self.stem not in (1, 2, 4):
            raise ValueError(f"stem must be 1, 2 or 4, got {self.stem}")
        if self.depth < 1 or self.convs_per_level < 1 or self.base_channels < 1:
            raise ValueError("depth, convs_per_level and base_channels must be >= 1")
        if self.in_channels < 1 or self.out_channels < 1:
            raise ValueError("in_channels and out_channels must be >= 1")

    @property
    def channels(self) -> tuple[int, ...]:
        """Feature channels per level, full resolution first (``depth + 1`` entries)."""
        return tuple(
            int(min(self.max_channels, round(self.base_channels * self.channel_multiplier**level)))
            for level in range(self.depth + 1)
        )

    @property
    def size_multiple(self) -> int:
        """Input sizes (and tile origins) must be multiples of this: ``stem * 2 ** depth``."""
        return self.stem * 2**self.depth

    @property
    def receptive_field(self) -> int:
        """Receptive field in voxels along each axis (the widest over output positions).

        Exact for this architecture: computed by tracing which input voxels one output voxel
        depends on through every layer, for each position modulo ``size_multiple`` (max-pooling
        makes the dependence window position-dependent).
        """
        return max(hi - lo + 1 for lo, hi in self._dependence_windows())

    @property
    def halo(self) -> int:
        """Largest one-sided reach in voxels: a tile halo this wide makes tiling exact."""
        return max(max(-lo, hi) for lo, hi in self._dependence_windows())

    def _dependence_windows(self) -> list[tuple[int, int]]:
        """Input window (lo, hi), relative to the output voxel, per residue mod size_multiple."""
        n, s = self.convs_per_level, self.stem
        trilinear = self.upsample == "trilinear"

        def encoder(level: int, a: int, b: int) -> tuple[int, int]:
            a, b = a - n, b + n
            if level == 0:
                return s * a, s * b + s - 1  # space-to-depth stem
            return encoder(level - 1, 2 * a, 2 * b + 1)

        def decoder(level: int, a: int, b: int) -> tuple[int, int]:
            if level == self.depth:  # bottleneck: convs on the pooled deepest encoder output
                return encoder(level - 1, 2 * (a - n), 2 * (b + n) + 1)
            a, b = a - n, b + n
            skip = encoder(level, a, b)
            if trilinear:
                up = decoder(level + 1, (a - 1) // 2, (b + 1) // 2)
            else:
                up = decoder(level + 1, a // 2, b // 2)
            return min(skip[0], up[0]), max(skip[1], up[1])

        base = 1000 * self.size_multiple
        out = []
        for r in range(self.size_multiple):
            lo, hi = decoder(0, (base + r) // s, (base + r) // s)
            out.append((lo - base - r, hi - base - r))
        return out

    @property
    def min_tile(self) -> int:
        """Smallest useful tile edge: the receptive field rounded up to ``size_multiple``."""
        m = self.size_multiple
        return -(-self.receptive_field // m) * m

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable dict (what the model card stores)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UNetConfig:
        """Build a config from :meth:`to_dict` output.

        Raises
        ------
        ValueError
            Unknown keys (a card written by a newer or different architecture) or bad values.
        """
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known - {"type"}
        if unknown:
            raise ValueError(f"unknown U-Net config keys: {sorted(unknown)}")
        return cls(**{k: v for k, v in data.items() if k in known})


class _ConvBlock(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, n_convs: int, norm: str) -> None:
        layers: list[nn.Module] = []
        for i in range(n_convs):
            layers.append(
                nn.Conv3d(c_in if i == 0 else c_out, c_out, 3, padding=1, bias=norm == "none")
            )
            if norm == "batch":
                layers.append(nn.BatchNorm3d(c_out))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class _Up(nn.Module):
    def __init__(self, c_in: int, c_out: int, mode: str) -> None:
        super().__init__()
        self.mode = mode
        if mode == "transpose":
            self.up = nn.ConvTranspose3d(c_in, c_out, 2, stride=2)
        else:
            self.up = nn.Conv3d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "transpose":
            return self.up(x)
        x = nn.functional.interpolate(x, scale_factor=2, mode="trilinear", align_corners=False)
        return self.up(x)


class UNet3D(nn.Module):
    """The compact 3D U-Net described by a :class:`UNetConfig` (returns logits)."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        ch = config.channels
        n, norm = config.convs_per_level, config.norm
        self.encoders = nn.ModuleList()
        c_prev = config.in_channels * config.stem**3
        for level in range(config.depth):
            self.encoders.append(_ConvBlock(c_prev, ch[level], n, norm))
            c_prev = ch[level]
        self.pool = nn.MaxPool3d(2)
        self.bottleneck = _ConvBlock(c_prev, ch[config.depth], n, norm)
        self.dropout = nn.Dropout3d(config.dropout) if config.dropout > 0 else nn.Identity()
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for level in reversed(range(config.depth)):
            self.ups.append(_Up(ch[level + 1], ch[level], config.upsample))
            self.decoders.append(_ConvBlock(2 * ch[level], ch[level], n, norm))
        self.head = nn.Conv3d(ch[0], config.out_channels * config.stem**3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (batch, out_channels, z, y, x) for input (batch, in_channels, z, y, x).

        Spatial sizes must be multiples of ``config.size_multiple``.
        """
        m = self.config.size_multiple
        if any(s % m for s in x.shape[2:]):
            raise ValueError(f"input spatial shape {tuple(x.shape[2:])} is not a multiple of {m}")
        stem = self.config.stem
        if stem > 1:
            x = space_to_depth(x, stem)
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
            x = self.pool(x)
        x = self.dropout(self.bottleneck(x))
        for up, decoder in zip(self.ups, self.decoders):
            # pop: each skip is freed as soon as its decoder has used it (lower peak memory)
            x = _decode(decoder, [up(x), skips.pop()])
        x = self.head(x)
        return depth_to_space(x, stem) if stem > 1 else x


def _decode(block: nn.Module, parts: list[torch.Tensor]) -> torch.Tensor:
    """``block(cat(parts))`` for ``parts = [upsampled, skip]``, which it empties so that
    nothing here keeps them alive. A block whose first layer takes the parts themselves (an
    inference rewrite, :mod:`synapseg.model.fast`) gets them without the concatenated copy."""
    if getattr(block[0], "takes_pair", False):
        return block(parts)
    whole = torch.cat(parts, dim=1)
    parts.clear()
    return block(whole)


def space_to_depth(x: torch.Tensor, factor: int) -> torch.Tensor:
    """(b, c, z, y, x) -> (b, c * factor**3, z/f, y/f, x/f): fold f**3 blocks into channels."""
    b, c, nz, ny, nx = x.shape
    f = factor
    x = x.reshape(b, c, nz // f, f, ny // f, f, nx // f, f)
    x = x.permute(0, 1, 3, 5, 7, 2, 4, 6)
    return x.reshape(b, c * f**3, nz // f, ny // f, nx // f)


def depth_to_space(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Inverse of :func:`space_to_depth`."""
    b, c, nz, ny, nx = x.shape
    f = factor
    co = c // f**3
    x = x.reshape(b, co, f, f, f, nz, ny, nx)
    x = x.permute(0, 1, 5, 2, 6, 3, 7, 4)
    return x.reshape(b, co, nz * f, ny * f, nx * f)


def build_unet(
    config: UNetConfig | dict[str, Any] | None = None, seed: int | None = None
) -> UNet3D:
    """Build a :class:`UNet3D` from a config (or its dict); ``seed`` makes the init reproducible."""
    if config is None:
        config = UNetConfig()
    elif isinstance(config, dict):
        config = UNetConfig.from_dict(config)
    if seed is None:
        return UNet3D(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UNet3D(config)


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
