"""``synapseg info``: what a tomogram file holds and whether synapseg can use it."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from synapseg.commands.base import app, err_console, handle_errors
from synapseg.commands.options import voxel_size_option
from synapseg.io.volume import read_volume
from synapseg.summary import describe


@app.command()
@handle_errors
def info(
    tomogram: Path = typer.Argument(..., help="Tomogram: MRC/REC, TIFF stack or OME-Zarr."),
    voxel_size: float | None = voxel_size_option(),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Show shape, voxel size, extent, intensity statistics and warnings for a tomogram.

    Exits with code 2 when the volume cannot be segmented (2D, constant, NaN-only).
    """
    volume = read_volume(tomogram, voxel_size, require_3d=False)
    facts = describe(volume)
    facts["missing_wedge"] = _wedge_facts(volume)
    if as_json:
        typer.echo(json.dumps(facts, indent=2))
    else:
        _print_table(facts)
    for warning in facts["warnings"]:
        err_console.print(f"warning: {tomogram}: {warning}", markup=False)
    stats = facts["intensity_sample"]
    unusable = volume.shape[0] < 2 or "mean" not in stats or stats.get("std") == 0
    if unusable:
        err_console.print(
            f"error: {tomogram}: this volume cannot be segmented (see the warnings above).",
            markup=False,
        )
        raise typer.Exit(2)


def _wedge_facts(volume) -> dict | None:
    """The missing wedge estimated from the spectrum (None for volumes too small or flat)."""
    from synapseg.specimen.wedge import MIN_QUALITY, estimate_wedge

    if len(volume.shape) != 3 or min(volume.shape) < 16:
        return None
    try:
        with warnings.catch_warnings():  # all-NaN blocks of unusable volumes
            warnings.simplefilter("ignore", RuntimeWarning)
            est = estimate_wedge(volume.data, volume.voxel_size_nm)
    except ValueError:
        return None
    out = est.to_json()
    out["reliable"] = bool(est.quality >= MIN_QUALITY)
    return out


def _wedge_text(wedge: dict) -> str:
    axis = "dual axis (y and x)" if wedge["dual_axis"] else f"tilt axis {wedge['tilt_axis']}"
    text = f"±{wedge['tilt_range_deg']:.1f}°, {axis} (estimated, quality {wedge['quality']})"
    if not wedge["reliable"]:
        text += "; unreliable: segment assumes ±60° about y unless --tilt-range/--tilt-axis"
    return text


def _print_table(facts: dict) -> None:
    table = Table(title=facts["path"], show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value")
    vs_nm = " × ".join(f"{v:.4g}" for v in facts["voxel_size_nm_zyx"])
    vs_a = " × ".join(f"{v:.4g}" for v in facts["voxel_size_angstrom_zyx"])
    rows = [
        ("format", str(facts["format"])),
        ("shape (z, y, x) [voxels]", " × ".join(str(n) for n in facts["shape_zyx"])),
        ("dtype", facts["dtype"]),
        ("voxel size (z, y, x)", f"{vs_nm} nm = {vs_a} Å (from {facts['voxel_size_source']})"),
        ("extent (z, y, x)", " × ".join(f"{v:.1f}" for v in facts["extent_nm_zyx"]) + " nm"),
        ("origin (z, y, x)", " , ".join(f"{v:.2f}" for v in facts["origin_nm_zyx"]) + " nm"),
        ("memory as float32", f"{facts['float32_memory_gb']:.3f} GB"),
    ]
    stats = facts["intensity_sample"]
    if "mean" in stats:
        rows.append(
            (
                f"intensity (sample of {stats['n_sampled']} voxels)",
                f"mean {stats['mean']:.4g}, std {stats['std']:.4g}, min {stats['min']:.4g}, "
                f"p1 {stats['p1']:.4g}, median {stats['median']:.4g}, p99 {stats['p99']:.4g}, "
                f"max {stats['max']:.4g}",
            )
        )
    wedge = facts.get("missing_wedge")
    if wedge:
        rows.append(("missing wedge", _wedge_text(wedge)))
    for key, value in rows:
        table.add_row(Text(key), Text(value))
    Console(soft_wrap=True).print(table)
