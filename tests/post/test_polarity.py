import numpy as np

from synapseg.post.polarity import detect_polarity

VOXEL_NM = 1.68


def test_polarity_of_normal_and_inverted_tomograms(phantom):
    tomo, centers, radii = phantom
    start = centers + 1.5  # candidates are never exact
    sign, conf = detect_polarity(tomo, start, radii + 2, VOXEL_NM)
    assert sign == 1 and conf >= 0.9
    sign, conf = detect_polarity(-tomo, start, radii + 2, VOXEL_NM)
    assert sign == -1 and conf >= 0.9
    # an offset/scaled inversion (as a pipeline would write it) too
    sign, _ = detect_polarity(1000 - 50 * tomo, start, radii, VOXEL_NM)
    assert sign == -1


def test_polarity_warns_when_inverted(phantom, caplog):
    tomo, centers, radii = phantom
    with caplog.at_level("WARNING"):
        detect_polarity(-tomo, centers, radii, VOXEL_NM)
    assert "inverted contrast" in caplog.text


def test_polarity_without_candidates_is_undecided(phantom):
    tomo, _, _ = phantom
    assert detect_polarity(tomo, np.zeros((0, 3)), np.zeros(0), VOXEL_NM) == (1, 0.0)


def test_few_candidates_are_no_evidence(phantom):
    """A vesicle-free tomogram's two or three spurious candidates must not flip the contrast."""
    tomo, centers, radii = phantom
    assert detect_polarity(-tomo, centers[:3], radii[:3], VOXEL_NM) == (1, 0.0)


def test_noise_candidates_keep_dark_densities():
    """On pure noise the statistic is symmetric: neither the volume nor its negative may be
    declared inverted (the old sign-of-the-mean rule flipped one of the two)."""
    rng = np.random.default_rng(3)
    noise = rng.normal(0, 1, (48, 96, 96)).astype(np.float32)
    centers = rng.uniform([14, 14, 14], [34, 82, 82], (20, 3))
    radii = rng.uniform(12, 18, 20)
    for volume in (noise, -noise):
        sign, conf = detect_polarity(volume, centers, radii, VOXEL_NM)
        assert sign == 1 and conf < 0.7


def test_rays_outside_the_specimen_are_ignored(phantom):
    from synapseg.post.profiles import fibonacci_directions, sample_profiles
    from synapseg.specimen.mask import SpecimenMask

    tomo, centers, radii = phantom
    coarse = np.ones((8, 1, 1), bool)
    coarse[:2] = False  # z < 16 voxels is not specimen
    mask = SpecimenMask(coarse, (8, 112, 112), tomo.shape, (VOXEL_NM,) * 3)
    dirs = fibonacci_directions(20)
    r_nm = np.linspace(0, 30, 7)[None, :].repeat(len(centers), 0)
    plain = sample_profiles(tomo, centers, r_nm, dirs, (VOXEL_NM,) * 3)
    masked = sample_profiles(tomo, centers, r_nm, dirs, (VOXEL_NM,) * 3, specimen=mask)
    z = centers[:, 0, None, None] + dirs[None, :, 0, None] * r_nm[:, None, :] / VOXEL_NM
    outside = z < 16
    assert outside.any() and (~outside).any()
    assert np.isnan(masked[outside]).all()
    np.testing.assert_array_equal(masked[~outside], plain[~outside])
