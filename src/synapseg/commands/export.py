"""``synapseg export``: re-render every output from an edited vesicle list.

The correction loop: segment, fix the detections in 3dmod (.mod) or a spreadsheet (.csv),
then export again. Every output is derived from one geometry per vesicle: the center and
the bilayer-midline ``radius_nm`` (``outer_radius_nm`` = ``radius_nm`` + half the membrane
thickness, less any recorded overlap shrink; the label volume is painted to it).

* Rows without a radius (points placed by hand) are refined on the tomogram: center and
  radius (:func:`synapseg.post.seeds.refine_hand_placed`), ``source = manual``, no score.
* Ids, QC columns and unknown columns are kept; rows without a valid id get new ids above
  the largest.
* Bad rows (non-numeric cells, radius <= 0 or outside 5-100 nm, center outside the volume)
  are reported one per line (row, id, reason) and skipped, or refused with ``--strict``.
* The final line says how many vesicles were written to which files; the label volume is
  checked to hold exactly those ids.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import typer

from synapseg.commands.base import app, err_console, handle_errors
from synapseg.commands.options import (
    invert_option,
    overwrite_option,
    tilt_axis_option,
    tilt_range_option,
    voxel_size_option,
)
from synapseg.core.units import voxel_size_zyx
from synapseg.errors import InputError, OutputExistsError
from synapseg.pipeline import ALL_FORMATS, DEFAULT_FORMATS, OutputPaths, SegmentOptions, provenance

log = logging.getLogger(__name__)
_SHOWN_ISSUES = 20  # bad rows printed one per line; all of them go to the report


def finalize_geometry(table: pd.DataFrame, voxel_size_nm) -> pd.DataFrame:
    """Derive ``center_*_nm``, ``radius_px`` and ``outer_radius_nm`` from centers (px) and
    ``radius_nm``, and fill ``source`` (``auto`` where unknown)."""
    from synapseg.io.schema import CENTER_NM, CENTER_PX, derive_outer_radius

    vs = voxel_size_zyx(voxel_size_nm)
    out = table.copy()
    for k, (px, nm) in enumerate(zip(CENTER_PX, CENTER_NM)):
        out[nm] = out[px].to_numpy(float) * vs[k]
    out["radius_px"] = out["radius_nm"].to_numpy(float) / vs[2]
    out["outer_radius_nm"] = derive_outer_radius(out)
    source = out["source"] if "source" in out else pd.Series([None] * len(out), index=out.index)
    blank = source.isna() | source.astype(str).str.strip().isin(["", "nan", "None"])
    out["source"] = source.astype(object).where(~blank, "auto")
    return out


def mark_added_rows(raw_ids: pd.Series | None, table: pd.DataFrame) -> pd.DataFrame:
    """``source = manual`` for rows that had no valid id in the edited file (added by hand)
    and no ``source`` of their own."""
    if raw_ids is None or len(raw_ids) != len(table):
        return table
    given = pd.to_numeric(raw_ids, errors="coerce").to_numpy(float)
    new = ~(given == table["id"].to_numpy(float))
    out = table.copy()
    source = out["source"] if "source" in out else pd.Series([None] * len(out), index=out.index)
    blank = source.isna() | source.astype(str).str.strip().isin(["", "nan", "None"])
    out["source"] = source.astype(object).where(~(new & blank.to_numpy()), "manual")
    return out


def _label_ids(path: Path) -> set[int]:
    """Ids present in a written label volume (read slab by slab)."""
    from synapseg.io.volume import read_volume

    data = read_volume(path).data
    found: set[int] = set()
    for z0 in range(0, data.shape[0], 16):
        slab = np.asarray(data[z0 : z0 + 16])
        found.update(int(v) for v in np.unique(slab) if v)
    return found


def _report_issues(issues, what: str) -> None:
    for issue in issues[:_SHOWN_ISSUES]:
        err_console.print(f"warning: {what} {issue}", markup=False)
    if len(issues) > _SHOWN_ISSUES:
        err_console.print(
            f"warning: ... and {len(issues) - _SHOWN_ISSUES} more (see the export report)",
            markup=False,
        )


@app.command()
@handle_errors
def export(
    edited: Path = typer.Argument(..., help="Edited vesicles: .mod, .csv, .json or .star."),
    tomogram: Path = typer.Option(..., "--tomogram", "-t", help="The tomogram they belong to."),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder."),
    voxel_size: float | None = voxel_size_option(),
    formats: str = typer.Option(
        ",".join(DEFAULT_FORMATS), "--formats", help=f"Any of {','.join(ALL_FORMATS)}."
    ),
    star_binning: float | None = typer.Option(
        None,
        "--star-binning",
        help="Binning of the tomogram relative to the tilt series: also write (and read) "
        "RELION-4 rlnCoordinateX/Y/Z. Default: RELION-5 centered Å only.",
    ),
    tilt_series_size: str | None = typer.Option(
        None,
        "--tilt-series-size",
        help="Unbinned tilt-series image size X,Y in px: derives --star-binning.",
    ),
    pyto_boundaries: Path | None = typer.Option(
        None, "--pyto-boundaries", help="Pyto boundary labels to merge the vesicles into."
    ),
    tilt_range: float | None = tilt_range_option(),
    tilt_axis: str | None = tilt_axis_option(),
    invert: str = invert_option(),
    strict: bool = typer.Option(
        False, "--strict", help="Refuse (exit 2) instead of skipping rows that are not valid."
    ),
    overwrite: bool = overwrite_option(),
) -> None:
    """Re-render the table, labels, STAR, Pyto and IMOD outputs from edited vesicles."""
    from synapseg.commands.segment import parse_formats
    from synapseg.io.atomic import write_text_atomic
    from synapseg.io.schema import RowIssue, validate_rows
    from synapseg.io.tables import read_vesicles, write_table_csv
    from synapseg.io.volume import read_volume
    from synapseg.pipeline import stage_export
    from synapseg.post.seeds import refine_hand_placed
    from synapseg.post.spheres import SphereParams
    from synapseg.specimen.wedge import resolve_wedge

    volume = read_volume(tomogram, voxel_size)
    if tilt_series_size is not None:
        from synapseg.io.star import binning_from_tilt_series

        try:
            size_xy = [int(v) for v in tilt_series_size.split(",")]
        except ValueError:
            size_xy = []
        derived = binning_from_tilt_series(size_xy, volume.shape, "--tilt-series-size")
        if star_binning is not None and abs(derived - star_binning) > 0.01 * derived:
            raise InputError(
                "--tilt-series-size",
                f"gives binning {derived:g}, --star-binning says {star_binning:g}",
                "give one of them",
            )
        star_binning = derived
    options = SegmentOptions(
        formats=parse_formats(formats, pyto_boundaries),
        star_binning=star_binning,
        pyto_boundaries=pyto_boundaries,
        tilt_range_deg=tilt_range,
        tilt_axis=tilt_axis,
        invert=invert,
        overwrite=overwrite,
    )
    paths = OutputPaths(output, volume.name)
    targets = [paths[f] for f in options.formats if f != "pyto"]
    existing = [p for p in targets if p.exists()]
    if existing and not overwrite:
        raise OutputExistsError(
            existing[0], "output exists", "pass --overwrite to replace it or choose another -o"
        )
    issues: list[RowIssue] = []
    table = read_vesicles(
        edited,
        voxel_size_nm=volume.voxel_size_nm,
        shape=volume.shape,
        binning=star_binning,
        allow_missing_radius=True,
        issues=issues,
    )
    if len(table) == 0:
        raise InputError(edited, "holds no vesicles", "check that the right file was edited")
    n_rows = len(table)
    table = mark_added_rows(_raw_ids(edited), table)
    bad_cells = {i.row for i in issues}
    issues += [
        i
        for i in validate_rows(table, shape=volume.shape, allow_missing_radius=True)
        if i.row not in bad_cells
    ]
    issues.sort(key=lambda i: i.row)
    if issues and strict:
        listed = "; ".join(str(i) for i in issues[:3])
        raise InputError(
            edited,
            f"{len(issues)} of {n_rows} rows are not valid ({listed})",
            "fix or delete them, or drop --strict to skip them",
        )
    bad = np.zeros(n_rows, bool)
    bad[[i.row - 1 for i in issues]] = True
    _report_issues(issues, "skipped")
    orig_rows = np.flatnonzero(~bad) + 1
    table = table[~bad].reset_index(drop=True)
    # hand-placed points are fitted with the wedge segment uses: given, else estimated
    wedge, note = resolve_wedge(volume.data, volume.voxel_size_nm, tilt_range, tilt_axis)
    if note:
        log.warning("%s: %s", volume.path, note)
    params = SphereParams(tilt_range_deg=wedge.tilt_range_deg, tilt_axis=wedge.wedge_axis)
    polarity = None if invert == "auto" else (-1 if invert == "yes" else 1)
    table, fitted = refine_hand_placed(
        table, volume.data, volume.voxel_size_nm, sphere_params=params, polarity=polarity
    )
    # only fitted rows can fail now: the others passed above
    failed = [
        RowIssue(int(orig_rows[i.row - 1]), i.id, f"hand-placed point not fitted: {i.reason}")
        for i in validate_rows(table, shape=volume.shape)
    ]
    if failed:
        _report_issues(failed, "skipped")
        keep = np.ones(len(table), bool)
        keep[[int(np.searchsorted(orig_rows, i.row)) for i in failed]] = False
        table, fitted = table[keep], fitted[keep]
        issues = sorted(issues + failed, key=lambda i: i.row)
    if len(table) == 0:
        raise InputError(edited, "no valid vesicles left to export", "fix the rows listed above")
    table = finalize_geometry(table.reset_index(drop=True), volume.voxel_size_nm)
    n_fit = int(fitted.sum())
    if n_fit:
        err_console.print(
            f"refined center and radius of {n_fit} hand-placed vesicle(s)", markup=False
        )
    prov = provenance(options)
    prov.update({"edited_from": str(edited.resolve()), "tomogram": str(tomogram.resolve())})
    write_table_csv(paths["csv"], table, provenance=prov, overwrite=overwrite)
    written = stage_export(volume, options, table, paths, prov)
    n = len(table)
    labels_msg = ""
    if "labels" in written:
        found = _label_ids(Path(written["labels"]))
        lost = sorted(set(table["id"].astype(int)) - found)
        labels_msg = f"; the label volume holds {len(found)} ids"
        if lost:
            err_console.print(
                f"warning: {len(lost)} vesicle(s) have no voxel of their own in the label "
                f"volume (inside a larger overlapping vesicle?): ids {lost[:20]}",
                markup=False,
            )
    report = {
        "provenance": prov,
        "rows_read": n_rows,
        "n_vesicles": n,
        "hand_placed_fitted": n_fit,
        "hand_placed_ids": [int(v) for v in table["id"].to_numpy()[np.asarray(fitted, bool)]],
        "skipped": [i.to_json() for i in issues],
        "files": written,
    }
    write_text_atomic(
        output / f"{volume.name}_export_report.json", json.dumps(report, indent=2), overwrite=True
    )
    skipped = f" ({len(issues)} of {n_rows} rows skipped, listed above)" if issues else ""
    typer.echo(
        f"{n} vesicles written{skipped} to {len(written)} files in {output}: "
        + ", ".join(Path(p).name for _, p in sorted(written.items()))
        + labels_msg
    )


def _raw_ids(path: Path) -> pd.Series | None:
    """The ``id`` column as written in a CSV/JSON file (to tell added rows), else None."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            raw = pd.read_csv(path, usecols=lambda c: c == "id")
        elif suffix == ".json":
            from synapseg.io.tables import read_table_json

            raw = read_table_json(path)
        else:
            return None
    except (ValueError, OSError, InputError):
        return None
    return raw["id"] if "id" in raw else None  # no ids at all: only fitted rows are "manual"
