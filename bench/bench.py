"""effnet against timm and torchvision: inference and training-step throughput, on CPU or CUDA.

Every implementation gets the same weights (timm's, copied by position, API-4), the same
inputs and the same work.  The implementations are timed interleaved in one process, with one
harness for both devices:

1. warm-up, before any timed round of a row: every implementation runs its workload a few times
   (on CUDA this is where ``torch.backends.cudnn.benchmark`` autotunes each model's convolutions,
   and where ``torch.compile`` compiles: every compiled model is compiled and warmed before the first
   timed round), then a block size is chosen per implementation (calls per block, doubled until a
   block takes ``--min-run-time``), then interleaved warm-up rounds run until every implementation's
   time per call is within ``STABLE`` of the round before (the GPU's clocks ramp up under load;
   a CPU's caches and allocator settle), at most ``--max-warmup`` seconds;
2. ``--rounds`` timed rounds: each round times one block of every implementation, in an order
   rotated from round to round, so that no implementation always goes first and a change in the
   machine's state hits all of them alike.  On CUDA a block is timed with CUDA events after a
   ``torch.cuda.synchronize``; on CPU with ``time.perf_counter`` (or process CPU time).

Ratios are ``reference time / effnet time`` measured in the same round, summarised by their
median and interquartile range over the rounds: a ratio above 1 means effnet is faster, and
``timm/effnet >= 0.97`` is the parity target of issue 7.  On a shared 2-core machine one round's
ratio wanders by about +-10% (a quarter of the CPU time is spent in the kernel, faulting in the
pages of activations too large for malloc to keep), so the default is 9 rounds: with 5, the median
moved by 7% between two runs of the same code.  tests/extras/test_performance.py (EXT-6) checks
the work itself, operator by operator.  Results go to ``OUT.json`` and
``OUT.md`` (default ``reports/bench``) and the table to stdout.

On CPU (the default without a GPU): B0 and B3, inference at batch 1 and 16 and a training step at
batch 8, contiguous and channels-last, float32.  On CUDA (the default where one is present): B0 at
batch 128 and B4 at batch 64, channels-last, as four rows each: eager float32 inference, eager
bfloat16-autocast inference, a bfloat16-autocast training step, and ``torch.compile`` (default mode)
of the bfloat16-autocast inference.  TF32 stays at PyTorch's defaults (recorded in the output).

    python bench/bench.py            # CPU: b0 and b3, about 15 minutes on 2 idle cores
    python bench/bench.py --quick    # b0 only, fewer rounds: about a minute
    python bench/bench.py --threads 1 --timer process   # steadier on a busy machine
    python bench/bench.py --variants b0 --tasks infer1 --compile   # add torch.compile (slow to compile)
    python bench/bench.py --device cuda        # the CUDA rows (b0 and b4)
    python bench/bench.py --dry-run            # the CUDA rows' code path on the CPU, tiny: a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import timm
import torch
import torchvision
from torch import Tensor, nn

import effnet

ROOT = Path(__file__).resolve().parents[1]
PARITY = 0.97  # issue 7: effnet's throughput at least 97% of timm's
RESOLUTION = {name: v.resolution for name, v in effnet.VARIANTS.items()}
# Warm-up ends when every implementation's time per call moved by less than STABLE between rounds,
# STABLE_ROUNDS rounds in a row (a GPU's clocks ramp over a few hundred milliseconds of load).
STABLE = 0.02
STABLE_ROUNDS = 2
# Seconds of warm-up rounds at most per row: a GPU settles within seconds; a shared CPU's rounds
# wander by +-10% and never meet STABLE, so there the warm-up is kept short.
MAX_WARMUP_S = {"cuda": 60.0, "cpu": 5.0}

# CPU task name -> (batch size, training step?).
TASKS: dict[str, tuple[int, bool]] = {"infer1": (1, False), "infer16": (16, False), "train8": (8, True)}
FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
IMPLS = ("timm", "effnet", "torchvision")
# CPU time of the process is far less sensitive than wall time to other processes on a busy machine
# (with more than one thread it also counts time spent waiting in OpenMP barriers).
TIMERS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "process": time.process_time}
COMPILE_SKIPPED = (
    "skipped: compiling one b0 with inductor took about 3 minutes on this 2-core machine (190 s measured), "
    "so the default run does not compile; pass --compile to add a compiled row for every selected config"
)
# CUDA: the batch per variant (large enough to fill an H100/H200), and the rows of each variant.
CUDA_BATCH = {"b0": 128, "b1": 128, "b2": 96, "b3": 96, "b4": 64, "b5": 32, "b6": 32, "b7": 16, "b8": 8, "l2": 4}
CUDA_VARIANTS = ["b0", "b4"]
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class Case:
    """One row's workload: what each implementation runs, the same for all of them."""

    task: str  # a name for the table: infer1, train8, infer128, ...
    batch: int
    train: bool
    precision: str  # fp32, or bf16 under torch.autocast
    compiled: bool


def cpu_cases(args: argparse.Namespace) -> list[Case]:
    return [
        Case(task, batch, train, "fp32", compiled)
        for task in args.tasks
        for batch, train in [TASKS[task]]
        for compiled in ((False, True) if args.compile else (False,))
    ]


def cuda_cases(variant: str, batch: int) -> list[Case]:
    return [
        Case(f"infer{batch}", batch, False, "fp32", False),
        Case(f"infer{batch}", batch, False, "bf16", False),
        Case(f"train{batch}", batch, True, "bf16", False),
        Case(f"infer{batch}", batch, False, "bf16", True),
    ]


@dataclass
class Row:
    variant: str
    task: str
    batch: int
    format: str
    mode: str
    precision: str = "fp32"
    device: str = "cpu"
    status: str = "ok"
    median_ms: dict[str, float] = field(default_factory=dict)
    iqr_ms: dict[str, float] = field(default_factory=dict)
    # Per reference implementation: median and (q1, q3) of the per-round ratios ref time / effnet time.
    ratio: dict[str, float] = field(default_factory=dict)
    ratio_iqr: dict[str, tuple[float, float]] = field(default_factory=dict)
    compile_s: dict[str, float] = field(default_factory=dict)
    calls_per_block: dict[str, int] = field(default_factory=dict)
    warmup_rounds: int = 0
    warmup_stable: bool = True  # False: --max-warmup ran out before the times settled
    rounds_ms: dict[str, list[float]] = field(default_factory=dict)  # each round's time per call, in run order
    order: list[list[str]] = field(default_factory=list)  # each round's order of implementations


def build(impl: str, variant: str) -> nn.Module:
    if impl == "timm":
        # timm's defaults switch classifier dropout and stochastic depth off; effnet's and
        # torchvision's are the paper's, so set timm's alike for the same training work.
        rates = {"drop_rate": effnet.VARIANTS[variant].drop_rate, "drop_path_rate": effnet.model.DROP_PATH_RATE}
        return timm.create_model(f"efficientnet_{variant}", **rates)
    if impl == "effnet":
        return getattr(effnet, f"efficientnet_{variant}")()
    return getattr(torchvision.models, f"efficientnet_{variant}")()


@torch.no_grad()
def copy_weights(src: nn.Module, dst: nn.Module) -> None:
    """Copy every parameter and buffer by position (the three share state_dict order and shapes)."""
    s, d = list(src.state_dict().values()), list(dst.state_dict().values())
    if [t.shape for t in s] != [t.shape for t in d]:
        raise SystemExit(f"{type(dst).__name__}: state_dict shapes differ from timm's; cannot share weights")
    for a, b in zip(d, s, strict=True):
        a.copy_(b)


def models_for(variant: str, impls: tuple[str, ...], device: torch.device) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    reference = build("timm", variant)
    models = {"timm": reference}
    for impl in impls:
        if impl != "timm":
            models[impl] = build(impl, variant)
            copy_weights(reference, models[impl])
    # The work is identical only if the function is: check eval outputs agree (on the CPU) before timing.
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        expected = reference.eval()(x)
        for impl, model in models.items():
            diff = (model.eval()(x) - expected).abs().max().item()
            if diff > 1e-4:
                raise SystemExit(f"{impl} {variant} differs from timm by {diff:g} with the same weights")
    return {impl: models[impl].to(device) for impl in impls}


def workload(
    model: nn.Module, case: Case, resolution: int, fmt: str, device: torch.device, compiled: bool = False
) -> Callable[[], Any]:
    """A call that runs ``case`` once on ``model`` (compiled with torch.compile, default mode, if asked)."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(case.batch, 3, resolution, resolution, generator=gen)
    x = x.to(device).contiguous(memory_format=FORMATS[fmt])
    model.to(memory_format=FORMATS[fmt])
    model.train(case.train)
    run: Callable[[Tensor], Tensor] = torch.compile(model, backend=COMPILE_BACKEND) if compiled else model
    dtype = PRECISIONS[case.precision]

    def autocast() -> Any:
        return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)

    if not case.train:

        def infer() -> Tensor:
            with torch.inference_mode(), autocast():
                return run(x)

        return infer

    target = torch.randint(0, 1000, (case.batch,), generator=gen).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast():
            loss = nn.functional.cross_entropy(run(x), target)
        loss.backward()
        opt.step()

    return step


COMPILE_BACKEND = "inductor"  # set from --compile-backend in main


# --- The harness: warm-up, interleaved rotated rounds, ratios (both devices) -------------------------
class Clock:
    """Seconds for ``number`` calls of ``fn``: CUDA events around the calls, after a synchronize, on a GPU;
    a host timer on the CPU."""

    def __init__(self, device: torch.device, timer: Callable[[], float] = time.perf_counter) -> None:
        self.device = device
        self.timer = timer

    def __call__(self, fn: Callable[[], Any], number: int) -> float:
        if self.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(self.device)  # nothing queued before the block is counted in it
            start.record()
            for _ in range(number):
                fn()
            end.record()
            end.synchronize()
            return float(start.elapsed_time(end)) / 1e3
        t0 = self.timer()
        for _ in range(number):
            fn()
        return self.timer() - t0


def rotated(order: list[str], r: int) -> list[str]:
    """Round ``r``'s order: the list rotated by r, so each implementation goes first in turn."""
    k = r % len(order)
    return order[k:] + order[:k]


@dataclass
class Timing:
    seconds_per_call: dict[str, list[float]]  # per implementation, one per timed round
    orders: list[list[str]]
    calls_per_block: dict[str, int]
    warmup_rounds: int
    warmup_stable: bool


def time_interleaved(
    fns: dict[str, Callable[[], Any]],
    clock: Clock,
    rounds: int,
    min_block_s: float,
    max_warmup_s: float,
    first_calls: int = 3,
) -> Timing:
    """Warm up every function (first calls, block size, rounds until the times settle), then ``rounds``
    timed rounds, each timing one block of every function in a rotated order."""
    order = list(fns)
    for name in order:  # first calls of all, before any timing: autotuning, compilation, allocation
        for _ in range(first_calls):
            fns[name]()
    calls = {}
    for name in order:
        number = 1
        while clock(fns[name], number) < min_block_s and number < 1 << 20:
            number *= 2
        calls[name] = number
    # Settled: for STABLE_ROUNDS rounds in a row, every time per call within STABLE of the round before.
    warm_start, warmup_rounds, streak = time.perf_counter(), 0, 0
    previous: dict[str, float] = {}
    while streak < STABLE_ROUNDS and time.perf_counter() - warm_start < max_warmup_s:
        current = {n: clock(fns[n], calls[n]) / calls[n] for n in rotated(order, warmup_rounds)}
        warmup_rounds += 1
        settled = bool(previous) and all(abs(current[n] / previous[n] - 1) < STABLE for n in order)
        streak = streak + 1 if settled else 0
        previous = current
    stable = streak >= STABLE_ROUNDS
    per_call: dict[str, list[float]] = {n: [] for n in order}
    orders = []
    for r in range(rounds):
        orders.append(rotated(order, r))
        for name in orders[-1]:
            per_call[name].append(clock(fns[name], calls[name]) / calls[name])
    return Timing(per_call, orders, calls, warmup_rounds, stable)


def quartiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def summarise(row: Row, timing: Timing) -> Row:
    """Medians and IQRs of each implementation's time, and of the per-round ratios reference / effnet."""
    for impl, times in timing.seconds_per_call.items():
        row.median_ms[impl] = statistics.median(times) * 1e3
        q1, q3 = quartiles(times)
        row.iqr_ms[impl] = (q3 - q1) * 1e3
        row.rounds_ms[impl] = [round(t * 1e3, 4) for t in times]
    row.calls_per_block = timing.calls_per_block
    row.warmup_rounds, row.warmup_stable, row.order = timing.warmup_rounds, timing.warmup_stable, timing.orders
    effnet_times = timing.seconds_per_call.get("effnet")
    for ref, times in timing.seconds_per_call.items():
        if ref == "effnet" or effnet_times is None:
            continue
        ratios = [a / b for a, b in zip(times, effnet_times, strict=True)]  # the same round: same machine state
        row.ratio[ref] = statistics.median(ratios)
        row.ratio_iqr[ref] = quartiles(ratios)
    return row


def measure(
    variant: str,
    case: Case,
    fmt: str,
    models: dict[str, nn.Module],
    args: argparse.Namespace,
    resolution: int | None = None,
) -> Row:
    device = torch.device(args.device)
    mode = f"compile ({COMPILE_BACKEND})" if case.compiled else "eager"
    row = Row(variant, case.task, case.batch, fmt, mode, case.precision, device.type)
    resolution = resolution or RESOLUTION[variant]
    if case.compiled:
        torch._dynamo.reset()  # one cache entry per forward code object: never the recompile limit
    fns: dict[str, Callable[[], Any]] = {}
    for impl, model in models.items():
        fns[impl] = workload(model, case, resolution, fmt, device, case.compiled)
        if case.compiled:  # compile now, timing the first call; every model is compiled before any round
            start = time.perf_counter()
            try:
                fns[impl]()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
            except Exception as e:  # report, don't crash: the row says why compile is unsupported
                row.status = f"unsupported: {impl}: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
                return row
            row.compile_s[impl] = round(time.perf_counter() - start, 1)
    clock = Clock(device, TIMERS[args.timer])
    return summarise(row, time_interleaved(fns, clock, args.rounds, args.min_run_time, args.max_warmup))


def environment(args: argparse.Namespace) -> dict[str, Any]:
    env: dict[str, Any] = {
        "device": args.device,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "num_threads": args.threads,
        "mkldnn": torch.backends.mkldnn.is_available(),
        "timer": "cuda events" if args.device == "cuda" else args.timer,
        "compile_backend": COMPILE_BACKEND,
        "rounds": args.rounds,
        "min_run_time_s": args.min_run_time,
        "max_warmup_s": args.max_warmup,
    }
    if args.device == "cuda":
        env |= {
            "gpu": torch.cuda.get_device_name(),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "cudnn_benchmark": True,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        }
    return env


def fmt_ms(row: Row, impl: str) -> str:
    if impl not in row.median_ms:
        return "-"
    return f"{row.median_ms[impl]:.2f} ± {row.iqr_ms[impl] / 2:.2f}"


def fmt_ratio(row: Row, ref: str) -> str:
    if ref not in row.ratio:
        return "-"
    lo, hi = row.ratio_iqr[ref]
    mark = "" if ref != "timm" or row.ratio[ref] >= PARITY else " **<0.97**"
    return f"{row.ratio[ref]:.3f} [{lo:.3f}, {hi:.3f}]{mark}"


def markdown(rows: list[Row], env: dict[str, Any], load: dict[str, Any], impls: tuple[str, ...]) -> str:
    refs = [i for i in impls if i != "effnet"]
    if env["device"] == "cuda":
        where = (
            f"CUDA, {env['gpu']} (CUDA {env['cuda']}, cuDNN {env['cudnn']}, cudnn.benchmark on, TF32: "
            f"cuDNN {env['cudnn_allow_tf32']}, matmul {env['matmul_allow_tf32']})"
        )
    else:
        where = f"CPU, {env['num_threads']} threads (torch.set_num_threads)"
    unstable = [
        f"{r.variant} {r.task} {r.precision} {r.mode}" for r in rows if r.status == "ok" and not r.warmup_stable
    ]
    lines = [
        "# effnet benchmark",
        "",
        f"{where}, torch {env['torch']}, timm {env['timm']}, torchvision {env['torchvision']}; {env['timer']}; "
        f"warm-up until each time per call moves by < {STABLE:.0%} for {STABLE_ROUNDS} rounds in a row (at most "
        f"{env['max_warmup_s']} s), "
        f"then {env['rounds']} interleaved rounds in rotated order, one block of at least "
        f"{env['min_run_time_s']} s per implementation each; load average before {load['before']}, "
        f"after {load['after']}; {load['wall_s']:.0f} s in all.",
        "",
        "Times: median ± half the IQR over rounds, in ms per call (inference: one forward pass under "
        "inference_mode; training: forward, cross-entropy, backward and an SGD step; bf16: under "
        "torch.autocast).  Ratios: REF time / effnet time in the same round, median [q1, q3] over rounds; "
        f"above 1 means effnet is faster.  Parity: timm/effnet >= {PARITY}.",
        "",
        "| variant | task | format | precision | mode | "
        + " | ".join(f"{i} ms" for i in impls)
        + " | "
        + " | ".join(f"{r}/effnet" for r in refs)
        + " |",
        "|" + "---|" * (5 + len(impls) + len(refs)),
    ]
    for row in rows:
        head = f"| {row.variant} | {row.task} | {row.format} | {row.precision} | {row.mode} |"
        if row.status != "ok":
            lines.append(head + f" {row.status} |" + " |" * (len(impls) + len(refs) - 1))
            continue
        cells = [fmt_ms(row, i) for i in impls] + [fmt_ratio(row, r) for r in refs]
        lines.append(head + " " + " | ".join(cells) + " |")
    below = [r for r in rows if r.status == "ok" and r.ratio.get("timm", PARITY) < PARITY]
    lines += ["", f"Rows below parity: {len(below)} of {sum(r.status == 'ok' for r in rows)}."]
    if unstable:
        lines += ["", f"Warm-up ran out of time before the times settled: {'; '.join(unstable)}."]
    compile_times = [f"{r.variant} {r.task} {r.format} {r.precision}: {r.compile_s}" for r in rows if r.compile_s]
    if compile_times:
        lines += ["", "Compile time (first call, s): " + "; ".join(compile_times)]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda where a GPU is present, else cpu")
    p.add_argument("--quick", action="store_true", help="b0 only, 3 rounds, shorter runs")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="the CUDA rows' code path (fp32, bf16 autocast, bf16 training step, compile) on the CPU with tiny "
        "inputs and 2 rounds: a smoke test of the harness, not a measurement",
    )
    p.add_argument(
        "--variants", nargs="+", choices=sorted(RESOLUTION), help="default: b0 b3 (CUDA: b0 b4; --quick: b0)"
    )
    p.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS), help="CPU tasks")
    p.add_argument("--formats", nargs="+", choices=list(FORMATS), help="default: both (CUDA: channels_last)")
    p.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS))
    p.add_argument("--compile", action="store_true", help="CPU: also time torch.compile for each config")
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend (default inductor)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch.set_num_threads (default: all)")
    p.add_argument("--timer", choices=list(TIMERS), default="wall", help="CPU: wall clock or process CPU time")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 9, --quick 3)")
    p.add_argument("--min-run-time", type=float, help="seconds per timed block (default 0.5, --quick 0.2)")
    p.add_argument("--max-warmup", type=float, help="seconds of warm-up rounds at most, per row (CUDA 60, CPU 5)")
    p.add_argument("--check", action="store_true", help=f"exit 1 if a timm/effnet ratio is below {PARITY}")
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "bench", help="writes OUT.json and OUT.md")
    args = p.parse_args(argv)
    if args.dry_run:
        args.device = "cpu"
        args.rounds, args.min_run_time, args.max_warmup = 2, 0.01, 1.0
        args.compile_backend = "eager"  # the compile path without inductor's minutes of compiling
        args.variants = args.variants or ["b0"]
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available (torch.cuda.is_available() is False)")
    default_variants = CUDA_VARIANTS if args.device == "cuda" else ["b0", "b3"]
    args.variants = args.variants or (["b0"] if args.quick else default_variants)
    args.formats = args.formats or (["channels_last"] if args.device == "cuda" or args.dry_run else list(FORMATS))
    args.max_warmup = args.max_warmup or MAX_WARMUP_S[args.device]
    args.rounds = args.rounds or (3 if args.quick else 9)
    args.min_run_time = args.min_run_time or (0.2 if args.quick else 0.5)
    if "effnet" not in args.impls:
        p.error("--impls must include effnet: every ratio is against it")
    args.impls = tuple(i for i in IMPLS if i in args.impls)
    return args


def main(argv: list[str] | None = None) -> int:
    global COMPILE_BACKEND
    args = parse_args(argv)
    COMPILE_BACKEND = args.compile_backend
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        # cuDNN autotunes each convolution's algorithm at its first call with a new shape: in the warm-up
        # calls that time_interleaved makes for every model before any timed round.
        torch.backends.cudnn.benchmark = True
    gpu_rows = device.type == "cuda" or args.dry_run
    env = environment(args)
    load_before = [round(x, 2) for x in os.getloadavg()]
    start = time.perf_counter()
    rows = []
    for variant in args.variants:
        models = models_for(variant, args.impls, device)
        batch = 2 if args.dry_run else CUDA_BATCH[variant]
        cases = cuda_cases(variant, batch) if gpu_rows else cpu_cases(args)
        resolution = 32 if args.dry_run else None
        for case in cases:
            for fmt in args.formats:
                row = measure(variant, case, fmt, models, args, resolution)
                rows.append(row)
                what = f"{variant} {case.task} {fmt} {case.precision} {row.mode}"
                print(f"{what}: {row.status} ratios {row.ratio}", file=sys.stderr)
        del models
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if not gpu_rows and not args.compile:
        rows.append(Row("all", "all", 0, "all", "compile", "all", status=COMPILE_SKIPPED))
    load = {
        "before": load_before,
        "after": [round(x, 2) for x in os.getloadavg()],
        "wall_s": time.perf_counter() - start,
    }
    text = markdown(rows, env, load, args.impls)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(text)
    payload = {"convention": "ratio = reference time / effnet time; > 1 means effnet is faster", "parity": PARITY}
    payload |= {"environment": env, "load_average": load, "rows": [asdict(r) for r in rows]}
    if args.dry_run:
        payload["dry_run"] = "the CUDA rows' code path on the CPU with tiny inputs: not a measurement"
    args.out.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    print(text)
    print(f"wrote {args.out.with_suffix('.md')} and {args.out.with_suffix('.json')}", file=sys.stderr)
    below = [r for r in rows if r.status == "ok" and r.ratio.get("timm", PARITY) < PARITY]
    return 1 if args.check and below and not args.dry_run else 0


if __name__ == "__main__":
    raise SystemExit(main())
