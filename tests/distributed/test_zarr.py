"""OME-Zarr in and out: the multiscale writer round trip, and zarr input read block-wise."""

from __future__ import annotations

import numpy as np

import synapseg
from synapseg.io.zarr_writer import open_ome_zarr_writer, write_ome_zarr


def test_ome_zarr_round_trip_with_levels(tmp_path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    rng = np.random.default_rng(0)
    data = rng.integers(0, 255, (20, 140, 150), dtype=np.uint8)
    path = write_ome_zarr(tmp_path / "p.zarr", data, (2.0, 1.5, 1.5), origin_nm=(4.0, 0.0, 0.0))
    vol = synapseg.read_volume(path)
    assert np.array_equal(np.asarray(vol.data[:]), data)
    assert vol.voxel_size_nm == (2.0, 1.5, 1.5) and vol.origin_nm == (4.0, 0.0, 0.0)
    node = next(iter(Reader(parse_url(str(path)))()))  # what napari-ome-zarr reads
    levels = node.data
    assert [tuple(a.shape) for a in levels] == [(20, 140, 150), (10, 70, 75)]
    assert abs(float(np.asarray(levels[1][3, 5, 7])) - data[6:8, 10:12, 14:16].mean()) <= 0.5
    scale = node.metadata["coordinateTransformations"][1][0]["scale"]
    assert scale == [4.0, 3.0, 3.0]


def test_ome_zarr_labels_keep_ids_and_nothing_half_written(tmp_path):
    labels = np.zeros((8, 200, 200), np.uint16)
    labels[2:6, 50:90, 50:90] = 7
    labels[2:6, 120:160, 120:160] = 300
    target = tmp_path / "l.zarr"
    with open_ome_zarr_writer(target, labels.shape, np.uint16, 1.0, labels=True) as out:
        for z in range(8):  # written block by block
            out[z] = labels[z]
    import zarr

    group = zarr.open_group(str(tmp_path / "l.zarr"), mode="r")
    assert set(np.unique(group["1"][:])) == {0, 7, 300}
    target = tmp_path / "broken.zarr"
    try:
        with open_ome_zarr_writer(target, (4, 4, 4), np.uint8, 1.0) as out:
            raise RuntimeError("killed mid-write")
    except RuntimeError:
        pass
    assert not target.exists() and not (tmp_path / "broken.zarr.tmp").exists()


def test_zarr_input_is_read_block_wise_with_the_same_result(blockwise, sim_mrc, tmp_path):
    from synapseg.distributed.block_predict import predict_block
    from synapseg.distributed.blocks import network_blocks

    mrc = synapseg.read_volume(sim_mrc)
    path = write_ome_zarr(tmp_path / "t.zarr", mrc.data, mrc.voxel_size_nm, chunks=(16, 64, 64))
    vol = synapseg.read_volume("file://" + str(path))  # any fsspec URL
    assert not isinstance(vol.data, np.ndarray)
    d = blockwise.decisions
    block = network_blocks(d.plan, d.factors, vol.shape, 1)[-1]
    got = predict_block(vol.data, block, d)
    assert np.array_equal(got, np.asarray(blockwise.probabilities)[block.core])


def test_thickness_profiles_read_only_boxes_of_a_zarr_tomogram(tmp_path):
    """The merged thickness measurement samples a zarr tomogram through a sparse copy of the
    boxes around the vesicles (never the whole store), with the same values there."""
    from synapseg.distributed.block_post import _around

    rng = np.random.default_rng(1)
    data = rng.normal(size=(20, 120, 120)).astype(np.float32)
    store = synapseg.read_volume(write_ome_zarr(tmp_path / "t.zarr", data, 2.0)).data
    centers = np.array([[10.0, 30.0, 30.0], [10.0, 90.0, 80.0]])
    with _around(store, centers, np.array([10.0, 10.0]), (2.0, 2.0, 2.0)) as arr:
        assert isinstance(arr, np.ndarray) and arr.shape == data.shape
        assert np.array_equal(arr[:, 16:44, 16:44], data[:, 16:44, 16:44])
        assert not arr[:, :5, 100:].any()  # far from both vesicles: never read


def counted_slabs(path, data, chunks):
    """``ZSlabs`` over a zarr copy of ``data``, and the list of the keys read from the store."""
    import zarr

    from synapseg.distributed.decisions import ZSlabs

    store = zarr.create_array(store=str(path), shape=data.shape, chunks=chunks, dtype=data.dtype)
    store[:] = data
    reads = []

    class Counting:
        shape, dtype, chunks = store.shape, store.dtype, store.chunks

        def __getitem__(self, key):
            reads.append(key)
            return store[key]

    return ZSlabs.wrap(Counting()), reads


def test_whole_volume_passes_read_each_zarr_chunk_once(tmp_path):
    """The decisions read sections in z order through slabs of chunk depth: the same values,
    and each chunk fetched once instead of once per section."""
    data = np.random.default_rng(0).normal(size=(70, 40, 50)).astype(np.float32)
    view, reads = counted_slabs(tmp_path / "a.zarr", data, (16, 40, 50))
    for z0 in range(0, 70, 4):  # as the specimen mask reads
        assert np.array_equal(view[z0 : z0 + 4], data[z0 : z0 + 4])
    assert np.array_equal(view[5, 1::3, ::2], data[5, 1::3, ::2])
    assert np.array_equal(view[3:5, :8, :8], data[3:5, :8, :8])  # a small window: direct
    assert len(reads) == 5 + 1 + 1


def test_z_slabs_hold_one_slab_and_serve_strides(tmp_path):
    """Reads across a slab border and strided in z come from the cache, one slab at a time
    (the decisions pass of a 4096×4096-section store held two 1 GB slabs before)."""
    data = np.random.default_rng(1).normal(size=(50, 24, 30)).astype(np.float32)
    view, reads = counted_slabs(tmp_path / "b.zarr", data, (8, 24, 30))
    held = []
    for z0 in range(0, 50, 6):  # 6-deep reads straddle the 8-deep slabs
        got = view[z0 : z0 + 6 : 2, :, ::3]
        held.append(len(view._slab))
        assert np.array_equal(got, data[z0 : z0 + 6 : 2, :, ::3])
    assert max(held) == 8  # never two slabs
    assert len(reads) == 7  # each of the 7 slabs read once
    assert np.array_equal(view[46:50:3], data[46:50:3])  # 46 | 49: head and tail
    assert np.array_equal(view[44:50:3], data[44:50:3])  # 44, 47 | none: the head alone
