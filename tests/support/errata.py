"""The recognisers of the errata (spec/SPEC.md section 9, column "Signature"): an erratum is named in
the report only when its signature shows in the implementation, never because its clause failed.
Each recogniser builds a small part of the implementation (on CPU, with its own random generator)
and returns what it saw, or None.  The report runs them (bounded in time, tests/support/watchdog.py)
in the process that writes it, once per erratum whose clause failed.  They build models, so they
live apart from ``blame`` (tests/support/evidence.py), which needs no torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import ModuleType

import torch
from torch import nn

from tests.support import models
from tests.support.premises import scale_width
from tests.support.torchutil import rel_err

Recogniser = Callable[[ModuleType], "str | None"]
_REL = 1e-5


@torch.no_grad()
def _randomise(module: nn.Module, generator: torch.Generator) -> nn.Module:
    for t in module.parameters():  # not the BN statistics: a variance must stay positive
        t.copy_(torch.randn(t.shape, generator=generator) * 0.5)
    return module


def se_max_pool(impl: ModuleType) -> str | None:
    """E-1: the SE gate follows the channel maxima, not the means."""
    generator = torch.Generator().manual_seed(0)
    se = _randomise(impl.SEBlock(8, 2), generator).eval()
    x = torch.rand(4, 8, 5, 5, generator=generator) + 1.0
    peak = x.amax((2, 3), keepdim=True)
    same_maxima = torch.where(x == peak, x, 0.5 * x)  # every mean moves, no maximum does
    with torch.no_grad():
        gate, gate_same, gate_scaled = (se(t) / t for t in (x, same_maxima, 1.5 * x))
    if rel_err(gate_same, gate) <= _REL and rel_err(gate_scaled, gate) > 1e-3:
        return (
            "SEBlock(8, 2)'s gate stays when each channel's mean changes but its maximum does not: a max-pool squeeze"
        )
    return None


def element_wise_branch_dropout(impl: ModuleType) -> str | None:
    """E-2: in training, single elements of the residual branch are zeroed (not whole samples)."""
    block = impl.MBConv(8, 8, 6, 3, 1, 24, 0.5)
    _randomise(block, torch.Generator().manual_seed(0))
    with torch.no_grad():  # the last BN bias (API-4: the fourth entry from the end) at 1: the branch is nonzero
        list(block.state_dict().values())[-4].fill_(1.0)
    x = torch.randn(4, 8, 6, 6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        block.train()
        for m in block.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            out = block(x)
    zeroed = ((out - x).flatten(1) == 0).double().mean(1)
    partly = [i for i, f in enumerate(zeroed.tolist()) if 0.1 < f < 0.9]
    if partly:
        return (
            f"MBConv(8, 8, 6, dropout=0.5) in training zeroes {zeroed[partly[0]]:.0%} of sample {partly[0]}'s "
            "residual branch element by element: nn.Dropout, not stochastic depth"
        )
    return None


def _drop_rates(block: nn.Module) -> list[float]:
    return [float(m.p) for m in block.modules() if isinstance(getattr(m, "p", None), float) and m is not block]


def per_stage_drop_rate(impl: ModuleType) -> str | None:
    """E-3: one drop rate per stage (the tutorial's 0.2 i / 7), not one per block."""
    model = impl.EfficientNet(0.01, 1.0, 10)
    per_stage = [[r for block in stage for r in _drop_rates(block)] for stage in model.stages]
    shared = [rates for rates in per_stage if len(rates) > 1]
    if len(shared) >= 2 and all(len(set(rates)) == 1 for rates in shared) and len({r[0] for r in shared}) > 1:
        listed = ", ".join(f"{rates[0]:.3g}" for rates in per_stage if rates)
        return f"the blocks of each stage of EfficientNet(0.01, 1.0) share one drop rate ({listed}): one rate per stage"
    return None


def no_classifier_dropout(impl: ModuleType) -> str | None:
    """E-4: pooling and head compute the same in training and in eval mode."""
    model = impl.EfficientNet(0.1, 0.1, 10)
    weight = list(model.head.state_dict().values())[-2]
    f = torch.randn(256, weight.shape[1], 1, 1, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        train = model.head.train()(model.pool_flatten.train()(f))
        evaluated = model.head.eval()(model.pool_flatten.eval()(f))
    if torch.equal(train, evaluated):
        return (
            "EfficientNet(0.1, 0.1, 10)'s pooling and head give the same output in training as in eval mode: no dropout"
        )
    return None


def head_1080(impl: ModuleType) -> str | None:
    """E-5: the table's head width is 1080."""
    return "widths[-1] is 1080" if list(impl.widths)[-1] == 1080 else None


def se_squeezes_to_zero(impl: ModuleType) -> str | None:
    """E-6: SEBlock(c, r) squeezes some block of fewer than r channels to 0 channels (c // r, or
    c / r rounded to the nearest), where the reference code keeps at least 1."""
    for c, r in ((3, 4), (1, 2), (1, 3), (2, 8)):
        shapes = [tuple(t.shape) for t in impl.SEBlock(c, r).state_dict().values()]
        if shapes and shapes[0] and shapes[0][0] == 0:
            return f"SEBlock({c}, {r}) squeezes to 0 channels: its reduce weight is {shapes[0]}"
    return None


def tensorflow_batchnorm(impl: ModuleType) -> str | None:
    """E-7: BatchNorm eps 1e-3 or momentum 0.01, TensorFlow's values, in EfficientNet(0.25, 0.34) or
    in a named variant from B5 up (torchvision builds only B5-B7 with TensorFlow's values).  Only the
    layers' settings are read: the models are built on the meta device where the implementation allows it."""
    builds = {"EfficientNet(0.25, 0.34)": lambda: impl.EfficientNet(0.25, 0.34, 10)}
    builds |= {f"efficientnet_b{i}": getattr(impl, f"efficientnet_b{i}") for i in (5, 6, 7)}
    for name, build in builds.items():
        layers = [m for m in models.to_inspect(build).modules() if isinstance(m, nn.modules.batchnorm._NormBase)]
        found = []
        if any(math.isclose(m.eps, 1e-3) for m in layers):
            found.append("BatchNorm eps is 1e-3 (TensorFlow's), want 1e-5")
        if any(m.momentum is not None and math.isclose(m.momentum, 0.01) for m in layers):
            found.append("BatchNorm momentum is 0.01 (TensorFlow's decay 0.99), want 0.1")
        if found:
            return f"{name}: {'; '.join(found)}"
    return None


def tensorflow_same_padding(impl: ModuleType) -> str | None:
    """E-8: static TF "same" padding for an even input size: the stem maps 57x71 to 28x35."""
    stem = impl.EfficientNet(0.1, 0.1, 10).eval().stem
    with torch.no_grad():
        size = tuple(stem(torch.randn(1, 3, 57, 71, generator=torch.Generator().manual_seed(0))).shape[-2:])
    if size == (28, 35):
        return (
            "the stem maps 57x71 to 28x35, where padding 1 gives 29x36: TensorFlow 'same' padding "
            "computed once for an even input size"
        )
    return None


def torchvision_head_rule(impl: ModuleType) -> str | None:
    """E-9: the head is 4x the last stage's width (torchvision), not the scaled 1280."""
    f = 0.33  # scale_width(1280, f) = 424, 4 * scale_width(320, f) = 416
    model = impl.EfficientNet(f, 0.1, 10)
    # The head conv is the network's last convolution (API-4 order), mapping the last stage's width to its own.
    head, last = [t.shape for t in model.state_dict().values() if t.ndim == 4][-1][:2]
    if head == 4 * last and head != scale_width(1280, f):
        return (
            f"EfficientNet({f}, 0.1)'s head convolution has {head} = 4 x {last} channels (torchvision's rule), "
            f"want scale_width(1280, {f}) = {scale_width(1280, f)}"
        )
    return None


def tensorflow_same_padding_in_blocks(impl: ModuleType) -> str | None:
    """E-10: a block's stride-2 depthwise convolution pads an even size only at the bottom and right
    (TensorFlow "same" padding, computed per input): with every weight 1, a 6x6 input of ones gives
    9 at the top-left output (no padding there) and 4 at the bottom-right, where padding 1 gives 4 and 9."""
    block = impl.MBConv(8, 8, 1, 3, 2)
    depthwise = [m for m in block.modules() if isinstance(m, nn.Conv2d) and m.groups > 1 and m.stride == (2, 2)]
    if len(depthwise) != 1:
        return None
    conv = depthwise[0]
    with torch.no_grad():
        conv.weight.fill_(1.0)
        if conv.bias is not None:
            conv.bias.zero_()
        out = conv(torch.ones(1, conv.in_channels, 6, 6))
    if out.shape[-2:] == (3, 3) and float(out[0, 0, 0, 0]) == 9.0 and float(out[0, 0, -1, -1]) == 4.0:
        return (
            "MBConv(8, 8, 1, 3, 2)'s depthwise convolution pads a 6x6 input only at the bottom and right "
            "(TensorFlow 'same' padding), where padding 1 pads every side"
        )
    return None


RECOGNISERS: dict[str, Recogniser] = {
    "E-1": se_max_pool,
    "E-2": element_wise_branch_dropout,
    "E-3": per_stage_drop_rate,
    "E-4": no_classifier_dropout,
    "E-5": head_1080,
    "E-6": se_squeezes_to_zero,
    "E-7": tensorflow_batchnorm,
    "E-8": tensorflow_same_padding,
    "E-9": torchvision_head_rule,
    "E-10": tensorflow_same_padding_in_blocks,
}


def recognise(erratum: str, impl: ModuleType) -> str | None:
    """What the implementation shows of the erratum's signature, or None (also when building the
    parts it looks at fails: then the failing tests say why)."""
    recogniser = RECOGNISERS.get(erratum)
    if recogniser is None:
        return None
    try:
        with torch.random.fork_rng(devices=[]):
            return recogniser(impl)
    except Exception:
        return None
