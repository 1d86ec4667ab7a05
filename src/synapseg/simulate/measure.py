"""Grey-value statistics of vesicles, measured the way Pyto measures them on real data.

Pyto reports, per vesicle, the mean grey value of its membrane (a 2-voxel shell) and of
its lumen, and the mean and std of the background (cytoplasm outside vesicles). The
real reference (../shared/reference/README.md, 1.684 nm/px) has the membrane 0.51 and
the lumen 0.16 background-σ darker than the cytoplasm; :func:`vesicle_contrast` gives the
same two numbers for a simulated (or any) tomogram with a vesicle table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from synapseg.io.tables import CENTER_PX


def vesicle_contrast(
    tomogram: np.ndarray,
    vesicles: pd.DataFrame,
    voxel_size_nm: float,
    vesicle_labels: np.ndarray | None = None,
    background_mask: np.ndarray | None = None,
    shell_px: float = 2.0,
) -> dict[str, float]:
    """Membrane and lumen contrast in units of the background standard deviation.

    Parameters
    ----------
    tomogram
        (z, y, x) grey values with dark densities.
    vesicles
        Table with ``center_*_px`` and ``radius_nm`` (bilayer midline).
    voxel_size_nm
        Isotropic voxel size.
    vesicle_labels
        Instance labels filled to the outer radius; the background is everything more
        than 2 voxels away from any vesicle (and inside ``background_mask`` if given).
    shell_px
        Thickness of the membrane shell, centred on the bilayer midline.

    Returns
    -------
    dict
        ``membrane_sigma`` and ``lumen_sigma`` (positive = darker than background),
        ``background_mean``, ``background_std``, ``n_vesicles``.
    """
    tomogram = np.asarray(tomogram, dtype=np.float32)
    shell_sum = shell_n = lumen_sum = lumen_n = 0.0
    for row in vesicles.itertuples(index=False):
        c = np.array([getattr(row, k) for k in CENTER_PX])
        r_px = row.radius_nm / voxel_size_nm
        lo = np.maximum(np.floor(c - r_px - shell_px - 1).astype(int), 0)
        hi = np.minimum(np.ceil(c + r_px + shell_px + 2).astype(int), tomogram.shape)
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        zz, yy, xx = np.ogrid[box]
        r = np.sqrt((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2)
        sub = tomogram[box]
        shell = np.abs(r - r_px) <= shell_px / 2
        lumen = r < r_px - shell_px / 2
        shell_sum += float(sub[shell].sum())
        shell_n += int(shell.sum())
        lumen_sum += float(sub[lumen].sum())
        lumen_n += int(lumen.sum())
    if vesicle_labels is not None:
        near = ndimage.binary_dilation(vesicle_labels > 0, iterations=2)
    else:
        near = np.zeros(tomogram.shape, bool)
    bg = ~near if background_mask is None else (~near & background_mask)
    values = tomogram[bg]
    mean, std = float(values.mean()), float(values.std())
    return {
        "membrane_sigma": (mean - shell_sum / max(shell_n, 1)) / std,
        "lumen_sigma": (mean - lumen_sum / max(lumen_n, 1)) / std,
        "background_mean": mean,
        "background_std": std,
        "n_vesicles": int(len(vesicles)),
    }
