"""Tiling: lattice-aligned tiles, exact blending, edges and odd shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synapseg.infer.predict import predict_array
from synapseg.infer.tiling import iter_tiles, plan_tiles

from .conftest import TINY, TINY_STEM, card_for


@pytest.mark.parametrize(
    "shape,tile,halo,multiple",
    [((37, 70, 53), 24, 4, 4), ((5, 9, 130), (8, 8, 32), (0, 0, 6), 8), ((16, 16, 16), 64, 8, 16)],
)
def test_plan_covers_grid_on_the_lattice(shape, tile, halo, multiple):
    plan = plan_tiles(shape, tile, halo, multiple)
    assert all(p % multiple == 0 and p >= s for p, s in zip(plan.padded_shape, shape))
    tiles = list(iter_tiles(plan))
    assert len(tiles) == plan.n_tiles
    covered = np.zeros(plan.padded_shape)
    for t in tiles:
        assert all(s % multiple == 0 for s in t.start)
        assert all(s + n <= p for s, n, p in zip(t.start, t.size, plan.padded_shape))
        covered[t.slices] += plan.weight(t)
    # the separable normaliser is exactly the sum of the tile windows, and never zero
    wz, wy, wx = plan.normaliser()
    np.testing.assert_allclose(
        covered, wz[:, None, None] * wy[None, :, None] * wx[None, None, :], rtol=1e-5
    )
    assert covered.min() > 0


def test_halo_faces_get_zero_weight_only_inside():
    plan = plan_tiles((10, 10, 100), (16, 16, 32), 5, 4)
    assert len(plan.starts[2]) > 2
    first, middle = plan.profile(2, 0), plan.profile(2, plan.starts[2][1])
    last = plan.profile(2, plan.starts[2][-1])
    assert first[0] > 0 and (first[-5:] == 0).all()
    assert (middle[:5] == 0).all() and (middle[-5:] == 0).all()
    assert (last[:5] == 0).all() and last[-1] > 0
    assert plan.halo == (0, 0, 5)  # axes that fit in one tile need no halo


def test_plan_rejects_bad_tiles():
    with pytest.raises(ValueError, match="multiple"):
        plan_tiles((40, 40, 40), 30, 2, 8)
    with pytest.raises(ValueError, match="halo"):
        plan_tiles((40, 40, 40), 16, 8, 8)


def _whole(net, image: np.ndarray, multiple: int) -> np.ndarray:
    pad = [(0, -(-n // multiple) * multiple - n) for n in image.shape]
    x = torch.from_numpy(np.pad(image, pad))[None, None]
    with torch.inference_mode():
        p = torch.sigmoid(net(x))[0, 0].numpy()
    return p[tuple(slice(0, n) for n in image.shape)]


@pytest.mark.parametrize("which", ["plain", "stem"])
def test_tiled_equals_whole_volume(which, tiny_model, tiny_stem_model, rng):
    net, card = tiny_model if which == "plain" else tiny_stem_model
    cfg = TINY if which == "plain" else TINY_STEM
    image = rng.normal(size=(50, 46, 45)).astype(np.float32)  # not divisible by the tile
    whole = _whole(net, image, cfg.size_multiple)
    tile = -(-(2 * cfg.halo + 16) // cfg.size_multiple) * cfg.size_multiple
    tiled = predict_array(image, (net, card), device="cpu", tile_size=tile, halo=cfg.halo)
    assert tiled.shape == (1, *image.shape)
    np.testing.assert_allclose(tiled[0], whole, atol=1e-4)
    # the tiling really cut the volume in every axis
    from synapseg.infer.predict import choose_tiling

    plan = choose_tiling(cfg, image.shape, tile, cfg.halo)
    assert all(len(s) >= 2 for s in plan.starts)


def test_short_halo_blends_without_seams(tiny_model, rng):
    """With less halo than the receptive field, the Gaussian blend keeps errors small."""
    net, card = tiny_model
    image = rng.normal(size=(16, 64, 64)).astype(np.float32)
    whole = _whole(net, image, TINY.size_multiple)
    tiled = predict_array(image, (net, card), device="cpu", tile_size=32, halo=4)[0]
    assert np.abs(tiled - whole).max() < 1e-3


def test_constant_predictions_blend_to_the_constant(rng):
    class Const(torch.nn.Module):
        def forward(self, x):
            return torch.zeros_like(x) + 0.7

    card = card_for(TINY)
    image = rng.normal(size=(20, 50, 45)).astype(np.float32)
    out = predict_array(image, (Const(), card), device="cpu", tile_size=28, halo=4)
    np.testing.assert_allclose(out, 1 / (1 + np.exp(-0.7)), rtol=1e-5)
