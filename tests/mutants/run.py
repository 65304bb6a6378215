"""Hold the conformance suite to the mutant corpus (tests/mutants/corpus.toml).

Every mutant (a plausible bug patched into a copy of effnet/model.py) must be REJECTED: the
conformance suite fails on it, or refuses to load it.  Every variation (effnet written
differently, the same function) must be ACCEPTED: the whole non-slow conformance suite passes.
A surviving mutant is a hole in the suite; a rejected variation is a false positive.

    python tests/mutants/run.py                 # everything, two at a time (nox -s mutants)
    python tests/mutants/run.py -k se- -k drop  # forks whose name contains "se-" or "drop"
    python tests/mutants/run.py --check         # only check that every patch still applies
    python tests/mutants/run.py -- -p no:randomly  # extra pytest arguments after --

Each run is `pytest tests/conformance --impl FORK -x -q -p no:cacheprovider -m "not slow"
--report ...` with EFFNET_HYPOTHESIS_PROFILE=ci (derandomized, so a verdict is reproducible).
The table (mutant, verdict, the clause(s) of the first failing test, the test, time) is printed
and written to reports/mutants.md and reports/mutants.json.  Exit status 0 only when every
mutant is rejected and every variation accepted; 2 when the corpus no longer applies.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.mutants import corpus

ROOT = corpus.ROOT
PYTEST_ARGS = ["tests/conformance", "-x", "-q", "-p", "no:cacheprovider", "-m", "not slow"]
_LOAD_CLAUSE = re.compile(r"\(clause ([A-Z][A-Z0-9]*-\d+)\)")


@dataclass
class Result:
    kind: str
    name: str
    description: str
    expected: list[str]
    outcome: str  # "rejected" | "accepted" | "error" | "timeout"
    ok: bool  # mutant rejected, or variation accepted
    caught_by: list[str]  # the clause(s) of the first failing test (or of the load error)
    test: str  # the first failing test, or the load error
    seconds: float
    returncode: int | None
    tail: str = ""  # the end of pytest's output when something went wrong

    @property
    def verdict(self) -> str:
        if self.outcome in ("error", "timeout"):
            return self.outcome.upper()
        if self.kind == "mutant":
            return "rejected" if self.ok else "SURVIVED"
        return "accepted" if self.ok else "FALSE POSITIVE"


def run_one(
    fork: corpus.Fork, path: Path, report: Path, extra: list[str], timeout: float, env: dict[str, str]
) -> Result:
    cmd = [sys.executable, "-m", "pytest", *PYTEST_ARGS, "--impl", str(path), "--report", str(report), *extra]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return Result(
            fork.kind,
            fork.name,
            fork.description,
            list(fork.clauses),
            "timeout",
            False,
            [],
            "",
            time.perf_counter() - start,
            None,
            f"no verdict within {timeout:.0f} s",
        )
    seconds = time.perf_counter() - start
    output = proc.stdout + proc.stderr
    caught, test = _first_failure(report, output, proc.returncode)
    if proc.returncode == 0:
        outcome = "accepted"
    elif proc.returncode == 1 or (proc.returncode == 4 and "EfficientNet API" in output):
        outcome = "rejected"
    else:
        outcome = "error"  # a crash, a collection error, a fork that failed to import: not a verdict
    ok = outcome == ("rejected" if fork.kind == "mutant" else "accepted")
    tail = "" if ok else "\n".join(output.strip().splitlines()[-25:])
    return Result(
        fork.kind,
        fork.name,
        fork.description,
        list(fork.clauses),
        outcome,
        ok,
        caught,
        test,
        seconds,
        proc.returncode,
        tail,
    )


def _first_failure(report: Path, output: str, returncode: int) -> tuple[list[str], str]:
    """The failing clauses and test from the --report JSON (with -x there is one failing test),
    or the clause named by a load-time error."""
    if returncode == 4:
        lines = output.strip().splitlines()
        start = next((i for i, line in enumerate(lines) if line.startswith("ERROR:")), 0)
        message = " ".join(line.strip() for line in lines[start:] if line.strip())
        return sorted(set(_LOAD_CLAUSE.findall(output))), f"refused at load: {message[:300]}"
    json_path = report.with_suffix(".json")
    if not json_path.exists():
        return [], ""
    rows = json.loads(json_path.read_text())["clauses"]
    failed = [r for r in rows if r["status"] == "FAILED"]
    test = failed[0]["detail"].split(": ", 1)[0] if failed else ""
    return [r["clause"] for r in failed], test


def main(argv: list[str] | None = None) -> int:
    args, extra = _parse(argv)
    try:
        forks = corpus.load()
        texts = corpus.check_all(forks)
    except corpus.CorpusError as e:
        print(f"the mutant corpus does not apply to effnet/model.py:\n{e}", file=sys.stderr)
        return 2
    forks = [f for f in forks if _selected(f, args)]
    if args.check or args.list:
        for f in forks:
            if args.list:
                print(f"{f.kind:<9} {f.name:<34} {','.join(f.clauses):<18} {f.description}")
        kinds = [f.kind for f in forks]
        print(f"{kinds.count('mutant')} mutants and {kinds.count('variation')} variations apply to effnet/model.py")
        return 0

    env = {**os.environ, "EFFNET_HYPOTHESIS_PROFILE": args.profile, "PYTHONDONTWRITEBYTECODE": "1"}
    # Two pytest processes on two cores: one intra-op thread each, or they fight over the cores.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // args.jobs)))
    # Variations run the whole suite: start them first so that the slowest finish in parallel.
    forks.sort(key=lambda f: f.kind != "variation")
    workdir = Path(tempfile.mkdtemp(prefix="effnet-mutants-"))
    print(f"{len(forks)} forks, {args.jobs} at a time, in {workdir}; pytest {' '.join(PYTEST_ARGS)} {' '.join(extra)}")
    start = time.perf_counter()
    results: list[Result] = []
    lock = threading.Lock()
    try:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = {
                pool.submit(
                    run_one,
                    f,
                    corpus.write(f, texts[f.name], workdir),
                    workdir / f"{f.module_name}-report",
                    extra,
                    args.timeout,
                    env,
                ): f
                for f in forks
            }
            for n, future in enumerate(as_completed(futures), 1):
                r = future.result()
                with lock:
                    results.append(r)
                    by = f" by {', '.join(r.caught_by)}" if r.caught_by else ""
                    print(f"[{n:>2}/{len(forks)}] {r.kind} {r.name}: {r.verdict}{by} in {r.seconds:.1f} s", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    total = time.perf_counter() - start
    order = {f.name: i for i, f in enumerate(corpus.load())}
    results.sort(key=lambda r: order[r.name])
    table = markdown(results, total, args)
    print("\n" + table)
    for r in results:
        if not r.ok and r.tail:
            print(f"\n--- {r.kind} {r.name}: {r.verdict} (pytest exit status {r.returncode})\n{r.tail}")
    write(results, table, total, args, extra)
    bad = [r for r in results if not r.ok]
    print(
        f"\n{len(results) - len(bad)}/{len(results)} as required in {total:.0f} s; "
        f"reports in {args.out}/mutants.md and .json"
    )
    return 1 if bad else 0


def _selected(fork: corpus.Fork, args: argparse.Namespace) -> bool:
    if args.only and fork.kind != args.only:
        return False
    return not args.k or any(k in fork.name for k in args.k)


def markdown(results: list[Result], total: float, args: argparse.Namespace) -> str:
    lines = [
        "| Kind | Fork | Violates | Verdict | Caught by | First failing test | Time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        test = r.test.replace("|", "\\|")[:160]
        lines.append(
            f"| {r.kind} | `{r.name}` | {', '.join(r.expected)} | {r.verdict} | {', '.join(r.caught_by)} "
            f"| {test} | {r.seconds:.1f} |"
        )
    mutants = [r for r in results if r.kind == "mutant"]
    variations = [r for r in results if r.kind == "variation"]
    lines += [
        "",
        f"Mutants rejected: {sum(r.ok for r in mutants)}/{len(mutants)}; "
        f"variations accepted: {sum(r.ok for r in variations)}/{len(variations)}; "
        f"total {total:.0f} s with {args.jobs} at a time (profile {args.profile}).",
    ]
    return "\n".join(lines)


def write(results: list[Result], table: str, total: float, args: argparse.Namespace, extra: list[str]) -> None:
    import torch

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    header = (
        "# Mutant corpus results\n\n"
        "Generated by `python tests/mutants/run.py` (`nox -s mutants`): each fork of tests/mutants/corpus.toml "
        f"against `pytest {' '.join(PYTEST_ARGS)}`; torch {torch.__version__}, Python {platform.python_version()}.\n\n"
    )
    (out / "mutants.md").write_text(header + table + "\n")
    payload = {
        "command": ["pytest", *PYTEST_ARGS, *extra],
        "hypothesis_profile": args.profile,
        "jobs": args.jobs,
        "total_seconds": round(total, 1),
        "torch": torch.__version__,
        "results": [{**asdict(r), "verdict": r.verdict, "seconds": round(r.seconds, 2)} for r in results],
    }
    (out / "mutants.json").write_text(json.dumps(payload, indent=2) + "\n")


def _parse(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("-k", action="append", default=[], metavar="SUBSTRING", help="only forks whose name contains it")
    p.add_argument("--only", choices=("mutant", "variation"), help="only mutants or only variations")
    p.add_argument("--jobs", "-j", type=int, default=2, help="pytest processes at a time (default 2)")
    p.add_argument("--timeout", type=float, default=600, help="seconds per fork before it counts as TIMEOUT")
    p.add_argument(
        "--profile",
        default=os.environ.get("EFFNET_HYPOTHESIS_PROFILE", "ci"),
        help="hypothesis profile (default ci: derandomized)",
    )
    p.add_argument("--out", default=str(ROOT / "reports"), help="where mutants.md and mutants.json go")
    p.add_argument("--check", action="store_true", help="only check that every patch applies")
    p.add_argument("--list", action="store_true", help="list the corpus")
    p.add_argument("--keep", action="store_true", help="keep the forks' files and reports")
    return p.parse_args(argv), extra


if __name__ == "__main__":
    sys.exit(main())
