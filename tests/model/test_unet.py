"""Tests for the compact 3D U-Net."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synapseg.model.fast import fuse_batchnorm, prepare_for_inference
from synapseg.model.unet import (
    UNetConfig,
    build_unet,
    count_parameters,
    depth_to_space,
    space_to_depth,
)


def _reach(config: UNetConfig, n: int = 128) -> list[tuple[int, int]]:
    """Measured input window of single output voxels, via the gradient."""
    net = build_unet(config, seed=0).eval()
    gen = torch.Generator().manual_seed(1)
    out = []
    for pos in range(64, 64 + config.size_multiple):
        x = torch.randn(1, 1, n, 16, 16, generator=gen, requires_grad=True)
        net(x)[0, 0, pos, 8, 8].backward()
        hit = np.nonzero((x.grad[0, 0].abs() > 0).numpy().any(axis=(1, 2)))[0]
        out.append((int(hit.min()) - pos, int(hit.max()) - pos))
    return out


@pytest.mark.parametrize(
    "config",
    [
        UNetConfig(stem=1, depth=2, convs_per_level=1, base_channels=4),
        UNetConfig(stem=1, depth=2, convs_per_level=1, base_channels=4, upsample="trilinear"),
        UNetConfig(stem=2, depth=2, convs_per_level=1, base_channels=4),
    ],
    ids=["plain", "trilinear", "stem2"],
)
def test_receptive_field_matches_gradient(config):
    measured = _reach(config)
    assert measured == config._dependence_windows()
    assert config.receptive_field == max(hi - lo + 1 for lo, hi in measured)
    assert config.halo == max(max(-lo, hi) for lo, hi in measured)
    assert config.min_tile % config.size_multiple == 0
    assert config.min_tile >= config.receptive_field


@pytest.mark.parametrize("stem", [1, 2])
def test_output_shape_channels_and_multiple(stem):
    cfg = UNetConfig(stem=stem, base_channels=4, depth=2, out_channels=3)
    assert cfg.size_multiple == 4 * stem
    net = build_unet(cfg, seed=0).eval()
    y = net(torch.zeros(2, 1, 8, 16, 24))
    assert y.shape == (2, 3, 8, 16, 24)
    with pytest.raises(ValueError, match=f"multiple of {4 * stem}"):
        net(torch.zeros(1, 1, 8, 20, 16) if stem == 2 else torch.zeros(1, 1, 8, 10, 16))


def test_space_to_depth_round_trip_and_layout():
    x = torch.randn(2, 3, 4, 6, 8)
    y = space_to_depth(x, 2)
    assert y.shape == (2, 24, 2, 3, 4)
    assert torch.equal(y[1, 8:16, 1, 2, 3], x[1, 1, 2:4, 4:6, 6:8].reshape(-1))
    assert torch.equal(depth_to_space(y, 2), x)


def test_config_round_trip_and_validation():
    cfg = UNetConfig(stem=1, base_channels=6, depth=4, max_channels=32, norm="none")
    assert UNetConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.channels == (6, 12, 24, 32, 32)
    with pytest.raises(ValueError, match="unknown"):
        UNetConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="norm"):
        UNetConfig(norm="instance")


def test_seeded_build_is_reproducible():
    a = build_unet(UNetConfig(base_channels=4, depth=2), seed=3)
    b = build_unet(UNetConfig(base_channels=4, depth=2), seed=3)
    c = build_unet(UNetConfig(base_channels=4, depth=2), seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_fused_batchnorm_is_equivalent():
    net = build_unet(UNetConfig(base_channels=4, depth=2), seed=0)
    # give the batch norms non-trivial statistics
    net.train()
    with torch.no_grad():
        net(torch.randn(2, 1, 16, 16, 16) * 3 + 1)
    net.eval()
    fused = fuse_batchnorm(net)
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in fused.modules())
    assert any(isinstance(m, torch.nn.BatchNorm3d) for m in net.modules())
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.inference_mode():
        torch.testing.assert_close(fused(x), net(x), atol=1e-5, rtol=1e-4)


def test_no_instance_norm_and_parameter_count():
    net = build_unet(UNetConfig())  # the default architecture
    assert not any(isinstance(m, torch.nn.InstanceNorm3d) for m in net.modules())
    assert 100_000 < count_parameters(net) < 1_500_000  # a few MB of float32 weights


def test_prepare_for_inference_is_equivalent_and_uses_onednn():
    net = build_unet(UNetConfig(base_channels=4, depth=2), seed=0)
    fast = prepare_for_inference(net, "cpu")
    assert not fast.training and net.encoders[0][0].__class__ is torch.nn.Conv3d
    if torch.backends.mkldnn.is_available():
        assert not any(type(m) is torch.nn.Conv3d for m in fast.modules())
    x = torch.randn(1, 1, 16, 24, 32)
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), net.eval()(x), atol=1e-5, rtol=1e-4)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN")
@pytest.mark.parametrize("upsample", ["transpose", "trilinear"])
def test_inference_decoders_skip_the_concatenation(upsample, monkeypatch):
    """The prepared network's decoders take (up, skip) and never concatenate them."""
    net = build_unet(UNetConfig(base_channels=4, depth=2, upsample=upsample), seed=0).eval()
    fast = prepare_for_inference(net, "cpu")
    assert all(getattr(block[0], "takes_pair", False) for block in fast.decoders)
    x = torch.randn(1, 1, 16, 24, 32)
    with torch.inference_mode():
        want = net(x)
        calls = []
        cat = torch.cat
        monkeypatch.setattr(torch, "cat", lambda *a, **k: calls.append(1) or cat(*a, **k))
        got = fast(x)
        # the pair convolution also accepts a concatenated input (same result)
        block = fast.decoders[0]
        up = fast.ups[0](torch.randn(1, 16, 4, 6, 8))
        skip = torch.randn(1, 8, 8, 12, 16)
        pair = block[0]([up, skip])
        whole = block[0](cat([up, skip], dim=1))
    assert calls == []
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(pair, whole, atol=1e-5, rtol=1e-4)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN")
@pytest.mark.parametrize("upsample", ["transpose", "trilinear"])
def test_inference_relus_are_fused_into_the_convolutions(upsample, monkeypatch):
    """Each ReLU after a convolution runs inside oneDNN's convolution (decoders: with the
    split sum), with the same output as the separate ReLU, bit for bit."""
    import synapseg.model.fast as fast_mod

    if not fast_mod._has_pointwise():
        pytest.skip("this PyTorch has no oneDNN pointwise fusion")
    net = build_unet(UNetConfig(base_channels=4, depth=2, upsample=upsample), seed=0).eval()
    fused = prepare_for_inference(net, "cpu")
    assert not any(type(m) is torch.nn.ReLU for m in fused.modules())
    monkeypatch.setattr(fast_mod, "_has_pointwise", lambda: False)
    separate = prepare_for_inference(net, "cpu")
    assert any(type(m) is torch.nn.ReLU for m in separate.modules())
    x = torch.randn(1, 1, 16, 24, 32)
    with torch.inference_mode():
        torch.testing.assert_close(fused(x), separate(x), atol=0, rtol=0)
