"""Physical numbers are printed and stored rounded (issue 13, item 10: 1.6800000000000002)."""

from __future__ import annotations

import json

import numpy as np

from synapseg.io.volume import read_volume
from synapseg.numbers import format_sizes_nm, round_floats, round_sig
from synapseg.pipeline import segment_tomogram
from synapseg.simulate import SimulationParams, simulate_tomogram
from synapseg.simulate.writer import write_simulation


def test_round_sig_and_round_floats():
    assert round_sig(0.1 + 0.2) == 0.3
    assert round_sig(16.8 / 10 * 1.0000000000000002) == 1.68
    assert round_sig(0.004088770999999269) == 0.00408877
    assert round_sig(0.0) == 0.0 and np.isnan(round_sig(float("nan")))
    nested = {"a": [0.1 + 0.2, 3, "x", None, True], "b": (np.float32(16.8),), "c": {"d": 1e-9 / 3}}
    assert round_floats(nested) == {
        "a": [0.3, 3, "x", None, True],
        "b": [16.8],
        "c": {"d": round_sig(1e-9 / 3)},
    }
    assert format_sizes_nm((1.6800000000000002,) * 3) == "1.68 nm"
    assert format_sizes_nm((2.0, 1.68, 1.6800000000000002)) == "2 × 1.68 × 1.68 nm"


def test_segment_report_stores_rounded_voxel_sizes(tmp_path):
    params = SimulationParams(shape=(24, 80, 80), voxel_size_nm=1.68, seed=2, n_vesicles=4)
    write_simulation(tmp_path / "sim", simulate_tomogram(params, keep_phantom=False))
    tomogram = tmp_path / "sim" / "tomogram.mrc"
    raw = read_volume(tomogram).voxel_size_nm
    segment_tomogram(tomogram, tmp_path / "out")
    text = (tmp_path / "out" / "tomogram_report.json").read_text()
    report = json.loads(text)
    assert report["voxel_size_nm_zyx"] == [1.68, 1.68, 1.68]
    provenance = json.loads((tmp_path / "out" / "tomogram_vesicles.provenance.json").read_text())
    assert provenance["voxel_size_nm_zyx"] == [1.68, 1.68, 1.68]
    if raw[0] != 1.68:  # the header's float32 Å gives 1.6800000000000002 nm: never shown
        assert repr(raw[0]) not in text
