"""Signed-distance membrane targets (recipe v4) and the distance term of the membrane loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synapseg.train.membrane_targets import (
    membrane_sd_targets,
    membrane_targets,
    signed_distance_nm,
)
from synapseg.train.membrane_trainer import DistanceLoss

VOXEL_NM = 1.0
LO_NM, HI_NM = 40.0, 45.0  # a 5 nm bilayer, a slab across x


def _slab(voxel_nm: float = VOXEL_NM, vesicle: bool = False) -> np.ndarray:
    x = (np.arange(int(100 / voxel_nm)) + 0.5) * voxel_nm
    labels = np.zeros((12, 12, x.size), np.uint8)
    labels[:, :, (x >= LO_NM) & (x < HI_NM)] = 1
    if vesicle:
        labels[:, :, (x >= 70) & (x < 75)] = 2
    return labels


def _crossings_nm(profile: np.ndarray, voxel_nm: float) -> list[float]:
    """Positions (nm, source-voxel-centre convention) where ``profile`` crosses 0.5."""
    out = []
    for i in range(len(profile) - 1):
        a, b = profile[i] - 0.5, profile[i + 1] - 0.5
        if a * b < 0:
            out.append((i + a / (a - b)) * voxel_nm)
    return out


def test_signed_distance_is_negative_inside_and_in_nm():
    labels = _slab()
    d = signed_distance_nm(labels == 1, VOXEL_NM)[5, 5]
    x = (np.arange(d.size) + 0.5) * VOXEL_NM
    inside = (x >= LO_NM) & (x < HI_NM)
    assert (d[inside] < 0).all() and (d[~inside] > 0).all()
    # voxel centre 38.5 nm is 1.5 nm from the surface at 40 nm; 42.5 is the midline
    assert d[38] == pytest.approx(1.5) and d[42] == pytest.approx(-2.5)
    assert np.isinf(signed_distance_nm(np.zeros((4, 4, 4), bool), 1.0)).all()


def test_sd_target_places_the_surface_between_model_voxels():
    """Interpolated linearly back to the fine grid, channel 0 crosses 0.5 within 0.3 nm of
    the bilayer's two surfaces (the model grid is 2.4 nm)."""
    t = membrane_sd_targets(_slab(), VOXEL_NM, 2.4, tau_nm=1.0, clip_nm=6.0)
    profile = t[0, 2, 2]
    # model voxel i sits at source voxel i * 2.4 (centre 0.5 nm + i * 2.4 nm)
    found = [c + 0.5 * VOXEL_NM for c in _crossings_nm(profile, 2.4)]
    assert len(found) == 2
    assert found[0] == pytest.approx(LO_NM, abs=0.3) and found[1] == pytest.approx(HI_NM, abs=0.3)
    # bounded by the clip, and the far field is the clip's value
    lo = 1 / (1 + np.exp(6.0))
    assert profile.min() == pytest.approx(lo, rel=1e-3) and profile.max() < 1 - lo


def test_sd_target_keeps_vesicles_out_of_channel_0_and_in_channel_1():
    labels = _slab(vesicle=True)
    sd = membrane_sd_targets(labels, VOXEL_NM, 2.4)
    area = membrane_targets(labels, VOXEL_NM, 2.4)
    np.testing.assert_allclose(sd[1], area[1])
    assert ((sd[0] > 0.5) == (area[0] > 0.5)).mean() > 0.97
    assert not (sd[0] > 0.5)[..., 29:32].any()  # the vesicle membrane (70-75 nm)


def test_distance_loss_is_zero_at_the_target_and_clipped_beyond_it():
    loss = DistanceLoss(tau_nm=1.0, clip_nm=6.0, weight=1.0)
    d = torch.tensor([-3.0, -0.5, 0.0, 2.0, 6.0]).reshape(1, 1, 5, 1, 1)
    target = torch.sigmoid(-d)
    exact = torch.logit(target)
    assert float(loss(exact, target)) == pytest.approx(0.0, abs=1e-4)
    # one voxel 1 nm off: mean error 1 nm / 5 voxels
    off = exact.clone()
    off[0, 0, 1] += 1.0
    assert float(loss(off, target)) == pytest.approx(0.2, abs=1e-4)
    # beyond the clip on the right side costs nothing; on the wrong side it does
    far = exact.clone()
    far[0, 0, 4] = -50.0
    assert float(loss(far, target)) == pytest.approx(0.0, abs=1e-4)
    far[0, 0, 4] = 50.0
    assert float(loss(far, target)) == pytest.approx(12.0 / 5, abs=1e-3)
