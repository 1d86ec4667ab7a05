"""The identity of an input file: size, mtime and a hash of its header and sampled blocks.

Resuming a run must never reuse results computed from another file that now has the same
name. :func:`input_fingerprint` is cheap and bounded (at most ``n_blocks`` reads of
``block_bytes`` whatever the file size), and changes when the file is replaced, rewritten
or edited in a sampled block; size and mtime catch edits between the samples.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

HEADER_BYTES = 64 * 1024
BLOCK_BYTES = 64 * 1024
N_BLOCKS = 16
MAX_FOLDER_FILES = 2000


def _hash_file(h: Any, path: Path, size: int, n_blocks: int, block_bytes: int) -> None:
    with open(path, "rb") as fh:
        h.update(fh.read(HEADER_BYTES))
        if size <= HEADER_BYTES:
            return
        step = max((size - HEADER_BYTES) // n_blocks, 1)
        for i in range(n_blocks):
            offset = HEADER_BYTES + i * step
            if offset >= size:
                break
            fh.seek(offset)
            h.update(fh.read(block_bytes))
        fh.seek(max(size - block_bytes, 0))
        h.update(fh.read(block_bytes))  # the tail: a truncated or appended file


def input_fingerprint(
    path: str | os.PathLike, n_blocks: int = N_BLOCKS, block_bytes: int = BLOCK_BYTES
) -> dict[str, Any]:
    """Size, mtime and a sampled SHA-256 of a file (or of an OME-Zarr folder's files).

    Parameters
    ----------
    path
        Input file, or a folder (OME-Zarr): then every file's relative path, size and
        mtime are hashed, with the metadata files' contents (at most
        :data:`MAX_FOLDER_FILES` files).
    n_blocks, block_bytes
        Evenly spaced blocks read after the header (plus the last block).

    Returns
    -------
    dict
        ``{"size_bytes", "mtime_ns", "sha256_sampled"}``; equal dicts mean "same input".
    """
    path = Path(path)
    h = hashlib.sha256()
    if path.is_dir():
        size, mtime = 0, 0
        files = sorted(p for p in path.rglob("*") if p.is_file())[:MAX_FOLDER_FILES]
        for p in files:
            st = p.stat()
            size += st.st_size
            mtime = max(mtime, st.st_mtime_ns)
            h.update(f"{p.relative_to(path).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
            if p.name.startswith(".z") or p.name == "zarr.json":
                h.update(p.read_bytes()[:HEADER_BYTES])
        return {"size_bytes": size, "mtime_ns": mtime, "sha256_sampled": h.hexdigest()}
    st = path.stat()
    _hash_file(h, path, st.st_size, n_blocks, block_bytes)
    return {
        "size_bytes": int(st.st_size),
        "mtime_ns": int(st.st_mtime_ns),
        "sha256_sampled": h.hexdigest(),
    }


def describe_change(old: dict[str, Any] | None, new: dict[str, Any]) -> str | None:
    """``None`` when ``old`` and ``new`` fingerprints match, else what differs (for logs)."""
    if old is None:
        return "the earlier run did not record the input's identity"
    what = []
    if old.get("size_bytes") != new["size_bytes"]:
        what.append(f"size {old.get('size_bytes')} -> {new['size_bytes']} bytes")
    if old.get("sha256_sampled") != new["sha256_sampled"]:
        what.append("content")
    if old.get("mtime_ns") != new["mtime_ns"]:
        what.append("modification time")
    return None if not what else f"the input file changed since the earlier run ({', '.join(what)})"
