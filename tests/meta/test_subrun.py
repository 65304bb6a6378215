"""tests/support/subrun.py: a pytest run forked from the preloaded server is the run a fresh
``python -m pytest`` would be (the same exit status and output, exactly the given environment and
working directory), and a run past its timeout raises as subprocess.run does."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support import subrun

CHECK_ENV = """
import os, sys

def test_environment_and_directory():
    assert os.environ.get("EFFNET_SUBRUN_PROBE") == "given"
    assert "EFFNET_SUBRUN_ABSENT" not in os.environ
    assert os.getcwd() == sys.path[0] == {cwd!r}

def test_fails():
    print("to stdout")
    assert 1 == 2
"""


def _probe(tmp_path: Path) -> Path:
    path = tmp_path / "test_probe.py"
    path.write_text(textwrap.dedent(CHECK_ENV.format(cwd=str(tmp_path))))
    return path


def _without_times(output: str) -> str:
    return re.sub(r"in [\d.]+s", "in Ns", output)


def test_a_forked_run_is_a_fresh_interpreters_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if subrun.preload_context() is None:
        pytest.skip("no forkserver on this platform (or EFFNET_NO_PRELOAD=1): every run is a plain subprocess")
    _probe(tmp_path)
    monkeypatch.setenv("EFFNET_SUBRUN_ABSENT", "set in the parent only")
    env = {k: v for k, v in os.environ.items() if k not in ("EFFNET_SUBRUN_ABSENT", "PYTEST_ADDOPTS")}
    env["EFFNET_SUBRUN_PROBE"] = "given"
    args = ["-p", "no:cacheprovider", "-q", "--rootdir", str(tmp_path), "test_probe.py"]
    forked = subrun.pytest(args, env=env, cwd=tmp_path, timeout=120)
    plain = subrun.pytest(args, env=env, cwd=tmp_path, timeout=120, preload=False)
    assert forked.returncode == plain.returncode == 1, forked.stdout + forked.stderr
    assert "1 failed, 1 passed" in forked.stdout, forked.stdout
    assert _without_times(forked.stdout) == _without_times(plain.stdout)


def test_a_run_past_its_timeout_raises_timeout_expired(tmp_path: Path) -> None:
    (tmp_path / "test_sleeps.py").write_text("import time\n\ndef test_sleeps():\n    time.sleep(60)\n")
    args = ["-p", "no:cacheprovider", "-q", "--rootdir", str(tmp_path), "test_sleeps.py"]
    with pytest.raises(subprocess.TimeoutExpired):
        subrun.pytest(args, cwd=tmp_path, timeout=2)


OUTLIVES_THE_SERVER = """
import multiprocessing, multiprocessing.forkserver, os, signal, sys, threading, time
from pathlib import Path
sys.path.insert(0, {root!r})
from tests.support import subrun

def end_the_server():
    time.sleep(1.5)  # the run has started (it sleeps 3 s)
    os.kill(multiprocessing.forkserver._forkserver._forkserver_pid, signal.SIGKILL)

threading.Thread(target=end_the_server).start()
env = {{k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "PYTEST_ADDOPTS")}}
args = ["-p", "no:cacheprovider", "-q", "test_slow.py"]
server = multiprocessing.get_context("forkserver")
code, _, cpu = subrun.run_pytest_to(args, Path("out.txt"), env, 60, server, Path.cwd())
print(code, cpu is not None)
"""


def test_a_run_that_outlives_the_forkserver_keeps_its_own_status(tmp_path: Path) -> None:
    """The server that forks the runs can end while a run goes on (killed, or under load: CPython issue
    140867), and multiprocessing then reports 255 for the run (seen in CI for a mutant whose run had
    ended normally).  The status is the one the run wrote, after it has ended."""
    test = "import time\n\ndef test_slow_then_fails():\n    time.sleep(3)\n    assert False\n"
    (tmp_path / "test_slow.py").write_text(test)
    script = OUTLIVES_THE_SERVER.format(root=str(subrun.ROOT))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.stdout.split() == ["1", "True"], result.stdout + result.stderr
