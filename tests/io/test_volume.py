"""Reading and writing tomograms: round trips, header quirks of real files, bad input."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from synapseg.errors import InputError, OutputExistsError, VoxelSizeError
from synapseg.io.volume import read_volume
from synapseg.io.volume_writer import (
    create_zarr_array,
    new_zarr_group,
    open_volume_writer,
    write_volume,
)

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference"


def raw_mrc(path: Path, data: np.ndarray, voxel_size_a: float | tuple = 14.0) -> Path:
    """Write an MRC with mrcfile directly (an 'external' file, not synapseg's writer)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mrcfile.new(path, overwrite=True) as mrc:
            mrc.set_data(data)
            mrc.voxel_size = voxel_size_a
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8", "uint8", "int16", "uint16"])
def test_mrc_round_trip_every_dtype(tmp_path, rng, dtype):
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    if info is None:
        data = rng.normal(size=(5, 6, 7)).astype(dtype)
    else:
        data = rng.integers(info.min, info.max, size=(5, 6, 7), endpoint=True).astype(dtype)
    path = write_volume(tmp_path / "v.mrc", data, (2.0, 1.5, 1.25), origin_nm=(10.0, -3.5, 7.25))
    vol = read_volume(path)
    assert vol.dtype == np.dtype(dtype)
    assert vol.shape == (5, 6, 7)
    np.testing.assert_array_equal(np.asarray(vol.data), data)
    np.testing.assert_allclose(vol.voxel_size_nm, (2.0, 1.5, 1.25), rtol=1e-5)
    np.testing.assert_allclose(vol.origin_nm, (10.0, -3.5, 7.25), atol=1e-4)
    assert vol.voxel_size_source == "header"


@pytest.mark.parametrize("suffix", [".tif", ".zarr"])
def test_tiff_and_ome_zarr_round_trip(tmp_path, rng, suffix):
    data = rng.normal(size=(4, 9, 11)).astype("float32")
    path = write_volume(tmp_path / f"v{suffix}", data, (2.0, 1.5, 1.25), origin_nm=(1.0, 2.0, 3.0))
    vol = read_volume(path)
    np.testing.assert_array_equal(np.asarray(vol.data[:]), data)
    np.testing.assert_allclose(vol.voxel_size_nm, (2.0, 1.5, 1.25), rtol=1e-5)
    np.testing.assert_allclose(vol.origin_nm, (1.0, 2.0, 3.0))
    assert vol.name == "v"


def test_mrc_is_memory_mapped_not_read(tmp_path, rng):
    path = write_volume(tmp_path / "v.mrc", rng.normal(size=(3, 4, 5)).astype("float32"), 1.0)
    assert isinstance(read_volume(path).data, np.memmap)


def test_streaming_writer_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.mrc"
    with pytest.raises(RuntimeError):
        with open_volume_writer(target, (2, 3, 4), "float32", 1.0) as out:
            out[0] = 1
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_imod_unsigned_bytes_read_as_uint8(tmp_path):
    """Mode 0 with IMOD's stamp but without its signed flag holds unsigned bytes."""
    data = np.array([[[0, 100, 200, 255]]] * 2, dtype=np.uint8)
    path = tmp_path / "bytes.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(data.view(np.int8))
        mrc.voxel_size = 10.0
        extra2 = bytearray(bytes(mrc.header.extra2))
        extra2[40:44] = (1146047817).to_bytes(4, "little")
        extra2[44:48] = (0).to_bytes(4, "little")
        mrc.header.extra2 = bytes(extra2)
    vol = read_volume(path)
    assert vol.dtype == np.uint8
    np.testing.assert_array_equal(np.asarray(vol.data), data)


def test_mode0_without_imod_stamp_is_signed(tmp_path):
    data = np.array([[[-5, 0, 5]]] * 2, dtype=np.int8)
    vol = read_volume(raw_mrc(tmp_path / "s.mrc", data))
    assert vol.dtype == np.int8
    np.testing.assert_array_equal(np.asarray(vol.data), data)


def test_explicit_voxel_size_wins(tmp_path, rng):
    path = raw_mrc(tmp_path / "v.mrc", rng.normal(size=(3, 4, 5)).astype("float32"), 14.0)
    vol = read_volume(path, voxel_size_nm=2.0)
    assert vol.voxel_size_nm == (2.0, 2.0, 2.0)
    assert vol.voxel_size_source == "user"


def test_angstrom_nm_confusion_is_an_error_naming_both_readings(tmp_path, rng):
    from synapseg.errors import VoxelSizeError
    from synapseg.summary import check_voxel_size, geometry_warnings

    path = raw_mrc(tmp_path / "v.mrc", rng.normal(size=(3, 4, 5)).astype("float32"), 1.684)
    vol = read_volume(path)  # reading works (info reports it) ...
    assert vol.voxel_size_nm[0] == pytest.approx(0.1684, rel=1e-4)
    assert any("nm written as Å" in w for w in geometry_warnings(vol))
    with pytest.raises(VoxelSizeError) as err:  # ... segment/predict stop
        check_voxel_size(vol)
    text = err.value.message
    assert "1.684 Å" in text and "0.1684 nm" in text and "--voxel-size 1.684" in text
    check_voxel_size(read_volume(path, voxel_size_nm=1.684))  # --voxel-size settles it


# ----------------------------------------------------------------------------- real headers


@pytest.mark.reference("pyto-presynaptic-example")  # skip rule: tests/conftest.py
def test_real_old_style_pyto_labels_open_with_warning(caplog):
    path = REFERENCE / "pyto-presynaptic-example" / "viz_labels.mrc"
    with caplog.at_level(logging.WARNING, logger="synapseg"):
        vol = read_volume(path)
    assert vol.shape == (60, 155, 155)
    assert vol.dtype == np.int8
    np.testing.assert_allclose(vol.voxel_size_nm, 1.684, rtol=1e-4)
    assert "malformed" in caplog.text
    labels = set(np.unique(np.asarray(vol.data)).tolist())
    assert {2, 3, 36, 48}.issubset(labels)


@pytest.mark.reference("real-header-crop")
def test_real_imod_int16_crop_opens():
    vol = read_volume(REFERENCE / "real-header-crop" / "new-head_int16.mrc")
    assert vol.shape == (20, 30, 40)
    assert vol.dtype == np.int16
    np.testing.assert_allclose(vol.voxel_size_nm, 0.4, rtol=1e-5)
    np.testing.assert_allclose(vol.origin_nm, (-9.0, -96.4, -94.4), atol=1e-4)
    assert vol.header["labels"][0].startswith("raw2mrc")


# ----------------------------------------------------------------------------- bad input


def assert_clear(exc: InputError, path: Path, *words: str) -> None:
    message = exc.message
    assert str(path) in message
    for word in words:
        assert word in message, message


def assert_read_fails(path: Path, *words: str, error: type[InputError] = InputError) -> None:
    """``read_volume(path)`` raises ``error`` naming ``path`` and every word."""
    with pytest.raises(error) as err:
        read_volume(path)
    assert_clear(err.value, path, *words)


def test_missing_file(tmp_path):
    assert_read_fails(tmp_path / "nope.mrc", "not found")


def test_directory_instead_of_file(tmp_path):
    assert_read_fails(tmp_path, "folder")


def test_unknown_extension(tmp_path):
    path = tmp_path / "tomo.xyz"
    path.write_bytes(b"123")
    assert_read_fails(path, "unknown file type")


def test_empty_file(tmp_path):
    path = tmp_path / "tomo.mrc"
    path.touch()
    assert_read_fails(path, "empty")


def test_truncated_mrc(tmp_path, rng):
    path = raw_mrc(tmp_path / "t.mrc", rng.normal(size=(8, 16, 16)).astype("float32"))
    path.write_bytes(path.read_bytes()[:-1000])
    assert_read_fails(path, "truncated")


@pytest.mark.parametrize("voxel_size_a", [0.0, 1.0])
def test_unset_voxel_size_needs_flag(tmp_path, rng, voxel_size_a):
    path = raw_mrc(tmp_path / "v.mrc", rng.normal(size=(3, 4, 5)).astype("float32"), voxel_size_a)
    assert_read_fails(path, "voxel size", "--voxel-size", error=VoxelSizeError)
    assert read_volume(path, voxel_size_nm=1.5).voxel_size_nm == (1.5, 1.5, 1.5)


@pytest.mark.parametrize("bad", [-1.0, 0.0, float("nan"), float("inf")])
def test_invalid_user_voxel_size(tmp_path, rng, bad):
    path = raw_mrc(tmp_path / "v.mrc", rng.normal(size=(3, 4, 5)).astype("float32"))
    with pytest.raises(VoxelSizeError) as err:
        read_volume(path, voxel_size_nm=bad)
    assert "--voxel-size" in err.value.message and "positive" in err.value.message


def test_2d_image_is_not_a_volume(tmp_path, rng):
    path = raw_mrc(tmp_path / "img.mrc", rng.normal(size=(16, 16)).astype("float32"))
    assert_read_fails(path, "2D")
    assert read_volume(path, require_3d=False).shape == (1, 16, 16)


def test_complex_dtype_rejected(tmp_path):
    path = tmp_path / "c.mrc"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mrcfile.new(path) as mrc:
            mrc.set_data(np.ones((2, 3, 4), dtype=np.complex64))
            mrc.voxel_size = 10.0
    assert_read_fails(path, "complex")


def test_ome_zarr_without_scale_metadata(tmp_path):
    path = tmp_path / "bare.zarr"
    create_zarr_array(new_zarr_group(path), "0", (3, 4, 5), "float32")
    assert_read_fails(path, "multiscales")


def test_existing_output_not_overwritten(tmp_path):
    target = tmp_path / "out.mrc"
    target.write_bytes(b"precious")
    with pytest.raises(OutputExistsError) as err:
        write_volume(target, np.zeros((2, 2, 2), np.float32), 1.0)
    assert_clear(err.value, target, "exists", "--overwrite")
    assert target.read_bytes() == b"precious"
    write_volume(target, np.zeros((2, 2, 2), np.float32), 1.0, overwrite=True)
    assert read_volume(target).shape == (2, 2, 2)


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    target = blocker / "sub" / "out.mrc"
    with pytest.raises(InputError) as err:
        write_volume(target, np.zeros((2, 2, 2), np.float32), 1.0)
    assert "output folder" in err.value.message
    assert blocker.read_text() == "x"


def test_unsupported_write_dtype(tmp_path):
    with pytest.raises(InputError) as err:
        write_volume(tmp_path / "o.mrc", np.zeros((2, 2, 2), np.float64), 1.0)
    assert "float64" in err.value.message
    assert list(tmp_path.iterdir()) == []


def test_streamed_mrc_header_statistics_two_sections_at_a_time(tmp_path, monkeypatch):
    """The streamed writer's dmin/dmax/dmean/rms equal mrcfile's own, computed two sections
    at a time (the label and probability volumes of the reference tomogram: ≈ 1 s less)."""
    import threading

    import mrcfile

    import synapseg.io.volume_writer as vw

    rng = np.random.default_rng(3)
    data = rng.normal(2.0, 3.0, (6, 16, 24)).astype(np.float32)
    barrier = threading.Barrier(2, timeout=10)  # broken unless two sections meet
    seen = []
    original = vw._section_stats

    def two_at_once(section):
        if len(seen) < 2:
            seen.append(1)
            barrier.wait()
        return original(section)

    monkeypatch.setattr(vw, "_section_stats", two_at_once)
    path = tmp_path / "v.mrc"
    with vw.open_volume_writer(path, data.shape, np.float32, 1.0) as out:
        out[:] = data
    with mrcfile.open(path) as mrc:
        h = mrc.header
        got = (float(h.dmin), float(h.dmax), float(h.dmean), float(h.rms))
        mrc_data = np.asarray(mrc.data, dtype=np.float64)
    want = (mrc_data.min(), mrc_data.max(), mrc_data.mean(), mrc_data.std())
    assert np.allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.uint16, np.float32])
def test_header_stats_exact_for_integer_maps(tmp_path, dtype):
    """8/16-bit maps take the integer path of the header statistics: the same dmin/dmax/
    dmean/rms as float64 arithmetic on the values (uint8 is stored as MRC int8 bytes and
    read back through the same view the writer yields)."""
    import mrcfile

    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else np.finfo(np.float16)
    rng = np.random.default_rng(7)
    data = rng.integers(int(info.min), int(info.max), (5, 12, 20), endpoint=True).astype(dtype)
    path = tmp_path / "v.mrc"
    with open_volume_writer(path, data.shape, dtype, 1.0) as out:
        out[:] = data
    with mrcfile.open(path) as mrc:
        h = mrc.header
        got = (float(h.dmin), float(h.dmax), float(h.dmean), float(h.rms))
    values = data.astype(np.float64)
    want = (values.min(), values.max(), values.mean(), values.std())
    assert np.allclose(got, want, rtol=1e-6)
