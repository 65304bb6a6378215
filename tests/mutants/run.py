"""Hold the conformance suite to the mutant corpus (tests/mutants/corpus.toml).

Every mutant (a plausible bug patched into a copy of effnet/model.py) must be REJECTED: the
conformance suite fails on it, or refuses to load it, and the report's root causes must be
exactly the clause(s) the mutant declares (or its listed exception, `root_causes`, with the reason).
Every variation (effnet written differently, the same function) must be ACCEPTED: the whole
non-slow conformance suite passes.  A surviving mutant is a hole in the suite; a rejected
variation is a false positive; a mutant whose root cause is another clause is a verdict that
points its user at the wrong place.

    python tests/mutants/run.py                 # everything, two at a time (nox -s mutants)
    python tests/mutants/run.py -k se- -k drop  # forks whose name contains "se-" or "drop"
    python tests/mutants/run.py --check         # only check that every patch still applies
    python tests/mutants/run.py -- --maxfail 3  # extra pytest arguments after --
    python tests/mutants/run.py --matrix        # every test on every mutant: which checks can fail
    python tests/mutants/run.py --first-failure # quicker: stop each mutant at its first failed clause, roots unchecked
    python tests/mutants/run.py --combine-variations  # the variations that apply together as one fork (CI)
    python tests/mutants/run.py --network-only  # each fork with only its network constructors (API-1 aside)

Each fork is `pytest tests/conformance --impl FORK -q -p no:cacheprovider -m "not slow" --report
...` with EFFNET_HYPOTHESIS_PROFILE=ci (derandomized, so that a verdict is reproducible) and
``cpu_count // jobs`` torch threads per run.  The variations run first, every test, and record each test's duration.
A mutant runs only the tests that can decide its root causes (tests/mutants/order.py): those of
its expected root clauses R and of every clause that does not depend on R (judging.deciding says
why).  Hypothesis does not shrink a mutant's failures.
"Root causes" is the report's list; the run fails when it is not exactly R.
The runs are forked from a server process that has imported torch, timm and torchvision once
(--no-preload: plain subprocesses).  The table (fork, verdict, the clause(s) of the first failing
test, the test, time) is printed and written to reports/mutants.md and reports/mutants.json.
Exit status 0 only when every mutant is rejected and every variation accepted; 2 when the corpus
no longer applies to effnet/model.py.

--matrix runs only the mutants, each through every test (no -x, no reordering), and writes
reports/kill-matrix.md (and .json): for each conformance test function, the mutants it rejects, and the test
functions that reject none (checks not yet shown to be able to fail).  It costs a whole
conformance run per mutant, so it is a measurement, not part of CI.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.mutants import corpus, judging
from tests.support import spec

ROOT = corpus.ROOT
PYTEST_ARGS = [*judging.CONFORMANCE, *judging.QUICK]
# Drawn examples per property of the clauses a mutant does not declare (order.py): they are run for
# the root-cause check, to show that they pass; the declared clauses' properties keep the profile's.
OTHER_EXAMPLES = 5


@dataclass
class Result:
    kind: str
    name: str
    description: str
    expected: list[str]
    outcome: str  # "rejected" | "accepted" | "error" | "timeout"
    ok: bool  # a mutant rejected, a variation accepted
    caught_by: list[str]  # the report's root causes (or the clause of the load error)
    test: str  # the first root cause's failing test, or the load error
    seconds: float
    cpu_seconds: float | None  # the run's own CPU time (with --no-preload: unknown)
    returncode: int | None
    tail: str = ""  # the end of pytest's output when something went wrong
    failed_tests: list[str] = field(default_factory=list)  # with --matrix: every test that failed
    expected_roots: list[str] = field(default_factory=list)  # mutants: the root causes the report must name
    exception: str = ""  # why expected_roots differ from the declared clauses (corpus root_causes_reason)
    roots_checked: bool = True  # False with --first-failure: the run stopped at the first failure

    @property
    def roots_as_declared(self) -> bool:
        """A mutant's report names exactly its expected root causes (a variation, or a run that stopped
        at its first failure: trivially true)."""
        if self.kind != "mutant" or not self.roots_checked:
            return True
        return sorted(self.caught_by) == sorted(self.expected_roots)

    @property
    def verdict(self) -> str:
        if self.outcome in ("error", "timeout"):
            return self.outcome.upper()
        if self.kind == "mutant":
            return "rejected" if self.ok else "SURVIVED"
        return "accepted" if self.ok else "FALSE POSITIVE"


@dataclass
class Job:
    fork: corpus.Fork
    path: Path  # the fork's module
    report: Path  # --report base path
    order: judging.Order  # the runners' plugin's options (tests/mutants/order.py); with --stop-at-verdict
    # a mutant stops at its first failed clause, its root causes not checked
    network: bool = False  # --network-only: rejected only by a clause other than API-1


def run_one(job: Job, extra: list[str], timeout: float, preload: BaseContext | None, profile: str) -> Result:
    order = job.order
    env = {"EFFNET_HYPOTHESIS_PROFILE": profile}
    run = judging.run_fork(
        job.path, job.report, PYTEST_ARGS, env=env, timeout=timeout, preload=preload, order=order, extra=extra
    )
    recorded, shared = order.durations_out, job.path.parent / "durations.json"
    if run.returncode == 0 and recorded and recorded.exists() and not shared.exists():
        shutil.copy(recorded, shared.with_suffix(".tmp"))
        os.replace(shared.with_suffix(".tmp"), shared)  # the mutants' test order, from the first variation done
    fork = job.fork
    common: dict[str, Any] = {
        "kind": fork.kind,
        "name": fork.name,
        "description": fork.description,
        "expected": list(fork.clauses),
        "expected_roots": list(fork.expected_roots),
        "exception": fork.root_causes_reason,
        "roots_checked": not order.stop_at_verdict,
        "seconds": run.seconds,
        "cpu_seconds": run.cpu_seconds,
        "returncode": run.returncode,
    }
    if run.status == "timeout":
        return Result(
            **common, outcome="timeout", ok=False, caught_by=[], test="", tail=f"no verdict within {timeout:.0f} s"
        )
    test = run.refused(job.path) if run.refusal else run.first_test()
    failures = order.failures_out
    failed = json.loads(failures.read_text()) if failures and failures.exists() else []
    # A fork that is not the API is rejected at load; one that does not import is an error, not a verdict.
    refused_as_api = run.status == "refused at load" and run.refusal is not None and run.refusal.loaded
    outcome = "rejected" if refused_as_api else run.status if run.status in ("accepted", "rejected") else "error"
    ok = outcome == ("rejected" if fork.kind == "mutant" else "accepted")
    if job.network and outcome == "rejected" and set(run.roots) <= set(API_FORM):
        ok = False  # its network was not judged, or passed: only the names the shim lacks failed
    tail = "" if ok else run.tail(30)
    return Result(**common, outcome=outcome, ok=ok, caught_by=run.roots, test=test, tail=tail, failed_tests=failed)


def main(argv: list[str] | None = None) -> int:
    args, extra = _parse(argv)
    try:
        all_forks = corpus.load()
        texts = corpus.check_all(all_forks)
    except corpus.CorpusError as e:
        print(f"the mutant corpus does not apply to effnet/model.py:\n{e}", file=sys.stderr)
        return 2
    forks = [f for f in all_forks if not args.k or any(k in f.name for k in args.k)]
    forks = [f for f in forks if (not args.only or f.kind == args.only) and not (args.matrix and f.kind == "variation")]
    if args.network_only:
        form = [f.name for f in forks if not network_level(f)]
        if form:
            print(f"--network-only: left out {len(form)} mutants of the API's or a helper's form ({', '.join(form)})")
        forks = [f for f in forks if network_level(f)]
    if args.check or args.list:
        for f in forks if args.list else []:
            print(f"{f.kind:<9} {f.name:<32} {','.join(f.clauses):<18} {f.description}")
        kinds = [f.kind for f in forks]
        print(f"{kinds.count('mutant')} mutants and {kinds.count('variation')} variations apply to effnet/model.py")
        return 0

    if args.combine_variations:
        variations = [f for f in forks if f.kind == "variation"]
        combined, alone = corpus.combine(variations, corpus.SOURCE.read_text())
        if combined is not None:
            texts[combined.name] = corpus.build(combined, corpus.SOURCE.read_text())
            forks = [f for f in forks if f.kind == "mutant"] + [combined] + alone
    with judging.workdir("effnet-mutants-", args.jobs, args.keep) as workdir:
        preload = judging.preload_context(args.no_preload, 0 if args.first_failure else len(forks))
        jobs = [_job(f, texts[f.name], workdir, args.matrix, args.first_failure, args.network_only) for f in forks]
        # Variations first: they run every test, and they record the durations the mutants sort by.
        jobs.sort(key=lambda j: j.fork.kind != "variation")
        print(
            f"{len(jobs)} forks, {args.jobs} at a time, in {workdir}: pytest {' '.join(PYTEST_ARGS)} {' '.join(extra)}",
            flush=True,
        )
        start = time.perf_counter()
        results = _run_all(jobs, extra, args, preload)
        rejected = [r for r in results if r.name == corpus.COMBINED and not r.ok]
        if rejected:  # a false positive: judge each member alone, so that the table names the one(s) rejected
            members = corpus.members(next(f for f in forks if f.name == corpus.COMBINED), all_forks)
            print(f"the combined variations were rejected: judging its {len(members)} variations alone", flush=True)
            again = [_job(f, texts[f.name], workdir, network=args.network_only) for f in members]
            results += _run_all(again, extra, args, preload)
    total = time.perf_counter() - start
    order = {f.name: i for i, f in enumerate(all_forks)}
    results.sort(key=lambda r: order.get(r.name, len(order)))
    table = markdown(results, total, args)
    print("\n" + table)
    for r in results:
        if not r.ok and r.tail:
            print(f"\n--- {r.kind} {r.name}: {r.verdict} (pytest exit status {r.returncode})\n{r.tail}")
    if args.matrix:  # the verdicts are those of a normal run; what is new is every failing test
        matrix = kill_matrix(results, _test_functions(extra))
        judging.write_reports(Path(args.out), "kill-matrix", matrix, {r.name: r.failed_tests for r in results})
        print("\n" + matrix)
    else:
        write(results, table, total, args, extra)
    bad = [r for r in results if not r.ok or not r.roots_as_declared]
    print(
        f"\n{len(results) - len(bad)}/{len(results)} as required (rejected or accepted, and the root causes "
        f"as declared) in {total:.0f} s; "
        f"written to {Path(args.out) / ('kill-matrix.md' if args.matrix else 'mutants.md and mutants.json')}"
    )
    return 1 if bad else 0


def _run_all(jobs: list[Job], extra: list[str], args: argparse.Namespace, preload: BaseContext | None) -> list[Result]:
    """Every job, ``args.jobs`` at a time, each result printed as it comes."""

    def line(r: Result) -> str:
        by = f", root causes {', '.join(r.caught_by)}" if r.caught_by else ""
        wrong = "" if r.roots_as_declared else f" (NOT the declared {', '.join(r.expected_roots)})"
        return f"{r.kind} {r.name}: {r.verdict}{by}{wrong} in {r.seconds:.1f} s"

    return judging.judge_all(jobs, lambda j: run_one(j, extra, args.timeout, preload, args.profile), args.jobs, line)


# --network-only: each fork seen through a shim that defines only its network constructors (every helper,
# block and table of the fork private), judged on every clause but API-1 (which such a fork fails by design;
# API-2 still holds its network constructors to their signatures and to building).  A mutant must still be
# rejected, by a clause other than API-1; a variation still accepted.
NETWORK_NAMES = ("EfficientNet", "EfficientNetSequential", *(f"efficientnet_b{n}" for n in range(9)), "efficientnet_l2")
API_FORM = ("API-1",)  # the names a network-only fork lacks by design
NETWORK_ONLY_SHIM = """\"\"\"{name}, network-only form: the fork's network constructors, its other names private.\"\"\"

import importlib.util as _util
import sys as _sys

_spec = _util.spec_from_file_location("_effnet_full_{module}", {path!r})
_full = _util.module_from_spec(_spec)
_sys.modules[_spec.name] = _full
_spec.loader.exec_module(_full)
for _name in {names!r}:
    if hasattr(_full, _name):
        globals()[_name] = getattr(_full, _name)
"""


def network_only(fork: corpus.Fork, path: Path) -> Path:
    """A shim beside the fork at ``path`` that exposes only its network constructors."""
    shim = path.with_name(f"network_only_{path.name}")
    text = NETWORK_ONLY_SHIM.format(name=fork.name, module=fork.module_name, path=str(path), names=NETWORK_NAMES)
    shim.write_text(text)
    return shim


def network_level(fork: corpus.Fork) -> bool:
    """Whether a fork's network-only form is judged: a variation, or a mutant that changes the network (not
    only the names of API-1, and not marked ``network_unchanged`` in the corpus)."""
    return fork.kind == "variation" or not (set(fork.clauses) <= set(API_FORM) or fork.network_unchanged)


def _job(
    fork: corpus.Fork,
    text: str,
    workdir: Path,
    matrix: bool = False,
    first_failure: bool = False,
    network: bool = False,
) -> Job:
    report = workdir / f"{fork.module_name}-report"
    durations_in = workdir / "durations.json"
    durations_out = workdir / f"durations-{fork.module_name}.json"
    path = corpus.write(fork, text, workdir)
    if network:
        order = judging.Order(
            durations_in=durations_in if fork.kind == "mutant" else None,
            durations_out=None if fork.kind == "mutant" else durations_out,
            only_clauses=[c for c in spec.clauses() if c not in API_FORM],
            no_shrink=True,
            stop_at_verdict=fork.kind == "mutant",
        )
        return Job(fork, network_only(fork, path), report, order, network=True)
    if matrix:
        order = judging.Order(failures_out=workdir / f"failures-{fork.module_name}.json", no_shrink=True)
    elif fork.kind == "variation":
        order = judging.Order(durations_out=durations_out)
    else:
        order = judging.Order(
            durations_in=durations_in,
            first_clauses=fork.expected_roots,
            only_clauses=() if first_failure else judging.deciding(fork.expected_roots),
            other_examples=None if first_failure else OTHER_EXAMPLES,
            no_shrink=True,
            stop_at_verdict=first_failure,
        )
    return Job(fork, path, report, order)


def markdown(results: list[Result], total: float, args: argparse.Namespace) -> str:
    lines = [
        "| Kind | Fork | Violates | Verdict | Root causes | As declared | First failing test | Time (s) | CPU (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        test = r.test.replace("|", "\\|")[:160]
        if r.exception and r.roots_as_declared:
            declared = f"exception: {r.exception}"
        elif r.kind != "mutant":
            declared = ""
        elif not r.roots_checked:
            declared = "not checked (--first-failure)"
        else:
            declared = "yes" if r.roots_as_declared else f"**NO** (want {', '.join(r.expected_roots)})"
        lines.append(
            f"| {r.kind} | `{r.name}` | {', '.join(r.expected)} | {r.verdict} | {', '.join(r.caught_by)} | {declared} "
            f"| {test} | {r.seconds:.1f} | {'' if r.cpu_seconds is None else f'{r.cpu_seconds:.1f}'} |"
        )
    mutants = [r for r in results if r.kind == "mutant"]
    variations = [r for r in results if r.kind == "variation"]
    cpu = sum(r.cpu_seconds or 0 for r in results)
    exact = [r for r in mutants if r.roots_as_declared and not r.exception]
    excepted = [r for r in mutants if r.roots_as_declared and r.exception]
    lines += [
        "",
        f"Root causes exactly the declared clause(s): {len(exact)}/{len(mutants)} mutants"
        + (f", and {len(excepted)} as listed in their justified exception" if excepted else "")
        + ".",
        "",
        f"Mutants rejected: {sum(r.ok for r in mutants)}/{len(mutants)}; "
        f"variations accepted: {sum(r.ok for r in variations)}/{len(variations)}; "
        f"{total:.0f} s in all, {args.jobs} at a time, {cpu:.0f} s of CPU in the runs (hypothesis profile "
        f"{args.profile}).",
    ]
    return "\n".join(lines)


def _test_functions(extra: list[str]) -> list[str]:
    """The conformance test functions the runs collect (in collection order), as the runners' plugin
    records them (order.py --clauses-out)."""
    with tempfile.TemporaryDirectory(prefix="effnet-collect-") as tmp:
        items = Path(tmp) / "items.json"
        args = [*PYTEST_ARGS, "--collect-only", *judging.ORDER_PLUGIN, "--clauses-out", str(items), *extra]
        subprocess.run([sys.executable, "-m", "pytest", *args], cwd=ROOT, capture_output=True, check=False)
        ids: dict[str, list[str]] = json.loads(items.read_text()) if items.exists() else {}
    return list(dict.fromkeys(spec.function_id(i) for i in ids))


def kill_matrix(results: list[Result], functions: list[str]) -> str:
    """Markdown: for each test function, the mutants that fail it; then those that no mutant fails."""
    killers: dict[str, list[str]] = {f: [] for f in functions}
    for r in results:
        for nodeid in dict.fromkeys(spec.function_id(t) for t in r.failed_tests):
            killers.setdefault(nodeid, []).append(r.name)
    lines = [
        "# Kill matrix: which mutants each conformance test rejects",
        "",
        "Generated by `python tests/mutants/run.py --matrix`: every mutant of tests/mutants/corpus.toml through "
        f"every test of `pytest {' '.join(PYTEST_ARGS)}` (hypothesis profile, no shrinking).",
        "",
        "| Test | Mutants it rejects |",
        "|---|---|",
    ]
    for f, k in killers.items():
        lines.append(f"| {f} | {len(k)}: {', '.join(f'`{m}`' for m in k)} |" if k else f"| {f} | **none** |")
    never = [f for f, k in killers.items() if not k]
    lines += [
        "",
        f"{len(functions) - len(never)} of {len(functions)} test functions reject at least one mutant."
        + (f" Not yet shown to be able to fail: {', '.join(never)}." if never else ""),
    ]
    return "\n".join(lines)


def write(results: list[Result], table: str, total: float, args: argparse.Namespace, extra: list[str]) -> None:
    import torch

    header = (
        "# Mutant corpus results\n\n"
        "Generated by `python tests/mutants/run.py` (`nox -s mutants`): each fork of tests/mutants/corpus.toml "
        f"against `pytest {' '.join(PYTEST_ARGS)}`; torch {torch.__version__}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs.\n\n"
    )
    payload: dict[str, Any] = {
        "command": ["pytest", *PYTEST_ARGS, *extra],
        "hypothesis_profile": args.profile,
        "jobs": args.jobs,
        "total_seconds": round(total, 1),
        "torch": torch.__version__,
        "results": [{**asdict(r), "verdict": r.verdict, "seconds": round(r.seconds, 2)} for r in results],
    }
    judging.write_reports(Path(args.out), "mutants", header + table, payload, indent=2)


def _parse(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    argv, extra = judging.split_pytest_args(argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-k", action="append", default=[], metavar="SUBSTRING", help="only forks whose name contains it")
    p.add_argument("--only", choices=("mutant", "variation"), help="only mutants or only variations")
    judging.add_common_options(
        p, "pytest runs", 600, "seconds per fork before it counts as TIMEOUT", "mutants.md and mutants.json"
    )
    p.add_argument("--check", action="store_true", help="only check that every patch applies")
    p.add_argument("--list", action="store_true", help="list the corpus")
    p.add_argument(
        "--first-failure",
        action="store_true",
        help="stop each mutant at its first failed clause (its clauses' tests first): quicker, root causes not checked",
    )
    p.add_argument(
        "--combine-variations",
        action="store_true",
        help="judge the variations that apply together as one fork (those marked `alone` by themselves); "
        "if it is rejected, each of them alone as well: quicker (CI)",
    )
    p.add_argument(
        "--network-only",
        action="store_true",
        help="each fork through a shim that defines only its network constructors, judged on every clause but "
        "API-1: mutants rejected by another clause, variations accepted",
    )
    p.add_argument(
        "--matrix", action="store_true", help="mutants only, every test each (no -x): write reports/kill-matrix.md"
    )
    return p.parse_args(argv), extra


if __name__ == "__main__":
    sys.exit(main())
