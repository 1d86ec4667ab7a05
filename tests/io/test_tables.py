"""Vesicle tables: CSV / JSON round trips, edited ids, read_vesicles dispatch (STAR: test_star)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from synapseg.errors import InputError, OutputExistsError
from synapseg.io.tables import (
    complete_ids,
    read_table_csv,
    read_table_json,
    read_vesicles,
    write_table_csv,
    write_table_json,
)

VS = (1.5, 1.2, 1.2)  # the voxel size of conftest's `table`


def test_csv_round_trip(tmp_path, table, assert_tables_equal):
    path = write_table_csv(tmp_path / "v.csv", table)
    assert_tables_equal(read_table_csv(path), table)
    assert_tables_equal(read_vesicles(path, voxel_size_nm=VS), table)
    # voxel size inferred from the px and nm columns when not given
    back = read_vesicles(path)
    assert_tables_equal(back, table)
    np.testing.assert_allclose(back["membrane_contrast"], table["membrane_contrast"], atol=1e-4)


def test_json_round_trip_with_provenance_and_nan(tmp_path, table, assert_tables_equal):
    table.loc[2, "membrane_contrast"] = np.nan
    prov = {"voxel_size_nm": list(VS), "model": "x"}
    path = write_table_json(tmp_path / "v.json", table, provenance=prov)
    doc = json.loads(path.read_text())
    assert doc["format"] == "synapseg-vesicles" and len(doc["vesicles"]) == 6
    back = read_table_json(path)
    assert_tables_equal(back, table, atol=1e-9)
    assert np.isnan(back.loc[2, "membrane_contrast"])
    assert back.attrs["provenance"]["model"] == "x"
    assert_tables_equal(read_vesicles(path), table, atol=1e-9)


def test_existing_files_and_unwritable_outputs(tmp_path, table):
    write_table_json(tmp_path / "v.json", table)
    with pytest.raises(OutputExistsError):
        write_table_json(tmp_path / "v.json", table)
    write_table_json(tmp_path / "v.json", table, overwrite=True)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="cannot create"):
        write_table_json(blocker / "sub" / "v.json", table)


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("bad.json", "{not json", "not valid JSON"),
        ("list.json", "[1, 2]", "no 'vesicles' list"),
        ("bad.star", "data_\nloop_\n_rlnFoo #1\n1\n", "no particle block"),
        ("bad.csv", "a,b\n1,2\n", "center columns"),
        ("v.txt", "", "unknown vesicle file type"),
    ],
)
def test_malformed_inputs_give_one_clear_error(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError, match=match) as info:
        read_vesicles(path, voxel_size_nm=1.0)
    assert str(path) in info.value.message


def test_hand_made_csv_in_nm_with_outer_radius(tmp_path):
    pd.DataFrame(
        {"center_x_nm": [12.0], "center_y_nm": [24.0], "center_z_nm": [30.0],
         "outer_radius_nm": [22.25]}
    ).to_csv(tmp_path / "h.csv", index=False)  # fmt: skip
    t = read_vesicles(tmp_path / "h.csv", voxel_size_nm=VS)
    assert t[["center_z_px", "center_y_px", "center_x_px"]].iloc[0].tolist() == [20, 20, 10]
    assert t["radius_nm"].iloc[0] == pytest.approx(20.0)
    with pytest.raises(InputError, match="voxel size"):
        read_vesicles(tmp_path / "h.csv")
    pd.DataFrame({"center_x_px": [1.0], "center_y_px": [2.0], "center_z_px": [3.0]}).to_csv(
        tmp_path / "c.csv", index=False
    )
    with pytest.raises(InputError, match="radius"):
        read_vesicles(tmp_path / "c.csv", voxel_size_nm=1.0)
    t = read_vesicles(tmp_path / "c.csv", voxel_size_nm=1.0, allow_missing_radius=True)
    assert np.isnan(t["radius_nm"].iloc[0]) and t["id"].iloc[0] == 1


def test_edited_ids_are_completed(tmp_path, table):
    np.testing.assert_array_equal(
        complete_ids([3, None, 3, "x", 7, 0, 2.5, "12"]), [3, 13, 14, 15, 7, 16, 17, 12]
    )
    edited = table.copy()
    edited["id"] = edited["id"].astype(object)
    edited.loc[1, "id"] = np.nan  # a row added in a spreadsheet
    edited.loc[4, "id"] = 1  # a duplicated row
    write_table_csv(tmp_path / "e.csv", edited)
    back = read_vesicles(tmp_path / "e.csv", voxel_size_nm=VS)
    np.testing.assert_array_equal(back["id"], [1, 13, 5, 8, 14, 12])
