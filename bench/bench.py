"""effnet against timm and torchvision on CPU: inference and training-step throughput.

Every implementation gets the same weights (timm's, copied by position, API-4), the same
inputs and the same work.  The implementations are timed interleaved in one process: each
round measures every implementation once with ``torch.utils.benchmark`` (``blocked_autorange``,
whose block-size estimate doubles as a warm-up), in an order rotated from round to round, so
that a change in machine load hits all of them alike.

Ratios are ``reference time / effnet time`` measured in the same round, summarised by their
median and interquartile range over the rounds: a ratio above 1 means effnet is faster, and
``timm/effnet >= 0.97`` is the parity target of issue 7.  On a shared 2-core machine one round's
ratio wanders by about +-10% (a quarter of the CPU time is spent in the kernel, faulting in the
pages of activations too large for malloc to keep), so the default is 9 rounds: with 5, the median
moved by 7% between two runs of the same code.  tests/extras/test_performance.py (EXT-6) checks
the work itself, operator by operator.  Results go to ``OUT.json`` and
``OUT.md`` (default ``reports/bench``) and the table to stdout.

    python bench/bench.py            # b0 and b3, about 15 minutes on 2 idle cores
    python bench/bench.py --quick    # b0 only, fewer rounds: about a minute
    python bench/bench.py --threads 1 --timer process   # steadier on a busy machine
    python bench/bench.py --variants b0 --tasks infer1 --compile   # add torch.compile (slow to compile)
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
from torch.utils import benchmark

import effnet

ROOT = Path(__file__).resolve().parents[1]
PARITY = 0.97  # issue 7: effnet's throughput at least 97% of timm's
RESOLUTION = {name: v.resolution for name, v in effnet.VARIANTS.items()}

# Task name -> (batch size, training step?).
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


@dataclass
class Row:
    variant: str
    task: str
    batch: int
    format: str
    mode: str
    status: str = "ok"
    median_ms: dict[str, float] = field(default_factory=dict)
    iqr_ms: dict[str, float] = field(default_factory=dict)
    # Per reference implementation: median and (q1, q3) of the per-round ratios ref time / effnet time.
    ratio: dict[str, float] = field(default_factory=dict)
    ratio_iqr: dict[str, tuple[float, float]] = field(default_factory=dict)
    compile_s: dict[str, float] = field(default_factory=dict)
    rounds_ms: dict[str, list[float]] = field(default_factory=dict)  # each round's median, in run order


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


def models_for(variant: str, impls: tuple[str, ...]) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    reference = build("timm", variant)
    models = {"timm": reference}
    for impl in impls:
        if impl != "timm":
            models[impl] = build(impl, variant)
            copy_weights(reference, models[impl])
    # The work is identical only if the function is: check eval outputs agree before timing.
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        expected = reference.eval()(x)
        for impl, model in models.items():
            diff = (model.eval()(x) - expected).abs().max().item()
            if diff > 1e-4:
                raise SystemExit(f"{impl} {variant} differs from timm by {diff:g} with the same weights")
    return {impl: models[impl] for impl in impls}


def workload(model: nn.Module, task: str, resolution: int, fmt: str) -> Callable[[], Any]:
    batch, train = TASKS[task]
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 3, resolution, resolution, generator=gen).contiguous(memory_format=FORMATS[fmt])
    model.to(memory_format=FORMATS[fmt])
    if not train:
        model.eval()

        def infer() -> Tensor:
            with torch.inference_mode():
                return model(x)

        return infer

    model.train()
    target = torch.randint(0, 1000, (batch,), generator=gen)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), target).backward()
        opt.step()

    return step


def quartiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def measure(
    variant: str, task: str, fmt: str, compiled: bool, models: dict[str, nn.Module], args: argparse.Namespace
) -> Row:
    batch, _ = TASKS[task]
    row = Row(variant, task, batch, fmt, f"compile ({args.compile_backend})" if compiled else "eager")
    fns: dict[str, Callable[[], Any]] = {}
    if compiled:
        torch._dynamo.reset()  # one cache entry per forward code object: never the recompile limit
    for impl, model in models.items():
        fn = workload(model, task, RESOLUTION[variant], fmt)
        if compiled:
            model_fn = torch.compile(model, backend=args.compile_backend)
            fn = workload(model_fn, task, RESOLUTION[variant], fmt)  # type: ignore[arg-type]
            start = time.perf_counter()
            try:
                fn()
            except Exception as e:  # report, don't crash: the row says why compile is unsupported
                row.status = f"unsupported: {impl}: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
                return row
            row.compile_s[impl] = round(time.perf_counter() - start, 1)
        fns[impl] = fn

    per_round: dict[str, list[benchmark.Measurement]] = {impl: [] for impl in fns}
    order = list(fns)
    for r in range(args.rounds):
        for impl in order[r % len(order) :] + order[: r % len(order)]:
            timer = benchmark.Timer(
                stmt="fn()",
                globals={"fn": fns[impl]},
                num_threads=args.threads,
                timer=TIMERS[args.timer],
                label=f"{variant} {task} {fmt} {row.mode}",
                description=impl,
            )
            per_round[impl].append(timer.blocked_autorange(min_run_time=args.min_run_time))

    for impl, ms in per_round.items():
        merged = benchmark.Measurement.merge(ms)[0]
        row.median_ms[impl] = merged.median * 1e3
        row.rounds_ms[impl] = [round(m.median * 1e3, 3) for m in ms]
        row.iqr_ms[impl] = merged.iqr * 1e3
    for ref in per_round:
        if ref == "effnet" or "effnet" not in per_round:
            continue
        ratios = [a.median / b.median for a, b in zip(per_round[ref], per_round["effnet"], strict=True)]
        row.ratio[ref] = statistics.median(ratios)
        row.ratio_iqr[ref] = quartiles(ratios)
    return row


def environment(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "torch": torch.__version__,
        "timm": timm.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "num_threads": args.threads,
        "mkldnn": torch.backends.mkldnn.is_available(),
        "timer": args.timer,
        "compile_backend": args.compile_backend if args.compile else None,
        "rounds": args.rounds,
        "min_run_time_s": args.min_run_time,
    }


def fmt_ms(row: Row, impl: str) -> str:
    if impl not in row.median_ms:
        return "-"
    return f"{row.median_ms[impl]:.1f} ± {row.iqr_ms[impl] / 2:.1f}"


def fmt_ratio(row: Row, ref: str) -> str:
    if ref not in row.ratio:
        return "-"
    lo, hi = row.ratio_iqr[ref]
    mark = "" if ref != "timm" or row.ratio[ref] >= PARITY else " **<0.97**"
    return f"{row.ratio[ref]:.3f} [{lo:.3f}, {hi:.3f}]{mark}"


def markdown(rows: list[Row], env: dict[str, Any], load: dict[str, Any], impls: tuple[str, ...]) -> str:
    refs = [i for i in impls if i != "effnet"]
    lines = [
        "# effnet benchmark",
        "",
        f"CPU, {env['num_threads']} threads (torch.set_num_threads), torch {env['torch']}, timm {env['timm']}, "
        f"torchvision {env['torchvision']}; {env['timer']} time; {env['rounds']} interleaved rounds of "
        f"blocked_autorange (min_run_time {env['min_run_time_s']} s); load average before {load['before']}, "
        f"after {load['after']}; {load['wall_s']:.0f} s in all.",
        "",
        "Times: median ± half the IQR, in ms per call (inference: one forward pass under inference_mode; "
        "training: forward, cross-entropy, backward and an SGD step).  Ratios: REF time / effnet time in "
        "the same round, median [q1, q3] over rounds; above 1 means effnet is faster.  Parity: timm/effnet "
        f">= {PARITY}.",
        "",
        "| variant | task | format | mode | "
        + " | ".join(f"{i} ms" for i in impls)
        + " | "
        + " | ".join(f"{r}/effnet" for r in refs)
        + " |",
        "|" + "---|" * (4 + len(impls) + len(refs)),
    ]
    for row in rows:
        head = f"| {row.variant} | {row.task} | {row.format} | {row.mode} |"
        if row.status != "ok":
            lines.append(head + f" {row.status} |" + " |" * (len(impls) + len(refs) - 1))
            continue
        cells = [fmt_ms(row, i) for i in impls] + [fmt_ratio(row, r) for r in refs]
        lines.append(head + " " + " | ".join(cells) + " |")
    below = [r for r in rows if r.status == "ok" and r.ratio.get("timm", PARITY) < PARITY]
    lines += ["", f"Rows below parity: {len(below)} of {sum(r.status == 'ok' for r in rows)}."]
    compile_times = [f"{r.variant} {r.task} {r.format}: {r.compile_s}" for r in rows if r.compile_s]
    if compile_times:
        lines += ["", "Compile time (first call, s): " + "; ".join(compile_times)]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="b0 only, 3 rounds, shorter runs")
    p.add_argument("--variants", nargs="+", choices=sorted(RESOLUTION), help="default: b0 b3 (--quick: b0)")
    p.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    p.add_argument("--formats", nargs="+", choices=list(FORMATS), default=list(FORMATS))
    p.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS))
    p.add_argument("--compile", action="store_true", help="also time torch.compile (inductor) for each config")
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend (default inductor)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch.set_num_threads (default: all)")
    p.add_argument("--timer", choices=list(TIMERS), default="wall", help="wall clock or process CPU time")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 9, --quick 3)")
    p.add_argument("--min-run-time", type=float, help="seconds per blocked_autorange (default 0.5, --quick 0.2)")
    p.add_argument("--check", action="store_true", help=f"exit 1 if a timm/effnet ratio is below {PARITY}")
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "bench", help="writes OUT.json and OUT.md")
    args = p.parse_args(argv)
    args.variants = args.variants or (["b0"] if args.quick else ["b0", "b3"])
    args.rounds = args.rounds or (3 if args.quick else 9)
    args.min_run_time = args.min_run_time or (0.2 if args.quick else 0.5)
    if "effnet" not in args.impls:
        p.error("--impls must include effnet: every ratio is against it")
    args.impls = tuple(i for i in IMPLS if i in args.impls)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    env = environment(args)
    load_before = [round(x, 2) for x in os.getloadavg()]
    start = time.perf_counter()
    rows = []
    for variant in args.variants:
        models = models_for(variant, args.impls)
        for task in args.tasks:
            for fmt in args.formats:
                for compiled in (False, True) if args.compile else (False,):
                    row = measure(variant, task, fmt, compiled, models, args)
                    rows.append(row)
                    print(f"{variant} {task} {fmt} {row.mode}: {row.status} ratios {row.ratio}", file=sys.stderr)
            # Channels-last leaves the models in that format; the next task sets its own.
    if not args.compile:
        rows.append(Row("all", "all", 0, "all", "compile", status=COMPILE_SKIPPED))
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
    args.out.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    print(text)
    print(f"wrote {args.out.with_suffix('.md')} and {args.out.with_suffix('.json')}", file=sys.stderr)
    below = [r for r in rows if r.status == "ok" and r.ratio.get("timm", PARITY) < PARITY]
    return 1 if args.check and below else 0


if __name__ == "__main__":
    raise SystemExit(main())
