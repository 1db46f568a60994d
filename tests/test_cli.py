"""The ``cycleisp-fast`` command: selftest on the CPU, a quick benchmark's CSV, every subcommand's help, synth, bad
arguments."""

import csv

import pytest

from cycleisp_fast import _extension, cli
from cycleisp_fast.bench.measure import FUSED
from cycleisp_fast.bench.report import COLUMNS
from cycleisp_fast.selftest import Result, format_results

QUICK_PACK = ["bench", "--quick", "--ops", "bayer_pack", "--min-run-time", "0.01"]


def read_csv(path):
    with open(path, newline="") as file:
        reader = csv.DictReader(file)
        return reader.fieldnames, list(reader)


def test_selftest_passes_on_the_cpu_and_names_each_backend(capsys):
    assert cli.main(["selftest"]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out
    for name in FUSED:
        assert f"| {name} " in out, f"the selftest table does not name backend {name}:\n{out}"


def test_selftest_says_a_skipped_backend_once_per_reason():
    results = [Result("cpu", "triton", name, skipped="not a performance path") for name in ("a", "b", "c")]
    results += [Result("cpu", "native", "a", "float32", checks=2), Result("cuda", "native", "d", skipped="no GPU")]
    lines = format_results(results).splitlines()
    assert lines[-2:] == [
        "triton on cpu skipped for 3 ops: not a performance path",
        "native on cuda skipped for 1 op: no GPU",
    ]
    assert sum("| native " in line for line in lines) == 1 and not any("| triton " in line for line in lines)


def test_bench_quick_writes_a_csv_of_every_provider(tmp_path, capsys):
    csv_path, plot_path = tmp_path / "bench.csv", tmp_path / "bench.png"
    argv = QUICK_PACK + ["--modes", "forward", "--csv", str(csv_path), "--plot", str(plot_path)]
    assert cli.main(argv) == 0  # torch.compile: one tiny case, forward only
    columns, rows = read_csv(csv_path)
    assert tuple(columns) == COLUMNS
    expected = {"eager", "compile"} | ({"native"} if _extension.LOADED else set())
    assert {row["provider"] for row in rows} == expected
    for row in rows:
        assert (row["case"], row["mode"], row["size"], row["dtype"], row["device"]) == (
            "bayer_pack",
            "forward",
            "1x1x64x64",
            "float32",
            "cpu",
        )
        assert float(row["time_ms"]) > 0 and float(row["gb_per_s"]) > 0 and float(row["copy_fraction"]) > 0
        assert float(row["speedup_vs_eager"]) > 0 and float(row["speedup_vs_compile"]) > 0
        assert row["torch_version"] and row["device_name"]
    out = capsys.readouterr().out
    assert out.startswith(rows[0]["device_name"]) and "| bayer_pack | forward" in out
    assert plot_path.exists() or "plot skipped" in out


def test_bench_forward_backward_without_compile(tmp_path):
    csv_path = tmp_path / "bench.csv"
    argv = QUICK_PACK + [
        "--providers",
        "eager",
        "native",
        "--modes",
        "forward+backward",
        "--csv",
        str(csv_path),
        "--plot",
        str(tmp_path / "bench.png"),
    ]
    assert cli.main(argv) == 0
    _, rows = read_csv(csv_path)
    assert {row["mode"] for row in rows} == {"forward+backward"}
    assert {row["provider"] for row in rows} == {"eager"} | ({"native"} if _extension.LOADED else set())
    assert all(row["speedup_vs_compile"] == "" for row in rows)


def test_bench_of_a_whole_network_times_inference_and_a_training_step(tmp_path):
    """Network cases run as modules (inference, then a training step at the chosen size), with optimize() as a
    provider and each provider's inference PSNR against eager's output."""
    csv_path = tmp_path / "bench.csv"
    argv = ["bench", "--quick", "--ops", "denoisenet_raw", "--providers", "eager", "optimized", "optimized-bf16"]
    argv += ["--min-run-time", "0.01", "--csv", str(csv_path), "--plot", str(tmp_path / "bench.png")]
    assert cli.main(argv) == 0
    _, rows = read_csv(csv_path)
    by_key = {(row["mode"], row["provider"]): row for row in rows}
    assert set(by_key) == {
        (m, p) for m in ("forward", "forward+backward") for p in ("eager", "optimized", "optimized-bf16")
    }
    assert {row["size"] for row in rows} == {"1x4x16x16"}
    assert float(by_key["forward", "optimized"]["psnr_vs_eager_db"]) > 100  # float32: float rounding only
    assert 30 < float(by_key["forward", "optimized-bf16"]["psnr_vs_eager_db"]) < 100
    assert all(row["psnr_vs_eager_db"] == "" for row in rows if row["mode"] == "forward+backward")


def test_optimized_is_a_provider_of_whole_networks_only(tmp_path, capsys):
    argv = QUICK_PACK + [
        "--providers",
        "optimized",
        "--csv",
        str(tmp_path / "b.csv"),
        "--plot",
        str(tmp_path / "b.png"),
    ]
    assert cli.main(argv) == 1  # nothing timed
    assert "skipped optimized on cpu for bayer_pack: it times whole networks only" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, argument",
    [
        (["bench", "--ops", "no_such_op"], "--ops"),
        (["bench", "--sizes", "4x1xbig"], "--sizes"),
        (["bench", "--ops", "bayer_mosaic", "--sizes", "1x1x64x64"], "--sizes"),
        (["bench", "--dtypes", "float8"], "--dtypes"),
        (["bench", "--min-run-time", "-1"], "--min-run-time"),
        (["selftest", "--devices", "tpu"], "--devices"),
    ],
)
def test_bad_arguments_exit_nonzero_naming_the_argument(argv, argument, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code != 0
    assert f"argument {argument}" in capsys.readouterr().err


def test_a_command_is_required(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([])
    assert exit_info.value.code != 0
    assert "COMMAND" in capsys.readouterr().err


@pytest.mark.parametrize("command", sorted(cli.SUBCOMMANDS))
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert f"usage: cycleisp-fast {command}" in text
    assert "``" not in text and ":func:`" not in text and ":mod:`" not in text, "reStructuredText markup in the help"


def test_top_level_help_is_plain_text(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "The cycleisp-fast command (also python -m cycleisp_fast)." in capsys.readouterr().out


def test_synth_through_the_main_command(tmp_path, capsys):
    # the embedded sample photos, cropped small: one pair per photo, in the documented layout
    assert cli.main(["synth", "-o", str(tmp_path), "--max-size", "32", "--no-raw"]) == 0
    from cycleisp_fast.data.samples import SAMPLE_NAMES

    assert sorted(p.stem for p in (tmp_path / "noisy").iterdir()) == sorted(SAMPLE_NAMES)
    assert sorted(p.stem for p in (tmp_path / "clean").iterdir()) == sorted(SAMPLE_NAMES)
    assert not (tmp_path / "raw").exists()


def test_a_user_error_is_one_line_and_debug_shows_the_traceback(monkeypatch, capsys):
    from cycleisp_fast.commands import convert
    from cycleisp_fast.data.files import DataFileError

    def failing_run(args, parser):
        raise DataFileError("photo.png: truncated PNG (expected 4096 more bytes)")

    monkeypatch.setattr(convert, "run", failing_run)
    argv = ["convert", "--model", "aindnet", "--weights", "w", "-o", "out.pt"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err == (
        "cycleisp-fast convert: error: photo.png: truncated PNG (expected 4096 more bytes) "
        "(--debug shows the traceback)\n"
    )
    with pytest.raises(DataFileError):
        cli.main(["--debug", *argv])
    monkeypatch.setenv(cli.DEBUG_VARIABLE, "1")
    with pytest.raises(DataFileError):
        cli.main(argv)


def test_a_bug_keeps_its_traceback_and_version_prints(monkeypatch, capsys):
    from cycleisp_fast.commands import convert

    def buggy_run(args, parser):
        raise KeyError("internal")

    monkeypatch.setattr(convert, "run", buggy_run)
    with pytest.raises(KeyError):
        cli.main(["convert", "--model", "aindnet", "--weights", "w", "-o", "out.pt"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.startswith("cycleisp-fast 0.")
