"""The adapters of real implementations (tests/forks/torchvision_adapter.py,
tests/forks/efficientnet_pytorch_adapter.py) are the tutorial's API, so that their verdicts can be
regenerated (`python tests/forks/verdicts.py`).

A cheap subset: the API checks (API-1, API-2 at load) and one forward of a small model with the
tutorial's module structure.  The verdicts themselves take the whole conformance suite.  Where a
library is not installed, its adapter's tests skip and say so.
"""

from __future__ import annotations

import importlib.util
from types import ModuleType

import pytest
import torch
from torch import nn

from tests.forks import verdicts
from tests.support import loader

ADAPTERS = [pytest.param(lib, id=lib.name) for lib in verdicts.LIBRARIES.values()]


def _load(lib: verdicts.Library) -> ModuleType:
    if importlib.util.find_spec(lib.module) is None:
        pytest.skip(f"{lib.name} is not installed (pip install {lib.name}): its adapter {lib.adapter} cannot load")
    return loader.load(str(verdicts.ROOT / lib.adapter))


@pytest.mark.parametrize("lib", ADAPTERS)
def test_adapter_is_the_tutorials_api(lib: verdicts.Library) -> None:
    module = _load(lib)
    assert loader.api_problems(module) == [], f"{lib.adapter} is not the tutorial's API"


@pytest.mark.parametrize("lib", ADAPTERS)
def test_adapter_builds_a_small_model_in_the_tutorials_layout(lib: verdicts.Library) -> None:
    module = _load(lib)
    torch.manual_seed(0)
    model = module.EfficientNet(0.25, 0.34, 5).eval()
    assert [n for n, _ in model.named_children()] == ["stem", "stages", "pre", "pool_flatten", "head"]
    assert len(model.stages) == 7
    sequential = module.EfficientNetSequential(0.25, 0.34, 5)
    assert isinstance(sequential, nn.Sequential)
    assert len(sequential) == 11
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 64, 64))  # a size both libraries' padding handles
    assert logits.shape == (2, 5)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("lib", ADAPTERS)
def test_adapter_wraps_the_librarys_own_modules(lib: verdicts.Library) -> None:
    """Re-wiring, not re-implementing: the blocks of the model are the library's classes."""
    module = _load(lib)
    model = module.EfficientNet(0.25, 0.34, 5)
    kinds = {type(m).__module__.split(".")[0] for m in model.stages.modules() if not isinstance(m, nn.Sequential)}
    assert lib.module in kinds, f"{lib.adapter}: the stages hold no module of {lib.module} ({sorted(kinds)})"


def test_timm_adapter_is_timms_generator_in_the_tutorials_layout() -> None:
    """tests/forks/timm_adapter.py (not yet in verdicts.LIBRARIES): the tutorial's API, and
    `EfficientNet(w, d, n)` is timm's `_gen_efficientnet` at the same factors, tensor for tensor."""
    timm = pytest.importorskip("timm", reason="timm is not installed: tests/forks/timm_adapter.py cannot load")
    module = loader.load(str(verdicts.ROOT / "tests/forks/timm_adapter.py"))
    assert loader.api_problems(module) == []
    torch.manual_seed(0)
    model = module.EfficientNet(0.25, 0.34, 5).eval()
    assert [n for n, _ in model.named_children()] == ["stem", "stages", "pre", "pool_flatten", "head"]
    assert len(model.stages) == 7
    assert len(module.EfficientNetSequential(0.25, 0.34, 5)) == 11
    reference = timm.models.efficientnet._gen_efficientnet(
        "efficientnet_b0", channel_multiplier=0.25, depth_multiplier=0.34, num_classes=5
    ).eval()
    ours, theirs = model.state_dict(), reference.state_dict()
    assert [tuple(t.shape) for t in ours.values()] == [tuple(t.shape) for t in theirs.values()]
    model.load_state_dict(dict(zip(ours, theirs.values(), strict=True)))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))


@pytest.mark.parametrize("lib", ADAPTERS)
def test_shim_is_a_network_constructor_of_at_most_20_lines(lib: verdicts.Library) -> None:
    """The network protocol's smallest fork: the library's own constructors, nothing rebuilt."""
    if importlib.util.find_spec(lib.module) is None:
        pytest.skip(f"{lib.name} is not installed (pip install {lib.name})")
    path = verdicts.ROOT / lib.shim
    assert len(path.read_text().splitlines()) <= 20, f"{lib.shim} is longer than 20 lines"
    module = loader.load(str(path))
    assert loader.no_network(module) is None
    assert set(loader.NETWORK_CONSTRUCTORS) - set(loader.unusable(module)) >= {"EfficientNet", "efficientnet_b0"}
