"""The benchmark harness (bench/bench.py) on stand-in workloads: no model, no GPU, a fake clock.

The CUDA rows cannot be timed on a machine without a GPU, but they go through the same harness as
the CPU rows: these tests hold it to its promises (every workload called before any timed block,
rounds in rotated order, warm-up until the times settle, ratios per round).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("effnet_bench", ROOT / "bench" / "bench.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["effnet_bench"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


class FakeClock:
    """Seconds per block from a schedule per implementation; records every call and every timed block."""

    def __init__(self, per_call: dict[str, list[float]]) -> None:
        self.per_call = per_call  # successive blocks' seconds per call; the last value repeats
        self.blocks: list[str] = []
        self.events: list[str] = []

    def workload(self, name: str) -> Any:
        return lambda: self.events.append(f"call {name}")

    def __call__(self, fn: Any, number: int) -> float:
        fn()  # one real call tells the clock which workload it times
        name = self.events[-1].removeprefix("call ")
        self.events.append(f"block {name}")
        self.blocks.append(name)
        schedule = self.per_call[name]
        i = min(self.blocks.count(name) - 1, len(schedule) - 1)
        return schedule[i] * number


def test_every_workload_runs_before_the_first_timed_block(bench: ModuleType) -> None:
    clock = FakeClock({"timm": [1.0], "effnet": [1.0], "torchvision": [1.0]})
    fns = {name: clock.workload(name) for name in ("timm", "effnet", "torchvision")}
    bench.time_interleaved(fns, clock, rounds=2, min_block_s=0.0, max_warmup_s=10.0, first_calls=3)
    first_block = clock.events.index(next(e for e in clock.events if e.startswith("block")))
    warm = clock.events[:first_block]
    assert all(warm.count(f"call {name}") >= 3 for name in fns), f"not every model was warmed first: {warm}"


def test_rounds_rotate_the_order_so_each_implementation_goes_first(bench: ModuleType) -> None:
    clock = FakeClock({"timm": [1.0], "effnet": [1.0], "torchvision": [1.0]})
    fns = {name: clock.workload(name) for name in ("timm", "effnet", "torchvision")}
    timing = bench.time_interleaved(fns, clock, rounds=3, min_block_s=0.0, max_warmup_s=10.0)
    assert [order[0] for order in timing.orders] == ["timm", "effnet", "torchvision"]
    assert all(sorted(order) == sorted(fns) for order in timing.orders)
    assert clock.blocks[-9:] == [name for order in timing.orders for name in order]


def test_warm_up_lasts_until_the_times_settle(bench: ModuleType) -> None:
    # A GPU whose clocks ramp: effnet's first blocks are slow, then steady.
    ramp = [4.0, 4.0, 4.0, 2.0, 1.5, 1.0, 1.0, 1.0]
    clock = FakeClock({"timm": [1.0], "effnet": ramp})
    fns = {name: clock.workload(name) for name in ("timm", "effnet")}
    timing = bench.time_interleaved(fns, clock, rounds=2, min_block_s=0.0, max_warmup_s=10.0)
    assert timing.warmup_stable
    assert timing.seconds_per_call["effnet"] == [1.0, 1.0], "a timed round ran before the ramp had settled"


def test_ratios_are_reference_over_effnet_per_round(bench: ModuleType) -> None:
    timing = bench.Timing(
        seconds_per_call={"timm": [2.0, 3.0, 4.0], "effnet": [1.0, 2.0, 2.0]},
        orders=[["timm", "effnet"], ["effnet", "timm"], ["timm", "effnet"]],
        calls_per_block={"timm": 1, "effnet": 1},
        warmup_rounds=3,
        warmup_stable=True,
    )
    row = bench.summarise(bench.Row("b0", "infer1", 1, "contiguous", "eager"), timing)
    assert row.ratio["timm"] == pytest.approx(2.0)  # median of 2.0, 1.5, 2.0
    assert row.ratio_iqr["timm"] == pytest.approx((1.75, 2.0))
    assert row.median_ms["effnet"] == pytest.approx(2000.0)
