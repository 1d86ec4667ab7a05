"""``synapseg.io.scratch.release_in_background``: the last references go in another thread."""

from __future__ import annotations

import threading
import weakref

import numpy as np

from synapseg.io.scratch import release_in_background


def test_the_thread_drops_the_last_references(tmp_path):
    path = tmp_path / "m.f32"
    arrays = [np.memmap(path, dtype=np.float32, mode="w+", shape=(64,)), np.zeros(8)]
    refs = [weakref.ref(a) for a in arrays]
    thread = release_in_background(arrays)
    assert arrays == []  # the caller's list no longer holds them
    assert isinstance(thread, threading.Thread) and thread.daemon
    thread.join(10)
    assert all(ref() is None for ref in refs)
