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
