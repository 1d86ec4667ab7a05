"""A worker that dies mid-task: its task is run again elsewhere and the map is unchanged."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest


@pytest.mark.slow  # ~30 s: two worker processes start, one dies and is replaced
def test_killed_worker_task_is_retried(blockwise, sim_mrc, tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    monkeypatch.syspath_prepend(str(Path(__file__).parent))  # spawned workers inherit it
    from killing_tasks import predict_or_die

    from synapseg.distributed.backend import FileArray, run_tasks
    from synapseg.distributed.blocks import network_blocks

    d = blockwise.decisions
    blocks = network_blocks(d.plan, d.factors, d.grid.shape, 1)
    marker = tmp_path / "killed"
    out = np.zeros(d.grid.shape, np.uint8)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        pids = set(client.run(os.getpid).values())
        for i, core in run_tasks(
            client,
            predict_or_die,
            blocks,
            FileArray(sim_mrc),
            d,
            str(marker),
            name="predict",
            retries=2,
            threads=1,
        ):
            out[blocks[i].core] = core
    assert marker.exists() and int(marker.read_text()) in pids  # a worker did die
    assert np.array_equal(out, np.asarray(blockwise.probabilities))
