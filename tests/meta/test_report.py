"""The per-clause conformance report (tests/support/verdict.py and its pytest adapter,
tests/support/report.py): statuses, --report files, errata, and aggregation under pytest-xdist.

End to end, pytest runs in a subprocess on tests/conformance/test_api.py (a small, fast
selection) against effnet, and under xdist against a copy of effnet with one deliberate break, and the
JSON report is read back.  The status rules and the errata lookup are also tested on hand-made
reports, where every outcome can be produced on demand.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conformance.test_api import VALID_CALLS
from tests.support import errata, evidence, loader, spec, subrun, verdict
from tests.support import report as clause_report

SELECTION = "tests/conformance/test_api.py"
API2_TESTS = len(loader.SIGNATURES) + len(VALID_CALLS)  # signatures, and calls with the tutorial's arguments
SEQUENTIAL_TEST = f"{SELECTION}::test_sequential_has_eleven_children"
# The break, appended to a copy of effnet: EfficientNetSequential loses its classifier, so it has
# 10 children (API-3), while its signature stays the tutorial's (API-2 is checked at start-up).
BREAK = """

_correct_sequential = EfficientNetSequential


def EfficientNetSequential(w_factor=1, d_factor=1, n_classes=1000, **kwargs):
    return nn.Sequential(*list(_correct_sequential(w_factor, d_factor, n_classes, **kwargs))[:-1])
"""


def run_suite(tmp_path: Path, *args: str) -> tuple[int, str, dict[str, Any]]:
    """Run the selection with --report; (exit code, output, report JSON)."""
    report = tmp_path / "report"
    env = {k: v for k, v in os.environ.items() if k not in ("EFFNET_IMPL", "PYTEST_ADDOPTS")}
    cmd = [SELECTION, "-p", "no:cacheprovider", "--report", str(report), *args]
    result = subrun.pytest(cmd, env=env, cwd=spec.ROOT, timeout=300)
    output = result.stdout + result.stderr
    assert (tmp_path / "report.json").exists(), f"no report.json written:\n{output}"
    assert (tmp_path / "report.md").exists(), f"no report.md written:\n{output}"
    return result.returncode, output, json.loads((tmp_path / "report.json").read_text())


def by_clause(payload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["clause"]: row for row in payload["clauses"]}


@pytest.fixture
def broken_impl(tmp_path: Path) -> Path:
    path = tmp_path / "broken_effnet.py"
    path.write_text((spec.ROOT / "effnet" / "model.py").read_text() + BREAK)
    return path


def test_report_of_a_conforming_run(tmp_path):
    code, output, payload = run_suite(tmp_path)
    assert code == 0, output
    rows = by_clause(payload)
    assert list(rows) == list(spec.clauses()), "the JSON lists every clause of SPEC.md, in order"
    expected_counts = {"API-1": len(loader.REQUIRED_NAMES), "API-2": API2_TESTS, "API-3": 6}
    for clause, count in expected_counts.items():
        assert (rows[clause]["status"], rows[clause]["passed"]) == ("passed", count), rows[clause]
    others = {c: r["status"] for c, r in rows.items() if c not in expected_counts}
    assert set(others.values()) == {"not run"}, f"clauses no selected test cites must be 'not run': {others}"
    assert payload["verdict"].startswith("effnet conforms to every clause that ran"), payload["verdict"]
    assert "EfficientNet conformance: effnet" in output, output
    assert "not run (no selected test cites them)" in output, output


def test_report_of_a_broken_fork_under_xdist(tmp_path, broken_impl):
    skips = tmp_path / "skips.txt"
    skips.write_text("API-2  # not checked for this fork\n")
    code, output, payload = run_suite(tmp_path, "-n", "2", "--impl", str(broken_impl), "--skips-file", str(skips))
    assert code == 1, output
    rows = by_clause(payload)
    assert (rows["API-1"]["status"], rows["API-1"]["passed"]) == ("passed", len(loader.REQUIRED_NAMES))
    api2 = rows["API-2"]
    assert (api2["status"], api2["passed"], api2["skipped"]) == ("skipped", 0, API2_TESTS), api2
    assert "not checked for this fork" in api2["detail"], api2
    api3 = rows["API-3"]
    assert (api3["status"], api3["passed"], api3["failed"]) == ("FAILED", 5, 1), api3
    assert api3["detail"].startswith(SEQUENTIAL_TEST), api3
    assert "10 children" in api3["detail"], api3
    assert "does NOT conform: 1 of 3 clauses failed (API-3)" in payload["verdict"], payload["verdict"]
    assert "10 children" in output, "the terminal summary shows the first failure"
    assert_verdict_is_last(output, payload)


def assert_verdict_is_last(output: str, payload: dict[str, Any]) -> None:
    """The run ends with the clause table, the root causes and the verdict: after pytest's tracebacks,
    its list of failed tests (``-ra`` here, from pyproject.toml) and its tally line, so that the answer
    is on the last screen."""
    lines = output.rstrip().splitlines()
    assert lines[-1] == f"verdict: {payload['verdict']}", f"the verdict is not the last line:\n{output}"
    table = max(i for i, line in enumerate(lines) if line.startswith("clause "))
    roots = [i for i, line in enumerate(lines) if line.startswith("root cause ")]
    assert [lines[i].split(" ")[2] for i in roots] == payload["root_causes"], output
    assert all(table < i for i in roots), f"the root causes come after the clause table:\n{output}"
    section = max(i for i, line in enumerate(lines) if "EfficientNet conformance:" in line)
    # pytest's own lines: its -r list and its separators (a long title leaves a single "=" each side).
    pytest_lines = [i for i, line in enumerate(lines) if line.startswith(("FAILED ", "SKIPPED ", "=")) and i != section]
    assert max(pytest_lines) < section, f"pytest's own summary lines follow the conformance section:\n{output}"


# --- Status rules and errata on hand-made reports -------------------------------------------
def _blamed(*clauses: str) -> BaseException:
    """An assertion raised inside ``blame(*clauses)``."""
    try:
        with evidence.blame(*clauses):
            raise AssertionError("x")
    except AssertionError as e:
        return e
    raise AssertionError("unreachable")


def make_report(
    clauses: str,
    outcome: str,
    when: str = "call",
    exc: BaseException | None = None,
    suite_error: str = "",
    **extra: Any,
) -> pytest.TestReport:
    """A pytest report of a test citing ``clauses`` (comma-separated), with its outcome as
    tests/support/report.py records it (``exc``: the exception the test raised)."""
    longrepr: Any = extra.pop("longrepr", None)
    if outcome == "failed" and longrepr is None:
        longrepr = "E       AssertionError: the squeeze is not a mean"
    elif outcome == "skipped" and longrepr is None:
        longrepr = ("x.py", 1, "Skipped: no forward_stages")
    report = pytest.TestReport(
        f"tests/x.py::test_{clauses}", ("x.py", 1, "t"), {}, outcome, longrepr, when, user_properties=[]
    )
    for key, value in extra.items():
        setattr(report, key, value)
    clause_report.record(report, clauses.split(","), exc, suite_error)
    return report


def statuses(*reports: pytest.TestReport, module: ModuleType | None = None) -> dict[str, verdict.Row]:
    collected = clause_report.ClauseReport("fork", module)
    for r in reports:
        collected.pytest_runtest_logreport(r)
    return {row.clause: row for row in collected.report().clauses}


def test_status_rules():
    rows = statuses(
        make_report("API-1", "passed"),
        make_report("API-6", "passed"),
        make_report("API-6", "skipped"),
        make_report("API-7", "skipped", when="setup"),
        make_report("REG-1", "passed"),
        make_report("REG-1", "failed"),
        make_report("REG-2", "skipped", wasxfail="known deviation"),
        make_report("REG-3", "passed", when="setup"),  # setup and teardown passes are not tests
        make_report("SE-2", "failed", when="setup"),
        make_report("NUM-3", "failed", longrepr="[XPASS(strict)] known deviation (--xfails-file f, line 1: NUM-3)"),
    )
    expected = {
        "API-1": "passed",
        "API-6": "partial",  # a skipped check is never shown as passed
        "API-7": "skipped",
        "REG-1": "FAILED",
        "REG-2": "XFAIL",
        "REG-3": "not run",
        "SE-2": "FAILED",
        "SE-1": "not run",
        "NUM-3": "FAILED",  # a strict xfail that passed: the --xfails-file entry is stale
    }
    assert {c: rows[c].status for c in expected} == expected
    assert rows["API-6"].detail == "1 skipped: no forward_stages"
    assert rows["SE-2"].detail == "tests/x.py::test_SE-2 (in setup): AssertionError: the squeeze is not a mean"


def test_the_detail_is_the_most_specific_failure():
    whole_block = make_report("BLOCK-3,SE-1,SE-2", "failed", longrepr="E   AssertionError: the block output differs")
    squeeze = make_report("SE-1", "failed", longrepr="E   AssertionError: the squeeze is not the mean")
    for order in ([whole_block, squeeze], [squeeze, whole_block]):  # xdist reports in any order
        rows = statuses(*order)
        assert rows["SE-1"].detail == "tests/x.py::test_SE-1: AssertionError: the squeeze is not the mean"
        assert rows["SE-2"].detail.endswith("the block output differs")


def test_the_skip_reason_does_not_depend_on_the_order_of_the_reports():
    b8, l2 = (
        make_report("API-5", "skipped", longrepr=("x.py", 1, f"Skipped: no efficientnet_{name}"), nodeid=f"t[{name}]")
        for name in ("b8", "l2")
    )
    for order in ([b8, l2], [l2, b8]):  # xdist reports in any order
        assert statuses(*order)["API-5"].detail == "2 skipped: no efficientnet_b8"


# A hypothesis exception group, as pytest prints it: with "E" prefixes (an assertion rewritten
# inside the group) or as the members' tracebacks.  The detail is the group's line and each
# member's error line, without the box.
GROUP_LINE = "ExceptionGroup: Hypothesis found 2 distinct failures. (2 sub-exceptions)"
BOXED = [
    "E     + Exception Group Traceback (most recent call last):",
    f"E     |   {GROUP_LINE}",
    "E     +-+---------------- 1 ----------------",
    "E       | AssertionError: the gate is not sigmoid",
    "E       +---------------- 2 ----------------",
    "E       | RuntimeError: zero channels",
    "E       +------------------------------------",
]
TRACEBACKS = [
    f"  | {GROUP_LINE}",
    "  +-+---------------- 1 ----------------",
    "    | Traceback (most recent call last):",
    '    |   File "tests/x.py", line 9, in test_x',
    "    |     assert got == want",
    "    | AssertionError: the gate is not sigmoid",
    "    | assert 0.3 <= 1e-05",
    "    +---------------- 2 ----------------",
    "    | RuntimeError: zero channels",
    "    +------------------------------------",
]


@pytest.mark.parametrize("lines", [BOXED, TRACEBACKS], ids=["E-lines", "tracebacks"])
def test_the_detail_of_a_hypothesis_exception_group_is_its_messages(lines):
    rows = statuses(make_report("SE-1", "failed", longrepr="\n".join(lines)))
    assert rows["SE-1"].detail == (
        f"tests/x.py::test_SE-1: {GROUP_LINE} AssertionError: the gate is not sigmoid RuntimeError: zero channels"
    )


def test_verdicts():
    def line(*reports: pytest.TestReport) -> str:
        return verdict.verdict("fork", list(statuses(*reports).values()))

    assert line() == "fork: no clause was checked (no selected test cites one)"
    n = len(spec.clauses())
    assert line(make_report("API-1", "passed"), make_report("API-6", "skipped")) == (
        f"fork conforms to every clause that ran: 1 passed, 1 skipped; {n - 2} of {n} clauses not run"
    )
    assert line(make_report("API-1", "passed"), make_report("SE-1", "skipped", wasxfail="E-1")).startswith(
        "fork fails only known deviations (SE-1): 1 XFAIL, 1 passed;"
    )
    assert line(make_report("API-1", "failed"), make_report("SE-1", "passed")).startswith(
        "fork does NOT conform: 1 of 2 clauses failed (API-1); root cause API-1; 1 FAILED, 1 passed;"
    )
    assert line(
        make_report("SCALE-1", "failed"), make_report("ARCH-5", "failed"), make_report("SE-1", "failed")
    ).startswith("fork does NOT conform: 3 of 3 clauses failed (ARCH-5, SE-1, SCALE-1); root causes SE-1, SCALE-1;")


# --- Root causes -----------------------------------------------------------------------------
def test_root_causes_are_the_failed_clauses_no_failed_dependency_explains():
    rows = statuses(
        make_report("SCALE-1", "failed"),
        make_report("ARCH-5", "failed"),  # depends on SCALE-1 through SCALE-3, ARCH-3, ...
        make_report("NUM-1", "failed"),
        make_report("SE-1", "failed"),  # the numerics depend on it, the layer shapes do not
        make_report("REG-3", "passed"),
    )
    assert [c for c, r in rows.items() if r.root_cause] == ["SE-1", "SCALE-1"]
    assert rows["ARCH-5"].consequence_of == ["SCALE-1"]
    assert rows["NUM-1"].consequence_of == ["SE-1", "SCALE-1"]
    assert rows["SE-1"].consequence_of == []
    assert rows["REG-3"].consequence_of == []
    lines = verdict.root_cause_lines(list(rows.values()))
    assert lines[0].startswith("root cause SE-1 (Average squeeze): tests/x.py::test_SE-1"), lines
    assert lines[1].startswith("root cause SCALE-1 (Width rounding)"), lines
    assert "consequence: ARCH-5 fails because SCALE-1 failed" in lines, lines
    assert "consequence: NUM-1 fails because SE-1, SCALE-1 failed" in lines, lines


def test_a_blamed_failure_fails_only_the_clauses_it_blames():
    whole = make_report("BLOCK-3,BLOCK-4", "failed", exc=_blamed("BLOCK-4"))
    rows = statuses(whole, make_report("BLOCK-3", "passed"))
    assert (rows["BLOCK-4"].status, rows["BLOCK-4"].failed) == ("FAILED", 1)
    assert (rows["BLOCK-3"].status, rows["BLOCK-3"].skipped) == ("partial", 1), rows["BLOCK-3"]
    assert "undecided: tests/x.py::test_BLOCK-3,BLOCK-4 failed on BLOCK-4" in rows["BLOCK-3"].detail


def test_blame_travels_with_the_exception_and_unites_over_exception_groups():
    fail = _blamed
    assert evidence.blamed(fail("SE-1")) == ("SE-1",)
    group = ExceptionGroup("two", [fail("SE-1"), fail("SE-2")])  # type: ignore[list-item]
    assert evidence.blamed(group) == ("SE-1", "SE-2")
    assert evidence.blamed(ExceptionGroup("one unblamed", [fail("SE-1"), AssertionError("y")])) is None
    assert evidence.blamed(fail()) == (), "blame() with no clause: undecided for every clause the test cites"


def test_a_failure_blamed_on_no_cited_clause_is_undecided_for_all():
    build = make_report("BLOCK-2", "failed", exc=_blamed())
    row = statuses(build)["BLOCK-2"]
    assert (row.status, row.failed, row.skipped) == ("skipped", 0, 1), row
    assert "failed on a step that another clause's tests check" in row.detail


@pytest.fixture
def running_test_cites():
    """Pretend the running test cites these clauses (the report plugin sets them around each test)."""
    with contextlib.ExitStack() as stack:
        yield lambda *clauses: stack.enter_context(evidence.citing(clauses))


def _property(calls: list[int], *clauses: str):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(database=None, max_examples=50, derandomize=True)
    @given(st.integers(0, 1000))
    def prop(x: int) -> None:
        calls.append(x)
        with evidence.blame(*clauses):
            assert x < 3, f"x = {x}"

    return prop


def test_a_failure_that_leaves_a_property_undecided_stops_it_at_once_unshrunk(running_test_cites):
    running_test_cites("ARCH-4")
    for premise in [("SCALE-1",), ()]:  # a premise of another clause; a step blamed on no clause
        calls: list[int] = []
        with pytest.raises(evidence.Undecided) as info:
            _property(calls, *premise)()
        assert len([x for x in calls if x >= 3]) == 1, f"{premise}: hypothesis went on after the first failure: {calls}"
        assert evidence.blamed(info.value) == premise
        assert isinstance(evidence.unwrap(info.value), AssertionError)
        assert "undecided for this test's clauses" in str(info.value)


def test_a_failure_that_decides_a_property_is_shrunk_as_usual(running_test_cites):
    running_test_cites("ARCH-4")
    calls: list[int] = []
    with pytest.raises(AssertionError, match="x = 3"):  # shrunk to the smallest failing example
        _property(calls, "ARCH-4")()
    running_test_cites()  # outside a property nothing changes: the exception is raised as it is
    with pytest.raises(AssertionError), evidence.blame("SCALE-1"):
        raise AssertionError("premise")


def test_only_an_error_that_the_meta_device_caused_is_repeated_on_the_cpu():
    from torch import nn

    from tests.support import models

    assert models.meta_caused(RuntimeError("Tensor.item() cannot be called on meta tensors"))
    assert models.meta_caused(NotImplementedError("Could not run 'aten::nonzero' with arguments from the 'Meta'"))
    assert not models.meta_caused(ValueError("would have 1,665,349,112 parameters, more than the limit"))
    assert not models.meta_caused(RuntimeError("The size of tensor a (8) must match the size of tensor b (16)"))
    devices: list[str] = []

    def refuses() -> nn.Module:
        devices.append(str(nn.Linear(1, 1).weight.device))
        raise ValueError("n_classes must be at least 1, got 0")

    with pytest.raises(ValueError, match="n_classes"):
        models.to_inspect(refuses)
    assert devices == ["meta"], "the implementation's own error was built again on the CPU"

    def needs_data() -> nn.Module:
        layer = nn.Linear(1, 1)
        devices.append(str(layer.weight.device))
        layer.weight.sum().item()  # a value: the meta device has none
        return layer

    devices.clear()
    assert models.to_inspect(needs_data).weight.device.type == "cpu"
    assert devices == ["meta", "cpu"]


# --- Errata by evidence ---------------------------------------------------------------------
TUTORIAL_SE = """

class SEBlock(nn.Module):  # the tutorial's squeeze: a max-pool
    def __init__(self, c, r=24):
        super().__init__()
        self.squeeze = nn.AdaptiveMaxPool2d(1)
        self.excitation = nn.Sequential(
            nn.Conv2d(c, max(1, c // r), 1), nn.SiLU(), nn.Conv2d(max(1, c // r), c, 1), nn.Sigmoid()
        )

    def forward(self, x):
        return x * self.excitation(self.squeeze(x))
"""


@pytest.fixture(scope="module")
def max_pool_se(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    path = tmp_path_factory.mktemp("fork") / "max_pool_se.py"
    path.write_text((spec.ROOT / "effnet" / "model.py").read_text() + TUTORIAL_SE)
    return loader.load(str(path))


def test_an_erratum_is_named_only_when_its_signature_shows(max_pool_se):
    # The same failure of SE-1 (a tolerance, say a TF32 rounding difference on a GPU): effnet's SE
    # is an average, so E-1 is not named; a max-pool SE shows E-1's signature, so it is.
    tolerance = make_report("SE-1", "failed", longrepr="E   AssertionError: the gate differs by 3.1e-04 relative")
    assert statuses(tolerance, module=loader.load("effnet"))["SE-1"].errata == []
    (named,) = statuses(tolerance, module=max_pool_se)["SE-1"].errata
    assert named.startswith("E-1: the tutorial: SE squeeze is AdaptiveMaxPool2d; the spec: global average pooling: ")
    assert "max-pool squeeze" in named
    # E-1 is SE-1's erratum: a failure of another clause does not name it, even in the max-pool fork.
    rows = statuses(make_report("NUM-1", "failed"), make_report("SE-2", "failed"), module=max_pool_se)
    assert rows["NUM-1"].errata == []
    assert rows["SE-2"].errata == []
    assert statuses(make_report("SE-1", "passed"), module=max_pool_se)["SE-1"].errata == [], "only beside failures"


def test_a_clause_that_shows_an_erratum_is_a_root_cause_of_its_own(monkeypatch, max_pool_se):
    # The tutorial's schedule fails REG-2 and its element-wise dropout REG-1, on which REG-2 depends:
    # without evidence REG-2 is REG-1's consequence; with E-3's signature it is a departure of its own.
    failures = (make_report("REG-1", "failed"), make_report("REG-2", "failed"))
    assert statuses(*failures)["REG-2"].consequence_of == ["REG-1"]
    monkeypatch.setattr(clause_report, "recognised", lambda e, module: "one rate per stage" if e == "E-3" else None)
    rows = statuses(*failures, module=max_pool_se)
    assert rows["REG-2"].root_cause
    assert rows["REG-2"].errata[0].startswith("E-3: ")
    assert rows["REG-1"].root_cause


def test_every_erratum_names_a_defined_clause_and_has_a_recogniser():
    table = spec.errata()
    assert table, "SPEC.md's errata table is empty or unreadable"
    assert [e.id for e in table] == [f"E-{i}" for i in range(1, len(table) + 1)]
    unknown = [(e.id, c) for e in table for c in e.clauses or ("(none)",) if c not in spec.clauses()]
    assert not unknown, f"errata cite undefined clauses: {unknown}"
    assert [e.id for e in table] == list(errata.RECOGNISERS), "one recogniser per erratum, in table order"
    assert all(e.signature for e in table), "every erratum states the signature its recogniser checks"


def test_no_recogniser_sees_a_departure_in_effnet():
    effnet = loader.load("effnet")
    seen = {e: found for e in errata.RECOGNISERS if (found := errata.recognise(e, effnet))}
    assert not seen, f"recognisers fire on the conforming effnet: {seen}"


# --- Errors of the suite ------------------------------------------------------------------------
def _raised_in(filename: str, code: str) -> BaseException:
    """The exception that ``code`` raises when it runs as if it were the file ``filename``."""
    try:
        exec(compile(code, filename, "exec"), {})
    except BaseException as e:
        return e
    raise AssertionError(f"{code!r} raised nothing")


def test_an_exception_in_the_suites_own_code_is_an_error_of_the_suite():
    suite_file = str(Path(evidence.__file__))  # tests/support/evidence.py: the suite's own code
    index_error = _raised_in(suite_file, "[][0]")
    found = evidence.suite_error(index_error)
    assert found is not None
    assert found.startswith("IndexError: list index out of range at tests/support/evidence.py:1")
    # Not the suite's: an assertion (a verdict), or anything raised in the implementation's file.
    assert evidence.suite_error(_raised_in(suite_file, "assert False, 'wrong'")) is None
    assert evidence.suite_error(_raised_in(str(spec.ROOT / "effnet" / "model.py"), "[][0]")) is None
    assert evidence.suite_error(_raised_in(str(spec.ROOT / "tests" / "forks" / "fork.py"), "{}['x']")) is None
    group = ExceptionGroup("two examples", [index_error, _raised_in(suite_file, "{}['k']")])
    assert evidence.suite_error(group) is not None
    mixed = ExceptionGroup("two examples", [index_error, _raised_in(suite_file, "assert False")])
    assert evidence.suite_error(mixed) is None


def test_an_error_of_the_suite_is_undecided_for_its_clauses_and_named_in_the_verdict():
    error = "IndexError: list index out of range at tests/conformance/x.py:3"
    failed = make_report("REG-1,REG-2", "failed", suite_error=error, longrepr="E   IndexError: list index out of range")
    collected = clause_report.ClauseReport("fork")
    for report in (failed, make_report("API-1", "passed")):
        collected.pytest_runtest_logreport(report)
    found = collected.report()
    rows = {row.clause: row for row in found.clauses}
    assert rows["REG-1"].status == rows["REG-2"].status == "skipped"
    assert "an error of the suite (IndexError" in rows["REG-1"].detail
    assert found.suite_errors == [f"tests/x.py::test_REG-1,REG-2: {error}"]
    text = found.verdict
    assert text.startswith("fork conforms to every clause that ran")
    assert "1 error of the suite (not of the implementation" in text


def test_the_detail_leaves_out_pytests_assertion_introspection():
    longrepr = "\n".join(
        [
            "E       AssertionError: SEBlock(1, r=1): the gate is not the mean's (relative error 1.43e-02)",
            "E       assert 0.014267386045743981 <= 1e-05",
            "E        +  where 0.014267386045743981 = <function rel_err at 0x7f05014f13a0>(tensor([0.9033]))",
        ]
    )
    rows = statuses(make_report("SE-1", "failed", longrepr=longrepr))
    assert rows["SE-1"].detail == (
        "tests/x.py::test_SE-1: AssertionError: SEBlock(1, r=1): the gate is not the mean's (relative error 1.43e-02)"
    )


def test_the_detail_leaves_out_hypothesis_reproduction_of_the_example():
    longrepr = "\n".join(
        [
            "E       AssertionError: SEBlock(1, r=1): the gate is not the mean's",
            "E       Failing test case: test_se(",
            "E           impl=<module '_effnet_impl_1' from '/tmp/fork.py'>,",
            "E       )",
        ]
    )
    rows = statuses(make_report("SE-1", "failed", longrepr=longrepr))
    assert rows["SE-1"].detail == "tests/x.py::test_SE-1: AssertionError: SEBlock(1, r=1): the gate is not the mean's"
