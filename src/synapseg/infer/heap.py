"""Reuse of freed heap pages across tiles during the network's tile loop (Linux, glibc).

Each CPU forward pass allocates and frees several hundred MB of activations. glibc serves
every block above its mmap threshold with a fresh ``mmap`` and unmaps it on ``free``, so
each tile pays the kernel again for zeroed pages: on the 2-core reference machine that was
≈ 8 s of system time (page faults) for the 261×1024×1024 reference volume. Inside
:func:`reuse_heap` large blocks come from the heap instead and freed memory is kept for the
next tile; on exit large blocks are mmapped again and the free heap is returned to the kernel
(``malloc_trim``), so later stages see a normal allocator and the resident memory drops back.

The allocator settings are process-global: nested or concurrent uses (threads) share one
refcounted setting. Elsewhere (macOS, Windows, musl) this is a no-op.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys
import threading
from collections.abc import Iterator

# mallopt parameters (glibc malloc.h). Any mallopt call switches off glibc's dynamic mmap
# threshold for good, so on exit the allocator is left where that dynamic rule settles in a
# process that has freed large arrays (mmap threshold 32 MiB, the rule's maximum; trim
# threshold twice that), not at the cold-start 128 KiB: with 128 KiB the later stages gave
# back and re-faulted their heap on every free (+3.6 s of system time on the reference volume).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
_WARM_MMAP_THRESHOLD = 32 * 1024 * 1024
_WARM_TRIM_THRESHOLD = 2 * _WARM_MMAP_THRESHOLD
_DEFAULT_MMAP_MAX = 65536
_KEEP_ALL = 2**31 - 1

_lock = threading.Lock()
_users = 0


def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (it has ``mallopt`` and ``malloc_trim``), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 (glibc only)
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _glibc()


def heap_reuse_available() -> bool:
    """Whether :func:`reuse_heap` changes anything on this platform (Linux with glibc)."""
    return _LIBC is not None


@contextlib.contextmanager
def reuse_heap(enabled: bool = True) -> Iterator[bool]:
    """Serve large allocations from the heap and keep freed pages for reuse, inside the block.

    Yields whether the setting is active. Results are unchanged (only where the memory comes
    from differs); peak resident memory is about the largest working set of one tile plus
    the heap's fragmentation.
    """
    global _users
    if not enabled or _LIBC is None:
        yield False
        return
    with _lock:
        if _users == 0:
            _LIBC.mallopt(_M_MMAP_MAX, 0)
            _LIBC.mallopt(_M_TRIM_THRESHOLD, _KEEP_ALL)
        _users += 1
    try:
        yield True
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                _LIBC.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
                _LIBC.mallopt(_M_MMAP_THRESHOLD, _WARM_MMAP_THRESHOLD)
                _LIBC.mallopt(_M_TRIM_THRESHOLD, _WARM_TRIM_THRESHOLD)
                _LIBC.malloc_trim(0)
