"""Augmentation: wedge-respecting geometry applied consistently; intensity only on images."""

from __future__ import annotations

import numpy as np

from synapseg.train.augment import Augmenter, AugmentParams, geometric, intensity


def test_geometry_moves_image_target_and_weight_together():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(8, 12, 12)).astype(np.float32)
    target = (image > 0.5).astype(np.float32)[None]
    weight = (image > -0.5).astype(np.float32)
    for seed in range(8):
        i2, t2, w2 = geometric(image, target, weight, np.random.default_rng(seed))
        np.testing.assert_array_equal(t2[0], (i2 > 0.5).astype(np.float32))
        np.testing.assert_array_equal(w2, (i2 > -0.5).astype(np.float32))


def test_rotations_are_only_about_z():
    image = np.zeros((6, 10, 10), np.float32)
    image[1, :, :] = 1  # one z-slab: any rotation mixing z with x/y would move it
    seen = set()
    for seed in range(16):
        out, _, _ = geometric(image, image[None], image, np.random.default_rng(seed))
        slab = int(np.flatnonzero(out.sum(axis=(1, 2)))[0])
        seen.add(slab)
        assert out.sum() == image.sum() and out[slab].all()
    assert seen == {1, 4}  # unchanged or z-flipped


def test_non_square_patches_rotate_by_180_only():
    image = np.arange(4 * 6 * 8, dtype=np.float32).reshape(4, 6, 8)
    for seed in range(8):
        out, _, _ = geometric(image, image[None], image, np.random.default_rng(seed))
        assert out.shape == image.shape


def test_intensity_is_reproducible_and_varied():
    image = np.random.default_rng(1).normal(size=(8, 16, 16)).astype(np.float32)
    p = AugmentParams(p_scale_shift=1, p_gamma=1, p_noise=1, p_denoised=1)
    a = intensity(image, np.random.default_rng(5), p)
    b = intensity(image, np.random.default_rng(5), p)
    c = intensity(image, np.random.default_rng(6), p)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c) and np.isfinite(a).all()


def test_denoised_look_is_smoother_with_the_same_statistics():
    image = np.random.default_rng(2).normal(size=(16, 32, 32)).astype(np.float32)
    p = AugmentParams(p_scale_shift=0, p_gamma=0, p_noise=0, p_denoised=1, p_blur=0)
    out = intensity(image, np.random.default_rng(0), p)
    assert abs(out.std() - image.std()) < 1e-3 and abs(out.mean() - image.mean()) < 1e-3
    grad = lambda x: np.abs(np.diff(x, axis=2)).mean()  # noqa: E731
    assert grad(out) < 0.5 * grad(image)


def test_augmenter_leaves_targets_binary():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(8, 16, 16)).astype(np.float32)
    target = (rng.random((1, 8, 16, 16)) > 0.7).astype(np.float32)
    _, t2, _ = Augmenter()(image, target, np.ones_like(image), rng)
    assert set(np.unique(t2)) <= {0.0, 1.0} and t2.sum() == target.sum()
