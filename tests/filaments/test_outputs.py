"""Filament files: table, labels, IMOD contours, Pyto files, summary; vesicle counts."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from tests.filaments.conftest import CLEAR, VS

from synapseg.filaments import FilamentParams, add_counts, detect_filaments, filament_summary
from synapseg.filaments.files import read_filament_table, write_filament_outputs
from synapseg.filaments.measure import TABLE_COLUMNS, parse_path
from synapseg.io.imod import read_imod_spheres
from synapseg.io.volume import read_volume


def test_table_columns_start_as_the_issue_lists(tiny_scene):
    table, _ = detect_filaments(
        tiny_scene["image"], VS, tiny_scene["vesicles"], tiny_scene["az"], FilamentParams(**CLEAR)
    )
    assert list(table.columns) == TABLE_COLUMNS
    assert TABLE_COLUMNS[:4] == ["id", "kind", "vesicle_a", "vesicle_b"]
    # the path starts and ends at the contact points
    for _, row in table.iterrows():
        path = parse_path(row["path_px"])
        a = [row[f"contact_a_{ax}_px"] for ax in "zyx"]
        b = [row[f"contact_b_{ax}_px"] for ax in "zyx"]
        assert np.allclose(path[0], a, atol=0.01) and np.allclose(path[-1], b, atol=0.01)
        assert row["length_nm"] >= row["end_to_end_nm"] - 1e-6


def test_counts_and_summary(tiny_scene):
    table, _ = detect_filaments(
        tiny_scene["image"], VS, tiny_scene["vesicles"], tiny_scene["az"], FilamentParams(**CLEAR)
    )
    counted = add_counts(tiny_scene["vesicles"], table)
    assert counted["n_connectors"].tolist() == [1, 1]
    assert counted["n_tethers"].tolist() == [0, 1]
    az = np.array([60.0, 23.0])
    summary = filament_summary(counted, table, az_distance_nm=az)
    assert summary["fraction_tethered"] == 0.5 and summary["fraction_connected"] == 1.0
    bins = {tuple(r["az_distance_nm"]): r for r in summary["by_az_distance"]}
    assert bins[(20.0, 45.0)]["fraction_tethered"] == 1.0
    assert bins[(45.0, 100.0)]["fraction_tethered"] == 0.0


def test_write_everything(tiny_scene, tmp_path):
    image = tiny_scene["image"]
    table, labels = detect_filaments(
        image, VS, tiny_scene["vesicles"], tiny_scene["az"], FilamentParams(**CLEAR)
    )
    counted = add_counts(tiny_scene["vesicles"], table)
    out = write_filament_outputs(
        tmp_path, "t", table, labels, counted, image, voxel_size_nm=VS, provenance={"x": 1}
    )
    back = read_filament_table(out["table"])
    assert back["kind"].tolist() == table["kind"].tolist()
    assert back["vesicle_b"].isna().tolist() == table["vesicle_b"].isna().tolist()
    mrc = read_volume(out["labels"])
    assert np.array_equal(np.asarray(mrc.data), labels)
    assert np.allclose(mrc.voxel_size_nm, VS, atol=1e-4)
    # IMOD: one open contour per filament, labelled with its id, points on the path
    pts, _, meta = read_imod_spheres(out["imod"], allow_missing_sizes=True)
    assert meta["object_names"] == ["connectors", "tethers"]
    assert sorted(set(meta["labels"])) == sorted(str(i) for i in table["id"])
    first = parse_path(table.iloc[0]["path_px"])
    assert np.allclose(pts[: len(first)], first, atol=1e-3)
    # Pyto: labels with the filament ids, tables with Pyto boundary ids (AZ = 2)
    teth = read_volume(out["tethers_labels"])
    tid = int(table.loc[table["kind"] == "tether", "id"].iloc[0])
    assert set(np.unique(np.asarray(teth.data))) == {0, tid}
    dat = out["tethers_table"].read_text()
    assert "[11 2]" in dat  # vesicle 2 is Pyto id 11
    assert json.loads(out["summary_json"].read_text())["n_tethers"] == 1
    assert out["summary_png"].stat().st_size > 1000
    ves = pd.read_csv(out["vesicles"])
    assert {"n_connectors", "n_tethers"} <= set(ves.columns)


def test_star_and_json_keep_the_filament_counts(tiny_scene, tmp_path):
    """n_connectors / n_tethers travel through the vesicle STAR and JSON exports."""
    from synapseg.io.star import read_table_star, write_table_star
    from synapseg.io.tables import read_vesicles, write_table_json

    table, _ = detect_filaments(
        tiny_scene["image"], VS, tiny_scene["vesicles"], tiny_scene["az"], FilamentParams(**CLEAR)
    )
    counted = add_counts(tiny_scene["vesicles"], table)
    shape = tiny_scene["image"].shape
    star = write_table_star(
        tmp_path / "v.star", counted, tomogram_name="t", voxel_size_nm=VS, shape=shape
    )
    back = read_table_star(star, voxel_size_nm=VS, shape=shape)
    assert back["n_connectors"].tolist() == counted["n_connectors"].tolist()
    assert back["n_tethers"].tolist() == counted["n_tethers"].tolist()
    js = write_table_json(tmp_path / "v.json", counted)
    back = read_vesicles(js, voxel_size_nm=VS)
    assert back["n_tethers"].tolist() == counted["n_tethers"].tolist()
