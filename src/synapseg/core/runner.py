"""The file runner: registered stages with persistence, resume and a report.

:class:`Runner` runs the stage graph of :mod:`synapseg.core.stages` for one tomogram and
keeps what each stage persists (its ``persist`` outputs) in the output folder:

- an artifact with a registered :class:`Store` (``probabilities``: uint8 MRC streamed while
  the network runs; ``vesicles``: the CSV table with provenance);
- otherwise by type: an array as ``<name>_<artifact>.npy``, a table as
  ``<name>_<artifact>.csv``, anything JSON-ready inside the report;
- ``None`` (an output a stage did not make, e.g. when it was off) as ``null`` in the report.

The report's ``stages`` entry records the facts of each finished stage that persists
outputs or ends the graph (the facts of intermediate stages only reach ``after_stage``),
and ``artifacts`` where its outputs are. On the next run a stage is skipped when it is
recorded and its persisted outputs are all there; a stage whose output file was deleted
runs again, and so does every persisted stage downstream of a stage that runs. Stages
without persisted outputs (the specimen mask, the loaded network, the wedge) run only when
a stage that runs needs them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synapseg import __version__
from synapseg.core.grid import Grid
from synapseg.core.segment import run_stages
from synapseg.core.stages import SOURCES, Stage, registered_stages, stage_order
from synapseg.io.atomic import atomic_path

log = logging.getLogger(__name__)

__all__ = ["Runner", "Store", "register_store"]


@dataclass(frozen=True)
class Store:
    """How the runner keeps one artifact between runs.

    Attributes
    ----------
    suffix
        File name ``<name><suffix>`` in the output folder.
    load
        ``load(path, runner) -> value``.
    save
        ``save(path, value, runner)``, writing atomically; ``None`` for a streamed array.
    sink_dtype
        For a streamed array: the dtype of the volume file opened (on the grid) before the
        stage runs and handed to it as the artifact's sink.
    label
        MRC label of a streamed array.
    """

    suffix: str
    load: Callable[[Path, Runner], Any]
    save: Callable[[Path, Any, Runner], None] | None = None
    sink_dtype: Any = None
    label: str = "synapseg"


_STORES: dict[str, Store] = {}


def register_store(artifact: str, store: Store) -> None:
    """Keep ``artifact`` with ``store`` (instead of the by-type default)."""
    _STORES[artifact] = store


def _load_volume(path: Path, runner: Runner) -> Any:
    from synapseg.io.volume import read_volume

    return read_volume(path, runner.grid.voxel_size_nm).data


def _save_table(path: Path, table: pd.DataFrame, runner: Runner) -> None:
    from synapseg.io.tables import write_table_csv

    write_table_csv(path, table, provenance=runner.provenance, overwrite=True)


def _load_table(path: Path, runner: Runner) -> pd.DataFrame:
    from synapseg.io.tables import read_table_csv

    return read_table_csv(path)


def _save_npy(path: Path, value: np.ndarray, runner: Runner) -> None:
    with atomic_path(path, overwrite=True) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.asarray(value), allow_pickle=False)


def _load_npy(path: Path, runner: Runner) -> np.ndarray:
    return np.load(path, mmap_mode="r", allow_pickle=False)


def _save_csv(path: Path, value: pd.DataFrame, runner: Runner) -> None:
    with atomic_path(path, overwrite=True) as tmp:
        value.to_csv(tmp, index=False)


def _load_csv(path: Path, runner: Runner) -> pd.DataFrame:
    return pd.read_csv(path)


register_store(
    "probabilities",
    Store(
        "_probabilities.mrc",
        _load_volume,
        sink_dtype=np.uint8,
        label=f"synapseg {__version__} vesicle probability x255",
    ),
)
register_store("vesicles", Store("_vesicles.csv", _load_table, _save_table))
_BY_TYPE = {
    "npy": Store("", _load_npy, _save_npy),
    "csv": Store("", _load_csv, _save_csv),
}


class Runner:
    """Run registered stages for one volume into ``folder``, resuming from ``state``.

    Parameters
    ----------
    image, grid
        The input array (or memmap) and its :class:`~synapseg.core.grid.Grid`.
    folder, name
        Output folder and file-name stem (``<name>_<artifact>.<ext>``).
    params
        Stage parameters (each stage's defaults fill the gaps).
    state
        The report dict: ``stages`` (name → facts) and ``artifacts`` are read and updated.
    stages
        Name → :class:`Stage` (default: the registry).
    self_saved
        Artifacts whose stage writes the file itself (the runner only reloads them).
    provenance
        Attached to the tables it writes.
    on_stage, after_stage
        ``on_stage(name)`` before a stage runs; ``after_stage(stage, outputs, facts)`` after
        (e.g. to save the report).
    """

    def __init__(
        self,
        image: Any,
        grid: Grid,
        folder: str | Path,
        name: str,
        params: Mapping[str, Any] | None = None,
        state: dict[str, Any] | None = None,
        stages: Mapping[str, Stage] | None = None,
        self_saved: tuple[str, ...] = (),
        provenance: dict[str, Any] | None = None,
        on_stage: Callable[[str], None] | None = None,
        after_stage: Callable[[Stage, dict, dict], None] | None = None,
    ) -> None:
        from synapseg.core.segment import stage_params

        self.stages = dict(registered_stages() if stages is None else stages)
        self.grid = grid
        self.folder, self.name = Path(folder), name
        self.params = {**stage_params(self.stages), **dict(params or {})}
        self.state = state if state is not None else {}
        self.state.setdefault("stages", {})
        self.state.setdefault("artifacts", {})
        self.self_saved = tuple(self_saved)
        self.provenance = provenance if provenance is not None else {}
        self.on_stage = on_stage
        self.after_stage = after_stage
        self.artifacts: dict[str, Any] = {"image": image, "grid": grid}
        self.ran: list[str] = []  # the stages the last run() ran
        self._recorded: set[str] = set()  # stages whose facts go into state["stages"]

    # ------------------------------------------------------------------ files
    def path(self, artifact: str, kind: str | None = None) -> Path:
        """Where ``artifact`` is kept (``kind``: ``npy``/``csv`` for the by-type stores)."""
        if artifact in _STORES:
            return self.folder / f"{self.name}{_STORES[artifact].suffix}"
        return self.folder / f"{self.name}_{artifact}.{kind or 'npy'}"

    def _available(self, artifact: str) -> bool:
        entry = self.state["artifacts"].get(artifact)
        if entry is None:
            return False
        return entry["kind"] == "json" or Path(entry["file"]).exists()

    def _load(self, artifact: str) -> Any:
        entry = self.state["artifacts"][artifact]
        if entry["kind"] == "json":
            return entry["value"]
        store = _STORES.get(artifact) or _BY_TYPE[entry["kind"]]
        return store.load(Path(entry["file"]), self)

    def _save(self, artifact: str, value: Any) -> None:
        if value is None:  # nothing to keep (e.g. a stage that was off): recorded as null
            self.state["artifacts"][artifact] = {"kind": "json", "value": None}
            return
        kind = "store" if artifact in _STORES else None
        if kind is None:
            kind = (
                "npy"
                if isinstance(value, np.ndarray)
                else "csv"
                if isinstance(value, pd.DataFrame)
                else "json"
            )
        if kind == "json":
            json.dumps(value)  # fails loudly for values that need a Store
            self.state["artifacts"][artifact] = {"kind": "json", "value": value}
            return
        path = self.path(artifact, kind)
        store = _STORES.get(artifact) or _BY_TYPE[kind]
        if artifact not in self.self_saved and store.save is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            store.save(path, value, self)
        self.state["artifacts"][artifact] = {"kind": kind, "file": str(path)}

    # ------------------------------------------------------------------ planning
    def plan(self, wanted: Any = None) -> list[Stage]:
        """The stages that must run now, in order (see the module docstring)."""
        order = stage_order(self.stages, wanted)
        producer = {out: st for st in self.stages.values() for out in st.outputs}
        consumers = {
            st.name for s in order for i in s.inputs if i in producer for st in [producer[i]]
        }
        dirty: set[str] = set()
        for st in order:
            recorded = bool(st.persist) or st.name not in consumers
            if recorded:
                self._recorded.add(st.name)
            done = st.name in self.state["stages"] and all(map(self._available, st.persist))
            upstream = any(producer[i].name in dirty for i in st.inputs if i in producer)
            if (recorded and not done) or upstream:
                dirty.add(st.name)
        run: set[str] = set()

        def need(st: Stage) -> None:
            if st.name in run:
                return
            run.add(st.name)
            for i in st.inputs:
                if i in SOURCES:
                    continue
                p = producer[i]
                if p.name in dirty or not (i in p.persist and self._available(i)):
                    need(p)

        for st in order:
            if st.name in dirty and (st.persist or st.name not in consumers):
                need(st)
        return [st for st in order if st.name in run]

    def run(self, wanted: Any = None) -> dict[str, Any]:
        """Run what :meth:`plan` says, loading the rest from disk; return the artifacts."""
        todo = self.plan(wanted)
        self.ran = [st.name for st in todo]
        names = {st.name for st in todo}
        for st in todo:
            for i in st.inputs:
                if i not in self.artifacts and i not in {o for s in todo for o in s.outputs}:
                    self.artifacts[i] = self._load(i)
        for st in todo:
            for artifact in st.persist:
                self.state["artifacts"].pop(artifact, None)
            self.state["stages"].pop(st.name, None)
        for st in todo:
            self._run_one(st)
        log.debug("%s: ran %s", self.name, sorted(names))
        return self.artifacts

    def _run_one(self, stage: Stage) -> None:
        from contextlib import ExitStack

        if self.on_stage is not None:
            self.on_stage(stage.name)
        sinks: dict[str, Any] = {}
        with ExitStack() as stack:
            for artifact in stage.persist:
                store = _STORES.get(artifact)
                if store is None or store.sink_dtype is None or artifact in self.self_saved:
                    continue
                from synapseg.io.volume_writer import open_volume_writer

                self.folder.mkdir(parents=True, exist_ok=True)
                sinks[artifact] = stack.enter_context(
                    open_volume_writer(
                        self.path(artifact),
                        self.grid.shape,
                        store.sink_dtype,
                        self.grid.voxel_size_nm,
                        self.grid.origin_nm,
                        overwrite=True,
                        label=store.label,
                    )
                )
            facts = run_stages([stage], self.artifacts, self.params, sinks)[stage.name]
        for artifact in stage.persist:
            if artifact in sinks and self.artifacts[artifact] is None:
                self.path(artifact).unlink(missing_ok=True)  # opened, but the stage made none
                self._save(artifact, None)
            elif artifact in sinks:  # the stream is closed: reopen the file read-only
                self.state["artifacts"][artifact] = {
                    "kind": "store",
                    "file": str(self.path(artifact)),
                }
                self.artifacts[artifact] = self._load(artifact)
            else:
                self._save(artifact, self.artifacts[artifact])
        if stage.name in self._recorded:
            self.state["stages"][stage.name] = facts
        if self.after_stage is not None:
            self.after_stage(stage, {k: self.artifacts[k] for k in stage.outputs}, facts)
