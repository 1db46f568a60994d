"""The benchmarks' timing (``bench.measure.interleaved_seconds``): the steps take turns in blocks, each block sized
from the step's previous one, a step's time is the median of its blocks, and a drift of the machine's speed falls
on every step alike. Time is a fake clock that the steps advance, so nothing here depends on this machine's speed."""

from __future__ import annotations

import itertools

import pytest
import torch

from cycleisp_fast.bench import measure
from cycleisp_fast.bench.measure import TIMING_ROUNDS, interleaved_seconds

CPU = torch.device("cpu")


class FakeClock:
    """``perf_counter`` that moves only when a step says so; ``slowdown`` multiplies every step's cost."""

    def __init__(self):
        self.now = 0.0
        self.slowdown = 1.0

    def perf_counter(self) -> float:
        return self.now

    def step(self, seconds: float, log: list[str], name: str):
        def run():
            log.append(name)
            self.now += seconds * self.slowdown

        return run


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(measure.time, "perf_counter", fake.perf_counter)
    return fake


def test_steps_take_turns_in_blocks_of_their_share(clock):
    log: list[str] = []
    steps = {"slow": clock.step(0.002, log, "slow"), "fast": clock.step(0.0005, log, "fast")}
    seconds = interleaved_seconds(steps, 0.1, CPU)
    assert seconds == {"slow": pytest.approx(0.002), "fast": pytest.approx(0.0005)}
    # one uncounted call each, then per round a block of each: 0.1 s / 5 rounds = 20 ms per block
    blocks = [(name, len(list(calls))) for name, calls in itertools.groupby(log)]
    assert blocks == [("slow", 1), ("fast", 1)] + [("slow", 10), ("fast", 40)] * TIMING_ROUNDS


def test_a_drift_of_the_machine_falls_on_every_step_alike(clock):
    """The machine runs 3x slower from the third round on: each step's median moves, their ratio does not (timed
    one after the other, the second step would have met only the slow machine: a ratio 3x off)."""
    log: list[str] = []
    steps = {"a": clock.step(0.004, log, "a"), "b": clock.step(0.001, log, "b")}
    calls = {"count": 0}
    original = steps["a"]

    def a_with_drift():
        calls["count"] += 1
        if calls["count"] == 1 + 2 * 5:  # the first call of round 3 (one uncounted call, then blocks of 5)
            clock.slowdown = 3.0
        original()

    seconds = interleaved_seconds({"a": a_with_drift, "b": steps["b"]}, 0.1, CPU)
    assert seconds["a"] / seconds["b"] == pytest.approx(4.0)
    assert seconds["a"] == pytest.approx(0.012)  # three rounds of five at the slow speed: the median's side


def test_a_step_slower_than_its_share_still_runs_once_per_round(clock):
    log: list[str] = []
    seconds = interleaved_seconds({"network": clock.step(1.5, log, "network")}, 1.0, CPU)
    assert seconds == {"network": pytest.approx(1.5)}
    assert log == ["network"] * (1 + TIMING_ROUNDS)
