"""``synapseg segment --backend dask``: a batch with a broken tomogram, OME-Zarr outputs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from synapseg.cli import app


@pytest.fixture
def in_process_cluster(monkeypatch, local_client):
    """``make_client`` hands out the session's in-process LocalCluster (fast to start)."""
    import synapseg.distributed.backend as backend

    class Shared:  # closing it is the fixture's job
        def __getattr__(self, name):
            return getattr(local_client, name)

        def close(self):
            pass

        cluster = None

    monkeypatch.setattr(backend, "make_client", lambda *a, **k: Shared())


def test_dask_batch_goes_on_past_a_broken_tomogram(sim_mrc, tmp_path, in_process_cluster):
    import synapseg

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(sim_mrc, folder / "good.mrc")
    (folder / "broken.mrc").write_bytes(b"not an mrc file" * 100)
    out = tmp_path / "out"
    args = ["segment", str(folder), "-o", str(out), "--backend", "dask", "--invert", "no"]
    args += ["--tile-size", "208", "--volume-format", "zarr"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    summary = json.loads((out / "batch_summary.json").read_text())
    assert [f["tomogram"].endswith("broken.mrc") for f in summary["failed"]] == [True]
    assert len(summary["done"]) == 1 and summary["done"][0]["n_vesicles"] > 0
    labels = synapseg.read_volume(out / "good_vesicles.zarr")
    table = synapseg.io.tables.read_table_csv(out / "good_vesicles.csv")
    assert labels.shape == synapseg.read_volume(sim_mrc).shape
    assert set(np.unique(np.asarray(labels.data[:]))) - {0} == set(table["id"])
    report = json.loads((out / "good_report.json").read_text())
    assert report["backend"] == "dask" and report["finished"]
    again = CliRunner().invoke(app, args)  # the finished one is skipped
    summary = json.loads((out / "batch_summary.json").read_text())
    assert again.exit_code == 2 and len(summary["skipped"]) == 1


def test_interrupted_block_run_resumes_after_its_probabilities(sim_mrc, tmp_path, monkeypatch):
    """A run that dies after the network (the 1024×4096×4096 run lost 1.5 h that way) keeps
    its probability map; the rerun reuses it and writes what an uninterrupted run writes."""
    import pandas as pd

    import synapseg.distributed.files as files
    from synapseg.core.options import SegmentOptions

    opts = SegmentOptions(invert="no", tile_size=208, device="cpu", formats=("csv", "json"))
    fresh = files.segment_file(sim_mrc, tmp_path / "fresh", opts, volume_format="zarr")

    def killed(*a, **k):
        raise RuntimeError("driver killed")

    out = tmp_path / "out"
    with monkeypatch.context() as m:
        m.setattr(files, "vesicles_blocks", killed)
        with pytest.raises(RuntimeError, match="driver killed"):
            files.segment_file(sim_mrc, out, opts, volume_format="zarr")
    report = json.loads((out / "tomo_report.json").read_text())
    assert not report["finished"] and "predict" in report["stages"]
    monkeypatch.setattr(files, "predict_blocks", killed)  # must not run again
    again = files.segment_file(sim_mrc, out, opts, volume_format="zarr")
    assert again["finished"] and again["stages"]["predict"]["resumed"]
    assert again["n_vesicles"] == fresh["n_vesicles"] > 0
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "tomo_vesicles.csv", comment="#"),
        pd.read_csv(tmp_path / "fresh" / "tomo_vesicles.csv", comment="#"),
    )
