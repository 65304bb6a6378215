"""tests/support/parts.py: a network's parts found by the parameters they hold, not by their names."""

from __future__ import annotations

import pytest
from torch import nn

import effnet
from tests.support import models, parts, reference


def test_a_networks_taps_are_the_modules_holding_the_references_segments() -> None:
    """timm's network against itself: each block, the head conv (``bn2``: timm taps its BatchNormAct2d) and
    the classifier are found as themselves; the stem (``conv_stem`` and ``bn1``, siblings) is no one module,
    so it is tapped at the first block's input."""
    ref = models.timm_to_inspect("b0")
    taps = parts.taps_like(ref, ref, reference.timm_taps(ref, per_block=True))
    want = reference.timm_taps(ref, per_block=True)
    assert isinstance(taps["stem"], reference.InputOf)
    assert _held(taps["stem"].target) == _held(want["stage 0 block 0"])
    for key in want.keys() - {"stem", "head conv"}:  # a stage of one block is that block's outermost module
        assert _held(taps[key]) == _held(want[key]), key
    assert "head conv" not in taps, "timm's head conv and bn2 are siblings: no module holds exactly that segment"


def _held(module: nn.Module) -> list[int]:
    return [id(p) for p in module.parameters()]


def test_effnets_parts_are_its_own_modules_whatever_they_are_called() -> None:
    model = models.to_run(lambda: effnet.efficientnet_b0(), models.META)
    ref = models.timm_to_inspect("b0")
    taps = parts.taps_like(model, ref, reference.timm_taps(ref, per_block=True))
    own = reference.impl_taps(model, per_block=True)
    assert taps.keys() == own.keys()
    assert all(_held(taps[key]) == _held(own[key]) for key in own)


def test_the_outermost_module_holding_a_segment_is_its_part() -> None:
    """An SE module holds its excitation layers, which hold the same parameters and compute only the gate."""
    inner = nn.Sequential(nn.Conv2d(4, 1, 1), nn.SiLU(), nn.Conv2d(1, 4, 1))
    outer = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Sequential(inner))
    [(name, found)] = parts.find_in_order(outer, outer, [outer[1]])
    assert (name, found) == ("1", outer[1])


def test_a_network_of_other_shapes_fails_the_premise_arch5() -> None:
    model = models.to_run(lambda: effnet.efficientnet_b1(), models.META)
    ref = models.timm_to_inspect("b0")
    with pytest.raises(AssertionError, match="premise ARCH-5"):
        parts.taps_like(model, ref, reference.timm_taps(ref))
