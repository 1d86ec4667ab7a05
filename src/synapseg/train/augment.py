"""Patch augmentation that respects the single-axis missing wedge.

Geometric: flips of z, y and x (each maps a single-axis wedge onto itself) and rotations
by 90° steps about z (swaps the tilt axis between y and x: the model then learns both
orientations, so inference may use rot90 TTA — ``card.tta_rot90 = True``). No rotation
mixes z with x/y.

Intensity (image only): scale/shift, gamma, Gaussian noise, blur, and a "denoised /
low-pass filtered" look (strong smoothing, then the patch is re-standardised, which is
what normalising a cryoCARE/IsoNet/low-passed volume does). Simulated data gets its
physical variation (tilt range, defocus, SNR, voxel size) at generation time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage


@dataclass
class AugmentParams:
    """Probabilities and ranges of each augmentation (all documented in docs/training.md)."""

    flip: bool = True
    rot90_z: bool = True
    p_scale_shift: float = 0.5
    scale_range: tuple[float, float] = (0.75, 1.3)
    shift_range: tuple[float, float] = (-0.25, 0.25)
    p_gamma: float = 0.3
    gamma_range: tuple[float, float] = (0.7, 1.5)
    p_noise: float = 0.3
    noise_sigma_range: tuple[float, float] = (0.1, 0.6)
    p_blur: float = 0.2
    blur_sigma_range: tuple[float, float] = (0.4, 1.0)
    p_denoised: float = 0.2
    denoised_sigma_range: tuple[float, float] = (1.0, 2.0)

    def to_dict(self) -> dict:
        return asdict(self)


class Augmenter:
    """Callable ``(image, target, weight, rng) -> (image, target, weight)``.

    ``image`` and ``weight`` are (z, y, x), ``target`` is (C, z, y, x). All randomness
    comes from ``rng`` so a run is reproducible and resumable.
    """

    def __init__(self, params: AugmentParams | None = None) -> None:
        self.params = params or AugmentParams()

    def __call__(
        self,
        image: np.ndarray,
        target: np.ndarray,
        weight: np.ndarray,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p = self.params
        image, target, weight = geometric(image, target, weight, rng, p.flip, p.rot90_z)
        image = intensity(image, rng, p)
        return image, target, weight


def geometric(
    image: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray,
    rng: np.random.Generator,
    flip: bool = True,
    rot90_z: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random flips of z/y/x and a random multiple of 90° about z, applied to all three."""
    if flip:
        for axis in range(3):
            if rng.random() < 0.5:
                image = np.flip(image, axis)
                target = np.flip(target, axis + 1)
                weight = np.flip(weight, axis)
    if rot90_z:
        square = image.shape[1] == image.shape[2]
        k = int(rng.integers(4)) if square else 2 * int(rng.integers(2))
        if k:
            image = np.rot90(image, k, axes=(1, 2))
            target = np.rot90(target, k, axes=(2, 3))
            weight = np.rot90(weight, k, axes=(1, 2))
    return (
        np.ascontiguousarray(image),
        np.ascontiguousarray(target),
        np.ascontiguousarray(weight),
    )


def intensity(image: np.ndarray, rng: np.random.Generator, p: AugmentParams) -> np.ndarray:
    """Intensity augmentations of a normalised (z-scored) image patch."""
    image = np.asarray(image, dtype=np.float32)
    ref = (float(image.mean()), float(image.std()))
    if rng.random() < p.p_denoised:
        sigma = rng.uniform(*p.denoised_sigma_range)
        image = ndimage.gaussian_filter(image, sigma=(sigma, sigma, sigma), mode="nearest")
        image = _restandardise(image, ref)
    elif rng.random() < p.p_blur:
        image = ndimage.gaussian_filter(image, sigma=rng.uniform(*p.blur_sigma_range))
        image = _restandardise(image, ref)
    if rng.random() < p.p_noise:
        sigma = rng.uniform(*p.noise_sigma_range)
        image = _restandardise(image + rng.normal(0, sigma, image.shape).astype(np.float32), ref)
    if rng.random() < p.p_gamma:
        lo, hi = float(image.min()), float(image.max())
        if hi > lo:
            unit = (image - lo) / (hi - lo)
            image = unit ** rng.uniform(*p.gamma_range) * (hi - lo) + lo
    if rng.random() < p.p_scale_shift:
        image = image * rng.uniform(*p.scale_range) + rng.uniform(*p.shift_range)
    return image.astype(np.float32)


def _restandardise(image: np.ndarray, ref: tuple[float, float]) -> np.ndarray:
    """Give the patch back its original mean and std (what normalising a filtered volume
    does), so filtered patches keep their place relative to the volume statistics."""
    std = float(image.std())
    if std <= 0:
        return image
    return (image - image.mean()) / std * ref[1] + ref[0]
