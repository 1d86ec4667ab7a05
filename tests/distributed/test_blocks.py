"""Blocks: partitions with halos, tile groups, and exact maps off the model's voxel size."""

from __future__ import annotations

import numpy as np
import pytest

from synapseg.distributed.blocks import (
    Block,
    iter_blocks,
    network_blocks,
    tiles_for,
    vesicle_halo_px,
)
from synapseg.infer.tiling import plan_tiles


def test_iter_blocks_partition_halo_and_alignment():
    shape = (30, 70, 45)
    count = np.zeros(shape, np.uint8)
    for b in iter_blocks(shape, (16, 32, 20), (3, 5, 4), align=(1, 4, 4)):
        count[b.core] += 1
        for core, outer, h, a, n in zip(b.core, b.outer, (3, 5, 4), (1, 4, 4), shape):
            assert outer.start % a == 0 and outer.start <= max(core.start - h, 0)
            assert outer.stop == min(core.stop + h, n)
        inner = b.core_in_outer
        assert all(i.stop - i.start == c.stop - c.start for i, c in zip(inner, b.core))
    assert np.all(count == 1)


def test_ownership_is_by_rounded_center():
    b = Block((0, 0, 0), (slice(0, 10), slice(0, 10), slice(0, 10)), (slice(0, 20),) * 3)
    owned = b.owns(np.array([[9.4, 0, 0], [9.6, 0, 0], [-0.4, 5, 5]]))
    assert owned.tolist() == [True, False, True]


def test_vesicle_halo_covers_a_diameter():
    assert vesicle_halo_px(40.0, (2.0, 1.0, 1.0)) == [45, 90, 90]


def test_network_blocks_use_each_tile_where_it_weighs():
    plan = plan_tiles((40, 600, 500), 128, 16, 16)
    blocks = network_blocks(plan, (1.0, 1.0, 1.0), plan.shape, 2)
    count = np.zeros(plan.shape, np.uint8)
    for b in blocks:
        count[b.core] += 1
        tiles = tiles_for(plan, b.core, (1.0, 1.0, 1.0))
        weight = np.zeros(b.core_shape)
        for t in tiles:  # the tiles listed cover the core with their blending weight
            w = plan.weight(t)
            src = tuple(slice(max(s.start, c.start), min(s.stop, c.stop)) for s, c in
                        zip(t.data_slices(plan.shape)[0], b.core))  # fmt: skip
            if all(s.stop > s.start for s in src):
                loc = tuple(slice(s.start - st, s.stop - st) for s, st in zip(src, t.start))
                dst = tuple(slice(s.start - c.start, s.stop - c.start) for s, c in zip(src, b.core))
                weight[dst] += w[loc]
        assert weight.min() > 0
    assert np.all(count == 1) and len(blocks) >= 4


@pytest.mark.slow  # ~25 s under load
def test_blocks_equal_the_whole_map_off_the_model_voxel_size():
    """Input at 1.5 nm (the model's is 1.8): every block resamples its region as the whole
    volume is resampled, so the map is still identical."""
    import synapseg
    from synapseg.distributed.block_predict import predict_block
    from synapseg.distributed.decisions import decide
    from synapseg.infer.predict import predict_volume
    from synapseg.io.volume import Volume

    sim = synapseg.simulate(shape=(16, 272, 272), voxel_size_nm=1.5, seed=3)
    vol = Volume(sim.tomogram, 1.5)
    d = decide(vol, "default", {"device": "cpu", "invert": "no"}, tile_size=208)
    ref = np.zeros(vol.shape, np.uint8)
    predict_volume(vol, "default", device="cpu", tile_size=208, out=ref, specimen=d.specimen)
    blocks = network_blocks(d.plan, d.factors, vol.shape, 1)
    out = np.zeros(vol.shape, np.uint8)
    for b in blocks:
        out[b.core] = predict_block(vol.data, b, d)
    assert len(blocks) == 4 and d.factors[0] != 1
    assert np.array_equal(out, ref)


def test_network_blocks_hold_at_most_the_old_default_tile_voxels():
    from synapseg.distributed.blocks import MAX_BLOCK_MODEL_VOXELS

    plan = plan_tiles((600, 1400, 1400), (384, 304, 416), 24, 16)  # budgeted default tiles
    blocks = network_blocks(plan, (1.0, 1.0, 1.0), plan.shape, 2)
    per_block = MAX_BLOCK_MODEL_VOXELS // int(np.prod(plan.tile_shape))  # 2 tiles of these
    assert len(blocks) >= plan.n_tiles / per_block  # groups of 2, not of 2x2x2 tiles
    small = plan_tiles((600, 1400, 1400), 128, 16, 16)  # small tiles: 2 per axis as asked
    assert len(network_blocks(small, (1.0, 1.0, 1.0), small.shape, 2)) < small.n_tiles / 4


def test_block_tiling_defaults_to_256_cubes_not_the_budgeted_tiles():
    """Without --tile-size the block-wise path plans 256³ tiles: the single-process budgeted
    default (e.g. 384×288×288 on a 4k grid) made one block compute 8 big tiles (2.97 GB)."""
    from synapseg.distributed.decisions import block_tiling
    from synapseg.infer.tiling import choose_tiling
    from synapseg.model.registry import load_model

    _, card = load_model("default", device="cpu")
    grid = (835, 3340, 3340)  # the 1024×4096×4096 plan's model grid, about
    plan = block_tiling(card.config, grid)
    assert plan.tile_shape == (256, 256, 256)
    assert choose_tiling(card.config, grid).tile_shape != plan.tile_shape
    given = block_tiling(card.config, grid, 208)  # a given tile size still wins
    assert given.tile_shape == choose_tiling(card.config, grid, 208).tile_shape == (208,) * 3
