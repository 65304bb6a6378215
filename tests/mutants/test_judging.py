"""tests/mutants/judging.py: one outcome per run, from the exit status, the report and the refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.mutants import judging
from tests.support import verdict

SE_1 = verdict.Row("SE-1", "Average squeeze", "FAILED", 0, 1, 0, 0, "t.py::test_se: wrong\n gate", True, [], [])
REPORT = verdict.Report("f.py", "f.py does NOT conform", {}, ["SE-1"], None, [], [SE_1])
REFUSAL = judging.Refusal("--impl f.py is not the EfficientNet API: ... (clause API-1)", ["API-1"], loaded=True)


@pytest.mark.parametrize(
    ("returncode", "report", "refusal", "status"),
    [
        (None, None, None, "timeout"),
        (0, REPORT, None, "accepted"),
        (1, REPORT, None, "rejected"),
        (1, None, None, "error"),  # no report: no verdict
        (4, None, REFUSAL, "refused at load"),
        (4, None, None, "error"),  # a usage error that is not a refusal of the fork
        (2, REPORT, None, "error"),
    ],
)
def test_one_classification(returncode, report, refusal, status):
    assert judging.classify(returncode, report, refusal) == status


def test_the_outcome_reads_roots_tests_and_refusals(tmp_path: Path):
    rejected = judging.RunOutcome("rejected", 1, REPORT, None, tmp_path / "log", 1.0, None)
    assert (rejected.roots, rejected.failed, rejected.first_test()) == (["SE-1"], ["SE-1"], "t.py::test_se")
    assert REPORT.detail("SE-1") == "t.py::test_se: wrong gate"
    refused = judging.RunOutcome("refused at load", 4, None, REFUSAL, tmp_path / "log", 1.0, None)
    assert refused.roots == ["API-1"]
    assert refused.refused(Path("f.py")).startswith("refused at load: ERROR: --impl f.py is not the EfficientNet API")


def test_a_fork_that_is_not_the_api_is_refused_at_load(tmp_path: Path):
    """The runners' plugin (order.py --refusal-out) records the suite's refusal: no output is read."""
    fork = tmp_path / "no_network.py"
    fork.write_text("x = 1\n")
    outcome = judging.run_fork(
        fork, tmp_path / "report", judging.CONFORMANCE, env={}, timeout=120, preload=None, order=judging.Order()
    )
    assert outcome.status == "refused at load", outcome.tail()
    assert outcome.refusal is not None
    assert outcome.refusal.loaded
    assert outcome.roots == ["API-1"]


def test_the_order_options_become_the_plugins_arguments(tmp_path: Path):
    durations = tmp_path / "d.json"
    order = judging.Order(durations_in=durations, first_clauses=["SE-1"], no_shrink=True, other_examples=5)
    want = ["--durations-in", str(durations), "--first-clauses", "SE-1", "--no-shrink", "--other-examples", "5"]
    assert order.args() == want
    assert judging.Order().args() == []
