"""`synth --format webdataset` and SyntheticShards: the noise regenerated from a shard equals what synth stored and
what the synthesizer gives when called directly; two torchrun ranks write the single-process shards byte for byte;
a killed process resumes without a half-written or duplicated shard; shards split disjointly between ranks and
workers; corrupt shards are named."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time

import numpy as np
import png
import pytest
import torch

from cycleisp_fast import cli
from cycleisp_fast.data.files import DataFileError
from cycleisp_fast.data.images import quantize
from cycleisp_fast.noise import NoiseModel
from cycleisp_fast.pipelines.shards import SyntheticShards, decode_png16, read_shard, shard_input
from cycleisp_fast.pipelines.synthesis import UnprocessingSynthesizer

pytestmark = pytest.mark.usefixtures("one_thread")
SMALL = ["--max-size", "32", "--repeat", "2", "--shard-size", "3", "--seed", "5"]  # 7 photos x 2 = 14 samples


def synth(out, *extra):
    assert cli.main(["synth", "-o", os.fspath(out), "--format", "webdataset", *SMALL, *extra]) == 0
    return out


@pytest.fixture(scope="module")
def with_noisy(tmp_path_factory):
    return synth(tmp_path_factory.mktemp("shards") / "out", "--with-noisy")


def shards_in(folder):
    """The shard files of a folder, without hidden temporary files (which the glob's ``*`` matches)."""
    return sorted(path for path in folder.glob("*.tar") if not path.name.startswith("."))


def shard_bytes(folder):
    return {path.name: path.read_bytes() for path in shards_in(folder)}


def test_regenerated_noise_equals_the_stored_and_the_direct_synthesis(with_noisy):
    index = json.loads((with_noisy / "shards.json").read_text())
    assert [entry["file"] for entry in index["shards"]] == [f"{n:06d}.tar" for n in range(5)] and index["samples"] == 14
    stored = {sample["key"]: sample for url in shards_in(with_noisy) for sample in read_shard(url)}
    direct = UnprocessingSynthesizer(NoiseModel("unprocessing"))
    regenerated = list(SyntheticShards(with_noisy, shuffle=False))
    assert [item["key"] for item in regenerated] == [f"{i:09d}" for i in range(14)]
    for item in regenerated:
        meta = item["meta"]
        assert (meta["seed"], meta["offset"], meta["pipeline"], meta["levels"]) == (
            5,
            meta["index"],
            "unprocessing",
            "unprocessing",
        )
        expected = direct(stored[item["key"]]["clean"][None], seed=5, offset=meta["index"])
        assert torch.equal(item["noisy"], expected.noisy[0]) and torch.equal(item["noisy_raw"], expected.noisy_raw[0])
        assert torch.equal(item["clean"], expected.clean[0])
        assert pytest.approx(meta["shot"]) == expected.shot[0].item()
        as_stored = torch.from_numpy(quantize(item["noisy"], 16).astype(np.float32).transpose(2, 0, 1)) / 65535
        assert torch.equal(as_stored, stored[item["key"]]["noisy"])  # bit for bit what synth wrote


def test_the_stored_clean_image_is_the_synthesizers_exact_input():
    image = torch.rand(3, 6, 8, generator=torch.Generator().manual_seed(0))
    eight_bit = torch.from_numpy(quantize(image, 8).transpose(2, 0, 1).astype(np.float32)) / 255
    encoded, decoded = shard_input(eight_bit)
    assert torch.equal(decoded, eight_bit)  # k / 255 survives as 257 k / 65535, bit for bit
    assert torch.equal(decode_png16(encoded, "x"), decoded)
    for shape in [(3, 1, 1), (3, 5, 7), (3, 64, 48)]:
        image = torch.rand(shape, generator=torch.Generator().manual_seed(1))
        png_bytes, decoded = shard_input(image)
        samples = quantize(image, 16)
        assert torch.equal(decoded, torch.from_numpy(samples.transpose(2, 0, 1).astype(np.float32)) / 65535)
        width, height, rows, info = png.Reader(bytes=png_bytes).read()  # pypng, an independent reader, agrees
        assert info["bitdepth"] == 16 and np.array_equal(np.vstack(list(rows)).reshape(samples.shape), samples)
        other = io.BytesIO()  # a PNG of another writer (no filter) is read through pypng
        png.Writer(shape[2], shape[1], greyscale=False, bitdepth=16).write(other, samples.reshape(shape[1], -1))
        assert torch.equal(decode_png16(other.getvalue(), "x"), decoded)
    with pytest.raises(DataFileError, match="broken.png: not a readable 16-bit PNG"):
        decode_png16(png_bytes[:40], "broken.png")
    import struct
    import zlib

    # a header that lies: 100000 x 100000 pixels over a few bytes of deflate (a bomb) is refused before inflating
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 16, 2, 0, 0, 0)
    bomb = png_bytes[:8] + struct.pack(">I", 13) + b"IHDR" + header + struct.pack(">I", zlib.crc32(b"IHDR" + header))
    with pytest.raises(DataFileError, match="bomb.png: 100000 x 100000 pixels .* is over the pixel limit"):
        decode_png16(bomb + png_bytes[33:], "bomb.png")


def test_webdataset_itself_reads_the_shards(with_noisy):
    import webdataset

    dataset = webdataset.WebDataset(os.fspath(with_noisy / "{000000..000004}.tar"), shardshuffle=False)
    samples = list(dataset)
    assert [s["__key__"] for s in samples] == [f"{i:09d}" for i in range(14)]
    assert {key for key in samples[0] if not key.startswith("__")} == {"clean.png", "json", "noisy.png"}


def test_clean_only_shards_are_smaller_and_regenerate_the_same(with_noisy, tmp_path):
    clean_only = synth(tmp_path / "clean")
    size = sum(path.stat().st_size for path in shards_in(clean_only))
    assert size < 0.75 * sum(path.stat().st_size for path in shards_in(with_noisy))
    ours, theirs = SyntheticShards(clean_only, shuffle=False), SyntheticShards(with_noisy, shuffle=False)
    for mine, other in zip(ours, theirs):
        assert torch.equal(mine["noisy"], other["noisy"]) and mine["key"] == other["key"]


def run_module(args, cwd, env=None, wait=True):
    command = [sys.executable, *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    if not wait:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    completed = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed


def test_two_torchrun_ranks_write_the_single_process_shards(with_noisy, tmp_path):
    out = tmp_path / "ranks"
    synth_args = ["synth", "-o", os.fspath(out), "--format", "webdataset", *SMALL, "--with-noisy"]
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "cycleisp_fast"]
    completed = run_module([*launcher, *synth_args], cwd=tmp_path)
    assert (
        "rank 0 of 2 wrote 3 of 5 shards" in completed.stdout and "rank 1 of 2 wrote 2 of 5 shards" in completed.stdout
    )
    assert shard_bytes(out) == shard_bytes(with_noisy)
    assert (out / "shards.json").read_bytes() == (with_noisy / "shards.json").read_bytes()


def test_a_killed_rank_resumes_without_half_or_duplicate_shards(tmp_path):
    reference = synth(tmp_path / "reference", "--max-size", "256", "--repeat", "6")
    out = tmp_path / "killed"
    args = ["-m", "cycleisp_fast", "synth", "-o", os.fspath(out), "--format", "webdataset", *SMALL]
    args += ["--max-size", "256", "--repeat", "6"]  # 42 samples, 14 shards; rank 1 of 2 owns 7
    process = run_module(args, cwd=tmp_path, env={"RANK": "1", "WORLD_SIZE": "2"}, wait=False)
    deadline = time.monotonic() + 120
    while not shards_in(out) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    owned = {f"{n:06d}.tar" for n in range(1, 14, 2)}
    written = {path.name for path in shards_in(out)}
    assert written and written <= owned and written != owned, "the kill came too late to test resuming"
    for name in written:  # what is there is whole
        assert (out / name).read_bytes() == (reference / name).read_bytes()
    run_module(args, cwd=tmp_path, env={"RANK": "1", "WORLD_SIZE": "2"})
    assert {path.name for path in shards_in(out)} == owned
    run_module(args, cwd=tmp_path, env={"RANK": "0", "WORLD_SIZE": "2"})
    assert shard_bytes(out) == shard_bytes(reference)
    assert not list(out.glob(".*.tmp.tar"))  # the killed write's temporary file is gone


def test_shards_split_disjointly_between_ranks_workers_and_epochs(with_noisy):
    dataset = SyntheticShards(with_noisy, seed=1)
    for epoch in (0, 1):
        dataset.set_epoch(epoch)
        readers = [dataset.shards_of(rank, 2, worker, 2) for rank in range(2) for worker in range(2)]
        flat = [url for reader in readers for url in reader]
        assert len(flat) == len(set(flat)) == 4  # 5 shards, 2 ranks: one left out this epoch
        assert len(readers[0]) + len(readers[1]) == len(readers[2]) + len(readers[3])  # equal shares per rank
    dataset.set_epoch(0)
    first = dataset.shards_of(0, 1)
    dataset.set_epoch(1)
    assert sorted(dataset.shards_of(0, 1)) == sorted(first) and dataset.shards_of(0, 1) != first
    loader = torch.utils.data.DataLoader(SyntheticShards(with_noisy), batch_size=None, num_workers=2)
    assert sorted(item["key"] for item in loader) == [f"{i:09d}" for i in range(14)]  # each sample once


def test_resample_draws_fresh_noise_after_the_first_epoch(with_noisy):
    fixed, fresh = SyntheticShards(with_noisy, shuffle=False), SyntheticShards(with_noisy, shuffle=False, resample=True)
    original = next(iter(fixed))["noisy"]
    assert torch.equal(next(iter(fresh))["noisy"], original)
    fresh.set_epoch(1)
    fixed.set_epoch(1)
    assert not torch.equal(next(iter(fresh))["noisy"], original) and torch.equal(next(iter(fixed))["noisy"], original)


def test_corrupt_and_truncated_shards_are_named(with_noisy, tmp_path):
    data = (with_noisy / "000001.tar").read_bytes()
    truncated = tmp_path / "000001.tar"
    truncated.write_bytes(data[: len(data) // 2 + 7])
    with pytest.raises(DataFileError, match="000001.tar is truncated or corrupt"):
        list(read_shard(truncated))
    urls = [os.fspath(with_noisy / "000000.tar"), os.fspath(truncated)]
    with pytest.raises(DataFileError, match="000001.tar"):
        list(SyntheticShards(urls, shuffle=False))
    with pytest.warns(RuntimeWarning, match="skipping the rest of a shard: shard .*000001.tar"):
        items = list(SyntheticShards(urls, shuffle=False, on_error="warn"))
    assert [item["key"] for item in items[:3]] == ["000000000", "000000001", "000000002"]
    lacking = tmp_path / "lacking.tar"
    with tarfile.open(lacking, "w") as tar:
        info = tarfile.TarInfo("000000007.clean.png")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"\x89PNG"))
    with pytest.raises(DataFileError, match="lacking.tar, sample 000000007: lacks its json member"):
        list(read_shard(lacking))
    with pytest.raises(FileNotFoundError, match="holds no shards.json"):
        SyntheticShards(tmp_path)


def test_shard_options_are_checked(tmp_path, capsys):
    for argv, message in [
        (["--with-noisy"], "--with-noisy is for --format webdataset"),
        (["--format", "webdataset", "--no-raw"], "--no-raw is for --format png/tiff"),
        (["--format", "webdataset", "--shard-size", "0"], "--shard-size must be at least 1"),
    ]:
        with pytest.raises(SystemExit):
            cli.main(["synth", "-o", os.fspath(tmp_path / "out"), *argv])
        assert message in capsys.readouterr().err


def tiny_denoiser_config(**data):
    from cycleisp_fast.training import resolve_config

    raw = {
        "task": "denoise-srgb",
        "steps": 2,
        "batch_size": 2,
        "patch_size": 16,
        "log_every": 1,
        "save_every": 0,
        "val_every": 0,
        "model": {"n_feats": 8, "num_rrg": 1, "num_dab": 1, "reduction": 4},
        "val": {"count": 3, "patch_size": 16},
        "data": data,
    }
    return resolve_config(raw)


def test_training_crops_are_crops_of_the_pairs_synth_stored(with_noisy):
    from cycleisp_fast.training import make_task

    task = make_task(tiny_denoiser_config(shards=os.fspath(with_noisy)), torch.device("cpu"))
    stored = [sample for url in shards_in(with_noisy) for sample in read_shard(url)]
    patches = task.dataset(8)
    for index in range(len(patches)):
        item = patches[index]
        assert item["noisy"].shape == (3, 16, 16) and item["noisy_raw"].shape == (4, 8, 8)
        # the stored noisy PNG holds the pair's noisy image to 16 bits: find the sample and offset of this crop
        matches = [
            (sample["key"], top, left)
            for sample in stored
            for top in range(0, 17, 2)
            for left in range(0, 17, 2)
            if (sample["noisy"][:, top : top + 16, left : left + 16] - item["noisy"]).abs().max() <= 0.5 / 65535
        ]
        assert len(matches) == 1, index
    batches = task.validation_batches()
    assert [tuple(b["noisy"].shape) for b in batches] == [(2, 3, 16, 16), (1, 3, 16, 16)]
    centre = stored[0]["noisy"][:, 8:24, 8:24]
    assert (batches[0]["noisy"][0] - centre).abs().max() <= 0.5 / 65535


def test_training_on_shards_runs_and_checks_its_config(with_noisy, tmp_path):
    from cycleisp_fast.training import ConfigError, make_task, train

    result = train(tiny_denoiser_config(shards=os.fspath(with_noisy)), tmp_path / "run", device="cpu", progress=False)
    assert result.step == 2 and all(np.isfinite(v) for v in result.metrics.values())
    with pytest.raises(ConfigError, match="'data.images'.* does not fit a run on shards"):
        tiny_denoiser_config(shards=os.fspath(with_noisy), images="photos")
    other = tiny_denoiser_config(shards=os.fspath(with_noisy))
    other["noise"]["levels"] = "cycleisp_dnd"
    with pytest.raises(
        ConfigError, match="'data.shards': the shards were synthesised with noise.levels = 'unprocessing'"
    ):
        make_task(other, torch.device("cpu"))
    with pytest.raises(ConfigError, match="'data.shards': .*holds no shards.json"):
        make_task(tiny_denoiser_config(shards=os.fspath(tmp_path)), torch.device("cpu"))
