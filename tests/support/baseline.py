"""The baseline of the refactor check (clause REF-1, option ``--baseline REF``).

REF is either a git revision of this checkout (``main``, ``HEAD~3``, a tag or a commit): its
``effnet/`` is extracted with ``git archive`` into a temporary folder and imported as a package
under a name of its own, so that it lives beside the implementation under test in the same
process; or another implementation (a module name or a ``.py`` path), loaded as ``--impl`` is.
A git revision wins when a name is both.

This module is also a pytest plugin (registered by the root conftest): it loads the baseline once
per process in ``pytest_configure``, so that a bad REF stops the run with one usage error before
any test runs, and it offers the ``baseline`` fixture, which skips REF-1's tests when no baseline
was given.
"""

from __future__ import annotations

import atexit
import importlib.util
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support import loader
from tests.support.plugin import item_clauses

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "effnet"  # the folder of the checkout that a git revision's baseline is taken from
NO_BASELINE = (
    "refactor check (REF-1) not requested: run with --baseline REF (a git revision of this checkout such as "
    "main or HEAD~1, or another implementation: a module name or a .py path)"
)


class BaselineError(Exception):
    """The baseline cannot be loaded; the message (one line) says why."""


@dataclass(frozen=True)
class Baseline:
    ref: str  # as the user wrote it
    description: str  # what it resolved to, for messages: "git main (3f2c1ab)" or "module mypkg.effnet"
    module: ModuleType


def resolve(ref: str, root: Path = ROOT) -> Baseline:
    """The baseline named by ``ref``: a git revision of ``root``'s repository, else a module name or .py path."""
    commit = git_commit(ref, root)
    if commit is not None:
        module = load_revision(ref, commit, root)
        description = f"git {ref} ({commit[:10]})"
    else:
        try:
            module = loader.load(ref)
        except loader.ImplError as e:
            message = str(e).removeprefix(f"--impl {ref}: ")
            if message.startswith("no module named") or message == "no such file":
                message = f"neither a git revision of {root} nor an importable module or .py file"
            raise BaselineError(f"--baseline {ref}: {message}") from None
        description = f"module {ref}" if not ref.endswith(".py") else f"file {ref}"
    refused = loader.no_network(module)
    if refused:
        raise BaselineError(f"--baseline {ref} ({description}) is not the EfficientNet API: {refused}")
    return Baseline(ref, description, module)


def git_commit(ref: str, root: Path = ROOT) -> str | None:
    """The commit ``ref`` names in ``root``'s repository, or None (not a revision, no git, no repository)."""
    if ref.startswith("-"):
        return None  # never let a REF become a git option
    command = ["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"]
    try:
        result = subprocess.run(command, cwd=root, capture_output=True, text=True, check=False)
    except OSError:  # git is not installed
        return None
    return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else None


_LOADED: dict[str, ModuleType] = {}


def load_revision(ref: str, commit: str, root: Path = ROOT) -> ModuleType:
    """Import ``effnet/`` as it is at ``commit`` as the package ``_effnet_baseline_<commit>``.

    effnet imports itself by absolute name (``from effnet.model import ...``), so while the
    revision's package executes, ``sys.modules["effnet"]`` is that package (the live entries are
    set aside and restored afterwards); its submodules are then filed under the unique name.  Its
    classes keep ``__module__ == "effnet.model"``: they are told apart by identity, not by name.
    """
    name = f"_effnet_baseline_{commit[:16]}"
    if name in _LOADED:
        return _LOADED[name]
    archive = subprocess.run(["git", "archive", "--format=tar", commit, PACKAGE], cwd=root, capture_output=True)
    if archive.returncode != 0:
        reason = " ".join(archive.stderr.decode(errors="replace").split())
        raise BaselineError(f"--baseline {ref}: commit {commit[:10]} has no {PACKAGE}/ folder ({reason})")
    folder = Path(tempfile.mkdtemp(prefix=f"effnet-baseline-{commit[:10]}-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: refuse links and paths out of the folder
            tar.extractall(folder, filter="data")
        else:  # the archive comes from this repository's own git
            tar.extractall(folder)
    init = folder / PACKAGE / "__init__.py"
    if not init.is_file():
        raise BaselineError(f"--baseline {ref}: {PACKAGE}/ at commit {commit[:10]} is not a package (no __init__.py)")
    module = _import_as(name, init, ref)
    _LOADED[name] = module
    return module


def _import_as(name: str, init: Path, ref: str) -> ModuleType:
    module_spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(init.parent)])
    if module_spec is None or module_spec.loader is None:
        raise BaselineError(f"--baseline {ref}: cannot import {init}")
    module = importlib.util.module_from_spec(module_spec)

    def own(key: str) -> bool:
        return key == PACKAGE or key.startswith(PACKAGE + ".")

    live = {key: sys.modules.pop(key) for key in list(sys.modules) if own(key)}
    sys.modules[name] = sys.modules[PACKAGE] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(name, None)
        raise BaselineError(
            f"--baseline {ref}: importing its {PACKAGE}/ raised {type(e).__name__}: {loader.one_line(e)}"
            f"{loader.raised_at(e)}"
        ) from None
    finally:
        for key in [key for key in sys.modules if own(key)]:
            submodule = sys.modules.pop(key)
            if key != PACKAGE:
                sys.modules[name + key[len(PACKAGE) :]] = submodule
        sys.modules.update(live)
    return module


# --- pytest plugin ------------------------------------------------------------------------
BASELINE_KEY = pytest.StashKey["Baseline | None"]()
SUMMARY_KEY = pytest.StashKey["ExactnessSummary"]()
# User properties of a passing REF-1 test: whether every comparison was bit-identical, and if not the
# comparison closest to its tolerance: (difference / tolerance, description).
EXACT = "refactor_bit_identical"
LARGEST = "refactor_largest_difference"


@dataclass
class ExactnessSummary:
    exact: int = 0
    rounded: int = 0
    largest: tuple[float, str] = (0.0, "")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """A hook of this object, registered as a plugin: in the controller under xdist too (the
        outcome travels in the report's user properties)."""
        properties = dict(report.user_properties)
        if EXACT not in properties or report.when != "call" or not report.passed:
            return
        if properties[EXACT]:
            self.exact += 1
            return
        self.rounded += 1
        ratio, where = properties[LARGEST]
        self.largest = max(self.largest, (float(ratio), str(where)))


def pytest_configure(config: pytest.Config) -> None:
    ref = config.getoption("--baseline", None)
    config.stash[SUMMARY_KEY] = ExactnessSummary()
    config.pluginmanager.register(config.stash[SUMMARY_KEY], "effnet-exactness-summary")
    config.stash[BASELINE_KEY] = None
    if ref:
        try:
            config.stash[BASELINE_KEY] = resolve(ref)
        except BaselineError as e:
            raise pytest.UsageError(f"cannot load the baseline: {e}") from None


@pytest.fixture(scope="session")
def baseline(pytestconfig: pytest.Config) -> Baseline:
    """The baseline of the refactor check; skips the test (REF-1) when --baseline is not given."""
    found = pytestconfig.stash.get(BASELINE_KEY, None)
    if found is None:
        pytest.skip(NO_BASELINE)
    return Baseline(found.ref, found.description, WhatItDefines(found.module))  # type: ignore[arg-type]


class WhatItDefines:
    """The baseline as REF-1's tests see it: a name of the tutorial's API that it lacks, or defines with
    another signature (``loader.unusable``), leaves the test that needs it undecided (a skip naming it), as
    the implementation's view does; any two implementations that define a network constructor compare."""

    def __init__(self, module: ModuleType) -> None:
        self._module = module
        self._unusable = loader.unusable(module)

    def __getattr__(self, name: str) -> Any:
        if why := self.__dict__["_unusable"].get(name):
            pytest.skip(f"undecided: the baseline cannot be compared without {name}: {why}")
        return getattr(self.__dict__["_module"], name)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    cited = {c for item in items for c in item_clauses(item)}
    if config.stash.get(BASELINE_KEY, None) is not None and "REF-1" not in cited:
        message = "--baseline is given, but no REF-1 test is selected (add tests/refactor)"
        warnings.warn(pytest.PytestWarning(message), stacklevel=1)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    found = config.stash.get(BASELINE_KEY, None)
    if hasattr(config, "workerinput") or found is None:
        return
    summary = config.stash[SUMMARY_KEY]
    line = f"refactor check against {found.description}: {summary.exact} passing REF-1 test(s) bit-identical"
    if summary.rounded:
        closest = summary.largest[1]
        line += f", {summary.rounded} equal only within rounding (closest to its tolerance: {closest})"
    terminalreporter.write_line(line, bold=True)
