"""Parts of a network found by what they hold, not by their names: for a fork that defines the network
but not the part's own constructor (an ``SEBlock`` renamed, a block built from a config), a block-level
clause is judged on the part as it sits inside the network.

A part of the reference (timm's SE module, say) holds a contiguous run of the reference's parameters.
API-4 puts the fork's parameters in the reference's order, so the fork's part is the module that holds
exactly the parameters at the same positions (``find_in_order``).  That is a premise from ARCH-5 (the
layer shapes, in order) and is checked first under its blame.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from types import ModuleType

import pytest
from torch import nn

from tests.support import boundary, models, reference, torchutil
from tests.support.evidence import blame

# The network constructor a part is looked for in, by preference, and the call that builds it.
NETWORKS = (
    ("efficientnet_b0", (1000,), (1.0, 1.0, 1000)),
    ("EfficientNet", (1.0, 1.0, 1000), (1.0, 1.0, 1000)),
    ("EfficientNetSequential", (1.0, 1.0, 1000), (1.0, 1.0, 1000)),
)


def _positions(model: nn.Module) -> dict[int, tuple[int, int]]:
    """id(module) -> (first, last + 1) of the network's parameter positions it holds, for every module
    whose parameters form one contiguous run."""
    index = {id(p): i for i, p in enumerate(model.parameters())}
    runs = {}
    for module in model.modules():
        held = sorted(index[id(p)] for p in module.parameters())
        if held and held == list(range(held[0], held[-1] + 1)):
            runs[id(module)] = (held[0], held[-1] + 1)
    return runs


def find_in_order(model: nn.Module, ref: nn.Module, ref_parts: list[nn.Module]) -> list[tuple[str, nn.Module] | None]:
    """For each module of ``ref_parts`` (inside ``ref``), the (qualified name, module) of ``model``
    that holds exactly the parameters at the same positions, the outermost where several do (an SE
    module holds its excitation layers, which hold the same parameters but compute only the gate);
    None where no module of ``model`` holds exactly those."""
    ref_runs = _positions(ref)
    by_run = _outermost_by_run(model)
    return [by_run.get(ref_runs[id(part)]) if id(part) in ref_runs else None for part in ref_parts]


@dataclass(frozen=True)
class FoundSE:
    module: nn.Module
    channels: int  # the SE's input (and output) channels: the block's expanded width
    reduced: int  # the channels it squeezes to
    what: str  # for messages: "efficientnet_b0(1000)'s SE module stages.3.1.se (found by parameter order)"


@cache
def network_ses(impl: ModuleType) -> list[FoundSE]:
    """The SE modules of the fork's network (its first usable constructor of ``NETWORKS``), found by
    parameter order against timm's at the same factors (cached per implementation)."""
    usable = [(n, a, f, getattr(impl, n)) for n, a, f in NETWORKS if not boundary.lacks(impl, n)]
    if not usable:
        pytest.skip("undecided: the implementation defines no network to find SE modules in")
    name, args, factors, constructor = usable[0]
    call = f"{name}{args}" if len(args) > 1 else f"{name}({args[0]})"
    with blame():  # building the network is ARCH-6's and API-2's business
        model = constructor(*args)
    ref = models.timm_scaled_to_inspect(*factors)
    with blame("ARCH-5"):
        problem = torchutil.first_shape_mismatch(model, ref)
        assert problem is None, f"premise ARCH-5: {call}'s parameters are not timm's in order: {problem}"
    ref_ses = [m for m in ref.modules() if type(m).__name__ == "SqueezeExcite"]
    found = []
    for part, ref_se in zip(find_in_order(model, ref, ref_ses), ref_ses, strict=True):
        if part is None:
            pytest.skip(
                f"undecided: no module of {call} holds exactly the parameters of an SE (as timm's "
                f"{type(ref_se).__name__} does, by position): its SE cannot be run on its own"
            )
        qualified, module = part
        reduced, channels = ref_se.conv_reduce.weight.shape[:2]
        what = f"{call}'s SE module {qualified} (by parameter order)"
        found.append(FoundSE(module, int(channels), int(reduced), what))
    return found


def _outermost_by_run(model: nn.Module) -> dict[tuple[int, int], tuple[str, nn.Module]]:
    """Each run of parameter positions that some module holds exactly: the outermost such (name, module)."""
    runs = _positions(model)
    found: dict[tuple[int, int], tuple[str, nn.Module]] = {}
    for name, module in model.named_modules():  # pre-order: the first module with a run is the outermost
        if id(module) in runs:
            found.setdefault(runs[id(module)], (name, module))
    return found


def taps_like(model: nn.Module, ref: nn.Module, ref_taps: dict[str, nn.Module]) -> dict[str, nn.Module]:
    """The fork's modules in the places of the reference's taps (``reference.timm_taps`` and the like), for a
    network without the tutorial's structure (API-3).  Taken in order, each tap closes a segment of the
    network: the parameters after the previous tap's, up to its own last one (timm's stem segment is its
    ``conv_stem`` and ``bn1``, tapped at ``bn1``).  The fork's tap is the outermost module that holds exactly
    the parameters at those positions; a segment that no module of the fork holds (a stem of two sibling
    layers) is left out, and the tests compare the taps there are.  Premise: the fork's tensors are the
    reference's in order (ARCH-5), checked first."""
    with blame("ARCH-5"):
        problem = torchutil.first_shape_mismatch(model, ref)
        assert problem is None, f"premise ARCH-5: the network's tensors are not the reference's in order: {problem}"
    index = {id(p): i for i, p in enumerate(ref.parameters())}
    by_run = _outermost_by_run(model)
    taps, start = {}, 0
    for key, module in ref_taps.items():
        held = [index[id(p)] for p in module.parameters() if id(p) in index]
        if not held:
            continue
        end = max(held) + 1
        if (start, end) in by_run:
            taps[key] = by_run[start, end][1]
        start = end
    # A stem of sibling layers is no module, but its output is the first block's input.
    keys = list(ref_taps)
    if keys and keys[0] == "stem" and "stem" not in taps and len(keys) > 1 and keys[1] in taps:
        taps = {"stem": reference.InputOf(taps[keys[1]]), **taps}
    with blame("API-3"):
        assert taps, "premise API-3: no module of the network holds exactly the parameters of a stage, block or head"
    return taps
