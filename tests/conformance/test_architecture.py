"""Architecture against timm (spec section 2, API-4): for every variant, the output shape of the
stem, each stage, the head conv and the logits, and the ordered parameter and buffer shapes,
equal those of timm's ``efficientnet_bN``.

Both models run on the meta device (shapes without data), so B7 at 600 px costs about a second;
an implementation that cannot be built there is run with real weights instead.  The properties
of shapes for arbitrary inputs and factors are tested with hypothesis elsewhere; this module holds
the named variants to an independent implementation.
"""

from __future__ import annotations

import pytest
from torch import nn

from tests.support import reference, spec, torchutil

NAMED = spec.variants(include_optional=False)
OPTIONAL = [n for n in spec.variants() if n not in NAMED]  # b8, l2 (API-5): large, so slow
ALL = [*NAMED, *(pytest.param(n, marks=pytest.mark.slow) for n in OPTIONAL)]

# Odd and non-square: every stride-2 layer must round up (ceil(57/2) = 29), for H and W separately.
SMALL_INPUT = (2, 3, 57, 71)


def _shape_report(actual: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]]) -> str:
    rows = [f"  {k}: {actual.get(k)} (timm {v})" for k, v in expected.items() if actual.get(k) != v]
    return "\n".join(rows)


def _expected_toml_shapes(name: str) -> dict[str, tuple[int, ...]] | None:
    row = spec.expected().get("variants", {}).get(name)
    if row is None:
        return None
    stages = {f"stage {i}": tuple(s) for i, s in enumerate(row["stage_shapes"])}
    return {
        "stem": tuple(row["stem_shape"]),
        **stages,
        "head conv": tuple(row["head_shape"]),
        "logits": tuple(row["logits_shape"]),
    }


@pytest.mark.clause("ARCH-6", "ARCH-2", "ARCH-4")
@pytest.mark.parametrize("name", ALL)
def test_stage_shapes_at_native_resolution_match_timm(impl, name):
    shape = reference.native_input(name)
    ref = reference.timm_meta(name)
    expected = reference.run_pass(ref, reference.timm_taps(ref), shape).shapes
    actual = reference.impl_pass(impl, name, shape, count_macs=True).shapes  # the pass test_table2 uses
    assert actual == expected, (
        f"efficientnet_{name} at {shape[-1]}x{shape[-1]}: output shapes differ from timm's:\n"
        + _shape_report(actual, expected)
    )
    recorded = _expected_toml_shapes(name)
    if recorded is not None:
        assert actual == recorded, (
            f"efficientnet_{name}: output shapes differ from spec/expected.toml:\n" + _shape_report(actual, recorded)
        )


@pytest.mark.clause("ARCH-6", "ARCH-2", "ARCH-4")
@pytest.mark.parametrize("name", ALL)
def test_stage_shapes_at_small_odd_resolution_match_timm(impl, name):
    ref = reference.timm_meta(name)
    expected = reference.run_pass(ref, reference.timm_taps(ref), SMALL_INPUT).shapes
    actual = reference.impl_pass(impl, name, SMALL_INPUT).shapes
    assert actual == expected, (
        f"efficientnet_{name} on input {SMALL_INPUT}: output shapes differ from timm's:\n"
        + _shape_report(actual, expected)
    )


def _first_kind_mismatch(model: nn.Module, ref: nn.Module) -> str | None:
    """Where a parameter of one is a buffer of the other (shapes already agree)."""
    names, ref_names = list(model.state_dict()), list(ref.state_dict())
    for i, (a, e) in enumerate(zip(spec.shape_signature(model), spec.shape_signature(ref), strict=True)):
        if a[0] != e[0]:
            kind = {"P": "a parameter", "B": "a buffer"}
            return f"position {i}: {names[i]} is {kind[a[0]]}, timm's {ref_names[i]} is {kind[e[0]]}"
    return None


@pytest.mark.clause("API-4", "ARCH-5")
@pytest.mark.parametrize("name", ALL)
def test_parameter_and_buffer_shapes_match_timm_in_order(impl, name):
    model, ref = reference.impl_shapes_only(impl, name), reference.timm_meta(name)
    problem = torchutil.first_shape_mismatch(model, ref)
    assert problem is None, f"efficientnet_{name} state_dict differs from timm's at {problem}"
    problem = _first_kind_mismatch(model, ref)
    assert problem is None, f"efficientnet_{name} state_dict differs from timm's at {problem}"
    recorded = spec.expected().get("variants", {}).get(name, {}).get("fingerprint")
    if recorded is not None:
        assert spec.fingerprint(model) == recorded, f"efficientnet_{name}: fingerprint differs from spec/expected.toml"


@pytest.mark.clause("ARCH-5")
@pytest.mark.parametrize("name", ALL)
def test_parameter_count_matches_timm(impl, name):
    model, ref = reference.impl_shapes_only(impl, name), reference.timm_meta(name)
    count = sum(p.numel() for p in model.parameters())
    expected = sum(p.numel() for p in ref.parameters())
    assert count == expected, f"efficientnet_{name} has {count:,} parameters, timm's has {expected:,}"
