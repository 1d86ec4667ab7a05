"""The dask.distributed side: a client (a LocalCluster sized to the machine, or any
scheduler), volumes that travel to workers by path, and tasks with retries.

Everything here also runs without dask (``client=None``: the tasks run in this process, in
order), which is what the local backend and most tests use.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["FileArray", "make_client", "run_tasks", "scatter", "worker_threads"]

DEFAULT_RETRIES = 2
"""Times a task is resubmitted when its worker dies (the result does not change)."""


class FileArray:
    """A (z, y, x) volume file (MRC, TIFF, OME-Zarr) that pickles as its path.

    Workers open it on first access (an MRC memory-mapped, a zarr array chunk-wise), so a
    task carries a few bytes instead of the data.

    Examples
    --------
    >>> import pickle, tempfile, pathlib
    >>> from synapseg.io.volume_writer import write_volume
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "v.mrc"
    >>> _ = write_volume(path, np.arange(24, dtype=np.float32).reshape(2, 3, 4), 1.5)
    >>> arr = pickle.loads(pickle.dumps(FileArray(path)))
    >>> arr.shape, float(arr[1, 2, 3])
    ((2, 3, 4), 23.0)
    """

    def __init__(self, path: str | os.PathLike, voxel_size_nm: Any = None) -> None:
        self.path = str(path)
        self.voxel_size_nm = voxel_size_nm
        self._data: Any = None

    @property
    def data(self) -> Any:
        if self._data is None:
            from synapseg.io.volume import read_volume

            self._data = read_volume(self.path, self.voxel_size_nm).data
        return self._data

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.data.dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(self.data[key])

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "voxel_size_nm": self.voxel_size_nm, "_data": None}

    def __repr__(self) -> str:
        return f"FileArray({self.path!r})"


def make_client(
    scheduler: str | None = None,
    n_workers: int | None = None,
    processes: bool = True,
    memory_limit: str | float = "auto",
    gpu: bool = False,
) -> Any:
    """A ``distributed.Client``: connected to ``scheduler`` (any address: ``tcp://...``,
    a dask-jobqueue or Kubernetes cluster's), or to a new ``LocalCluster`` with one
    single-threaded worker per available core (``n_workers`` to change it). With ``gpu``
    each local worker holds the resource ``GPU=1`` that network tasks ask for (workers of
    a remote scheduler declare it themselves: ``dask worker ADDRESS --resources GPU=1``).

    Raises
    ------
    InputError
        dask.distributed is not installed, or the scheduler cannot be reached.
    """
    from synapseg.errors import InputError

    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - the distributed extra is missing
        raise InputError(
            "--backend dask",
            "dask.distributed is not installed",
            "pip install 'synapseg[distributed]'",
        ) from exc
    if scheduler:
        try:
            return Client(scheduler, timeout="30s")
        except (OSError, TimeoutError) as exc:
            raise InputError(
                "--scheduler",
                f"cannot reach the dask scheduler at {scheduler} ({exc})",
                "check the address (tcp://HOST:8786) and that the scheduler is running",
            ) from exc
    from synapseg.infer.forward import available_cpus

    n = n_workers or available_cpus()
    cluster = LocalCluster(
        n_workers=n,
        threads_per_worker=1,
        processes=processes,
        memory_limit=memory_limit,
        dashboard_address=None,
        resources={"GPU": 1} if gpu else None,
    )
    return Client(cluster)


def worker_threads(client: Any) -> int | None:
    """Torch threads per task: the cores of each worker's machine shared by the workers on
    it (the smallest share over the machines; ``None`` without a client: all cores)."""
    if client is None:
        return None
    from synapseg.infer.forward import available_cpus

    cores = client.run(available_cpus)  # worker address -> cores of its machine
    info = client.scheduler_info().get("workers", {})
    per_host: dict[str, list[int]] = {}
    for addr, n in cores.items():
        host = info.get(addr, {}).get("host", addr)
        per_host.setdefault(host, []).append(int(n))
    if not per_host:
        return 1
    return max(1, min(max(ns) // len(ns) for ns in per_host.values()))


def run_tasks(
    client: Any,
    fn: Callable[..., Any],
    items: Sequence[Any],
    *args: Any,
    name: str = "task",
    retries: int = DEFAULT_RETRIES,
    resources: dict[str, float] | None = None,
    progress: Callable[[int], None] | None = None,
    **kwargs: Any,
) -> Iterator[tuple[int, Any]]:
    """Yield ``(i, fn(items[i], *args, **kwargs))`` as the tasks finish.

    With a client each item is one task (key ``name-i``), resubmitted up to ``retries``
    times when its worker is lost; large arguments should be scattered futures. Without a
    client the tasks run here, in order.
    """
    if client is None:
        for i, item in enumerate(items):
            yield i, fn(item, *args, **kwargs)
            if progress is not None:
                progress(1)
        return
    import uuid

    from distributed import as_completed

    token = uuid.uuid4().hex[:8]
    futures = {}
    for i, item in enumerate(items):
        fut = client.submit(
            fn,
            item,
            *args,
            key=f"{name}-{token}-{i}",
            retries=retries,
            resources=resources,
            pure=False,
            **kwargs,
        )
        futures[fut] = i
    for fut in as_completed(list(futures)):
        i = futures.pop(fut)
        result = fut.result()
        fut.release()
        yield i, result
        if progress is not None:
            progress(1)


def scatter(client: Any, values: Iterable[Any]) -> list[Any]:
    """``values`` as futures on every worker (or unchanged without a client)."""
    values = list(values)
    if client is None:
        return values
    return [client.scatter(v, broadcast=True, hash=False) for v in values]
