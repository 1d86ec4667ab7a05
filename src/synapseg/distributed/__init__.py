"""Block-wise and distributed segmentation (dask.distributed), batches on a cluster.

:func:`segment_blocks` segments one tomogram block by block (memory bounded by the block,
results equal to the single-process run); :func:`make_client` connects to a scheduler or
starts a LocalCluster. See docs/scaling.md.
"""

from synapseg._lazy import lazy_getattr

__all__ = ["make_client", "segment_blocks"]

_WHERE = {
    "make_client": "synapseg.distributed.backend",
    "segment_blocks": "synapseg.distributed.run",
}

__getattr__ = lazy_getattr(__name__, _WHERE)
