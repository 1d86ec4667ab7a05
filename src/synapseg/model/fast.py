"""Inference-time rewrites of :class:`~synapseg.model.unet.UNet3D` for CPU speed.

Each rewrite gives the original network's output to float rounding:

- batch norm folded into the preceding convolution (:func:`fuse_batchnorm`);
- every 3D convolution on PyTorch's oneDNN kernel, activations channels-last
  (:class:`_OneDNNConv3d`);
- each decoder block's first convolution split over its two inputs, the upsampled path and
  the skip connection (:class:`_OneDNNPairConv3d`): ``conv(cat([u, s]), W) = conv(u, W_u) +
  conv(s, W_s)``, so the concatenated tensor (the largest of the pass, 2x a level-0
  activation) is never built. Same arithmetic, one copy less; with the skips freed as they
  are used, the forward-pass peak on a 224x320x448 tile fell from 1.26 to 0.89 GB
  (docs/model.md);
- each ReLU after a convolution applied by oneDNN as it writes the convolution's output
  (``torch.ops.mkldnn._convolution_pointwise``; for the split decoder convolution the sum
  and the ReLU together): bit-identical, one memory pass per layer less.
"""

from __future__ import annotations

import copy
import functools

import torch
from torch import nn

from synapseg.model.unet import UNet3D, _ConvBlock


def fuse_batchnorm(net: UNet3D) -> nn.Module:
    """Return an eval-mode copy of ``net`` with every BatchNorm folded into its convolution.

    Numerically equivalent (to float rounding) and ~10-20% faster on CPU. The input is
    left untouched.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fused = copy.deepcopy(net).eval()
    for block in fused.modules():
        if not isinstance(block, _ConvBlock):
            continue
        layers = list(block)
        new: list[nn.Module] = []
        i = 0
        while i < len(layers):
            layer = layers[i]
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            if isinstance(layer, nn.Conv3d) and isinstance(nxt, nn.BatchNorm3d):
                new.append(fuse_conv_bn_eval(layer, nxt))
                i += 2
            else:
                new.append(layer)
                i += 1
        for name in list(block._modules):
            del block._modules[name]
        for j, layer in enumerate(new):
            block.add_module(str(j), layer)
    return fused


def _channels_last(w: torch.Tensor) -> torch.Tensor:
    return w.detach().contiguous(memory_format=torch.channels_last_3d)


@functools.lru_cache(maxsize=1)
def _has_pointwise() -> bool:
    """Whether oneDNN's fused convolution + ReLU ops run here and give the unfused result
    (checked once on a tiny input: the ops are private to PyTorch, so a platform or version
    where they are missing or differ falls back to separate ReLUs)."""
    try:
        conv = nn.Conv3d(2, 2, 3, padding=1).eval()
        w = _channels_last(conv.weight)
        x = torch.randn(1, 2, 4, 4, 4).contiguous(memory_format=torch.channels_last_3d)
        with torch.inference_mode():
            y = _onednn(x, w, conv.bias, conv)
            want = torch.relu(y + _onednn(x, w, None, conv))
            got = torch.ops.mkldnn._convolution_pointwise_.binary(
                _onednn(x, w, conv.bias, conv), x, w, None, conv.padding, conv.stride,
                conv.dilation, conv.groups, "add", None, "relu", [], None,
            )  # fmt: skip
            fused = _onednn(x, w, conv.bias, conv, relu=True)
        return bool(torch.allclose(got, want) and torch.allclose(fused, torch.relu(y)))
    except (AttributeError, RuntimeError, TypeError):  # missing, unsupported, other signature
        return False


def _onednn(
    x: torch.Tensor, w: torch.Tensor, bias, conv: nn.Module, relu: bool = False
) -> torch.Tensor:
    x = x.contiguous(memory_format=torch.channels_last_3d)
    if relu:  # ReLU applied as the convolution writes its output: one pass less
        return torch.ops.mkldnn._convolution_pointwise(
            x, w, bias, conv.padding, conv.stride, conv.dilation, conv.groups, "relu", [], None
        )
    return torch.mkldnn_convolution(
        x, w, bias, conv.padding, conv.stride, conv.dilation, conv.groups
    )


class _OneDNNConv3d(nn.Module):
    """A 3D convolution that always takes PyTorch's oneDNN (mkldnn) CPU kernel.

    PyTorch's heuristic sends small-batch convolutions of small feature maps to a slow
    im2col path (``slow_conv3d``); on the U-Net's deeper levels that path is ~2.5x slower
    per voxel than oneDNN (measured, docs/model.md). Same weights, same result.

    Activations and weights are kept channels-last (``torch.channels_last_3d``, oneDNN's
    native layout): no reorder around each convolution, ~1.3-1.45x the throughput of the
    contiguous layout on the default model (issue 17; docs/benchmarks.md). The result
    differs from the contiguous layout by float rounding only (~5e-6 on the logits).
    """

    relu = False  # set by :func:`_fuse_relus` when the next layer is a ReLU it replaces

    def __init__(self, conv: nn.Conv3d) -> None:
        super().__init__()
        self.weight = nn.Parameter(_channels_last(conv.weight), requires_grad=False)
        self.bias = conv.bias
        self.padding, self.stride = conv.padding, conv.stride
        self.dilation, self.groups = conv.dilation, conv.groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _onednn(x, self.weight, self.bias, self, self.relu)


class _OneDNNPairConv3d(_OneDNNConv3d):
    """A decoder block's first convolution taking ``[up, skip]`` instead of their
    channel concatenation: two oneDNN convolutions over the two halves of the weights,
    the second added in place into the first's output. It empties the list, so ``up`` is
    freed before the second convolution allocates its output."""

    takes_pair = True

    def __init__(self, conv: nn.Conv3d, n_up: int) -> None:
        super().__init__(conv)
        self.n_up = n_up
        self.weight_up = nn.Parameter(_channels_last(conv.weight[:, :n_up]), requires_grad=False)
        self.weight_skip = nn.Parameter(_channels_last(conv.weight[:, n_up:]), requires_grad=False)

    def forward(self, pair: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        if isinstance(pair, torch.Tensor):  # called on a concatenation after all
            return super().forward(pair)
        y = _onednn(pair.pop(0), self.weight_up, self.bias, self)
        skip = pair.pop(0)
        if self.relu:  # relu(y + conv(skip)), accumulated into y by oneDNN itself
            return torch.ops.mkldnn._convolution_pointwise_.binary(
                y,
                skip.contiguous(memory_format=torch.channels_last_3d),
                self.weight_skip,
                None,
                self.padding,
                self.stride,
                self.dilation,
                self.groups,
                "add",
                None,
                "relu",
                [],
                None,
            )
        return y.add_(_onednn(skip, self.weight_skip, None, self))


def prepare_for_inference(net: nn.Module, device: str | torch.device = "cpu") -> nn.Module:
    """An eval-mode copy of ``net`` made fast for inference on ``device``.

    Folds batch norm into the convolutions (:func:`fuse_batchnorm`) and, on CPU with
    oneDNN available, makes every 3D convolution use the oneDNN kernel, the decoders'
    first ones without the skip concatenation. Outputs equal the original network's to
    float rounding.
    """
    fast = fuse_batchnorm(net) if isinstance(net, UNet3D) else copy.deepcopy(net).eval()
    device = torch.device(device)
    if device.type == "cpu" and torch.backends.mkldnn.is_available():
        if isinstance(fast, UNet3D):
            for up, block in zip(fast.ups, fast.decoders):
                first = block[0]
                if type(first) is nn.Conv3d and first.padding_mode == "zeros":
                    n_up = up.up.out_channels
                    block._modules["0"] = _OneDNNPairConv3d(first, n_up)
        _swap_convs(fast)
        if _has_pointwise():
            _fuse_relus(fast)
    return fast.to(device)


def _fuse_relus(module: nn.Module) -> None:
    """Fold each ReLU that follows a oneDNN convolution into it (the ReLU becomes Identity)."""
    for block in module.modules():
        if not isinstance(block, nn.Sequential):
            continue
        names = list(block._modules)
        for a, b in zip(names, names[1:]):
            conv, act = block._modules[a], block._modules[b]
            if isinstance(conv, _OneDNNConv3d) and type(act) is nn.ReLU:
                conv.relu = True
                block._modules[b] = nn.Identity()


def _swap_convs(module: nn.Module) -> None:
    for name, child in module.named_children():
        if type(child) is nn.Conv3d and child.padding_mode == "zeros":
            setattr(module, name, _OneDNNConv3d(child))
        else:
            _swap_convs(child)
