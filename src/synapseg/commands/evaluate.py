"""``synapseg evaluate``: compare predicted vesicles with ground truth; metrics and a report."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from synapseg.commands.base import app, err_console, handle_errors
from synapseg.commands.options import overwrite_option
from synapseg.errors import InputError
from synapseg.evaluate import filaments as filament_scores
from synapseg.evaluate import membranes as membrane_scores
from synapseg.evaluate.batch import (
    Loaded,
    gt_outside,
    is_volume,
    load_vesicles,
    open_tomogram,
    pair_folders,
    pool_matches,
    pooled_metrics,
)
from synapseg.evaluate.context import add_context, add_pooled_context
from synapseg.evaluate.matching import MatchResult, match_vesicles
from synapseg.evaluate.metrics import metrics_from_match
from synapseg.evaluate.report import report_targets, summary_rows, write_report
from synapseg.io.atomic import check_writable
from synapseg.io.pyto import pyto_vesicle_ids
from synapseg.io.tables import DEFAULT_MEMBRANE_THICKNESS_NM
from synapseg.io.volume import Volume, read_volume


def _parse_ids(text: str | None) -> list[int] | None:
    """``"36,48 49"`` → ``[36, 48, 49]``; a Pyto parameter file (``*.py``) → its vesicle_ids."""
    if text is None:
        return None
    if text.endswith(".py"):
        return pyto_vesicle_ids(Path(text))
    try:
        return [int(t) for t in text.replace(",", " ").split()]
    except ValueError as exc:
        raise InputError("--gt-ids", f"'{text}' is not a list of integers", "e.g. 36,48") from exc


def _inputs(gt: Loaded, pred: Loaded, tomo: Volume | None, options: dict[str, Any]) -> dict:
    def vs(v: Any) -> str | None:
        return None if v is None else " × ".join(f"{x:.4g}" for x in v) + " nm"

    return {
        "ground truth": str(gt.path),
        "ground-truth voxel size": vs(gt.voxel_size_nm),
        "prediction": str(pred.path),
        "prediction voxel size": vs(pred.voxel_size_nm),
        "tomogram": None if tomo is None else str(tomo.path),
        "ground-truth radii from labels": None if gt.labels is None else options["convention"],
        "membrane thickness": f"{options['membrane_thickness_nm']:g} nm",
    }


def evaluate_one(
    gt_path: Path,
    pred_path: Path,
    tomogram: Path | None,
    options: dict[str, Any],
) -> tuple[dict[str, Any], MatchResult, Volume | None, dict[str, Any]]:
    """Load, match and measure one tomogram; returns (metrics, match, tomogram, inputs)."""
    tomo = open_tomogram(tomogram, options["voxel_size_nm"])
    fallback = options["voxel_size_nm"] or (tomo.voxel_size_nm if tomo is not None else None)
    common = {
        "membrane_thickness_nm": options["membrane_thickness_nm"],
        "shape": None if tomo is None else tomo.shape,
        "binning": options["star_binning"],
        "default_voxel_size_nm": fallback,
    }
    gt = load_vesicles(
        gt_path,
        voxel_size_nm=options["gt_voxel_size_nm"],
        ids=options["gt_ids"],
        convention=options["convention"],
        **common,
    )
    pred = load_vesicles(pred_path, voxel_size_nm=options["pred_voxel_size_nm"], **common)
    match = match_vesicles(
        gt.table,
        pred.table,
        options["match_fraction"],
        gt_name=str(gt_path),
        pred_name=str(pred_path),
    )
    pred_labels = pred.labels
    if options.get("pred_labels") is not None:
        pred_labels = np.asarray(read_volume(options["pred_labels"]).data)
    gt_labels = gt.labels
    if options.get("gt_labels") is not None:
        gt_labels = np.asarray(read_volume(options["gt_labels"]).data)
    if gt_labels is None or pred_labels is None:
        gt_labels = pred_labels = None
    z_range = None if tomo is None else (0.0, tomo.extent_nm[0])
    metrics = metrics_from_match(
        match,
        betas=options["betas"],
        gt_labels=gt_labels,
        pred_labels=pred_labels,
        z_slabs=options["z_slabs"],
        z_range_nm=z_range,
        confidence=(
            pred.raw["confidence"].to_numpy(float)
            if pred.raw is not None and "confidence" in pred.raw
            else None
        ),
    )
    outside = gt_outside(gt, pred, tomo)
    if outside:
        err_console.print(f"warning: {gt_path}: {outside}", markup=False)
        metrics["warnings"] = [*metrics.get("warnings", []), outside]
    inputs = _inputs(gt, pred, tomo, options)
    if gt_labels is not None:
        inputs["voxel metrics from"] = (
            f"{options.get('gt_labels') or gt_path} vs {options.get('pred_labels') or pred_path}"
        )
    metrics["inputs"] = {k: v for k, v in inputs.items() if v is not None}
    add_context(metrics, gt.raw, pred.raw, match, gt_path)  # issue 14: AZ, distances, pools
    membranes = membrane_scores.membrane_metrics(
        gt_path, pred_path, *options.get("membranes", (None, None))
    )
    if membranes is not None:
        metrics["membranes"] = membranes
        err_console.print(membrane_scores.membrane_summary(membranes), markup=False)
    filaments = filament_scores.filament_metrics(*options.get("filaments", (None, None)), match)
    if filaments is not None:  # issue 15: connectors and tethers
        metrics["filaments"] = filaments
        err_console.print(filament_scores.filament_summary_line(filaments), markup=False)
    return metrics, match, tomo, inputs


def _print_summary(title: str, metrics: dict[str, Any]) -> None:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("metric", style="bold")
    table.add_column("value")
    for key, value in summary_rows(metrics):
        table.add_row(key, value)
    Console(soft_wrap=True).print(table)


def _print_batch(per: dict[str, dict[str, Any]], pooled: dict[str, Any], output: Path) -> None:
    table = Table(title=f"synapseg evaluate → {output}", title_justify="left")
    for col in ("tomogram", "GT", "pred", "TP", "FP", "FN", "P", "R", "F1", "center nm"):
        table.add_column(col, justify="left" if col == "tomogram" else "right")

    def row(name: str, m: dict[str, Any]) -> list[str]:
        ce = m["center_error_nm"]["median"]
        return [
            name,
            *(str(m[k]) for k in ("n_gt", "n_pred", "tp", "fp", "fn")),
            *(f"{m[k]:.3f}" for k in ("precision", "recall", "f1")),
            "–" if ce is None else f"{ce:.2f}",
        ]

    for stem, m in per.items():
        table.add_row(*row(stem, m))
    table.add_section()
    table.add_row(*row("pooled", pooled), style="bold")
    Console(soft_wrap=True).print(table)


def _per_tomogram_html(per: dict[str, dict[str, Any]]) -> str:
    rows = []
    for stem, m in per.items():
        ce = m["center_error_nm"]["median"]
        s = html.escape(stem)
        rows.append(
            f"<tr><td><a href='{s}/report.html'>{s}</a></td>"
            + "".join(f"<td>{m[k]}</td>" for k in ("n_gt", "n_pred", "tp", "fp", "fn"))
            + "".join(f"<td>{m[k]:.3f}</td>" for k in ("precision", "recall", "f1"))
            + f"<td>{'–' if ce is None else f'{ce:.2f}'}</td></tr>"
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("tomogram", "GT", "pred", "TP", "FP", "FN", "P", "R", "F1", "median center nm")
    )
    return (
        "<h2>Per tomogram</h2><table><thead><tr>"
        + head
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


@app.command()
@handle_errors
def evaluate(
    gt: Path = typer.Option(
        ...,
        "--gt",
        help="Ground truth: table (.csv/.json/.star/.mod), label volume (.mrc...), or a folder "
        "(simulate's <stem>/vesicles.csv layout or <stem>_*.csv files).",
    ),
    pred: Path = typer.Option(
        ...,
        "--pred",
        help="Prediction: table or label volume, or segment's output folder (<stem>_vesicles.csv).",
    ),
    output: Path = typer.Option(..., "--output", "-o", help="Report folder."),
    tomogram: Path | None = typer.Option(
        None,
        "--tomogram",
        help="Tomogram to draw the slices on (a folder of <stem>.mrc in batch mode).",
    ),
    match_fraction: float = typer.Option(
        0.5, "--match-fraction", help="Match iff center distance < this × true radius."
    ),
    beta: list[float] = typer.Option(
        [4.0], "--beta", help="F-beta to report besides F1 (repeatable)."
    ),
    voxel_size: float | None = typer.Option(
        None,
        "--voxel-size",
        metavar="NM",
        help="Voxel size (nm) of the tomogram and of pixel-only tables, if their files lack it.",
    ),
    gt_voxel_size: float | None = typer.Option(
        None,
        "--gt-voxel-size",
        metavar="NM",
        help="Voxel size (nm) of a pixel-only or label ground truth.",
    ),
    pred_voxel_size: float | None = typer.Option(
        None,
        "--pred-voxel-size",
        metavar="NM",
        help="Voxel size (nm) of a pixel-only or label prediction.",
    ),
    gt_ids: str | None = typer.Option(
        None,
        "--gt-ids",
        help="Label values that are vesicles in a label ground truth (36,48,..), or a Pyto "
        "parameter file (common_tomo_info.py) whose vesicle_ids to use.",
    ),
    gt_labels: Path | None = typer.Option(
        None,
        "--gt-labels",
        help="Ground-truth label volume (e.g. simulate's vesicle_labels.mrc) for voxel Dice/IoU "
        "when --gt is a table.",
    ),
    pred_labels: Path | None = typer.Option(
        None,
        "--pred-labels",
        help="Predicted label volume (e.g. <stem>_vesicles.mrc) for voxel Dice/IoU when "
        "--pred is a table.",
    ),
    convention: str = typer.Option(
        "synapseg",
        "--radius-convention",
        help="Centers/radii from labels: synapseg (centroid, volume radius) or pyto.",
    ),
    membrane_thickness: float = typer.Option(
        DEFAULT_MEMBRANE_THICKNESS_NM,
        "--membrane-thickness",
        help="Bilayer thickness (nm): midline radius = outer radius − thickness/2.",
    ),
    z_slabs: int = typer.Option(4, "--z-slabs", help="Number of z slabs in the breakdown."),
    star_binning: float | None = typer.Option(
        None,
        "--star-binning",
        help="Tomogram binning relative to the tilt series, for STAR files that hold only "
        "RELION-4 rlnCoordinate* (unbinned px); RELION-5 centered Å needs none.",
    ),
    membranes_truth: Path | None = typer.Option(None, help=membrane_scores.TRUTH_HELP),
    membranes_pred: Path | None = typer.Option(None, help=membrane_scores.PRED_HELP),
    filaments_truth: Path | None = typer.Option(None, help=filament_scores.TRUTH_HELP),
    filaments_pred: Path | None = typer.Option(None, help=filament_scores.PRED_HELP),
    overwrite: bool = overwrite_option(),
) -> None:
    """Match predicted vesicles to ground truth (Hungarian on centers) and write metrics.json
    and report.html (plots, slices, missed and false vesicles) into the report folder.

    Folders evaluate many tomograms, paired by stem (docs/evaluation.md), with
    per-tomogram reports in OUTPUT/<stem>/ and pooled metrics in OUTPUT/.
    """
    if convention not in ("synapseg", "pyto"):
        raise InputError("--radius-convention", f"unknown value {convention!r}", "synapseg or pyto")
    if not gt.exists():
        raise InputError(gt, "ground truth not found", "check the path")
    if not pred.exists():
        raise InputError(pred, "prediction not found", "check the path")
    options: dict[str, Any] = {
        "match_fraction": match_fraction,
        "betas": tuple(dict.fromkeys([1.0, *beta])),
        "voxel_size_nm": voxel_size,
        "gt_voxel_size_nm": gt_voxel_size,
        "pred_voxel_size_nm": pred_voxel_size,
        "gt_ids": _parse_ids(gt_ids),
        "gt_labels": gt_labels,
        "pred_labels": pred_labels,
        "convention": convention,
        "membrane_thickness_nm": membrane_thickness,
        "z_slabs": z_slabs,
        "star_binning": star_binning,
        "membranes": (membranes_truth, membranes_pred),
        "filaments": (filaments_truth, filaments_pred),
    }
    gt_dir = gt.is_dir() and not is_volume(gt)
    pred_dir = pred.is_dir() and not is_volume(pred)
    if gt_dir != pred_dir:
        raise InputError(
            gt if not gt_dir else pred,
            "one of --gt/--pred is a folder and the other a file",
            "give two files (one tomogram) or two folders (many)",
        )
    membrane_scores.check_membrane_options(gt_dir, membranes_truth, membranes_pred)
    filament_scores.check_filament_options(filaments_truth, filaments_pred)
    if not gt_dir:
        metrics, match, tomo, inputs = evaluate_one(gt, pred, tomogram, options)
        write_report(
            output,
            metrics,
            match,
            tomogram=tomo,
            title=f"synapseg evaluation: {pred.name} vs {gt.name}",
            inputs=inputs,
            overwrite=overwrite,
        )
        _print_summary(f"{pred.name} vs {gt.name}", metrics)
        err_console.print(f"report: {output / 'report.html'}", markup=False)
        return
    _evaluate_many(gt, pred, tomogram, output, options, overwrite)


def _evaluate_many(
    gt: Path,
    pred: Path,
    tomogram: Path | None,
    output: Path,
    options: dict[str, Any],
    overwrite: bool,
) -> None:
    if tomogram is not None and not tomogram.is_dir():
        raise InputError(tomogram, "in batch mode --tomogram must be a folder", "give a folder")
    pairing = pair_folders(gt, pred, tomogram)
    for target in report_targets(output, slices=False):
        check_writable(target, overwrite)
    for pair in pairing.pairs:
        for target in report_targets(output / pair.stem):
            check_writable(target, overwrite)
    per: dict[str, dict[str, Any]] = {}
    matches = []
    for pair in pairing.pairs:
        labels = {"gt_labels": pair.gt_labels, "pred_labels": pair.pred_labels}
        metrics, match, tomo, inputs = evaluate_one(
            pair.gt, pair.pred, pair.tomogram, {**options, **labels}
        )
        write_report(
            output / pair.stem,
            metrics,
            match,
            tomogram=tomo,
            title=f"synapseg evaluation: {pair.stem}",
            inputs=inputs,
            overwrite=overwrite,
        )
        per[pair.stem] = metrics
        matches.append(match)
    pooled = pooled_metrics(matches, per, betas=options["betas"], z_slabs=options["z_slabs"])
    add_pooled_context(pooled, per)
    pooled["skipped"] = {
        "prediction_without_ground_truth": pairing.pred_without_gt,
        "ground_truth_without_prediction": pairing.gt_without_pred,
    }
    pooled["inputs"] = {"ground truth": str(gt), "prediction": str(pred)}
    write_report(
        output,
        pooled,
        pool_matches(matches),
        title=f"synapseg evaluation: {len(per)} tomograms (pooled)",
        inputs={
            "ground truth": str(gt),
            "prediction": str(pred),
            "tomograms": len(per),
            "macro-average F1": f"{pooled['macro_f1']:.3f}",
            "skipped (no ground truth)": ", ".join(pairing.pred_without_gt) or None,
            "skipped (no prediction)": ", ".join(pairing.gt_without_pred) or None,
        },
        overwrite=overwrite,
        slices=False,
        vesicle_lists=False,
        extra_html=_per_tomogram_html(per),
    )
    _print_batch(per, pooled, output)
    err_console.print(f"report: {output / 'report.html'}", markup=False)
