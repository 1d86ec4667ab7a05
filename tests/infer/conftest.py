"""Small models and volumes for the inference tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from synapseg.model.registry import ModelCard
from synapseg.model.unet import UNetConfig, build_unet

TINY = UNetConfig(stem=1, base_channels=3, depth=2, convs_per_level=1)
TINY_STEM = UNetConfig(stem=2, base_channels=3, depth=1, convs_per_level=1)


def card_for(config: UNetConfig, voxel_size_nm: float = 1.6, **kw) -> ModelCard:
    return ModelCard(
        name="tiny",
        architecture=config.to_dict(),
        voxel_size_nm=voxel_size_nm,
        output_channels=["vesicle"] + [f"c{i}" for i in range(1, config.out_channels)],
        sha256="0" * 64,
        **kw,
    )


def randomised(net: nn.Module, seed: int = 0) -> nn.Module:
    """Give batch norms non-trivial running statistics, then switch to eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.running_mean.uniform_(-0.2, 0.2, generator=gen)
                m.running_var.uniform_(0.5, 2.0, generator=gen)
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.uniform_(-0.2, 0.2, generator=gen)
    return net.eval()


@pytest.fixture(scope="session")
def tiny_model():
    return randomised(build_unet(TINY, seed=0)), card_for(TINY)


@pytest.fixture(scope="session")
def tiny_stem_model():
    return randomised(build_unet(TINY_STEM, seed=1)), card_for(TINY_STEM)


class Identity(nn.Module):
    """Logit = input (a model that is symmetric under every flip and rotation)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2.0


class SymmetricConv(nn.Module):
    """A 3x3x3 blur with a kernel symmetric under flips of z, y, x and swapping y and x."""

    def __init__(self) -> None:
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        kernel = k[:, None, None] * k[None, :, None] * k[None, None, :]
        self.register_buffer("kernel", (kernel / kernel.sum())[None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 3 * torch.nn.functional.conv3d(x, self.kernel, padding=1) + 0.1


class Skewed(nn.Module):
    """Not flip-symmetric: TTA must change its output."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - torch.roll(x, 1, dims=4)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def blob_volume(shape, center, radius, rng, noise=0.3) -> np.ndarray:
    """A bright ball on a noisy background (float32)."""
    zz, yy, xx = np.indices(shape)
    r = np.sqrt((zz - center[0]) ** 2 + (yy - center[1]) ** 2 + (xx - center[2]) ** 2)
    return ((r < radius).astype(np.float32) + noise * rng.normal(size=shape)).astype(np.float32)
