"""``synapseg segment``: the whole pipeline on one tomogram or a folder of them."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from synapseg.commands.base import app, err_console, handle_errors, show_progress
from synapseg.commands.options import (
    device_option,
    invert_option,
    model_option,
    overwrite_option,
    tile_size_option,
    tilt_axis_option,
    tilt_range_option,
    tta_option,
    voxel_size_option,
)
from synapseg.errors import InputError
from synapseg.io.atomic import write_text_atomic
from synapseg.io.volume import Volume, is_zarr
from synapseg.pipeline import ALL_FORMATS, DEFAULT_FORMATS, STAGES, SegmentOptions, list_tomograms


def parse_formats(text: str, pyto_boundaries: Path | None = None) -> tuple[str, ...]:
    """``"csv,star"`` → ``("csv", "star")``; CSV is always written, Pyto too when
    boundaries to merge into are given."""
    formats = tuple(dict.fromkeys(f.strip().lower() for f in text.split(",") if f.strip()))
    formats = formats if "csv" in formats else ("csv",) + formats
    if pyto_boundaries is not None and "pyto" not in formats:
        formats += ("pyto",)
    return formats


def _folder_tomograms(folder: Path) -> tuple[list[Path], list[Path]]:
    """(tomograms, those of them found in subfolders): the folder's own tomograms, or
    else those one level down (``synapseg simulate``'s layout)."""
    try:
        return list_tomograms(folder), []
    except InputError:
        found: list[Path] = []
        for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not is_zarr(p)):
            try:
                found.extend(list_tomograms(sub))
            except InputError:
                continue
        if not found:
            raise
        return found, found


def expand_inputs(inputs: list[Path], output: Path) -> list[tuple[Path, Path]]:
    """Pair every input tomogram with its output folder.

    Folders expand to the tomograms inside them; a folder without tomograms but with
    subfolders holding them (``synapseg simulate``'s ``sim/sim_NNN/tomogram.mrc``) expands
    to those. Outputs go to ``output``, except for tomograms found in subfolders and
    tomograms that share a file name (e.g. ``sim/sim_000/tomogram.mrc``,
    ``sim/sim_001/tomogram.mrc``): each of those goes to ``output/<parent folder name>/``,
    the layout ``synapseg evaluate`` pairs by stem.
    """
    files: list[Path] = []
    nested: set[Path] = set()
    for path in inputs:
        if path.is_dir() and not is_zarr(path):
            found, in_subfolders = _folder_tomograms(path)
            files.extend(found)
            nested.update(in_subfolders)
        else:
            files.append(path)
    names = [Volume(None, (1.0,) * 3, path=p).name for p in files]
    shared = {n for n in names if names.count(n) > 1}
    pairs = []
    for path, name in zip(files, names):
        own_folder = name in shared or path in nested
        pairs.append((path, output / path.resolve().parent.name if own_folder else output))
    targets = [(out, name) for (_, out), name in zip(pairs, names)]
    clashes = sorted({str(out / name) for out, name in targets if targets.count((out, name)) > 1})
    if clashes:
        raise InputError(
            ", ".join(clashes),
            "several inputs would write the same outputs",
            "rename them or segment them into different -o folders",
        )
    return pairs


@app.command()
@handle_errors
def segment(
    ctx: typer.Context,
    inputs: list[Path] = typer.Argument(..., help="Tomogram file(s) or folder(s) of tomograms."),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder."),
    voxel_size: float | None = voxel_size_option(),
    model: str = model_option(),
    device: str = device_option(),
    tta: bool = tta_option(),
    tile_size: int | None = tile_size_option(),
    mask: Path | None = typer.Option(
        None, "--mask", help="Label/mask MRC on the tomogram grid: keep vesicles inside it."
    ),
    formats: str = typer.Option(
        ",".join(DEFAULT_FORMATS), "--formats", help=f"Any of {','.join(ALL_FORMATS)}."
    ),
    star_binning: float | None = typer.Option(
        None,
        "--star-binning",
        help="Binning of the tomogram relative to the tilt series: also write RELION-4 "
        "rlnCoordinateX/Y/Z (unbinned px) to the STAR file. Default: RELION-5 centered Å only.",
    ),
    pyto_boundaries: Path | None = typer.Option(
        None, "--pyto-boundaries", help="Pyto boundary labels to merge the vesicles into."
    ),
    invert: str = invert_option(),
    threshold: float | None = typer.Option(
        None, "--threshold", help="Probability threshold (default: automatic)."
    ),
    tilt_range: float | None = tilt_range_option(),
    tilt_axis: str | None = tilt_axis_option(),
    min_radius: float | None = typer.Option(
        None, "--min-radius", metavar="NM", help="Smallest radius, nm."
    ),
    max_radius: float | None = typer.Option(
        None, "--max-radius", metavar="NM", help="Largest radius, nm."
    ),
    min_confidence: float = typer.Option(
        0.5,
        "--min-confidence",
        help="Keep vesicles whose calibrated confidence (0-1) is at least this.",
    ),
    overwrite: bool = overwrite_option(),
    from_stage: str | None = typer.Option(
        None,
        "--from-stage",
        metavar="STAGE",
        help=f"Recompute from this stage: {', '.join(STAGES)}.",
    ),
    fill_nonfinite: str | None = typer.Option(
        None,
        "--fill-nonfinite",
        help="Replace NaN/inf voxels by the tomogram's median ('median'); default: refuse them.",
    ),
    context: bool = typer.Option(
        True,
        "--context/--no-context",
        help="Synapse context when the membrane model is available: membrane classes, "
        "active zone, presynaptic compartment, az_distance_nm and pool per vesicle, "
        "distance layers (docs/context.md).",
    ),
    membrane_model: str = typer.Option(
        "default",
        "--membrane-model",
        metavar="NAME|DIR|none",
        help="Membrane network of the synapse context: 'default', a model name "
        "(sim-membrane-v1 is about 3x cheaper, sim-membrane-v2 more accurate: docs/model.md), "
        "a model folder, or 'none' (no membrane map: no active zone, pools or distances).",
    ),
    docked_nm: float = typer.Option(
        5.0, "--docked-nm", metavar="NM", help="Pool 'docked': az_distance_nm below this."
    ),
    proximal_nm: float = typer.Option(
        45.0, "--proximal-nm", metavar="NM", help="Pool 'proximal': az_distance_nm up to this."
    ),
    layer_nm: float = typer.Option(
        10.0, "--layer-nm", metavar="NM", help="Thickness of the distance layers from the AZ."
    ),
    filaments: bool | None = typer.Option(
        None,
        "--filaments/--no-filaments",
        help="Connectors and tethers (docs/filaments.md); default: when an active zone is "
        "found. --filaments runs them anyway (connectors only without an AZ).",
    ),
    backend: str = typer.Option(
        "local",
        "--backend",
        help="local: one process; dask: block-wise on a dask.distributed cluster (a "
        "LocalCluster sized to the machine, or --scheduler); see docs/scaling.md.",
    ),
    scheduler: str | None = typer.Option(
        None,
        "--scheduler",
        metavar="ADDRESS",
        help="dask scheduler address (tcp://HOST:8786); implies --backend dask.",
    ),
    workers: int | None = typer.Option(
        None, "--workers", help="Workers of the LocalCluster (default: one per CPU core)."
    ),
    volume_format: str = typer.Option(
        "mrc",
        "--volume-format",
        help="mrc or zarr: probabilities and labels as OME-Zarr multiscale (block-wise).",
    ),
) -> None:
    """Find vesicles: probabilities, vesicle table, labels, STAR, IMOD and Pyto outputs.

    A folder is processed as a batch; finished tomograms are skipped unless --overwrite,
    and an interrupted run resumes at its first unfinished stage.
    """
    from synapseg.pipeline import segment_tomogram

    options = SegmentOptions(
        model=model,
        device=device,
        tta=tta,
        tile_size=tile_size,
        voxel_size_nm=voxel_size,
        mask=mask,
        formats=parse_formats(formats, pyto_boundaries),
        star_binning=star_binning,
        pyto_boundaries=pyto_boundaries,
        invert=invert,
        threshold=threshold,
        tilt_range_deg=tilt_range,
        tilt_axis=tilt_axis,
        min_radius_nm=min_radius,
        max_radius_nm=max_radius,
        min_confidence=min_confidence,
        overwrite=overwrite,
        from_stage=from_stage,
        progress=show_progress(ctx),
        fill_nonfinite=fill_nonfinite,
        context=context,
        membrane_model=membrane_model,
        docked_nm=docked_nm,
        proximal_nm=proximal_nm,
        layer_nm=layer_nm,
        filaments=filaments,
    )
    jobs = expand_inputs(inputs, output)
    batch = len(jobs) > 1  # a batch goes on past a failing tomogram and writes a summary
    reports: list[dict] = []
    failed: list[dict] = []
    local_jobs = jobs
    if backend != "local" or scheduler or volume_format != "mrc":
        reports, failed = segment_distributed(
            jobs, options, backend, scheduler, workers, volume_format
        )
        local_jobs = []
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err_console,
        disable=not options.progress,
        transient=True,
    ) as progress:
        task = progress.add_task("", total=len(local_jobs))
        for path, out_dir in local_jobs:

            def on_stage(stage: str, path: Path = path) -> None:
                progress.update(task, description=f"{path.name}: {stage}")

            try:
                reports.append(segment_tomogram(path, out_dir, options, on_stage=on_stage))
            except KeyboardInterrupt:
                if batch:
                    failed.append({"tomogram": str(path), "reason": "interrupted"})
                    write_batch_summary(output, jobs, reports, failed)
                raise
            except Exception as exc:
                if not batch:
                    raise
                failed.append(batch_failure(path, exc))
            progress.advance(task)
    summary(reports, output, failed)
    if batch:
        write_batch_summary(output, jobs, reports, failed)
    if failed:
        err_console.print(
            f"error: {len(failed)} of {len(jobs)} tomograms failed; the reasons are above and "
            f"in {output / BATCH_SUMMARY}",
            markup=False,
        )
        raise typer.Exit(2)


BATCH_SUMMARY = "batch_summary.json"


def segment_distributed(
    jobs: list[tuple[Path, Path]],
    options: SegmentOptions,
    backend: str,
    scheduler: str | None,
    workers: int | None,
    volume_format: str,
) -> tuple[list[dict], list[dict]]:
    """``--backend dask`` (or ``--volume-format zarr``): block-wise, on a dask client
    (docs/scaling.md); returns the reports and the failures of a batch."""
    from synapseg.distributed.backend import make_client
    from synapseg.distributed.batch import segment_jobs

    if backend not in ("local", "dask"):
        raise InputError("--backend", f"unknown backend '{backend}'", "use local or dask")
    if volume_format not in ("mrc", "zarr"):
        raise InputError("--volume-format", f"unknown format '{volume_format}'", "use mrc or zarr")
    gpu = str(options.device).startswith("cuda")
    client = None
    if backend == "dask" or scheduler:
        client = make_client(scheduler, workers, gpu=gpu)
    try:
        reports, errors = segment_jobs(
            jobs, options, client=client, volume_format=volume_format, gpu_resource=gpu
        )
    finally:
        if client is not None:
            cluster = None if scheduler else getattr(client, "cluster", None)
            client.close()
            if cluster is not None:
                cluster.close()
    return reports, [batch_failure(path, exc) for path, exc in errors]


def batch_failure(path: Path, exc: Exception) -> dict[str, str]:
    """One failed tomogram of a batch: its one-line reason, logged now (with the traceback
    when the error is not the user's input)."""
    if isinstance(exc, InputError):
        reason = exc.message
        logging.getLogger("synapseg").error("%s", reason)
    else:
        reason = f"unexpected {type(exc).__name__}: {exc}"
        logging.getLogger("synapseg").error("%s: %s", path, reason, exc_info=exc)
    return {"tomogram": str(path), "reason": reason}


def write_batch_summary(
    output: Path, jobs: list[tuple[Path, Path]], reports: list[dict], failed: list[dict]
) -> Path:
    """``OUT/batch_summary.json``: which tomograms were done, skipped or failed (and why)."""
    done, skipped = [], []
    for r in reports:
        entry = {"tomogram": r.get("tomogram"), "n_vesicles": r.get("n_vesicles")}
        if r.get("recomputed_because"):
            entry["recomputed_because"] = r["recomputed_because"]
        (skipped if r.get("skipped") else done).append(entry)
    data = {
        "output": str(output),
        "n_tomograms": len(jobs),
        "done": done,
        "skipped": skipped,
        "failed": failed,
        "not_reached": len(jobs) - len(reports) - len(failed),
    }
    target = output / BATCH_SUMMARY
    write_text_atomic(target, json.dumps(data, indent=2) + "\n", overwrite=True)
    return target


def summary(reports: list[dict], output: Path, failed: list[dict] | None = None) -> None:
    """Print one line per tomogram: vesicles found, time, 'skipped' or why it failed."""
    table = Table(title=f"synapseg segment → {output}", title_justify="left")
    for col in ("tomogram", "vesicles", "time s", "note"):
        table.add_column(col)
    for r in reports:
        note = "already done (skipped)" if r.get("skipped") else ""
        if r.get("recomputed_because"):
            note = "input changed: recomputed"
        seconds = sum(r.get("timings_s", {}).values())
        name = Path(r.get("tomogram", "?")).name
        table.add_row(name, str(r.get("n_vesicles", "?")), f"{seconds:.1f}", note)
    for f in failed or []:
        table.add_row(Path(f["tomogram"]).name, "-", "-", "FAILED")
    Console(soft_wrap=True).print(table)
