"""The CLI reads like one tool: help without Python types, flags shown as flags, shared
options with one meaning, one default and one help text across commands."""

from __future__ import annotations

import re

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from synapseg.cli import app
from synapseg.commands.options import metavar_for

runner = CliRunner()
GROUP = get_command(app)
COMMANDS = sorted(GROUP.commands)
FORBIDDEN = ("<bool>", "list[", "Path]")
PYTHON_TYPE = re.compile(r"<(bool|int|float|str|path|text|list|tuple|dict|choice)\b[^>]*>")

SHARED = ("--voxel-size", "--model", "--device", "--overwrite", "--invert", "--tta", "--tile-size")
"""Options defined once in ``synapseg.commands.options``; every command that has them must
show the same default and help."""
OWN_MEANING = {
    ("simulate", "--voxel-size"): "the voxel size of the tomograms it writes (default 1.68)",
    ("evaluate", "--voxel-size"): "used only where the files lack a voxel size",
    ("adapt", "--tta"): "the same flips, applied to the pseudo-labelling passes",
}
"""(command, option) pairs that knowingly keep a different help, and why."""
OWN_DEFAULT = {
    ("simulate", "--voxel-size"): "the voxel size of the tomograms it writes",
    ("demo", "--output"): "the demo writes to ./synapseg-demo unless told otherwise",
    ("adapt", "--from"): "adapting needs a base model: the shipped one",
    ("adapt", "--lr"): "a lower rate for self-training a good model",
    ("adapt", "--steps"): "steps per round, not in total",
    ("adapt", "--min-confidence"): "pseudo-labels need more confidence than kept vesicles",
    ("predict", "--batch-size"): "tiles per forward pass, chosen from memory",
    ("simulate", "--tilt-range"): "the tilt range it simulates",
}
"""(command, option) pairs whose default differs from the other commands', and why."""


def _help(*args: str) -> str:
    result = runner.invoke(app, [*args, "--help"], terminal_width=200, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def _option(command: str, name: str):
    for param in GROUP.commands[command].params:
        if name in getattr(param, "opts", ()):
            return param
    return None


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_has_no_python_types(command):
    text = _help(*([command] if command else []))
    for bad in FORBIDDEN:
        assert bad not in text, f"'{bad}' in `synapseg {command} --help`:\n{text}"
    assert not PYTHON_TYPE.search(text), PYTHON_TYPE.search(text).group(0)


def test_flags_show_no_value_and_values_show_a_metavar():
    text = _help("segment")
    assert re.search(r"--overwrite\s+Replace existing outputs", text), text
    assert re.search(r"--voxel-size\s+NM\s", text), text
    assert re.search(r"inputs\.\.\.\s+PATH\.\.\.\s", text), text
    for command in COMMANDS:
        for param in GROUP.commands[command].params:
            if getattr(param, "is_flag", False):
                assert metavar_for(param) is None, (command, param.name)
            elif not getattr(param, "hidden", False):
                label = metavar_for(param)
                assert label and not re.search(r"[<>\[\]]|\b(int|float|str|bool)\b", label), (
                    command,
                    param.name,
                    label,
                )


@pytest.mark.parametrize("name", SHARED)
def test_shared_options_mean_the_same_everywhere(name):
    seen = {}
    for command in COMMANDS:
        param = _option(command, name)
        if param is None or param.hidden or (command, name) in OWN_MEANING:
            continue
        seen[command] = (tuple(param.opts), param.default, param.help, param.metavar)
    assert len(seen) >= 2, f"{name} is shared by fewer than two commands: {seen}"
    assert len(set(seen.values())) == 1, f"{name} differs between commands: {seen}"


def test_model_has_short_form_and_device_defaults_to_auto():
    for command in COMMANDS:
        model = _option(command, "--model")
        if model is not None:
            assert "-m" in model.opts, command
        device = _option(command, "--device")
        if device is not None:
            assert device.default == "auto", command
    assert _option("train", "--device").default == "auto"


def test_predict_invert_takes_auto_yes_no(tmp_path):
    result = runner.invoke(app, ["predict", str(tmp_path / "t.mrc"), "-o", str(tmp_path),
                                 "--invert", "maybe"])  # fmt: skip
    assert result.exit_code == 2
    assert "--invert" in result.output and "auto, yes or no" in result.output
    assert _option("predict", "--invert").default == "auto"


def test_simulate_bright_densities_and_deprecated_invert(tmp_path, monkeypatch):
    import synapseg.commands.simulate as sim

    seen = []

    class Stop(Exception):
        pass

    def fake(params, keep_phantom=False):
        seen.append(params.invert_contrast)
        raise Stop

    monkeypatch.setattr(sim, "simulate_tomogram", fake)
    for flags, expected in (([], False), (["--bright-densities"], True), (["--invert"], True)):
        result = runner.invoke(app, ["simulate", str(tmp_path / "s"), *flags])
        assert isinstance(result.exception, Stop), result.output
        assert seen[-1] is expected, flags
    assert "deprecated" in result.output  # the old name still works, with a warning
    assert "--invert" not in _help("simulate")  # hidden: one meaning per option name


def test_predict_records_one_polarity_decision(tmp_path):
    import json

    import numpy as np

    from synapseg.io.volume_writer import write_volume
    from synapseg.model.registry import create_random_model
    from synapseg.model.unet import UNetConfig

    model = create_random_model(
        tmp_path / "tiny", name="tiny", config=UNetConfig(stem=1, base_channels=2, depth=1)
    )
    tomo = tmp_path / "tomo.mrc"
    data = np.random.default_rng(12).normal(size=(20, 48, 40)).astype(np.float32)
    write_volume(tomo, data, (1.5, 1.5, 1.5))
    for invert in ("yes", "auto"):
        out = tmp_path / invert
        args = ["predict", str(tomo), "-o", str(out), "-m", str(model), "--invert", invert]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        polarity = json.loads((out / "tomo_predict_report.json").read_text())["polarity"]
        if invert == "yes":
            assert polarity == {"invert": True, "forced": True}
        else:  # decided from the data, with its evidence
            assert "forced" not in polarity and polarity["evidence"] in ("none", "weak", "clear")
            assert isinstance(polarity["invert"], bool)


def test_one_default_per_option_name():
    defaults: dict[str, dict[str, object]] = {}
    for command in COMMANDS:
        for param in GROUP.commands[command].params:
            for name in getattr(param, "opts", ()):
                if name.startswith("--") and not param.hidden:
                    if (command, name) not in OWN_DEFAULT:
                        defaults.setdefault(name, {})[command] = param.default
    differ = {n: d for n, d in defaults.items() if len({repr(v) for v in d.values()}) > 1}
    assert not differ, f"options whose default depends on the command: {differ}"
