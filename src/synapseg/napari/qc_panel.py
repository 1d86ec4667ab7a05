"""The QC panel: the selected vesicle's facts and its radial profile (matplotlib Qt canvas)."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

from synapseg.napari.qc import summary_text


class QCPanel(QWidget):
    """Text facts (:func:`synapseg.napari.qc.summary_text`) above a radial-profile plot."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = QLabel("select one vesicle to see its QC")
        self.label.setWordWrap(True)
        self.figure = Figure(figsize=(3.2, 2.2), dpi=90, tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(170)
        self.axes = self.figure.add_subplot(111)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label)
        layout.addWidget(self.canvas)
        self.clear()

    def clear(self, message: str = "select one vesicle to see its QC") -> None:
        """Empty plot and a hint."""
        self.label.setText(message)
        self.axes.clear()
        self.axes.set_xlabel("distance from center (nm)")
        self.axes.set_ylabel("density (σ; dark < 0)")
        self.canvas.draw_idle()

    def show_vesicle(
        self, summary: dict[str, Any], r_nm: np.ndarray | None, profile: np.ndarray | None
    ) -> None:
        """Show one vesicle: its facts and, when given, its radial profile."""
        self.label.setText(summary_text(summary))
        ax = self.axes
        ax.clear()
        if r_nm is not None and profile is not None:
            ax.plot(r_nm, profile, color="0.2", lw=1.5, label="spherical average")
            ax.axvline(summary["radius_nm"], color="tab:orange", lw=1.2, label="bilayer midline")
            if np.isfinite(summary["outer_radius_nm"]):
                ax.axvline(
                    summary["outer_radius_nm"],
                    color="tab:orange",
                    lw=0.8,
                    ls="--",
                    label="outer surface",
                )
            ax.axhline(0.0, color="0.7", lw=0.6)
            ax.legend(fontsize=7, loc="lower right", frameon=False)
        ax.set_title(f"vesicle {summary['id']}: radial profile (wedge-weighted)", fontsize=8)
        ax.set_xlabel("distance from center (nm)", fontsize=8)
        ax.set_ylabel("density (σ; dark < 0)", fontsize=8)
        ax.tick_params(labelsize=7)
        self.canvas.draw_idle()
