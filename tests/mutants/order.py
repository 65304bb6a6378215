"""pytest plugin of the mutant runner (``-p tests.mutants.order``): record how long each test takes
($EFFNET_DURATIONS_OUT), or run the cheapest tests first ($EFFNET_DURATIONS_IN, a file recorded on a
correct fork).  With ``-x``, a mutant is then rejected by the cheapest test that catches it, instead
of after every expensive test that happens to be collected earlier.
"""

from __future__ import annotations

import json
import os
import statistics
from collections import defaultdict
from pathlib import Path

import pytest

_durations: dict[str, float] = defaultdict(float)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    path = os.environ.get("EFFNET_DURATIONS_IN")
    if not path or not Path(path).exists():
        return
    known = json.loads(Path(path).read_text())
    unknown = statistics.median(known.values()) if known else 0.0  # a new test: neither first nor last
    items.sort(key=lambda item: known.get(item.nodeid, unknown))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if os.environ.get("EFFNET_DURATIONS_OUT"):
        _durations[report.nodeid] += report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get("EFFNET_DURATIONS_OUT")
    if path and _durations:
        Path(path).write_text(json.dumps({k: round(v, 4) for k, v in _durations.items()}, indent=0))
