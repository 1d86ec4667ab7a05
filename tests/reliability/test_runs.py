"""Runs and batches (issue 13): no stale result, no lost work, no traceback for bad options.

Each test here failed before its fix: a replaced input reused old results, a full disk died
by SIGBUS, a stale ``*.tmp`` crashed the rerun, a batch stopped at the first bad file, bad
option values gave tracebacks after ``predict`` had written files, Ctrl-C said nothing.
The network stage is replaced by a probability map computed from each input's ground truth,
so that these tests check the runner; the last test kills real ``synapseg segment``
subprocesses (benchmarks/fault_injection.py).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from typer.testing import CliRunner

from synapseg import pipeline
from synapseg.cli import app
from synapseg.io.tables import read_table_csv
from synapseg.io.volume_writer import open_volume_writer, write_volume
from synapseg.simulate import SimulationParams, simulate_tomogram

SHAPE = (32, 96, 96)


@pytest.fixture(scope="module")
def sims():
    """Two different small tomograms (seeds 5 and 6) with their ground truth."""
    return [
        simulate_tomogram(SimulationParams(shape=SHAPE, voxel_size_nm=1.68, seed=s, n_vesicles=6))
        for s in (5, 6)
    ]


@pytest.fixture
def tomo(sims, tmp_path) -> Path:
    return write_volume(tmp_path / "in" / "syn.mrc", sims[0].tomogram, 1.68)


@pytest.fixture
def fake_network(sims, monkeypatch):
    """The network stage, replaced by the blurred truth of whichever simulation is read."""
    calls: list[str] = []

    def stage_predict(volume, options, target, specimen=None):
        calls.append(str(volume.path))
        data = np.asarray(volume.data)
        prob = np.zeros(volume.shape, np.float32)
        for sim in sims:
            if sim.tomogram.shape == data.shape and np.allclose(sim.tomogram, data, atol=1e-3):
                blurred = ndimage.gaussian_filter((sim.vesicle_labels > 0).astype(np.float32), 1.2)
                prob = np.clip(blurred * 1.1, 0, 1)
        with open_volume_writer(
            target, volume.shape, np.uint8, volume.voxel_size_nm, overwrite=True
        ) as out:
            out[:] = np.round(prob * 255).astype(np.uint8)
        return {"seconds": 0.0, "model": {"name": "truth-map", "sha256": "0" * 64}}

    monkeypatch.setattr(pipeline, "stage_predict", stage_predict)
    return calls


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def tmp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.tmp"))


def _not_warnings(stderr: str) -> list[str]:
    """stderr lines other than warnings (the small test volumes are thin slabs)."""
    return [line for line in stderr.strip().splitlines() if not line.startswith("warning: ")]


def one_line_error(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    lines = _not_warnings(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for word in words:
        assert word in lines[0], lines[0]


# ----------------------------------------------------------------------------- stale results


def test_replaced_input_is_recomputed_not_skipped(sims, tomo, tmp_path, fake_network):
    out = tmp_path / "out"
    assert run("segment", tomo, "-o", out).exit_code == 0
    first = read_table_csv(out / "syn_vesicles.csv")
    write_volume(tomo, sims[1].tomogram, 1.68, overwrite=True)  # same name, other tomogram
    result = run("segment", tomo, "-o", out)
    assert result.exit_code == 0, result.output
    assert "skipped" not in result.stdout and "input changed" in result.stdout
    assert "changed" in result.stderr  # the warning says why everything is recomputed
    assert len(fake_network) == 2
    report = json.loads((out / "syn_report.json").read_text())
    assert "content" in report["recomputed_because"]
    second = read_table_csv(out / "syn_vesicles.csv")
    truth = sims[1].vesicles[["center_z_px", "center_y_px", "center_x_px"]].to_numpy()
    found = second[["center_z_px", "center_y_px", "center_x_px"]].to_numpy()
    nearest = np.min(np.linalg.norm(found[:, None] - truth[None], axis=-1), axis=1)
    assert len(second) and np.median(nearest) < 2, "results are not from the new tomogram"
    assert not first[["center_x_px"]].equals(second[["center_x_px"]])
    # The same input again: skipped, and the note about the change is not repeated.
    again = run("segment", tomo, "-o", out)
    assert "already done (skipped)" in again.stdout and len(fake_network) == 2


def test_from_stage_with_a_changed_input_is_an_error(sims, tomo, tmp_path, fake_network):
    out = tmp_path / "out"
    assert run("segment", tomo, "-o", out).exit_code == 0
    prob_before = (out / "syn_probabilities.mrc").read_bytes()
    write_volume(tomo, sims[1].tomogram, 1.68, overwrite=True)
    result = run("segment", tomo, "-o", out, "--from-stage", "vesicles")
    one_line_error(result, "changed", "without --from-stage")
    assert (out / "syn_probabilities.mrc").read_bytes() == prob_before
    # --from-stage predict recomputes everything, which is what the change needs.
    assert run("segment", tomo, "-o", out, "--from-stage", "predict").exit_code == 0
    assert len(fake_network) == 2


def test_unchanged_input_with_a_new_mtime_is_recomputed_safely(tomo, tmp_path, fake_network):
    out = tmp_path / "out"
    assert run("segment", tomo, "-o", out).exit_code == 0
    st = tomo.stat()
    os.utime(tomo, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    result = run("segment", tomo, "-o", out)
    assert result.exit_code == 0 and len(fake_network) == 2
    assert (
        "modification time"
        in json.loads((out / "syn_report.json").read_text())["recomputed_because"]
    )


# ------------------------------------------------------------------ disk full, killed runs


def test_full_disk_is_refused_before_any_work(tomo, tmp_path, fake_network, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(2**40, 2**40 - 2**20, 2**20))
    out = tmp_path / "out"
    result = run("segment", tomo, "-o", out)
    one_line_error(result, "not enough free disk space", "needed", "1.0 MiB free")
    assert fake_network == [] and (not out.exists() or not any(out.iterdir()))


def test_enospc_on_the_label_memmap_is_an_error_then_the_rerun_completes(
    tomo, tmp_path, fake_network, monkeypatch
):
    real = os.posix_fallocate

    def fallocate(fd, offset, length):
        if os.readlink(f"/proc/self/fd/{fd}").endswith("_vesicles.mrc.tmp"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, offset, length)

    if not hasattr(os, "posix_fallocate") or not Path("/proc/self/fd").exists():
        pytest.skip("needs posix_fallocate and /proc")
    monkeypatch.setattr(os, "posix_fallocate", fallocate)
    out = tmp_path / "out"
    one_line_error(run("segment", tomo, "-o", out), "no space left", "rerun")
    assert tmp_files(out) == [] and not (out / "syn_vesicles.mrc").exists()
    monkeypatch.setattr(os, "posix_fallocate", real)
    result = run("segment", tomo, "-o", out)
    assert result.exit_code == 0, result.output
    assert (out / "syn_vesicles.mrc").exists() and tmp_files(out) == []
    assert len(fake_network) == 1, "the finished predict stage was recomputed"


@pytest.mark.parametrize("overwrite", [False, True])
def test_stale_tmp_files_from_a_killed_run_are_redone(tomo, tmp_path, fake_network, overwrite):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("syn_probabilities.mrc.tmp", "syn_vesicles.mrc.tmp", "syn_report.json.tmp"):
        (out / name).write_bytes(b"\0" * 4096)  # what SIGKILL leaves behind
    result = run("segment", tomo, "-o", out, *(["--overwrite"] if overwrite else []))
    assert result.exit_code == 0, result.output
    assert tmp_files(out) == [] and (out / "syn_vesicles.mrc").exists()


# ----------------------------------------------------------------------------- SIGINT


def test_ctrl_c_exits_130_with_one_line_and_the_rerun_resumes(
    tomo, tmp_path, fake_network, monkeypatch
):
    real = pipeline.stage_vesicles

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "stage_vesicles", interrupted)
    out = tmp_path / "out"
    result = run("segment", tomo, "-o", out)
    assert result.exit_code == 130
    assert _not_warnings(result.stderr) == ["interrupted; rerun the same command to resume"]
    assert tmp_files(out) == []
    monkeypatch.setattr(pipeline, "stage_vesicles", real)
    assert run("segment", tomo, "-o", out).exit_code == 0 and len(fake_network) == 1


# ----------------------------------------------------------------------------- batches


def test_batch_goes_on_past_failures_and_writes_a_summary(
    sims, tmp_path, fake_network, monkeypatch
):
    folder = tmp_path / "batch"
    write_volume(folder / "a.mrc", sims[0].tomogram, 1.68)
    (folder / "b.mrc").write_text("not a tomogram\n")
    write_volume(folder / "c.mrc", sims[1].tomogram, 1.68)
    write_volume(folder / "d.mrc", sims[1].tomogram[:, :64, :64].copy(), 1.68)
    real = pipeline.stage_vesicles

    def crash_on_d(volume, *args, **kwargs):
        if volume.name == "d":
            raise RuntimeError("a bug")
        return real(volume, *args, **kwargs)

    monkeypatch.setattr(pipeline, "stage_vesicles", crash_on_d)
    out = tmp_path / "out"
    result = run("segment", folder, "-o", out)
    assert result.exit_code == 2, result.output
    assert (out / "a_vesicles.csv").exists() and (out / "c_vesicles.csv").exists()
    summary = json.loads((out / "batch_summary.json").read_text())
    assert [Path(d["tomogram"]).name for d in summary["done"]] == ["a.mrc", "c.mrc"]
    failed = {Path(f["tomogram"]).name: f["reason"] for f in summary["failed"]}
    assert set(failed) == {"b.mrc", "d.mrc"} and summary["not_reached"] == 0
    assert "b.mrc" in failed["b.mrc"] and "\n" not in failed["b.mrc"]
    assert failed["d.mrc"] == "unexpected RuntimeError: a bug"
    assert "Traceback" in result.stderr  # a bug keeps its traceback, the batch goes on
    assert "2 of 4 tomograms failed" in result.stderr
    assert tmp_files(out) == []
    # Rerun: finished ones are skipped, the failures are tried again and reported again.
    monkeypatch.setattr(pipeline, "stage_vesicles", real)
    again = run("segment", folder, "-o", out)
    assert again.exit_code == 2
    summary = json.loads((out / "batch_summary.json").read_text())
    assert len(summary["skipped"]) == 2 and [
        Path(f["tomogram"]).name for f in summary["failed"]
    ] == ["b.mrc"]
    assert len(summary["done"]) == 1  # d, now without the bug


def test_single_input_failure_is_still_one_line(tmp_path):
    bad = tmp_path / "bad.mrc"
    bad.write_text("text\n")
    result = run("segment", bad, "-o", tmp_path / "out")
    one_line_error(result, "bad.mrc")
    assert not (tmp_path / "out" / "batch_summary.json").exists()


# ----------------------------------------------------------------------------- option values


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--threshold", "2"], "--threshold"),
        (["--threshold", "0"], "--threshold"),
        (["--min-radius", "30", "--max-radius", "20"], "--min-radius"),
        (["--min-radius", "50"], "--min-radius"),
        (["--min-radius", "-1"], "--min-radius"),
        (["--max-radius", "0"], "--max-radius"),
        (["--tile-size", "0"], "--tile-size"),
        (["--tile-size", "100"], "--tile-size"),
        (["--tilt-range", "95"], "--tilt-range"),
        (["--tilt-range", "0"], "--tilt-range"),
        (["--voxel-size", "-1.6"], "--voxel-size"),
        (["--device", "gpu"], "--device"),
        (["--mask", "no_such_mask.mrc"], "--mask"),
        (["--model", "no_such_model"], "no_such_model"),
    ],
)
def test_bad_option_values_fail_before_any_work(tomo, tmp_path, fake_network, args, option):
    out = tmp_path / "out"
    one_line_error(run("segment", tomo, "-o", out, *args), option)
    assert fake_network == [] and (not out.exists() or not any(out.iterdir()))


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--tile-size", "-8"], "--tile-size"),
        (["--halo", "-1"], "--halo"),
        (["--batch-size", "0"], "--batch-size"),
        (["--threads", "0"], "--threads"),
        (["--voxel-size", "0"], "--voxel-size"),
        (["--device", "tpu"], "--device"),
    ],
)
def test_bad_predict_options_fail_before_any_work(tomo, tmp_path, args, option):
    out = tmp_path / "out"
    one_line_error(run("predict", tomo, "-o", out, *args), option)
    assert not out.exists() or not any(out.iterdir())


# ----------------------------------------------------------------------------- fault injection


def test_killed_segment_subprocess_reruns_to_identical_outputs(tmp_path, load_script):
    """Two kills of a real ``synapseg segment`` (the 20-kill run is the benchmark script):
    SIGKILL while the probability map is being written, SIGINT once it is done."""
    fi = load_script("benchmarks/fault_injection.py")
    tomogram = fi.make_tomogram(tmp_path / "in", SHAPE, seed=1)
    reference = tmp_path / "reference"
    assert run("--quiet", "segment", tomogram, "-o", reference).exit_code == 0
    kills = [
        (signal.SIGKILL, lambda out: (out / "tomo_probabilities.mrc.tmp").exists()),
        (signal.SIGINT, lambda out: (out / "tomo_report.json").exists()),
    ]
    for i, (sig, when) in enumerate(kills):
        out = tmp_path / f"run_{i}"
        record = fi.run_and_kill(tomogram, out, sig, when=lambda out=out, when=when: when(out))
        assert record["signal_sent"], record
        if sig == signal.SIGINT:
            assert record["killed_rc"] == 130 and record["killed_stderr_tail"] == [
                "interrupted; rerun the same command to resume"
            ], record
        result = run("--quiet", "segment", tomogram, "-o", out)  # the rerun (in-process)
        assert result.exit_code == 0, result.output
        assert tmp_files(out) == []
        assert fi.compare_outputs(reference, out) == dict.fromkeys(fi.COMPARED, True)


def test_predict_refuses_a_full_disk_before_work(tomo, tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(2**40, 2**40 - 4096, 4096))
    out = tmp_path / "out"
    one_line_error(run("predict", tomo, "-o", out), "not enough free disk space")
    assert not out.exists() or not any(out.iterdir())


def test_fingerprint_sees_same_size_edits_and_ignores_nothing(tmp_path):
    from synapseg.io.fingerprint import describe_change, input_fingerprint

    path = tmp_path / "t.mrc"
    path.write_bytes(bytes(range(256)) * 8192)  # 2 MiB
    before = input_fingerprint(path)
    assert describe_change(before, input_fingerprint(path)) is None
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF  # a header byte, same size, same mtime
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    change = describe_change(before, input_fingerprint(path))
    assert change is not None and "content" in change and "size" not in change


@pytest.mark.parametrize(
    ("command", "advice"), [("train", "add --resume"), ("predict", "no file was half-written")]
)
def test_ctrl_c_advice_fits_the_command(command, advice, capsys):
    import typer

    from synapseg.cli import handle_errors

    def body():
        raise KeyboardInterrupt

    body.__name__ = command
    with pytest.raises(typer.Exit) as info:
        handle_errors(body)()
    assert info.value.exit_code == 130
    assert advice in capsys.readouterr().err


def test_export_resumed_after_a_kill_renders_the_same_labels(
    tomo, tmp_path, fake_network, monkeypatch, load_script
):
    """Found by benchmarks/fault_injection.py --stage-kills: a resumed export rendered the
    labels from the CSV's rounded numbers, an uninterrupted one from the in-memory table."""
    fi = load_script("benchmarks/fault_injection.py")
    reference = tmp_path / "reference"
    assert run("segment", tomo, "-o", reference).exit_code == 0
    real = pipeline.stage_export

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    out = tmp_path / "out"
    monkeypatch.setattr(pipeline, "stage_export", killed)
    assert run("segment", tomo, "-o", out).exit_code == 130
    monkeypatch.setattr(pipeline, "stage_export", real)
    assert run("segment", tomo, "-o", out).exit_code == 0
    for name in ("syn_vesicles.csv", "syn_vesicles.mrc", "syn_vesicles.mod"):
        assert fi._comparable(reference / name) == fi._comparable(out / name), name
    ref_json, out_json = (
        json.loads((f / "syn_vesicles.json").read_text()) for f in (reference, out)
    )
    assert ref_json["vesicles"] == out_json["vesicles"]  # provenance holds the creation time


def test_sigint_reaches_segment_when_the_parent_ignores_it(tmp_path, load_script):
    """An ignored SIGINT survives exec: the fault-injection command re-arms Ctrl-C."""
    fi = load_script("benchmarks/fault_injection.py")
    tomogram = fi.make_tomogram(tmp_path / "in", SHAPE, seed=1)
    out = tmp_path / "out"
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        record = fi.run_and_kill(
            tomogram, out, signal.SIGINT, when=lambda: (out / "tomo_report.json").exists()
        )
    finally:
        signal.signal(signal.SIGINT, old)
    assert record["signal_sent"] and record["killed_rc"] == 130, record
