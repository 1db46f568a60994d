"""One run per folder (the lock of data/locks.py), and files that lie: trainer checkpoints and weights whose contents
are validated before they are acted on."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from cycleisp_fast import cli
from cycleisp_fast.data.images import write_image
from cycleisp_fast.data.locks import LOCK_NAME, FolderInUseError, run_folder_lock
from cycleisp_fast.models import DenoiseNet, load_official
from cycleisp_fast.pipelines.denoisers import load_denoiser
from cycleisp_fast.training import CHECKPOINT_NAME, RunFolderError, resolve_config, train

TINY = {"n_feats": 8, "num_rrg": 1, "num_dab": 1, "reduction": 4}
pytestmark = pytest.mark.usefixtures("one_thread")

RACER = """
import sys, time
from pathlib import Path
from cycleisp_fast.data.locks import FolderInUseError, run_folder_lock
root, start, rounds = Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
for index in range(rounds):
    while time.time() < start + 0.4 * index:
        pass
    try:
        with run_folder_lock(root / str(index), "test"):
            print(index, "held", flush=True)
            time.sleep(0.15)
    except FolderInUseError:
        print(index, "busy", flush=True)
"""


def test_the_lock_admits_one_of_two_processes_started_together(tmp_path):
    rounds = 20
    start = time.time() + 8  # both interpreters are up by then
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(tmp_path), str(start), str(rounds)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outcomes = [
        dict(line.split() for line in process.communicate(timeout=120)[0].splitlines()) for process in processes
    ]
    assert all(process.returncode == 0 for process in processes)
    for index in range(rounds):
        assert sorted(outcome[str(index)] for outcome in outcomes) == ["busy", "held"], index


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom cycleisp_fast.data.locks import "
            "run_folder_lock\nwith run_folder_lock(sys.argv[1], 'test'):\n    print('held', "
            "flush=True)\n    time.sleep(600)\n",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(FolderInUseError, match=rf"{tmp_path} is in use by another run \(pid {holder.pid}\)"):
        with run_folder_lock(tmp_path, "synth"):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    with run_folder_lock(tmp_path, "synth"):
        assert (tmp_path / LOCK_NAME).exists()


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "in"
    for index in range(3):
        write_image(folder / f"{index}.png", torch.rand(3, 24, 20, generator=torch.Generator().manual_seed(index)))
    return folder


def test_synth_and_train_into_a_held_folder_fail_at_once_and_write_nothing(tmp_path, images, capsys):
    out = tmp_path / "out"
    with run_folder_lock(out, "synth"):
        assert cli.main(["synth", str(images), "-o", str(out), "--seed", "3"]) == 1
        config = resolve_config(
            {
                "task": "denoise-srgb",
                "steps": 1,
                "batch_size": 1,
                "patch_size": 16,
                "val_every": 0,
                "model": TINY,
                "data": {"images": str(images)},
            }
        )
        with pytest.raises(FolderInUseError):
            train(config, out, device="cpu", progress=False)
    assert "is in use by another run" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]


SYNTH = "import sys\nfrom cycleisp_fast.cli import main\nsys.exit(main(sys.argv[1:]))"


def test_two_synth_runs_started_together_leave_one_consistent_folder(tmp_path, images):
    for round_index in range(3):
        out = tmp_path / f"out{round_index}"
        processes = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    SYNTH,
                    "synth",
                    str(images),
                    "-o",
                    str(out),
                    "--seed",
                    str(seed),
                    "--repeat",
                    "4",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for seed in (1, 2)
        ]
        results = [(process.wait(timeout=300), process.stderr.read()) for process in processes]
        codes = sorted(code for code, _ in results)
        assert codes == [0, 1], results
        loser = next(err for code, err in results if code == 1)
        assert "is in use by another run" in loser or "holds a run with other settings" in loser, loser
        winner_seed = (1, 2)[[code for code, _ in results].index(0)]
        assert json.loads((out / "synth.json").read_text())["seed"] == winner_seed
        assert len(list((out / "noisy").iterdir())) == len(list((out / "clean").iterdir())) == 12


# -- files that lie -----------------------------------------------------------------------------------------


def _trainer_checkpoint(path, **changes):
    model = DenoiseNet(raw=False, **TINY)
    checkpoint = {"model": "cycleisp-srgb", "model_kwargs": dict(TINY), "state_dict": model.state_dict(), "step": 1}
    checkpoint.update(changes)
    torch.save(checkpoint, path)
    return path


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"model_kwargs": {**TINY, "n_feats": 200_000}}, "parameters, more than"),
        ({"model_kwargs": {**TINY, "width": 3}}, "do not fit"),
        ({"model_kwargs": {**TINY, "n_feats": [8]}}, "must map names to numbers"),
        ({"model_kwargs": {**TINY, "reduction": 0}}, "do not fit"),
    ],
)
def test_model_kwargs_are_bounded_before_anything_is_allocated(tmp_path, changes, message):
    path = _trainer_checkpoint(tmp_path / "w.pt", **changes)
    with pytest.raises(ValueError, match=rf"weights {path} do not fit model 'cycleisp-srgb': .*{message}"):
        load_denoiser("cycleisp-srgb", path)


@pytest.mark.parametrize(
    "content, message", [(b"", "the file is empty or truncated"), (b"PK\x03\x04 not really a zip", "not a ZIP archive")]
)
def test_unreadable_weights_are_named(tmp_path, content, message):
    path = tmp_path / "w.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"weights {path} could not be read as a torch checkpoint.*{message}"):
        load_denoiser("cycleisp-srgb", path)
    torch.save([1, 2], path)
    with pytest.raises(ValueError, match="must hold a dict"):
        load_denoiser("cycleisp-srgb", path)


def test_nan_weights_are_reported_as_non_finite_not_as_disagreeing_aliases():
    model = DenoiseNet(raw=False, **TINY)
    state = {key: torch.full_like(value, float("nan")) for key, value in model.state_dict().items()}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="non-finite"):
        load_official(model, state)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.fixture
def interrupted_run(tmp_path, images):
    config = resolve_config(
        {
            "task": "denoise-srgb",
            "steps": 3,
            "batch_size": 1,
            "patch_size": 16,
            "val_every": 0,
            "save_every": 1,
            "val": {"count": 1, "patch_size": 16},
            "model": TINY,
            "data": {"images": str(images)},
        }
    )
    train(config, tmp_path / "run", device="cpu", progress=False, stop_after=1)
    return config, tmp_path / "run"


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda path: path.write_bytes(b""), "could not be read as a training checkpoint"),
        (lambda path: path.write_bytes(path.read_bytes()[:1000]), "could not be read as a training checkpoint"),
        (lambda path: torch.save([1], path), "holds a list, not a dict"),
        (
            lambda path: torch.save(
                {k: v for k, v in torch.load(path, weights_only=True).items() if k != "config"}, path
            ),
            r"config \(missing\)",
        ),
        (
            lambda path: torch.save({**torch.load(path, weights_only=True), "step": "1"}, path),
            r"step \(str, expected int\)",
        ),
        (
            lambda path: torch.save(
                {
                    **torch.load(path, weights_only=True),
                    "state_dict": DenoiseNet(raw=False, n_feats=16, num_rrg=1, num_dab=1, reduction=4).state_dict(),
                },
                path,
            ),
            "its saved state does not fit the run",
        ),
    ],
)
def test_resume_names_a_corrupt_checkpoint(interrupted_run, corrupt, message):
    config, run_dir = interrupted_run
    path = run_dir / CHECKPOINT_NAME
    corrupt(path)
    with pytest.raises(RunFolderError, match=rf"{path}.*{message}|{message}.*"):
        train(config, run_dir, device="cpu", progress=False, resume=True)
    assert str(path) in str(
        pytest.raises(RunFolderError, train, config, run_dir, device="cpu", progress=False, resume=True).value
    )


def test_resume_error_through_the_cli_is_one_line(interrupted_run, capsys):
    _, run_dir = interrupted_run
    (run_dir / CHECKPOINT_NAME).write_bytes(b"")
    with pytest.raises(SystemExit) as exit_info:  # argparse's convention: usage, then one line, status 2
        cli.main(
            [
                "train",
                "--config",
                str(run_dir / "config.toml"),
                "--out",
                str(run_dir),
                "--resume",
                "--device",
                "cpu",
                "--no-progress",
            ]
        )
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_info.value.code == 2
    assert last == (
        f"cycleisp-fast train: error: {run_dir / CHECKPOINT_NAME} could not be read as a training "
        "checkpoint (EOFError: the file is empty or truncated)"
    )
