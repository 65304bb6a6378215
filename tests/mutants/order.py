"""pytest plugin of the mutant runner (``-p tests.mutants.order``), steered by environment variables:

$EFFNET_DURATIONS_OUT   record how long each test takes (on a correct fork);
$EFFNET_DURATIONS_IN    run the cheapest tests first (durations recorded on a correct fork);
$EFFNET_FIRST_CLAUSES   run the tests citing these clauses (comma-separated) before the others;
$EFFNET_ONLY_CLAUSES    run only the tests citing at least one of these clauses (comma-separated);
$EFFNET_NO_SHRINK       do not shrink hypothesis' failing examples (the profile otherwise unchanged);
$EFFNET_OTHER_EXAMPLES  at most this many drawn examples (explicit ones all run) for the properties that
                        cite none of $EFFNET_FIRST_CLAUSES: they are run to show that nothing else fails.
$EFFNET_FAILURES_OUT    write the IDs of the tests that failed (the runner's --matrix).
$EFFNET_STOP_AT_VERDICT stop after the first test that fails a clause it cites (``-x`` that goes on past a
                        failed premise or an error of the suite, which decide no clause of the test).

With $EFFNET_STOP_AT_VERDICT, a mutant is then rejected by the cheapest test of the clause it violates, when that test
catches it, instead of after every expensive test collected before; and a failing property costs
one failing example instead of a search for the smallest one.  Which tests run and what they
check are unchanged: only the order, and how much a failure costs.
"""

from __future__ import annotations

import json
import os
import statistics
from collections import defaultdict
from pathlib import Path

import pytest

_durations: dict[str, float] = defaultdict(float)
_failures: list[str] = []
_session: list[pytest.Session] = []


def pytest_sessionstart(session: pytest.Session) -> None:
    _session[:] = [session]


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("EFFNET_NO_SHRINK"):
        from hypothesis import Phase, settings

        # After the root conftest has loaded the chosen profile: the same settings, minus shrinking.
        settings.register_profile(
            "mutant-runner", parent=settings.default, phases=[Phase.explicit, Phase.reuse, Phase.generate]
        )
        settings.load_profile("mutant-runner")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    only = set(filter(None, os.environ.get("EFFNET_ONLY_CLAUSES", "").split(",")))
    if only:
        kept = [i for i in items if {c for m in i.iter_markers("clause") for c in m.args} & only]
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
        items[:] = kept
    path = os.environ.get("EFFNET_DURATIONS_IN")
    known = json.loads(Path(path).read_text()) if path and Path(path).exists() else {}
    unknown = statistics.median(known.values()) if known else 0.0  # a new test: neither first nor last
    first = set(filter(None, os.environ.get("EFFNET_FIRST_CLAUSES", "").split(",")))

    def key(item: pytest.Item) -> tuple[bool, float]:
        cites = {c for m in item.iter_markers("clause") for c in m.args}
        return (not (cites & first), known.get(item.nodeid, unknown))

    if known or first:
        items.sort(key=key)
    if os.environ.get("EFFNET_OTHER_EXAMPLES") and first:
        _fewer_examples(items, first, int(os.environ["EFFNET_OTHER_EXAMPLES"]))


def _fewer_examples(items: list[pytest.Item], first: set[str], most: int) -> None:
    """Fewer drawn examples for the properties outside the fork's own clauses.  A mutant's own
    clauses keep the whole profile, so whether it is rejected is unchanged; the other clauses' tests
    only show that they do not fail too (the root-cause check), and for that a few examples of each
    property, besides its explicit ones, are enough: a bug that is not theirs shows on any input."""
    from hypothesis import settings

    for item in items:
        cites = {c for m in item.iter_markers("clause") for c in m.args}
        test = getattr(item, "obj", None)
        own = getattr(test, "_hypothesis_internal_use_settings", None)
        if cites & first or own is None or own.max_examples <= most:
            continue
        test._hypothesis_internal_use_settings = settings(own, max_examples=most)  # type: ignore[union-attr]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if os.environ.get("EFFNET_DURATIONS_OUT"):
        _durations[report.nodeid] += report.duration
    if report.failed and report.nodeid not in _failures:
        _failures.append(report.nodeid)
    if report.failed and os.environ.get("EFFNET_STOP_AT_VERDICT") and _session and _fails_a_cited_clause(report):
        _session[0].shouldfail = f"{report.nodeid} failed a clause it cites"


def _fails_a_cited_clause(report: pytest.TestReport) -> bool:
    """As the report counts it (tests/support/report.py): a failure without blame fails every clause
    the test cites; one blamed elsewhere (a premise) or an error of the suite fails none of them."""
    from tests.support.verdict import Outcome

    outcome = Outcome.from_properties(report.user_properties)
    return outcome is None or outcome.fails_a_cited_clause


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get("EFFNET_DURATIONS_OUT")
    if path and _durations:
        Path(path).write_text(json.dumps({k: round(v, 4) for k, v in _durations.items()}, indent=0))
    path = os.environ.get("EFFNET_FAILURES_OUT")
    if path:
        Path(path).write_text(json.dumps(_failures, indent=0))
