"""The correction stack: every hand correction is a command over the vesicle table.

:class:`CorrectionStack` owns the table (the napari Points layer is only a view of it). Each
command (:meth:`~CorrectionStack.add`, :meth:`~CorrectionStack.delete`,
:meth:`~CorrectionStack.move`, :meth:`~CorrectionStack.resize`,
:meth:`~CorrectionStack.merge`, :meth:`~CorrectionStack.split`,
:meth:`~CorrectionStack.refit`) records the table before and after it, so
:meth:`~CorrectionStack.undo` and :meth:`~CorrectionStack.redo` restore tables exactly;
a new command after an undo drops the redo branch. Fits use a
:class:`~synapseg.napari.fitting.VesicleFitter` (pass one to the commands that fit).

Rows touched by hand get a ``correction`` column (``added``, ``moved``, ``resized``,
``merged``, ``split``, ``refit``; empty for untouched rows) and, when placed or fitted by
hand, ``source = manual`` and no ``score``; ids are never renumbered, new ids continue
above the largest id ever used. :meth:`~CorrectionStack.provenance` lists what the applied
commands did (undone ones are not listed): ``added``, ``deleted``, ``moved``, ``resized``,
``merged``, ``split``, ``refit`` ids and the log of commands.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

CENTER_PX = ["center_z_px", "center_y_px", "center_x_px"]
ACTIONS = ("added", "deleted", "moved", "resized", "merged", "split", "refit")
MAX_ID = 65535


@dataclass
class Command:
    """One applied correction: what it did and the tables around it."""

    action: str
    ids: list[int]
    detail: dict[str, Any]
    before: pd.DataFrame = field(repr=False)
    after: pd.DataFrame = field(repr=False)
    time: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "ids": list(self.ids), **self.detail, "time": self.time}


class CorrectionStack:
    """Undoable corrections over a vesicle table (see the module docstring).

    Parameters
    ----------
    table
        The vesicle table (``id``, ``center_*_px``, ``radius_nm`` ...); copied.
    voxel_size_nm
        Voxel size, to keep ``center_*_nm`` in step with the voxel centers.
    """

    def __init__(self, table: pd.DataFrame, voxel_size_nm: Sequence[float] | float) -> None:
        from synapseg.core.units import voxel_size_zyx

        self.vs = voxel_size_zyx(voxel_size_nm)
        t = table.copy().reset_index(drop=True)
        if "id" not in t:
            t.insert(0, "id", np.arange(1, len(t) + 1))
        t["id"] = t["id"].astype(int)
        if "correction" not in t:
            t["correction"] = ""
        t["correction"] = t["correction"].fillna("").astype(object)
        if "source" not in t:
            t["source"] = "auto"
        t["source"] = t["source"].astype(object)
        self.original = t
        self.table = t.copy()
        self.done: list[Command] = []
        self.undone: list[Command] = []
        self._max_id = int(t["id"].max()) if len(t) else 0

    # ------------------------------------------------------------------ bookkeeping

    def _commit(self, action: str, ids: Iterable[int], table: pd.DataFrame, **detail) -> Command:
        after = table.reset_index(drop=True)
        cmd = Command(action, [int(i) for i in ids], detail, self.table, after)
        self.table = cmd.after
        self.done.append(cmd)
        self.undone.clear()
        return cmd

    def undo(self) -> Command | None:
        """Undo the last command (``None`` when there is none)."""
        if not self.done:
            return None
        cmd = self.done.pop()
        self.undone.append(cmd)
        self.table = cmd.before
        return cmd

    def redo(self) -> Command | None:
        """Redo the last undone command (``None`` when there is none)."""
        if not self.undone:
            return None
        cmd = self.undone.pop()
        self.done.append(cmd)
        self.table = cmd.after
        return cmd

    def _new_id(self) -> int:
        used = max(self._max_id, int(self.table["id"].max()) if len(self.table) else 0)
        if used >= MAX_ID:
            raise ValueError(f"vesicle ids are used up to {MAX_ID} (uint16 labels)")
        self._max_id = used + 1
        return self._max_id

    def _rows(self, ids: Iterable[int]) -> np.ndarray:
        ids = [int(i) for i in ids]
        mask = self.table["id"].isin(ids).to_numpy()
        missing = sorted(set(ids) - set(self.table["id"].astype(int)))
        if missing:
            raise KeyError(f"no vesicle with id {missing}")
        return mask

    def _set_fit(self, t: pd.DataFrame, i: int, fit: pd.Series, mark: str) -> None:
        for col, value in fit.items():
            if col in ("id", "source", "correction", "score", "confidence"):
                continue
            if col not in t:
                t[col] = np.nan
            t.loc[i, col] = value
        self._derive(t, [i])
        t.loc[i, "correction"] = mark

    def _derive(self, t: pd.DataFrame, rows: Iterable[int]) -> None:
        rows = list(rows)
        for k, a in enumerate("zyx"):
            if f"center_{a}_nm" in t or f"center_{a}_px" in t:
                px = t.loc[rows, f"center_{a}_px"].astype(float)
                t.loc[rows, f"center_{a}_nm"] = px * self.vs[k]
        if "radius_px" in t:
            t.loc[rows, "radius_px"] = t.loc[rows, "radius_nm"].astype(float) / self.vs[2]
        if "outer_radius_nm" in t:
            from synapseg.io.schema import derive_outer_radius

            t.loc[rows, "outer_radius_nm"] = derive_outer_radius(t.loc[rows])

    def _manual_row(self, fit: pd.Series, mark: str, new_id: int | None = None) -> dict:
        row = {c: np.nan for c in self.table.columns}
        row.update({k: v for k, v in fit.items() if k in self.table or k in CENTER_PX})
        row.update(
            id=new_id if new_id is not None else self._new_id(),
            source="manual",
            correction=mark,
            score=np.nan,
            confidence=np.nan,
        )
        if "outer_shrunk_nm" in row:
            row["outer_shrunk_nm"] = 0.0
        return row

    def _append(self, rows: list[dict]) -> pd.DataFrame:
        new = pd.DataFrame(rows, columns=self.table.columns)
        t = pd.concat([self.table, new], ignore_index=True) if len(self.table) else new
        t["id"] = t["id"].astype(int)
        self._derive(t, range(len(self.table), len(t)))
        return t

    # ------------------------------------------------------------------ commands

    def add(self, point_px: Sequence[float], fitter: Any) -> int:
        """Add the vesicle fitted around a point placed by hand; returns its new id.

        Raises :class:`~synapseg.napari.fitting.FitError` (and changes nothing) when no
        membrane is found around the point.
        """
        fit = fitter.add(point_px)
        row = self._manual_row(fit, "added")
        start = [float(v) for v in point_px]
        self._commit("added", [row["id"]], self._append([row]), clicked_px=start)
        return int(row["id"])

    def delete(self, ids: Iterable[int]) -> list[int]:
        """Delete vesicles by id; returns the ids deleted."""
        ids = sorted({int(i) for i in ids})
        if not ids:
            return []
        mask = self._rows(ids)
        self._commit("deleted", ids, self.table[~mask])
        return ids

    def move(self, moves: dict[int, Sequence[float]]) -> list[int]:
        """Move vesicles to new centers (voxels, zyx) given by hand; radii unchanged."""
        if not moves:
            return []
        t = self.table.copy()
        self._rows(moves)
        for vid, center in moves.items():
            i = t.index[t["id"] == int(vid)][0]
            t.loc[i, CENTER_PX] = [float(v) for v in center]
            self._derive(t, [i])
            t.loc[i, "correction"] = "moved"
        to_px = {int(k): [float(v) for v in c] for k, c in moves.items()}
        self._commit("moved", moves, t, to_px=to_px)
        return sorted(int(k) for k in moves)

    def resize(self, ids: Iterable[int], radius_nm: float, *, coalesce: bool = False) -> list[int]:
        """Set the bilayer-midline radius (nm) of vesicles by hand.

        ``coalesce``: when the last command resized the same vesicles, update it instead of
        adding one (a size slider dragged by hand is one undo step).
        """
        ids = sorted({int(i) for i in ids})
        if not ids:
            return []
        if not (np.isfinite(radius_nm) and radius_nm > 0):
            raise ValueError(f"radius must be a positive number of nm, not {radius_nm}")
        t = self.table.copy()
        mask = self._rows(ids)
        t.loc[mask, "radius_nm"] = float(radius_nm)
        if "outer_shrunk_nm" in t:
            t.loc[mask, "outer_shrunk_nm"] = 0.0
        self._derive(t, np.flatnonzero(mask))
        t.loc[mask, "correction"] = "resized"
        last = self.done[-1] if self.done else None
        if coalesce and last is not None and last.action == "resized" and last.ids == ids:
            last.after = t.reset_index(drop=True)
            last.detail["radius_nm"] = float(radius_nm)
            self.table = last.after
            self.undone.clear()
            return ids
        self._commit("resized", ids, t, radius_nm=float(radius_nm))
        return ids

    def refit(self, ids: Iterable[int], fitter: Any) -> list[int]:
        """Refine center and radius of vesicles from where they are now."""
        ids = sorted({int(i) for i in ids})
        t = self.table.copy()
        self._rows(ids)
        for vid in ids:
            i = t.index[t["id"] == vid][0]
            fit = fitter.refit(t.loc[i, CENTER_PX].to_numpy(float), float(t.loc[i, "radius_nm"]))
            self._set_fit(t, i, fit, "refit")
        if ids:
            self._commit("refit", ids, t)
        return ids

    def merge(self, ids: Iterable[int], fitter: Any) -> int:
        """Replace several detections by one sphere fitted over them; keeps the smallest id."""
        ids = sorted({int(i) for i in ids})
        if len(ids) < 2:
            raise ValueError("select at least two vesicles to merge")
        mask = self._rows(ids)
        rows = self.table[mask]
        fit = fitter.merge(rows[CENTER_PX].to_numpy(float), rows["radius_nm"].to_numpy(float))
        row = self._manual_row(fit, "merged", new_id=ids[0])
        kept = self.table[~mask]
        self.table, before = kept, self.table  # append after the removed rows
        t = self._append([row])
        self.table = before
        self._commit("merged", ids, t, into=ids[0])
        return ids[0]

    def split(self, vid: int, fitter: Any) -> list[int]:
        """Replace one detection by two fitted spheres: the first keeps the id."""
        vid = int(vid)
        mask = self._rows([vid])
        row = self.table[mask].iloc[0]
        fits = fitter.split(row[CENTER_PX].to_numpy(float), float(row["radius_nm"]))
        first = self._manual_row(fits.iloc[0], "split", new_id=vid)
        second = self._manual_row(fits.iloc[1], "split")
        before = self.table
        self.table = before[~mask]
        t = self._append([first, second])
        self.table = before
        self._commit("split", [vid, second["id"]], t, from_id=vid)
        return [vid, int(second["id"])]

    # ------------------------------------------------------------------ provenance

    def provenance(self) -> dict[str, Any]:
        """What the applied commands did, by action (ids), and the command log."""
        out: dict[str, Any] = {a: [] for a in ACTIONS}
        for cmd in self.done:
            out[cmd.action].extend(cmd.ids)
        out = {a: sorted(set(v)) for a, v in out.items()}
        done = self.done
        out["merged_into"] = {str(c.detail["into"]): c.ids for c in done if c.action == "merged"}
        out["split_into"] = {str(c.detail["from_id"]): c.ids for c in done if c.action == "split"}
        out["by_hand"] = True
        out["log"] = [c.to_json() for c in self.done]
        out["n_before"] = int(len(self.original))
        out["n_after"] = int(len(self.table))
        return out

    @property
    def changed(self) -> bool:
        """Whether any applied command is left."""
        return bool(self.done)
