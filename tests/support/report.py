"""The pytest adapter of the verdict core (tests/support/verdict.py): each pytest report becomes one
``verdict.Outcome``, made where the exception is at hand and carried in the report's user properties
(to pytest-xdist's controller too), and counted there; the run ends with the clause table, the root
causes and the verdict, and writes the ``--report`` files.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support import evidence, verdict, watchdog
from tests.support.plugin import IMPL_KEY, item_clauses

REPORT_KEY = pytest.StashKey["ClauseReport"]()
SECTION_KEY = pytest.StashKey[tuple[str, list[tuple[str, dict[str, bool]]]]]()


@pytest.hookimpl(trylast=True)  # after tests/support/plugin.py's pytest_configure loaded the implementation
def pytest_configure(config: pytest.Config) -> None:
    config.stash[REPORT_KEY] = ClauseReport(config.getoption("--impl"), config.stash[IMPL_KEY])
    config.pluginmanager.register(config.stash[REPORT_KEY], "effnet-clause-report")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """Tell ``evidence.blame`` which clauses the running test cites."""
    with evidence.citing(item_clauses(item)):
        return (yield)


# tryfirst: the outermost wrapper, so the outcome is made from the report as every other plugin left it
# (pytest's xfail handling, and tests/support/idfiles.py's for a passing test under an --xfails-file entry).
@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    record(report, item_clauses(item), call.excinfo.value if call.excinfo is not None else None)
    return report


def record(
    report: pytest.TestReport, cited: Sequence[str], exc: BaseException | None = None, suite_error: str = ""
) -> None:
    """Attach the report's ``verdict.Outcome``: the clauses it cites and, for a failure, what its
    exception blames, or the error of the suite it shows (``suite_error`` where the caller found one)."""
    blamed: tuple[str, ...] | None = None
    conclusive = False
    if report.failed and exc is not None:
        suite_error = evidence.suite_error(exc) or ""
        if not suite_error:
            blamed = evidence.blamed(exc)  # () blames no clause the test cites: undecided for all of them
            conclusive = bool(blamed) and evidence.conclusive(exc)
    if suite_error:
        blamed = ()  # a bug of the suite, not a verdict: undecided for every clause the test cites
    text = report.longreprtext if report.failed else ""
    strict_xpass = text.startswith("[XPASS(strict)]")  # a strict xfail that passed: its entry is stale
    message = verdict.short_message(text) if report.failed else ""
    if strict_xpass:
        message = text.removeprefix("[XPASS(strict)]").strip()
    elif report.skipped:
        longrepr = report.longrepr
        message = str(longrepr[2]).removeprefix("Skipped: ") if isinstance(longrepr, tuple) else str(longrepr)
    what = (report.nodeid, report.when, report.outcome, tuple(c for c in cited if c))
    expected_to_fail = hasattr(report, "wasxfail")
    outcome = verdict.Outcome(*what, blamed, conclusive, suite_error, expected_to_fail, strict_xpass, message)
    report.user_properties.append(outcome.to_property())


@dataclass
class ClauseReport:
    """The run's clause results, a plugin: under pytest-xdist its ``pytest_runtest_logreport`` runs in
    the controller for every worker's report, so it covers the whole run."""

    impl: str
    module: ModuleType | None = None  # the implementation, for the errata recognisers
    clauses: verdict.Clauses = field(default_factory=verdict.Clauses)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if (outcome := verdict.Outcome.from_properties(report.user_properties)) is not None:
            self.clauses.count(outcome)

    def report(self) -> verdict.Report:
        module = self.module
        recognise = None if module is None else (lambda erratum: recognised(erratum, module))
        rows = self.clauses.rows(recognise)
        tensorflow = verdict.tensorflow_conventions(rows, recognise)
        return verdict.Report.of(self.impl, rows, self.clauses.suite_errors, tensorflow)


# A recogniser's finding, computed once per (erratum, module): the TensorFlow conventions ask again.
recognised = functools.cache(watchdog.recognise)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or REPORT_KEY not in config.stash:
        return
    from tests.support import idfiles  # a plugin the root conftest loads after this one: imported once loaded

    plugin: ClauseReport = config.stash[REPORT_KEY]
    for stale in idfiles.stale_entries(config):
        plugin.clauses.count_stale(stale)
    report = plugin.report()
    path = config.getoption("--report")
    written = report.write(Path(path)) if path else None
    rows = report.clauses
    ran = [r for r in rows if r.status != "not run"]
    if not ran:
        return  # no test citing a clause ran (e.g. only tests/meta): no table to show
    # The table, then the root causes and the verdict: printed at the very end (pytest_sessionfinish).
    lines: list[tuple[str, dict[str, bool]]] = []
    width = max(len(r.clause) for r in ran)
    lines.append((f"{'clause':<{width}}  {'status':<8} {'pass fail skip xfail':<21} title", {}))
    for r in ran:
        counts = f"{r.passed:>4} {r.failed:>4} {r.skipped:>4} {r.xfailed:>5}"
        markup = {"FAILED": {"red": True}, "passed": {"green": True}}.get(r.status, {"yellow": True})
        lines.append((f"{r.clause:<{width}}  {r.status:<8} {counts:<21} {r.title}", markup))
        if r.consequence_of:
            lines.append((f"{'':<{width}}    consequence of {', '.join(r.consequence_of)}", {}))
        elif r.detail and r.status != "passed":
            lines.append((f"{'':<{width}}    {r.detail[:300]}", {}))
        for erratum in r.errata:
            lines.append((f"{'':<{width}}    erratum {erratum}", {"yellow": True}))
    not_run = [r.clause for r in rows if r.status == "not run"]
    if not_run:
        lines.append((f"not run (no selected test cites them): {', '.join(not_run)}", {}))
    if written:
        lines.append((f"report written to {written[0]} and {written[1]}", {}))
    for error in report.suite_errors:
        lines.append((f"error of the suite (a bug to report, not a verdict): {error[:400]}", {"red": True}))
    for line in verdict.root_cause_lines(rows):
        root = line.startswith("root cause")
        lines.append((line[:400], {"red": root, "yellow": not root}))
    if report.tensorflow_conventions:
        lines.append((f"{report.impl}: {report.tensorflow_conventions}", {"yellow": True}))
    failed = any(r.status == "FAILED" for r in rows)
    if failed:
        from hypothesis.internal.conjecture import engine  # the bound the root conftest set

        seconds = engine.MAX_SHRINKING_SECONDS
        note = (
            f"(a failing property stops at its first failure, shrunk for at most {seconds} s: "
            "the example may be a little less than minimal)"
        )
        lines.append((note, {}))
    lines.append((f"verdict: {report.verdict}", {"bold": True, "red": failed, "green": not failed}))
    config.stash[SECTION_KEY] = (f"EfficientNet conformance: {report.impl}", lines)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> Any:
    """The conformance section after everything pytest prints (tracebacks, the ``-r`` list of tests,
    the tally line): a run ends with its root causes and verdict."""
    result = yield
    terminal = session.config.pluginmanager.get_plugin("terminalreporter")
    section = session.config.stash.get(SECTION_KEY, None)
    if terminal is not None and section is not None:
        title, lines = section
        terminal.write_sep("=", title)
        for line, markup in lines:
            terminal.write_line(line, **markup)
    return result
