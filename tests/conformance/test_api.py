"""API contract (spec section 1): names, signatures, module structure, parameter order."""

from __future__ import annotations

import inspect

import pytest
from torch import nn

from tests.support import impl as impl_api


@pytest.mark.clause("API-1")
@pytest.mark.parametrize("name", impl_api.REQUIRED_NAMES)
def test_required_name_exists(impl, name):
    assert hasattr(impl, name), f"the implementation lacks {name}"


@pytest.mark.clause("API-2")
@pytest.mark.parametrize("name", sorted(impl_api.SIGNATURES))
def test_signature_matches_tutorial(impl, name):
    params = list(inspect.signature(getattr(impl, name)).parameters.values())
    problems = impl_api._signature_problems(impl, name, params, impl_api.SIGNATURES[name])
    assert not problems, problems[0]


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
