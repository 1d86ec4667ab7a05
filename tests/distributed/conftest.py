"""A small simulated tomogram, written as MRC, for the block-wise tests (session-scoped)."""

from __future__ import annotations

import pytest

VOXEL_NM = 1.8  # the default model's: no rescaling, so blocks are cut on its tile lattice
SHAPE = (32, 224, 224)  # two network tiles (208 model voxels) along y and x


@pytest.fixture(scope="session")
def sim_mrc(tmp_path_factory):
    import synapseg
    from synapseg.io.volume_writer import write_volume

    sim = synapseg.simulate(shape=SHAPE, voxel_size_nm=VOXEL_NM, seed=11)
    path = tmp_path_factory.mktemp("dist") / "tomo.mrc"
    write_volume(path, sim.tomogram, VOXEL_NM)
    return path


@pytest.fixture(scope="session")
def reference(sim_mrc):
    """The single-process run (``synapseg.segment``) with the same parameters."""
    import synapseg

    volume = synapseg.read_volume(sim_mrc)
    return synapseg.segment(
        volume, tile_size=208, invert="no", device="cpu", outputs=["vesicles", "probabilities"]
    )


@pytest.fixture(scope="session")
def local_client():
    """A LocalCluster with 2 single-threaded in-process workers."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="session")
def blockwise(sim_mrc, local_client):
    import synapseg
    from synapseg.distributed.run import segment_blocks

    volume = synapseg.read_volume(sim_mrc)
    return segment_blocks(
        volume,
        client=local_client,
        tile_size=208,
        tiles_per_block=1,
        post_block=(32, 112, 112),
        invert="no",
    )
