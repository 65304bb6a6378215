"""Premises: what a test takes from other clauses, checked before its own claim.

A test of one clause often stands on others: the head's width on the width rule (SCALE-1), the
stochastic-depth schedule on the network's blocks (ARCH-3), the Sequential form's tensors on the
module form's (ARCH-5).  Each helper here checks one such premise under ``blame`` of the clauses it
comes from, so that when the premise fails the test is undecided for its own clauses (the report
says which premise failed) and the premise's own tests give the verdict.  The spec's rules are
written out here once (``scale_width``, ``depths``) for the tests that compare with them.
"""

from __future__ import annotations

import math
from types import ModuleType

from torch import nn

from tests.support import boundary, models, spec, torchutil
from tests.support.evidence import blame

SCALING = spec.data()["scaling"]
DIVISOR: int = SCALING["width_divisor"]
MINIMUM: int = SCALING["width_min"]
ROUND_LIMIT: float = SCALING["width_round_limit"]


def scale_width(w: float, f: float) -> int:
    """SCALE-1 as written: round w*f (a float product) to the nearest multiple of 8, at least 8,
    and add 8 when that lost more than 10%."""
    scaled = w * f
    new = max(MINIMUM, int(scaled + DIVISOR / 2) // DIVISOR * DIVISOR)
    return new + DIVISOR if new < ROUND_LIMIT * scaled else new


def depths(d_factor: float) -> list[int]:
    """SCALE-2: the seven stage depths for ``d_factor``."""
    return [math.ceil(d_factor * d) for d in spec.base_depths()]


def width_rule(impl: ModuleType, w: float) -> list[int]:
    """The implementation's ``scale_width`` agrees with the spec (SCALE-1) on every base width at
    ``w``; returns those widths."""
    want = [scale_width(x, w) for x in spec.base_widths()]
    if boundary.lacks(impl, "scale_width"):
        return want  # nothing to stand on: the test judges the network's widths against the spec itself
    with blame("SCALE-1"):
        got = [impl.scale_width(x, w) for x in spec.base_widths()]
        assert got == want, f"premise SCALE-1: scale_width(width, {w!r}) of the base widths gives {got}, want {want}"
    return want


def scaling(impl: ModuleType, w: float, d: float | None = None) -> None:
    """The implementation's own scaling agrees with the spec at these factors: ``scale_width`` of
    every base width (SCALE-1), then the scaler's stem and stage widths (SCALE-3) and, with ``d``,
    its depths (SCALE-2).  A network builds its widths and depths from these (the tutorial's
    scaler); a fork without them (the network protocol) is judged on its network alone.  The
    scaler's head entry is not a premise: the head's width rule is ARCH-4's own."""
    want = width_rule(impl, w)
    if boundary.lacks(impl, "efficientnet_scaler"):
        return  # a network without the tutorial's scaler: the test judges it against the spec itself
    widths, scaled_depths = impl.efficientnet_scaler(w, 1.0 if d is None else d)
    with blame("SCALE-3"):
        assert list(widths)[:-1] == want[:-1], (
            f"premise SCALE-3: efficientnet_scaler({w!r}) widths {list(widths)}, want {want[:-1]} before the head"
        )
    if d is not None:
        with blame("SCALE-2"):
            assert list(scaled_depths) == depths(d), (
                f"premise SCALE-2: efficientnet_scaler({w!r}, {d!r}) depths {list(scaled_depths)}, want {depths(d)}"
            )


def stage_depths(model: nn.Module, d: float, where: str) -> None:
    """The network has the seven stages of API-3 with ceil(d x repeats) blocks each (ARCH-3)."""
    with blame("API-3"):
        assert len(model.stages) == len(spec.base_depths()), f"premise API-3: {where} has {len(model.stages)} stages"
    with blame("ARCH-3"):
        got = [len(stage) for stage in model.stages]
        assert got == depths(d), f"premise ARCH-3: {where} has {got} blocks per stage, want {depths(d)}"


def first_kind_mismatch(model: nn.Module, ref: nn.Module) -> str | None:
    """Where a parameter of one is a buffer of the other (shapes already agree)."""
    names, ref_names = list(model.state_dict()), list(ref.state_dict())
    for i, (a, e) in enumerate(zip(spec.shape_signature(model), spec.shape_signature(ref), strict=True)):
        if a[0] != e[0]:
            kind = {"P": "a parameter", "B": "a buffer"}
            return f"position {i}: {names[i]} is {kind[a[0]]}, timm's {ref_names[i]} is {kind[e[0]]}"
    return None


def state_dict_problem(model: nn.Module, form: str, w: float, d: float, n: int) -> str | None:
    """None when ``model``, the implementation's ``form(w, d, n)``, has the shapes, kinds and
    parameter count of timm's generator at the same factors (ARCH-5), else what differs first."""
    ref = models.timm_scaled_to_inspect(w, d, n)
    where = f"{form}({w!r}, {d!r}, {n}) vs {models.TIMM_GENERATOR} at the same factors"
    problem = torchutil.first_shape_mismatch(model, ref) or first_kind_mismatch(model, ref)
    if problem:
        return f"{where}: state_dict differs at {problem}"
    count, expected = (sum(p.numel() for p in m.parameters()) for m in (model, ref))
    return None if count == expected else f"{where}: {count:,} parameters, timm's has {expected:,}"


def module_form_matches_timm(module: nn.Module, w: float, d: float, n: int) -> None:
    """``module``, the implementation's EfficientNet(w, d, n) (on the meta device where it builds
    there), has timm's tensors (ARCH-5): the reference of a test that holds the Sequential form to
    the module form, and of a numerical test that copies timm's weights in by position."""
    problem = state_dict_problem(module, "EfficientNet", w, d, n)
    with blame("ARCH-5"):
        assert problem is None, f"premise ARCH-5: {problem}"


def variant_matches_timm(impl: ModuleType, name: str) -> None:
    """``efficientnet_<name>`` has timm's tensors in timm's order (ARCH-5, API-4), checked on the
    meta device before a test builds both with real weights: where the shapes differ, weights
    cannot be copied by position, and a numerical test is undecided in milliseconds instead of
    building, calibrating and running two models for nothing."""
    model = models.impl_to_inspect(impl, name)
    problem = torchutil.first_shape_mismatch(model, models.timm_to_inspect(name))
    with blame("ARCH-5"):
        assert problem is None, f"premise ARCH-5: efficientnet_{name}'s state_dict differs from timm's at {problem}"
