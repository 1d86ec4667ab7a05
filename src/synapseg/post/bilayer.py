"""The lipid-bilayer radial profile model of the sphere fit: template and radius fit.

Split from :mod:`synapseg.post.spheres` (pure numpy on profiles; the fit loop lives there).
"""

from __future__ import annotations

import numpy as np

from synapseg.post.profiles import parabolic_min


def _bilayer_template(r: np.ndarray, radius: np.ndarray, thickness: float) -> np.ndarray:
    s = 0.5 * thickness
    return -np.exp(-0.5 * ((r - radius[:, None]) / s) ** 2)


def _fit_bilayer_radius(r_nm, prof, radii, t, smooth_nm, step):
    """Radius of the best least-squares fit ``a D(r - R) + b S(r - R) + c`` of each profile.

    ``D``: Gaussian dip (the smoothed bilayer), ``S``: logistic step (a lumen denser or lighter
    than the cytoplasm), fitted within ``|r - R| <= 2 t`` for ``R`` on a grid of ``step``
    within ±0.6 t of ``radii``; the residual minimum is refined with a parabola. Modelling the
    lumen step keeps it from pulling the dip minimum inwards.
    """
    sd = np.hypot(smooth_nm, t / 2.355)
    ss = np.hypot(smooth_nm, t / 4) / 1.7
    n_j = int(np.ceil(0.6 * t / step))
    js = np.arange(-n_j, n_j + 1) * step
    cand = radii[:, None] + js[None, :]  # (m, J)
    x = r_nm[:, None, :] - cand[:, :, None]  # (m, J, K)
    win = (np.abs(x) <= 2 * t) & np.isfinite(prof)[:, None, :]
    pr = np.where(win, np.nan_to_num(prof)[:, None, :], 0.0)
    basis = (
        np.stack(
            [
                np.exp(-0.5 * (x / sd) ** 2),
                1.0 / (1.0 + np.exp(np.clip(x / ss, -50, 50))),
                np.ones_like(x),
            ],
            axis=-1,
        )
        * win[..., None]
    )
    gram = np.einsum("mjki,mjkl->mjil", basis, basis) + 1e-9 * np.eye(3)
    rhs = np.einsum("mjki,mjk->mji", basis, pr)
    coef = np.linalg.solve(gram, rhs[..., None])[..., 0]
    cnt = np.maximum(win.sum(axis=2), 1)
    rss = (np.sum(pr**2, axis=2) - np.sum(coef * rhs, axis=2)) / cnt
    rss = np.where(coef[..., 0] < 0, rss, np.inf)  # the membrane must be a dip
    pos, _, interior = parabolic_min(rss)
    return radii + (pos - n_j) * step, interior
