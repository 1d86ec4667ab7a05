"""Vesicle tables: CSV / JSON round trips, edited ids, read_vesicles dispatch (STAR: test_star)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from synapseg.errors import InputError, OutputExistsError
from synapseg.io.tables import (
    CORE_COLUMNS,
    complete_ids,
    make_table,
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


# --------------------------------------------------------------------------- schema


def test_schema_is_the_one_column_definition():
    from synapseg.io import schema, tables

    assert tables.CORE_COLUMNS is schema.CORE_COLUMNS
    assert [c.name for c in schema.CORE] == schema.CORE_COLUMNS
    assert all(c.unit is not None and c.dtype in ("int", "float", "str") for c in schema.CORE)
    assert schema.COLUMNS["radius_nm"].unit == "nm" and "source" in schema.COLUMNS


def test_unknown_columns_pass_through_every_table_format(tmp_path, table):
    t = table.assign(my_note=[f"n{i}" for i in range(len(table))], my_value=np.arange(6) * 0.5)
    t["source"] = "auto"
    for name, write in (("v.csv", write_table_csv), ("v.json", write_table_json)):
        write(tmp_path / name, t)
        back = read_vesicles(tmp_path / name, voxel_size_nm=VS)
        assert back["my_note"].tolist() == t["my_note"].tolist(), name
        np.testing.assert_allclose(back["my_value"], t["my_value"])
        assert back["source"].tolist() == ["auto"] * 6
        # core first, then the other columns in their given order
        assert list(back.columns[len(CORE_COLUMNS) :]) == list(t.columns[len(CORE_COLUMNS) :])
    units = json.loads((tmp_path / "v.json").read_text())["units"]  # from the schema
    assert units["radius_nm"].startswith("nm,") and "source" in units and "my_note" not in units


def test_non_numeric_cell_is_a_row_error_not_a_traceback(tmp_path, table):
    t = table.astype({"radius_nm": object, "center_x_px": object})
    t.loc[2, "radius_nm"] = "12,5"
    t.loc[4, "center_x_px"] = "abc"
    t.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(InputError, match=r"row 3, id 5: radius_nm is not a number \('12,5'\)"):
        read_vesicles(tmp_path / "bad.csv", voxel_size_nm=VS)
    issues = []
    back = read_vesicles(tmp_path / "bad.csv", voxel_size_nm=VS, issues=issues)
    assert [(i.row, i.id) for i in issues] == [(3, 5), (5, 9)]
    assert np.isnan(back["center_x_px"].iloc[4])  # the row is reported; the caller skips it


def test_validate_rows_reports_every_bad_row():
    from synapseg.io.schema import validate_rows

    t = make_table(
        [[5, 5, 5], [5, 5, 5], [5, 5, 5], [5, 5, 99], [np.nan, 5, 5], [5, 5, 5], [5, 5, 5]],
        [20, -5, 500, 20, 20, np.nan, 0], VS, ids=[1, 2, 3, 4, 5, 6, 70000],
    )  # fmt: skip
    issues = validate_rows(t, shape=(10, 10, 10))
    rows = {i.row: i.reason for i in issues}
    assert sorted(rows) == [2, 3, 4, 5, 6, 7]
    assert "not positive" in rows[2] and "outside the accepted" in rows[3]
    assert "outside the volume" in rows[4] and "center missing" in rows[5]
    assert "radius missing" in rows[6]
    assert "not positive" in rows[7] and "1..65535" in rows[7]  # both reasons of one row
    relaxed = validate_rows(t, shape=(10, 10, 10), allow_missing_radius=True)
    assert 6 not in {i.row for i in relaxed}


def test_edited_radius_columns_resolve_to_one_geometry(tmp_path, table):
    base = table.assign(outer_shrunk_nm=[0.0, 0.5, 0, 0, 0, 0])
    base["outer_radius_nm"] = base["radius_nm"] + 2.25 - base["outer_shrunk_nm"]
    edited = base.copy()
    edited.loc[0, "radius_nm"] += 3.0  # radius_nm alone: wins, outer follows
    edited.loc[1, "outer_radius_nm"] += 2.0  # outer alone: wins, shrink dropped
    edited.loc[2, "radius_px"] += 1.0  # radius_px alone: wins
    edited.to_csv(tmp_path / "e.csv", index=False)
    back = read_vesicles(tmp_path / "e.csv", voxel_size_nm=VS)
    r = back["radius_nm"].to_numpy()
    assert r[0] == pytest.approx(base["radius_nm"][0] + 3.0, abs=1e-3)
    assert back["outer_radius_nm"][0] == pytest.approx(r[0] + 2.25, abs=1e-3)
    assert r[1] == pytest.approx(base["outer_radius_nm"][1] + 2.0 - 2.25, abs=1e-3)
    assert r[2] == pytest.approx(base["radius_nm"][2] + VS[2], abs=1e-3)
    np.testing.assert_allclose(r[3:], base["radius_nm"][3:], atol=1e-3)
    # an unedited table keeps the overlap shrink of the QC filter
    assert back["outer_radius_nm"][3] == pytest.approx(base["outer_radius_nm"][3], abs=1e-3)
    base.to_csv(tmp_path / "b.csv", index=False)
    same = read_vesicles(tmp_path / "b.csv", voxel_size_nm=VS)
    np.testing.assert_allclose(same["outer_radius_nm"], base["outer_radius_nm"], atol=1e-3)
