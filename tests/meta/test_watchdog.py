"""Every verdict in bounded time (tests/support/watchdog.py).

A fork whose code never returns, raises KeyboardInterrupt or SystemExit, or kills the xdist worker
running it (``os._exit``, a segfault) gets a verdict: the test fails under the clauses it cites, with
what happened and where, and the run goes on to the end.  A real Ctrl-C still stops the run.  Each
case runs a few tests of tests/conformance/test_scaling.py against a copy of effnet whose
``scale_width`` misbehaves for factors below 0.5, with short bounds (``--timeout``); one of them also
fails ARCH-4, whose erratum's recogniser then runs the fork's code in the process that writes the
report.  The bounds themselves and the suite's own hangs are checked without a run.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.meta.test_report import assert_verdict_is_last
from tests.support import evidence, subrun, watchdog

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "effnet" / "model.py"
SCALING = "tests/conformance/test_scaling.py"
# Two SCALE-1 tests that call scale_width and nothing else (no lazy import that a short bound could catch).
SCALE_1 = f"{SCALING}::test_scaled_width_follows_the_spec_rule"
SCALE_1_AGAIN = f"{SCALING}::test_scaled_width_is_a_multiple_of_8_within_the_rounding_bounds"
# Builds EfficientNet(0.25, 0.3, 10) and EfficientNet(0.5, 0.5, 3) and cites ARCH-4: a failure there looks
# for ARCH-4's erratum (E-9), whose recogniser builds EfficientNet(0.33, 0.1) in the process that writes
# the report.
ARCH_4 = "tests/conformance/test_architecture.py::test_head_is_conv_bn_silu_average_pool_linear"
WIDTH_RULE = "    if new_w < 0.9 * scaled:\n        new_w += 8\n"
NEVER_ENDS = "    while new_w < 0.9 * scaled:\n        new_w + 8\n"  # the assignment lost: a loop for ever
SCALED = "    scaled = w * w_factor\n"


def fork(tmp_path: Path, name: str, old: str, new: str) -> tuple[Path, int]:
    """A copy of effnet/model.py with ``old`` (once in it) replaced by ``new``; the line ``new`` starts at."""
    text = SOURCE.read_text()
    assert text.count(old) == 1, f"effnet/model.py no longer contains {old!r} exactly once: update this test"
    path = tmp_path / f"{name}.py"
    path.write_text(text.replace(old, new))
    return path, text[: text.index(old)].count("\n") + 1


def misbehaving(tmp_path: Path, name: str, block: str) -> tuple[Path, int]:
    """A copy of effnet whose scale_width runs ``block`` (indented 8 spaces) for factors below 0.5; the
    line of the block's first statement."""
    path, line = fork(tmp_path, name, SCALED, f"{SCALED}    if w_factor < 0.5:\n{block}\n")
    return path, line + 2


def run(tmp_path: Path, *args: str, timeout: float = 240) -> tuple[int, str, dict[str, Any], float]:
    """pytest with ``args`` and --report; (exit status, output, report JSON, seconds)."""
    report = tmp_path / "report"
    env = {k: v for k, v in os.environ.items() if k not in ("EFFNET_IMPL", "PYTEST_ADDOPTS", "PYTEST_TIMEOUT")}
    start = time.perf_counter()
    result = subrun.pytest([*args, "-p", "no:cacheprovider", "--report", str(report)], env=env, timeout=timeout)
    seconds = time.perf_counter() - start
    output = result.stdout + result.stderr
    payload = json.loads((tmp_path / "report.json").read_text()) if (tmp_path / "report.json").exists() else {}
    return result.returncode, output, payload, seconds


def by_clause(payload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["clause"]: row for row in payload.get("clauses", [])}


# --- A call that never returns --------------------------------------------------------------------
def test_a_fork_that_never_returns_gets_its_verdict_naming_the_clause_and_the_call(tmp_path):
    path, line = fork(tmp_path, "never_returns", WIDTH_RULE, NEVER_ENDS)
    code, output, payload, seconds = run(
        tmp_path, SCALE_1, SCALE_1_AGAIN, ARCH_4, "-n", "2", "--impl", str(path), "--timeout", "5"
    )
    assert code == 1, output
    rows = by_clause(payload)
    scale_1 = rows["SCALE-1"]
    assert (scale_1["status"], scale_1["failed"]) == ("FAILED", 2), scale_1
    # The call that did not return (the loop's line, or its body's) and the suite's call into the fork.
    call = re.escape(f"scale_width ({path}:") + r"(\d+)\) did not return: "
    found = re.search(call, scale_1["detail"])
    assert found, scale_1["detail"]
    assert int(found.group(1)) in (line, line + 1), scale_1["detail"]
    assert f"called from {SCALE_1.split('::')[1]} ({SCALING}:" in scale_1["detail"], scale_1["detail"]
    assert "SCALE-1" in payload["root_causes"], payload["verdict"]
    # The first hang of a worker runs to its bound; once scale_width is known not to return, another
    # test stuck in it ends within seconds (in the other worker too), and the recogniser of ARCH-4's
    # erratum, which calls it too, does not keep the verdict waiting.
    assert re.search(r"did not return: still running after \d+\.\d s \(it did not return in tests/", output), output
    assert seconds < 60, f"{seconds:.0f} s for three tests bounded at 5 s:\n{output}"
    assert_verdict_is_last(output, payload)


def test_a_call_of_the_suite_that_does_not_return_is_an_error_of_the_suite(tmp_path):
    """Whose call did not return is decided, as for an exception (evidence.suite_error), by the
    innermost frame of the suite's or the implementation's code: libraries (torch) aside."""
    impl = tmp_path / "fork.py"
    premises = ROOT / "tests" / "support" / "premises.py"
    test = ROOT / SCALING
    torch_frame = (str(Path(torch.nn.functional.__file__)), 5, "conv2d", "t")
    in_the_fork = [
        (str(impl), 10, "scale_width", "a"),
        (str(premises), 20, "scaling", "b"),
        (str(test), 30, "test_x", "c"),
    ]
    exc, _ = watchdog.did_not_return(in_the_fork, "the test ran past its bound of 1 s", impl_roots=(impl,))
    assert evidence.suite_error(exc) is None, "the fork's loop is a verdict"
    assert str(exc).startswith(f"scale_width ({impl}:10) did not return: the test ran past its bound of 1 s; ")
    assert "called from scaling (tests/support/premises.py:20)" in str(exc)
    # The impl fixture's view forwards a constructor's call: the call named is the test's.
    view = ROOT / "tests" / "support" / "boundary.py"
    through_the_view = [in_the_fork[0], (str(view), 40, "__call__", "v"), (str(test), 30, "test_x", "c")]
    exc, _ = watchdog.did_not_return(through_the_view, "the test ran past its bound of 1 s", impl_roots=(impl,))
    assert f"; called from test_x ({SCALING}:30)" in str(exc), str(exc)
    # The fork's code in another file (the module a shim re-exports, a helper module of its own): the fork's.
    helpers = tmp_path / "helpers.py"
    in_its_helpers = [torch_frame, (str(helpers), 7, "round_width", "h"), *in_the_fork]
    exc, found = watchdog.did_not_return(in_its_helpers, "the test ran past its bound of 1 s", impl_roots=(impl,))
    assert evidence.suite_error(exc) is None, str(exc)
    assert found.owner == "impl", str(exc)
    assert str(exc).startswith(f"round_width ({helpers}:7) did not return"), str(exc)
    in_the_suite = [torch_frame, (str(premises), 20, "scaling", "b"), (str(impl), 10, "scale_width", "a")]
    exc, _ = watchdog.did_not_return(in_the_suite, "the test ran past its bound of 1 s", impl_roots=(impl,))
    assert evidence.suite_error(exc) == (
        "DidNotReturn: scaling (tests/support/premises.py:20) did not return (the test ran past its bound of 1 s) "
        "at tests/support/premises.py:20"
    )


def test_a_call_that_neither_returns_nor_stops_ends_its_worker_with_its_stack(tmp_path):
    """A fork that catches DidNotReturn and goes on (as would a hang in C code, where no signal
    handler runs): faulthandler's watchdog ends the worker, and its dump says where."""
    block = "        import time\n        while True:\n            try:\n                time.sleep(0.05)\n"
    block += "            except BaseException:\n                pass"
    path, _ = misbehaving(tmp_path, "never_stops", block)
    code, output, payload, _ = run(tmp_path, SCALE_1, ARCH_4, "-n", "2", "--impl", str(path), "--timeout", "2")
    assert code == 1, output
    scale_1 = by_clause(payload)["SCALE-1"]
    assert scale_1["status"] == "FAILED", scale_1
    stuck = re.escape(f"scale_width ({path}:") + r"\d+\) did not return, nor stop when interrupted: its worker gw\d+ "
    assert re.search(stuck + r"was ended after 0:00:0\d", scale_1["detail"]), scale_1["detail"]
    assert_verdict_is_last(output, payload)


# --- KeyboardInterrupt, SystemExit, a real Ctrl-C -----------------------------------------------
def _both_clauses_fail(tmp_path, name: str, statement: str) -> tuple[Any, int, dict[str, Any], str, Any]:
    """A fork whose scale_width runs ``statement``, judged on SCALE-1 and ARCH-4 under xdist: both fail.
    Returns the fork's path, the statement's line, the rows by clause, pytest's output and the report."""
    path, line = misbehaving(tmp_path, name, f"        {statement}")
    code, output, payload, _ = run(tmp_path, SCALE_1, ARCH_4, "-n", "2", "--impl", str(path))
    assert code == 1, output
    rows = by_clause(payload)
    assert rows["SCALE-1"]["status"] == rows["ARCH-4"]["status"] == "FAILED", payload.get("verdict", output)
    return path, line, rows, output, payload


@pytest.mark.parametrize(
    ("statement", "what"),
    [
        ("raise KeyboardInterrupt", "KeyboardInterrupt raised in"),
        ("raise SystemExit('bye')", "SystemExit('bye') raised in"),
    ],
    ids=["KeyboardInterrupt", "SystemExit"],
)
def test_keyboard_interrupt_or_system_exit_from_the_fork_fails_the_test(tmp_path, statement, what):
    path, line, rows, output, payload = _both_clauses_fail(tmp_path, "exits", statement)
    assert f"WouldEndRunError: {what} scale_width ({path}:{line})" in rows["SCALE-1"]["detail"], rows["SCALE-1"]
    assert_verdict_is_last(output, payload)


def test_a_real_ctrl_c_still_stops_the_run(tmp_path):
    """The fork sends its own process a SIGINT, as a Ctrl-C does: the run stops (status 2), and its
    KeyboardInterrupt is no test's failure.  Where this process ignores SIGINT (started in the
    background by a shell without job control, whose children inherit that), no Ctrl-C reaches a
    run, and the watchdog leaves the signal as it found it: there is nothing to show."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        pytest.skip("SIGINT is ignored in this process (started in the background): no Ctrl-C can reach the run")
    block = "        import os, signal, time\n        os.kill(os.getpid(), signal.SIGINT)\n        time.sleep(60)"
    path, _ = misbehaving(tmp_path, "ctrl_c", block)
    code, output, _, _ = run(tmp_path, SCALE_1, SCALE_1_AGAIN, "--impl", str(path), timeout=120)
    assert code == pytest.ExitCode.INTERRUPTED, output
    assert "KeyboardInterrupt" in output, output
    assert "WouldEndRunError" not in output, output


# --- A worker that dies ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("statement", "how"),
    [
        ("import os; os._exit(3)", r"its worker gw\d+ exited with status 3 with no error or stack \(os\._exit"),
        (
            "import ctypes; ctypes.string_at(0)",
            r"its worker gw\d+ killed by SIGSEGV \(Fatal Python error: Segmentation fault\) "
            r"in scale_width \({path}:{line}\), called from test_scaled_width_follows_the_spec_rule",
        ),
    ],
    ids=["os._exit", "segfault"],
)
def test_a_fork_that_kills_its_worker_fails_the_test_it_ran(tmp_path, statement, how):
    path, line, rows, output, payload = _both_clauses_fail(tmp_path, "dies", statement)
    pattern = how.replace("{path}", re.escape(str(path))).replace("{line}", str(line))
    assert re.search(pattern, rows["SCALE-1"]["detail"]), rows["SCALE-1"]["detail"]
    assert rows["SCALE-1"]["detail"].startswith(SCALE_1), rows["SCALE-1"]["detail"]
    assert_verdict_is_last(output, payload)


# --- The bounds -----------------------------------------------------------------------------------
def test_bounds_leave_a_correct_fork_room_and_a_test_without_a_record_more():
    """A correct fork on a machine four times slower than the recording's (measured under load), or
    on its first test in a process (imports), never meets its bound; nor does a test without a
    recorded duration (minutes of a mutant sweep's leg), with the default."""
    durations = json.loads(watchdog.DURATIONS.read_text())
    for nodeid, seconds in durations.items():
        later = watchdog.bound(nodeid, first=False, durations=durations)
        assert later >= 30 + 10 * seconds, (nodeid, later)
        assert watchdog.bound(nodeid, first=True, durations=durations) >= later + 30, nodeid
    assert watchdog.bound("tests/meta/test_new.py::test_x", first=False, durations=durations) >= 600
    assert watchdog.bound("tests/meta/test_new.py::test_x", first=True, fixed=3.0, durations=durations) == 3.0


def test_a_call_known_not_to_return_is_cut_short_by_its_tests_recorded_duration():
    durations = {"a": 0.5, "b": 2.75}
    assert watchdog.tight_bound("a", durations=durations) == watchdog.TIGHT_FLOOR_S + watchdog.TIGHT_SLACK * 0.5
    # A test not recorded: as long as the longest recorded test.
    assert watchdog.tight_bound("new", durations=durations) == watchdog.TIGHT_FLOOR_S + watchdog.TIGHT_SLACK * 2.75
    assert watchdog.tight_bound("b", fixed=3.0, durations=durations) == 3.0, "never longer than --timeout"
