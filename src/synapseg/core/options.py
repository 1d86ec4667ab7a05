"""What ``segment`` is asked to do and where it writes: options, output paths, provenance.

Moved here from ``synapseg.pipeline`` (which re-exports every name) so the runner
(:mod:`synapseg.core.runner`) and the CLI share one definition.
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from synapseg import __version__
from synapseg.errors import InputError
from synapseg.io.volume import MRC_SUFFIXES, TIFF_SUFFIXES, is_zarr

__all__ = [
    "ALL_FORMATS",
    "DEFAULT_FORMATS",
    "STAGES",
    "OutputPaths",
    "SegmentOptions",
    "list_tomograms",
    "provenance",
]

STAGES = ("predict", "vesicles", "export")
ALL_FORMATS = ("csv", "json", "star", "mod", "labels", "pyto")
DEFAULT_FORMATS = ("csv", "json", "star", "mod", "labels")
_OUTPUT_SUFFIXES = (
    "_probabilities",
    "_vesicles",
    "_pyto_labels",
    "_report",
)


@dataclass
class SegmentOptions:
    """Everything that controls ``segment``; recorded in the report."""

    model: str = "default"
    device: str = "auto"
    tta: bool = False
    tile_size: int | None = None
    voxel_size_nm: float | None = None
    mask: Path | None = None
    formats: tuple[str, ...] = DEFAULT_FORMATS
    star_binning: float | None = None  # None: STAR holds RELION-5 centered Å only
    pyto_boundaries: Path | None = None
    invert: str = "auto"
    threshold: float | None = None
    tilt_range_deg: float | None = None
    tilt_axis: str | None = None
    min_radius_nm: float | None = None
    max_radius_nm: float | None = None
    min_confidence: float = 0.5
    overwrite: bool = False
    from_stage: str | None = None
    progress: bool = False
    fill_nonfinite: str | None = None
    context: bool = True  # synapse context (issue 14): membranes, active zone, compartment
    membrane_model: str = "default"  # the membrane network of the context; "none" skips it
    docked_nm: float = 5.0
    proximal_nm: float = 45.0
    layer_nm: float = 10.0
    filaments: bool | None = None  # connectors/tethers (issue 15): None = when an AZ is found

    def __post_init__(self) -> None:
        unknown = sorted(set(self.formats) - set(ALL_FORMATS))
        if unknown:
            raise InputError(
                "--formats",
                f"unknown format(s) {', '.join(unknown)}",
                f"use {','.join(ALL_FORMATS)}",
            )
        if self.from_stage is not None and self.from_stage not in STAGES:
            raise InputError(
                "--from-stage",
                f"unknown stage '{self.from_stage}'",
                f"use one of {', '.join(STAGES)}",
            )
        if self.invert not in ("auto", "yes", "no"):
            raise InputError("--invert", f"unknown value '{self.invert}'", "use auto, yes or no")
        if self.star_binning is not None and not self.star_binning > 0:
            raise InputError("--star-binning", "must be positive", "give e.g. 4 for bin-4 data")
        if not 0 <= self.min_confidence <= 1:
            raise InputError(
                "--min-confidence",
                f"{self.min_confidence} is not a probability",
                "give a value between 0 and 1, e.g. 0.5",
            )
        if self.tilt_axis not in (None, "y", "x", "dual"):
            raise InputError("--tilt-axis", f"unknown value '{self.tilt_axis}'", "use y, x or dual")
        self._check_values()
        if self.fill_nonfinite not in (None, "median"):
            raise InputError(
                "--fill-nonfinite", f"unknown method '{self.fill_nonfinite}'", "use median"
            )

    def _check_values(self) -> None:
        """Every value checked before work starts: a one-line error naming the option."""
        from synapseg import options as check

        check.check_open_interval(
            "--threshold", self.threshold, 0, 1, "give a probability between 0 and 1, e.g. 0.5"
        )
        check.check_radius_range(self.min_radius_nm, self.max_radius_nm)
        check.check_open_interval(
            "--tilt-range", self.tilt_range_deg, 0, 90, "give the ± tilt range in degrees, e.g. 60"
        )
        check.check_positive("--voxel-size", self.voxel_size_nm, "give the voxel size in nm")
        check.check_tile_size(self.tile_size)
        check.check_device(self.device)
        check.check_file("--mask", self.mask)
        check.check_file("--pyto-boundaries", self.pyto_boundaries)
        check.check_positive("--docked-nm", self.docked_nm, "give a distance in nm, e.g. 5")
        check.check_positive("--layer-nm", self.layer_nm, "give a thickness in nm, e.g. 10")
        if not self.proximal_nm >= self.docked_nm:
            raise InputError(
                "--proximal-nm",
                f"{self.proximal_nm} nm is below --docked-nm {self.docked_nm} nm",
                "give a larger distance, e.g. 45",
            )

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["mask"] = str(self.mask) if self.mask else None
        out["pyto_boundaries"] = str(self.pyto_boundaries) if self.pyto_boundaries else None
        out["formats"] = list(self.formats)
        return out


@dataclass
class OutputPaths:
    """Where ``segment`` writes the outputs for one tomogram."""

    folder: Path
    name: str
    files: dict[str, Path] = field(init=False)

    def __post_init__(self) -> None:
        f, n = self.folder, self.name
        self.files = {
            "probabilities": f / f"{n}_probabilities.mrc",
            "csv": f / f"{n}_vesicles.csv",
            "json": f / f"{n}_vesicles.json",
            "star": f / f"{n}_vesicles.star",
            "mod": f / f"{n}_vesicles.mod",
            "labels": f / f"{n}_vesicles.mrc",
            "pyto": f / f"{n}_pyto_labels.mrc",
            "report": f / f"{n}_report.json",
        }

    def __getitem__(self, key: str) -> Path:
        return self.files[key]


def list_tomograms(folder: Path) -> list[Path]:
    """Tomograms in a folder (MRC/REC, TIFF, OME-Zarr), excluding synapseg's own outputs."""
    found = []
    for path in sorted(folder.iterdir()):
        lower = path.name.lower()
        if not ((path.is_file() and lower.endswith(MRC_SUFFIXES + TIFF_SUFFIXES)) or is_zarr(path)):
            continue
        stem = path.name.split(".", 1)[0]
        if stem.endswith(_OUTPUT_SUFFIXES) or stem.endswith("_labels"):
            continue
        found.append(path)
    if not found:
        raise InputError(
            folder, "folder holds no tomograms (.mrc/.rec/.tif/.zarr)", "check the path"
        )
    return found


def provenance(options: SegmentOptions, card: Any | None = None) -> dict[str, Any]:
    """Tool, model and parameters: attached to every output."""
    model = None
    if card is not None:
        model = {"name": getattr(card, "name", None), "sha256": getattr(card, "sha256", None)}
        model["voxel_size_nm"] = getattr(card, "voxel_size_nm", None)
    return {
        "tool": "synapseg",
        "synapseg_version": __version__,
        "python": platform.python_version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": model,
        "parameters": options.to_json(),
    }
