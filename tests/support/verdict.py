"""The verdict core, pure Python (no torch, no pytest): what each test outcome says about the clauses
it cites, the per-clause results, the root causes, the verdict line, and the ``--report`` files,
written and read back.  tests/support/report.py, its pytest adapter, makes one ``Outcome`` per pytest
report and counts it here; the runners read a written report with ``read``.  The rules (a clause's
status, blame, root causes, errata) are docs/architecture.md's steps 3 to 5 and docs/report.md's statuses.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.support import spec

STATUSES = ("FAILED", "XFAIL", "partial", "passed", "skipped", "not run")
OUTCOME = "effnet_outcome"  # the user_properties key an Outcome travels under (to pytest-xdist's controller)
TENSORFLOW_CONVENTIONS = ("E-7", "E-8")  # the errata that are TensorFlow's conventions (BatchNorm, padding)
Recognise = Callable[[str], "str | None"]  # an erratum's ID -> what the implementation shows of it, or None


@dataclass(frozen=True)
class Outcome:
    """One phase (setup, call, teardown) of one test as the verdict counts it.  ``blamed``: the clauses
    a failure's ``blame`` names, premises included (None: no blame, the failure is about every cited
    clause); ``message``: the short failure message, the skip reason, or the entry of a strict
    expected failure that passed (``strict_xpass``)."""

    nodeid: str
    when: str
    outcome: str  # pytest's: "passed", "failed" or "skipped"
    cited: tuple[str, ...]
    blamed: tuple[str, ...] | None = None
    conclusive: bool = False  # the blamed clauses are root causes whatever their dependencies do
    suite_error: str = ""  # an exception raised by the suite's own code (evidence.suite_error)
    expected_to_fail: bool = False  # pytest's ``wasxfail``
    strict_xpass: bool = False  # a strict expected failure that passed: its --xfails-file entry is stale
    message: str = ""

    def to_property(self) -> tuple[str, dict[str, Any]]:
        """The outcome as a user property: plain values, which pytest-xdist sends to its controller."""
        return OUTCOME, asdict(self)

    @classmethod
    def from_properties(cls, properties: Iterable[tuple[str, object]]) -> Outcome | None:
        """The outcome a report's user properties carry, if any."""
        for key, value in properties:
            if key == OUTCOME and isinstance(value, dict):
                blamed = None if value["blamed"] is None else tuple(value["blamed"])
                return cls(**{**value, "cited": tuple(value["cited"]), "blamed": blamed})
        return None

    @property
    def fails_a_cited_clause(self) -> bool:
        """Whether this failure fails a clause the test cites: one without blame fails all of them; one
        blamed elsewhere (a premise) or an error of the suite fails none."""
        if self.suite_error:
            return False
        return self.blamed is None or bool(set(self.blamed) & set(self.cited))


@dataclass(frozen=True)
class Stale:
    """An --xfails-file entry all of whose tests passed: it fails ``clauses``, with ``message``."""

    entry: str
    clauses: tuple[str, ...]
    message: str


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
    skip_key: tuple[int, str] = (1 << 30, "")

    def note_failure(self, key: tuple[int, str], message: str) -> None:
        """Keep the failure of the most specific test (fewest clauses cited, then node ID): it says
        most about this clause, and the choice does not depend on the order xdist reports in."""
        if key < self.failure_key:
            self.failure_key, self.first_failure = key, message

    def note_skip(self, key: tuple[int, str], reason: str) -> None:
        """Count a skip, keeping the reason of the most specific test, as ``note_failure`` does."""
        self.skipped += 1
        if key < self.skip_key:
            self.skip_key, self.skip_reason = key, reason

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


@dataclass(frozen=True)
class Row:
    """One clause of SPEC.md in the report; ``failed`` includes expected failures that passed."""

    clause: str
    title: str
    status: str
    passed: int
    failed: int
    skipped: int
    xfailed: int
    detail: str
    root_cause: bool
    consequence_of: list[str]
    errata: list[str]


@dataclass
class Clauses:
    """The per-clause results of a run, counted from its outcomes."""

    results: dict[str, ClauseResult] = field(default_factory=lambda: defaultdict(ClauseResult))
    conclusive: set[str] = field(default_factory=set)  # clauses a conclusive blame failed
    suite_errors: list[str] = field(default_factory=list)  # "nodeid: error" of each error of the suite

    def count(self, o: Outcome) -> None:
        key = (len(o.cited), o.nodeid)
        blamed = o.outcome == "failed" and o.blamed is not None  # a failure about some clauses only
        decided = [c for c in o.blamed or () if c in o.cited] if blamed else []
        if blamed and o.conclusive and not o.expected_to_fail:
            self.conclusive.update(decided)
        if o.outcome == "failed" and o.suite_error:
            self.suite_errors.append(f"{o.nodeid}: {o.suite_error}")
        for c in o.cited:
            r = self.results[c]
            if blamed and c not in decided:
                # undecided: the failure is about another clause than this one
                r.note_skip(key, f"undecided: {o.nodeid} failed on {_undecided_on(o, decided)}")
            elif o.when == "call" and o.expected_to_fail:
                if o.outcome == "passed":
                    r.xpassed += 1
                    r.note_failure(key, f"{o.nodeid}: expected to fail, but passed")
                else:
                    r.xfailed += 1
            elif o.strict_xpass:
                r.xpassed += 1
                r.note_failure(key, f"{o.nodeid}: passed, but is listed as {o.message}")
            elif o.outcome == "failed":
                r.failed += 1
                where = "" if o.when == "call" else f" (in {o.when})"
                r.note_failure(key, f"{o.nodeid}{where}: {o.message}")
            elif o.outcome == "skipped" and o.when in ("setup", "call"):
                if o.expected_to_fail:
                    r.xfailed += 1
                else:
                    r.note_skip(key, o.message)
            elif o.outcome == "passed" and o.when == "call":
                r.passed += 1

    def count_stale(self, stale: Stale) -> None:
        for c in stale.clauses:
            self.results[c].xpassed += 1
            self.results[c].note_failure((0, stale.entry), stale.message)  # before any other failure: it is the news

    def rows(self, recognise: Recognise | None = None) -> list[Row]:
        """One row per clause of SPEC.md, in document order, "not run" ones included; a failed
        clause is a root cause or names the root causes it is a consequence of.  ``recognise``: the
        implementation's recognisers (without them no erratum is named)."""
        statuses = {cid: self.results.get(cid, ClauseResult()).status for cid in spec.clauses()}
        failing = [c for c, s in statuses.items() if s in ("FAILED", "XFAIL")]
        errata = _errata(failing, recognise) if recognise is not None else {}
        roots, consequences = root_causes(failing, frozenset(errata) | frozenset(self.conclusive))
        rows = []
        for cid, clause in spec.clauses().items():
            r = self.results.get(cid, ClauseResult())
            detail = r.first_failure
            if not detail and statuses[cid] in ("partial", "skipped"):
                detail = f"{r.skipped} skipped: {r.skip_reason}"
            counts = (r.passed, r.failed + r.xpassed, r.skipped, r.xfailed)
            causes = (cid in roots, consequences.get(cid, []), errata.get(cid, []))
            rows.append(Row(cid, clause.title, statuses[cid], *counts, detail, *causes))
        return rows


def root_causes(failed: list[str], evident: frozenset[str] = frozenset()) -> tuple[list[str], dict[str, list[str]]]:
    """Split failed clauses (in document order) into root causes, none of whose dependencies
    failed, and consequences: clause -> the root causes among its dependencies that explain it.
    A clause in ``evident`` (its failure shows a known departure's signature) is a root cause
    whatever else failed: the evidence shows a departure of its own."""
    failing = set(failed)
    roots = [c for c in failed if c in evident or not (spec.depends_on(c) & failing)]
    consequences = {c: [r for r in roots if r in spec.depends_on(c)] for c in failed if c not in roots}
    return roots, consequences


def _undecided_on(o: Outcome, decided: list[str]) -> str:
    if o.suite_error:
        return f"an error of the suite ({o.suite_error})"
    if not decided and o.blamed:
        return f"its premise, {','.join(o.blamed)}"  # a premise from clauses the test does not cite
    return ", ".join(decided) or "a step that another clause's tests check"


def _errata(failing: list[str], recognise: Recognise) -> dict[str, list[str]]:
    """Failed clause -> the errata whose signature the implementation shows."""
    found: dict[str, list[str]] = defaultdict(list)
    for e in spec.errata():
        shown_in = [c for c in e.clauses if c in failing]
        if shown_in and (seen := recognise(e.id)):
            for c in shown_in:
                found[c].append(f"{e}: {seen}")
    return dict(found)


def tensorflow_conventions(rows: list[Row], recognise: Recognise | None) -> str | None:
    """One line when the implementation keeps every TensorFlow convention of the errata table."""
    shown = {str(e).split(":", 1)[0] for r in rows for e in r.errata}
    if recognise is None or not shown & set(TENSORFLOW_CONVENTIONS):
        return None
    if all(recognise(e) for e in TENSORFLOW_CONVENTIONS):
        ids = " and ".join(TENSORFLOW_CONVENTIONS)
        return (
            f"it keeps TensorFlow's conventions throughout ({ids}: BatchNorm eps 1e-3 / momentum 0.01 and "
            "'same' padding), as a port of the TensorFlow reference code; the spec follows timm's PyTorch ones"
        )
    return None


def root_cause_lines(rows: list[Row]) -> list[str]:
    """The report's first lines: each root cause with its detail and errata, then the consequences."""
    lines = []
    for r in rows:
        if r.root_cause:
            known = " (declared a known deviation)" if r.status == "XFAIL" else ""
            lines.append(f"root cause {r.clause} ({r.title}){known}: {r.detail}")
            lines += [f"    erratum {e}" for e in r.errata]
    by_cause: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for r in rows:
        if r.consequence_of:
            by_cause[tuple(r.consequence_of)].append(r.clause)
    for causes, clauses in by_cause.items():
        verb = "fails" if len(clauses) == 1 else "fail"
        lines.append(f"consequence: {', '.join(clauses)} {verb} because {', '.join(causes)} failed")
    return lines


def verdict(impl: str, rows: list[Row], suite_errors: int = 0) -> str:
    """The one-line verdict; with errors of the suite it says that they decide nothing."""
    s = "s" if suite_errors > 1 else ""
    errors = (
        f"; {suite_errors} error{s} of the suite (not of the implementation: the clauses those tests cite are "
        "undecided there; please report)"
    )
    return _verdict(impl, rows) + (errors if suite_errors else "")


def _verdict(impl: str, rows: list[Row]) -> str:
    by_status = {s: [r.clause for r in rows if r.status == s] for s in STATUSES}
    ran = len(rows) - len(by_status["not run"])
    if not ran:
        return f"{impl}: no clause was checked (no selected test cites one)"
    tally = ", ".join(f"{len(by_status[s])} {s}" for s in STATUSES[:-1] if by_status[s])
    if by_status["not run"]:
        tally += f"; {len(by_status['not run'])} of {len(rows)} clauses not run"
    if by_status["FAILED"]:
        failed = by_status["FAILED"]
        roots = [r.clause for r in rows if r.root_cause]
        cause = f"root cause{'s' if len(roots) > 1 else ''} {', '.join(roots)}" if roots else "no root cause"
        return f"{impl} does NOT conform: {len(failed)} of {ran} clauses failed ({', '.join(failed)}); {cause}; {tally}"
    if by_status["XFAIL"]:
        return f"{impl} fails only known deviations ({', '.join(by_status['XFAIL'])}): {tally}"
    return f"{impl} conforms to every clause that ran: {tally}"


_BOX = re.compile(r"^[\s|+]*")
_GROUP_MEMBER = re.compile(r"^\s*\|\s((?:[\w.]+)?(?:Error|Exception|ExceptionGroup)\b.*)$")
_INTROSPECTION = re.compile(r"^(assert |\+ |where |and |At index |Use -v |Full diff|Omitting )")
_RULE = re.compile(r"[-+=\s\d]*")  # a box's rule, e.g. "+---------------- 1 ----------------"


def short_message(text: str) -> str:
    """The message of a failure as pytest prints it (its ``longreprtext``), in at most 400 characters."""
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


# --- The --report files ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Report:
    """What a run found, as the ``--report`` files hold it (the fields are the JSON's, in its order)."""

    impl: str
    verdict: str
    summary: dict[str, int]
    root_causes: list[str]
    tensorflow_conventions: str | None
    suite_errors: list[str]
    clauses: list[Row]

    @classmethod
    def of(cls, impl: str, rows: list[Row], suite_errors: list[str], tensorflow: str | None = None) -> Report:
        summary = {s: sum(r.status == s for r in rows) for s in STATUSES}
        roots = [r.clause for r in rows if r.root_cause]
        return cls(impl, verdict(impl, rows, len(suite_errors)), summary, roots, tensorflow, list(suite_errors), rows)

    def write(self, path: Path) -> tuple[Path, Path]:
        """PATH.json (machine-readable) and PATH.md (root causes, then a table); a .json or .md suffix
        of PATH is dropped."""
        json_path, md_path = report_paths(path)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        md_path.write_text("\n".join(self.markdown()) + "\n")
        return json_path, md_path

    def markdown(self) -> list[str]:
        def cell(text: str) -> str:
            return text.replace("|", "\\|").replace("\n", " ")[:300]

        lines = [f"# EfficientNet conformance report: `{self.impl}`", "", f"**Verdict:** {self.verdict}", ""]
        if self.root_causes:
            lines += ["## Root causes", ""]
            lines += [f"- {cell(line.strip())}" for line in root_cause_lines(self.clauses)]
            lines.append("")
        if self.tensorflow_conventions:
            lines += [f"`{self.impl}`: {self.tensorflow_conventions}.", ""]
        if self.suite_errors:
            lines += ["## Errors of the suite (bugs to report, not verdicts)", ""]
            lines += [f"- {cell(error)}" for error in self.suite_errors]
            lines.append("")
        lines += [
            "| Clause | Title | Status | Passed | Failed | Skipped | XFail | Root cause, or consequence of | "
            "First failure or skip reason | Erratum |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in self.clauses:
            cause = "root cause" if r.root_cause else ", ".join(r.consequence_of)
            lines.append(
                f"| {r.clause} | {r.title} | {r.status} | {r.passed} | {r.failed} "
                f"| {r.skipped} | {r.xfailed} | {cause} | {cell(r.detail)} | {cell('; '.join(r.errata))} |"
            )
        return lines

    @property
    def failed(self) -> list[str]:
        return [r.clause for r in self.clauses if r.status == "FAILED"]

    def row(self, clause: str) -> Row | None:
        return next((r for r in self.clauses if r.clause == clause), None)

    def detail(self, *clauses: str) -> str:
        """The first failed row's detail among ``clauses``, on one line, at most 400 characters."""
        found = [r for r in self.clauses if r.clause in clauses and r.status == "FAILED"]
        return " ".join(found[0].detail.split())[:400] if found else ""


def report_paths(path: Path) -> tuple[Path, Path]:
    """The JSON and Markdown files of ``--report PATH``."""
    base = path.with_suffix("") if path.suffix in (".json", ".md") else path
    return base.parent / f"{base.name}.json", base.parent / f"{base.name}.md"


def read(path: Path) -> Report | None:
    """The report written at ``--report PATH``, or None where there is none (the run stopped before
    its summary) or it cannot be read."""
    try:
        payload = json.loads(report_paths(path)[0].read_text())
        return Report(**{**payload, "clauses": [Row(**row) for row in payload["clauses"]]})
    except (OSError, ValueError, TypeError, KeyError):
        return None
