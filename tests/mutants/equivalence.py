"""The named variants that the refactor check does not build, compared with the baseline's (REF-1).

REF-1 (tests/refactor) compares the implementation with its baseline at drawn small factors and at
B0-B2's, in eval and in a training step.  A change that only touches B3-B7, B8 or L2 (a factor or a
dropout rate in the variant table, a rounding that only their widths reach) passes it.  This module
closes that gap for the generated-mutant runner (tests/mutants/generate.py), which runs it beside
tests/refactor to decide whether a mutant is equivalent to effnet: every other named variant of
the baseline is built on the meta device (no memory, almost no time) by both, and
their layers compared in order: every parameter's and buffer's shape (API-4) and the
hyperparameters that decide what a layer computes (a dropout or drop-path probability, BatchNorm's
eps and momentum, a convolution's kernel, stride, padding and groups).  With the forward code
shared by every variant, and REF-1 passing on B0-B2 and drawn factors, equal layers mean the same
function.

It is not collected by `pytest tests` (the file name is not test_*.py): run it explicitly,
``pytest tests/refactor tests/mutants/equivalence.py --impl X --baseline Y``.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from tests.support import spec

pytestmark = pytest.mark.clause("REF-1")

BUILT_BY_REFACTOR_CHECK = ("b0", "b1", "b2")  # tests/refactor builds these in full
# Attributes that decide what a layer computes beyond its tensors' shapes.
HYPERPARAMETERS = ("p", "eps", "momentum", "kernel_size", "stride", "padding", "dilation", "groups")


def layers(model: nn.Module) -> list[tuple[str, Any]]:
    """What decides ``model``'s function besides its weights, in order: tensor shapes, then each
    layer's hyperparameters (module paths included, for the message only)."""
    described: list[tuple[str, Any]] = [(f"{name} shape", tuple(t.shape)) for name, t in model.state_dict().items()]
    for path, module in model.named_modules():
        for attr in HYPERPARAMETERS:
            value = getattr(module, attr, None)
            if isinstance(value, (bool, int, float, str, tuple)):
                described.append((f"{path or 'model'}.{attr}", value))
    return described


def first_difference(model: nn.Module, base: nn.Module) -> str | None:
    mine, theirs = layers(model), layers(base)
    for (where, value), (base_where, base_value) in zip(mine, theirs, strict=False):
        if value != base_value:
            return f"{where} is {value!r}, the baseline's {base_where} is {base_value!r}"
    if len(mine) != len(theirs):
        return f"{len(mine)} shapes and hyperparameters, the baseline has {len(theirs)}"
    return None


@pytest.mark.parametrize("name", [n for n in spec.variants() if n not in BUILT_BY_REFACTOR_CHECK])
def test_named_variant_has_the_baselines_layers(impl, baseline, name):
    factory = getattr(impl, f"efficientnet_{name}", None)
    base_factory = getattr(baseline.module, f"efficientnet_{name}", None)
    if factory is None and base_factory is None:
        pytest.skip(f"neither the implementation nor the baseline has efficientnet_{name}")
    if factory is None or base_factory is None:
        has = "the baseline" if factory is None else "the implementation"
        pytest.fail(f"only {has} has efficientnet_{name} ({baseline.description})", pytrace=False)
    with torch.device("meta"):
        model, base = factory(), base_factory()
    difference = first_difference(model, base)
    if difference is not None:
        pytest.fail(f"efficientnet_{name}() against {baseline.description}: {difference}", pytrace=False)
