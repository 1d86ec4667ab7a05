"""Small synthetic annotated tomograms for the training tests (no simulator needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from synapseg.io.tables import make_table, write_table_csv
from synapseg.io.volume_writer import write_volume
from synapseg.post.render import render_labels

VOXEL_NM = 2.0
SHAPE = (32, 64, 64)


def toy_table(seed: int = 0, n: int = 6, shape=SHAPE, voxel_nm: float = VOXEL_NM):
    """Non-overlapping vesicles (outer radius 12-16 nm) well inside ``shape``."""
    rng = np.random.default_rng(seed)
    centers, radii = [], []
    margin_px = 9
    while len(centers) < n:
        c = rng.uniform([margin_px] * 3, np.array(shape) - margin_px)
        r = rng.uniform(10.0, 14.0)  # midline radius, nm
        if all(np.linalg.norm((c - c2) * voxel_nm) > r + r2 + 6 for c2, r2 in zip(centers, radii)):
            centers.append(c)
            radii.append(r)
    # multiples of 1/8 are exact in float32 (.mod), CSV's 4 decimals, JSON and STAR
    centers = np.round(np.array(centers) * 8) / 8
    radii = np.round(np.array(radii) * 8) / 8
    return make_table(centers, radii, (voxel_nm,) * 3)


def toy_tomogram(table, shape=SHAPE, voxel_nm: float = VOXEL_NM, seed: int = 0, snr=1.0):
    """Dark membrane shells (midline radius) in Gaussian noise: densities dark."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.indices(shape).astype(np.float32)
    img = np.zeros(shape, np.float32)
    for _, row in table.iterrows():
        d = (
            np.sqrt(
                (zz - row.center_z_px) ** 2
                + (yy - row.center_y_px) ** 2
                + (xx - row.center_x_px) ** 2
            )
            * voxel_nm
        )
        img -= np.exp(-((d - row.radius_nm) ** 2) / (2 * 2.0**2))
    return (img * snr + rng.normal(0, 0.3, shape)).astype(np.float32)


def write_item(
    folder: Path, seed: int = 0, n: int = 6, shape=SHAPE, voxel_nm=VOXEL_NM, labels: bool = True
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    table = toy_table(seed, n, shape, voxel_nm)
    write_volume(folder / "tomogram.mrc", toy_tomogram(table, shape, voxel_nm, seed), voxel_nm)
    write_table_csv(folder / "vesicles.csv", table)
    if labels:
        write_volume(folder / "vesicle_labels.mrc", render_labels(table, shape, voxel_nm), voxel_nm)
    return folder


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory) -> Path:
    """A data folder in `synapseg simulate`'s layout with three annotated tomograms."""
    root = tmp_path_factory.mktemp("toy_data")
    for k in range(3):
        write_item(root / f"sim_{k:03d}", seed=k)
    return root


def table_as_pseudo_labels(tomogram, folder, model, config, device="cpu"):
    """Stand-in for ``synapseg.train.adapt.label_tomogram`` (no pipeline run): the toy
    tomogram's own table as the pseudo-labels, every voxel counted."""
    from synapseg.io.tables import read_table_csv
    from synapseg.io.volume import read_volume

    folder.mkdir(parents=True, exist_ok=True)
    table = tomogram.parent / "vesicles.csv"
    vol = read_volume(tomogram)
    write_volume(folder / "mask.mrc", np.ones(vol.shape, np.uint8), vol.voxel_size_nm)
    return {"tomogram": str(tomogram), "annotation": str(table), "mask": str(folder / "mask.mrc"),
            "inverted": False, "positive": len(read_table_csv(table)), "uncertain": 0,
            "negative_candidates": 0}  # fmt: skip
