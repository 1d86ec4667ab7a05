"""Make the screenshots of docs/napari.md (run under a display, e.g. ``xvfb-run -a``).

    xvfb-run -a python docs/images/napari_screenshot.py

The sample tomogram (``synapseg demo``'s, simulated on first use) is opened with the
plugin's reader, segmented with the segment widget's code (default model, CPU), the
vesicles are bound to the correction widget and one vesicle is selected, so that the QC
panel shows its facts and radial profile.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def main() -> None:
    from qtpy.QtWidgets import QApplication

    import napari
    from synapseg.napari.correct_widget import CorrectionWidget
    from synapseg.napari.layers import volume_from_layer
    from synapseg.napari.points import show_spheres
    from synapseg.napari.segment_run import result_layers, run_segmentation
    from synapseg.napari.segment_widget import SegmentWidget
    from synapseg.simulate import sample_path

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1700, 1050)
    [image] = viewer.open(str(sample_path() / "tomogram.mrc"), plugin="synapseg")
    image.name = "sample tomogram"
    segment = SegmentWidget(viewer)
    viewer.window.add_dock_widget(segment, name="Segment vesicles", area="right")
    seg = run_segmentation(volume_from_layer(image), device="cpu")
    for data, kwargs, kind in result_layers(seg, "sample"):
        layer = getattr(viewer, f"add_{kind}")(data, **kwargs)
        if kind == "points":
            show_spheres(viewer, layer)
    segment.status.setText(f"{len(seg.vesicles)} vesicles found")
    correct = CorrectionWidget(viewer)
    viewer.window.add_dock_widget(correct, name="Correct vesicles", area="right")
    correct.image.setCurrentText(image.name)
    correct.points.setCurrentText("sample vesicles")
    correct.bind()
    table = correct.stack.table
    pick = int(np.argmax(table["confidence"].to_numpy() * (table["radius_nm"] > 15)))
    z = float(table.loc[pick, "center_z_px"])
    viewer.dims.set_point(0, z * image.scale[0])
    correct.sync.layer.selected_data = {pick}
    viewer.reset_view()
    for _ in range(20):
        QApplication.processEvents()
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for note in viewer.window._qt_window.findChildren(NapariQtNotification):
        note.close()  # e.g. napari's PyQt5 deprecation notice
    for _ in range(20):
        QApplication.processEvents()
    viewer.screenshot(str(HERE / "napari_correct.png"), canvas_only=False)
    correct.qc.grab().save(str(HERE / "napari_qc.png"))
    print(f"wrote {HERE / 'napari_correct.png'} and napari_qc.png; vesicle {table.loc[pick, 'id']}")
    viewer.close()


if __name__ == "__main__":
    main()
