"""``simulate_tomogram``: phantom → tilt series → weighted back-projection, with ground truth."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

from synapseg import __version__
from synapseg.simulate.imaging import image_tilt_series
from synapseg.simulate.params import SimulationParams
from synapseg.simulate.phantom import MEMBRANE_CLASSES, build_phantom
from synapseg.simulate.reconstruct import project, weighted_backprojection
from synapseg.simulate.world import fill_wedge, specimen_weight

log = logging.getLogger(__name__)


@dataclass
class SimulationResult:
    """A simulated tomogram and its exact ground truth.

    Attributes
    ----------
    tomogram
        float32 (z, y, x) reconstruction, zero mean and unit std, densities dark
        (bright with ``invert_contrast``).
    vesicles
        Vesicle table (``synapseg.io.tables`` layout) plus QC columns ``elongation``,
        ``min_gap_nm`` (closest outer-surface gap) and ``membrane_distance_nm``.
    vesicle_labels
        uint16 instances (id = table id), filled to the outer radius.
    membrane_labels
        uint8 classes: 1 plasma membrane, 2 vesicle membranes, 3 other membranes
        (postsynaptic, endosome, mitochondrion, dense-core vesicle).
    filaments
        Polyline ground truth: ``filament_id, kind (connector, tether, actin),
        from_vesicle_id, to_vesicle_id (0 = plasma membrane / none), point_index,
        z/y/x_px, z/y/x_nm``.
    params
        Every parameter including the seed (JSON-serialisable).
    phantom
        The noise-free density on the output grid (dense > 0), before imaging.
    info
        Facts measured while simulating (counts, per-tilt imaging, timings).
    """

    tomogram: np.ndarray
    vesicles: pd.DataFrame
    vesicle_labels: np.ndarray
    membrane_labels: np.ndarray
    filaments: pd.DataFrame
    params: dict[str, Any]
    phantom: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def voxel_size_nm(self) -> float:
        return float(self.params["voxel_size_nm"])


def _tilt_series_and_reconstruction(
    density: np.ndarray,
    angles: np.ndarray,
    true_angles: np.ndarray,
    params: SimulationParams,
    rng: np.random.Generator,
    thickness_nm: float,
    timings: dict[str, float],
    reference: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Project, image and reconstruct one single-axis tilt series (tilt axis y).

    ``reference`` (a density of the same shape, or None) is projected too and sets the noise
    level (see :func:`synapseg.simulate.imaging.image_tilt_series`).
    """
    t0 = time.perf_counter()
    projections = project(density, true_angles)
    ref_proj = None
    if reference is not None and params.snr is not None:
        ref_proj = project(reference, true_angles)
    images, imaging = image_tilt_series(
        projections, angles, params, rng, thickness_nm, reference=ref_proj
    )
    del projections, ref_proj
    timings["tilt_series_s"] = timings.get("tilt_series_s", 0.0) + time.perf_counter() - t0
    t0 = time.perf_counter()
    rec = weighted_backprojection(
        images,
        angles,
        density.shape[0],
        params.recon_filter,
        params.radial_cutoff,
        params.radial_falloff,
        params.sirt_iterations,
    )
    timings["reconstruction_s"] = timings.get("reconstruction_s", 0.0) + time.perf_counter() - t0
    return rec, imaging


def simulate_tomogram(
    params: SimulationParams | None = None, *, keep_phantom: bool = True, **overrides: Any
) -> SimulationResult:
    """Simulate one tomogram; deterministic for a given ``params.seed``.

    Parameters
    ----------
    params
        All settings (default :class:`SimulationParams`); ``overrides`` replace fields,
        e.g. ``simulate_tomogram(shape=(64, 128, 128), snr=None)``.
    keep_phantom
        Keep the noise-free density in ``result.phantom``.

    Notes
    -----
    The phantom and the imaging draw from independent random streams of the seed, so
    changing only imaging settings (``snr``, defocus, tilt range...) keeps every object
    in place.
    """
    params = (
        (params or SimulationParams()).replace(**overrides)
        if overrides
        else (params or SimulationParams())
    )
    phantom_rng, imaging_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(params.seed).spawn(2)
    )
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    phantom = build_phantom(params, phantom_rng)
    timings["phantom_s"] = time.perf_counter() - t0
    nz = params.shape[0]
    angles = params.tilt_angles_deg
    true_angles = angles + (
        imaging_rng.normal(0, params.jitter_angle_deg, len(angles))
        if params.jitter_angle_deg
        else 0.0
    )
    thickness_nm = nz * params.voxel_size_nm
    reference = None
    if params.lamella_thickness_nm is not None:
        # The noise is the specimen's: referenced to the same specimen without its vacuum
        # (vacuum density 0, as outside a volume without lamella), and the high-tilt loss
        # to the matter crossed (the slab), so vacuum around a specimen leaves its SNR alone.
        thickness_nm = min(thickness_nm, float(params.lamella_thickness_nm))
        outside = 1.0 - specimen_weight(params, params.shape)
        reference = phantom.density - np.float32(params.vacuum_density) * outside
        del outside
    rec, imaging = _tilt_series_and_reconstruction(
        phantom.density, angles, true_angles, params, imaging_rng, thickness_nm, timings, reference
    )
    if params.dual_axis:  # the second series tilts about x: swap y and x, and back
        second_angles = params.tilt_angles_deg + (
            imaging_rng.normal(0, params.jitter_angle_deg, len(angles))
            if params.jitter_angle_deg
            else 0.0
        )
        rec2, imaging2 = _tilt_series_and_reconstruction(
            phantom.density.transpose(0, 2, 1),
            angles,
            second_angles,
            params,
            imaging_rng,
            thickness_nm,
            timings,
            None if reference is None else reference.transpose(0, 2, 1),
        )
        rec = 0.5 * (rec + rec2.transpose(0, 2, 1))
        del rec2
        imaging = {"axis_y": imaging, "axis_x": imaging2}
    del reference
    t0 = time.perf_counter()
    if params.wedge_fill:
        rec = fill_wedge(rec, phantom.density, params.tilt_range_deg)
    if params.denoise_sigma_nm > 0:
        rec = ndimage.gaussian_filter(rec, params.denoise_sigma_nm / params.voxel_size_nm)
    if params.lamella_thickness_nm is not None and params.vacuum_brightness_sigma:
        # A flat slab's z profile lies in the missing wedge, so back-projection cannot show
        # the vacuum; real reconstructions do (finite lamellae, thickness-dependent loss):
        # add it as an offset in units of the reconstruction's std.
        vacuum = 1.0 - specimen_weight(params, params.shape)
        rec += np.float32(params.vacuum_brightness_sigma * float(rec.std())) * vacuum
    rec -= rec.mean()
    std = float(rec.std())
    if std > 0:
        rec /= std
    if params.invert_contrast:
        rec = -rec
    timings["reconstruction_s"] = timings.get("reconstruction_s", 0.0) + time.perf_counter() - t0
    info = dict(phantom.info)
    info.update(
        imaging=imaging,
        tilt_angles_deg=angles.tolist(),
        true_tilt_angles_deg=np.asarray(true_angles).round(4).tolist(),
        membrane_classes={str(k): v for k, v in MEMBRANE_CLASSES.items()},
        timings=timings,
        synapseg_version=__version__,
    )
    log.debug("simulated %s in %s", params.shape, timings)
    return SimulationResult(
        tomogram=rec.astype(np.float32, copy=False),
        vesicles=phantom.vesicles,
        vesicle_labels=phantom.vesicle_labels,
        membrane_labels=phantom.membrane_labels,
        filaments=phantom.filaments,
        params=params.to_dict(),
        phantom=phantom.density if keep_phantom else None,
        info=info,
    )
