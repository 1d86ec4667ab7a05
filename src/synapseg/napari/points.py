"""Keep a napari Points layer in step with a :class:`CorrectionStack` (the layer is a view).

The user edits the layer with napari's own tools and this controller turns each edit into a
command over the table, then redraws the layer from the table:

* a point added in the layer's *add* mode → :meth:`CorrectionStack.add` (fitted around the
  click; a failed fit removes the point again and reports why);
* points deleted (Delete key, the layer's delete button) → :meth:`CorrectionStack.delete`;
* points dragged in *select* mode → :meth:`CorrectionStack.move` once the mouse is released;
* the point size of selected points changed (the layer controls' size slider) →
  :meth:`CorrectionStack.resize` to that outer diameter (one undo step per slider drag).

The layer's rows are always the table's rows in the same order, so an edit is read from
row positions, never from the layer's feature defaults. Edits are handled on the next turn
of the Qt event loop (napari finishes its own bookkeeping first).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from synapseg.napari.corrections import CENTER_PX, CorrectionStack
from synapseg.napari.fitting import FitError, VesicleFitter
from synapseg.napari.layers import point_colors, point_sizes, shown_mask

log = logging.getLogger(__name__)


def _later(fn: Callable[[], None]) -> None:
    try:
        from qtpy.QtCore import QTimer
        from qtpy.QtWidgets import QApplication

        if QApplication.instance() is not None:
            QTimer.singleShot(0, fn)
            return
    except ImportError:  # pragma: no cover - napari always brings Qt here
        pass
    fn()


def show_spheres(viewer: Any, layer: Any) -> None:
    """Show each vesicle on every slice that cuts it: thick-slice margins (napari >= 0.9)
    of the largest outer radius (nm) on each axis; images still show their center plane."""
    if getattr(layer, "projection_mode", None) != "rescale_spherical" or not len(layer.data):
        return
    scale = np.asarray(layer.scale, float)[-3:]
    reach = float(np.max(np.asarray(layer.size, float)) * scale.max() / 2) + 1.0
    ndim = viewer.dims.ndim
    margin = tuple(max(reach, m) for m in viewer.dims.margin_left[-ndim:])
    viewer.dims.margin_left = margin
    viewer.dims.margin_right = margin


class PointsSync:
    """Bind ``layer`` (napari Points) to ``stack`` (see the module docstring).

    Parameters
    ----------
    layer
        The vesicles Points layer (data in input voxels, scale = voxel size).
    stack
        The correction stack that owns the table.
    fitter
        Fits for click-to-add (and the other fitting commands of the widget).
    on_change
        Called after every redraw (the widget refreshes its QC panel and buttons).
    on_error
        Called with a message when an edit could not be applied.
    """

    def __init__(
        self,
        layer: Any,
        stack: CorrectionStack,
        fitter: VesicleFitter,
        on_change: Callable[[], None] | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.layer = layer
        self.stack = stack
        self.fitter = fitter
        self.on_change = on_change
        self.on_error = on_error
        self.min_confidence = 0.0
        self._syncing = False
        self._dragging = False
        self._size_pending = False
        layer.events.data.connect(self._on_data)
        layer.events.size.connect(self._on_size)
        layer.mouse_drag_callbacks.append(self._on_drag)
        self.render()

    def disconnect(self) -> None:
        """Stop listening to the layer."""
        self.layer.events.data.disconnect(self._on_data)
        self.layer.events.size.disconnect(self._on_size)
        if self._on_drag in self.layer.mouse_drag_callbacks:
            self.layer.mouse_drag_callbacks.remove(self._on_drag)

    # ------------------------------------------------------------------ view

    def render(self, select: list[int] | None = None) -> None:
        """Redraw the layer from the table; ``select``: ids to select afterwards."""
        t = self.stack.table
        vs = self.stack.vs
        self._syncing = True
        try:
            layer = self.layer
            layer.selected_data = set()
            layer.data = np.array(t[CENTER_PX], dtype=float).reshape(-1, 3)  # writable: drags
            layer.features = t.reset_index(drop=True)
            if len(t):
                layer.size = point_sizes(t, vs)
                layer.border_color = point_colors(t)
                layer.shown = shown_mask(t, self.min_confidence)
            if select:
                rows = np.flatnonzero(t["id"].isin(select).to_numpy())
                layer.selected_data = {int(i) for i in rows}
            layer.refresh()
        finally:
            self._syncing = False
        if self.on_change is not None:
            self.on_change()

    def set_min_confidence(self, value: float) -> None:
        """Hide detections below ``value`` (hand-placed vesicles stay shown)."""
        self.min_confidence = float(value)
        if len(self.stack.table):
            self.layer.shown = shown_mask(self.stack.table, self.min_confidence)
            self.layer.refresh()

    def selected_ids(self) -> list[int]:
        """Ids of the vesicles selected in the layer."""
        rows = sorted(int(i) for i in self.layer.selected_data if i < len(self.stack.table))
        return [int(v) for v in self.stack.table["id"].to_numpy()[rows]]

    # ------------------------------------------------------------------ edits

    def _error(self, message: str) -> None:
        log.warning("%s", message)
        if self.on_error is not None:
            self.on_error(message)

    def _on_data(self, event: Any) -> None:
        if self._syncing:
            return
        action = str(getattr(event, "action", ""))
        if action.endswith("ADDED") or action == "added":
            new = np.asarray(self.layer.data[len(self.stack.table) :], float)
            _later(lambda: self.apply_added(new))
        elif action.endswith("REMOVED") or action == "removed":
            rows = [int(i) for i in getattr(event, "data_indices", ()) if int(i) >= 0]
            ids = [int(self.stack.table["id"].iloc[i]) for i in rows if i < len(self.stack.table)]
            _later(lambda: self.apply_removed(ids))
        elif (action.endswith("CHANGED") or action == "changed") and not self._dragging:
            _later(self.apply_moves)

    def _on_drag(self, layer: Any, event: Any):
        if getattr(layer, "mode", "") != "select":
            return
        self._dragging = True
        try:
            yield
            while event.type == "mouse_move":
                yield
        finally:
            self._dragging = False
        _later(self.apply_moves)

    def _on_size(self, event: Any = None) -> None:
        if self._syncing or self._size_pending:
            return
        self._size_pending = True
        _later(self.apply_sizes)

    def apply_sizes(self) -> list[int]:
        """Resize the vesicles whose marker size was changed in the layer (outer diameter)."""
        from synapseg.io.schema import DEFAULT_MEMBRANE_THICKNESS_NM

        self._size_pending = False
        t = self.stack.table
        size = np.asarray(self.layer.size, float).reshape(-1)
        if len(size) != len(t) or len(t) == 0:
            return []
        rows = np.flatnonzero(np.abs(size - point_sizes(t, self.stack.vs)) > 1e-3)
        done: list[int] = []
        for value in np.unique(size[rows]):
            ids = [int(v) for v in t["id"].to_numpy()[rows[size[rows] == value]]]
            radius = value * float(self.stack.vs[2]) / 2 - DEFAULT_MEMBRANE_THICKNESS_NM / 2
            try:
                done += self.stack.resize(ids, radius, coalesce=True)
            except ValueError as exc:
                self._error(f"not resized: {exc}")
        self.render(select=done or None)
        return done

    def apply_added(self, points_px: np.ndarray) -> list[int]:
        """Fit and add vesicles around points clicked in the layer; returns the new ids."""
        added = []
        for p in np.asarray(points_px, float).reshape(-1, 3):
            try:
                added.append(self.stack.add(p, self.fitter))
            except FitError as exc:
                self._error(f"not added: {exc.message}")
        self.render(select=added)
        return added

    def apply_removed(self, ids: list[int]) -> list[int]:
        """Delete the vesicles removed from the layer."""
        done = self.stack.delete([i for i in ids if i in set(self.stack.table["id"])])
        self.render()
        return done

    def apply_moves(self) -> list[int]:
        """Move the vesicles whose points were dragged (by hand; radius unchanged)."""
        t = self.stack.table
        data = np.asarray(self.layer.data, float)
        if len(data) != len(t):
            self.render()
            return []
        delta = np.abs(data - t[CENTER_PX].to_numpy(float)).max(axis=1) if len(t) else []
        rows = np.flatnonzero(np.asarray(delta) > 1e-6)
        if len(rows) == 0:
            return []
        ids = [int(v) for v in t["id"].to_numpy()[rows]]
        self.stack.move({i: data[r] for i, r in zip(ids, rows)})
        self.render(select=ids)
        return ids
