"""The conformance suite run on a fork for a generated verdict page (tests/forks/tutorial.py,
tests/forks/verdicts.py): the command, the run with ``--report``, the report read back, and the words
the pages share.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.mutants import judging  # noqa: E402
from tests.support import verdict  # noqa: E402

STATUS = {
    "FAILED": "**fails**",
    "passed": "passes",
    "partial": "passes (some cases skipped)",
    "skipped": "skipped",
    "XFAIL": "expected failure",
    "not run": "not tested: no conformance test cites it",
}


def selection(slow: bool) -> str:
    return (
        "the whole conformance suite"
        if slow
        else 'the conformance suite without the tests marked slow (`-m "not slow"`)'
    )


def command(impl: str, slow: bool) -> str:
    """The pytest command a page shows (without its --report)."""
    return f"pytest tests/conformance --impl {impl} -n 2" + ("" if slow else ' -m "not slow"')


def run(impl: str, report: Path, slow: bool, extra: list[str]) -> verdict.Report | None:
    """Run the conformance suite on ``impl`` (a path relative to ROOT) with ``--report report`` and the
    hypothesis profile ``ci`` (derandomized: the same verdict on every run), print the run's root causes
    and verdict, and return its report; None, with pytest's output printed, when the run did not
    get to a verdict."""
    marks = [] if slow else ["-m", "not slow"]
    # --tb=short, not --tb=no: the report's message then keeps every line of a multi-line assertion.
    selection = [*judging.CONFORMANCE, "--tb=short", "-n", "2", *marks]
    shown = ["pytest", "tests/conformance", "--impl", impl, "-p", "no:cacheprovider", "-q", "--tb=short", "-n", "2"]
    print("$", " ".join([*shown, *marks, "--report", str(report.relative_to(ROOT)), *extra]), flush=True)
    with tempfile.TemporaryDirectory(prefix="effnet-verdict-") as tmp:
        outcome = judging.run_fork(
            Path(impl), report, selection, env={"EFFNET_HYPOTHESIS_PROFILE": "ci"}, timeout=None, preload=None,
            order=None, extra=extra, log=Path(tmp) / "pytest.log",
        )  # fmt: skip
        output = outcome.tail(10_000).splitlines()
    if outcome.report is None or outcome.status not in ("accepted", "rejected"):
        print("\n".join(output))
        print(f"{impl}: pytest exit status {outcome.returncode}, no verdict")
        return None
    # The run ends with the root causes and the verdict, after the line naming the report's files.
    written = max((i for i, line in enumerate(output) if line.startswith("report written to")), default=-2)
    print("\n".join(output[written + 1 :]))
    return outcome.report
