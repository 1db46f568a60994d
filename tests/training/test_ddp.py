"""DDP with Gloo in two processes: the ranks' gradients averaged, the weights equal to a one-process reference,
rank 0 the only writer."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from tiny_runs import TINY_DENOISER

from cycleisp_fast.training import (
    CHECKPOINT_NAME,
    Distributed,
    StepBatches,
    load_checkpoint,
    lr_factor,
    read_log,
    resolve_config,
)

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------------------------------- DDP

DDP_CONFIG = {
    "task": "denoise-srgb",
    "steps": 3,
    "batch_size": 2,
    "patch_size": 32,
    "log_every": 1,
    "val_every": 0,
    "save_every": 0,
    "lr": 1e-3,
    "model": TINY_DENOISER,
    "val": {"count": 2, "patch_size": 32},
}
DDP_SCRIPT = textwrap.dedent("""
    import json, os, sys
    import torch
    torch.set_num_threads(1)
    from cycleisp_fast.training import resolve_config, train

    raw, out = json.loads(sys.argv[1]), sys.argv[2]
    result = train(resolve_config(raw), out, device="cpu", progress=False)
    rank = int(os.environ["RANK"])
    torch.save(result.network.state_dict(), os.path.join(out, f"rank{rank}.pt"))
    print(f"rank {rank} of {os.environ['WORLD_SIZE']} done at step {result.step}")
""")


def ddp_reference(config: dict, world_size: int) -> dict:
    """The weights DDP should reach, computed in one process: at step s, rank r's loss on its own patches
    (StepBatches) and noise (offset s * world + r); the gradients averaged over the ranks; Adam."""
    from cycleisp_fast.training import make_task

    torch.manual_seed(config["seed"])
    task = make_task(config, torch.device("cpu"))
    network = task.network
    dataset = task.dataset(config["steps"] * world_size * config["batch_size"])
    optimizer = torch.optim.Adam(network.parameters(), lr=config["lr"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config))
    samplers = [
        iter(StepBatches(0, config["steps"], config["batch_size"], Distributed(r, world_size, r)))
        for r in range(world_size)
    ]
    for step in range(config["steps"]):
        gradients = []
        for rank in range(world_size):
            items = torch.stack([dataset[i] for i in next(samplers[rank])])
            network.zero_grad()
            task.loss(network, task.make_batch(items, offset=step * world_size + rank)).backward()
            gradients.append([p.grad.clone() for p in network.parameters()])
        for parameter, *grads in zip(network.parameters(), *gradients):
            parameter.grad = sum(grads) / world_size
        optimizer.step()
        scheduler.step()
    return network.state_dict()


def test_ddp_with_gloo_averages_the_ranks_gradients_and_saves_rank_0(tmp_path, image_folder):
    import json

    raw = {**DDP_CONFIG, "data": {"images": os.fspath(image_folder)}}
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        os.fspath(script),
        json.dumps(raw),
        os.fspath(out),
    ]
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=180, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "rank 0 of 2 done at step 3" in completed.stdout and "rank 1 of 2 done at step 3" in completed.stdout
    rank0, rank1 = (torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    checkpoint = load_checkpoint(out / CHECKPOINT_NAME)
    expected = ddp_reference(resolve_config(raw), world_size=2)
    for key, value in rank0.items():
        assert torch.equal(value, rank1[key]), key
        assert torch.equal(value, checkpoint["state_dict"][key]), key
        torch.testing.assert_close(value, expected[key], rtol=1e-5, atol=1e-6, msg=key)
    assert [r["step"] for r in read_log(out) if "loss" in r] == [1, 2, 3]  # one writer: rank 0
