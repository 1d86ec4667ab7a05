"""The plugin in a (headless) napari viewer: reader, segment widget, correction tools, save.

Skipped without napari or without a display (pytest-xvfb starts Xvfb; ./install.sh test).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")
if os.name == "posix" and not (
    os.environ.get("DISPLAY")
    or os.environ.get("WAYLAND_DISPLAY")
    or os.environ.get("QT_QPA_PLATFORM") == "offscreen"
):  # checked at collection: pytest-qt's qapp would abort the process without a display
    pytest.skip(
        "no display for napari (install Xvfb and pytest-xvfb: ./install.sh test)",
        allow_module_level=True,
    )

from synapseg.napari.layers import ROLE  # noqa: E402

VOXEL_NM = 1.68
CENTER_PX = ["center_z_px", "center_y_px", "center_x_px"]


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


def _open(viewer, path):
    return viewer.open(str(path), plugin="synapseg")


def test_reader_opens_tomogram_and_table_in_physical_units(viewer, segmented):
    [image] = _open(viewer, segmented["tomogram"])
    layers = _open(viewer, segmented["out"] / "tomo_vesicles.csv")
    points = next(ly for ly in layers if ly.metadata.get(ROLE) == "vesicles")
    table = pd.read_csv(segmented["out"] / "tomo_vesicles.csv")
    np.testing.assert_allclose(image.scale, (VOXEL_NM,) * 3, rtol=1e-4)
    np.testing.assert_allclose(points.scale, image.scale)
    np.testing.assert_array_equal(points.features["id"], table["id"])
    # world coordinates (nm) of a vesicle = its center_*_nm
    world = points.data_to_world(points.data[0])
    np.testing.assert_allclose(world, table.loc[0, ["center_z_nm", "center_y_nm", "center_x_nm"]],
                               atol=1e-2)  # fmt: skip
    assert points.metadata["report"]["n_vesicles"] == len(table)


def test_segment_widget_runs_in_a_worker_and_adds_layers(viewer, segmented, qtbot):
    from synapseg.napari.segment_widget import SegmentWidget

    _open(viewer, segmented["tomogram"])
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    stages = []
    widget._progress.stage.connect(lambda k, n, name: stages.append(name))
    worker = widget.start()
    assert worker is not None and not widget.run_button.isEnabled()
    qtbot.waitUntil(lambda: widget.run_button.isEnabled(), timeout=180_000)
    assert widget.result is not None, widget.status.text()
    assert stages[0] == "specimen" and stages[-1] == "done" and "vesicles" in stages
    points = [ly for ly in viewer.layers if ly.metadata.get(ROLE) == "vesicles"]
    assert len(points) == 1 and len(points[0].data) == len(widget.result.vesicles) > 0
    assert points[0].metadata["fit"]["polarity"] in (-1, 1)
    assert "vesicles found" in widget.status.text()


def test_segment_widget_cancel_adds_nothing(viewer, segmented, qtbot):
    from synapseg.napari.segment_widget import SegmentWidget

    _open(viewer, segmented["tomogram"])
    widget = SegmentWidget(viewer)
    n_layers = len(viewer.layers)
    widget.start()
    widget.cancel()
    qtbot.waitUntil(lambda: widget.run_button.isEnabled(), timeout=120_000)
    assert widget.result is None and "cancelled" in widget.status.text()
    assert len(viewer.layers) == n_layers


def _drag(layer, row, by_px):
    """Press on a point, move the mouse, release (napari's mouse callbacks, select mode)."""
    from dataclasses import dataclass, field

    from napari.utils._proxies import ReadOnlyWrapper
    from napari.utils.interactions import (
        mouse_move_callbacks,
        mouse_press_callbacks,
        mouse_release_callbacks,
    )

    @dataclass
    class Event:
        type: str
        is_dragging: bool = False
        modifiers: list = field(default_factory=list)
        position: tuple = (0, 0, 0)
        pos: np.ndarray = field(default_factory=lambda: np.zeros(2))
        view_direction: list | None = None
        up_direction: list | None = None
        dims_displayed: list = field(default_factory=lambda: [1, 2])

    def event(**kw):
        return ReadOnlyWrapper(Event(**kw), exceptions=("handled",))

    layer.mode = "select"
    layer.selected_data = {row}
    start = layer.data_to_world(layer.data[row])
    end = layer.data_to_world(layer.data[row] + np.asarray(by_px))
    mouse_press_callbacks(layer, event(type="mouse_press", position=tuple(start)))
    mouse_move_callbacks(layer, event(type="mouse_move", is_dragging=True, position=tuple(end)))
    mouse_release_callbacks(layer, event(type="mouse_release", position=tuple(end)))


class _Split:
    """A split that returns two fixed spheres (the fit itself is tested without a viewer)."""

    def __call__(self, center, radius):
        c = np.asarray(center, float)
        return pd.DataFrame([dict(zip(CENTER_PX, c + d), radius_nm=12.0) for d in (-4.0, 4.0)])


def test_correction_tools_undo_and_save_round_trip(viewer, segmented, qtbot, tmp_path):
    from synapseg.napari.correct_widget import CorrectionWidget

    _open(viewer, segmented["tomogram"])
    layers = _open(viewer, segmented["out"] / "tomo_vesicles.csv")
    points = next(ly for ly in layers if ly.metadata.get(ROLE) == "vesicles")
    widget = CorrectionWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.bind()
    stack = widget.stack
    ids = [int(i) for i in stack.table["id"]]
    n0 = len(ids)

    # add by clicking: napari's add mode calls layer.add(); the click is 3 nm off a vesicle
    truth = segmented["sim"].vesicles.iloc[0]
    center = truth[CENTER_PX].to_numpy(float)
    stack_ids = set(ids)
    widget.add_mode()
    assert points.mode == "add"
    points.add(center + np.array([1.0, 1.0, -0.8]))
    qtbot.waitUntil(lambda: len(stack.table) == n0 + 1, timeout=60_000)
    new = (set(stack.table["id"]) - stack_ids).pop()
    row = stack.table.set_index("id").loc[new]
    assert np.linalg.norm((row[CENTER_PX].to_numpy(float) - center) * VOXEL_NM) < 1.2
    assert len(points.data) == n0 + 1 and int(points.features["id"].iloc[-1]) == new
    points.mode = "select"

    # delete with napari's own delete (the Delete key calls remove_selected)
    points.selected_data = {0}
    points.remove_selected()
    qtbot.waitUntil(lambda: ids[0] not in set(stack.table["id"]), timeout=10_000)
    assert len(points.data) == n0

    # move: a changed point position becomes a move command
    data = points.data.copy()
    data[0] += [0.0, 2.0, 0.0]
    points.data = data
    qtbot.waitUntil(lambda: stack.done[-1].action == "moved", timeout=10_000)
    moved = stack.done[-1].ids[0]
    assert moved == ids[1]
    # ... and a drag with the mouse in select mode: one move, when the mouse is released
    _drag(points, row=0, by_px=(0.0, 0.0, 3.0))
    qtbot.waitUntil(lambda: stack.done[-1].detail.get("to_px", {}).get(moved, [0, 0, 0])[2]
                    == pytest.approx(data[0][2] + 3.0), timeout=10_000)  # fmt: skip
    assert [c.action for c in stack.done].count("moved") == 2

    # resize the selected vesicle with the radius box; the QC panel shows it
    points.selected_data = {1}
    qtbot.waitUntil(lambda: f"vesicle {ids[2]}" in widget.qc.label.text(), timeout=10_000)
    assert widget.qc.axes.lines  # the radial profile is drawn
    widget.radius.setValue(21.0)
    widget.resize_button.click()
    assert stack.table.set_index("id").loc[ids[2], "radius_nm"] == 21.0
    assert points.size[1] == pytest.approx(2 * (21.0 + 2.25) / VOXEL_NM, rel=1e-3)
    # ... or with napari's point-size slider: one undo step for the whole drag
    n_done = len(stack.done)
    for size in (26.0, 27.0, 28.0):
        points.current_size = size
        qtbot.waitUntil(lambda s=size: points.size[1] == s and not widget.sync._size_pending)
    assert len(stack.done) == n_done
    assert stack.table.set_index("id").loc[ids[2], "radius_nm"] == pytest.approx(
        28.0 * VOXEL_NM / 2 - 2.25
    )

    # merge two, split one (with a stand-in split fit)
    points.selected_data = {2, 3}
    widget.merge_button.click()
    assert stack.done[-1].action == "merged" and ids[4] not in set(stack.table["id"])
    widget.fitter.split = _Split()
    rows = np.flatnonzero(stack.table["id"] == ids[5])
    points.selected_data = {int(rows[0])}
    widget.split_button.click()
    assert stack.done[-1].action == "split" and len(points.data) == len(stack.table)

    # undo the split and the merge, redo the merge
    table_before_merge = stack.done[-2].before
    widget.undo_button.click()
    widget.undo_button.click()
    pd.testing.assert_frame_equal(stack.table, table_before_merge)
    assert len(points.data) == len(stack.table)
    widget.redo_button.click()
    assert stack.done[-1].action == "merged"

    # the confidence slider hides detections, never hand-placed ones
    widget.slider.setValue(90)
    conf = stack.table["confidence"].to_numpy(float)
    np.testing.assert_array_equal(points.shown, ~(conf < 0.9))
    widget.slider.setValue(0)

    # save: every export, corrections in provenance; no overwrite without confirmation
    out = tmp_path / "corrected"
    written = widget.save(str(out))
    assert {"csv", "star", "mod", "labels", "json"} <= set(written)
    saved = pd.read_csv(out / "tomo_vesicles.csv")
    assert sorted(saved["id"]) == sorted(stack.table["id"])
    assert saved.set_index("id").loc[new, "source"] == "manual"
    prov = json.loads((out / "tomo_vesicles.provenance.json").read_text())
    corr = prov["corrections"]
    assert corr["added"] == [new] and corr["deleted"] == [ids[0]] and corr["moved"] == [moved]
    assert corr["resized"] == [ids[2]] and corr["merged_into"] == {str(ids[3]): [ids[3], ids[4]]}
    widget.confirm = lambda text: False
    stack.delete([new])
    assert widget.save(str(out)) is None and "not saved" in widget.status.text()
    assert new in set(pd.read_csv(out / "tomo_vesicles.csv")["id"])
    widget.confirm = lambda text: True
    assert widget.save(str(out)) is not None
    assert new not in set(pd.read_csv(out / "tomo_vesicles.csv")["id"])
    item = widget.add_to_training(str(tmp_path / "train"))
    assert (item / "vesicle_labels.mrc").is_file()
