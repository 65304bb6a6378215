"""Generated mutants: the conformance suite measured on mutants that no one picked.

cosmic-ray's mutation operators (its `core/` operators as a library: `cosmic_ray.plugins`,
`cosmic_ray.ast`, `cosmic_ray.mutating.mutate_code`) enumerate every single-point mutation of
effnet/model.py: about 1,360 (operator, occurrence) pairs, numbers +1/-1, arithmetic, comparison
and boolean operators replaced, `not` added or removed, loops run zero times, exception handlers
that catch nothing, the decorator removed.  The operators that need arguments (VariableReplacer,
VariableInserter) are left out.  The list is shuffled with `random.Random(seed)` and the first N
are the sample, so a larger sample of the same seed extends a smaller one.  Nothing in the suite
or in this file knows which mutants will be drawn.

Each mutant is judged by pytest runs forked from the preloaded server (tests/mutants/judging.py), one torch
thread each:

1. Equivalence: `pytest tests/refactor tests/mutants/equivalence.py -x --impl MUTANT --baseline
   ORIGINAL` (the refactor check REF-1 against the unmutated effnet/model.py the sample was drawn
   from, plus the named variants REF-1 does not build, compared layer by layer on the meta
   device), with the API's names and signatures (API-1, API-2: a mutant that changes a signature
   is judged on the rest, so it is not equivalent).  It passes when the mutant computes the same
   function as effnet, bit-identical or within rounding: the mutant is EQUIVALENT.  Otherwise it is
   non-equivalent, and the first difference is kept.
2. The verdict: `pytest tests/conformance -m "not slow" --impl MUTANT --report OUT` with
   EFFNET_HYPOTHESIS_PROFILE=ci (derandomized) and no shrinking; the report's `root_causes`.  By
   default in two runs, as run.py checks the corpus' root causes: first with `-x`, the tests of
   the upstream clauses (those that depend on at most four others: the API, the tables, the blocks,
   the scaling rules) first and the cheapest first (by the durations of a control run of the
   unmutated source, which must be accepted before any mutant is judged; with `--no-control`, by
   the durations recorded in tests/mutants/durations.json); then, when that run
   failed a clause C, only the tests that can decide the root causes: C's and those of every
   clause that does not depend on C.  A clause that depends on a failing one is its consequence
   whatever its tests say, so leaving its tests out changes no root cause, except where its own
   failure would be evident (an erratum's signature, a conclusive blame): `--roots full` runs the
   whole non-slow suite instead.  A non-equivalent mutant that the suite
   accepts is run again on the whole suite (the slow set holds B8 and L2): that run's verdict counts.

An equivalent mutant must be ACCEPTED (else: FALSE POSITIVE).  Every other mutant must be
REJECTED (else: SURVIVED), with exactly one root cause.  A mutant the suite refuses before any test
runs (it does not import, or its API is not the tutorial's: a usage error) is rejected at load:
it counts as rejected and is reported separately, outside the single-root rate.  A mutant whose
code is the same as effnet's once annotations are dropped (`from __future__ import annotations`
makes them strings no one reads) is equivalent by construction and is not run.

    python tests/mutants/generate.py --sample 100 --seed 0        # nox -s mutate -- --sample 100 --seed 0
    python tests/mutants/generate.py --sample 8 --first-failure   # quick: -x, root causes not checked
    python tests/mutants/generate.py --sample 20 --list           # the sample and each mutant's diff, no run
    python tests/mutants/generate.py --sample 400 --shard 2/4     # the second quarter of the sample
    python tests/mutants/generate.py --merge a.json b.json ...    # one summary from several shards' reports
    python tests/mutants/generate.py --sample 100 --resume reports/generated-mutants.json  # judge only the new ones

The report is rewritten after every verdict, so an interrupted sweep resumes where it stopped.

The run prints the mutation score (rejected out of non-equivalent), the single-root rate (exactly
one root cause, out of the mutants rejected by the tests), and every survivor, false positive and
multi-root verdict with its diff; it writes reports/generated-mutants.md and .json.  Exit status 1
when the score or the single-root rate is below --min-score / --min-single-root (0.98, 0.90), or
when an equivalent mutant is rejected.

Parallelism.  The mutants are independent jobs: --jobs N of them run at a time on this machine
(threads, each forking pytest from the preloaded server, one torch thread per run).  To spread a large
sweep over several machines, use the seed and the shard: every machine draws the same sample from
the same checkout and judges its own share, `--shard i/n` (the mutants i, i+n, i+2n, ... of the
sample, so that the shares are alike); `--out` puts each report where it can be collected, and
`--merge` sums them up.  With CI matrix jobs or any batch scheduler this is the whole recipe, e.g.
`for i in 1..8: ssh host$i nox -s mutate -- --sample 800 --seed 3 --shard $i/8 --out reports/shard$i`.
cosmic-ray's own distributor would need its test command to report a root cause, which its
work database (killed / survived) cannot hold; the shards keep the verdicts.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import functools
import hashlib
import json
import random
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.mutants import judging
from tests.support import spec

ROOT = judging.ROOT
SOURCE = judging.SOURCE
# The order of first-failure runs without a control run (--no-control): each non-slow conformance
# test's seconds on effnet, one run on one thread.  Only the order depends on it (a test it does not
# name runs at the median); tests/mutants/test_generated.py checks that it names the current tests.
# Record it again with
#   EFFNET_HYPOTHESIS_PROFILE=ci OMP_NUM_THREADS=1 python -m pytest tests/conformance -m "not slow" -q \
#   -p no:cacheprovider -p tests.mutants.order --durations-out tests/mutants/durations.json
RECORDED_DURATIONS = ROOT / "tests" / "mutants" / "durations.json"
# Step 1 of the module docstring, the API's names and signatures included; QUICK (not slow) leaves out
# REF-1's function at B3-L2 (its structure at every variant runs).
EQUIVALENCE_TESTS = ["tests/refactor", "tests/mutants/equivalence.py", "tests/conformance/test_api.py"]
API_NAMES_AND_SIGNATURES = "not test_api or test_required_name_exists or test_signature_matches_tutorial"  # -k
EQUIVALENCE_ARGS = [*EQUIVALENCE_TESTS, "-k", API_NAMES_AND_SIGNATURES, *judging.QUICK, *judging.QUIET, "-x"]
UPSTREAM_DEPENDENCIES = 4  # upstream_clauses(): API-1, API-2, ARCH-1, BLOCK-1..4, SE-1, SE-2, REG-1, SCALE-1..3
# cosmic-ray's ExceptionReplacer writes `except CosmicRayTestingException:`; cosmic-ray's workers
# define it, a standalone mutant must too (appended: a handler that catches nothing).
TESTING_EXCEPTION = (
    "\n\nclass CosmicRayTestingException(Exception):  # cosmic-ray's ExceptionReplacer: nothing raises it\n    pass\n"
)


# --- The mutations ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Mutation:
    operator: str  # cosmic-ray's name, e.g. "core/NumberReplacer"
    occurrence: int  # the operator's occurrence in the module, cosmic-ray's numbering
    line: int
    column: int

    @property
    def label(self) -> str:
        return f"{self.operator.removeprefix('core/')}#{self.occurrence} at line {self.line}"


@functools.cache
def operators() -> dict[str, Any]:
    """cosmic-ray's operators that take no arguments, by name, sorted: the name is part of the seed's meaning."""
    from cosmic_ray import plugins

    found = {}
    for name in sorted(plugins.operator_names()):
        cls = plugins.get_operator(name)
        if not cls.arguments():
            found[name] = cls()
    return found


def enumerate_mutations(source: str) -> list[Mutation]:
    """Every (operator, occurrence) of ``source``, in a fixed order (operators by name, then occurrence)."""
    from cosmic_ray.ast import ast_nodes, get_ast

    tree = get_ast(source)
    nodes = list(ast_nodes(tree))
    mutations = []
    for name, operator in operators().items():
        positions = [start for node in nodes for start, _end in operator.mutation_positions(node)]
        mutations += [Mutation(name, i, line, column) for i, (line, column) in enumerate(positions)]
    return mutations


def sample(mutations: list[Mutation], n: int, seed: int) -> list[Mutation]:
    """The first ``n`` of the mutations shuffled by ``random.Random(seed)``: a larger ``n`` extends a smaller one."""
    drawn = list(mutations)
    random.Random(seed).shuffle(drawn)
    return drawn[:n]


def shard(drawn: list[Mutation], i_of_n: str | None) -> list[tuple[int, Mutation]]:
    """The (rank in the sample, mutation) pairs of shard ``i/n`` (1-based): ranks i-1, i-1+n, ...; all without one."""
    ranked = list(enumerate(drawn, 1))
    if not i_of_n:
        return ranked
    i, n = (int(part) for part in i_of_n.split("/"))
    if not 1 <= i <= n:
        raise SystemExit(f"--shard {i_of_n}: want i/n with 1 <= i <= n")
    return ranked[i - 1 :: n]


def mutate(source: str, mutation: Mutation) -> str:
    from cosmic_ray.mutating import mutate_code

    mutated = mutate_code(source, operators()[mutation.operator], mutation.occurrence)
    if mutated is None:
        raise RuntimeError(f"cosmic-ray applied no mutation for {mutation.label}: the source changed since enumeration")
    if "CosmicRayTestingException" in mutated and "CosmicRayTestingException" not in source:
        mutated += TESTING_EXCEPTION
    return str(mutated)


def diff(source: str, mutated: str) -> str:
    lines = difflib.unified_diff(
        source.splitlines(), mutated.splitlines(), "a/effnet/model.py", "b/effnet/model.py", n=1, lineterm=""
    )
    return "\n".join(lines)


def _without_annotations(text: str) -> str:
    tree = ast.parse(text)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node.returns = None
        elif isinstance(node, ast.arg):
            node.annotation = None
        elif isinstance(node, ast.AnnAssign):
            node.annotation = ast.Constant(None)
    return ast.dump(tree)


def static_kind(source: str, mutated: str) -> str:
    """ "no-compile" (a syntax error: the suite will refuse it at load), "unchanged" (the same code once
    annotations are dropped: equivalent by construction), or "" (to be judged)."""
    try:
        compile(mutated, "mutant.py", "exec")
    except SyntaxError:
        return "no-compile"
    return "unchanged" if _without_annotations(mutated) == _without_annotations(source) else ""


# --- Judging one mutant -------------------------------------------------------------------------
@dataclass
class Judged:
    rank: int  # position in the seeded sample
    operator: str
    occurrence: int
    line: int
    diff: str
    static: str = ""  # "no-compile" | "unchanged" | ""
    equivalent: bool | None = None  # REF-1 and the named variants found no difference (None: no answer)
    difference: str = ""  # why not equivalent: REF-1's first divergence, or the load error
    outcome: str = "not run"  # "accepted" | "rejected" | "refused at load" | "error" | "timeout" | "not run"
    roots: list[str] = field(default_factory=list)
    detail: str = ""  # the first root cause's failing test, or the load error, or pytest's last lines
    whole_suite: bool = False  # the verdict is that of the whole suite (slow set included)
    roots_checked: bool = True  # False with --first-failure
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.rank:03d} {self.operator.removeprefix('core/')}#{self.occurrence} line {self.line}"

    @property
    def verdict(self) -> str:
        if self.static == "unchanged":
            return "equivalent by construction"
        if self.outcome in ("error", "timeout", "not run") or self.equivalent is None:
            return self.outcome.upper() if self.outcome != "not run" else "NO VERDICT"
        if self.equivalent:
            return "equivalent, accepted" if self.outcome == "accepted" else "FALSE POSITIVE"
        return "SURVIVED" if self.outcome == "accepted" else self.outcome

    @property
    def single_root(self) -> bool:
        return self.outcome == "rejected" and len(self.roots) == 1


@dataclass
class Options:
    workdir: Path
    baseline: Path
    profile: str
    timeout: float
    first_failure: bool  # without it, a non-equivalent mutant the suite accepts is run again on the whole suite
    preload: Any
    extra: list[str]
    roots: str = "deciding"  # "deciding" (two runs: the first failure, then the tests that decide) or "full"

    @property
    def durations(self) -> Path:
        return self.workdir / "durations.json"

    def run_fork(self, fork: Path, report: Path, selection: Sequence[str], **kwargs: Any) -> judging.RunOutcome:
        """``judging.run_fork`` under these options' hypothesis profile, timeout and server."""
        env = {"EFFNET_HYPOTHESIS_PROFILE": self.profile}
        return judging.run_fork(fork, report, selection, env=env, timeout=self.timeout, preload=self.preload, **kwargs)


def judge(rank: int, mutation: Mutation, source: str, options: Options) -> Judged:
    mutated = mutate(source, mutation)
    result = Judged(rank, mutation.operator, mutation.occurrence, mutation.line, diff(source, mutated))
    result.static = static_kind(source, mutated)
    result.roots_checked = not options.first_failure
    if result.static == "unchanged":
        result.equivalent, result.outcome = True, "accepted"
        return result
    path = options.workdir / f"generated_{rank:04d}.py"
    path.write_text(f"# generated mutant {result.name} of effnet/model.py (tests/mutants/generate.py)\n{mutated}")
    start = time.perf_counter()
    # 1. Equivalence: REF-1 against the original, and the named variants it does not build.
    equivalence = options.workdir / f"generated_{rank:04d}-equivalence"
    baseline = ["--baseline", str(options.baseline)]
    run = options.run_fork(path, equivalence, EQUIVALENCE_ARGS, order=judging.Order(no_shrink=True), extra=baseline)
    if run.status in ("timeout", "error"):
        result.outcome, result.detail = run.status, run.tail()
        result.seconds = time.perf_counter() - start
        return result
    result.cpu_seconds = run.cpu_seconds or 0.0
    result.equivalent = run.status == "accepted"
    if run.status == "refused at load":
        result.difference = run.refused(path)
    elif run.report is not None and not result.equivalent:
        result.difference = run.report.detail("REF-1", "API-1", "API-2") or run.tail()
    # 2. The verdict of the conformance suite (the module docstring's step 2).
    report = options.workdir / f"generated_{rank:04d}"
    deciding = options.roots == "deciding" and not options.first_failure
    if options.first_failure or deciding:
        run = _conformance(result, path, report, options, "first", ["-x"], first=upstream_clauses())
    else:
        run = _conformance(result, path, report, options, "suite")
    first = (run.report.root_causes or run.report.failed) if run.report else []
    if deciding and run.returncode == 1 and first:
        run = _conformance(result, path, report, options, "only", first=first, only=judging.deciding(first))
    elif deciding and run.returncode == 1:  # the first failure decided no clause (it failed on another's premise)
        run = _conformance(result, path, report, options, "suite")
    if run.status == "accepted" and not result.equivalent and not options.first_failure:
        run = _conformance(result, path, report, options, "whole", quick=False)  # B8, L2: the slow set
        result.whole_suite = True
    result.outcome, result.roots, result.detail = _verdict(run, path)
    result.seconds = time.perf_counter() - start
    return result


def upstream_clauses() -> list[str]:
    """The clauses that depend on at most a few others (the API, the tables, the blocks, the scaling rules).
    The first-failure run runs their tests first, so that its first failure is, where it can be, a
    clause that many others depend on: the run that decides the root causes then leaves out all of those."""
    return [c for c in spec.clauses() if len(spec.depends_on(c)) <= UPSTREAM_DEPENDENCIES]


def _conformance(
    judged: Judged,
    path: Path,
    report: Path,
    options: Options,
    phase: str,
    marks: Sequence[str] = (),
    quick: bool = True,
    first: Sequence[str] = (),
    only: Sequence[str] = (),
) -> judging.RunOutcome:
    """One conformance run of the mutant, its output in REPORT-PHASE.log, its CPU time added to ``judged``'s;
    the tests ordered by the control run's durations, ``first``'s tests first, only ``only``'s (when given)."""
    order = judging.Order(options.durations, first_clauses=first, only_clauses=only, no_shrink=True)
    selection = [*judging.CONFORMANCE, *(judging.QUICK if quick else []), *marks]
    log = report.with_name(f"{report.name}-{phase}.log")
    run = options.run_fork(path, report, selection, order=order, extra=options.extra, log=log)
    judged.cpu_seconds += run.cpu_seconds or 0.0
    return run


def control(options: Options, jobs: int) -> tuple[int | None, str]:
    """The unmutated source through the whole non-slow suite: it must be accepted (else nothing can be
    measured), and it records each test's duration, by which the mutants' first-failure runs order
    their tests, the cheapest first."""
    selection = [*judging.CONFORMANCE, *judging.QUICK, "-n", str(jobs)]
    order = judging.Order(durations_out=options.durations, no_shrink=True)
    run = options.run_fork(options.baseline, options.workdir / "control", selection, order=order, extra=options.extra)
    return run.returncode, run.tail()


def _verdict(run: judging.RunOutcome, path: Path) -> tuple[str, list[str], str]:
    """The outcome, root causes and detail of the mutant's last conformance run."""
    if run.status == "timeout":
        return "timeout", [], "no verdict within the timeout"
    if run.status == "refused at load":
        return run.status, run.roots, run.refused(path)
    if run.status == "error":
        return "error", [], run.tail()
    return run.status, run.roots, run.first_test()


# --- The summary --------------------------------------------------------------------------------
@dataclass
class Figures:
    judged: list[Judged]

    def of(self, *verdicts: str) -> list[Judged]:
        return [r for r in self.judged if r.verdict in verdicts]

    @property
    def non_equivalent(self) -> list[Judged]:
        return [r for r in self.judged if r.equivalent is False]

    @property
    def rejected(self) -> list[Judged]:
        return [r for r in self.non_equivalent if r.outcome in ("rejected", "refused at load")]

    @property
    def by_tests(self) -> list[Judged]:
        return [r for r in self.non_equivalent if r.outcome == "rejected"]

    @property
    def score(self) -> float:
        decided = [r for r in self.non_equivalent if r.outcome in ("accepted", "rejected", "refused at load")]
        return len(self.rejected) / len(decided) if decided else 1.0

    @property
    def single_root_rate(self) -> float:
        return sum(r.single_root for r in self.by_tests) / len(self.by_tests) if self.by_tests else 1.0


def summary(judged: list[Judged], seconds: float, header: str, jobs: int) -> str:
    f = Figures(sorted(judged, key=lambda r: r.rank))
    checked = all(r.roots_checked for r in f.judged)
    unchanged, no_compile = f.of("equivalent by construction"), [r for r in f.judged if r.static == "no-compile"]
    equivalent = [r for r in f.judged if r.equivalent and r.static != "unchanged"]
    load = [r for r in f.rejected if r.outcome == "refused at load"]
    survivors, false_positives = f.of("SURVIVED"), f.of("FALSE POSITIVE")
    no_verdict = [r for r in f.judged if r.verdict in ("ERROR", "TIMEOUT", "NO VERDICT")]
    multi = [r for r in f.by_tests if len(r.roots) != 1]
    cpu = sum(r.cpu_seconds for r in f.judged)
    lines = [
        header,
        "",
        f"Mutation score: {len(f.rejected)}/{len([r for r in f.non_equivalent if r not in no_verdict])} "
        f"non-equivalent mutants rejected = {100 * f.score:.1f}% "
        f"({len(load)} of them refused at load, {len(no_compile)} of which do not compile).",
    ]
    if checked:
        lines.append(
            f"Single-root rate: {sum(r.single_root for r in f.by_tests)}/{len(f.by_tests)} mutants rejected by the "
            f"tests have exactly one root cause = {100 * f.single_root_rate:.1f}%."
        )
    else:
        lines.append("Single-root rate: not measured (--first-failure stops at the first failing test).")
    lines += [
        f"Equivalent mutants (REF-1 and the named variants find no difference): {len(equivalent)} run, "
        f"{len(equivalent) - len(false_positives)} accepted; {len(unchanged)} more equivalent by construction "
        "(only an annotation changed), not run.",
        f"Survivors: {len(survivors)}; false positives: {len(false_positives)}; not one root cause: {len(multi)}; "
        f"no verdict (error or timeout): {len(no_verdict)}.",
        f"{len(f.judged)} mutants in {seconds:.0f} s, {jobs} at a time; {cpu:.0f} s of CPU in the runs, "
        f"{cpu / max(1, len(f.judged) - len(unchanged)):.0f} s per mutant run.",
        "",
        "| # | Operator | Line | Equivalent | Verdict | Root causes | First failure / difference | Time (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in f.judged:
        eq = "yes" if r.equivalent else "no" if r.equivalent is False else "?"
        why = (r.detail if r.outcome != "accepted" else r.difference).replace("|", "\\|").replace("\n", " ")[:200]
        suite = " (whole suite)" if r.whole_suite else ""
        lines.append(
            f"| {r.rank} | {r.operator.removeprefix('core/')}#{r.occurrence} | {r.line} | {eq} | {r.verdict}{suite} "
            f"| {', '.join(r.roots)} | {why} | {r.seconds:.0f} |"
        )
    for title, group in (
        ("Survivors", survivors),
        ("False positives (equivalent, rejected)", false_positives),
        ("Not exactly one root cause", multi),
        ("No verdict", no_verdict),
    ):
        for r in group:
            heading = f"{title}: {r.name}: {r.verdict}, root causes {', '.join(r.roots) or 'none'}"
            failure = r.detail if r.outcome != "accepted" else ""
            lines += judging.diff_section(heading, {"Not equivalent": r.difference, "First failure": failure}, r.diff)
    return "\n".join(lines)


def write(judged: list[Judged], text: str, out: Path, meta: dict[str, Any]) -> None:
    f = Figures(judged)
    payload = {
        **meta,
        "score": round(f.score, 4),
        "single_root_rate": round(f.single_root_rate, 4),
        "results": [{**asdict(r), "name": r.name, "verdict": r.verdict} for r in sorted(judged, key=lambda r: r.rank)],
    }
    judging.write_reports(out, "generated-mutants", text, payload)


SUMMED_UP = ("results", "score", "single_root_rate", "shard", "partial")  # not carried over by --merge/--resume


def load_results(paths: list[Path]) -> tuple[list[Judged], dict[str, Any]]:
    """The verdicts of the reports, in order (a rank judged again in a later report keeps its last
    verdict), and the description of the one with the largest sample."""
    judged, metas = [], []
    names = {f.name for f in Judged.__dataclass_fields__.values()}
    for path in paths:
        payload = json.loads(path.read_text())
        metas.append({k: v for k, v in payload.items() if k not in SUMMED_UP})
        judged += [Judged(**{k: v for k, v in r.items() if k in names}) for r in payload["results"]]
    by_rank = {r.rank: r for r in judged}
    meta = max(metas, key=lambda m: m.get("sample") or 0, default={})
    return sorted(by_rank.values(), key=lambda r: r.rank), meta


# --- Command line -------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    args, extra = _parse(argv)
    out = Path(args.out)
    if args.merge:
        judged, meta = load_results([Path(p) for p in args.merge])
        header = f"# Generated mutants: {len(judged)} merged from {len(args.merge)} report(s) ({_describe(meta)})"
        text = summary(judged, meta.get("seconds", 0.0), header, meta.get("jobs", 0))
        print(text)
        write(judged, text, out, {**meta, "merged": args.merge})
        return _status(judged, args)
    source = SOURCE.read_text()
    mutations = enumerate_mutations(source)
    drawn = shard(sample(mutations, args.sample, args.seed), args.shard)
    digest = hashlib.sha256(source.encode()).hexdigest()
    meta = {"seed": args.seed, "sample": args.sample, "shard": args.shard, "population": len(mutations)}
    meta.update({"source_sha256": digest, "jobs": args.jobs, "first_failure": args.first_failure})
    meta.update({"profile": args.profile, "roots": args.roots})
    done: list[Judged] = []
    if args.resume:
        done = _resumable(Path(args.resume), args.seed, digest, args.first_failure)
        ranks = {r.rank for r in done}
        done = [r for r in done if r.rank in {rank for rank, _ in drawn}]
        drawn = [(rank, m) for rank, m in drawn if rank not in ranks]
    if args.list:
        for rank, m in drawn:
            mutated = mutate(source, m)
            kind = static_kind(source, mutated)
            print(f"--- {rank:03d} {m.label}{f' ({kind})' if kind else ''}\n{diff(source, mutated)}")
        return 0
    with judging.workdir("effnet-generated-", args.jobs, args.keep) as workdir:
        baseline = workdir / "effnet_original.py"  # the source the sample was drawn from, whatever happens to effnet/
        baseline.write_text(source)
        preload = judging.preload_context(args.no_preload, 0 if args.first_failure else len(drawn))
        options = Options(workdir, baseline, args.profile, args.timeout, args.first_failure, preload, extra, args.roots)
        print(
            f"{len(drawn)} of {len(mutations)} cosmic-ray mutations of effnet/model.py (seed {args.seed}"
            f"{f', shard {args.shard}' if args.shard else ''}), {args.jobs} at a time, in {workdir}",
            flush=True,
        )
        start = time.perf_counter()
        if args.durations or (args.no_control and RECORDED_DURATIONS.exists()):
            shutil.copy(args.durations or RECORDED_DURATIONS, options.durations)
        elif not args.no_control:
            code, tail = control(options, args.jobs)
            verdict = "accepted" if code == 0 else "NOT accepted: nothing can be measured"
            print(f"control: the unmutated source {verdict} in {time.perf_counter() - start:.0f} s", flush=True)
            if code != 0:
                print(tail)
                return 2
        if done:
            print(f"{len(done)} verdicts taken from {args.resume}", flush=True)

        def line(r: Judged) -> str:
            roots = f", root causes {', '.join(r.roots)}" if r.roots else ""
            return f"{r.name}: {r.verdict}{roots} in {r.seconds:.0f} s"

        def progress(judged: list[Judged]) -> None:  # --resume picks up from here
            write(judged, "(in progress)", out, {**meta, "partial": True})

        judged = judging.judge_all(
            drawn, lambda d: judge(*d, source, options), args.jobs, line, width=3, done=list(done), after=progress
        )
    seconds = time.perf_counter() - start
    meta["seconds"] = round(seconds, 1)
    header = f"# Generated mutants ({_describe(meta)})"
    text = summary(judged, seconds, header, args.jobs)
    print("\n" + text)
    write(judged, text, out, meta)
    print(f"\nwritten to {out / 'generated-mutants.md'} and generated-mutants.json")
    return _status(judged, args)


def _resumable(path: Path, seed: int, digest: str, first_failure: bool) -> list[Judged]:
    """The verdicts of an earlier run of the same seed on the same source, and of the same mode."""
    judged, meta = load_results([path])
    if meta.get("seed") != seed or meta.get("source_sha256") != digest:
        raise SystemExit(f"--resume {path}: another seed or another effnet/model.py; nothing taken")
    if bool(meta.get("first_failure")) != first_failure:
        raise SystemExit(f"--resume {path}: run {'with' if meta.get('first_failure') else 'without'} --first-failure")
    return [r for r in judged if r.verdict not in ("ERROR", "TIMEOUT", "NO VERDICT")]


def _describe(meta: dict[str, Any]) -> str:
    where = f", shard {meta['shard']}" if meta.get("shard") else ""
    mode = "; --first-failure" if meta.get("first_failure") else ""
    return (
        f"cosmic-ray's operators on effnet/model.py: a sample of {meta.get('sample')} of {meta.get('population')} "
        f"mutations, seed {meta.get('seed')}{where}; conformance suite `-m 'not slow'`, hypothesis profile "
        f"{meta.get('profile', 'ci')}{mode}"
    )


def _status(judged: list[Judged], args: argparse.Namespace) -> int:
    f = Figures(judged)
    problems = []
    if f.score < args.min_score:
        problems.append(f"mutation score {100 * f.score:.1f}% < {100 * args.min_score:.0f}%")
    if all(r.roots_checked for r in judged) and f.single_root_rate < args.min_single_root:
        problems.append(f"single-root rate {100 * f.single_root_rate:.1f}% < {100 * args.min_single_root:.0f}%")
    if f.of("FALSE POSITIVE"):
        problems.append(f"{len(f.of('FALSE POSITIVE'))} equivalent mutant(s) rejected")
    if [r for r in judged if r.verdict in ("ERROR", "TIMEOUT", "NO VERDICT")]:
        problems.append("mutants without a verdict")
    print("; ".join(problems) if problems else "as required")
    return 1 if problems else 0


def _parse(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    argv, extra = judging.split_pytest_args(argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sample", type=int, default=12, help="how many mutants to draw (default 12)")
    p.add_argument("--seed", type=int, default=0, help="the seed of the draw (default 0)")
    p.add_argument("--shard", metavar="I/N", help="judge only the I-th of N shares of the sample (1-based)")
    judging.add_common_options(
        p, "mutants", 1800, "seconds per pytest run before it counts as TIMEOUT", "generated-mutants.md and .json"
    )
    p.add_argument(
        "--first-failure", action="store_true", help="stop each verdict at its first failure: root causes not checked"
    )
    p.add_argument(
        "--roots",
        choices=("deciding", "full"),
        default="deciding",
        help="deciding (default): the first failure, then only the tests that can decide the root causes; "
        "full: the whole non-slow suite per mutant",
    )
    p.add_argument(
        "--no-control",
        action="store_true",
        help="skip the control run of the unmutated source (the tests' order from tests/mutants/durations.json)",
    )
    p.add_argument("--durations", metavar="JSON", help="an earlier control run's durations.json, instead of a control")
    p.add_argument("--list", action="store_true", help="print the sample's diffs and stop")
    p.add_argument(
        "--merge", nargs="+", metavar="JSON", help="sum up generated-mutants.json reports (a later verdict wins)"
    )
    p.add_argument("--resume", metavar="JSON", help="reuse the verdicts of an earlier report (same seed, source)")
    p.add_argument("--min-score", type=float, default=0.98, help="exit 1 below this mutation score (default 0.98)")
    p.add_argument("--min-single-root", type=float, default=0.90, help="exit 1 below this rate (default 0.90)")
    return p.parse_args(argv), extra


if __name__ == "__main__":
    sys.exit(main())
