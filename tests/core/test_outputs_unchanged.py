"""The file runner and the pure core on arrays give the same outputs, byte for byte.

``segment_tomogram`` (files, resume, report) and ``synapseg.segment`` (arrays) must agree
on the probability map, the vesicle table (every column; the CSV holds no provenance, it
is in the ``.provenance.json`` beside it) and the label volume. The default test swaps the
network for the truth map in both paths; the slow one runs the shipped model.
"""

from __future__ import annotations

import numpy as np
import pytest

import synapseg
from synapseg.core.options import SegmentOptions
from synapseg.core.tomogram import segment_tomogram
from synapseg.io.tables import write_table_csv
from synapseg.io.volume import read_volume


def _assert_same(out, seg, tmp_path) -> None:
    prob = np.asarray(read_volume(out / "syn_probabilities.mrc").data)
    assert prob.dtype == np.uint8 and prob.tobytes() == np.asarray(seg.probabilities).tobytes()
    core_csv = write_table_csv(tmp_path / "core.csv", seg.vesicles)
    assert (out / "syn_vesicles.csv").read_bytes() == core_csv.read_bytes()
    labels = np.asarray(read_volume(out / "syn_vesicles.mrc").data)
    assert labels.dtype == np.uint16 and labels.tobytes() == seg.labels().tobytes()
    assert len(seg.vesicles) > 0  # something was compared


@pytest.mark.parametrize("model", ["default", "sim-unet-v2"])
def test_runner_and_core_agree(model, tomo_file, tmp_path, fake_file_hooks, fake_core_network):
    """``sim-unet-v2``'s card calibrates the threshold, the gate and the tube test: both
    paths must read it although the (fake) network stage that names the model is gone."""
    out = tmp_path / "out"
    options = SegmentOptions(formats=("csv", "labels"), model=model)
    segment_tomogram(tomo_file, out, options, hooks=fake_file_hooks)
    seg = synapseg.segment(read_volume(tomo_file), model=model)
    _assert_same(out, seg, tmp_path)


@pytest.mark.slow
def test_runner_and_core_agree_with_the_shipped_model(tomo_file, tmp_path):
    out = tmp_path / "out"
    options = SegmentOptions(formats=("csv", "labels"), device="cpu")
    segment_tomogram(tomo_file, out, options)
    seg = synapseg.segment(read_volume(tomo_file), device="cpu")
    _assert_same(out, seg, tmp_path)
