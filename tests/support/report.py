"""The per-clause conformance report: each test result counted against the clauses it cites,
the failed clauses split into root causes and consequences (spec/efficientnet.toml
[dependencies]), the errata whose signature the implementation shows (tests/support/evidence.py),
the verdict, and the ``--report`` files.

Hooks it owns: ``pytest_configure`` (creates the report, after tests/support/plugin.py has loaded
the implementation, and registers it as a plugin, whose ``pytest_runtest_logreport`` counts every
report, the workers' ones too under pytest-xdist), ``pytest_runtest_call`` (tells ``blame`` the
running test's clauses), ``pytest_runtest_makereport`` (records a failure's ``blame`` or an error of
the suite), ``pytest_terminal_summary`` (the verdict and ``--report``) and
``pytest_sessionfinish`` (the clause table, the root causes and the verdict, printed last: after
pytest's tracebacks, its list of tests and its tally line).
"""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support import evidence, spec, watchdog
from tests.support.plugin import IMPL_KEY

REPORT_KEY = pytest.StashKey["ClauseReport"]()


@pytest.hookimpl(trylast=True)  # after tests/support/plugin.py's pytest_configure loaded the implementation
def pytest_configure(config: pytest.Config) -> None:
    config.stash[REPORT_KEY] = ClauseReport(config.getoption("--impl"), config.stash[IMPL_KEY])
    config.pluginmanager.register(config.stash[REPORT_KEY], "effnet-clause-report")


# --- The per-clause report -----------------------------------------------------------
# A clause's status summarises every test result that cites it.  It is "passed" only when all
# of them passed: a skipped check never counts as a pass ("partial" when some passed and some
# were skipped), and a clause that no selected test cites is "not run".  Its detail is the
# failure of the most specific failing test, else the first skip reason.  A failing test that
# blames some of its clauses (tests/support/evidence.py ``blame``) fails only those; for the
# others it is undecided, counted as a skip.  The failed clauses are then split into root causes
# and their consequences along spec/efficientnet.toml [dependencies] (a clause that shows an
# erratum's signature, or that a conclusive ``blame`` failed, is a root cause whatever else failed),
# and an erratum is named beside a failed clause only when its recogniser sees the erratum's signature.
BLAME = "blame"
CONCLUSIVE = "conclusive"  # the blamed clauses are root causes whatever their dependencies do
SUITE_ERROR = "suite_error"  # an exception raised by the suite's own code (evidence.suite_error)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """Tell ``evidence.blame`` which clauses the running test cites."""
    evidence.cited = tuple(c for m in item.iter_markers("clause") for c in m.args)
    try:
        return (yield)
    finally:
        evidence.cited = None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed and call.excinfo is not None and (error := evidence.suite_error(call.excinfo.value)):
        # A bug of the suite, not a verdict: undecided for every clause the test cites.
        report.user_properties += [(SUITE_ERROR, error), (BLAME, "")]
    elif report.failed and call.excinfo is not None:
        clauses = evidence.blamed(call.excinfo.value)
        if clauses is not None:  # () blames no clause the test cites: undecided for all of them
            report.user_properties.append((BLAME, ",".join(clauses)))
            if clauses and evidence.conclusive(call.excinfo.value):
                report.user_properties.append((CONCLUSIVE, "yes"))
    return report


STATUSES = ("FAILED", "XFAIL", "partial", "passed", "skipped", "not run")


@dataclass
class ClauseResult:
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    xfailed: int = 0
    xpassed: int = 0
    first_failure: str = ""
    skip_reason: str = ""
    failure_key: tuple[int, str] = (1 << 30, "")

    def note_failure(self, key: tuple[int, str], message: str) -> None:
        """Keep the failure of the most specific test (fewest clauses cited, then node ID): it says
        most about this clause, and the choice does not depend on the order xdist reports in."""
        if key < self.failure_key:
            self.failure_key, self.first_failure = key, message

    @property
    def status(self) -> str:
        if self.failed or self.xpassed:
            return "FAILED"
        if self.xfailed:
            return "XFAIL"
        if self.passed and self.skipped:
            return "partial"
        if self.passed:
            return "passed"
        if self.skipped:
            return "skipped"
        return "not run"


@dataclass
class ClauseReport:
    impl: str
    module: ModuleType | None = None  # the implementation, for the errata recognisers
    results: dict[str, ClauseResult] = field(default_factory=lambda: defaultdict(ClauseResult))
    started: float = field(default_factory=time.time)
    conclusive: set[str] = field(default_factory=set)  # clauses a conclusive blame failed
    suite_errors: list[str] = field(default_factory=list)  # "nodeid: error" of each error of the suite

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """A hook of this object, registered as a plugin: under pytest-xdist it runs in the
        controller for every worker's report (the clause IDs travel in user_properties), so the
        report covers the whole run."""
        self.add(report)

    def add(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        ids = [c for c in str(props.get("clauses", "")).split(",") if c]
        key = (len(ids), report.nodeid)
        has_blame = report.failed and BLAME in props
        blamed = [c for c in str(props.get(BLAME, "")).split(",") if c in ids] if has_blame else []
        if has_blame and CONCLUSIVE in props and not hasattr(report, "wasxfail"):
            self.conclusive.update(blamed)
        suite_error = props.get(SUITE_ERROR) if report.failed else None
        if suite_error:
            self.suite_errors.append(f"{report.nodeid}: {suite_error}")
        for c in ids:
            r = self.results[c]
            if has_blame and c not in blamed:
                r.skipped += 1  # undecided: the failure is about another clause than this one
                about = ", ".join(blamed) or "a step that another clause's tests check"
                if suite_error:
                    about = f"an error of the suite ({suite_error})"
                elif not blamed and props.get(BLAME):
                    about = f"its premise, {props[BLAME]}"  # a premise from clauses the test does not cite
                r.skip_reason = r.skip_reason or f"undecided: {report.nodeid} failed on {about}"
                continue
            if report.when == "call" and hasattr(report, "wasxfail"):
                if report.passed:
                    r.xpassed += 1
                    r.note_failure(key, f"{report.nodeid}: expected to fail, but passed")
                else:
                    r.xfailed += 1
            elif report.failed and str(report.longrepr).startswith("[XPASS(strict)]"):
                r.xpassed += 1  # a strict xfail that passed: its --xfails-file entry is stale
                why = str(report.longrepr).removeprefix("[XPASS(strict)]").strip()
                r.note_failure(key, f"{report.nodeid}: passed, but is listed as {why}")
            elif report.failed:
                r.failed += 1
                where = "" if report.when == "call" else f" (in {report.when})"
                r.note_failure(key, f"{report.nodeid}{where}: {_short(report)}")
            elif report.skipped and report.when in ("setup", "call"):
                if hasattr(report, "wasxfail"):
                    r.xfailed += 1
                else:
                    r.skipped += 1
                    r.skip_reason = r.skip_reason or _skip_reason(report)
            elif report.passed and report.when == "call":
                r.passed += 1

    def rows(self) -> list[dict[str, Any]]:
        """One row per clause of SPEC.md, in document order, "not run" ones included; a failed
        clause is a root cause or names the root causes it is a consequence of."""
        statuses = {cid: self.results.get(cid, ClauseResult()).status for cid in spec.clauses()}
        failing = [c for c, s in statuses.items() if s in ("FAILED", "XFAIL")]
        errata = self.errata(failing)
        roots, consequences = spec.root_causes(failing, frozenset(errata) | frozenset(self.conclusive))
        rows = []
        for cid, clause in spec.clauses().items():
            r = self.results.get(cid, ClauseResult())
            status = statuses[cid]
            detail = r.first_failure
            if not detail and status in ("partial", "skipped"):
                detail = f"{r.skipped} skipped: {r.skip_reason}"
            rows.append(
                {
                    "clause": cid,
                    "title": clause.title,
                    "status": status,
                    "passed": r.passed,
                    "failed": r.failed + r.xpassed,
                    "skipped": r.skipped,
                    "xfailed": r.xfailed,
                    "detail": detail,
                    "root_cause": cid in roots,
                    "consequence_of": consequences.get(cid, []),
                    "errata": errata.get(cid, []),
                }
            )
        return rows

    def errata(self, failing: list[str]) -> dict[str, list[str]]:
        """Failed clause -> the errata whose signature the implementation shows (none without it)."""
        if self.module is None:
            return {}
        found: dict[str, list[str]] = defaultdict(list)
        for e in spec.errata():
            shown_in = [c for c in e.clauses if c in failing]
            if shown_in and (seen := recognised(e.id, self.module)):
                for c in shown_in:
                    found[c].append(f"{e}: {seen}")
        return dict(found)


_RECOGNISED: dict[tuple[str, int], str | None] = {}


def recognised(erratum: str, module: ModuleType) -> str | None:
    """The recogniser's finding for ``erratum`` in ``module``, computed once per module; bounded in time,
    and apart from this process under pytest-xdist (tests/support/watchdog.py): the implementation's code
    runs there, and may hang, exit or crash."""
    key = (erratum, id(module))
    if key not in _RECOGNISED:
        _RECOGNISED[key] = watchdog.recognise(erratum, module)
    return _RECOGNISED[key]


def tensorflow_conventions(module: ModuleType | None, rows: list[dict[str, Any]]) -> str | None:
    """One line when the implementation keeps every TensorFlow convention of the errata table."""
    shown = {str(e).split(":", 1)[0] for r in rows for e in r["errata"]}
    if module is None or not shown & set(evidence.TENSORFLOW_CONVENTIONS):
        return None
    if all(recognised(e, module) for e in evidence.TENSORFLOW_CONVENTIONS):
        ids = " and ".join(evidence.TENSORFLOW_CONVENTIONS)
        return (
            f"it keeps TensorFlow's conventions throughout ({ids}: BatchNorm eps 1e-3 / momentum 0.01 and "
            "'same' padding), as a port of the TensorFlow reference code; the spec follows timm's PyTorch ones"
        )
    return None


def root_cause_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The report's first lines: each root cause with its detail and errata, then the consequences."""
    lines = []
    for r in rows:
        if r["root_cause"]:
            known = " (declared a known deviation)" if r["status"] == "XFAIL" else ""
            lines.append(f"root cause {r['clause']} ({r['title']}){known}: {r['detail']}")
            lines += [f"    erratum {e}" for e in r["errata"]]
    by_cause: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for r in rows:
        if r["consequence_of"]:
            by_cause[tuple(r["consequence_of"])].append(r["clause"])
    for causes, clauses in by_cause.items():
        verb = "fails" if len(clauses) == 1 else "fail"
        lines.append(f"consequence: {', '.join(clauses)} {verb} because {', '.join(causes)} failed")
    return lines


def verdict(impl: str, rows: list[dict[str, Any]], suite_errors: int = 0) -> str:
    """The one-line verdict; with errors of the suite it says that they decide nothing."""
    text = _verdict(impl, rows)
    if suite_errors:
        s = "s" if suite_errors > 1 else ""
        text += (
            f"; {suite_errors} error{s} of the suite (not of the implementation: the clauses those tests cite are "
            "undecided there; please report)"
        )
    return text


def _verdict(impl: str, rows: list[dict[str, Any]]) -> str:
    by_status = {s: [r["clause"] for r in rows if r["status"] == s] for s in STATUSES}
    ran = len(rows) - len(by_status["not run"])
    if not ran:
        return f"{impl}: no clause was checked (no selected test cites one)"
    tally = ", ".join(f"{len(by_status[s])} {s}" for s in STATUSES[:-1] if by_status[s])
    if by_status["not run"]:
        tally += f"; {len(by_status['not run'])} of {len(rows)} clauses not run"
    if by_status["FAILED"]:
        failed = by_status["FAILED"]
        roots = [r["clause"] for r in rows if r["root_cause"]]
        cause = f"root cause{'s' if len(roots) > 1 else ''} {', '.join(roots)}" if roots else "no root cause"
        return f"{impl} does NOT conform: {len(failed)} of {ran} clauses failed ({', '.join(failed)}); {cause}; {tally}"
    if by_status["XFAIL"]:
        return f"{impl} fails only known deviations ({', '.join(by_status['XFAIL'])}): {tally}"
    return f"{impl} conforms to every clause that ran: {tally}"


_BOX = re.compile(r"^[\s|+]*")
_GROUP_MEMBER = re.compile(r"^\s*\|\s((?:[\w.]+)?(?:Error|Exception|ExceptionGroup)\b.*)$")
_INTROSPECTION = re.compile(r"^(assert |\+ |where |and |At index |Use -v |Full diff|Omitting )")
_RULE = re.compile(r"[-+=\s\d]*")  # a box's rule, e.g. "+---------------- 1 ----------------"


def _short(report: pytest.TestReport) -> str:
    text = report.longreprtext or ""
    # "E" lines hold the message; hypothesis draws an exception group as a box ("+---", "| ...").
    lines = [_BOX.sub("", line[1:]).strip() for line in text.splitlines() if line.startswith("E ")]
    lines = [line for line in lines if not _RULE.fullmatch(line) and "Traceback (most recent call last)" not in line]
    # pytest's assertion introspection after a message ("assert 0.014 <= 1e-05", "+  where 0.014 =
    # <function rel_err at 0x...>(...)") repeats the message's figures with object addresses: dropped.
    lines = [line for line in lines if not _INTROSPECTION.match(line)]
    if not lines:  # an exception group printed as its tracebacks: each member's "| SomeError: message" line
        lines = [m.group(1) for line in text.splitlines() if (m := _GROUP_MEMBER.match(line))]
    msg = " ".join(lines) if lines else (text.strip().splitlines() or [""])[-1]
    # Hypothesis' reproduction of the example (the test's call with the implementation's module repr)
    # follows the message; the message names the example's parts that matter.
    msg = re.split(r" (?:Failing test case|Failing explicit example|Falsifying example): ", msg, maxsplit=1)[0]
    return msg[:400]


def _skip_reason(report: pytest.TestReport) -> str:
    if isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    return str(report.longrepr)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or REPORT_KEY not in config.stash:
        return
    report: ClauseReport = config.stash[REPORT_KEY]
    rows = report.rows()
    text = verdict(report.impl, rows, len(report.suite_errors))
    tensorflow = tensorflow_conventions(report.module, rows)
    path = config.getoption("--report")
    written = write_report(Path(path), report.impl, rows, text, tensorflow, report.suite_errors) if path else None
    ran = [r for r in rows if r["status"] != "not run"]
    if not ran:
        return  # no test citing a clause ran (e.g. only tests/meta): no table to show
    # The table, then the root causes and the verdict: printed at the very end (pytest_sessionfinish).
    lines: list[tuple[str, dict[str, bool]]] = []
    width = max(len(r["clause"]) for r in ran)
    lines.append((f"{'clause':<{width}}  {'status':<8} {'pass fail skip xfail':<21} title", {}))
    for r in ran:
        counts = f"{r['passed']:>4} {r['failed']:>4} {r['skipped']:>4} {r['xfailed']:>5}"
        markup = {"FAILED": {"red": True}, "passed": {"green": True}}.get(r["status"], {"yellow": True})
        lines.append((f"{r['clause']:<{width}}  {r['status']:<8} {counts:<21} {r['title']}", markup))
        if r["consequence_of"]:
            lines.append((f"{'':<{width}}    consequence of {', '.join(r['consequence_of'])}", {}))
        elif r["detail"] and r["status"] != "passed":
            lines.append((f"{'':<{width}}    {r['detail'][:300]}", {}))
        for erratum in r["errata"]:
            lines.append((f"{'':<{width}}    erratum {erratum}", {"yellow": True}))
    not_run = [r["clause"] for r in rows if r["status"] == "not run"]
    if not_run:
        lines.append((f"not run (no selected test cites them): {', '.join(not_run)}", {}))
    if written:
        lines.append((f"report written to {written[0]} and {written[1]}", {}))
    for error in report.suite_errors:
        lines.append((f"error of the suite (a bug to report, not a verdict): {error[:400]}", {"red": True}))
    for line in root_cause_lines(rows):
        root = line.startswith("root cause")
        lines.append((line[:400], {"red": root, "yellow": not root}))
    if tensorflow:
        lines.append((f"{report.impl}: {tensorflow}", {"yellow": True}))
    failed = any(r["status"] == "FAILED" for r in rows)
    if failed:
        from hypothesis.internal.conjecture import engine  # the bound the root conftest set

        seconds = engine.MAX_SHRINKING_SECONDS
        note = (
            f"(a failing property stops at its first failure, shrunk for at most {seconds} s: "
            "the example may be a little less than minimal)"
        )
        lines.append((note, {}))
    lines.append((f"verdict: {text}", {"bold": True, "red": failed, "green": not failed}))
    config.stash[SECTION_KEY] = (f"EfficientNet conformance: {report.impl}", lines)


SECTION_KEY = pytest.StashKey[tuple[str, list[tuple[str, dict[str, bool]]]]]()


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


def write_report(
    path: Path,
    impl: str,
    rows: list[dict[str, Any]],
    verdict: str,
    tensorflow: str | None = None,
    suite_errors: list[str] | None = None,
) -> tuple[Path, Path]:
    """PATH.json (machine-readable) and PATH.md (root causes, then a table); a .json or .md suffix of
    PATH is dropped."""
    base = path.with_suffix("") if path.suffix in (".json", ".md") else path
    json_path, md_path = base.parent / f"{base.name}.json", base.parent / f"{base.name}.md"
    base.parent.mkdir(parents=True, exist_ok=True)
    summary = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
    roots = [r["clause"] for r in rows if r["root_cause"]]
    payload = {
        "impl": impl,
        "verdict": verdict,
        "summary": summary,
        "root_causes": roots,
        "tensorflow_conventions": tensorflow,
        "suite_errors": list(suite_errors or []),
        "clauses": rows,
    }
    json_path.write_text(json.dumps(payload, indent=2) + "\n")

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")[:300]

    lines = [f"# EfficientNet conformance report: `{impl}`", "", f"**Verdict:** {verdict}", ""]
    if roots:
        lines += ["## Root causes", ""]
        lines += [f"- {cell(line.strip())}" for line in root_cause_lines(rows)]
        lines.append("")
    if tensorflow:
        lines += [f"`{impl}`: {tensorflow}.", ""]
    if suite_errors:
        lines += ["## Errors of the suite (bugs to report, not verdicts)", ""]
        lines += [f"- {cell(error)}" for error in suite_errors]
        lines.append("")
    lines += [
        "| Clause | Title | Status | Passed | Failed | Skipped | XFail | Root cause, or consequence of | "
        "First failure or skip reason | Erratum |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cause = "root cause" if r["root_cause"] else ", ".join(r["consequence_of"])
        lines.append(
            f"| {r['clause']} | {r['title']} | {r['status']} | {r['passed']} | {r['failed']} "
            f"| {r['skipped']} | {r['xfailed']} | {cause} | {cell(r['detail'])} | {cell('; '.join(r['errata']))} |"
        )
    md_path.write_text("\n".join(lines) + "\n")
    return json_path, md_path
