"""Fixtures of the napari plugin tests: one small simulated tomogram, segmented once.

The pure-logic tests (reader functions, corrections, fits, saving) need neither napari nor
a display; the viewer tests (``test_viewer.py``) skip without napari or a display.
"""

from __future__ import annotations

import os
from pathlib import Path

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


@pytest.fixture
def need_display():
    """Skip when no display can be made (no Xvfb, no DISPLAY, not Qt's offscreen platform)."""
    pytest.importorskip("napari")
    pytest.importorskip("pytestqt")
    if os.name != "nt" and not (
        os.environ.get("DISPLAY")
        or os.environ.get("WAYLAND_DISPLAY")
        or os.environ.get("QT_QPA_PLATFORM") == "offscreen"
    ):
        pytest.skip("no display for napari (install Xvfb and pytest-xvfb: ./install.sh test)")
    return Path.cwd()
