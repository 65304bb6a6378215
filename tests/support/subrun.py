"""pytest runs in a child process, forked from a server that has imported torch, timm and torchvision
once.

The meta-tests run pytest end to end (a broken fork's message, the report file, ID files, the
refactor check) and the mutant runners run the conformance suite once per fork.  A fresh
interpreter spends most of a short run importing torch, timm and torchvision; a child forked from a
multiprocessing forkserver that imported them already starts in milliseconds.  The child is an
ordinary pytest run: its environment is the one given (replacing the server's), its working
directory and ``sys.path[0]`` are ``cwd`` (as with ``python -m pytest``), its output goes to files
read back afterwards, and it exits with pytest's status.

What the server cannot change after its imports is settled by the environment it started with:
a run whose environment sets an import-time variable (``IMPORT_TIME``) to another value than the
server had runs as a plain subprocess instead.  ``EFFNET_NO_PRELOAD=1`` makes every run a plain
subprocess (for checking that the two agree).  Windows has no forkserver: plain subprocesses there.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from multiprocessing.context import BaseContext
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRELOAD = ["torch", "timm", "torchvision", "hypothesis", "numpy", "pytest", "xdist"]
# With ``warm``, the server also imports tests/support/warm.py, which does the reference work that
# depends on nothing of the implementation once, where every whole conformance run forked from it
# would do it again.  A sweep of at least this many whole runs asks for it.
WARM = "tests.support.warm"
WARM_PAYS_FROM = 4
# Read once, when torch (or Python) starts: a child of the server cannot take another value.
IMPORT_TIME = ("ATEN_CPU_CAPABILITY", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "PYTHONPATH", "PYTHONHASHSEED")


def preload_context(no_preload: bool = False, warm: bool = False) -> BaseContext | None:
    """The forkserver that imports PRELOAD (with ``warm`` also WARM) once, from which each run is forked
    (it starts with the first run; a process has one, whose first caller chooses); None (plain
    subprocesses) with ``no_preload``, with ``EFFNET_NO_PRELOAD=1`` or where there is no forkserver."""
    if no_preload or os.environ.get("EFFNET_NO_PRELOAD") == "1":
        return None
    if "forkserver" not in multiprocessing.get_all_start_methods():  # not on Windows
        return None
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([*PRELOAD, *([WARM] if warm else [])])
    return context


# The server imported pytest's plugins (xdist, hypothesis, and anyio through timm) before pytest could
# rewrite their own assert statements: the only difference from a fresh interpreter, and pytest warns
# about it in every run.  Silenced; the suite's modules are imported (and rewritten) in the child.
_IMPORTED_PLUGINS = "ignore:Module already imported so cannot be rewritten:pytest.PytestAssertRewriteWarning"


def _child(args: list[str], out: str, err: str, env: dict[str, str], cwd: str) -> None:
    """In a process forked from the server: ``pytest ARGS`` in ``cwd`` with exactly ``env``, its
    standard output and error in the files ``out`` and ``err`` (the same file for both is allowed).

    First the heap the server handed down is frozen (gc.freeze): what the server holds (torch, timm,
    torchvision, a warm server's prepared references) is read by the run, never freed; out of the
    collector's reach, the run's garbage collections neither walk those objects nor write to their
    pages (each write copies a page out of the server's memory)."""
    gc.freeze()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    sys.path.insert(0, cwd)  # as `python -m pytest` does
    sys.stdout.flush()
    sys.stderr.flush()
    out_fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    err_fd = out_fd if err == out else os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(out_fd, 1)
    os.dup2(err_fd, 2)
    if "OMP_NUM_THREADS" in env:  # read by torch at import, which the server did with its own value
        import torch

        torch.set_num_threads(int(env["OMP_NUM_THREADS"]))
    import pytest

    try:
        code = int(pytest.main([*args, "-W", _IMPORTED_PLUGINS]))
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 3
    sys.stdout.flush()
    sys.stderr.flush()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    # The status and CPU time, written by the run itself: the forkserver's report of a child's status
    # is lost when the server ends first (Process.exitcode is then 255; CPython issue 140867).
    # Written whole, then renamed into place: a reader never sees the file created but not yet written.
    exit_file = Path(out).with_suffix(".exit")
    partial = exit_file.with_suffix(".exit-partial")
    partial.write_text(f"{code} {usage.ru_utime + usage.ru_stime:.2f}")
    os.replace(partial, exit_file)
    os._exit(code)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):  # PermissionError: the number is another user's now
        return False
    return True


def _status_written(exit_file: Path, pid: int, deadline: float) -> tuple[int, float] | None:
    """The status and CPU time that the run forked from the server wrote on its way out, waiting (until
    ``deadline``) while it still runs; None when it ended without writing them."""
    while True:
        if exit_file.exists():
            code, cpu = exit_file.read_text().split()
            return int(code), float(cpu)
        if not _alive(pid) or time.monotonic() > deadline:
            return None
        time.sleep(0.05)


def run_pytest_to(
    args: list[str],
    out: Path,
    env: Mapping[str, str],
    timeout: float | None,
    preload: BaseContext | None,
    cwd: Path = ROOT,
    err: Path | None = None,
) -> tuple[int | None, float, float | None]:
    """``pytest ARGS`` with exactly ``env``, its output in ``out`` (standard error in ``err``, by
    default also ``out``): forked from ``preload``'s server, or a plain subprocess.  Returns the exit
    status (None: killed after ``timeout`` seconds), the wall time and the run's CPU time (None when
    unknown)."""
    err = err or out
    start = time.perf_counter()
    if preload is not None and all(env.get(k) == os.environ.get(k) for k in IMPORT_TIME):
        exit_file = out.with_suffix(".exit")
        exit_file.unlink(missing_ok=True)
        process = preload.Process(target=_child, args=(args, str(out), str(err), dict(env), str(cwd)))
        process.start()
        deadline = time.monotonic() + (timeout if timeout is not None else float("inf"))
        process.join(timeout)
        returncode: int | None
        if process.is_alive():
            process.kill()
            process.join()
            return None, time.perf_counter() - start, None
        returncode = process.exitcode
        # What the run wrote decides; the server's report only where the run wrote nothing (a crash).
        # With the server gone the run may still be going on, orphaned: it is waited for.
        assert process.pid is not None
        written = _status_written(exit_file, process.pid, deadline)
        if written is not None:
            return written[0], time.perf_counter() - start, written[1]
        if _alive(process.pid):  # orphaned, past the deadline
            os.kill(process.pid, signal.SIGKILL)
            return None, time.perf_counter() - start, None
        return returncode, time.perf_counter() - start, None
    with open(out, "w") as out_file, open(err, "a") as err_file:
        command = [sys.executable, "-m", "pytest", *args]
        stderr = subprocess.STDOUT if err == out else err_file
        try:
            done = subprocess.run(command, cwd=cwd, env=dict(env), stdout=out_file, stderr=stderr, timeout=timeout)
            returncode = done.returncode
        except subprocess.TimeoutExpired:
            returncode = None
    return returncode, time.perf_counter() - start, None


def one_thread_under_xdist(env: dict[str, str]) -> dict[str, str]:
    """``env`` with OMP_NUM_THREADS=1 (unless it sets it) when called from an xdist worker: the worker
    owns one core while the other workers keep theirs busy, and a child on torch's default of one thread
    per core (or a runner's ``cpu_count // jobs``) oversubscribes them; OpenMP's threads spin, and the
    run takes many times as long."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        env.setdefault("OMP_NUM_THREADS", "1")
    return env


def pytest(
    args: list[str], env: Mapping[str, str] | None = None, cwd: Path = ROOT, timeout: float = 300, preload: bool = True
) -> subprocess.CompletedProcess[str]:
    """``python -m pytest ARGS`` as ``subprocess.run(..., capture_output=True, text=True)`` would
    give it, from the preloaded server (multiprocessing's forkserver, started with the first call; a plain subprocess
    with ``preload=False``).  Raises ``subprocess.TimeoutExpired`` after ``timeout`` seconds, as
    subprocess.run does."""
    env = one_thread_under_xdist(dict(os.environ if env is None else env))
    with tempfile.TemporaryDirectory(prefix="effnet-subrun-") as tmp:
        out, err = Path(tmp) / "stdout.txt", Path(tmp) / "stderr.txt"
        err.touch()
        returncode, _, _ = run_pytest_to(args, out, env, timeout, preload_context(not preload), cwd, err)
        stdout = out.read_text(errors="replace") if out.exists() else ""
        stderr = err.read_text(errors="replace")
    command = [sys.executable, "-m", "pytest", *args]
    if returncode is None:
        raise subprocess.TimeoutExpired(command, timeout, output=stdout, stderr=stderr)
    return subprocess.CompletedProcess(command, returncode, stdout, stderr)
