"""Missing-wedge estimation from the tomogram's spectrum (synapseg.specimen.wedge)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from synapseg.post.profiles import wedge_weights
from synapseg.simulate import SimulationParams, simulate_tomogram
from synapseg.specimen.wedge import (
    MIN_QUALITY,
    WedgeEstimate,
    block_power_spectrum,
    estimate_wedge,
    resolve_wedge,
)


def wedge_noise(
    shape: tuple[int, int, int],
    tilt_range_deg: float | None,
    axis: str = "y",
    seed: int = 0,
    ring: bool = False,
    floor: float = 1e-3,
) -> np.ndarray:
    """White noise with the missing wedge (``axis`` y, x or dual) attenuated to ``floor`` (in
    amplitude) in its spectrum.

    ``ring=True`` also multiplies the spectrum by a CTF-like ring pattern with zeros and a
    steep radial ramp, which the estimator must divide out.
    """
    rng = np.random.default_rng(seed)
    spec = np.fft.fftn(rng.normal(size=shape))
    kz, ky, kx = np.meshgrid(*[np.fft.fftfreq(n) for n in shape], indexing="ij")
    if tilt_range_deg is not None:
        phi_y = np.degrees(np.arctan2(np.abs(kz), np.abs(kx)))
        phi_x = np.degrees(np.arctan2(np.abs(kz), np.abs(ky)))
        phi = {"y": phi_y, "x": phi_x, "dual": np.minimum(phi_x, phi_y)}[axis]
        spec[phi > tilt_range_deg] *= floor
    if ring:
        k = np.sqrt(kz**2 + ky**2 + kx**2)
        spec *= k**3 * (0.01 + np.sin(2 * np.pi * 40 * k**2) ** 2)
    return np.fft.ifftn(spec).real.astype(np.float32)


@pytest.mark.parametrize(
    ("tilt_range", "axis"), [(40.0, "y"), (65.0, "y"), (45.0, "x"), (58.0, "x")]
)
def test_single_axis_wedge_is_found(tilt_range, axis):
    est = estimate_wedge(wedge_noise((48, 96, 96), tilt_range, axis, seed=1))
    assert est.tilt_axis == axis
    assert not est.dual_axis
    assert abs(est.tilt_range_deg - tilt_range) < 3.0
    assert est.quality > MIN_QUALITY
    assert est.source == "estimated"


def test_dual_axis_pyramid_is_found():
    est = estimate_wedge(wedge_noise((48, 96, 96), 50.0, "dual", seed=2))
    assert est.dual_axis
    assert est.wedge_axis == "dual"
    assert abs(est.tilt_range_deg - 50.0) < 3.0


def test_ring_shaped_ctf_and_filter_are_divided_out():
    """A shallow wedge (-20 dB) under a steep ring pattern: without the per-shell
    normalisation the edge moves and the quality drops (measured: 48.5°, 0.59)."""
    plain = estimate_wedge(wedge_noise((48, 96, 96), 50.0, "x", seed=3, floor=0.1))
    ringed = estimate_wedge(wedge_noise((48, 96, 96), 50.0, "x", seed=3, ring=True, floor=0.1))
    assert ringed.tilt_axis == "x"
    assert abs(ringed.tilt_range_deg - plain.tilt_range_deg) < 1.0
    assert ringed.quality > 0.75


def test_no_wedge_has_low_quality_and_falls_back_to_default():
    noise = wedge_noise((48, 96, 96), None, seed=4)
    assert estimate_wedge(noise).quality < 0.3
    est, note = resolve_wedge(noise)
    assert est.source == "default"
    assert (est.tilt_axis, est.tilt_range_deg, est.dual_axis) == ("y", 60.0, False)
    assert note is not None and "unreliable" in note


def test_simulated_tomogram_both_axes():
    """In-distribution: the simulator's own ±45° tilt series about y, and rotated to x."""
    sim = simulate_tomogram(
        SimulationParams(shape=(48, 96, 96), seed=5, tilt_range_deg=45, tilt_step_deg=1.5),
        keep_phantom=False,
    )
    true_range = float(SimulationParams(tilt_range_deg=45, tilt_step_deg=1.5).tilt_angles_deg[-1])
    for axis, vol in (("y", sim.tomogram), ("x", np.swapaxes(sim.tomogram, 1, 2))):
        est = estimate_wedge(vol, 1.68)
        assert est.tilt_axis == axis
        assert not est.dual_axis
        assert abs(est.tilt_range_deg - true_range) < 5.0


class _CountingArray:
    """A sliceable volume that records the largest block read."""

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.shape, self.largest = data, data.shape, 0

    def __getitem__(self, key):
        out = self.data[key]
        self.largest = max(self.largest, out.size)
        return out


def test_spectrum_reads_blocks_not_the_volume():
    vol = _CountingArray(wedge_noise((64, 160, 160), 60.0, seed=6))
    power = block_power_spectrum(vol, block_size_px=32, n_blocks=4)
    assert power.shape == (32, 32, 32)
    assert vol.largest == 32**3
    assert estimate_wedge(vol, block_size_px=48).tilt_axis == "y"


class _Unreadable:
    shape = (48, 96, 96)

    def __getitem__(self, key):
        raise AssertionError("read although both values were given")


def test_resolve_given_values_override_the_estimate():
    est, note = resolve_wedge(_Unreadable(), tilt_range_deg=45.0, tilt_axis="x")
    assert (est.tilt_axis, est.tilt_range_deg, est.source, note) == ("x", 45.0, "given", None)
    assert math.isnan(est.quality)
    vol = wedge_noise((48, 96, 96), 50.0, "x", seed=7)
    est, note = resolve_wedge(vol, tilt_range_deg=62.0)
    assert (est.tilt_axis, est.tilt_range_deg, est.source) == ("x", 62.0, "given+estimated")
    assert est.quality > MIN_QUALITY and note is None
    assert resolve_wedge(vol, tilt_axis="dual")[0].dual_axis


def test_estimate_json_and_validation():
    out = WedgeEstimate("x", 47.04, False, 0.8123, "estimated").to_json()
    assert out == {
        "tilt_axis": "x",
        "tilt_range_deg": 47.0,
        "dual_axis": False,
        "quality": 0.812,
        "source": "estimated",
    }
    assert WedgeEstimate().to_json()["quality"] is None
    with pytest.raises(ValueError):
        WedgeEstimate(tilt_axis="z")
    with pytest.raises(ValueError):
        WedgeEstimate(source="guessed")


def test_dual_axis_wedge_weights_are_the_union_of_both_series():
    n = np.array([[0.5, 0.85, 0.1], [np.sin(np.radians(70)), 0.0, np.cos(np.radians(70))]])
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    w_y, w_x = wedge_weights(n, 50, "y"), wedge_weights(n, 50, "x")
    w_dual = wedge_weights(n, 50, "dual")
    assert w_y[0] < 0.01 < 0.95 < w_x[0]  # missing about y, recorded about x
    assert w_dual[0] > 0.95
    assert w_dual[1] < 0.01  # steep in the x-z plane: lost by both series
    np.testing.assert_allclose(w_dual, np.maximum(w_y, w_x))


# ----------------------------------------------------------------------------- segment


@pytest.fixture(scope="module")
def sim45():
    params = SimulationParams(shape=(48, 96, 96), seed=8, n_vesicles=4, tilt_range_deg=45)
    return simulate_tomogram(params)


@pytest.fixture
def seen_params(sim45, monkeypatch):
    """Segment with the truth map as the network; record the PostParams of the fit."""
    from synapseg import pipeline
    from synapseg.io.volume_writer import open_volume_writer
    from synapseg.post import vesicles

    seen = []

    def stage_predict(volume, options, target, *args, **kwargs):
        with open_volume_writer(
            target, volume.shape, np.uint8, volume.voxel_size_nm, overwrite=True
        ) as out:
            out[:] = np.where(sim45.vesicle_labels > 0, 255, 0).astype(np.uint8)
        return {"seconds": 0.0, "model": {"name": "truth-map", "sha256": "0" * 64}}

    real = vesicles.find_vesicles

    def spy(*args, **kwargs):
        seen.append(kwargs["params"] if "params" in kwargs else args[3])
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "stage_predict", stage_predict)
    monkeypatch.setattr(vesicles, "find_vesicles", spy)
    return seen


def test_segment_records_and_uses_the_estimate_and_tilt_range_overrides(
    sim45, seen_params, tmp_path
):
    import json

    from typer.testing import CliRunner

    from synapseg.cli import app
    from synapseg.io.volume_writer import write_volume

    tomo = write_volume(tmp_path / "syn.mrc", sim45.tomogram, 1.68)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["segment", str(tomo), "-o", str(out), "--formats", "csv"])
    assert result.exit_code == 0, result.output
    acq = json.loads((out / "syn_report.json").read_text())["acquisition"]
    assert acq["source"] == "estimated" and acq["tilt_axis"] == "y" and not acq["dual_axis"]
    assert abs(acq["tilt_range_deg"] - 44.0) < 5.0  # ±45° in 2° steps: last tilt 44°
    assert seen_params[-1].tilt_range_deg == pytest.approx(acq["tilt_range_deg"], abs=0.05)
    assert seen_params[-1].tilt_axis == "y"

    args = ["segment", str(tomo), "-o", str(out), "--formats", "csv", "--from-stage", "vesicles"]
    result = CliRunner().invoke(app, [*args, "--tilt-range", "60", "--tilt-axis", "x"])
    assert result.exit_code == 0, result.output
    acq = json.loads((out / "syn_report.json").read_text())["acquisition"]
    assert (acq["source"], acq["tilt_range_deg"], acq["tilt_axis"]) == ("given", 60.0, "x")
    assert (seen_params[-1].tilt_range_deg, seen_params[-1].tilt_axis) == (60.0, "x")

    result = CliRunner().invoke(app, [*args, "--tilt-axis", "z"])
    assert result.exit_code == 2 and "--tilt-axis" in result.output


def test_info_shows_the_estimate(tmp_path):
    import json

    from typer.testing import CliRunner

    from synapseg.cli import app
    from synapseg.io.volume_writer import write_volume

    path = write_volume(tmp_path / "w.mrc", wedge_noise((48, 96, 96), 48.0, "x", seed=9), 1.5)
    result = CliRunner().invoke(app, ["info", str(path), "--json"])
    assert result.exit_code == 0, result.output
    wedge = json.loads(result.stdout)["missing_wedge"]
    assert wedge["tilt_axis"] == "x" and wedge["reliable"] and wedge["source"] == "estimated"
    assert abs(wedge["tilt_range_deg"] - 48.0) < 3.0
    table = CliRunner().invoke(app, ["info", str(path)])
    assert "missing wedge" in table.stdout and "tilt axis x" in table.stdout


def test_segment_falls_back_to_60_about_y_and_says_so(caplog):
    from synapseg.io.volume import Volume
    from synapseg.pipeline import SegmentOptions, resolve_acquisition

    volume = Volume(wedge_noise((48, 96, 96), None, seed=10), (1.5, 1.5, 1.5))
    with caplog.at_level("WARNING", logger="synapseg"):
        wedge, entry = resolve_acquisition(volume, SegmentOptions())
    assert (wedge.tilt_range_deg, wedge.wedge_axis, entry["source"]) == (60.0, "y", "default")
    assert "unreliable" in entry["note"] and "unreliable" in caplog.text
    wedge, entry = resolve_acquisition(volume, SegmentOptions(tilt_range_deg=50.0))
    assert (wedge.tilt_range_deg, entry["source"]) == (50.0, "given")


def test_blocks_are_centred_on_the_specimen_slab():
    """A thick volume whose specimen (a wedge-filtered slab) lies off-centre in z, with
    isotropic noise (no wedge) elsewhere: centring the blocks on the slab finds the wedge."""
    vol = np.random.default_rng(11).normal(size=(160, 96, 96)).astype(np.float32)
    slab = wedge_noise((64, 96, 96), 45.0, "y", seed=11)
    vol[:64] = slab / slab.std()
    assert estimate_wedge(vol).quality < MIN_QUALITY  # the middle of the volume: no wedge there
    est = estimate_wedge(vol, z_range_px=(0, 64))
    assert est.quality > MIN_QUALITY and est.tilt_axis == "y" and abs(est.tilt_range_deg - 45) < 3
    # segment passes the specimen mask's z-range
    from types import SimpleNamespace

    from synapseg.io.volume import Volume
    from synapseg.pipeline import SegmentOptions, resolve_acquisition

    specimen = SimpleNamespace(facts={"specimen_z_range_px": [0, 64]})
    wedge, entry = resolve_acquisition(Volume(vol, (1.0,) * 3), SegmentOptions(), specimen)
    assert entry["source"] == "estimated" and abs(wedge.tilt_range_deg - 45) < 3
