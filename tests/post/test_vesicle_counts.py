"""The counts in find_vesicles' info (and segment's report) add up (issue 13, item 10)."""

from __future__ import annotations

import json

import numpy as np

from synapseg.io.volume_writer import write_volume
from synapseg.pipeline import SegmentOptions, segment_tomogram
from synapseg.post.vesicles import PostParams, find_vesicles
from synapseg.simulate import SimulationParams, simulate_tomogram
from synapseg.simulate.writer import write_simulation

VOXEL_NM = 1.68


def _assert_consistent(counts: dict, n_table: int, n_rejected: int) -> None:
    assert counts["vesicles"] == n_table
    assert counts["rejected_total"] == n_rejected == sum(counts["rejected"].values())
    assert counts["candidates"] == counts["vesicles"] + counts["rejected_total"], counts


def test_size_rejections_are_counted_among_the_candidates(kit):
    """A compartment too large to be a vesicle is rejected before the sphere fit: it still
    counts as a candidate, so candidates = vesicles + rejected."""
    shape = (48, 96, 160)
    centers = np.array([[24.0, 30.0, 30.0], [24.0, 66.0, 30.0], [24.0, 30.0, 66.0]])
    compartment = np.array([[24.0, 48.0, 120.0]])
    all_c = np.vstack([centers, compartment])
    mid = np.array([14.0, 15.0, 16.0, 30.0])
    tomo = kit.make_phantom(shape, all_c, mid, seed=3)
    prob = kit.blurred_balls(shape, all_c, mid + 2.25, sigma_px=1.5)
    table, rejected, info = find_vesicles(tomo, prob, VOXEL_NM, PostParams(max_radius_nm=20.0))
    counts = info["counts"]
    assert counts["rejected"].get("too large", 0) >= 1
    assert counts["fitted"] == counts["candidates"] - counts["rejected"]["too large"]
    _assert_consistent(counts, len(table), len(rejected))


def test_segment_report_counts_add_up_with_a_mask(tmp_path):
    """--mask removals are rejections too: the report's counts still add up."""
    params = SimulationParams(shape=(32, 112, 112), voxel_size_nm=VOXEL_NM, seed=4, n_vesicles=8)
    write_simulation(tmp_path / "sim", simulate_tomogram(params, keep_phantom=False))
    mask = np.zeros(params.shape, np.uint8)
    mask[:, :, : params.shape[2] // 2] = 1
    write_volume(tmp_path / "mask.mrc", mask, VOXEL_NM)
    options = SegmentOptions(mask=tmp_path / "mask.mrc")
    report = segment_tomogram(tmp_path / "sim" / "tomogram.mrc", tmp_path / "out", options)
    stage = json.loads((tmp_path / "out" / "tomogram_report.json").read_text())["stages"]
    counts = stage["vesicles"]["counts"]
    assert counts["rejected"].get("center outside --mask", 0) >= 1, counts
    _assert_consistent(counts, report["n_vesicles"], len(stage["vesicles"]["rejected"]))
