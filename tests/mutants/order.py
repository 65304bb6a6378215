"""pytest plugin of the fork runners (``-p tests.mutants.order``): the order of the tests, which of them
run, how much a failure costs, and what the run leaves for its runner (tests/mutants/judging.py), set by
the options below (``pytest --help`` lists them).

With --stop-at-verdict a mutant is rejected by the cheapest test of the clause it violates, when that
test catches it, instead of after every expensive test collected before; and a failing property costs
one failing example instead of a search for the smallest one.  Which tests run and what they check
are unchanged: only the order, and how much a failure costs.
"""

from __future__ import annotations

import json
import re
import statistics
from collections import defaultdict
from collections.abc import Generator
from pathlib import Path

import pytest

LOAD_CLAUSE = re.compile(r"\(clause ([A-Z][A-Z0-9]*-\d+)\)")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("order", "the fork runners' plugin (tests/mutants/order.py)")
    add = group.addoption
    add("--durations-out", metavar="PATH", help="record how long each test takes (on a correct fork), as JSON")
    add("--durations-in", metavar="PATH", help="run the cheapest tests first (a --durations-out of a correct fork)")
    add("--first-clauses", default="", metavar="A,B", help="run the tests citing these clauses before the others")
    add("--only-clauses", default="", metavar="A,B", help="run only the tests citing at least one of these clauses")
    add(
        "--no-shrink",
        action="store_true",
        help="do not shrink hypothesis' failing examples, the profile otherwise unchanged",
    )
    add(
        "--other-examples",
        type=int,
        metavar="N",
        help="at most N drawn examples (explicit ones all run) for the properties that cite none of "
        "--first-clauses: they run to show that nothing else fails",
    )
    add("--failures-out", metavar="PATH", help="write the IDs of the tests that failed (the runner's --matrix)")
    add(
        "--stop-at-verdict",
        action="store_true",
        help="stop after the first test that fails a clause it cites (-x that goes on past a failed premise or "
        "an error of the suite, which decide no clause of the test)",
    )
    add("--refusal-out", metavar="PATH", help="where the suite refuses the fork at load (exit 4), write why, as JSON")
    add("--clauses-out", metavar="PATH", help="write each collected test's clauses, {nodeid: [clause, ...]}, as JSON")


def _clauses(option: str) -> set[str]:
    return set(filter(None, option.split(",")))


def item_clauses(item: pytest.Item) -> list[str]:
    """The clauses the test cites (tests/support/plugin.py, imported once the suite has registered it:
    imported by ``-p`` first, the suite's plugin would lose pytest's assertion rewriting)."""
    from tests.support import plugin

    return plugin.item_clauses(item)


class OrderPlugin:
    """The plugin's options and what it records during one session."""

    def __init__(self, config: pytest.Config) -> None:
        self.durations_out: str | None = config.getoption("durations_out")
        self.durations_in: str | None = config.getoption("durations_in")
        self.first = _clauses(config.getoption("first_clauses"))
        self.only = _clauses(config.getoption("only_clauses"))
        self.other_examples: int | None = config.getoption("other_examples")
        self.failures_out: str | None = config.getoption("failures_out")
        self.stop_at_verdict: bool = config.getoption("stop_at_verdict")
        self.clauses_out: str | None = config.getoption("clauses_out")
        self.durations: dict[str, float] = defaultdict(float)
        self.failures: list[str] = []
        self.session: pytest.Session | None = None

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.session = session

    def modify_items(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        if self.only:
            kept = [i for i in items if set(item_clauses(i)) & self.only]
            config.hook.pytest_deselected(items=[i for i in items if i not in kept])
            items[:] = kept
        path = self.durations_in
        known = json.loads(Path(path).read_text()) if path and Path(path).exists() else {}
        unknown = statistics.median(known.values()) if known else 0.0  # a new test: neither first nor last

        def key(item: pytest.Item) -> tuple[bool, float]:
            return (not (set(item_clauses(item)) & self.first), known.get(item.nodeid, unknown))

        if known or self.first:
            items.sort(key=key)
        if self.other_examples and self.first:
            self._fewer_examples(items, self.other_examples)

    def _fewer_examples(self, items: list[pytest.Item], most: int) -> None:
        """Fewer drawn examples for the properties outside the fork's own clauses.  A mutant's own
        clauses keep the whole profile, so whether it is rejected is unchanged; the other clauses' tests
        only show that they do not fail too (the root-cause check), and for that a few examples of each
        property, besides its explicit ones, are enough: a bug that is not theirs shows on any input."""
        from hypothesis import settings

        for item in items:
            test = getattr(item, "obj", None)
            own = getattr(test, "_hypothesis_internal_use_settings", None)
            if set(item_clauses(item)) & self.first or own is None or own.max_examples <= most:
                continue
            test._hypothesis_internal_use_settings = settings(own, max_examples=most)  # type: ignore[union-attr]

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if self.clauses_out:
            items = {item.nodeid: item_clauses(item) for item in session.items}
            Path(self.clauses_out).write_text(json.dumps(items))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.durations_out:
            self.durations[report.nodeid] += report.duration
        if report.failed and report.nodeid not in self.failures:
            self.failures.append(report.nodeid)
        if report.failed and self.stop_at_verdict and self.session and _fails_a_cited_clause(report):
            self.session.shouldfail = f"{report.nodeid} failed a clause it cites"

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.durations_out and self.durations:
            rounded = {k: round(v, 4) for k, v in self.durations.items()}
            Path(self.durations_out).write_text(json.dumps(rounded, indent=0))
        if self.failures_out:
            Path(self.failures_out).write_text(json.dumps(self.failures, indent=0))


ORDER_KEY = pytest.StashKey[OrderPlugin]()


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("no_shrink"):
        from hypothesis import Phase, settings

        # After the root conftest has loaded the chosen profile: the same settings, minus shrinking.
        settings.register_profile(
            "mutant-runner", parent=settings.default, phases=[Phase.explicit, Phase.reuse, Phase.generate]
        )
        settings.load_profile("mutant-runner")
    config.stash[ORDER_KEY] = OrderPlugin(config)
    config.pluginmanager.register(config.stash[ORDER_KEY], "mutant-order")


@pytest.hookimpl(trylast=True)  # a module hook, registered by -p before the conftests' plugins: it runs last
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    config.stash[ORDER_KEY].modify_items(config, items)


@pytest.hookimpl(wrapper=True)
def pytest_cmdline_main(config: pytest.Config) -> Generator[None, object, object]:
    """Around the session: a ``pytest.UsageError`` before the session started (the suite refusing the
    fork while it loads it, in its pytest_configure) is written to --refusal-out."""
    try:
        return (yield)
    except pytest.UsageError as error:
        order = config.stash.get(ORDER_KEY, None)
        if order is None or order.session is None:
            _record_refusal(config.getoption("refusal_out"), error)
        raise


def _record_refusal(path: str | None, error: pytest.UsageError) -> None:
    """``{"message", "clauses", "loaded"}``: the suite's message, the clauses it names, and whether the
    fork imported (False: "cannot test the implementation", the module itself failed to load)."""
    if not path:
        return
    from tests.support import loader

    message = str(error)
    loaded = not isinstance(error.__context__, loader.ImplError)
    record = {"message": message, "clauses": sorted(set(LOAD_CLAUSE.findall(message))), "loaded": loaded}
    Path(path).write_text(json.dumps(record, indent=1) + "\n")


def _fails_a_cited_clause(report: pytest.TestReport) -> bool:
    """As the report counts it (``verdict.Outcome.fails_a_cited_clause``); a report without an outcome does."""
    from tests.support.verdict import Outcome

    outcome = Outcome.from_properties(report.user_properties)
    return outcome is None or outcome.fails_a_cited_clause
