"""Fixtures of the napari plugin tests: one small simulated tomogram, segmented once.

The pure-logic tests (reader functions, corrections, fits, saving) need neither napari nor
a display; the viewer tests (``test_viewer.py``) skip without napari or a display.
"""

from __future__ import annotations

import pytest

import synapseg

VOXEL_NM = 1.68
SHAPE = (48, 128, 128)


@pytest.fixture(scope="session")
def sim():
    """A 48×128×128 simulated synapse at 1.68 nm with 10 vesicles (exact ground truth)."""
    return synapseg.simulate(shape=SHAPE, voxel_size_nm=VOXEL_NM, seed=5, n_vesicles=10)


@pytest.fixture(scope="session")
def segmented(sim, tmp_path_factory) -> dict:
    """``synapseg segment`` outputs of :func:`sim`: ``tomogram`` (the MRC) and ``out``."""
    from synapseg.io.volume_writer import write_volume
    from synapseg.pipeline import SegmentOptions, segment_tomogram

    root = tmp_path_factory.mktemp("napari_seg")
    tomo = root / "tomo.mrc"
    write_volume(tomo, sim.tomogram, VOXEL_NM)
    report = segment_tomogram(tomo, root / "out", SegmentOptions())
    return {"tomogram": tomo, "out": root / "out", "report": report, "sim": sim}
