"""The conformance suite run on a fork for a generated verdict page (tests/forks/tutorial.py,
tests/forks/verdicts.py): the command, the run with ``--report``, the report read back, and the words
the pages share.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

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


def run(impl: str, report: Path, slow: bool, extra: list[str]) -> dict[str, Any] | None:
    """Run the conformance suite on ``impl`` (a path relative to ROOT) with ``--report report`` and the
    hypothesis profile ``ci`` (derandomized: the same verdict on every run), print the run's root causes
    and verdict, and return the report's JSON; None, with pytest's output printed, when the run did not
    get to a verdict."""
    marks = [] if slow else ["-m", "not slow"]
    cmd = [sys.executable, "-m", "pytest", "tests/conformance", "--impl", impl, "-p", "no:cacheprovider", "-q"]
    # --tb=short, not --tb=no: the report's message then keeps every line of a multi-line assertion.
    cmd += ["--tb=short", "-n", "2", *marks, "--report", str(report.relative_to(ROOT)), *extra]
    env = {**os.environ, "EFFNET_HYPOTHESIS_PROFILE": "ci"}
    print("$", " ".join(cmd[2:]), flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    output = (proc.stdout + proc.stderr).strip().splitlines()
    path = report.with_suffix(".json")
    if proc.returncode not in (0, 1) or not path.exists():
        print("\n".join(output))
        print(f"{impl}: pytest exit status {proc.returncode}, no verdict")
        return None
    # The run ends with the root causes and the verdict, after the line naming the report's files.
    written = max((i for i, line in enumerate(output) if line.startswith("report written to")), default=-2)
    print("\n".join(output[written + 1 :]))
    payload: dict[str, Any] = json.loads(path.read_text())
    return payload
