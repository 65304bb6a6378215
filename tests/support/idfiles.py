"""ID files and expected failures: ``--skips-file`` and ``--xfails-file`` (clause IDs or test IDs,
one per line, as in array-api-tests' xfails.txt), marked on the collected tests, and the strict
check per ``--xfails-file`` entry (an entry all of whose tests passed fails the run).
"""

from __future__ import annotations

import re
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import spec, verdict
from tests.support.plugin import item_clauses


@pytest.hookimpl(trylast=True)  # after tests/support/plugin.py's pytest_configure: a bad --impl is reported first
def pytest_configure(config: pytest.Config) -> None:
    skips, xfails = (read_id_file(option, config.getoption(option)) for option in ("--skips-file", "--xfails-file"))
    config.stash[ID_FILES_KEY] = (skips, xfails)
    if xfails:
        config.stash[EXPECTED_KEY] = ExpectedFailures(xfails)
        config.pluginmanager.register(config.stash[EXPECTED_KEY], "effnet-expected-failures")


def stale_entries(config: pytest.Config) -> list[verdict.Stale]:
    """The --xfails-file entries all of whose tests passed (known once the session finished)."""
    expected = config.stash.get(EXPECTED_KEY, None)
    return list(expected.stale) if expected is not None else []


@dataclass(frozen=True)
class IdEntry:
    """One line of an --xfails-file or --skips-file: a clause ID or a test ID, and an optional note."""

    option: str
    path: str
    line: int
    id: str
    note: str

    @property
    def key(self) -> str:
        return f"{self.path}:{self.line}"

    def reason(self, kind: str) -> str:
        note = f": {self.note}" if self.note else ""
        return f"{kind} ({self.option} {self.path}, line {self.line}: {self.id}{note})"


_CLAUSE_ID = re.compile(r"^[A-Z][A-Z0-9]*-\d+$")


def read_id_file(option: str, path: str | None) -> list[IdEntry]:
    """The entries of an id file, one per line, like array-api-tests' xfails.txt: blank lines and
    ``#`` comments are ignored, and a comment after an entry becomes its note (shown as the
    reason).  A missing file or an entry that looks like a clause ID but is not one in
    spec/SPEC.md is a usage error: a typo must not silently expect nothing."""
    if not path:
        return []
    try:
        lines = Path(path).expanduser().read_text().splitlines()
    except OSError as e:
        raise pytest.UsageError(f"{option} {path}: cannot read it ({e.strerror or e})") from None
    entries, unknown = [], []
    for number, line in enumerate(lines, 1):
        text, _, note = line.partition("#")
        if not text.strip():
            continue
        entry = IdEntry(option, path, number, text.strip(), note.strip())
        if _CLAUSE_ID.match(entry.id) and entry.id not in spec.clauses():
            unknown.append(f"line {number}: {entry.id!r} is not a clause ID of spec/SPEC.md")
        entries.append(entry)
    if unknown:
        raise pytest.UsageError(f"{option} {path}:\n  " + "\n  ".join(unknown))
    return entries


def _matches(entry: str, item: pytest.Item, clauses: list[str]) -> bool:
    """array-api-tests' matching (a test ID with or without its parameters, a test file, a
    directory), plus a clause ID the test cites and a bare test name."""
    nodeid = item.nodeid
    return (
        entry in clauses
        or nodeid == entry
        or nodeid.split("[", 1)[0] == entry
        or nodeid.split("::", 1)[0] == entry
        or (entry.endswith("/") and nodeid.startswith(entry))
        or ("::" not in entry and "/" not in entry and entry in (item.name, getattr(item, "originalname", None)))
    )


@pytest.hookimpl(trylast=True)  # after tests/support/plugin.py's: the traceability check and the extras' skips first
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The skip and xfail marks of the id files' entries; a warning names the entries that match no test."""
    skips, xfails = config.stash[ID_FILES_KEY]
    used: set[IdEntry] = set()
    for item in items:
        ids = item_clauses(item)
        for entry in skips:
            if _matches(entry.id, item, ids):
                item.add_marker(pytest.mark.skip(reason=entry.reason("skipped")))
                used.add(entry)
                break
        for entry in xfails:
            if _matches(entry.id, item, ids):
                # Not strict per test: a clause entry covers every test citing the clause, and only
                # some of them need fail.  Strictness is per entry instead (ExpectedFailures).
                item.add_marker(pytest.mark.xfail(reason=entry.reason("known deviation"), strict=False))
                item.user_properties.append((XFAIL_ENTRY, entry.key))
                used.add(entry)
                break
    unused = [e for e in (*skips, *xfails) if e not in used]
    if unused:
        listed = "\n  ".join(f"{e.option} {e.path}, line {e.line}: {e.id}" for e in unused)
        warnings.warn(
            pytest.PytestWarning(f"{len(unused)} id-file entries match no collected test:\n  {listed}"), stacklevel=1
        )


XFAIL_ENTRY = "xfails_file_entry"


class ExpectedFailures:
    """Strict expected failures per --xfails-file entry: an entry is stale, and the run fails,
    when every test it names ran and passed.  A passing test under an entry that also has a
    failing test is an ordinary pass (a clause with one deviating test out of three)."""

    def __init__(self, entries: list[IdEntry]) -> None:
        self.entries = {e.key: e for e in entries}
        self.failed: dict[str, int] = defaultdict(int)
        self.passed: dict[str, list[str]] = defaultdict(list)
        self.clauses: dict[str, set[str]] = defaultdict(set)
        self.stale: list[verdict.Stale] = []

    # A plain wrapper registered after pytest's own: outside its xfail handling (which sets wasxfail),
    # inside tests/support/report.py's (tryfirst), which makes the verdict's outcome from the result.
    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        report = yield
        if report.when == "call" and report.passed and hasattr(report, "wasxfail") and _entry_key(report):
            del report.wasxfail  # judged per entry at the end of the session, not as an XPASS
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        key = _entry_key(report)
        if key is None or report.when != "call":
            return
        outcome = verdict.Outcome.from_properties(report.user_properties)
        self.clauses[key].update(outcome.cited if outcome is not None else ())
        if report.skipped and hasattr(report, "wasxfail"):
            self.failed[key] += 1
        elif report.passed:
            self.passed[key].append(report.nodeid)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if hasattr(session.config, "workerinput"):
            return
        for key, nodeids in self.passed.items():
            if self.failed[key]:
                continue
            e = self.entries[key]
            note = f" ({e.note})" if e.note else ""
            message = (
                f"{e.option} {e.path}, line {e.line}: {e.id}{note} is listed as a known deviation, but "
                f"{'its test' if len(nodeids) == 1 else f'all {len(nodeids)} of its tests'} passed: remove the entry"
            )
            clauses = tuple(sorted(self.clauses[key])) if _CLAUSE_ID.match(e.id) is None else (e.id,)
            self.stale.append(verdict.Stale(e.id, clauses, message))
        if self.stale:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.stale:
            terminalreporter.section("stale expected failures", red=True)
            for stale in self.stale:
                terminalreporter.write_line(stale.message, red=True)


def _entry_key(report: pytest.TestReport) -> str | None:
    value = dict(report.user_properties).get(XFAIL_ENTRY)
    return None if value is None else str(value)


ID_FILES_KEY = pytest.StashKey[tuple[list[IdEntry], list[IdEntry]]]()
EXPECTED_KEY = pytest.StashKey[ExpectedFailures]()
