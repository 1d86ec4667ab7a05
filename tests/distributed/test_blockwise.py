"""Block-wise segmentation on a dask LocalCluster equals the single-process run.

The reference is ``synapseg.segment`` on the whole tomogram with the same parameters: its
own whole-volume decisions (specimen, wedge, statistics, threshold) are the ones the
block-wise run takes once and hands to the blocks, so the two must agree: the same
probability map voxel for voxel, the same vesicles with the same centers, including those
cut by block faces.
"""

from __future__ import annotations

import numpy as np

from synapseg.distributed.blocks import iter_blocks, network_blocks

CENTERS = ["center_z_px", "center_y_px", "center_x_px"]


def test_blocks_cover_the_volume_once(blockwise):
    d = blockwise.decisions
    shape = d.grid.shape
    for blocks in (
        network_blocks(d.plan, d.factors, shape, 1),
        list(iter_blocks(shape, (32, 112, 112), 30, d.specimen.cell_px)),
    ):
        count = np.zeros(shape, np.uint8)
        for b in blocks:
            count[b.core] += 1
        assert np.all(count == 1)
        assert len(blocks) >= 4


def test_probabilities_equal_single_process(blockwise, reference):
    assert np.array_equal(np.asarray(blockwise.probabilities), np.asarray(reference.probabilities))


def test_vesicles_equal_single_process(blockwise, reference):
    a, b = reference.vesicles, blockwise.vesicles
    assert len(a) > 10 and len(a) == len(b)
    vs = np.asarray(blockwise.decisions.grid.voxel_size_nm)
    gap_nm = np.abs(a[CENTERS].to_numpy() - b[CENTERS].to_numpy()) * vs
    assert gap_nm.max() < 1e-3
    assert np.array_equal(a["id"].to_numpy(), b["id"].to_numpy())
    # the radius fit turns rounding into a few 0.01 nm (docs/scaling.md)
    assert np.abs(a["radius_nm"].to_numpy() - b["radius_nm"].to_numpy()).max() < 0.1


def test_vesicles_cut_by_block_faces_are_found_once(blockwise):
    table = blockwise.vesicles
    c = table[CENTERS].to_numpy()
    r_px = (table["outer_radius_nm"].to_numpy() / 1.8)[:, None]
    faces_y = np.array([112.0])
    cut = (np.abs(c[:, 1:2] - faces_y) < r_px) | (np.abs(c[:, 2:3] - faces_y) < r_px)
    assert cut.any(axis=1).sum() >= 2
    d = np.linalg.norm(c[:, None] - c[None], axis=-1) + np.eye(len(c)) * 1e9
    assert d.min() > 2.0  # no vesicle twice
