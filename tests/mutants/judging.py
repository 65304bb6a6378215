"""One way to run a fork through the suite: the pytest arguments, the run, and one reading of its outcome.

Every fork runner (tests/mutants/run.py, generate.py, rewrites.py; tests/forks/conformance_run.py)
runs ``pytest ... --impl FORK --report REPORT`` through ``run_fork`` and gets one ``RunOutcome``, classified
once from the exit status, the report (tests/support/verdict.py ``read``) and, for a fork the suite refuses at
load, the refusal that the runners' plugin (tests/mutants/order.py, ``--refusal-out``) writes; never
from pytest's output, which is kept only to be shown.  The runners' shared plumbing lives here too:
the common command-line options, the work directory, the thread pool, the deciding clauses.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support import spec, subrun, verdict
from tests.support.verdict import Report

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "effnet" / "model.py"
QUIET = ["-q", "-p", "no:cacheprovider"]  # every run: one line per module, no cache directory left behind
CONFORMANCE = ["tests/conformance", *QUIET]
QUICK = ["-m", "not slow"]
ORDER_PLUGIN = ["-p", "tests.mutants.order"]


# --- The refusal, read in one place (the report: tests/support/verdict.py ``read``) -----------------------
@dataclass(frozen=True)
class Refusal:
    """Why the suite refused the fork before any test ran (tests/mutants/order.py ``--refusal-out``)."""

    message: str
    clauses: list[str]  # the clauses the message names
    loaded: bool  # the fork imported (it is not the API); False: it failed to import


# --- One run, one outcome -----------------------------------------------------------------------
@dataclass(frozen=True)
class Order:
    """The options of the runners' plugin (tests/mutants/order.py) for one run."""

    durations_in: Path | None = None
    durations_out: Path | None = None
    first_clauses: Sequence[str] = ()
    only_clauses: Sequence[str] = ()
    no_shrink: bool = False
    other_examples: int | None = None
    failures_out: Path | None = None
    stop_at_verdict: bool = False

    def args(self) -> list[str]:
        paths = (("--durations-in", self.durations_in), ("--durations-out", self.durations_out))
        out = [a for name, p in (*paths, ("--failures-out", self.failures_out)) if p for a in (name, str(p))]
        clauses = (("--first-clauses", self.first_clauses), ("--only-clauses", self.only_clauses))
        out += [a for name, c in clauses if c for a in (name, ",".join(c))]
        out += ["--no-shrink"] * self.no_shrink + ["--stop-at-verdict"] * self.stop_at_verdict
        return out + (["--other-examples", str(self.other_examples)] if self.other_examples else [])


@dataclass
class RunOutcome:
    """What one pytest run on a fork decided."""

    status: str  # "accepted", "rejected", "refused at load", "error" or "timeout" (classify)
    returncode: int | None
    report: Report | None
    refusal: Refusal | None
    log: Path
    seconds: float
    cpu_seconds: float | None

    @property
    def roots(self) -> list[str]:
        """The report's root causes, or the clauses the refusal names."""
        if self.refusal is not None:
            return self.refusal.clauses
        return self.report.root_causes if self.report else []

    @property
    def failed(self) -> list[str]:
        return self.report.failed if self.report else []

    def first_test(self) -> str:
        """The first root cause's failing test (its row's detail up to ": ")."""
        rows = [r for r in self.report.clauses if r.clause in self.roots] if self.report else []
        return rows[0].detail.split(": ", 1)[0] if rows else ""

    def refused(self, fork: Path) -> str:
        """The refusal in one line, the fork named by its file name."""
        assert self.refusal is not None
        message = " ".join(f"ERROR: {self.refusal.message}".split()).replace(str(fork), fork.name)
        return f"refused at load: {message[:300]}"

    def tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.strip().splitlines()[-lines:])


def classify(returncode: int | None, report: Report | None, refusal: Refusal | None) -> str:
    """The one classification of a run: a verdict from the report, a refusal at load, or none."""
    if returncode is None:
        return "timeout"
    if returncode in (0, 1) and report is not None:
        return "accepted" if returncode == 0 else "rejected"
    return "refused at load" if returncode == 4 and refusal is not None else "error"


def run_fork(
    fork: Path,
    report: Path,
    selection: Sequence[str],
    *,
    env: dict[str, str],
    timeout: float | None,
    preload: BaseContext | None,
    order: Order | None = Order(),
    extra: Sequence[str] = (),
    log: Path | None = None,
) -> RunOutcome:
    """``pytest SELECTION --impl FORK --report REPORT`` (with the runners' plugin and its ``order`` unless
    None), ``env`` added to this process's environment, its output in ``log`` (default REPORT.log): forked
    from ``preload``'s server or a plain subprocess (subrun.run_pytest_to).  Returns its outcome."""
    log = log or report.with_suffix(".log")
    refusal_path = report.with_suffix(".refused.json")
    for stale in (refusal_path, report.with_suffix(".json")):  # an earlier phase's, in the same place
        stale.unlink(missing_ok=True)
    plugin = [] if order is None else [*ORDER_PLUGIN, *order.args(), "--refusal-out", str(refusal_path)]
    args = [*selection, *plugin, "--impl", str(fork), "--report", str(report), *extra]
    returncode, seconds, cpu = subrun.run_pytest_to(args, log, {**os.environ, **env}, timeout, preload)
    parsed = verdict.read(report)
    refusal = Refusal(**json.loads(refusal_path.read_text())) if refusal_path.exists() else None
    return RunOutcome(classify(returncode, parsed, refusal), returncode, parsed, refusal, log, seconds, cpu)


def preload_context(no_preload: bool = False, whole_runs: int = 0) -> BaseContext | None:
    """subrun.preload_context, warm for a sweep of ``whole_runs`` conformance runs that go past the first
    failure, at least subrun.WARM_PAYS_FROM."""
    return subrun.preload_context(no_preload, warm=whole_runs >= subrun.WARM_PAYS_FROM)


def deciding(failing: Iterable[str]) -> list[str]:
    """The clauses whose tests decide the root causes once the clauses ``failing`` are known (or expected)
    to fail: these, and every clause that depends on none of them.  A clause that depends on a failing
    one is its consequence whatever its own tests say (verdict.root_causes), unless its failure is evident
    (an erratum's signature, a conclusive blame)."""
    failing = set(failing)
    return [c for c in spec.clauses() if c in failing or not (spec.depends_on(c) & failing)]


# --- The runners' plumbing ----------------------------------------------------------------------
def write_reports(out: Path, stem: str, markdown: str, payload: dict[str, Any], indent: int = 1) -> None:
    """OUT/STEM.md and OUT/STEM.json, a runner's summary."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.md").write_text(markdown + "\n")
    (out / f"{stem}.json").write_text(json.dumps(payload, indent=indent) + "\n")


def diff_section(heading: str, notes: dict[str, str], diff: str) -> list[str]:
    """A summary's section on one fork that was not as required: its heading, its notes, its diff."""
    lines = ["", f"### {heading}", ""]
    for label, note in notes.items():
        lines += [f"{label}: {note}", ""] if note else []
    return [*lines, "```diff", diff, "```"]


def split_pytest_args(argv: list[str] | None) -> tuple[list[str], list[str]]:
    """The command line (sys.argv[1:] by default) split at ``--``: the runner's own arguments, and
    the extra arguments for every pytest run."""
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        return argv, []
    i = argv.index("--")
    return argv[:i], argv[i + 1 :]


def add_common_options(p: argparse.ArgumentParser, what: str, timeout: float, timeout_help: str, out: str) -> None:
    """The options every runner has: --jobs, --timeout, --profile, --out, --keep, --no-preload."""
    p.add_argument("--jobs", "-j", type=int, default=2, help=f"{what} at a time (default 2)")
    p.add_argument("--timeout", type=float, default=timeout, help=timeout_help)
    profile = os.environ.get("EFFNET_HYPOTHESIS_PROFILE", "ci")
    p.add_argument("--profile", default=profile, help="hypothesis profile (default ci: derandomized)")
    p.add_argument("--out", default=str(ROOT / "reports"), help=f"where {out} go")
    p.add_argument("--keep", action="store_true", help="keep the forks, their output and reports")
    p.add_argument("--no-preload", action="store_true", help="plain subprocesses instead of a preloaded server")


@contextmanager
def workdir(prefix: str, jobs: int, keep: bool) -> Iterator[Path]:
    """A temporary directory for the forks, their logs and reports (removed unless ``keep``).  Each run
    gets ``cpu_count // jobs`` intra-op threads, set before the preloaded server imports torch: runs
    side by side would otherwise fight over the cores."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


T = TypeVar("T")
R = TypeVar("R")


def judge_all(
    items: Sequence[T],
    judge: Callable[[T], R],
    jobs: int,
    line: Callable[[R], str],
    width: int = 2,
    done: list[R] | None = None,
    after: Callable[[list[R]], None] | None = None,
) -> list[R]:
    """``judge`` on every item, ``jobs`` at a time, appended to ``done``; each result printed as
    ``[n/N] line(result)`` as it comes, after ``after(done)`` (generate.py rewrites its report)."""
    results: list[R] = [] if done is None else done
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(judge, item) for item in items]
        for n, future in enumerate(as_completed(futures), 1):
            results.append(future.result())
            if after is not None:
                after(results)
            print(f"[{n:>{width}}/{len(items)}] {line(results[-1])}", flush=True)
    return results
