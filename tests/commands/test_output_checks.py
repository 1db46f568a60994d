"""Outputs are checked before the work starts, and errors name the user's path: every command's output option
given an existing file or folder of the wrong kind, or a path under a file, fails at once (exit 2) naming it;
out-of-range seeds are one-line errors."""

from __future__ import annotations

import pytest
import torch

from cycleisp_fast import cli
from cycleisp_fast.data.images import write_image
from cycleisp_fast.training import ConfigError, load_config


def _fails_at_once(capsys, argv, message):
    with pytest.raises(SystemExit) as exited:
        cli.main([str(arg) for arg in argv])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert message in err, err
    return err


@pytest.fixture
def taken(tmp_path):
    """An existing file, where a folder is expected."""
    path = tmp_path / "taken"
    path.write_text("not a folder")
    return path


def test_eval_csv_is_checked_before_the_evaluation(tmp_path, capsys):
    # the data folder does not exist: the --csv error comes first, so it is checked before any pair is read
    _fails_at_once(
        capsys,
        ["eval", tmp_path / "missing", "--csv", tmp_path],
        f"--csv: {tmp_path} is an existing folder, not a file",
    )


def test_an_output_under_a_file_names_that_file(tmp_path, capsys, taken):
    _fails_at_once(
        capsys,
        ["eval", tmp_path / "missing", "--csv", taken / "scores.csv"],
        f"--csv: {taken / 'scores.csv'} cannot be created: {taken} is a file, not a folder",
    )


@pytest.mark.parametrize(
    "make_argv, message",
    [
        (
            lambda taken: ["synth", "-o", taken, "--max-size", "16"],
            "-o/--out: {taken} is an existing file, not a folder",
        ),
        (
            lambda taken: ["train", "--config", "demo", "--out", taken],
            "--out: {taken} is an existing file, not a folder",
        ),
        (
            lambda taken: ["denoise", taken, "-o", taken / "sub", "--model", "noisy"],
            "-o/--outdir: {taken}/sub cannot be created: {taken} is a file",
        ),
        (
            lambda taken: ["convert", "--model", "aindnet", "--weights", taken, "-o", taken / "w.pt"],
            "-o: {taken}/w.pt cannot be created: {taken} is a file",
        ),
    ],
)
def test_every_command_checks_its_output_first(capsys, taken, make_argv, message):
    _fails_at_once(capsys, make_argv(taken), message.format(taken=taken))


@pytest.mark.parametrize("seed", [2**63, -1, 10**30])
def test_synth_seed_out_of_range_is_one_line(tmp_path, capsys, seed):
    _fails_at_once(capsys, ["synth", "-o", tmp_path / "out", "--seed", seed], "--seed must be in [0, 2**63)")


def test_train_seed_out_of_range_names_the_key():
    with pytest.raises(ConfigError, match=r"'seed'.* must be < 9223372036854775808"):
        load_config("demo", ["seed=9223372036854775808"])
    assert load_config("demo", ["seed=9223372036854775807"])["seed"] == 2**63 - 1


def test_a_long_input_name_gets_its_output(tmp_path, capsys):
    """A legal 240-character name: the temporary file beside its output still fits the 255-byte name limit."""
    name = "n" * 236 + ".png"
    write_image(tmp_path / name, torch.rand(3, 8, 8))
    assert cli.main(["denoise", str(tmp_path / name), "-o", str(tmp_path / "out"), "--model", "noisy"]) == 0
    assert [p.name for p in (tmp_path / "out").iterdir()] == [name]
