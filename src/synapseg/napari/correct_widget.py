"""The correction widget: edit vesicles on a tomogram, inspect them, save every export.

Pick the tomogram (image layer) and the vesicles (points layer, e.g. from the reader or the
segment widget) and press *Edit*. Then

* **add**: the points layer's add mode (button *Add by clicking*); each click is fitted
  (center refined, radius fitted, with ``synapseg export``'s code for hand-placed points);
* **delete** / **move**: napari's own Delete key and drag in select mode, or the buttons;
* **resize**: the radius box applies to the selected vesicles; **refit**, **merge**
  (two or more selected → one sphere fitted over them), **split** (one selected → two);
* **undo** / **redo** over the table (:class:`~synapseg.napari.corrections.CorrectionStack`);
* the **confidence slider** hides detections below it (hand-placed ones always shown; the
  cut also applies when saving, and is recorded);
* the **QC panel** shows the selected vesicle's facts, reasons and radial profile;
* **Save** writes every export (as ``synapseg export``) into a folder, asking before it
  replaces files; **Add to training set** writes a ``synapseg train --data`` item.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from synapseg.errors import InputError
from synapseg.napari.corrections import CorrectionStack
from synapseg.napari.fitting import FitError, VesicleFitter, fit_context
from synapseg.napari.layers import ROLE, volume_from_layer
from synapseg.napari.points import PointsSync, show_spheres
from synapseg.napari.qc import vesicle_summary
from synapseg.napari.qc_panel import QCPanel
from synapseg.napari.save import add_to_training_set, existing_outputs, save_corrected

log = logging.getLogger(__name__)


def table_from_layer(layer: Any) -> pd.DataFrame:
    """The vesicle table behind a points layer: its features when they hold ids and radii,
    else centers from the data and radii from the marker sizes."""
    feats = getattr(layer, "features", None)
    if feats is not None and {"id", "radius_nm"} <= set(feats.columns):
        table = feats.copy()
    else:
        vs = np.asarray(layer.scale, float)[-3:]
        table = pd.DataFrame({"id": np.arange(1, len(layer.data) + 1)})
        table["radius_nm"] = np.asarray(layer.size, float).reshape(-1) * vs[2] / 2 - 2.25
    data = np.asarray(layer.data, float).reshape(-1, 3)
    for k, a in enumerate("zyx"):
        table[f"center_{a}_px"] = data[:, k]
    return table.reset_index(drop=True)


class CorrectionWidget(QWidget):
    """Dock widget: the correction tools (see the module docstring)."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.stack: CorrectionStack | None = None
        self.sync: PointsSync | None = None
        self.fitter: VesicleFitter | None = None
        self.volume: Any = None
        self.segmented_with: dict[str, Any] = {}

        self.image = QComboBox()
        self.points = QComboBox()
        self.edit_button = QPushButton("Edit")
        self.add_button = QPushButton("Add by clicking")
        self.delete_button = QPushButton("Delete")
        self.refit_button = QPushButton("Refit")
        self.merge_button = QPushButton("Merge")
        self.split_button = QPushButton("Split")
        self.undo_button = QPushButton("Undo")
        self.redo_button = QPushButton("Redo")
        self.radius = QDoubleSpinBox()
        self.radius.setRange(3.0, 100.0)
        self.radius.setDecimals(2)
        self.radius.setSuffix(" nm")
        self.resize_button = QPushButton("Set radius")
        self.slider = QSlider(Qt.Horizontal)
        self.slider.setRange(0, 100)
        self.slider_label = QLabel("show confidence ≥ 0.00")
        self.qc = QCPanel()
        self.folder = QLineEdit()
        self.folder.setPlaceholderText("output folder")
        self.formats = QLineEdit("csv,json,star,mod,labels")
        self.save_button = QPushButton("Save")
        self.train_folder = QLineEdit()
        self.train_folder.setPlaceholderText("training-set folder")
        self.train_button = QPushButton("Add to training set")
        self.status = QLabel("")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("tomogram", self.image)
        form.addRow("vesicles", self.points)
        grid = QGridLayout()
        for k, b in enumerate(
            (self.add_button, self.delete_button, self.refit_button, self.merge_button,
             self.split_button, self.undo_button, self.redo_button)
        ):  # fmt: skip
            grid.addWidget(b, k // 4, k % 4)
        size_row = QHBoxLayout()
        size_row.addWidget(self.radius)
        size_row.addWidget(self.resize_button)
        save_form = QFormLayout()
        save_form.addRow("formats", self.formats)
        save_form.addRow(self.folder, self.save_button)
        save_form.addRow(self.train_folder, self.train_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.edit_button)
        layout.addLayout(grid)
        layout.addLayout(size_row)
        layout.addWidget(self.slider_label)
        layout.addWidget(self.slider)
        layout.addWidget(self.qc)
        layout.addLayout(save_form)
        layout.addWidget(self.status)

        self.edit_button.clicked.connect(self.bind)
        self.add_button.clicked.connect(self.add_mode)
        self.delete_button.clicked.connect(lambda: self._do(self._delete))
        self.refit_button.clicked.connect(lambda: self._do(self._refit))
        self.merge_button.clicked.connect(lambda: self._do(self._merge))
        self.split_button.clicked.connect(lambda: self._do(self._split))
        self.undo_button.clicked.connect(self.undo)
        self.redo_button.clicked.connect(self.redo)
        self.resize_button.clicked.connect(lambda: self._do(self._resize))
        self.slider.valueChanged.connect(self._on_slider)
        self.save_button.clicked.connect(lambda: self.save())
        self.train_button.clicked.connect(lambda: self.add_to_training())
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self._refresh_layers()
        self._update_buttons()

    # ------------------------------------------------------------------ layers

    def _refresh_layers(self, *_: Any) -> None:
        pairs = ((self.image, "Image", "tomogram"), (self.points, "Points", "vesicles"))
        for combo, kind, role in pairs:
            current = combo.currentText()
            layers = [ly for ly in self.viewer.layers if type(ly).__name__ == kind]
            if kind == "Image":
                layers = [ly for ly in layers if ly.metadata.get(ROLE) != "probabilities"]
            names = [ly.name for ly in layers]
            combo.clear()
            combo.addItems(names)
            preferred = [ly.name for ly in layers if ly.metadata.get(ROLE) == role]
            if current in names:
                combo.setCurrentText(current)
            elif preferred:
                combo.setCurrentText(preferred[-1])

    def bind(self) -> None:
        """Start correcting the chosen vesicles layer on the chosen tomogram."""
        if not self.image.currentText() or not self.points.currentText():
            self.status.setText("open a tomogram and its vesicles first")
            return
        image = self.viewer.layers[self.image.currentText()]
        points = self.viewer.layers[self.points.currentText()]
        if self.sync is not None:
            self.sync.disconnect()
        self.volume = volume_from_layer(image)
        meta = points.metadata or {}
        context = dict(meta.get("fit") or fit_context(meta.get("report")))
        self.segmented_with = dict(meta.get("provenance") or {})
        self.fitter = VesicleFitter(self.volume.data, self.volume.voxel_size_nm, **context)
        self.stack = CorrectionStack(table_from_layer(points), self.volume.voxel_size_nm)
        if self.fitter.polarity is None:  # no report: judged on the vesicles, as export does
            self.fitter.ensure_polarity(self.stack.table)
        self.sync = PointsSync(points, self.stack, self.fitter, self._changed, self._message)
        events = points.selected_data.events  # psygnal (napari >= 0.6) or napari's own
        signal = events.items_changed if hasattr(events, "items_changed") else events.changed
        signal.connect(self._show_selected)
        show_spheres(self.viewer, points)
        self.viewer.layers.selection.active = points
        if not self.folder.text():
            folder = Path(meta.get("path", "") or ".").parent / "corrected"
            self.folder.setText(str(folder))
        self.status.setText(f"editing {len(self.stack.table)} vesicles of {points.name}")
        self._update_buttons()

    # ------------------------------------------------------------------ actions

    def _message(self, text: str) -> None:
        self.status.setText(text)

    def _do(self, action: Any) -> Any:
        if self.stack is None or self.sync is None:
            self.status.setText("press Edit first")
            return None
        try:
            return action(self.sync.selected_ids())
        except (FitError, InputError) as exc:
            self.status.setText(exc.message)
        except (KeyError, ValueError) as exc:
            self.status.setText(str(exc).strip("'\""))
        return None

    def add_mode(self) -> None:
        """Switch the vesicles layer to napari's add mode: each click adds a fitted vesicle."""
        if self.sync is not None:
            self.viewer.layers.selection.active = self.sync.layer
            self.sync.layer.mode = "add"
            self.status.setText("click on vesicle centers; Esc/select mode to stop")

    def _delete(self, ids: list[int]) -> list[int]:
        done = self.stack.delete(ids)
        self.sync.render()
        return done

    def _refit(self, ids: list[int]) -> list[int]:
        done = self.stack.refit(ids, self.fitter)
        self.sync.render(select=done)
        return done

    def _merge(self, ids: list[int]) -> int:
        vid = self.stack.merge(ids, self.fitter)
        self.sync.render(select=[vid])
        return vid

    def _split(self, ids: list[int]) -> list[int]:
        if len(ids) != 1:
            raise ValueError("select exactly one vesicle to split")
        new = self.stack.split(ids[0], self.fitter)
        self.sync.render(select=new)
        return new

    def _resize(self, ids: list[int]) -> list[int]:
        done = self.stack.resize(ids, float(self.radius.value()))
        self.sync.render(select=done)
        return done

    def undo(self) -> None:
        """Undo the last correction."""
        if self.stack is not None and self.stack.undo() is not None:
            self.sync.render()

    def redo(self) -> None:
        """Redo the last undone correction."""
        if self.stack is not None and self.stack.redo() is not None:
            self.sync.render()

    def _on_slider(self, value: int) -> None:
        cut = value / 100.0
        self.slider_label.setText(f"show confidence ≥ {cut:.2f}")
        if self.sync is not None:
            self.sync.set_min_confidence(cut)

    # ------------------------------------------------------------------ view

    def _changed(self) -> None:
        self._update_buttons()
        self._show_selected()

    def _update_buttons(self) -> None:
        bound = self.stack is not None
        for b in (
            self.add_button,
            self.delete_button,
            self.refit_button,
            self.merge_button,
            self.split_button,
            self.resize_button,
            self.save_button,
            self.train_button,
        ):
            b.setEnabled(bound)
        self.undo_button.setEnabled(bound and bool(self.stack.done))
        self.redo_button.setEnabled(bound and bool(self.stack.undone))

    def _show_selected(self, *_: Any) -> None:
        if self.sync is None:
            return
        ids = self.sync.selected_ids()
        if len(ids) != 1:
            self.qc.clear(f"{len(ids)} vesicles selected" if ids else "select one vesicle")
            return
        table = self.stack.table
        summary = vesicle_summary(table, ids[0], self.volume.voxel_size_nm, self.volume.shape)
        self.radius.setValue(summary["radius_nm"] if np.isfinite(summary["radius_nm"]) else 20)
        try:
            r_nm, prof = self.fitter.profile(summary["center_px"], summary["radius_nm"])
        except (ValueError, FitError):
            r_nm, prof = None, None
        self.qc.show_vesicle(summary, r_nm, prof)

    # ------------------------------------------------------------------ save

    def confirm(self, text: str) -> bool:
        """Ask the user (tests replace this)."""
        answer = QMessageBox.question(self, "synapseg", text)
        return answer == QMessageBox.Yes

    def save(self, folder: str | None = None) -> dict[str, str] | None:
        """Write every export into ``folder`` (default: the folder box); asks before replacing."""
        if self.stack is None:
            self.status.setText("press Edit first")
            return None
        folder = folder or self.folder.text().strip()
        if not folder:
            self.status.setText("choose an output folder")
            return None
        formats = [f.strip() for f in self.formats.text().split(",") if f.strip()]
        name = self.volume.name
        existing = existing_outputs(folder, name, formats)
        overwrite = bool(existing)
        if existing and not self.confirm(f"Replace {len(existing)} existing file(s) in {folder}?"):
            self.status.setText("not saved: existing files kept")
            return None
        try:
            written = save_corrected(
                self.stack.table,
                self.volume,
                folder,
                formats=formats,
                overwrite=overwrite,
                corrections=self.stack.provenance(),
                min_confidence=self.sync.min_confidence,
                segmented_with=self.segmented_with,
            )
        except InputError as exc:
            self.status.setText(f"not saved: {exc.message}")
            return None
        self.status.setText(f"saved {len(written)} files to {folder}")
        return written

    def add_to_training(self, folder: str | None = None) -> Path | None:
        """Write the corrected vesicles as a training item (asks before replacing it)."""
        if self.stack is None:
            return None
        folder = folder or self.train_folder.text().strip()
        if not folder:
            self.status.setText("choose a training-set folder")
            return None
        item = Path(folder) / self.volume.name
        overwrite = item.exists()
        if overwrite and not self.confirm(f"Replace the training item {item}?"):
            return None
        try:
            from synapseg.napari.save import visible_table

            table, _ = visible_table(self.stack.table, self.sync.min_confidence)
            out = add_to_training_set(
                folder,
                self.volume,
                table,
                overwrite=overwrite,
                provenance={"corrections": self.stack.provenance()},
            )
        except InputError as exc:
            self.status.setText(f"not added: {exc.message}")
            return None
        self.status.setText(f"added to the training set: {out} (synapseg train --data {folder})")
        return out
