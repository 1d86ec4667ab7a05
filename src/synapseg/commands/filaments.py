"""``synapseg filaments``: connectors and tethers on existing results (docs/filaments.md)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import typer

from synapseg.commands.base import app, err_console, handle_errors
from synapseg.commands.options import invert_option, overwrite_option, voxel_size_option
from synapseg.errors import InputError

log = logging.getLogger(__name__)


def vesicles_from_labels(
    labels: np.ndarray, ids: list[int], voxel_size_nm: np.ndarray
) -> pd.DataFrame:
    """A vesicle table from filled balls in a labels volume: centroid and the radius of
    the ball of the same volume (the outer surface)."""
    from scipy import ndimage

    from synapseg.io.schema import make_table

    lab = np.asarray(labels)
    centers = np.asarray(ndimage.center_of_mass(np.ones(lab.shape, np.uint8), lab, ids), float)
    counts = ndimage.sum_labels(np.ones(lab.shape, np.uint8), lab, ids)
    outer = (3 * np.asarray(counts) * np.prod(voxel_size_nm) / (4 * np.pi)) ** (1 / 3)
    return make_table(
        centers.reshape(-1, 3), outer - 2.25, voxel_size_nm, outer_radius_nm=outer, ids=ids
    )


def _read_mask(path: Path, shape: tuple[int, ...], vs: np.ndarray, what: str) -> np.ndarray:
    from synapseg.io.volume import read_volume

    vol = read_volume(path, vs)
    if tuple(vol.shape) != tuple(shape):
        raise InputError(
            path,
            f"{what} shape {tuple(vol.shape)} differs from the tomogram's {tuple(shape)}",
            f"give the {what} on the tomogram's grid",
        )
    return np.asarray(vol.data)


@app.command()
@handle_errors
def filaments(
    tomogram: Path = typer.Argument(..., help="Tomogram (MRC/REC, TIFF, OME-Zarr)."),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder."),
    vesicles: Path | None = typer.Option(
        None, "--vesicles", metavar="TABLE", help="Vesicle table (CSV/JSON/STAR/.mod)."
    ),
    boundaries: Path | None = typer.Option(
        None,
        "--boundaries",
        metavar="PYTO_LABELS",
        help="Pyto labels: the AZ membrane (--az-id) and, without --vesicles, the vesicles "
        "(ids >= 10, or --vesicle-ids) as filled balls.",
    ),
    az: Path | None = typer.Option(
        None, "--az", metavar="MASK", help="Active-zone membrane mask (e.g. <name>_az.mrc)."
    ),
    az_id: int = typer.Option(2, "--az-id", help="AZ membrane id in --boundaries (Pyto: 2)."),
    vesicle_ids: str | None = typer.Option(
        None, "--vesicle-ids", metavar="IDS", help="Vesicle ids in --boundaries, e.g. 10,11,12."
    ),
    method: str = typer.Option(
        "lines",
        "--method",
        help="lines: line scan with a decision calibrated on simulated synapses (default); "
        "thresholds: Pyto-style hierarchical thresholding (docs/filaments.md).",
    ),
    min_score: float = typer.Option(
        0.5,
        "--min-score",
        metavar="P",
        help="Line scan: decision score (0-1) a filament needs. 0.5 is calibrated on simulated "
        "tomogram noise; raise it when clean or synthetic data give spurious tethers.",
    ),
    voxel_size: float | None = voxel_size_option(),
    invert: str = invert_option(),
    overwrite: bool = overwrite_option(),
) -> None:
    """Find connectors (vesicle-vesicle) and tethers (vesicle-AZ) between the boundaries."""
    from synapseg import __version__
    from synapseg.filaments.detect import FilamentParams
    from synapseg.filaments.files import write_filament_outputs
    from synapseg.filaments.find import detect_filaments
    from synapseg.filaments.summary import add_counts, filament_summary
    from synapseg.io.tables import read_vesicles
    from synapseg.io.volume import read_volume

    if vesicles is None and boundaries is None:
        raise InputError("--vesicles", "no vesicles given", "give --vesicles TABLE or --boundaries")
    if invert not in ("auto", "yes", "no"):
        raise InputError("--invert", f"unknown value '{invert}'", "use auto, yes or no")
    if method not in ("lines", "thresholds"):
        raise InputError("--method", f"unknown method '{method}'", "use lines or thresholds")
    if not 0 <= min_score <= 1:
        raise InputError("--min-score", f"{min_score} is not a probability", "give e.g. 0.5")
    vol = read_volume(tomogram, voxel_size)
    vs = np.asarray(vol.voxel_size_nm, float)
    name = vol.name
    target = output / f"{name}_filaments.csv"
    if target.exists() and not overwrite:
        raise InputError(target, "output file exists", "pass --overwrite or choose another folder")
    az_mask = None
    table = None
    if boundaries is not None:
        labels = _read_mask(boundaries, vol.shape, vs, "boundaries")
        az_mask = labels == az_id
        if not az_mask.any():
            log.warning("%s: no voxel carries the AZ id %d: no tethers", boundaries, az_id)
            az_mask = None
        if vesicles is None:
            try:
                ids = (
                    [int(v) for v in vesicle_ids.replace(",", " ").split()]
                    if vesicle_ids
                    else [int(v) for v in np.unique(labels) if v >= 10]
                )
            except ValueError as exc:
                raise InputError(
                    "--vesicle-ids", f"'{vesicle_ids}' is not a list of ids", "e.g. 10,11"
                ) from exc
            if not ids:
                raise InputError(boundaries, "no vesicle ids (>= 10)", "give --vesicle-ids")
            table = vesicles_from_labels(labels, ids, vs)
    if az is not None:
        az_mask = _read_mask(az, vol.shape, vs, "AZ mask") != 0
    if table is None:
        table = read_vesicles(vesicles, voxel_size_nm=vs, shape=vol.shape)
    if az_mask is None:
        log.warning("%s: no active zone given (--az or --boundaries): connectors only", name)
    inverted = invert == "yes"
    if invert == "auto":
        from synapseg.filaments.find import densities_bright

        inverted = densities_bright(vol.data, table, vs)
        if inverted:
            log.warning(
                "%s: vesicle membranes are bright: contrast inverted (--invert no to refuse)", name
            )
    params = FilamentParams(
        invert=inverted,
        line_threshold=min_score,
        lines_for=FilamentParams().lines_for if method == "lines" else (),
    )
    facts: dict = {}
    image = np.asarray(vol.data)
    found, labels_out = detect_filaments(image, vs, table, az_mask, params, facts=facts)
    counted = add_counts(table, found)
    summary = filament_summary(counted, found)
    provenance = {
        "tool": "synapseg",
        "synapseg_version": __version__,
        "tomogram": str(tomogram),
        "vesicles": str(vesicles) if vesicles else None,
        "boundaries": str(boundaries) if boundaries else None,
        "az": str(az) if az else None,
        "parameters": params.to_json(),
    }
    written = write_filament_outputs(
        output,
        name,
        found,
        labels_out,
        counted,
        image,
        voxel_size_nm=vs,
        origin_nm=vol.origin_nm,
        provenance=provenance,
        summary={**summary, "facts": {k: v for k, v in facts.items() if k != "params"}},
        overwrite=overwrite,
    )
    err_console.print(
        f"{name}: {facts['n_connectors']} connectors, {facts['n_tethers']} tethers "
        f"({facts['seconds']:.1f} s) -> {written['table']}",
        markup=False,
    )
    log.debug("%s", json.dumps({k: str(v) for k, v in written.items()}))
