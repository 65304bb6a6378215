"""pytest plugin of the verification suite: options, the implementation under test,
clause markers and their traceability, expected-failure and skip files, and the
per-clause conformance report.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support import impl as impl_loader
from tests.support import spec

DEFAULT_IMPL = "effnet"


# --- Options -------------------------------------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("effnet", "EfficientNet verification")
    group.addoption(
        "--impl",
        default=os.environ.get("EFFNET_IMPL", DEFAULT_IMPL),
        help="implementation under test: a dotted module name or a path to a .py file "
        "(default: $EFFNET_IMPL or 'effnet')",
    )
    group.addoption(
        "--device",
        choices=("cpu", "cuda"),
        default=os.environ.get("EFFNET_DEVICE", "cpu"),
        help="device for model tests (default: $EFFNET_DEVICE or cpu)",
    )
    group.addoption("--report", metavar="PATH", help="write the per-clause report to PATH.json and PATH.md")
    group.addoption(
        "--xfails-file",
        metavar="FILE",
        help="clause IDs or test IDs (one per line) that the implementation is known to fail",
    )
    group.addoption(
        "--skips-file", metavar="FILE", help="clause IDs or test IDs (one per line) to skip for this implementation"
    )
    group.addoption(
        "--run-extras",
        action="store_true",
        help="also hold a fork to effnet's own extras (input validation, ...); always on for effnet",
    )


# --- Configuration: load the implementation once, fail with one clear message -------
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "clause(*ids): the spec clauses (spec/SPEC.md) a test checks")
    config.addinivalue_line("markers", "extra: a test of effnet's own extras, not of the EfficientNet spec")
    config.addinivalue_line("markers", "slow: large models or resolutions; deselect with -m 'not slow'")
    config.addinivalue_line("markers", "cuda: needs a CUDA device")

    device = config.getoption("--device")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise pytest.UsageError("--device cuda: no CUDA device is available (torch.cuda.is_available() is False)")

    name = config.getoption("--impl")
    try:
        module = impl_loader.load(name)
    except impl_loader.ImplError as e:
        raise pytest.UsageError(f"cannot test the implementation: {e}") from None
    problems = impl_loader.api_problems(module)
    if problems:
        raise pytest.UsageError(
            f"--impl {name} is not the EfficientNet API:\n  " + "\n  ".join(problems)
        )
    config.stash[IMPL_KEY] = module
    config.stash[REPORT_KEY] = ClauseReport(name)


IMPL_KEY = pytest.StashKey[ModuleType]()
REPORT_KEY = pytest.StashKey["ClauseReport"]()


def is_default_impl(config: pytest.Config) -> bool:
    module = config.stash[IMPL_KEY]
    return module.__name__ == DEFAULT_IMPL


@pytest.fixture(scope="session")
def impl(pytestconfig: pytest.Config) -> ModuleType:
    """The implementation under test (``--impl``): a module with the tutorial's API."""
    return pytestconfig.stash[IMPL_KEY]


@pytest.fixture(scope="session")
def device(pytestconfig: pytest.Config) -> Any:
    import torch

    return torch.device(pytestconfig.getoption("--device"))


# --- Collection: clause markers, traceability, xfails and skips ----------------------
def _read_id_file(path: str | None) -> list[str]:
    if not path:
        return []
    lines = Path(path).read_text().splitlines()
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


def item_clauses(item: pytest.Item) -> list[str]:
    return [c for m in item.iter_markers("clause") for c in m.args]


def _matches(entry: str, item: pytest.Item, clauses: list[str]) -> bool:
    return entry in clauses or entry == item.nodeid or item.nodeid.startswith(entry + "[") or (
        "::" not in entry and entry == item.name
    )


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    known = spec.clauses()
    unknown = []
    conformance_dir = Path(__file__).resolve().parents[1] / "conformance"
    for item in items:
        ids = item_clauses(item)
        for c in ids:
            if c not in known:
                unknown.append(f"{item.nodeid} cites clause {c!r}, which spec/SPEC.md does not define")
        if not ids and Path(str(item.path)).resolve().is_relative_to(conformance_dir):
            unknown.append(f"{item.nodeid} is a conformance test without a @pytest.mark.clause(...) marker")
        item.user_properties.append(("clauses", ",".join(ids)))
    if unknown:
        raise pytest.UsageError("clause traceability:\n  " + "\n  ".join(unknown))

    run_extras = is_default_impl(config) or config.getoption("--run-extras")
    xfails = _read_id_file(config.getoption("--xfails-file"))
    skips = _read_id_file(config.getoption("--skips-file"))
    for item in items:
        ids = item_clauses(item)
        if item.get_closest_marker("extra") and not run_extras:
            item.add_marker(pytest.mark.skip(reason="effnet extra: run with --run-extras to hold a fork to it"))
        for entry in skips:
            if _matches(entry, item, ids):
                item.add_marker(pytest.mark.skip(reason=f"skipped by --skips-file entry {entry!r}"))
        for entry in xfails:
            if _matches(entry, item, ids):
                item.add_marker(pytest.mark.xfail(reason=f"--xfails-file entry {entry!r}", strict=True))


# --- The per-clause report -----------------------------------------------------------
@dataclass
class ClauseResult:
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    xfailed: int = 0
    xpassed: int = 0
    first_failure: str = ""
    skip_reason: str = ""

    @property
    def status(self) -> str:
        if self.failed or self.xpassed:
            return "FAILED"
        if self.xfailed:
            return "XFAIL"
        if self.passed:
            return "passed"
        if self.skipped:
            return "skipped"
        return "not run"


@dataclass
class ClauseReport:
    impl: str
    results: dict[str, ClauseResult] = field(default_factory=lambda: defaultdict(ClauseResult))
    started: float = field(default_factory=time.time)

    def add(self, report: pytest.TestReport) -> None:
        ids = dict(report.user_properties).get("clauses", "")
        for c in filter(None, str(ids).split(",")):
            r = self.results[c]
            if report.when == "call" and hasattr(report, "wasxfail"):
                if report.passed:
                    r.xpassed += 1
                    r.first_failure = r.first_failure or f"{report.nodeid}: expected to fail, but passed"
                else:
                    r.xfailed += 1
            elif report.failed:
                r.failed += 1
                r.first_failure = r.first_failure or f"{report.nodeid}: {_short(report)}"
            elif report.skipped and report.when in ("setup", "call"):
                if hasattr(report, "wasxfail"):
                    r.xfailed += 1
                else:
                    r.skipped += 1
                    r.skip_reason = r.skip_reason or _skip_reason(report)
            elif report.passed and report.when == "call":
                r.passed += 1

    def rows(self) -> list[dict[str, Any]]:
        rows = []
        for cid, clause in spec.clauses().items():
            if cid not in self.results:
                continue
            r = self.results[cid]
            rows.append(
                {
                    "clause": cid,
                    "title": clause.title,
                    "status": r.status,
                    "passed": r.passed,
                    "failed": r.failed + r.xpassed,
                    "skipped": r.skipped,
                    "xfailed": r.xfailed,
                    "detail": r.first_failure or (r.skip_reason if r.status == "skipped" else ""),
                }
            )
        return rows


def _short(report: pytest.TestReport) -> str:
    text = report.longreprtext or ""
    lines = [line[1:].strip() for line in text.splitlines() if line.startswith("E ")]
    msg = " ".join(lines) if lines else (text.strip().splitlines() or [""])[-1]
    return msg[:400]


def _skip_reason(report: pytest.TestReport) -> str:
    if isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    return str(report.longrepr)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if _CONFIG is not None and REPORT_KEY in _CONFIG.stash:
        _CONFIG.stash[REPORT_KEY].add(report)


_CONFIG: pytest.Config | None = None


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    global _CONFIG
    _CONFIG = session.config


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or REPORT_KEY not in config.stash:
        return
    report: ClauseReport = config.stash[REPORT_KEY]
    rows = report.rows()
    if not rows:
        return
    tr = terminalreporter
    tr.section(f"EfficientNet conformance: {report.impl}")
    width = max(len(r["clause"]) for r in rows)
    for r in rows:
        counts = f"{r['passed']}p {r['failed']}f {r['skipped']}s {r['xfailed']}x"
        line = f"{r['clause']:<{width}}  {r['status']:<8} {counts:<14} {r['title']}"
        markup = {"FAILED": {"red": True}, "passed": {"green": True}}.get(r["status"], {"yellow": True})
        tr.write_line(line, **markup)
        if r["detail"] and r["status"] != "passed":
            tr.write_line(f"{'':<{width}}    {r['detail'][:200]}")
    failed = [r["clause"] for r in rows if r["status"] == "FAILED"]
    verdict = (
        "conforms to every clause that ran"
        if not failed
        else f"does NOT conform: {len(failed)} clause(s) failed: {', '.join(failed)}"
    )
    tr.write_line(f"verdict: {report.impl} {verdict}", bold=True, red=bool(failed), green=not failed)
    path = config.getoption("--report")
    if path:
        write_report(Path(path), report.impl, rows, verdict)


def write_report(path: Path, impl: str, rows: list[dict[str, Any]], verdict: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"impl": impl, "verdict": verdict, "clauses": rows}
    path.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [
        f"# EfficientNet conformance report: `{impl}`",
        "",
        f"**Verdict:** {verdict}",
        "",
        "| Clause | Title | Status | Passed | Failed | Skipped | XFail | First failure or skip reason |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        detail = r["detail"].replace("|", "\\|").replace("\n", " ")[:300]
        lines.append(
            f"| {r['clause']} | {r['title']} | {r['status']} | {r['passed']} | {r['failed']} "
            f"| {r['skipped']} | {r['xfailed']} | {detail} |"
        )
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")
