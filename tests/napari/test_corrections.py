"""The correction stack (pure, no viewer): each action, undo/redo, ids and provenance, and
the fits behind click-to-add, merge and split on a simulated tomogram."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synapseg.napari.corrections import CENTER_PX, CorrectionStack
from synapseg.napari.fitting import FitError, VesicleFitter

VOXEL_NM = 1.68


@pytest.fixture(scope="module")
def fitter(sim) -> VesicleFitter:
    p = sim.params
    return VesicleFitter(sim.tomogram, VOXEL_NM, float(p["tilt_range_deg"]), "y", polarity=1)


@pytest.fixture
def detections(sim) -> pd.DataFrame:
    """The true vesicles as a detection table (ids 1..n) with a confidence column."""
    t = sim.vesicles[["id", *CENTER_PX, "radius_nm"]].copy()
    t["confidence"] = np.linspace(0.3, 0.99, len(t))
    t["score"] = 0.9
    t["source"] = "auto"
    return t


def _center_nm(row) -> np.ndarray:
    return np.asarray([row[c] for c in CENTER_PX], float) * VOXEL_NM


class FakeFitter:
    """Returns fixed spheres: tests of the bookkeeping without fitting."""

    def add(self, point):
        return pd.Series(
            {
                "center_z_px": point[0],
                "center_y_px": point[1],
                "center_x_px": point[2],
                "radius_nm": 17.0,
                "membrane_contrast": 1.0,
            }
        )

    refit = lambda self, c, r: self.add(c)  # noqa: E731
    merge = lambda self, c, r: self.add(np.mean(c, axis=0))  # noqa: E731

    def split(self, c, r):
        return pd.DataFrame([self.add(np.asarray(c) - 5), self.add(np.asarray(c) + 5)])


def test_each_action_undo_redo_and_provenance(detections):
    stack = CorrectionStack(detections, VOXEL_NM)
    ids0 = list(detections["id"])
    fake = FakeFitter()
    new = stack.add([20.0, 30.0, 40.0], fake)
    assert new == max(ids0) + 1
    row = stack.table.set_index("id").loc[new]
    assert row["source"] == "manual" and np.isnan(row["score"]) and np.isnan(row["confidence"])
    assert row["correction"] == "added" and row["center_x_nm"] == pytest.approx(40 * VOXEL_NM)
    stack.delete([2, 3])
    stack.move({4: [10.0, 11.0, 12.0]})
    stack.resize([5], 21.5)
    merged = stack.merge([6, 7], fake)
    halves = stack.split(8, fake)
    t = stack.table.set_index("id")
    assert 2 not in t.index and 3 not in t.index and 7 not in t.index
    assert list(t.loc[4, CENTER_PX]) == [10.0, 11.0, 12.0] and t.loc[4, "correction"] == "moved"
    assert t.loc[5, "radius_nm"] == 21.5 and t.loc[5, "correction"] == "resized"
    assert merged == 6 and t.loc[6, "correction"] == "merged"
    assert (
        halves[0] == 8 and halves[1] == new + 1 and (t.loc[halves, "correction"] == "split").all()
    )
    assert t.loc[1, "correction"] == "" and t.loc[1, "source"] == "auto"  # untouched row
    prov = stack.provenance()
    assert prov["added"] == [new] and prov["deleted"] == [2, 3] and prov["moved"] == [4]
    assert prov["resized"] == [5] and prov["merged_into"] == {"6": [6, 7]}
    assert prov["split_into"] == {"8": [8, new + 1]} and prov["by_hand"] is True
    assert [c["action"] for c in prov["log"]] == [
        "added",
        "deleted",
        "moved",
        "resized",
        "merged",
        "split",
    ]
    # undo everything restores the original table exactly; redo replays it
    after = stack.table.copy()
    while stack.undo() is not None:
        pass
    pd.testing.assert_frame_equal(stack.table, stack.original)
    assert stack.provenance()["added"] == [] and not stack.changed
    while stack.redo() is not None:
        pass
    pd.testing.assert_frame_equal(stack.table, after)
    # a new command after an undo drops the redo branch; ids are never reused
    stack.undo()
    assert stack.undone
    third = stack.add([5.0, 5.0, 5.0], fake)
    assert not stack.undone and third > new + 1


def test_resizes_by_a_slider_coalesce_into_one_undo_step(detections):
    stack = CorrectionStack(detections, VOXEL_NM)
    for r in (18.0, 19.0, 20.0):
        stack.resize([5], r, coalesce=True)
    assert len(stack.done) == 1 and stack.done[0].detail["radius_nm"] == 20.0
    assert stack.table.set_index("id").loc[5, "radius_nm"] == 20.0
    stack.resize([6], 20.0, coalesce=True)  # other vesicles: a new command
    assert len(stack.done) == 2
    stack.undo()
    stack.undo()
    pd.testing.assert_frame_equal(stack.table, stack.original)


def test_unknown_ids_and_bad_radius_are_refused(detections):
    stack = CorrectionStack(detections, VOXEL_NM)
    with pytest.raises(KeyError):
        stack.delete([999])
    with pytest.raises(ValueError):
        stack.resize([1], -3.0)
    with pytest.raises(ValueError):
        stack.merge([1], FakeFitter())
    assert not stack.done  # nothing applied


def test_click_to_add_refines_an_off_center_click(sim, fitter, detections):
    stack = CorrectionStack(detections.iloc[3:], VOXEL_NM)
    rng = np.random.default_rng(1)
    errors, radius_errors = [], []
    for _, truth in sim.vesicles.iloc[:3].iterrows():
        offset_nm = rng.normal(size=3)
        offset_nm *= 3.5 / np.linalg.norm(offset_nm)  # a click 3.5 nm off the center
        click = np.asarray([truth[c] for c in CENTER_PX]) + offset_nm / VOXEL_NM
        vid = stack.add(click, fitter)
        row = stack.table.set_index("id").loc[vid]
        errors.append(np.linalg.norm(_center_nm(row) - _center_nm(truth)))
        radius_errors.append(abs(row["radius_nm"] - truth["radius_nm"]))
    assert np.median(errors) < 1.0 and max(errors) < 1.5
    assert np.median(radius_errors) < 0.8


def test_a_click_outside_the_tomogram_adds_nothing(fitter, detections):
    stack = CorrectionStack(detections, VOXEL_NM)
    with pytest.raises(FitError, match="no vesicle membrane"):
        stack.add([-80.0, -80.0, -80.0], fitter)
    assert not stack.done and len(stack.table) == len(detections)


def test_merge_fits_one_sphere_over_two_fragments(sim, fitter):
    truth = sim.vesicles.iloc[1]
    c = np.asarray([truth[k] for k in CENTER_PX])
    dx = 0.4 * truth["radius_nm"] / VOXEL_NM
    frags = pd.DataFrame({"id": [40, 41], "center_z_px": [c[0]] * 2, "center_y_px": [c[1]] * 2,
                          "center_x_px": [c[2] - dx, c[2] + dx],
                          "radius_nm": [0.6 * truth["radius_nm"]] * 2})  # fmt: skip
    stack = CorrectionStack(frags, VOXEL_NM)
    assert stack.merge([40, 41], fitter) == 40
    [row] = [r for _, r in stack.table.iterrows()]
    assert np.linalg.norm(_center_nm(row) - _center_nm(truth)) < 1.0
    assert abs(row["radius_nm"] - truth["radius_nm"]) < 1.0


def test_split_finds_two_touching_vesicles(sim, fitter):
    gt = sim.vesicles
    centers = gt[CENTER_PX].to_numpy(float) * VOXEL_NM
    radii = gt["radius_nm"].to_numpy()
    gap = np.linalg.norm(centers[:, None] - centers[None], axis=2) - radii[:, None] - radii[None]
    np.fill_diagonal(gap, np.inf)
    i, j = np.unravel_index(np.argmin(gap), gap.shape)
    mid = (centers[i] + centers[j]) / 2
    r = np.linalg.norm(centers[i] - centers[j]) / 2 + max(radii[i], radii[j])
    merged = pd.DataFrame({"id": [7], **{c: [mid[k] / VOXEL_NM] for k, c in enumerate(CENTER_PX)},
                           "radius_nm": [r]})  # fmt: skip
    stack = CorrectionStack(merged, VOXEL_NM)
    ids = stack.split(7, fitter)
    assert ids[0] == 7 and len(stack.table) == 2
    found = stack.table[CENTER_PX].to_numpy(float) * VOXEL_NM
    err = np.linalg.norm(found[:, None] - centers[[i, j]][None], axis=2)
    assert max(err.min(axis=1)) < 1.5 and sorted(err.argmin(axis=1)) == [0, 1]


def test_inverted_contrast_is_detected_from_the_clicks(sim):
    truth = sim.vesicles.iloc[2]
    center = truth[CENTER_PX].to_numpy(float)
    fitter = VesicleFitter(-sim.tomogram, VOXEL_NM, 60.0, "y")  # bright densities, no hint
    row = fitter.add(center + 1.0)
    assert fitter.polarity == -1
    assert abs(row["radius_nm"] - truth["radius_nm"]) < 1.0
