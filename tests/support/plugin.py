"""pytest plugin of the verification suite: options and loading.  The suite's options, the
implementation under test (loaded once; a fork that does not import or lacks the API is one
message before any test runs), the markers, and each test's clause IDs and their traceability.

The other concerns (id files, the report, the refactor check's baseline) are plugin modules of their
own, registered beside this one by the root conftest.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import effnet_pytest_options
from tests.support import loader, spec


# --- Options -------------------------------------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    # One definition (effnet_pytest_options.py); already added when effnet is installed and pytest
    # runs from the checkout (its pytest11 entry point), added here otherwise.
    effnet_pytest_options.add_options(parser)


# --- Configuration: load the implementation once, fail with one clear message -------
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "clause(*ids): the spec clauses (spec/SPEC.md) a test checks")
    config.addinivalue_line("markers", "extra: a test of effnet's own extras, not of the EfficientNet spec")
    config.addinivalue_line("markers", "slow: large models or resolutions; deselect with -m 'not slow'")
    config.addinivalue_line("markers", "cuda: needs a CUDA device")
    config.addinivalue_line("markers", "property: a hypothesis property (set for every @given test)")
    config.addinivalue_line("markers", "long: minutes in one test; started first, so that the rest runs beside it")

    device = config.getoption("--device")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise pytest.UsageError("--device cuda: no CUDA device is available (torch.cuda.is_available() is False)")

    name = config.getoption("--impl")
    try:
        module = loader.load(name)
    except loader.ImplError as e:
        raise pytest.UsageError(f"cannot test the implementation: {e}") from None
    refused = loader.no_network(module)
    if refused:
        raise pytest.UsageError(f"--impl {name} is not the EfficientNet API: {refused}")
    config.stash[IMPL_KEY] = module
    config.stash[UNUSABLE_KEY] = loader.unusable(module)


IMPL_KEY = pytest.StashKey[ModuleType]()
UNUSABLE_KEY = pytest.StashKey[dict[str, str]]()  # API names the fork lacks or defines otherwise: why


EXTRAS_DIR = Path(__file__).resolve().parents[1] / "extras"


@pytest.fixture(scope="module")
def impl(request: pytest.FixtureRequest, pytestconfig: pytest.Config) -> ModuleType:
    """The implementation under test (``--impl``): a module with the tutorial's API, seen through
    tests/support/boundary.py (what its constructors and their modules return is checked where it
    enters the suite, under the clause that defines it).  effnet's extras (tests/extras) get the
    module as it is: a forward hook would change what they measure (EXT-6 counts the operators a
    forward dispatches; TorchScript compiles a module's hooks)."""
    module = pytestconfig.stash[IMPL_KEY]
    if Path(str(request.node.path)).resolve().is_relative_to(EXTRAS_DIR):
        return module
    from tests.support import boundary

    return boundary.checked(module, pytestconfig.stash[UNUSABLE_KEY])


@pytest.fixture(scope="session")
def device(pytestconfig: pytest.Config) -> Any:
    import torch

    return torch.device(pytestconfig.getoption("--device"))


@pytest.fixture(autouse=True)
def float32_footing(pytestconfig: pytest.Config) -> Iterator[None]:
    """With ``--device cuda``, TF32 off for cuDNN and matmul while each test runs, the previous
    settings restored after it: float32 means float32 on every device (tests/support/devices.py)."""
    if pytestconfig.getoption("--device") != "cuda":
        yield
        return
    from tests.support import devices

    with devices.no_tf32():
        yield


# --- Collection: clause markers and traceability, effnet's extras ----------------------
def item_clauses(item: pytest.Item) -> list[str]:
    """The clauses a test cites: the arguments of its ``clause`` markers."""
    return [c for m in item.iter_markers("clause") for c in m.args]


def pytest_itemcollected(item: pytest.Item) -> None:
    if getattr(getattr(item, "obj", None), "is_hypothesis_test", False):
        item.add_marker(pytest.mark.property)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    known = spec.clauses()
    unknown = []
    conformance_dir = Path(__file__).resolve().parents[1] / "conformance"
    for item in items:
        ids = item_clauses(item)
        for c in ids:
            if c not in known:
                unknown.append(f"{item.nodeid} cites clause {c!r}, which spec/SPEC.md does not define")
        if not ids and Path(str(item.path)).resolve().is_relative_to(conformance_dir):
            unknown.append(f"{item.nodeid} is a conformance test without a @pytest.mark.clause(...) marker")
    if unknown:
        raise pytest.UsageError("clause traceability:\n  " + "\n  ".join(unknown))
    default = config.stash[IMPL_KEY].__name__ == effnet_pytest_options.DEFAULT_IMPL
    run_extras = default or config.getoption("--run-extras")
    for item in items:
        if item.get_closest_marker("extra") and not run_extras:
            item.add_marker(pytest.mark.skip(reason="effnet extra: run with --run-extras to hold a fork to it"))
    items[:] = long_tests_first(items, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))


def long_tests_first(items: list[pytest.Item], workers: int) -> list[pytest.Item]:
    """The tests of minutes (marker ``long``) first, one per worker: at the end of the run, with
    nothing left to steal, one of them would keep a worker busy while the others idle.  pytest-xdist's
    `worksteal` hands worker i the i-th of ``workers`` contiguous shares of this order (the first
    len // workers tests, then the next share of the rest, ...), so each long test opens a share."""
    n = max(workers, 1)
    long = [item for item in items if item.get_closest_marker("long")]
    rest = [item for item in items if not item.get_closest_marker("long")]
    order: list[pytest.Item] = []
    remaining = len(items)
    for worker in range(n):
        size = remaining // (n - worker)
        remaining -= size
        share = long[worker::n]
        take = max(size - len(share), 0)
        order += share + rest[:take]
        rest = rest[take:]
    return order + rest
