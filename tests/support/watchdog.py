"""Every verdict in bounded time: each test's bound, and what a fork that hangs, exits or crashes did.

A fork can keep a test from ever finishing (a loop that never ends), end it in a way pytest does not
take for a failure (``raise KeyboardInterrupt``, which stops a whole pytest run, or ``sys.exit``), or
end the process that runs it (``os._exit``, a segfault, the kernel's out-of-memory killer).  Each
becomes the failure of the test that was running, under the clauses it cites, saying what happened
and where, and the run goes on to its verdict.

**Bounds.**  This module is pytest-timeout's timer (``pytest_timeout_set_timer``) and chooses each
test's bound, setup to teardown: ``FLOOR_S + SLACK * d`` seconds for a test that took ``d`` on effnet
(tests/mutants/durations.json, one thread), ``DEFAULT_S`` for one not recorded, plus ``FIRST_S`` for
a process's first test (imports, first allocations).  ``--timeout N`` (or ``$PYTEST_TIMEOUT``, or the
ini option) bounds every test by N instead, ``--timeout 0`` by nothing.  A SIGALRM every ``TICK_S``
checks the running test; past its bound it raises ``DidNotReturn`` in the code running then.  That is
a ``BaseException``: hypothesis would catch pytest-timeout's own ``pytest.fail`` and replay the
example, hanging again, and a fork's ``except Exception`` would swallow it.

**Where.**  The message names the innermost frame of the implementation's code (file, line,
function) and the suite's call into it.  Where the innermost frame of the suite's or the
implementation's code (libraries such as torch aside) is the suite's, the suite's own code did not
finish: an error of the suite, not a verdict (tests/support/evidence.py ``suite_error``).

**Many hanging tests.**  Every process of the run (the xdist workers and the controller) reads the
calls that did not return from one file.  A call of such a function still running after
``TIGHT_FLOOR_S + TIGHT_SLACK * d`` seconds is taken for the same hang: the other tests that enter
the loop end within seconds, not each after its full bound; a test slow elsewhere keeps its bound.

**When the signal cannot end it** (a hang in C code never returns to the interpreter; a fork may
catch ``BaseException`` and go on), faulthandler's watchdog (a C thread) dumps every thread's stack
and ends the process twice the bound after the start (or one more bound after ``DidNotReturn``).
Under pytest-xdist the process is a worker: the run goes on.

**A worker that dies** (``os._exit``, a fatal signal, that watchdog) is reported by pytest-xdist as
a crash with no clause; ``pytest_handlecrashitem`` gives the report the test's clauses and a message
from the worker's exit status and its own faulthandler dump, naming the innermost frame of the
implementation's code (``pytest_xdist_node_collection_finished``: how often a worker may be replaced).

**KeyboardInterrupt and SystemExit** raised by code under test fail that test
(``WouldEndRunError``).  A real Ctrl-C (a SIGINT the process received) still stops the run.

**The recognisers of the errata** (tests/support/errata.py) run the implementation's code in the
process that writes the report: each is bounded too, and under pytest-xdist it runs in a process
forked for it, so that an exit or a crash there costs that erratum's name, not the verdict.
"""

from __future__ import annotations

import contextlib
import faulthandler
import functools
import json
import linecache
import os
import pickle
import re
import select
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, ModuleType
from typing import IO, Any

import pytest

from tests.support import spec
from tests.support.loader import in_library

ROOT = Path(__file__).resolve().parents[2]
DURATIONS = ROOT / "tests" / "mutants" / "durations.json"

# A correct fork never meets its bound: the recorded durations are effnet's on one thread, and a
# machine under load, or a worker's first test that builds timm's models, runs many times slower
# (docs/time-budget.md).  A fork that loops forever costs a worker its first hang's bound, then seconds.
FLOOR_S = 30.0
SLACK = 10.0
FIRST_S = 30.0  # the first test of a process pays for lazy imports and the first allocations
DEFAULT_S = 900.0  # a test without a recorded duration (outside tests/conformance, or new)
TIGHT_FLOOR_S = 1.0  # a call of a function already seen not to return: the same hang after this ...
TIGHT_SLACK = 3.0  # ... plus this times the test's recorded duration (a call is part of its test)
TICK_S = 0.5
RECOGNISER_S = 60.0  # an erratum's recogniser builds one small model
FAULTS_SUFFIX = ".faults"  # a worker's faulthandler dump: <run dir>/<worker id>.faults
HANGS_FILE = "hangs.tsv"  # the calls that did not return: code key, tab, where it was seen
Frame = tuple[str, int, str, str]  # a frame of a stack: (filename, line, function, code key)


class DidNotReturn(BaseException):
    """A test ran past its bound (or a call of a function known to hang past its short bound): a
    ``BaseException``, as the module says why.  ``suite_error_text`` is set when the code that did not
    return is the suite's own (tests/support/evidence.py ``suite_error`` reads it)."""

    suite_error_text: str | None = None


class WouldEndRunError(Exception):
    """A KeyboardInterrupt (with no Ctrl-C) or a SystemExit raised by code under test: the failure of
    the test that raised it, not the end of the run.  It carries the original's traceback, so that its
    innermost frame decides whose it is (evidence.suite_error), and its blame."""


# Shown as "DidNotReturn: ..." in tracebacks and in the report's details, like the built-in exceptions
# they stand for, not "tests.support.watchdog.DidNotReturn: ...".
DidNotReturn.__module__ = WouldEndRunError.__module__ = "builtins"


# --- The run's shared state ---------------------------------------------------------------------
@dataclass
class _Run:
    directory: Path
    owner: bool  # this process made the directory (and removes it)
    durations: dict[str, float]
    suite_bounds: bool  # False: the user's --timeout / $PYTEST_TIMEOUT / ini gives every bound
    config: pytest.Config
    worker: str | None  # the xdist worker id, None in the controller or a run without xdist
    apart: bool  # the errata's recognisers run in a forked process (the xdist controller)
    stderr: IO[str] | None  # the real standard error (pytest captures fd 2), for a dump
    started: int = 0  # tests started in this process
    faults: IO[str] | None = None  # this worker's faulthandler file
    impl_roots: tuple[Path, ...] | None = None
    hangs: dict[str, str] = field(default_factory=dict)  # code key -> where it did not return
    hangs_size: int = -1
    clauses: dict[str, str] = field(default_factory=dict)  # node ID -> its clauses (controller)


_run: _Run | None = None
_sigint_received = False
_previous_sigint: Any = None


def _real_sigint(signum: int, frame: FrameType | None) -> None:
    """SIGINT: remember that a Ctrl-C came, then do what the previous handler did."""
    global _sigint_received
    _sigint_received = True
    if callable(_previous_sigint):
        _previous_sigint(signum, frame)
    else:
        raise KeyboardInterrupt


@pytest.hookimpl(tryfirst=True)  # before pytest-timeout reads its options
def pytest_configure(config: pytest.Config) -> None:
    global _run, _previous_sigint
    if _run is not None:
        return  # a pytest run inside this one's process (pytester): the outer run's bounds and directory
    workerinput: dict[str, Any] = getattr(config, "workerinput", None) or {}
    shared = workerinput.get("effnet_run_dir")
    timed = config.pluginmanager.has_plugin("timeout")
    given = timed and (
        config.getoption("timeout") is not None or os.environ.get("PYTEST_TIMEOUT") or config.getini("timeout")
    )
    if timed and not given:
        config.option.timeout = DEFAULT_S  # pytest-timeout then calls the timer hook for every test
    try:
        durations = {k: float(v) for k, v in json.loads(DURATIONS.read_text()).items()}
    except (OSError, ValueError):
        durations = {}
    try:
        stderr: IO[str] | None = os.fdopen(os.dup(2), "w")  # capture is suspended while pytest_configure runs
    except OSError:
        stderr = None
    xdist = config.pluginmanager.has_plugin("xdist") and bool(getattr(config.option, "numprocesses", None))
    _run = _Run(
        directory=Path(shared) if shared else Path(tempfile.mkdtemp(prefix="effnet-run-")),
        owner=not shared,
        durations=durations,
        suite_bounds=timed and not given,
        config=config,
        worker=workerinput.get("workerid"),
        apart=not workerinput and xdist,
        stderr=stderr,
    )
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is threading.main_thread() and previous not in (signal.SIG_IGN, signal.SIG_DFL, None):
        _previous_sigint = signal.signal(signal.SIGINT, _real_sigint)


def pytest_unconfigure(config: pytest.Config) -> None:
    global _run
    run = _run
    if run is None or run.config is not config:
        return
    _disarm()
    if _previous_sigint is not None and signal.getsignal(signal.SIGINT) is _real_sigint:
        signal.signal(signal.SIGINT, _previous_sigint)
    if run.faults is not None:
        faulthandler.disable()  # pytest's faulthandler plugin restores its own afterwards
        run.faults.close()
    if run.stderr is not None:
        run.stderr.close()
    if run.owner:
        shutil.rmtree(run.directory, ignore_errors=True)
    _run = None


def pytest_report_header(config: pytest.Config) -> str | None:
    if _run is None or not _run.suite_bounds:
        return None
    return (
        f"test bounds: {FLOOR_S:.0f} s + {SLACK:.0f} x the recorded duration (tests/mutants/durations.json), "
        f"{DEFAULT_S:.0f} s without one, +{FIRST_S:.0f} s for a process's first test; --timeout N: N s each"
    )


# --- Bounds ----------------------------------------------------------------------------------------
def bound(nodeid: str, first: bool, fixed: float | None = None, durations: dict[str, float] | None = None) -> float:
    """The seconds test ``nodeid`` may run (setup to teardown) before it fails as not returning."""
    if fixed is not None:
        return fixed
    recorded = (durations if durations is not None else _durations()).get(nodeid)
    base = DEFAULT_S if recorded is None else FLOOR_S + SLACK * recorded
    return base + (FIRST_S if first else 0.0)


def tight_bound(nodeid: str, fixed: float | None = None, durations: dict[str, float] | None = None) -> float:
    """The seconds a call of a function already seen not to return may run in test ``nodeid``."""
    known = durations if durations is not None else _durations()
    recorded = known.get(nodeid, max(known.values(), default=DEFAULT_S / TIGHT_SLACK))
    tight = TIGHT_FLOOR_S + TIGHT_SLACK * recorded
    return min(tight, fixed) if fixed is not None else tight


def _durations() -> dict[str, float]:
    return _run.durations if _run is not None else {}


# --- The timer --------------------------------------------------------------------------------------
@dataclass
class _Timer:
    label: str  # the test's node ID, or what else is bounded
    bound: float
    tight: float
    start: float
    test: tuple[str, str] | None  # (file, function) of the test function: the stack is read up to it
    item: Any = None
    running: bool = False  # inside a phase (setup, call, teardown): only then may a tick raise
    raised: DidNotReturn | None = None
    alive: dict[int, tuple[FrameType, float]] = field(default_factory=dict)  # known hung calls: since when
    last_tick: float | None = None


_timer: _Timer | None = None


def _arm(timer: _Timer) -> None:
    global _timer
    _timer = timer
    signal.signal(signal.SIGALRM, _tick)
    tick = min(TICK_S, max(timer.bound / 4, 0.05))
    signal.setitimer(signal.ITIMER_REAL, tick, tick)
    _backstop(2 * timer.bound)


def _disarm() -> None:
    global _timer
    if _timer is None:
        return
    _timer = None
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    faulthandler.cancel_dump_traceback_later()


def _backstop(seconds: float) -> None:
    """faulthandler's watchdog: every thread's stack, then the end of the process, in ``seconds``."""
    out = (_run.faults or _run.stderr) if _run is not None else None
    with contextlib.suppress(ValueError, RuntimeError, AttributeError, OSError):
        faulthandler.dump_traceback_later(max(seconds, 1.0), exit=True, file=out or sys.__stderr__)


def _tick(signum: int, frame: FrameType | None) -> None:
    __tracebackhide__ = True
    timer = _timer
    if timer is None or not timer.running or frame is None:
        return
    from pytest_timeout import is_debugging

    if is_debugging():
        return
    now = time.monotonic()
    if timer.raised is not None:  # the code went on after DidNotReturn: raise it again
        again = DidNotReturn(*timer.raised.args)
        again.suite_error_text = timer.raised.suite_error_text
        raise again
    stack = _stack(frame, timer.test)
    elapsed = now - timer.start
    began, timer.last_tick = (timer.last_tick or timer.start), now
    if elapsed >= timer.bound:
        exc = _did_not_return(stack, timer, f"the test ran past its bound of {timer.bound:.0f} s", None)
    else:
        exc = _same_hang(stack, timer, now, began)
        if exc is None:
            return
    timer.raised = exc
    _backstop(max(elapsed, 1.0))  # the signal may not end it: the process ends after as long again
    raise exc


def _same_hang(stack: list[FrameType], timer: _Timer, now: float, began: float) -> DidNotReturn | None:
    """A running call of a function that did not return before, alive for the tight bound: the same hang.
    A call not running at the last tick (``began``) is taken to have begun then."""
    hangs = _known_hangs()
    if not hangs:
        return None
    alive: dict[int, tuple[FrameType, float]] = {}
    found = None
    for f in stack:
        key = _code_key(f)
        if key not in hangs:
            continue
        previous = timer.alive.get(id(f))
        since = previous[1] if previous is not None and previous[0] is f else began
        alive[id(f)] = (f, since)
        if found is None and now - since >= timer.tight:
            found = (now - since, hangs[key])
    timer.alive = alive
    if found is None:
        return None
    seconds, before = found
    return _did_not_return(
        stack, timer, f"still running after {seconds:.1f} s (it did not return in {before} either)", before
    )


def _did_not_return(stack: list[FrameType], timer: _Timer, how: str, before: str | None) -> DidNotReturn:
    exc, found = did_not_return(_frames((f, f.f_lineno or 0) for f in stack), how)
    if before is None and found.owner == "impl":  # a new hang: later calls of its functions are cut short
        _register_hangs(found.keys, timer.label)
    return exc


def _register_hangs(keys: list[str], label: str) -> None:
    new = [k for k in keys if k not in _known_hangs()]
    if _run is not None and new:
        with open(_run.directory / HANGS_FILE, "a") as f:
            f.write("".join(f"{k}\t{label}\n" for k in new))


def _known_hangs() -> dict[str, str]:
    run = _run
    if run is None:
        return {}
    path = run.directory / HANGS_FILE
    try:
        size = path.stat().st_size
    except OSError:
        return run.hangs
    if size != run.hangs_size:
        text = path.read_text()
        run.hangs = dict(line.split("\t", 1) for line in text.splitlines() if "\t" in line)
        run.hangs_size = len(text.encode())
    return run.hangs


# --- Whose code did not return ---------------------------------------------------------------------
def _stack(frame: FrameType, test: tuple[str, str] | None) -> list[FrameType]:
    """The interrupted frames, innermost first, up to the test function's frame (all, without one)."""
    frames = []
    for f, _ in traceback.walk_stack(frame):
        frames.append(f)
        if test is not None and (f.f_code.co_filename, f.f_code.co_name) == test:
            break
    return frames


def _frames(stack: Iterable[tuple[FrameType, int]]) -> list[Frame]:
    """(filename, line, function, code key) of each (frame, line)."""
    return [(f.f_code.co_filename, line, f.f_code.co_name, _code_key(f)) for f, line in stack]


def _code_key(f: FrameType) -> str:
    code = f.f_code
    return f"{code.co_filename}:{code.co_firstlineno}:{code.co_name}"


def _impl_roots() -> tuple[Path, ...]:
    """The implementation's file, or its package's directory (none before it is loaded)."""
    run = _run
    if run is not None and run.impl_roots is None:
        from tests.support.plugin import IMPL_KEY

        file = getattr(run.config.stash.get(IMPL_KEY, None), "__file__", None)
        if file is not None:
            path = Path(file).resolve()
            run.impl_roots = (path.parent if path.name == "__init__.py" else path,)
    return (run.impl_roots if run is not None else None) or ()


def side(filename: str, impl_roots: tuple[Path, ...] | None = None) -> str:
    """Whose code ``filename`` is: "suite", "impl" (the implementation under test: its file or package, and
    any other code of its own that it runs, such as the module a shim re-exports) or "library" (torch,
    timm, the standard library, pytest: whatever is installed; and this module)."""
    return _side(filename, _impl_roots() if impl_roots is None else impl_roots)


@functools.cache
def _side(filename: str, roots: tuple[Path, ...]) -> str:
    from tests.support import evidence

    try:
        path = Path(filename).resolve()
    except (OSError, ValueError):
        return "library"
    if path == Path(__file__).resolve():
        return "library"
    if any(path == r or path.is_relative_to(r) for r in roots):
        return "impl"
    if evidence._in_suite(filename):
        return "suite"
    return "library" if in_library(filename) else "impl"  # neither the suite's nor installed: the fork's own


def _relative(filename: str) -> str:
    """``filename`` relative to the repository where inside it."""
    try:
        return str(Path(filename).resolve().relative_to(ROOT))
    except ValueError:
        return filename


@dataclass
class Where:
    """Whose code did not return (or crashed), and the suite's call into the implementation."""

    owner: str  # "impl", "suite" or "library"
    place: str  # "function (file:line)" of the innermost frame of the owner's code
    path: str  # the owner's file, relative to the repository where inside it
    line: int
    caller: str | None  # "function (file:line): source" of the suite's call into the implementation
    keys: list[str]  # the code keys of the owner's frames (the hung calls), innermost first

    def call(self, separator: str = "; ") -> str:
        """``"; called from CALLER"`` (after ``separator``), or "" where the suite's call is not known."""
        return f"{separator}called from {self.caller}" if self.caller else ""


# The impl fixture's view of the implementation forwards each call of a constructor to it (and checks
# what it returns): the call to name is the one into the view, from a test or a helper.
FORWARDS_CALLS = (ROOT / "tests" / "support" / "boundary.py",)


def where(frames: list[Frame], impl_roots: tuple[Path, ...] | None = None) -> Where:
    """Read a stack, innermost first."""
    sides = [side(f[0], impl_roots) for f in frames]
    index = next((i for i, s in enumerate(sides) if s in ("impl", "suite")), 0)
    owner = sides[index] if frames else "library"
    filename, line, function, _ = frames[index] if frames else ("?", 0, "?", "")
    caller = None
    if owner == "impl":
        calls = [i for i in range(index + 1, len(frames)) if sides[i] == "suite"]
        call = next((i for i in calls if not _forwards(frames[i][0])), calls[0] if calls else None)
        if call is not None:
            c_file, c_line, c_function, _ = frames[call]
            source = linecache.getline(c_file, c_line).strip()
            caller = f"{c_function} ({_relative(c_file)}:{c_line})" + (f": {source}" if source else "")
    owned = [f[3] for f, s in zip(frames[index:], sides[index:], strict=True) if s == owner]
    keys = owned if owner != "library" else []
    path = _relative(filename)
    return Where(owner, f"{function} ({path}:{line})", path, line, caller, keys)


def _forwards(filename: str) -> bool:
    try:
        return Path(filename).resolve() in FORWARDS_CALLS
    except (OSError, ValueError):
        return False


def did_not_return(
    frames: list[Frame], how: str, impl_roots: tuple[Path, ...] | None = None
) -> tuple[DidNotReturn, Where]:
    """The failure of a call that did not return, from the stack it was interrupted in (innermost first),
    an error of the suite where the module docstring says (Where)."""
    found = where(frames, impl_roots)
    exc = DidNotReturn(f"{found.place} did not return: {how}{found.call()}")
    if found.owner == "suite":
        exc.suite_error_text = f"DidNotReturn: {found.place} did not return ({how}) at {found.path}:{found.line}"
    return exc, found


# --- pytest-timeout's timer hooks -------------------------------------------------------------------
@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> bool | None:
    run = _run
    if run is None or settings.method != "signal" or threading.current_thread() is not threading.main_thread():
        return None  # pytest-timeout's own timer
    if run.worker is not None and run.faults is None:
        run.faults = open(run.directory / f"{run.worker}{FAULTS_SUFFIX}", "w")  # noqa: SIM115 (closed at unconfigure)
        run.faults.write(f"main thread {threading.main_thread().ident:#x}\n")
        run.faults.flush()
        faulthandler.enable(file=run.faults, all_threads=True)
    marked = item.get_closest_marker("timeout") is not None  # pytest-timeout's marker: that test's own bound
    fixed = None if run.suite_bounds and not marked else float(settings.timeout)
    first = run.started == 0
    run.started += 1
    function = getattr(item, "function", None)
    code = getattr(getattr(getattr(function, "hypothesis", None), "inner_test", function), "__code__", None)
    test = (code.co_filename, code.co_name) if code is not None else None
    nodeid = item.nodeid
    _arm(_Timer(nodeid, bound(nodeid, first, fixed), tight_bound(nodeid, fixed), time.monotonic(), test, item))
    return True


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_timeout_cancel_timer(item: pytest.Item) -> bool | None:
    if _timer is None or _timer.item is not item:
        return None
    _disarm()
    return True


def _phase(item: pytest.Item) -> Any:
    """Around setup, call and teardown: the only code a tick may interrupt; a KeyboardInterrupt that no
    Ctrl-C sent, or a SystemExit, fails the test instead of ending the run."""
    timer = _timer if _timer is not None and _timer.item is item else None
    if timer is not None:
        if timer.raised is not None:  # the call ran past its bound: its teardown gets a short one of its own
            timer.raised, timer.start, timer.bound = None, time.monotonic(), timer.tight
            _backstop(2 * timer.tight)
        timer.running = True
    try:
        return (yield)
    except KeyboardInterrupt as e:
        if _sigint_received:
            raise
        raise _would_end_the_run(e, "with no Ctrl-C: it would have stopped the whole run") from None
    except SystemExit as e:
        raise _would_end_the_run(e, "(sys.exit: it would have ended the interpreter)") from None
    finally:
        if timer is not None:
            timer.running = False


pytest_runtest_setup = pytest.hookimpl(wrapper=True, tryfirst=True)(_phase)
pytest_runtest_call = pytest.hookimpl(wrapper=True, tryfirst=True)(_phase)
pytest_runtest_teardown = pytest.hookimpl(wrapper=True, tryfirst=True)(_phase)


def _would_end_the_run(e: BaseException, consequence: str) -> WouldEndRunError:
    found = where(_frames(traceback.walk_tb(e.__traceback__))[::-1])
    what = f"{type(e).__name__}({str(e)!r})" if str(e) else type(e).__name__
    exc = WouldEndRunError(f"{what} raised in {found.place} {consequence}")
    from tests.support import evidence

    for attribute in (evidence._BLAME, evidence._CONCLUSIVE):  # what a ``blame`` block said of it
        if hasattr(e, attribute):
            setattr(exc, attribute, getattr(e, attribute))
    return exc.with_traceback(e.__traceback__)


# --- A worker that died ----------------------------------------------------------------------------
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Each test's clauses, as its first report brings them to the controller (before it can crash)."""
    if _run is not None and _run.worker is None and report.nodeid not in _run.clauses:
        from tests.support.verdict import Outcome

        if (outcome := Outcome.from_properties(report.user_properties)) is not None:
            _run.clauses[report.nodeid] = ",".join(outcome.cited)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    if _run is not None:
        node.workerinput["effnet_run_dir"] = str(_run.directory)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    """xdist replaces at most 4 crashed workers per worker (so that a crash in collection cannot go on
    for ever); once a worker has collected, each test may crash its worker once and the run goes on."""
    if _run is None or _run.config.option.maxworkerrestart is not None:
        return
    dsession = _run.config.pluginmanager.getplugin("dsession")
    if isinstance(getattr(dsession, "_max_worker_restart", None), int):
        dsession._max_worker_restart = max(dsession._max_worker_restart, len(ids))


@pytest.hookimpl(optionalhook=True)
def pytest_handlecrashitem(crashitem: str, report: pytest.TestReport, sched: Any) -> None:
    """The crashed test's report (made by xdist in the controller): its clauses, and what ended the
    worker, where."""
    from tests.support import report as clause_report

    run = _run
    node = getattr(report, "node", None)
    worker = getattr(getattr(node, "gateway", None), "id", "?")
    if (getattr(node, "workeroutput", None) or {}).get("exitstatus") == pytest.ExitCode.INTERRUPTED:
        report.longrepr = f"interrupted: its worker {worker} received a Ctrl-C (SIGINT) while running it"
        return  # a real Ctrl-C: no verdict on the test (xdist stops the run)
    dump = run.directory / f"{worker}{FAULTS_SUFFIX}" if run is not None else None
    message, found = crash_message(
        worker, _exit_status(node), dump.read_text(errors="replace") if dump and dump.exists() else ""
    )
    report.longrepr = message
    report.when = "call"  # type: ignore[assignment]
    clauses = (run.clauses.get(crashitem) if run is not None else None) or _checked_by(crashitem)
    report.user_properties = []
    error = ""
    if found is not None and found.owner == "suite":
        error = f"WorkerCrashed: {message} at {found.path}:{found.line}"
    clause_report.record(report, clauses.split(","), suite_error=error)


def _exit_status(node: Any) -> int | None:
    popen = getattr(getattr(getattr(node, "gateway", None), "_io", None), "popen", None)
    with contextlib.suppress(Exception):
        return None if popen is None else int(popen.wait(timeout=5))
    return None


def _checked_by(nodeid: str) -> str:
    """The clauses whose SPEC.md "Checked by" line names the test (when its reports never came)."""
    function = spec.function_id(nodeid)
    try:
        return ",".join(c for c, line in spec.checked_by_lines().items() if function in spec.parse_checked_by(line))
    except ValueError:
        return ""


_DUMP_THREAD = re.compile(r"^(?:Current thread|Thread) (0x[0-9a-fA-F]+) \(most recent call first\):")
_DUMP_FRAME = re.compile(r'^\s+File "(.+)", line (\d+) in (.+)$')


def crash_message(worker: str, status: int | None, dump: str) -> tuple[str, Where | None]:
    """One line: how the worker ended (its exit status, faulthandler's first line), and where: the
    innermost frame of the implementation's (or the suite's) code in the main thread's stack."""
    lines = dump.splitlines()
    main = int(lines[0].split()[-1], 16) if lines and lines[0].startswith("main thread ") else None
    headline = next((line.strip() for line in lines[1:] if line.strip()), "")
    blocks: dict[int, list[Frame]] = {}
    current: int | None = None
    for line in lines[1:]:
        if m := _DUMP_THREAD.match(line):
            current = int(m.group(1), 16)
            blocks[current] = []
        elif current is not None and (m := _DUMP_FRAME.match(line)):
            blocks[current].append((m.group(1), int(m.group(2)), m.group(3), f"{m.group(1)}:?:{m.group(3)}"))
    frames = blocks.get(main) if main is not None and main in blocks else next(iter(blocks.values()), None)
    if m := re.match(r"Timeout \((.+)\)!", headline):
        text = f"did not return, nor stop when interrupted: its worker {worker} was ended after {m.group(1)}"
    elif headline.startswith("Fatal Python error"):
        text = f"its worker {worker} {_ended(status)} ({headline})"
    else:
        text = f"its worker {worker} {_ended(status)} with no error or stack (os._exit, or a kill from outside)"
    if not frames:
        return text, None
    found = where(frames)
    if headline.startswith("Timeout"):
        return f"{found.place} {text}{found.call()}", found
    return f"{text} in {found.place}{found.call(', ')}", found


def _ended(status: int | None) -> str:
    """How a worker with exit status ``status`` (negative: the signal that killed it) ended."""
    if status is None:
        return "ended"
    if status >= 0:
        return f"exited with status {status}"
    try:
        ended = f"killed by {signal.Signals(-status).name}"
    except ValueError:
        ended = f"killed by signal {-status}"
    return ended + (" (the kernel's out-of-memory killer, or a kill)" if -status == signal.SIGKILL else "")


# --- The recognisers of the errata, bounded (and, under xdist, apart) ----------------------------------
def recognise(erratum: str, module: ModuleType) -> str | None:
    """``errata.recognise(erratum, module)``, bounded in time; None where it did not return, exited
    or crashed (the failing tests say why).  Under pytest-xdist it runs in a forked process: the
    controller has not run the implementation's code, nor started torch's threads, before."""
    from tests.support import errata

    run_it = _in_child if _run is not None and _run.apart and hasattr(os, "fork") else _guarded
    return run_it(errata.recognise, erratum, module, label=f"the recogniser of {erratum}")


def _guarded(fn: Callable[..., Any], *args: Any, label: str) -> Any:
    if _timer is not None or threading.current_thread() is not threading.main_thread():
        return fn(*args)  # already bounded (or no signals here)
    _arm(_Timer(label, RECOGNISER_S, TIGHT_FLOOR_S, time.monotonic(), None, running=True))
    try:
        return fn(*args)
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt) and _sigint_received:
            raise
        return None
    finally:
        _disarm()


def _in_child(fn: Callable[..., Any], *args: Any, label: str) -> Any:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 0
        try:
            os.close(read)
            # What ends it (a fatal signal, the backstop) is no news for the terminal: None says it.
            faulthandler.disable()
            if _run is not None:
                _run.stderr = open(os.devnull, "w")  # noqa: SIM115 (the process ends with os._exit)
            import torch

            torch.set_num_threads(1)
            payload = pickle.dumps(_guarded(fn, *args, label=label))
            view = memoryview(payload)
            while view:
                view = view[os.write(write, view) :]
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    chunks = []
    deadline = time.monotonic() + 2 * RECOGNISER_S + 5
    try:
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([read], [], [], left)
            chunk = os.read(read, 1 << 16) if ready else b""
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    try:
        return pickle.loads(b"".join(chunks)) if chunks else None
    except Exception:
        return None
