"""``synapseg export``: re-render every output from an edited vesicle list.

The correction loop: segment, fix the detections in 3dmod (.mod) or a spreadsheet (.csv),
then export again. Rows without a radius (points placed by hand) get one fitted on the
tomogram around the given center; the given centers are kept.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import typer

from synapseg.cli import app, err_console, handle_errors
from synapseg.errors import InputError, OutputExistsError
from synapseg.pipeline import ALL_FORMATS, DEFAULT_FORMATS, OutputPaths, SegmentOptions, provenance

log = logging.getLogger(__name__)
_FALLBACK_RADIUS_NM = 20.0  # starting guess for hand-placed points: a typical vesicle


def refit_missing_radii(
    table: pd.DataFrame,
    tomogram: np.ndarray,
    voxel_size_nm,
    tilt_range_deg: float,
    invert: str = "auto",
):
    """Fit radii on the tomogram for rows whose ``radius_nm`` is missing; keep their centers.

    ``invert="auto"`` judges the contrast from the membranes around all listed vesicles.
    Returns the rebuilt table and the number of radii fitted.
    """
    from synapseg.io.tables import CENTER_PX, make_table
    from synapseg.post.polarity import detect_polarity
    from synapseg.post.spheres import SphereParams, refine_spheres

    missing = table["radius_nm"].isna().to_numpy() if "radius_nm" in table else None
    if missing is None or not missing.any():
        return table, 0
    if invert == "auto":
        guess = table["radius_nm"].fillna(_FALLBACK_RADIUS_NM).to_numpy(float)
        polarity, _ = detect_polarity(
            tomogram,
            table[CENTER_PX].to_numpy(float),
            guess,
            voxel_size_nm,
            tilt_range_deg=tilt_range_deg,
        )
    else:
        polarity = -1 if invert == "yes" else 1
    centers = table.loc[missing, CENTER_PX].to_numpy(float)
    fitted = refine_spheres(
        tomogram,
        centers,
        np.full(len(centers), _FALLBACK_RADIUS_NM),
        voxel_size_nm,
        params=SphereParams(tilt_range_deg=tilt_range_deg),
        polarity=polarity,
    )
    table = table.copy()
    table.loc[missing, "radius_nm"] = np.asarray(fitted["radius_nm"], float)
    rebuilt = make_table(
        table[CENTER_PX].to_numpy(float),
        table["radius_nm"].to_numpy(float),
        voxel_size_nm,
        score=table["score"].fillna(1.0).to_numpy() if "score" in table else None,
        ids=np.arange(1, len(table) + 1),
    )
    return rebuilt, int(missing.sum())


@app.command()
@handle_errors
def export(
    edited: Path = typer.Argument(..., help="Edited vesicles: .mod, .csv, .json or .star."),
    tomogram: Path = typer.Option(..., "--tomogram", "-t", help="The tomogram they belong to."),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder."),
    voxel_size: float | None = typer.Option(
        None, "--voxel-size", help="Voxel size in nm; overrides the header."
    ),
    formats: str = typer.Option(
        ",".join(DEFAULT_FORMATS), "--formats", help=f"Any of {','.join(ALL_FORMATS)}."
    ),
    star_binning: float = typer.Option(1.0, "--star-binning", help="Binning for RELION-4 STAR."),
    pyto_boundaries: Path | None = typer.Option(
        None, "--pyto-boundaries", help="Pyto boundary labels to merge the vesicles into."
    ),
    tilt_range: float = typer.Option(60.0, "--tilt-range", help="Tilt range ± degrees."),
    invert: str = typer.Option("auto", "--invert", help="Contrast: auto, yes or no."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
) -> None:
    """Re-render the table, labels, STAR, Pyto and IMOD outputs from edited vesicles."""
    from synapseg.commands.segment import parse_formats
    from synapseg.io.atomic import write_text_atomic
    from synapseg.io.tables import read_vesicles, write_table_csv
    from synapseg.io.volume import read_volume
    from synapseg.pipeline import stage_export

    options = SegmentOptions(
        formats=parse_formats(formats, pyto_boundaries),
        star_binning=star_binning,
        pyto_boundaries=pyto_boundaries,
        tilt_range_deg=tilt_range,
        invert=invert,
        overwrite=overwrite,
    )
    volume = read_volume(tomogram, voxel_size)
    paths = OutputPaths(output, volume.name)
    targets = [paths[f] for f in options.formats if f != "pyto"]
    existing = [p for p in targets if p.exists()]
    if existing and not overwrite:
        raise OutputExistsError(
            existing[0], "output exists", "pass --overwrite to replace it or choose another -o"
        )
    table = read_vesicles(
        edited,
        voxel_size_nm=volume.voxel_size_nm,
        shape=volume.shape,
        binning=star_binning,
        allow_missing_radius=True,
    )
    if len(table) == 0:
        raise InputError(edited, "holds no vesicles", "check that the right file was edited")
    table, n_refit = refit_missing_radii(
        table, volume.data, volume.voxel_size_nm, tilt_range, invert
    )
    if n_refit:
        err_console.print(f"fitted radii for {n_refit} hand-placed vesicles", markup=False)
    prov = provenance(options)
    prov.update({"edited_from": str(edited.resolve()), "tomogram": str(tomogram.resolve())})
    write_table_csv(paths["csv"], table, provenance=prov, overwrite=overwrite)
    written = stage_export(volume, options, table, paths, prov)
    report = {
        "provenance": prov,
        "n_vesicles": len(table),
        "radii_fitted": n_refit,
        "files": written,
    }
    write_text_atomic(
        output / f"{volume.name}_export_report.json", json.dumps(report, indent=2), overwrite=True
    )
    typer.echo(f"{len(table)} vesicles exported to {output}: " + ", ".join(sorted(written)))
