import numpy as np
import pytest

from synapseg.simulate.imaging import (
    acquisition_order,
    ctf,
    electron_wavelength_nm,
    exposure_filter,
)


def test_wavelength_at_300kv():
    assert electron_wavelength_nm(300) == pytest.approx(0.001969, rel=1e-3)


def test_ctf_is_amplitude_contrast_at_zero_and_dark():
    assert ctf(np.array(0.0), 4.0, amplitude_contrast=0.07) == pytest.approx(-0.07)
    # first zero of sin(chi) for 4 µm underfocus ≈ 1 / sqrt(lambda * df)
    k = np.linspace(0.01, 0.3, 300)
    c = ctf(k, 4.0)
    assert np.all(c[k < 0.2] < 0)


@pytest.mark.parametrize("scheme", ["dose_symmetric", "bidirectional", "continuous"])
def test_acquisition_order_visits_each_tilt_once(scheme):
    angles = np.arange(-60, 61, 3.0)
    order = acquisition_order(angles, scheme)
    assert sorted(order.tolist()) == list(range(len(angles)))


def test_dose_symmetric_starts_at_zero_and_alternates_in_pairs():
    angles = np.arange(-6, 7, 2.0)
    seq = angles[acquisition_order(angles, "dose_symmetric")].tolist()
    assert seq == [0, 2, 4, -2, -4, 6, -6]
    bidir = angles[acquisition_order(angles, "bidirectional")].tolist()
    assert bidir == [0, 2, 4, 6, -2, -4, -6]


def test_exposure_filter_damps_high_frequencies_more():
    k = np.array([0.02, 0.1, 0.3])
    f = exposure_filter(k, 60.0)
    assert np.all(np.diff(f) < 0) and f[0] > 0.9
    assert np.all(exposure_filter(k, 0.0) == 1)
