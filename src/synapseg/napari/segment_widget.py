"""The segment widget: run ``synapseg.segment`` on an image layer without blocking napari.

Model (``default`` or a shipped model, or a model folder), voxel-size override (0: the
layer's scale), device, test-time augmentation and the confidence cut. The run happens in
a napari worker thread (:func:`napari.qt.threading.thread_worker`); each stage reports to
the progress bar, *Cancel* stops the run before its next stage, and the result appears as
layers (probabilities, vesicles) when it is done.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from synapseg.napari.layers import ROLE, volume_from_layer
from synapseg.napari.segment_run import (
    DEVICES,
    Cancelled,
    model_choices,
    result_layers,
    run_segmentation,
)

log = logging.getLogger(__name__)


class _Progress(QObject):
    stage = Signal(int, int, str)  # emitted from the worker thread, delivered in the GUI thread


class SegmentWidget(QWidget):
    """Dock widget: segment the vesicles of an image layer (see the module docstring)."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.worker: Any = None
        self.cancel_event = threading.Event()
        self.result: Any = None
        self._progress = _Progress()
        self._progress.stage.connect(self._on_stage)

        self.image = QComboBox()
        self.model = QComboBox()
        self.model.addItems(model_choices())
        self.model.setEditable(True)  # a model folder path may be typed in
        self.voxel_size = QDoubleSpinBox()
        self.voxel_size.setRange(0.0, 100.0)
        self.voxel_size.setDecimals(3)
        self.voxel_size.setSpecialValueText("from the layer")
        self.voxel_size.setSuffix(" nm")
        self.device = QComboBox()
        self.device.addItems(list(DEVICES))
        self.tta = QCheckBox("test-time augmentation (flips; slower)")
        self.min_confidence = QDoubleSpinBox()
        self.min_confidence.setRange(0.0, 1.0)
        self.min_confidence.setSingleStep(0.05)
        self.min_confidence.setValue(0.5)
        self.run_button = QPushButton("Segment")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.name = QLineEdit()
        self.name.setPlaceholderText("(the layer's name)")

        form = QFormLayout()
        form.addRow("tomogram", self.image)
        form.addRow("model", self.model)
        form.addRow("voxel size", self.voxel_size)
        form.addRow("device", self.device)
        form.addRow("", self.tta)
        form.addRow("min confidence", self.min_confidence)
        form.addRow("result name", self.name)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.run_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self._refresh_layers()

    # ------------------------------------------------------------------ layers

    def _image_layers(self) -> list[Any]:
        return [
            layer
            for layer in self.viewer.layers
            if type(layer).__name__ == "Image"
            and layer.ndim == 3
            and layer.metadata.get(ROLE) != "probabilities"
        ]

    def _refresh_layers(self, *_: Any) -> None:
        current = self.image.currentText()
        names = [layer.name for layer in self._image_layers()]
        self.image.clear()
        self.image.addItems(names)
        if current in names:
            self.image.setCurrentText(current)

    # ------------------------------------------------------------------ run

    def start(self) -> Any:
        """Start a run in a worker thread; returns the worker (``None`` if nothing to run)."""
        from napari.qt.threading import thread_worker

        name = self.image.currentText()
        if not name:
            self.status.setText("open a tomogram first (File > Open, or a sample)")
            return None
        layer = self.viewer.layers[name]
        volume = volume_from_layer(layer)
        vs = self.voxel_size.value() or None
        self.cancel_event = threading.Event()
        kwargs = {
            "model": self.model.currentText() or "default",
            "voxel_size_nm": vs,
            "device": self.device.currentText(),
            "tta": self.tta.isChecked(),
            "min_confidence": float(self.min_confidence.value()),
            "on_stage": self._progress.stage.emit,
            "cancel": self.cancel_event,
        }
        result_name = self.name.text().strip() or layer.name
        path = layer.metadata.get("path")

        @thread_worker
        def work() -> Any:
            try:
                return run_segmentation(volume, **kwargs)
            except Cancelled:
                return None  # not an error: nothing to add

        self.worker = work()
        self.worker.returned.connect(lambda seg: self._on_done(seg, result_name, path, layer))
        self.worker.errored.connect(self._on_error)
        self.worker.finished.connect(self._on_finished)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setRange(0, 0)  # busy until the first stage reports
        self.status.setText(f"segmenting {layer.name} ...")
        self.worker.start()
        return self.worker

    def cancel(self) -> None:
        """Stop the run before its next stage."""
        self.cancel_event.set()
        self.status.setText("cancelling after the current stage ...")

    def _on_stage(self, k: int, n: int, stage: str) -> None:
        self.progress.setRange(0, max(n, 1))
        self.progress.setValue(k)
        if stage != "done":
            self.status.setText(f"stage {k + 1}/{n}: {stage}")

    def _on_done(self, seg: Any, name: str, path: str | None, image: Any = None) -> None:
        if seg is None:
            self.status.setText("cancelled: nothing was added")
            return
        self.result = seg
        if image is not None and not np.allclose(image.scale[-3:], seg.grid.voxel_size_nm):
            image.scale = tuple(seg.grid.voxel_size_nm)  # the override: keep layers aligned
        from synapseg.napari.points import show_spheres

        for data, kwargs, kind in result_layers(seg, name, path):
            layer = getattr(self.viewer, f"add_{kind}")(data, **kwargs)
            if kind == "points":
                show_spheres(self.viewer, layer)
        self.status.setText(
            f"{len(seg.vesicles)} vesicles found; correct them with the 'Correct vesicles' widget"
        )

    def _on_error(self, exc: BaseException) -> None:
        self.status.setText(f"error: {getattr(exc, 'message', None) or exc}")
        log.error("segmentation failed: %s", exc)

    def _on_finished(self) -> None:
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
