"""Loading ground truth and predictions, pairing many tomograms by stem, pooling metrics.

Pairing rule (documented in docs/evaluation.md): each prediction has a *stem*:

- ``PRED/<stem>_vesicles.csv`` (``synapseg segment``'s layout), or
- ``PRED/<stem>/<anything>_vesicles.csv`` (one segment output folder per tomogram; exactly
  one ``*_vesicles.csv`` inside).

Ground truth for that stem is, in ``GT``:

- ``GT/<stem>/vesicles.csv`` (``synapseg simulate``'s layout; ``GT/<stem>/tomogram.*`` is
  used as the tomogram, and ``GT/<stem>/vesicle_labels.mrc`` with the prediction's
  ``<name>_vesicles.mrc`` for voxel Dice/IoU when both exist), or
- ``GT/<stem>.csv`` or ``GT/<stem>_<anything>.csv``. A file that fits several stems
  (``a_b_gt.csv`` fits ``a`` and ``a_b``) belongs to the longest one.

A prediction whose stem names no ground truth but whose provenance sidecar
(``<stem>_vesicles.provenance.json``, written by ``synapseg segment``) records that it was
made from ``GT/<folder>/tomogram.*`` pairs with ``GT/<folder>/`` (a ``synapseg simulate``
folder segmented on its own gives ``tomogram_vesicles.csv``, whose stem is ``tomogram``).

A stem with two or more ground-truth candidates is refused (``InputError``) rather than
guessed; stems with a prediction but no ground truth (or the reverse) are skipped with a
warning and listed in the pooled ``metrics.json``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synapseg.errors import InputError
from synapseg.evaluate.from_labels import table_from_labels
from synapseg.evaluate.matching import MatchResult, ResolvedTable, resolve_table
from synapseg.evaluate.metrics import metrics_from_match
from synapseg.io.tables import DEFAULT_MEMBRANE_THICKNESS_NM, read_table_csv, read_vesicles
from synapseg.io.volume import (
    MRC_SUFFIXES,
    TIFF_SUFFIXES,
    ZARR_SUFFIXES,
    Volume,
    find_first,
    read_volume,
)

log = logging.getLogger(__name__)

VOLUME_SUFFIXES = MRC_SUFFIXES + TIFF_SUFFIXES + ZARR_SUFFIXES
PRED_SUFFIX = "_vesicles.csv"
SIM_TABLE = "vesicles.csv"
SIM_TOMOGRAM = "tomogram"
SIM_LABELS = "vesicle_labels.mrc"
PRED_LABELS_SUFFIX = "_vesicles.mrc"


def is_volume(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a volume (label or tomogram) rather than a table."""
    return str(path).lower().endswith(VOLUME_SUFFIXES)


@dataclass
class Loaded:
    """One side of an evaluation: its table resolved to nm, plus labels when it was a volume."""

    path: Path
    table: ResolvedTable
    labels: np.ndarray | None = None
    voxel_size_nm: tuple[float, float, float] | None = None
    raw: pd.DataFrame | None = field(default=None, repr=False)


def load_vesicles(
    path: str | os.PathLike,
    *,
    voxel_size_nm: float | Sequence[float] | None = None,
    ids: Sequence[int] | None = None,
    convention: str = "synapseg",
    membrane_thickness_nm: float = DEFAULT_MEMBRANE_THICKNESS_NM,
    shape: Sequence[int] | None = None,
    binning: float | None = None,
    default_voxel_size_nm: float | Sequence[float] | None = None,
) -> Loaded:
    """Read a vesicle table (.csv/.json/.star/.mod) or derive one from a label volume.

    Parameters
    ----------
    path
        Table or label volume (MRC/TIFF/OME-Zarr with integer labels).
    voxel_size_nm
        For pixel-only tables, STAR and some .mod files; for a label volume it overrides
        the header.
    ids, convention, membrane_thickness_nm
        Label volumes only: see :func:`synapseg.evaluate.from_labels.table_from_labels`.
    shape, binning
        STAR files only (RELION-5 centered coordinates, RELION-4 binning).
    default_voxel_size_nm
        Tables only: the voxel size to assume when the table needs one and neither it nor
        ``voxel_size_nm`` gives one (e.g. the tomogram's).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found", "check the path")
    if is_volume(path):
        volume = read_volume(path, voxel_size_nm)
        labels = np.asarray(volume.data)
        raw = table_from_labels(
            labels,
            volume.voxel_size_nm,
            ids=ids,
            convention=convention,  # type: ignore[arg-type]
            membrane_thickness_nm=membrane_thickness_nm,
            name=str(path),
        )
        if ids is not None:  # other segments (membranes, cytoplasm) are background
            labels = np.where(np.isin(labels, np.asarray(list(ids))), labels, 0)
        table = resolve_table(raw, name=str(path))
        return Loaded(path, table, labels, volume.voxel_size_nm, raw)
    if ids is not None:
        raise InputError(path, "vesicle ids select labels, but this is a table", "drop the ids")
    if path.suffix.lower() == ".csv":
        raw = read_table_csv(path)  # raw columns: px/nm consistency is checked when resolving
    else:
        vs = voxel_size_nm if voxel_size_nm is not None else default_voxel_size_nm
        raw = read_vesicles(path, voxel_size_nm=vs, shape=shape, binning=binning)
    table = resolve_table(
        raw,
        voxel_size_nm,
        name=str(path),
        membrane_thickness_nm=membrane_thickness_nm,
        default_voxel_size_nm=default_voxel_size_nm,
    )
    return Loaded(path, table, None, table.voxel_size_nm, raw)


# --------------------------------------------------------------------------- pairing


@dataclass(frozen=True)
class Pair:
    """Ground truth, prediction and optional tomogram of one tomogram stem."""

    stem: str
    gt: Path
    pred: Path
    tomogram: Path | None = None
    gt_labels: Path | None = None
    pred_labels: Path | None = None


@dataclass
class Pairing:
    pairs: list[Pair]
    pred_without_gt: list[str]
    gt_without_pred: list[str]


def _prediction_stems(pred_dir: Path) -> dict[str, Path]:
    stems: dict[str, Path] = {}
    for path in sorted(pred_dir.iterdir()):
        if path.is_file() and path.name.endswith(PRED_SUFFIX):
            stems[path.name[: -len(PRED_SUFFIX)]] = path
    for sub in sorted(p for p in pred_dir.iterdir() if p.is_dir()):
        found = sorted(sub.glob(f"*{PRED_SUFFIX}"))
        if not found:
            continue
        if len(found) > 1:
            raise InputError(
                sub,
                f"holds several prediction tables ({', '.join(p.name for p in found)})",
                "keep one *_vesicles.csv per tomogram folder",
            )
        if sub.name in stems:
            raise InputError(
                sub,
                f"tomogram '{sub.name}' has predictions in {stems[sub.name]} and {found[0]}",
                "remove one of them",
            )
        stems[sub.name] = found[0]
    if not stems:
        raise InputError(
            pred_dir,
            f"folder holds no predictions (<stem>{PRED_SUFFIX} or <stem>/*{PRED_SUFFIX})",
            "point --pred at synapseg segment's output folder",
        )
    return stems


def _find_tomogram(folder: Path, names: Sequence[str]) -> Path | None:
    return find_first(folder, names, VOLUME_SUFFIXES)


def _owner(name: str, stems: Sequence[str]) -> str | None:
    """The longest stem that a ground-truth file name ``<stem>.csv``/``<stem>_*.csv`` fits."""
    base = name[:-4]
    fits = [s for s in stems if base == s or base.startswith(s + "_")]
    return max(fits, key=len) if fits else None


def _source_tomogram(pred: Path) -> Path | None:
    """The tomogram a prediction table was made from, per its provenance sidecar."""
    sidecar = pred.with_suffix(".provenance.json")
    try:
        source = json.loads(sidecar.read_text(encoding="utf-8")).get("tomogram")
    except (OSError, ValueError, AttributeError):
        return None
    return Path(source) if isinstance(source, str) and source else None


def _rename_by_source(preds: dict[str, Path], gt_dir: Path) -> dict[str, Path]:
    """Re-key predictions whose stem names no ground truth but whose source tomogram is
    ``gt_dir/<folder>/tomogram.*`` (a ``synapseg simulate`` folder) to ``<folder>``."""
    sim_folders = {
        e.resolve(): e.name for e in gt_dir.iterdir() if e.is_dir() and (e / SIM_TABLE).is_file()
    }
    out: dict[str, Path] = {}
    for stem, path in preds.items():
        new = stem
        if stem not in sim_folders.values():
            source = _source_tomogram(path)
            if source is not None and source.name.split(".", 1)[0] == SIM_TOMOGRAM:
                new = sim_folders.get(source.resolve().parent, stem)
        if new in out or (new != stem and new in preds):
            new = stem  # the folder already has its own prediction: keep the stems apart
        elif new != stem:
            log.info("%s: paired with %s by its source tomogram", path, gt_dir / new)
        out[new] = path
    return out


def pair_folders(gt_dir: Path, pred_dir: Path, tomogram_dir: Path | None = None) -> Pairing:
    """Pair ground truth and predictions by tomogram stem (rule in the module docstring)."""
    preds = _rename_by_source(_prediction_stems(pred_dir), gt_dir)
    stems = list(preds)
    candidates: dict[str, list[tuple[Path, Path | None]]] = {s: [] for s in stems}
    gt_stems: set[str] = set()
    for entry in sorted(gt_dir.iterdir()):
        if entry.is_dir() and (entry / SIM_TABLE).is_file():
            gt_stems.add(entry.name)
            if entry.name in candidates:
                tomo = _find_tomogram(entry, [SIM_TOMOGRAM, entry.name])
                candidates[entry.name].append((entry / SIM_TABLE, tomo))
        elif entry.is_file() and entry.name.lower().endswith(".csv"):
            owner = _owner(entry.name, stems)
            gt_stems.add(owner or entry.name[:-4])
            if owner is not None:
                candidates[owner].append((entry, None))
    if not gt_stems:
        raise InputError(
            gt_dir,
            f"folder holds no ground truth (<stem>/{SIM_TABLE} or <stem>_*.csv)",
            "point --gt at synapseg simulate's output or a folder of tables",
        )
    pairs, missing = [], []
    for stem in stems:
        found = candidates[stem]
        if len(found) > 1:
            raise InputError(
                gt_dir,
                f"tomogram '{stem}' has {len(found)} ground-truth candidates "
                f"({', '.join(str(p) for p, _ in found)})",
                "keep one ground truth per tomogram stem (see docs/evaluation.md)",
            )
        if not found:
            missing.append(stem)
            continue
        gt_path, tomo = found[0]
        if tomogram_dir is not None:
            tomo = _find_tomogram(tomogram_dir, [stem]) or tomo
        # Voxel metrics when both label volumes are at hand: simulate's vesicle_labels.mrc
        # and segment's <name>_vesicles.mrc beside the prediction table.
        gt_labels = gt_path.parent / SIM_LABELS if gt_path.name == SIM_TABLE else None
        pred_labels = preds[stem].with_name(
            preds[stem].name[: -len(PRED_SUFFIX)] + PRED_LABELS_SUFFIX
        )
        if gt_labels is None or not gt_labels.is_file() or not pred_labels.is_file():
            gt_labels = pred_labels = None
        pairs.append(Pair(stem, gt_path, preds[stem], tomo, gt_labels, pred_labels))
    unclaimed = sorted(gt_stems - set(stems))
    if missing:
        log.warning("no ground truth for predictions %s: skipped", missing)
    if unclaimed:
        log.warning("no prediction for ground truth %s: skipped", unclaimed)
    if not pairs:
        raise InputError(
            pred_dir,
            f"no prediction matches a ground-truth stem (predictions: {stems[:10]}, ground "
            f"truth: {sorted(gt_stems)[:10]})",
            "name predictions <stem>_vesicles.csv after their ground truth (docs/evaluation.md)",
        )
    return Pairing(pairs, missing, unclaimed)


# --------------------------------------------------------------------------- pooling


# Each tomogram's centers are moved this far along x in pooled tables, so re-matching a
# pooled table (the report's sweeps) never pairs vesicles of different tomograms.
_POOL_OFFSET_NM = 1.0e7


def _concat(tables: Sequence[ResolvedTable]) -> ResolvedTable:
    shifted = [
        t.centers_nm.reshape(-1, 3) + [0.0, 0.0, k * _POOL_OFFSET_NM] for k, t in enumerate(tables)
    ]
    return ResolvedTable(
        np.concatenate([t.ids for t in tables]),
        np.concatenate(shifted).reshape(-1, 3),
        np.concatenate([t.radius_nm for t in tables]),
        np.concatenate([t.score for t in tables]),
        None,
    )


def pool_matches(matches: Sequence[MatchResult]) -> MatchResult:
    """One match over all tomograms; ids are not unique in it, and x centers are offset by
    1e7 nm per tomogram so that re-matching never pairs vesicles across tomograms (z and all
    errors are unchanged)."""
    if not matches:
        raise ValueError("nothing to pool")
    gt_off = np.cumsum([0] + [len(m.gt) for m in matches])
    pred_off = np.cumsum([0] + [len(m.pred) for m in matches])
    return MatchResult(
        _concat([m.gt for m in matches]),
        _concat([m.pred for m in matches]),
        matches[0].match_fraction,
        np.concatenate([m.gt_index + o for m, o in zip(matches, gt_off)]).astype(int),
        np.concatenate([m.pred_index + o for m, o in zip(matches, pred_off)]).astype(int),
        np.concatenate([m.distance_nm for m in matches]),
    )


def pooled_metrics(
    matches: Sequence[MatchResult],
    per_tomogram: dict[str, dict[str, Any]],
    *,
    betas: Sequence[float] = (1, 4),
    z_slabs: int = 4,
    **kwargs: Any,
) -> dict[str, Any]:
    """Micro-averaged metrics over all tomograms plus the macro mean of per-tomogram F1.

    Per-vesicle lists (matches, FP and FN ids) stay in the per-tomogram entries, under
    ``tomograms[stem]``.
    """
    pooled = metrics_from_match(pool_matches(matches), betas=betas, z_slabs=z_slabs, **kwargs)
    for key in ("matches", "false_positive_ids", "false_negative_ids"):
        pooled.pop(key)
    voxels = [m.get("voxel") for m in per_tomogram.values()]
    if voxels and all(voxels):
        # Pooled voxel metrics over tomograms that all have label volumes.
        total = {k: sum(v["voxels"][k] for v in voxels) for k in ("gt", "pred", "intersection")}
        both = total["gt"] + total["pred"]
        ious = [x for v in voxels for x in v["matched_iou"]]
        pooled["voxel"] = {
            "dice": 1.0 if both == 0 else 2.0 * total["intersection"] / both,
            "mean_matched_iou": float(np.mean(ious)) if ious else None,
            "voxels": total,
        }
    f1s = [m["f1"] for m in per_tomogram.values()]
    pooled["macro_f1"] = float(np.mean(f1s)) if f1s else None
    pooled["n_tomograms"] = len(per_tomogram)
    pooled["tomograms"] = per_tomogram
    return pooled


def open_tomogram(path: Path | None, voxel_size_nm: float | None = None) -> Volume | None:
    """The tomogram to draw the report's slices on (``None`` when not given)."""
    return None if path is None else read_volume(path, voxel_size_nm)


def gt_outside(gt: Loaded, pred: Loaded, tomo: Volume | None) -> str | None:
    """A warning when ground-truth centers lie outside the tomogram (or label volume)."""
    from synapseg.summary import centers_outside_warning

    if tomo is not None:
        shape, vs = tomo.shape, tomo.voxel_size_nm
    else:
        side = next((s for s in (pred, gt) if s.labels is not None and s.voxel_size_nm), None)
        if side is None:
            return None
        shape, vs = side.labels.shape, side.voxel_size_nm
    return centers_outside_warning(gt.table.centers_nm, shape, vs, "ground-truth")
