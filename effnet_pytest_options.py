"""The verification suite's command-line options, in one place.

Two ways in, one definition:

* installed with effnet (``pip install -e .``), this module is a pytest plugin (entry point
  ``pytest11``): pytest knows ``--impl`` before it has read any conftest, so that
  ``pytest --impl /path/to/fork.py`` typed in the repository root does not take the fork's path for
  a test path (which would root the run in the fork's folder and never load this suite);
* without the install (an interpreter that merely has the packages), ``tests/support/plugin.py``
  adds the same options when the root conftest loads it.

The installed plugin adds the options only when pytest runs from an effnet checkout, so that it
cannot collide with another project's options in the same environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

GROUP = "effnet"
DEFAULT_IMPL = "effnet"


def is_effnet_checkout(path: Path) -> bool:
    return (path / "tests" / "support" / "plugin.py").is_file() and (path / "spec" / "SPEC.md").is_file()


def add_options(parser: Any) -> None:
    """Add the suite's options to ``parser`` (a pytest.Parser), once."""
    group = parser.getgroup(GROUP, "EfficientNet verification")
    if any("--impl" in option.names() for option in group.options):
        return
    group.addoption(
        "--impl",
        default=os.environ.get("EFFNET_IMPL", DEFAULT_IMPL),
        help="implementation under test: a dotted module name or a path to a .py file "
        "(default: $EFFNET_IMPL or 'effnet')",
    )
    group.addoption(
        "--baseline",
        metavar="REF",
        default=os.environ.get("EFFNET_BASELINE"),
        help="refactor check: compare the implementation under test with a baseline, a git ref of this "
        "repository (its effnet/ at that commit) or another implementation (module name or .py path); "
        "default: $EFFNET_BASELINE, else no refactor check",
    )
    group.addoption(
        "--device",
        choices=("cpu", "cuda"),
        default=os.environ.get("EFFNET_DEVICE", "cpu"),
        help="device for model tests (default: $EFFNET_DEVICE or cpu)",
    )
    group.addoption("--report", metavar="PATH", help="write the per-clause report to PATH.json and PATH.md")
    group.addoption(
        "--xfails-file",
        metavar="FILE",
        help="clause IDs or test IDs (one per line) that the implementation is known to fail",
    )
    group.addoption(
        "--skips-file", metavar="FILE", help="clause IDs or test IDs (one per line) to skip for this implementation"
    )
    group.addoption(
        "--run-extras",
        action="store_true",
        help="also hold a fork to effnet's own extras (input validation, ...); always on for effnet",
    )


def pytest_addoption(parser: Any) -> None:
    if is_effnet_checkout(Path.cwd()):
        add_options(parser)
