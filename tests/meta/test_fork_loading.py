"""Loading a fork (tests/support/loader.py, plugin.py): one clear message, never a traceback.

A fork that cannot be imported (a syntax error, an exception or ``sys.exit`` at import, a missing
dependency) or defines no network constructor stops pytest in ``pytest_configure`` with one
``ERROR:`` message naming the problem and the exit status 4 (usage error), before any test runs,
also under pytest-xdist and through ``nox -s verify``.  A fork that lacks a required name (API-1) or
defines one with another signature (API-2) is judged on what it defines: API-1 or API-2 fails on
that name, the tests that need it are undecided, and every other clause is judged.  Optional parts
of the API (API-5, API-6, API-7) are skipped with a reason when a fork lacks them.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from tests.mutants import corpus
from tests.support import loader, subrun

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "effnet" / "model.py"
SELECTION = "tests/conformance/test_api.py"
USAGE_ERROR = 4  # pytest.ExitCode.USAGE_ERROR


def fork(tmp_path: Path, name: str, old: str, new: str) -> Path:
    """A copy of effnet/model.py with one text replaced (the text must occur exactly once)."""
    text = SOURCE.read_text()
    assert text.count(old) == 1, f"effnet/model.py no longer contains {old!r} exactly once: update this test"
    path = tmp_path / f"{name}.py"
    path.write_text(text.replace(old, new))
    return path


def run(*args: str, selection: tuple[str, ...] = (SELECTION,)) -> tuple[int, str]:
    """``python -m pytest SELECTION -p no:cacheprovider ARGS`` (forked from subrun's preloaded server)."""
    env = {k: v for k, v in os.environ.items() if k not in ("EFFNET_IMPL", "PYTEST_ADDOPTS")}
    result = subrun.pytest([*selection, "-p", "no:cacheprovider", *args], env=env, cwd=ROOT, timeout=300)
    return result.returncode, result.stdout + result.stderr


# name -> (old text, new text, the message expected, as a regex; {path} is the fork's path)
BROKEN = {
    "syntax_error": (
        "def scale_width(w: float, w_factor: float) -> int:",
        "def scale_width(w: float, w_factor: float) -> int",
        r"cannot test the implementation: --impl {path}: SyntaxError in {path}, line \d+: expected ':'",
    ),
    # The next three break before the fork imports torch: no need to pay for it.
    "raises_at_import": (
        "import math\n",
        "import math\n\nDEFAULT_FACTORS = {'b0': (1.0, 1.0)}\nDEFAULT = DEFAULT_FACTORS['b9']\n",
        r"--impl {path}: importing it raised KeyError: 'b9' \(at {path}, line \d+\)",
    ),
    "missing_dependency": (
        "import math\n",
        "import math\nimport efficientnet_helpers_not_installed\n",
        r"--impl {path}: it imports 'efficientnet_helpers_not_installed', which is not installed",
    ),
    "exits_at_import": (
        "import math\n",
        "import math\nimport sys\nsys.exit('no GPU found')\n",
        r"--impl {path}: importing it raised SystemExit: no GPU found \(at {path}, line \d+\)",
    ),
}


def assert_one_clear_message(returncode: int, output: str, pattern: str) -> None:
    assert returncode == USAGE_ERROR, f"exit status {returncode}, not {USAGE_ERROR} (usage error):\n{output}"
    assert re.search(pattern, output), f"the message does not match {pattern!r}:\n{output}"
    assert "Traceback" not in output, f"a traceback was printed:\n{output}"
    assert 'File "' not in output, f"a traceback was printed:\n{output}"
    errors = [line for line in output.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1, f"{len(errors)} ERROR lines instead of one:\n{output}"
    assert not re.search(r"\d+ (passed|failed)", output), f"tests ran:\n{output}"


# name -> (old text, new text, the root cause, its message as a regex): a verdict, API-1 or API-2 its
# only failed clause, the tests that need the name undecided.
PARTIAL = {
    "missing_sequential": (
        "def EfficientNetSequential(",
        "def EfficientNetAsSequential(",
        "API-1",
        r"test_required_name_exists\[EfficientNetSequential\]: AssertionError: the implementation lacks "
        "EfficientNetSequential",
    ),
    "scale_width_swapped": (
        "def scale_width(w: float, w_factor: float) -> int:",
        "def scale_width(w_factor: float, w: float) -> int:",
        "API-2",
        r"scale_width\(w_factor, w\) does not match the required signature scale_width\(w, w_factor\)",
    ),
}


@pytest.mark.parametrize("name", sorted(PARTIAL))
def test_fork_lacking_part_of_the_api_gets_a_verdict_on_the_rest(tmp_path: Path, name: str) -> None:
    old, new, root, pattern = PARTIAL[name]
    path = fork(tmp_path, name, old, new)
    returncode, output = run("--impl", str(path))
    assert returncode == 1, f"exit status {returncode}, not 1 (tests failed):\n{output}"
    assert re.search(rf"^root cause {root} \(.*{pattern}", output, re.M), output
    assert re.search(rf"verdict: .* does NOT conform: 1 of \d+ clauses failed \({root}\)", output), output
    assert "undecided: needs " in output, f"no test was left undecided for the missing name:\n{output}"


def test_fork_without_a_network_constructor_gets_one_clear_message(tmp_path: Path) -> None:
    names = ", ".join(loader.NETWORK_CONSTRUCTORS)
    path = tmp_path / "no_network.py"
    path.write_text(f"{SOURCE.read_text()}\n\ndel {names}\n")
    returncode, output = run("--impl", str(path))
    pattern = rf"--impl {re.escape(str(path))} is not the EfficientNet API: it defines no network constructor"
    assert_one_clear_message(returncode, output, pattern)


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_fork_gets_one_clear_message(tmp_path: Path, name: str) -> None:
    old, new, pattern = BROKEN[name]
    path = fork(tmp_path, name, old, new)
    returncode, output = run("--impl", str(path))
    assert_one_clear_message(returncode, output, pattern.format(path=re.escape(str(path))))


def test_broken_fork_gets_one_clear_message_under_xdist(tmp_path: Path) -> None:
    old, new, pattern = BROKEN["syntax_error"]
    path = fork(tmp_path, "syntax_error", old, new)
    returncode, output = run("--impl", str(path), "-n", "2")
    assert_one_clear_message(returncode, output, pattern.format(path=re.escape(str(path))))


def test_broken_fork_gets_one_clear_message_through_nox(tmp_path: Path) -> None:
    if importlib.util.find_spec("nox") is None:
        pytest.skip("nox is not installed in this environment")
    old, new, pattern = BROKEN["syntax_error"]
    path = fork(tmp_path, "syntax_error", old, new)
    command = [sys.executable, "-m", "nox", "-s", "verify", "--", "--impl", str(path)]
    env_python = {"EFFNET_PYTHON": sys.executable}  # the running interpreter: no environment to build
    result = subprocess.run(
        command, cwd=ROOT, env={**os.environ, **env_python}, capture_output=True, text=True, timeout=300, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"nox -s verify passed on a fork with a syntax error:\n{output}"
    assert re.search(pattern.format(path=re.escape(str(path))), output), output
    assert "exit code 4" in output, f"pytest did not stop with a usage error:\n{output}"
    assert "Traceback" not in output, f"a traceback was printed:\n{output}"


@pytest.mark.parametrize(
    ("spec", "pattern"),
    [
        ("no/such/fork.py", r"--impl no/such/fork.py: no such file"),
        ("no_such_effnet_fork", r"--impl no_such_effnet_fork: no module named 'no_such_effnet_fork'"),
    ],
)
def test_missing_fork_gets_one_clear_message(spec: str, pattern: str) -> None:
    returncode, output = run("--impl", spec)
    assert_one_clear_message(returncode, output, pattern)


def test_impl_path_outside_the_repository_as_first_typed(tmp_path: Path) -> None:
    """`pytest --impl /abs/path/fork.py` from the repository root, no test path: pytest must not take
    the fork's path for a test path (which roots the run in the fork's folder, without this suite).
    The suite's options are known before any conftest loads through effnet's pytest11 entry point."""
    if not any(ep.name == "effnet" for ep in importlib.metadata.entry_points(group="pytest11")):
        pytest.skip("effnet is not installed in this environment (pip install -e .): no pytest11 entry point")
    path = tmp_path / "outside" / "my_effnet.py"
    path.parent.mkdir()
    path.write_text(SOURCE.read_text())
    returncode, output = run("--impl", str(path), "-k", "test_signature_matches_tutorial and b0", selection=())
    assert returncode == 0, f"exit status {returncode}:\n{output}"
    assert f"EfficientNet conformance: {path}" in output, output
    assert re.search(r"API-2\s+passed", output), output


# --- Optional parts of the API ----------------------------------------------------------------
def test_minimal_fork_loads_and_lacks_every_optional_feature(tmp_path: Path) -> None:
    """The corpus' `minimal-api` variation (the tutorial's API only) is a valid fork without them."""
    minimal = next(f for f in corpus.load() if f.name == "minimal-api")
    path = corpus.write(minimal, corpus.build(minimal, SOURCE.read_text()), tmp_path)
    module = loader.load(str(path))
    assert loader.api_problems(module) == []
    for feature in loader.OPTIONAL_FEATURES:
        assert loader.optional_missing(module, feature), f"the minimal fork is said to have {feature}"


def test_effnet_has_every_optional_feature() -> None:
    module = loader.load("effnet")
    for feature in [*loader.OPTIONAL_FEATURES, "EfficientNet(drop_rate)", "efficientnet_b3(drop_path_rate)"]:
        assert loader.optional_missing(module, feature) is None, feature


def _fake(**attrs: object) -> ModuleType:
    module = ModuleType("fake_fork")
    module.__dict__.update(attrs)
    return module


def test_require_optional_skips_naming_the_clause() -> None:
    with pytest.raises(
        pytest.skip.Exception,
        match=r"optional clause API-5 \(Larger variants\) not implemented: "
        r"it has no efficientnet_b8",
    ):
        loader.require_optional(_fake(), "efficientnet_b8")
    with pytest.raises(pytest.skip.Exception, match=r"API-6 .*it has no EfficientNet.forward_stages"):
        loader.require_optional(_fake(EfficientNet=SimpleNamespace()), "EfficientNet.forward_stages")

    def without_kwargs(w_factor: float = 1, d_factor: float = 1, n_classes: int = 1000) -> None: ...

    with pytest.raises(pytest.skip.Exception, match=r"API-7 .*EfficientNet accepts no keyword argument 'drop_rate'"):
        loader.require_optional(_fake(EfficientNet=without_kwargs), "EfficientNet(drop_rate)")


def test_require_optional_returns_the_feature() -> None:
    def b8(n_classes: int = 1000) -> str:
        return "b8"

    def with_kwargs(w_factor: float = 1, *, drop_rate: float = 0.2) -> None: ...

    assert loader.require_optional(_fake(efficientnet_b8=b8), "efficientnet_b8") is b8
    assert loader.require_optional(_fake(EfficientNet=with_kwargs), "EfficientNet(drop_rate)") is with_kwargs


def test_require_optional_refuses_a_required_clause() -> None:
    # A test must not be able to skip a required clause by calling it optional.
    with pytest.raises(ValueError, match="not an optional clause"):
        loader.require_optional(_fake(), "EfficientNetSequential", clause="API-1")
    with pytest.raises(ValueError, match="not an optional clause"):
        loader.require_optional(_fake(), "efficientnet_b9")


# --- A crash in torch.compile's child process -------------------------------------------------
CRASHING_BLOCK = """import os, signal, sys
from effnet.model import *  # noqa: F403
from effnet import model as _effnet


class MBConv(_effnet.MBConv):
    def __init__(self, n_in, n_out, expansion, kernel_size=3, stride=1, r=24, dropout=0.1):
        super().__init__(n_in, n_out, expansion, kernel_size, stride, r, dropout)
        if sys.argv[0].endswith("inductor_block.py"):  # only in the inductor test's own process
            os.kill(os.getpid(), signal.SIGSEGV)
"""


def test_a_crash_in_the_inductor_process_fails_that_test_with_its_signal_and_stack(tmp_path):
    """EXT-4's inductor check runs the compiled block in a process of its own: a fatal signal there
    is that test's failure, naming the signal and the Python stack where it struck, not a lost
    xdist worker."""
    path = tmp_path / "crashing_block.py"
    path.write_text(CRASHING_BLOCK)
    selection = ("tests/extras/test_deployment.py",)
    code, out = run("--impl", str(path), "--run-extras", "-k", "inductor", selection=selection)
    assert code == 1, out
    assert "its process died of SIGSEGV" in out, out
    assert re.search(r'File ".*crashing_block\.py", line 10 in __init__', out), out


def test_the_inductor_cache_is_kept_apart_per_cpu_capability():
    """torch's inductor cache reuses code generated for another ATEN_CPU_CAPABILITY (8-float vectors
    stored into by 16-float ones: a crash or NaN, tests/extras/inductor_block.py), so the child keys
    its directory by the capability, also under a cache directory the user set."""
    from tests.extras.inductor_block import cache_dir

    dirs = {cache_dir({"ATEN_CPU_CAPABILITY": c}) for c in ("avx2", "avx512", "default")}
    dirs.add(cache_dir({}))
    assert len(dirs) == 4, dirs
    assert cache_dir({"ATEN_CPU_CAPABILITY": ""}) == cache_dir({})
    mine = cache_dir({"TORCHINDUCTOR_CACHE_DIR": "/somewhere", "ATEN_CPU_CAPABILITY": "avx2"})
    assert mine.startswith("/somewhere/")
    assert mine != cache_dir({"TORCHINDUCTOR_CACHE_DIR": "/somewhere"})
