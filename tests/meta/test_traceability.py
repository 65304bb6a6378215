"""Traceability between spec/SPEC.md and the suite.

Every clause is cited by at least one test, SPEC.md's "Checked by:" lines list exactly the tests
that cite each clause (they are generated: `python spec/generate.py --update-clauses`), and a
test that cites a clause SPEC.md does not define stops the run at collection.

The suite is collected once, in a subprocess, under the default implementation; each collected
item (every parametrized case) contributes the clauses of its own markers.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest
from filelock import FileLock

from tests.support import spec, subrun

REGENERATE = "run `python spec/generate.py --update-clauses` (or `nox -s spec`)"


@pytest.fixture(scope="session")
def collected(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> dict[str, list[str]]:
    """Node ID -> cited clauses, for every item of the suite; collected once per run, also
    under xdist, where the workers of one run share a temporary directory."""
    if worker_id == "master":
        return spec.clause_map()
    cache = tmp_path_factory.getbasetemp().parent / "clause_map.json"
    with FileLock(f"{cache}.lock"):
        if not cache.exists():
            cache.write_text(json.dumps(spec.clause_map()))
        return dict(json.loads(cache.read_text()))


def test_collection_sees_the_conformance_suite(collected):
    """Guards the tests below against a collection that silently found nothing."""
    conformance = [n for n in collected if n.startswith("tests/conformance/")]
    assert conformance, "collecting the suite found no test in tests/conformance"
    unmarked = [n for n in conformance if not collected[n]]
    assert not unmarked, f"conformance items without clauses: {unmarked[:5]}"


def test_every_clause_is_cited_by_a_test(collected):
    cited = set(spec.checked_by(collected))
    uncited = [c for c in spec.clauses() if c not in cited]
    assert not uncited, f"{len(uncited)} clause(s) of spec/SPEC.md are cited by no test: {', '.join(uncited)}"


def test_dependencies_name_defined_clauses_and_have_no_cycle():
    """spec/efficientnet.toml [dependencies] is a DAG over SPEC.md's clauses, so every failed clause
    is a root cause or traces back to one."""
    assert spec.data().get("dependencies"), "spec/efficientnet.toml has no [dependencies] table"
    problems = spec.dependency_problems()
    assert not problems, "\n".join(problems)
    assert all(c not in spec.depends_on(c) for c in spec.clauses())


def test_every_cited_clause_is_defined(collected):
    unknown = {c for ids in collected.values() for c in ids} - set(spec.clauses())
    assert not unknown, f"tests cite clauses spec/SPEC.md does not define: {sorted(unknown)}"


def test_every_clause_has_one_checked_by_line():
    lines = spec.checked_by_lines()
    missing = [c for c in spec.clauses() if c not in lines]
    assert not missing, f"clauses without a 'Checked by:' line: {', '.join(missing)}; {REGENERATE}"


def test_checked_by_lines_list_the_citing_tests(collected):
    want = spec.checked_by(collected)
    stale = []
    for clause, line in spec.checked_by_lines().items():
        listed, citing = set(spec.parse_checked_by(line)), set(want.get(clause, []))
        if listed != citing:
            parts = [f"not listed: {sorted(citing - listed)}" if citing - listed else "",
                     f"listed but not citing: {sorted(listed - citing)}" if listed - citing else ""]  # fmt: skip
            stale.append(f"{clause}: " + "; ".join(p for p in parts if p))
    assert not stale, "stale 'Checked by:' lines in spec/SPEC.md:\n  " + "\n  ".join(stale) + f"\n{REGENERATE}"


def test_parametrized_cases_are_folded_into_their_function():
    items = {"a.py::test_x[1]": ["API-1"], "a.py::test_x[2]": ["API-1", "SE-1"], "a.py::C::test_y": ["SE-1"]}
    assert spec.checked_by(items) == {"API-1": ["a.py::test_x"], "SE-1": ["a.py::C::test_y", "a.py::test_x"]}


def test_checked_by_line_round_trips():
    line = "Checked by: `tests/a.py`: `test_x`, `C::test_y`; `tests/b.py`: `test_z`."
    assert spec.parse_checked_by(line) == ["tests/a.py::C::test_y", "tests/a.py::test_x", "tests/b.py::test_z"]
    assert spec.parse_checked_by(f"Checked by: {spec.NOT_CHECKED}.") == []


# --- A test citing an unknown clause fails collection -------------------------------------------
def _collect_file(tmp_path: Path, clause: str) -> subprocess.CompletedProcess[str]:
    """Collect a one-test file outside the repository, with this project's conftest and config."""
    test_file = tmp_path / "test_cites.py"
    test_file.write_text(
        textwrap.dedent(f"""
            import pytest

            @pytest.mark.clause({clause!r})
            @pytest.mark.parametrize("n", [1, 2])
            def test_something(n):
                pass
        """)
    )
    args = ["--collect-only", "-q", "-p", "no:cacheprovider", "-p", "conftest",
            "-c", str(spec.ROOT / "pyproject.toml"), "--rootdir", str(spec.ROOT), str(test_file)]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("EFFNET_IMPL", "PYTEST_ADDOPTS")}
    return subrun.pytest(args, env=env, cwd=spec.ROOT, timeout=300)


def test_an_unknown_clause_fails_collection(tmp_path):
    """Through this project's conftest and pyproject.toml, as a user's run would; the message
    names the clause, so the failure cannot come from anything else in the file."""
    result = _collect_file(tmp_path, "SE-99")
    output = result.stdout + result.stderr
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, f"exit {result.returncode}:\n{output}"
    assert "'SE-99', which spec/SPEC.md does not define" in output, output


def test_each_long_test_opens_a_workers_share_of_the_run():
    from tests.support.plugin import long_tests_first

    class Item:
        def __init__(self, name: str, long: bool) -> None:
            self.name, self.long = name, long

        def get_closest_marker(self, name: str) -> object:
            return self.long if name == "long" and self.long else None

    items = [Item(str(i), i in (10, 11)) for i in range(12)]
    names = lambda order: [i.name for i in order]  # noqa: E731
    # pytest-xdist's worksteal gives 2 workers the first 6 and the last 6: one long test each.
    assert names(long_tests_first(items, 2)) == ["10", "0", "1", "2", "3", "4", "11", "5", "6", "7", "8", "9"]
    assert names(long_tests_first(items, 1))[:2] == ["10", "11"]
    assert sorted(names(long_tests_first(items, 3)), key=int) == [str(i) for i in range(12)]
