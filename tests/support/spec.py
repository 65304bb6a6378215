"""The spec, read once: data from spec/*.toml, clause IDs and errata from spec/SPEC.md; the
definitions of derived quantities (architecture fingerprint, Table 2 figures); and which tests
cite which clause (by collecting the suite)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

SPEC_DIR = Path(__file__).resolve().parents[2] / "spec"
CLAUSE_HEADING = re.compile(r"^#### ([A-Z][A-Z0-9]*-\d+) · (.+)$")


@dataclass(frozen=True)
class Clause:
    id: str
    title: str
    text: str
    optional: bool


@cache
def data() -> dict[str, Any]:
    """spec/efficientnet.toml: the hand-written normative numbers."""
    with open(SPEC_DIR / "efficientnet.toml", "rb") as f:
        return tomllib.load(f)


@cache
def expected() -> dict[str, Any]:
    """spec/expected.toml: expectations derived from timm by `nox -s spec`."""
    path = SPEC_DIR / "expected.toml"
    if not path.exists():
        return {}
    with open(path, "rb") as f:
        return tomllib.load(f)


@cache
def clauses() -> dict[str, Clause]:
    """Clause ID -> clause, in document order, parsed from SPEC.md headings."""
    found: dict[str, Clause] = {}
    current: tuple[str, str] | None = None
    body: list[str] = []

    def close() -> None:
        if current is not None:
            text = " ".join(line.strip() for line in body if line.strip() and not line.startswith("#"))
            found[current[0]] = Clause(current[0], current[1], text, "(optional)" in current[1])

    for line in (SPEC_DIR / "SPEC.md").read_text().splitlines():
        m = CLAUSE_HEADING.match(line)
        if m or line.startswith("## "):
            close()
            current, body = (m.group(1), m.group(2)) if m else None, []
        elif current is not None:
            body.append(line)
    close()
    return found


def variants(include_optional: bool = True) -> list[str]:
    return [n for n, v in data()["variants"].items() if include_optional or not v.get("optional", False)]


def variant(name: str) -> dict[str, Any]:
    return data()["variants"][name]


def base_widths() -> list[int]:
    d = data()["base"]
    return [d["stem"]["channels"], *(s["channels"] for s in d["stages"]), d["head"]["channels"]]


def base_depths() -> list[int]:
    return [s["repeats"] for s in data()["base"]["stages"]]


# --- Derived quantities whose definition the spec fixes (used by spec/generate.py and tests) ----
def shape_signature(model: Any) -> list[str]:
    """The name-agnostic architecture signature: one token per state_dict entry, in order,
    ``P:`` for a parameter or ``B:`` for a buffer, then the shape with dimensions joined by
    ``x`` (``scalar`` for a 0-d tensor), e.g. ``P:32x3x3x3``, ``B:32``, ``B:scalar``."""
    parameters = {name for name, _ in model.named_parameters()}
    return [
        f"{'P' if name in parameters else 'B'}:{'x'.join(map(str, tensor.shape)) or 'scalar'}"
        for name, tensor in model.state_dict().items()
    ]


def fingerprint(model: Any) -> str:
    """sha256 (hex) of the shape signature joined by ``;`` (ARCH-5, expected.toml ``fingerprint``)."""
    return hashlib.sha256(";".join(shape_signature(model)).encode()).hexdigest()


_PUBLISHED = re.compile(r"^(\d+)(?:\.(\d+))?([MB])$")


def published(figure: str) -> tuple[int, int]:
    """A rounded figure of the paper's Table 2 as (value, step): ``"5.3M"`` is (5_300_000, 100_000),
    ``"0.39B"`` (390_000_000, 10_000_000), ``"12M"`` (12_000_000, 1_000_000).  An exact count ``n``
    rounds to the figure when ``value - step / 2 <= n < value + step / 2``."""
    m = _PUBLISHED.match(figure)
    if m is None:
        raise ValueError(f"not a Table 2 figure like '5.3M' or '0.39B': {figure!r}")
    whole, decimals, unit = m.group(1), m.group(2) or "", m.group(3)
    scale = {"M": 10**6, "B": 10**9}[unit]
    step = scale // 10 ** len(decimals)
    return int(whole + decimals) * step, step


# Clause TABLE2-2: the paper's FLOPs are rounded and its counting convention is not stated exactly.
TABLE2_MACS_TOLERANCE = 0.10


def table2_params_interval(name: str) -> tuple[float, float]:
    """[low, high) of the exact parameter counts that round to the Table 2 figure of variant ``name``
    (TABLE2-1): half a unit of the last published digit either side, plus ``params_slack`` units."""
    row = data()["table2"][name]
    value, step = published(row["params"])
    half_width = step * (0.5 + row.get("params_slack", 0))
    return value - half_width, value + half_width


def table2_macs_interval(name: str) -> tuple[float, float]:
    """[low, high] of the MAC counts within TABLE2_MACS_TOLERANCE of the Table 2 FLOPs (TABLE2-2)."""
    value, _ = published(data()["table2"][name]["flops"])
    return value * (1 - TABLE2_MACS_TOLERANCE), value * (1 + TABLE2_MACS_TOLERANCE)


# --- Dependencies between clauses (root causes) -------------------------------------------
@cache
def dependencies() -> dict[str, tuple[str, ...]]:
    """Clause ID -> the clauses it depends on directly (efficientnet.toml ``[dependencies]``): a
    violation of one of them can make the clause's tests fail.  Clauses not listed depend on none."""
    table = data().get("dependencies", {})
    everyone = tuple(data().get("premises_of_every_clause", {}).get("clauses", ()))
    return {
        c: tuple(table.get(c, ())) + tuple(p for p in everyone if p != c and c not in depends_on_static(p, table))
        for c in clauses()
    }


def depends_on_static(clause: str, table: Mapping[str, Sequence[str]]) -> set[str]:
    """The clauses ``clause`` depends on in ``table``, directly or through others (in ``[dependencies]``
    alone: the premises of every clause aside)."""
    found: set[str] = set()
    todo = list(table.get(clause, ()))
    while todo:
        c = todo.pop()
        if c not in found:
            found.add(c)
            todo.extend(table.get(c, ()))
    return found


def dependency_problems() -> list[str]:
    """What is wrong with ``[dependencies]``: IDs that are not clauses of SPEC.md, a clause that
    depends on itself, cycles.  Empty when the table is a DAG over SPEC.md's clauses."""
    table: dict[str, list[str]] = data().get("dependencies", {})
    known = clauses()
    problems = [f"[dependencies] {c!r} is not a clause of spec/SPEC.md" for c in table if c not in known]
    problems += [
        f"[dependencies] {c} depends on {d!r}, which is not a clause of spec/SPEC.md"
        for c, deps in table.items()
        for d in deps
        if d not in known
    ]
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(c: str, path: list[str]) -> None:
        state[c] = 1
        for d in table.get(c, ()):
            if state.get(d) == 1:
                problems.append("[dependencies] cycle: " + " -> ".join([*path[path.index(d) :], d]))
            elif d not in state:
                visit(d, [*path, d])
        state[c] = 2

    for c in table:
        if c not in state:
            visit(c, [c])
    return problems


@cache
def depends_on(clause: str) -> frozenset[str]:
    """Every clause ``clause`` depends on, directly or through others (not itself)."""
    return frozenset(depends_on_static(clause, dependencies()) - {clause})


# --- Errata ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Erratum:
    """A known departure from the spec: where it is seen (the tutorial, a real port), what it
    does, what the spec wants, the clause it violates, and the signature its recogniser checks
    (tests/support/errata.py) before the report names it."""

    id: str
    departure: str
    spec: str
    clause: str
    signature: str

    @property
    def clauses(self) -> tuple[str, ...]:
        """The clause(s) of the "Clause" column: the recogniser runs when one of them fails."""
        return tuple(c.strip() for c in self.clause.split(",") if c.strip())

    def __str__(self) -> str:
        return f"{self.id}: {self.departure}; the spec: {self.spec}"


_ERRATUM_ROW = re.compile(r"^\|\s*(E-\d+)\s*\|(.*)\|(.*)\|(.*)\|(.*)\|\s*$")


@cache
def errata() -> list[Erratum]:
    """The rows of SPEC.md's errata table: ID, the departure, the spec's rule, the clause, the signature."""
    found = []
    for line in (SPEC_DIR / "SPEC.md").read_text().splitlines():
        m = _ERRATUM_ROW.match(line.strip())
        if m:
            departure, rule, clause, signature = (s.strip().replace("`", "") for s in m.group(2, 3, 4, 5))
            found.append(Erratum(m.group(1), departure, rule, clause, signature))
    return found


# --- Which tests cite which clause -------------------------------------------------------
ROOT = SPEC_DIR.parent


class CollectionError(RuntimeError):
    """Collecting the suite failed; the message holds pytest's output."""


def start_clause_collection(out: Path, paths: tuple[str, ...] = ("tests",)) -> subprocess.Popen[str]:
    """Start collecting ``paths`` (relative to the repository root) in a subprocess whose runners' plugin
    (tests/mutants/order.py ``--clauses-out``) writes ``{nodeid: [clause, ...]}`` to ``out``; see ``clause_map``."""
    env = {k: v for k, v in os.environ.items() if k not in ("EFFNET_IMPL", "PYTEST_ADDOPTS")}
    args = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    args += ["-p", "tests.mutants.order", "--clauses-out", str(out), *paths]
    # pytest's output goes to a file, not a pipe: a full pipe would stall the collection until read.
    with open(out.with_suffix(".log"), "w") as log:
        return subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)


def finish_clause_collection(process: subprocess.Popen[str], out: Path) -> dict[str, list[str]]:
    process.wait()
    output = out.with_suffix(".log").read_text()
    if process.returncode != 0 or not out.exists():
        raise CollectionError(f"collecting the suite failed (pytest exit {process.returncode}):\n{output[-4000:]}")
    items: dict[str, list[str]] = json.loads(out.read_text())
    return items


def clause_map(paths: tuple[str, ...] = ("tests",)) -> dict[str, list[str]]:
    """Test node ID (one per collected item, parametrized cases included) -> the clauses its
    ``@pytest.mark.clause`` markers cite, from collecting the suite under the default implementation."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "clauses.json"
        return finish_clause_collection(start_clause_collection(out, paths), out)


def function_id(nodeid: str) -> str:
    """A node ID without its parametrization: ``a.py::test_x[3]`` -> ``a.py::test_x``."""
    return nodeid.split("[", 1)[0]


def checked_by(items: dict[str, list[str]]) -> dict[str, list[str]]:
    """Clause ID -> the sorted test functions citing it (parametrized cases folded together)."""
    tests: dict[str, set[str]] = {}
    for nodeid, ids in items.items():
        for c in ids:
            tests.setdefault(c, set()).add(function_id(nodeid))
    return {c: sorted(t) for c, t in tests.items()}


NOT_CHECKED = "none yet (no test cites this clause)"
_CHECKED_BY_GROUP = re.compile(r"`([^`]+)`: ((?:`[^`]+`(?:, )?)+)")


def parse_checked_by(line: str) -> list[str]:
    """The test functions of a SPEC.md "Checked by:" line (as spec/generate.py writes it)."""
    body = line.removeprefix("Checked by:").strip().removesuffix(".")
    if body == NOT_CHECKED:
        return []
    tests = []
    for group in body.split("; "):
        m = _CHECKED_BY_GROUP.fullmatch(group)
        if m is None:
            raise ValueError(f"not a generated Checked-by entry: {group!r}")
        tests += [f"{m.group(1)}::{name}" for name in re.findall(r"`([^`]+)`", m.group(2))]
    return sorted(tests)


def checked_by_lines() -> dict[str, str]:
    """Clause ID -> its "Checked by:" line in SPEC.md (absent when the clause has none)."""
    found: dict[str, str] = {}
    current = None
    for line in (SPEC_DIR / "SPEC.md").read_text().splitlines():
        m = CLAUSE_HEADING.match(line)
        if m or line.startswith("#"):
            current = m.group(1) if m else None
        elif current is not None and line.startswith("Checked by:"):
            found[current] = line
    return found
