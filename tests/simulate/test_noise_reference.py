"""The noise level is the specimen's: vacuum around a lamella leaves its SNR unchanged."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from synapseg.simulate import SimulationParams, simulate_tomogram
from synapseg.simulate.imaging import INELASTIC_MFP_NM
from synapseg.simulate.world import specimen_weight

VS = 2.4
LATERAL = 80  # 192 nm


def _membrane_contrast_over_noise(params: SimulationParams) -> float:
    """Vesicle membrane contrast (clean) over the noise σ, inside the specimen.

    The noise is the noisy tomogram minus the fitted clean one (same seed, ``snr=None``),
    with an intercept: both are normalised over the whole volume, vacuum included.
    """
    noisy = simulate_tomogram(params, keep_phantom=False)
    clean = simulate_tomogram(params.replace(snr=None), keep_phantom=False)
    if params.lamella_thickness_nm is None:
        weight = np.ones(params.shape, np.float32)
    else:
        weight = specimen_weight(params, params.shape)
    spec = ndimage.binary_erosion(weight > 0.99, iterations=3, border_value=0)
    n = noisy.tomogram[spec] - noisy.tomogram[spec].mean()
    c = clean.tomogram[spec] - clean.tomogram[spec].mean()
    a = float((n * c).sum() / (c * c).sum())
    noise_sigma = float((n - a * c).std())
    labels = noisy.membrane_labels
    membrane = (labels == 2) & spec
    ring = ndimage.binary_dilation(labels == 2, iterations=2)
    ring &= ~ndimage.binary_dilation(labels > 0, iterations=1) & spec
    assert membrane.sum() > 100 and ring.sum() > 100
    contrast = a * float(clean.tomogram[ring].mean() - clean.tomogram[membrane].mean())
    return contrast / noise_sigma


@pytest.mark.parametrize("seed", [91])
def test_vacuum_around_a_lamella_leaves_the_specimen_snr_alone(seed):
    # The same 90 nm specimen, once filling the volume and once as a lamella in 225 nm.
    plain = SimulationParams(shape=(38, LATERAL, LATERAL), voxel_size_nm=VS, seed=seed)
    slab = plain.replace(shape=(94, LATERAL, LATERAL), lamella_thickness_nm=90.0)
    ratio_plain = _membrane_contrast_over_noise(plain)
    ratio_slab = _membrane_contrast_over_noise(slab)
    # Before the noise was referenced to the specimen, the slab's ratio was ~3.8x lower.
    assert ratio_slab == pytest.approx(ratio_plain, rel=0.10)


def test_without_lamella_the_noise_follows_the_recorded_images():
    # Default tomograms keep their noise definition (and so their bytes): the level is the
    # recorded projections' own signal std, the high-tilt rise the whole volume's thickness.
    p = SimulationParams(shape=(24, 48, 48), voxel_size_nm=VS, seed=5)
    imaging = simulate_tomogram(p, keep_phantom=False).info["imaging"]
    assert "noise_reference_signal_std" not in imaging
    cosines = np.cos(np.deg2rad(p.tilt_angles_deg))
    relative = np.exp(p.shape[0] * VS / INELASTIC_MFP_NM * (1 / cosines - 1))
    relative /= relative.mean()
    expected = imaging["projection_signal_std"] / math.sqrt(p.snr) * np.sqrt(relative)
    np.testing.assert_allclose(imaging["noise_sigma"], expected, rtol=1e-4)


def test_with_lamella_the_noise_follows_the_specimen_without_vacuum():
    p = SimulationParams(shape=(60, 48, 48), voxel_size_nm=VS, seed=5, lamella_thickness_nm=60.0)
    imaging = simulate_tomogram(p, keep_phantom=False).info["imaging"]
    reference = imaging["noise_reference_signal_std"]
    # the vacuum's projection dominates the recorded images' std
    assert imaging["projection_signal_std"] > 2 * reference
    cosines = np.cos(np.deg2rad(p.tilt_angles_deg))
    relative = np.exp(60.0 / INELASTIC_MFP_NM * (1 / cosines - 1))  # the slab, not the volume
    relative /= relative.mean()
    expected = reference / math.sqrt(p.snr) * np.sqrt(relative)
    np.testing.assert_allclose(imaging["noise_sigma"], expected, rtol=1e-4)
