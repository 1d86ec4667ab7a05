import json

from typer.testing import CliRunner

from synapseg.cli import app

runner = CliRunner()
ARGS = ["--shape", "24", "48", "48", "--voxel-size", "1.68", "--seed", "4"]


def test_simulate_writes_one_folder_per_tomogram(tmp_path):
    result = runner.invoke(app, ["simulate", str(tmp_path), *ARGS, "--n-tomograms", "2"])
    assert result.exit_code == 0, result.output
    seeds = [
        json.loads((tmp_path / f"sim_{i:03d}" / "params.json").read_text())["seed"] for i in (0, 1)
    ]
    assert seeds == [4, 5]
    assert (tmp_path / "sim_001" / "tomogram.mrc").is_file()
    again = runner.invoke(app, ["simulate", str(tmp_path), *ARGS])
    assert again.exit_code == 2 and "exists" in again.output
    forced = runner.invoke(app, ["simulate", str(tmp_path), *ARGS, "--overwrite", "--snr", "0"])
    assert forced.exit_code == 0, forced.output
    assert json.loads((tmp_path / "sim_000" / "params.json").read_text())["snr"] is None


def test_simulate_random_and_bad_options(tmp_path):
    result = runner.invoke(app, ["simulate", str(tmp_path / "r"), *ARGS, "--random"])
    assert result.exit_code == 0, result.output
    params = json.loads((tmp_path / "r" / "sim_000" / "params.json").read_text())
    assert params["shape"] == [24, 48, 48]
    bad = runner.invoke(app, ["simulate", str(tmp_path / "b"), *ARGS, "--tilt-range", "95"])
    assert bad.exit_code == 2 and "tilt-range" in bad.output
    assert not (tmp_path / "b" / "sim_000").exists()


def test_simulate_world_options(tmp_path):
    world = ["--n-vesicles", "0", "--lamella-thickness", "30", "--lamella-tilt", "5", "--gold",
             "2", "--microtubules", "1", "--ribosomes", "20000", "--denoise-sigma", "1.5",
             "--dual-axis", "--membrane-thickness", "6.5", "--defocus-gradient",
             "--wedge-fill", "--er-tubules", "1", "--coated-vesicles", "1",
             "--mvb-fraction", "0.5", "--ice", "1", "--microtubule-tilt", "30", "60"]  # fmt: skip
    result = runner.invoke(app, ["simulate", str(tmp_path), *ARGS, *world])
    assert result.exit_code == 0, result.output
    params = json.loads((tmp_path / "sim_000" / "params.json").read_text())
    assert params["n_vesicles"] == 0 and params["lamella_thickness_nm"] == 30.0
    assert params["lamella_tilt_deg"] == 5.0 and params["n_gold"] == 2
    assert params["n_microtubules"] == 1 and params["ribosome_density_per_um3"] == 20000.0
    assert params["denoise_sigma_nm"] == 1.5 and params["dual_axis"] is True
    assert params["membrane_thickness_nm"] == 6.5 and params["defocus_gradient"] is True
    assert params["wedge_fill"] is True and params["n_er_tubules"] == 1
    assert params["n_coated_vesicles"] == 1 and params["mvb_fraction"] == 0.5
    assert params["n_ice_blobs"] == 1 and params["microtubule_tilt_deg"] == [30.0, 60.0]
    info = json.loads((tmp_path / "sim_000" / "info.json").read_text())
    assert len(info["gold_beads_px"]) == 2 and set(info["imaging"]) == {"axis_y", "axis_x"}
    bad = runner.invoke(app, ["simulate", str(tmp_path / "b"), *ARGS, "--lamella-tilt", "80"])
    assert bad.exit_code == 2 and "lamella" in bad.output
    steep = ["--microtubule-tilt", "60", "30"]
    bad = runner.invoke(app, ["simulate", str(tmp_path / "c"), *ARGS, *steep])
    assert bad.exit_code == 2 and "microtubule" in bad.output


def test_simulate_filament_model(tmp_path):
    import pandas as pd

    for model in ("published", "none"):
        out = tmp_path / model
        result = runner.invoke(app, ["simulate", str(out), *ARGS, "--filament-model", model])
        assert result.exit_code == 0, result.output
        params = json.loads((out / "sim_000" / "params.json").read_text())
        assert params["filament_model"] == model
    kinds = set(pd.read_csv(tmp_path / "none" / "sim_000" / "filaments.csv")["kind"])
    assert not kinds & {"connector", "tether"}
    bad = runner.invoke(app, ["simulate", str(tmp_path / "b"), *ARGS, "--filament-model", "x"])
    assert bad.exit_code == 2 and "filament" in bad.output
    assert not (tmp_path / "b" / "sim_000").exists()


def test_simulate_filament_amplitude_scale(tmp_path):
    import mrcfile

    ok = ["--filament-model", "published", "--snr", "0", "--no-distractors"]
    for scale in ("1", "2"):
        result = runner.invoke(
            app,
            ["simulate", str(tmp_path / scale), *ARGS, *ok, "--filament-amplitude-scale", scale],
        )
        assert result.exit_code == 0, result.output
        params = json.loads((tmp_path / scale / "sim_000" / "params.json").read_text())
        assert params["filament_amplitude_scale"] == float(scale)
    with mrcfile.open(tmp_path / "1" / "sim_000" / "tomogram.mrc") as a:
        with mrcfile.open(tmp_path / "2" / "sim_000" / "tomogram.mrc") as b:
            assert (a.data != b.data).any()  # denser filaments change the tomogram
    bad = runner.invoke(
        app, ["simulate", str(tmp_path / "b"), *ARGS, "--filament-amplitude-scale", "0"]
    )
    assert bad.exit_code == 2 and "--filament-amplitude-scale" in bad.output
    assert not (tmp_path / "b" / "sim_000").exists()
