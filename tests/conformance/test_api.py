"""API contract (spec section 1): names, signatures, module structure, parameter order."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from torch import nn

from tests.support import boundary, loader, models, premises


@pytest.mark.clause("API-1")
@pytest.mark.parametrize("name", loader.REQUIRED_NAMES)
def test_required_name_exists(impl, name):
    module = boundary.unchecked(impl)
    assert hasattr(module, name), f"the implementation lacks {name}"
    if name in loader.SIGNATURES:
        assert callable(getattr(module, name)), f"{name} is not callable"


@pytest.mark.clause("API-2")
@pytest.mark.parametrize("name", sorted(loader.SIGNATURES))
def test_signature_matches_tutorial(impl, name):
    module = boundary.unchecked(impl)
    if not callable(getattr(module, name, None)):
        pytest.skip(f"undecided: needs {name}, which the implementation lacks or cannot call (clause API-1)")
    params = list(inspect.signature(getattr(module, name)).parameters.values())
    problem = loader.signature_problem(module, name, params)
    assert problem is None, problem


# Calls with the tutorial's arguments (positional, in its order, at its defaults and beside them):
# every one must build.  Models are built on the meta device where they can be (only building is
# checked here; what they compute is every other clause's business).
VALID_CALLS: list[tuple[str, tuple[Any, ...]]] = [
    ("conv_block", (4, 8)),
    ("conv_block", (4, 8, 3, 2, 1, 4, True, False, False)),
    ("SEBlock", (8,)),
    ("SEBlock", (8, 2)),
    ("MBConv", (8, 8, 6)),
    ("MBConv", (8, 16, 1, 5, 2, 4, 0.2)),
    ("mbconv1", (8, 16)),
    ("mbconv6", (8, 16, 5, 2, 24, 0.0)),
    ("create_stage", (8, 16, 2)),
    ("scale_width", (32, 1.5)),
    ("efficientnet_scaler", (1.2, 1.4)),
    ("EfficientNet", (0.25, 0.34, 10)),
    ("EfficientNetSequential", (0.25, 0.34, 10)),
    ("efficientnet_b0", (10,)),
]
SCALED = {"EfficientNet": (0.25, 0.34), "EfficientNetSequential": (0.25, 0.34), "efficientnet_b0": (1.0, 1.0)}


@pytest.mark.clause("API-2")
@pytest.mark.parametrize(("name", "args"), VALID_CALLS, ids=[f"{n}{a}" for n, a in VALID_CALLS])
def test_callable_accepts_the_tutorials_arguments(impl, name, args):
    """A callable that refuses valid arguments fails here, once, and not in every test that builds.
    A network is built from the implementation's own scaling: that it agrees with the spec at
    these factors is a premise (a width rule that gives 0 channels, or never returns, is SCALE-1's, not
    API-2's), and so is the width rule the scaler rounds with."""
    if name in SCALED:
        premises.scaling(impl, *SCALED[name])
    elif name == "efficientnet_scaler":  # it rounds with scale_width: a width rule that never returns is SCALE-1's
        premises.width_rule(impl, args[0])
    call = getattr(impl, name)
    try:  # where only the meta device refuses it, the CPU call is the verdict
        models.call_on_meta_or_cpu(lambda: call(*args))
    except Exception as e:
        raise AssertionError(f"{name}{args} raised {type(e).__name__}: {loader.one_line(e)}") from e


@pytest.mark.clause("API-3")
def test_efficientnet_children_in_order(impl):
    model = impl.EfficientNet(0.25, 0.34, n_classes=5)
    names = [n for n, _ in model.named_children()]
    assert names == ["stem", "stages", "pre", "pool_flatten", "head"], f"children are {names}"
    assert len(model.stages) == 7, f"stages has {len(model.stages)} children, not 7"
    assert all(isinstance(s, nn.Module) and len(list(s.children())) >= 1 for s in model.stages)


@pytest.mark.clause("API-3")
def test_sequential_has_eleven_children(impl):
    model = impl.EfficientNetSequential(0.25, 0.34, n_classes=5)
    assert isinstance(model, nn.Sequential), f"EfficientNetSequential returned {type(model).__name__}"
    assert len(model) == 11, f"EfficientNetSequential has {len(model)} children, not 11"


@pytest.mark.clause("API-3")
@pytest.mark.parametrize("bn", [True, False])
@pytest.mark.parametrize("act", [True, False])
def test_conv_block_returns_a_sequential(impl, bn, act):
    """Only the form: what its layers compute, whatever their number and classes, is BLOCK-1's."""
    block = impl.conv_block(4, 8, bn=bn, act=act)
    assert isinstance(block, nn.Sequential), f"conv_block(4, 8, bn={bn}, act={act}) is a {type(block).__name__}"
