"""Sessions: tests, verify, spec, mutants, mutate, rewrites, generated, golden, bench, lint, typecheck.

Every session runs in one shared environment, `.nox/effnet-env`, built once with
`pip install -e .[test,dev]` and rebuilt only when pyproject.toml changes: torch
is several GB, and one copy is enough.  Set EFFNET_PYTHON to an interpreter that
already has the packages (for example on a machine without a package registry)
to skip the environment entirely.  Arguments after `--` reach pytest (or the
session's script).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "none"

ROOT = Path(__file__).parent
# One worker per core; work stealing, so that an idle worker takes tests queued behind a slow one
# (the B7 comparisons) instead of waiting at the end of the run.
XDIST = ("-n", "auto", "--dist", "worksteal")
ENV = ROOT / ".nox" / "effnet-env"


def _python(session: nox.Session) -> str:
    """The shared environment's interpreter, building the environment when needed."""
    if os.environ.get("EFFNET_PYTHON"):
        return os.environ["EFFNET_PYTHON"]
    python = ENV / "bin" / "python"
    stamp = ENV / ".pyproject-sha256"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not python.exists() or not stamp.exists() or stamp.read_text() != digest:
        if ENV.exists():
            shutil.rmtree(ENV)
        session.log(f"building the shared environment {ENV} (torch is large: about 90 s)")
        session.run(sys.executable, "-m", "venv", str(ENV), external=True)
        session.run(str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip", external=True)
        session.run(str(python), "-m", "pip", "install", "--quiet", "-e", ".[test,dev]", external=True)
        stamp.write_text(digest)
    return str(python)


def _cuda_available(python: str) -> bool:
    probe = subprocess.run(
        [python, "-c", "import torch; print(torch.cuda.is_available())"], capture_output=True, text=True, check=False
    )
    return probe.stdout.strip() == "True"


def _env() -> dict[str, str]:
    """The environment of every process a session starts: the hypothesis profile, and bytecode
    written.  pytest keeps the test modules it rewrites (assertion introspection) as bytecode in
    __pycache__ (gitignored); where PYTHONDONTWRITEBYTECODE is set, as on this project's CI
    machine, every pytest process and every run that a sweep forks rewrites them again: 0.75 s of
    CPU per process (tests/conformance collected: 3.9 s -> 3.1 s).  An empty value unsets it."""
    profile = os.environ.get("EFFNET_HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev")
    return {"EFFNET_HYPOTHESIS_PROFILE": profile, "PYTHONDONTWRITEBYTECODE": ""}


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite on CPU, then on CUDA where a GPU is present."""
    python = _python(session)
    args = session.posargs or ["tests"]
    session.run(python, "-m", "pytest", *XDIST, "--durations=10", *args, env=_env(), external=True)
    if _cuda_available(python):
        session.run(python, "-m", "pytest", *XDIST, "--device", "cuda", *args, env=_env(), external=True)
    else:
        session.log("CUDA run skipped: torch.cuda.is_available() is False on this machine")


@nox.session
def verify(session: nox.Session) -> None:
    """The conformance suite against an implementation: nox -s verify -- --impl PATH_OR_MODULE; with
    `--baseline REF` (a git revision or another implementation) also the refactor check REF-1."""
    python = _python(session)
    # tests/refactor is always collected: without --baseline its tests skip, and the report shows REF-1
    # as skipped with the reason instead of leaving it out.  Short tracebacks and no per-test list
    # (-rN): the clause table says which tests failed or skipped and why; `-- -ra --tb=long` brings
    # them back.
    session.run(
        python,
        "-m",
        "pytest",
        *XDIST,
        "--tb=short",
        "-rN",
        "tests/conformance",
        "tests/refactor",
        *session.posargs,
        env=_env(),
        external=True,
    )


@nox.session
def spec(session: nox.Session) -> None:
    """Regenerate spec/expected.toml from timm and SPEC.md's generated parts (Checked-by lines,
    tables); `-- --check` fails if either is stale; `-- --update-clauses` rewrites only SPEC.md."""
    python = _python(session)
    session.run(python, "spec/generate.py", *session.posargs, env=_env(), external=True)


@nox.session
def mutants(session: nox.Session) -> None:
    """Run the conformance suite on every mutant (must be rejected) and correct variation (accepted)."""
    python = _python(session)
    session.run(python, "tests/mutants/run.py", *session.posargs, env=_env(), external=True)


@nox.session
def mutate(session: nox.Session) -> None:
    """Generated mutants (cosmic-ray's operators on effnet/model.py, a seeded sample): the mutation score, the
    single-root rate, every survivor and multi-root verdict with its diff: `-- --sample N --seed S`."""
    python = _python(session)
    session.run(python, "tests/mutants/generate.py", *session.posargs, env=_env(), external=True)


@nox.session
def rewrites(session: nox.Session) -> None:
    """Generated correct rewrites of effnet and of the tutorial (fixed): each must be accepted; the
    summary gives the acceptance rate (accepted / pairs judged)."""
    python = _python(session)
    session.run(python, "tests/mutants/rewrites.py", *session.posargs, env=_env(), external=True)


@nox.session
def generated(session: nox.Session) -> None:
    """The generators' tests alone (tests/mutants/test_generated.py, also part of tests): a seeded
    sample of 8 mutants (first failure) and 10 named rewrites of the tutorial (combined)."""
    python = _python(session)
    session.run(
        python,
        "-m",
        "pytest",
        "tests/mutants/test_generated.py",
        *session.posargs,
        env=_env(),
        external=True,
    )


@nox.session
def golden(session: nox.Session) -> None:
    """Compare effnet with the regression fingerprints of tests/golden/; `-- --update` regenerates them."""
    python = _python(session)
    session.run(python, "tests/golden/update.py", *session.posargs, env=_env(), external=True)


@nox.session
def bench(session: nox.Session) -> None:
    """effnet against timm and torchvision: throughput ratios, written as a table and JSON."""
    python = _python(session)
    session.run(python, "bench/bench.py", *session.posargs, external=True)


@nox.session
def lint(session: nox.Session) -> None:
    python = _python(session)
    session.run(python, "-m", "ruff", "check", ".", external=True)
    session.run(python, "-m", "ruff", "format", "--check", ".", external=True)


@nox.session
def typecheck(session: nox.Session) -> None:
    python = _python(session)
    session.run(python, "-m", "mypy", *session.posargs, external=True)
