"""Atomic writes and disk-space guards: stale ``*.tmp``, ENOSPC, no ``*.tmp`` left behind."""

from __future__ import annotations

import errno
import os
import shutil
from collections import namedtuple

import numpy as np
import pytest

from synapseg.errors import InputError
from synapseg.io import atomic
from synapseg.io.atomic import atomic_path, check_free_space, write_text_atomic
from synapseg.io.volume import read_volume
from synapseg.io.volume_writer import open_volume_writer, write_volume


def _no_tmp(folder):
    return [p.name for p in folder.rglob("*.tmp")]


def test_stale_tmp_from_a_killed_run_is_replaced(tmp_path):
    target = tmp_path / "table.csv"
    (tmp_path / "table.csv.tmp").write_text("half a table")
    write_text_atomic(target, "a,b\n1,2\n")
    assert target.read_text() == "a,b\n1,2\n"
    assert _no_tmp(tmp_path) == []


def test_stale_memmap_tmp_does_not_crash_the_volume_writer(tmp_path):
    # mrcfile.new_mmap refused an existing file: "... .tmp already exists".
    target = tmp_path / "labels.mrc"
    (tmp_path / "labels.mrc.tmp").write_bytes(b"\0" * 100)
    data = np.arange(4 * 5 * 6, dtype=np.uint16).reshape(4, 5, 6)
    write_volume(target, data, 1.5)
    np.testing.assert_array_equal(read_volume(target).data, data)
    assert _no_tmp(tmp_path) == []


def test_failure_inside_leaves_no_tmp_and_no_target(tmp_path):
    target = tmp_path / "p.mrc"
    with pytest.raises(RuntimeError):
        with open_volume_writer(target, (3, 4, 5), np.uint8, 1.0) as out:
            out[0] = 1
            raise RuntimeError("boom")
    assert not target.exists() and _no_tmp(tmp_path) == []


def test_fallocate_enospc_is_a_one_line_error_not_sigbus(tmp_path, monkeypatch):
    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full, raising=False)
    target = tmp_path / "labels.mrc"
    with pytest.raises(InputError, match="no space left") as info:
        with open_volume_writer(target, (8, 16, 16), np.uint16, 1.0) as out:
            out[:] = 1
            pytest.fail("the writer must refuse before yielding the memmap")
    assert "rerun" in info.value.message
    assert not target.exists() and _no_tmp(tmp_path) == []


def test_fallocate_is_called_for_the_whole_file(tmp_path, monkeypatch):
    if not hasattr(os, "posix_fallocate"):
        pytest.skip("no posix_fallocate on this platform")
    calls = []
    real = os.posix_fallocate
    monkeypatch.setattr(os, "posix_fallocate", lambda fd, o, n: (calls.append(n), real(fd, o, n)))
    target = write_volume(tmp_path / "v.mrc", np.ones((4, 8, 8), np.float32), 1.0)
    assert calls == [target.stat().st_size]


def test_enospc_while_writing_becomes_input_error(tmp_path):
    target = tmp_path / "t.json"
    with pytest.raises(InputError, match="(?i)free disk space"):
        with atomic_path(target) as tmp:
            tmp.write_text("x")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert not target.exists() and _no_tmp(tmp_path) == []


def test_check_free_space_says_needed_and_free(tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10 * 2**30, 10 * 2**30, 2**20))
    with pytest.raises(InputError) as info:
        check_free_space(tmp_path / "out" / "new", 3 * 2**30)
    msg = info.value.message
    assert "3.0 GiB needed" in msg and "1.0 MiB free" in msg
    assert check_free_space(tmp_path, 2**19) == 2**20


def test_format_bytes():
    assert atomic.format_bytes(512) == "512 B"
    assert atomic.format_bytes(1536) == "1.5 KiB"


def test_atomic_dir_keeps_the_old_store_until_the_new_one_is_complete(tmp_path):
    target = tmp_path / "out.zarr"
    target.mkdir()
    (target / "old").write_text("old store")
    with pytest.raises(RuntimeError):
        with atomic.atomic_dir(target, overwrite=True) as tmp:
            (tmp / "new").write_text("half")
            raise RuntimeError("killed")
    assert (target / "old").read_text() == "old store"
    assert _no_tmp(tmp_path) == []
    with atomic.atomic_dir(target, overwrite=True) as tmp:
        (tmp / "new").write_text("complete")
    assert sorted(p.name for p in target.iterdir()) == ["new"]
    assert _no_tmp(tmp_path) == []


def test_atomic_dir_refuses_an_existing_store_without_overwrite(tmp_path):
    from synapseg.errors import OutputExistsError

    target = tmp_path / "out.zarr"
    target.mkdir()
    (tmp_path / "out.zarr.tmp").mkdir()  # left by a killed run
    with pytest.raises(OutputExistsError):
        with atomic.atomic_dir(target):
            pass
    with atomic.atomic_dir(tmp_path / "new.zarr") as tmp:
        (tmp / "a").write_text("x")
    assert (tmp_path / "new.zarr" / "a").read_text() == "x"
    assert not (tmp_path / "new.zarr.tmp").exists()
