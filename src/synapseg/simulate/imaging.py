"""The microscope: tilt scheme, CTF, radiation damage, dose-limited noise, alignment errors.

Weak-phase image formation per tilt: the projected density is multiplied in Fourier space
by the CTF ``-(√(1-A²)·sin χ + A·cos χ)`` with ``χ = π λ Δf k² − π/2 Cs λ³ k⁴``
(underfocus Δf > 0, so dense matter is dark), by the exposure filter of Grant & Grigorieff
(2015) for the dose accumulated before that tilt, and shifted by the alignment error.
Shot noise is Gaussian (the Poisson limit at tens of electrons per pixel) with a variance
that rises at high tilt as fewer electrons cross the longer path (inelastic mean free path
≈ 350 nm at 300 kV).

The noise level is a property of the specimen: ``snr`` is the ratio of the variance of the
imaged specimen to the noise variance, over all tilts. Without a lamella the specimen fills
the volume and its images are the recorded ones. With a lamella, the caller passes the
projections of the same specimen without its vacuum (``reference``): the vacuum's projection
(a large step wherever a tilted ray leaves the slab through the volume's sides) would
otherwise raise the noise 3-4x inside the specimen.
"""

from __future__ import annotations

import math

import numpy as np

from synapseg.simulate.params import SimulationParams

Array = np.ndarray
INELASTIC_MFP_NM = 350.0
PAD_PX = 16


def electron_wavelength_nm(voltage_kv: float) -> float:
    """Relativistic electron wavelength (nm) at an acceleration voltage in kV."""
    v = voltage_kv * 1e3
    return 1.22643 / math.sqrt(v * (1 + 0.978466e-6 * v))


def acquisition_order(angles_deg: Array, scheme: str) -> Array:
    """Indices into ``angles_deg`` in the order the tilts were recorded.

    ``dose_symmetric`` (Hagen et al. 2017): 0°, then groups of two on alternating sides;
    ``bidirectional``: 0° to +max, then -step to -max; ``continuous``: -max to +max.
    """
    angles = np.asarray(angles_deg, float)
    zero = int(np.argmin(np.abs(angles)))
    pos = [i for i in np.argsort(angles) if angles[i] > angles[zero]]
    neg = [i for i in np.argsort(-angles) if angles[i] < angles[zero]]
    if scheme == "continuous":
        return np.argsort(angles)
    if scheme == "bidirectional":
        return np.array([zero, *pos, *neg])
    order = [zero]
    sides = [pos, neg]
    side = 0
    while pos or neg:
        for _ in range(2):
            if sides[side]:
                order.append(sides[side].pop(0))
        side = 1 - side
    return np.array(order)


def ctf(
    k_nm: Array,
    defocus_um: float,
    voltage_kv: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.07,
) -> Array:
    """Contrast transfer function at spatial frequencies ``k_nm`` (1/nm), negative near 0."""
    lam = electron_wavelength_nm(voltage_kv)
    df = defocus_um * 1e3
    cs = cs_mm * 1e6
    k2 = np.asarray(k_nm) ** 2
    chi = np.pi * lam * df * k2 - 0.5 * np.pi * cs * lam**3 * k2**2
    a = amplitude_contrast
    return -(math.sqrt(1 - a * a) * np.sin(chi) + a * np.cos(chi))


def exposure_filter(k_nm: Array, dose_e_per_A2: float) -> Array:
    """Amplitude attenuation after ``dose`` e/Å² (Grant & Grigorieff 2015)."""
    k_a = np.maximum(np.asarray(k_nm) / 10.0, 1e-6)  # 1/Å
    n_crit = 0.245 * k_a ** (-1.665) + 2.81
    return np.exp(-dose_e_per_A2 / (2 * n_crit))


def defocus_gradient_image(
    spectrum: Array,
    filt: Array,
    k: Array,
    defocus_um: float,
    angle_deg: float,
    params: SimulationParams,
) -> Array:
    """One tilted image whose defocus changes across it (perpendicular to the tilt axis).

    At tilt θ a point at distance u (nm) from the tilt axis sits u·tan θ higher or lower,
    so its defocus is ``defocus_um + u·tan θ / 1000``. The image is computed at a few
    defocus nodes (≤ 50 nm apart, at most 9) spanning the image width, and each column
    is linearly interpolated between the two nodes around its own defocus.
    """
    ny, nu = spectrum.shape[0], (spectrum.shape[1] - 1) * 2
    vs = params.voxel_size_nm
    offset_um = (np.arange(nu) - (nu - 1) / 2) * vs * math.tan(math.radians(angle_deg)) / 1e3
    half = float(np.abs(offset_um).max())

    def image(d: float) -> Array:
        c = ctf(k, d, params.voltage_kv, params.cs_mm, params.amplitude_contrast)
        return np.fft.irfft2(spectrum * c * filt, s=(ny, nu)).astype(np.float32)

    if half < 1e-4:
        return image(defocus_um)
    n = int(np.clip(math.ceil(2 * half / 0.05) + 1, 2, 9))
    nodes = defocus_um + np.linspace(-half, half, n)
    stack = np.stack([image(d) for d in nodes])
    pos = (offset_um + half) / (2 * half) * (n - 1)
    j0 = np.clip(np.floor(pos).astype(int), 0, n - 2)
    w = (pos - j0).astype(np.float32)
    cols = np.arange(nu)
    return (1 - w) * stack[j0, :, cols].T + w * stack[j0 + 1, :, cols].T


def _freq_grid(ny: int, nu: int, pixel_nm: float) -> tuple[Array, Array]:
    ky = np.fft.fftfreq(ny)[:, None] / pixel_nm
    ku = np.fft.rfftfreq(nu)[None, :] / pixel_nm
    return ky, ku


def image_tilt_series(
    projections: Array,
    angles_deg: Array,
    params: SimulationParams,
    rng: np.random.Generator,
    thickness_nm: float,
    reference: Array | None = None,
) -> tuple[Array, dict]:
    """Turn ideal projections (n_tilts, y, u) of density into a recorded, noisy tilt series.

    Parameters
    ----------
    projections
        Line integrals of the density, (n_tilts, y, u).
    angles_deg
        Nominal tilt angles.
    params
        Imaging settings (``snr``, CTF, dose, ...).
    rng
        Random stream for defocus jitter, alignment shifts and noise.
    thickness_nm
        Thickness of matter crossed at 0° (sets the rise of the noise at high tilt).
    reference
        Projections (same shape) whose imaged signal std sets the noise level instead of
        the recorded images' own; used for lamellae (the specimen without its vacuum).
        It is imaged at each tilt's mean defocus (also with ``defocus_gradient``).
        None (default): the recorded images, bit-identical to before this option existed.

    Returns
    -------
    images, info
        The images (dense matter dark; CTF phase-flipped if ``params.phase_flip``) and a
        dict of the per-tilt imaging facts (order, dose, defocus, shifts, noise σ).
    """
    nt, ny, nu = projections.shape
    vs = params.voxel_size_nm
    order = acquisition_order(angles_deg, params.tilt_scheme)
    dose_per_tilt = params.dose_e_per_A2 / nt
    prior = np.empty(nt)
    prior[order] = np.arange(nt) * dose_per_tilt + dose_per_tilt / 2
    defocus = params.defocus_um + rng.normal(0, params.defocus_jitter_um, nt)
    shifts = (
        rng.normal(0, params.jitter_shift_px, (nt, 2))
        if params.jitter_shift_px
        else np.zeros((nt, 2))
    )
    p = min(PAD_PX, ny // 4, nu // 4)
    padded = np.pad(projections, ((0, 0), (p, p), (p, p)), mode="reflect")
    pny, pnu = padded.shape[1:]
    ky, ku = _freq_grid(pny, pnu, vs)
    k = np.sqrt(ky**2 + ku**2)
    spec = np.fft.rfft2(padded, axes=(1, 2))
    raw = spec.copy() if params.defocus_gradient else None
    envelope = np.exp(-params.bfactor_A2 * (k / 10.0) ** 2 / 4)
    ctfs = []
    ref_moments = np.zeros(3)  # n, sum, sum of squares of the imaged reference
    for i in range(nt):
        c = ctf(k, defocus[i], params.voltage_kv, params.cs_mm, params.amplitude_contrast)
        ctfs.append(np.sign(c).astype(np.float32))
        phase = np.exp(-2j * np.pi * (ky * vs * shifts[i, 0] + ku * vs * shifts[i, 1]))
        transfer = c * exposure_filter(k, prior[i]) * envelope * phase
        spec[i] *= transfer
        if reference is not None and params.snr is not None:
            ref = np.pad(reference[i], ((p, p), (p, p)), mode="reflect")
            img = np.fft.irfft2(np.fft.rfft2(ref) * transfer, s=(pny, pnu))[p : p + ny, p : p + nu]
            img = img.astype(np.float64)
            ref_moments += (img.size, img.sum(), np.square(img).sum())
    images = np.fft.irfft2(spec, s=(pny, pnu), axes=(1, 2)).astype(np.float32)
    if raw is not None:
        for i in range(nt):
            filt = exposure_filter(k, prior[i]) * envelope
            filt = filt * np.exp(-2j * np.pi * (ky * vs * shifts[i, 0] + ku * vs * shifts[i, 1]))
            images[i] = defocus_gradient_image(raw[i], filt, k, defocus[i], angles_deg[i], params)
    signal_std = float(images[:, p : p + ny, p : p + nu].std())
    reference_std = None
    if ref_moments[0]:
        n_ref, s1, s2 = ref_moments
        reference_std = math.sqrt(max(s2 / n_ref - (s1 / n_ref) ** 2, 0.0))
    noise_sigma = np.zeros(nt)
    if params.snr is not None:
        level = signal_std if reference_std is None else reference_std
        cosines = np.cos(np.deg2rad(angles_deg))
        relative = np.exp(thickness_nm / INELASTIC_MFP_NM * (1 / cosines - 1))
        relative /= relative.mean()
        noise_sigma = level / math.sqrt(params.snr) * np.sqrt(relative)
        images += (
            rng.standard_normal(images.shape, dtype=np.float32)
            * noise_sigma.astype(np.float32)[:, None, None]
        )
    if params.phase_flip:
        # Flip to -|CTF| so dense matter stays dark, as IMOD's ctfphaseflip does.
        spec = np.fft.rfft2(images, axes=(1, 2))
        spec *= -np.stack(ctfs)
        images = np.fft.irfft2(spec, s=(pny, pnu), axes=(1, 2)).astype(np.float32)
    images = np.ascontiguousarray(images[:, p : p + ny, p : p + nu])
    info = {
        "acquisition_order_deg": [float(angles_deg[i]) for i in order],
        "dose_per_tilt_e_per_A2": dose_per_tilt,
        "defocus_um": defocus.round(4).tolist(),
        "shift_px_yu": shifts.round(4).tolist(),
        "projection_signal_std": signal_std,
        "noise_sigma": noise_sigma.round(6).tolist(),
    }
    if reference_std is not None:
        info["noise_reference_signal_std"] = reference_std
    return images, info
