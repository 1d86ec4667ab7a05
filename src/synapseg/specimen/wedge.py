"""The missing wedge (tilt axis, tilt range, single or dual axis) measured from the tomogram.

A single-axis tilt series about y over ±α records the Fourier components whose angle
``φ_y = atan(|k_z| / |k_x|)`` is at most α (independent of ``k_y``); beyond it, the power
of the reconstruction falls to the noise floor. About x, ``k_x`` and ``k_y`` swap. A
dual-axis series records what either of its two series records: only the pyramid
``min(φ_x, φ_y) > α`` is missing.

:func:`estimate_wedge`

1. averages the 3-D power spectra of a few Hann-windowed sub-blocks (at most ``n_blocks``
   blocks of ``block_size_px``³, z-centred, away from the z faces; memory bounded by the
   block size, so memmaps and zarr arrays are read block by block);
2. keeps the mid-frequency band and divides every radial shell by the median power of its
   components near the x-y plane (recorded by any tilt series), which removes everything
   ring-shaped: CTF zeros, the radial filter, the envelope;
3. scores three hypotheses (single axis y, single axis x, dual axis) by how well a two-level
   step in the log power, at the best angle, explains the log power (Otsu's between-class
   variance over total variance, in [0, 1]): the best one gives the axis, and its score is
   ``quality``;
4. refines the edge angle as the half-power point of the median angular profile (the step
   in log power is biased towards the empty side by the window's blur; the linear
   half-power point is not).

:func:`resolve_wedge` combines the estimate with what the user gave and falls back to ±60°
about y when the estimate is unreliable.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from synapseg.core.units import voxel_size_zyx

log = logging.getLogger(__name__)

DEFAULT_TILT_RANGE_DEG = 60.0
DEFAULT_TILT_AXIS = "y"
MIN_QUALITY = 0.6  # clean wedges score 0.72-0.93 on the simulator; filled ones 0.45-0.74
SOURCES = ("estimated", "given", "given+estimated", "default")
_HYPOTHESES = ("y", "x", "dual")


@dataclass(frozen=True)
class WedgeEstimate:
    """Missing-wedge geometry of a tomogram.

    Attributes
    ----------
    tilt_axis
        ``"y"`` or ``"x"``: the axis of the (first) tilt series in the (z, y, x) array.
    tilt_range_deg
        Half tilt range α (60 for ±60°).
    dual_axis
        True for a dual-axis tomogram (two series of the same range about y and about x).
    quality
        Fraction of the mid-band log power explained by the wedge model (0..1; ≥ 0.7 is
        a clear wedge, < 0.6 is not trusted by :func:`resolve_wedge`, < 0.3 no wedge
        found); NaN when nothing was estimated.
    source
        ``"estimated"``, ``"given"`` (both range and axis from the user),
        ``"given+estimated"`` (one given, the other estimated) or ``"default"`` (estimate
        unreliable: ±60° about y assumed).
    """

    tilt_axis: str = DEFAULT_TILT_AXIS
    tilt_range_deg: float = DEFAULT_TILT_RANGE_DEG
    dual_axis: bool = False
    quality: float = float("nan")
    source: str = "default"

    def __post_init__(self) -> None:
        if self.tilt_axis not in ("y", "x"):
            raise ValueError(f"tilt_axis must be 'y' or 'x', not {self.tilt_axis!r}")
        if not 0 < self.tilt_range_deg <= 90:
            raise ValueError(f"tilt_range_deg must be in (0, 90], not {self.tilt_range_deg}")
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, not {self.source!r}")

    @property
    def wedge_axis(self) -> str:
        """The ``tilt_axis`` argument of :func:`synapseg.post.profiles.wedge_weights`:
        ``"dual"`` for a dual-axis tomogram, else ``tilt_axis``."""
        return "dual" if self.dual_axis else self.tilt_axis

    def to_json(self) -> dict[str, Any]:
        """Plain dict for reports (quality rounded, NaN as None)."""
        out = asdict(self)
        out["tilt_range_deg"] = round(float(self.tilt_range_deg), 1)
        out["quality"] = None if math.isnan(self.quality) else round(float(self.quality), 3)
        return out


def _block_starts(n: int, b: int, count: int) -> np.ndarray:
    if count <= 1 or n <= b:
        return np.array([(n - b) // 2])
    return np.unique(np.linspace(0, n - b, count).round().astype(int))


def block_power_spectrum(
    volume: Any,
    block_size_px: int = 64,
    n_blocks: int = 8,
    z_range_px: tuple[int, int] | None = None,
) -> np.ndarray:
    """Mean 3-D power spectrum (unshifted, float64) of Hann-windowed sub-blocks.

    Blocks have edge ``min(block_size_px, n)`` per axis; in z they are centred on the
    specimen (``z_range_px`` = [first, end) sections holding it, e.g. the specimen mask's
    ``specimen_z_range_px``; default the whole volume): one slab, or two adjacent ones when
    the specimen is at least three blocks thick. y and x are spread on a grid of at most
    ``n_blocks`` blocks. Only one block is in memory at a time.
    """
    shape = tuple(int(s) for s in volume.shape)
    if len(shape) != 3:
        raise ValueError(f"need a 3-D volume, got shape {shape}")
    bz, by, bx = (min(int(block_size_px), s) for s in shape)
    nz, ny, nx = shape
    z_lo, z_hi = (0, nz) if z_range_px is None else (int(v) for v in z_range_px)
    z_lo = min(max(z_lo, 0), nz - 1)
    z_hi = max(min(z_hi, nz), z_lo + 1)
    mid = (z_lo + z_hi) // 2
    starts = [mid - bz // 2] if z_hi - z_lo < 3 * bz else [mid - bz, mid]
    zs = sorted({min(max(z, 0), nz - bz) for z in starts})
    per_axis = max(1, int(round(math.sqrt(max(1, n_blocks // len(zs))))))
    ys = _block_starts(ny, by, min(per_axis, max(1, ny // by + 1)))
    xs = _block_starts(nx, bx, min(per_axis, max(1, nx // bx + 1)))
    win = (
        np.hanning(bz + 2)[1:-1, None, None]
        * np.hanning(by + 2)[None, 1:-1, None]
        * np.hanning(bx + 2)[None, None, 1:-1]
    )
    power = np.zeros((bz, by, bx))
    n = 0
    for z0 in zs:
        for y0 in ys:
            for x0 in xs:
                blk = np.asarray(volume[z0 : z0 + bz, y0 : y0 + by, x0 : x0 + bx], dtype=np.float64)
                blk = np.nan_to_num(blk - np.nanmean(blk))
                power += np.abs(np.fft.fftn(blk * win)) ** 2
                n += 1
    return power / n


def _otsu_step(angle: np.ndarray, value: np.ndarray, lo: float, hi: float) -> tuple[float, float]:
    """Best two-level split of ``value`` sorted by ``angle`` with the high level below the cut.

    Returns (cut angle, between-class variance / total variance).
    """
    order = np.argsort(angle, kind="stable")
    a, v = angle[order], value[order]
    n = len(v)
    total = v.var()
    if n < 10 or not total > 0:
        return float("nan"), 0.0
    c1 = np.cumsum(v)[:-1]
    i = np.arange(1, n)
    m_lo = c1 / i
    m_hi = (c1[-1] + v[-1] - c1) / (n - i)
    between = i * (n - i) / n**2 * (m_lo - m_hi) ** 2
    ok = (a[:-1] >= lo) & (a[:-1] <= hi) & (m_lo > m_hi) & (a[1:] > a[:-1])
    if not ok.any():
        return float("nan"), 0.0
    between = np.where(ok, between, -1.0)
    j = int(np.argmax(between))
    return float(0.5 * (a[j] + a[j + 1])), float(between[j] / total)


def _half_power_edge(angle: np.ndarray, power: np.ndarray, coarse_deg: float) -> float:
    """Angle where the median angular profile falls to half of its plateau (linear power)."""
    edges = np.arange(0.0, 91.0, 1.0)
    idx = np.clip(np.digitize(angle, edges) - 1, 0, len(edges) - 2)
    centers = edges[:-1] + 0.5
    prof = np.full(len(centers), np.nan)
    for i in np.unique(idx):
        prof[i] = np.median(power[idx == i])
    # the Otsu cut of the log power lies a few degrees beyond the edge: the plateau and the
    # search start well before it
    plateau_sel = (centers >= max(5.0, coarse_deg - 30.0)) & (centers <= coarse_deg - 12.0)
    plateau_sel &= np.isfinite(prof)
    if not plateau_sel.any():
        return coarse_deg
    half = 0.5 * float(np.median(prof[plateau_sel]))
    start = int(np.searchsorted(centers, coarse_deg - 15.0))
    last_above = None
    for i in range(start, len(centers)):
        if not np.isfinite(prof[i]):
            continue
        if prof[i] < half:
            if last_above is None:
                return coarse_deg
            j = last_above
            frac = (prof[j] - half) / max(prof[j] - prof[i], 1e-30)
            return float(centers[j] + frac * (centers[i] - centers[j]))
        last_above = i
    return coarse_deg


def estimate_wedge(
    volume: Any,
    voxel_size_nm: float | tuple[float, float, float] = 1.0,
    *,
    block_size_px: int = 64,
    n_blocks: int = 8,
    band_cycles_per_px: tuple[float, float] = (0.1, 0.33),
    z_range_px: tuple[int, int] | None = None,
) -> WedgeEstimate:
    """Estimate the missing wedge of a tomogram from its own amplitude spectrum.

    Parameters
    ----------
    volume
        (z, y, x) tomogram: ndarray, memmap or any sliceable array (read block-wise).
    voxel_size_nm
        Voxel size (scalar or zyx); angles are measured in physical frequency space.
    block_size_px
        Edge of the sub-blocks whose power spectra are averaged (64-96 is plenty).
    n_blocks
        Most sub-blocks to average.
    band_cycles_per_px
        Radial band used, in cycles per voxel of the finest axis (mid frequencies: above the
        large-scale structure, below the reconstruction's radial cut-off).
    z_range_px
        Sections [first, end) that hold the specimen (vacuum/ice slabs excluded); the
        blocks are centred on them. ``None``: the whole volume.

    Returns
    -------
    WedgeEstimate
        ``source="estimated"``; ``quality`` says how clear the wedge is (see
        :class:`WedgeEstimate`).
    """
    vs = voxel_size_zyx(voxel_size_nm)
    power = block_power_spectrum(volume, block_size_px, n_blocks, z_range_px)
    freqs = [np.fft.fftfreq(n, d=v / vs.min()) for n, v in zip(power.shape, vs)]
    kz, ky, kx = np.meshgrid(*freqs, indexing="ij", sparse=True)
    k = np.sqrt(kz**2 + ky**2 + kx**2)
    lo, hi = band_cycles_per_px
    sel = (k >= lo) & (k <= hi)
    kz, ky, kx = (np.broadcast_to(a, power.shape)[sel] for a in (kz, ky, kx))
    k, p = k[sel], power[sel]
    if len(p) < 100:
        raise ValueError(f"volume {tuple(volume.shape)} is too small to estimate the wedge")
    logp = np.log(p + 1e-12 * p.max() + 1e-300)
    # divide every radial shell by its power near the x-y plane (recorded by any tilt series)
    n_shells = 12
    shell = np.clip(((k - lo) / (hi - lo) * n_shells).astype(int), 0, n_shells - 1)
    near_xy = np.abs(kz) <= np.sin(np.radians(15.0)) * k
    for s in range(n_shells):
        in_shell = shell == s
        ref = in_shell & near_xy
        logp[in_shell] -= np.median(logp[ref] if ref.any() else logp[in_shell])
    phi_y = np.degrees(np.arctan2(np.abs(kz), np.abs(kx)))
    phi_x = np.degrees(np.arctan2(np.abs(kz), np.abs(ky)))
    angles = {"y": phi_y, "x": phi_x, "dual": np.minimum(phi_x, phi_y)}
    scores = {h: _otsu_step(angles[h], logp, 15.0, 89.0) for h in _HYPOTHESES}
    best = max(_HYPOTHESES, key=lambda h: scores[h][1])
    coarse, quality = scores[best]
    if not np.isfinite(coarse):
        return WedgeEstimate(quality=0.0, source="estimated")
    edge = _half_power_edge(angles[best], np.exp(logp), coarse)
    tilt_range = float(np.clip(edge, 1.0, 90.0))
    if best == "dual":  # which series is first is not measurable: report y
        axis = "y"
    else:
        axis = best
    log.debug("wedge scores %s -> %s ±%.1f°", scores, best, tilt_range)
    return WedgeEstimate(
        tilt_axis=axis,
        tilt_range_deg=tilt_range,
        dual_axis=best == "dual",
        quality=quality,
        source="estimated",
    )


def resolve_wedge(
    volume: Any,
    voxel_size_nm: float | tuple[float, float, float] = 1.0,
    tilt_range_deg: float | None = None,
    tilt_axis: str | None = None,
    min_quality: float = MIN_QUALITY,
    z_range_px: tuple[int, int] | None = None,
) -> tuple[WedgeEstimate, str | None]:
    """The wedge to use: what the user gave, completed by the estimate, or the default.

    Parameters
    ----------
    volume, voxel_size_nm
        The tomogram (see :func:`estimate_wedge`); not read when both values are given.
    tilt_range_deg, tilt_axis
        User overrides (``None`` = estimate). ``tilt_axis`` is ``"y"``, ``"x"`` or
        ``"dual"`` (a dual-axis series, the first one about y).
    min_quality
        Estimates below this quality are not trusted: ±60° about y is used instead.
    z_range_px
        Sections holding the specimen (see :func:`estimate_wedge`).

    Returns
    -------
    (WedgeEstimate, note)
        ``note`` is a sentence for the log and the report when the default replaced an
        unreliable estimate, else ``None``.
    """
    if tilt_axis is not None and tilt_axis not in ("y", "x", "dual"):
        raise ValueError(f"tilt_axis must be 'y', 'x' or 'dual', not {tilt_axis!r}")
    given_axis = None if tilt_axis is None else ("y" if tilt_axis == "dual" else tilt_axis)
    given_dual = None if tilt_axis is None else tilt_axis == "dual"
    if tilt_range_deg is not None and tilt_axis is not None:
        return WedgeEstimate(
            given_axis, float(tilt_range_deg), bool(given_dual), source="given"
        ), None
    est = estimate_wedge(volume, voxel_size_nm, z_range_px=z_range_px)
    note = None
    if not est.quality >= min_quality:
        note = (
            f"missing-wedge estimate unreliable (quality {est.quality:.2f} < {min_quality}); "
            f"assuming ±{DEFAULT_TILT_RANGE_DEG:g}° about {DEFAULT_TILT_AXIS}: "
            "pass --tilt-range/--tilt-axis if that is wrong"
        )
        est = WedgeEstimate(quality=est.quality, source="default")
    if tilt_range_deg is None and tilt_axis is None:
        return est, note
    return (
        WedgeEstimate(
            tilt_axis=given_axis if given_axis is not None else est.tilt_axis,
            tilt_range_deg=float(
                tilt_range_deg if tilt_range_deg is not None else est.tilt_range_deg
            ),
            dual_axis=given_dual if given_dual is not None else est.dual_axis,
            quality=est.quality,
            source="given+estimated" if est.source == "estimated" else "given",
        ),
        note,
    )
