"""Pyto labels filled from the context stage: 2 = AZ membrane, 3 = cytoplasm, vesicles ≥ 10."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from synapseg.context import analyse_context
from synapseg.context.files import context_boundaries, write_active_zone, write_context_pyto
from synapseg.io.volume import read_volume
from synapseg.io.volume_writer import write_volume
from synapseg.simulate import SimulationParams
from synapseg.simulate.phantom import build_phantom

REFERENCE = (
    Path(__file__).resolve().parents[3] / "shared" / "reference" / "pyto-presynaptic-example"
)
VS = 1.68


@pytest.fixture(scope="module")
def context_folder(tmp_path_factory):
    params = SimulationParams(shape=(40, 160, 160), voxel_size_nm=VS, seed=31)
    ph = build_phantom(params, np.random.default_rng(np.random.SeedSequence(31).spawn(2)[0]))
    prob = np.where(np.isin(ph.membrane_labels, [1, 3, 4]), 255, 0).astype(np.uint8)
    ctx = analyse_context(prob, ph.vesicles, VS)
    folder = tmp_path_factory.mktemp("ctx")
    write_active_zone(folder / "t_az.json", ctx.az, VS)
    write_volume(folder / "t_compartment.mrc", ctx.compartment.astype(np.uint8), VS)
    return folder, ctx


def test_labels_have_pyto_ids_without_manual_input(context_folder):
    folder, ctx = context_folder
    table = ctx.vesicles
    out = write_context_pyto(
        folder / "t_pyto_labels.mrc",
        table,
        folder,
        "t",
        shape=ctx.membranes.shape,
        voxel_size_nm=VS,
    )
    labels = np.asarray(read_volume(out["labels"], VS).data)
    assert labels.dtype == np.int16
    ids = set(np.unique(labels).tolist())
    assert {0, 2, 3} <= ids and min(i for i in ids if i > 3) == 10
    assert (labels[ctx.az.mask] == 2).mean() > 0.99  # vesicles never overwrite the AZ
    text = out["params"].read_text()
    assert "segmentation_region = 3" in text and "distance_id = 2" in text
    assert "boundary_ids = [2] +" in text and 'layers_file_name = "t_pyto_layers.mrc"' in text
    layers = np.asarray(read_volume(out["layers"], VS).data)
    assert layers.dtype == np.int16 and layers.max() >= 3
    assert not layers[labels == 0].any()  # layers only inside the region (and its vesicles)
    near = layers[(labels == 3)]
    assert (near[near > 0] >= 1).all()


def test_no_context_files_means_no_auto_labels(tmp_path):
    assert (
        write_context_pyto(
            tmp_path / "x.mrc", None, tmp_path, "x", shape=(2, 2, 2), voxel_size_nm=1
        )
        is None
    )
    assert context_boundaries(None, None) is None
    both = context_boundaries(np.eye(3, dtype=bool)[None], np.ones((1, 3, 3), bool))
    assert both.dtype == np.int16 and both[0, 0, 0] == 2 and both[0, 0, 1] == 3


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="../shared/reference is not here")
def test_ids_follow_the_real_pyto_example(context_folder, tmp_path):
    """The real example: 2 = AZ membrane, 3 = region, vesicles from 10 up (int8 there)."""
    import mrcfile

    with mrcfile.open(REFERENCE / "viz_labels.mrc", permissive=True) as m:
        real = set(np.unique(m.data).tolist())
    folder, ctx = context_folder
    out = write_context_pyto(
        tmp_path / "t_pyto_labels.mrc",
        ctx.vesicles,
        folder,
        "t",
        shape=ctx.membranes.shape,
        voxel_size_nm=VS,
    )
    ours = set(np.unique(np.asarray(read_volume(out["labels"], VS).data)).tolist())
    assert {i for i in real if i < 10} == {i for i in ours if i < 10} == {0, 2, 3}
    assert min(i for i in ours if i >= 10) == 10
