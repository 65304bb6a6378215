"""EfficientNetSequential against EfficientNet (SEQ-1, SEQ-2): the same network in two forms.

The comparison is between an implementation's own two forms, so here (and only here) the same
random seed must give the same stochastic-depth and dropout decisions: both forms run the same
layers in the same order.  Regularisation stays on, with the default rates, so that a form
whose schedule or dropout differs cannot pass.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import event, example, given
from hypothesis import strategies as st
from torch import Tensor, nn

from tests.support import models, premises, strategies, torchutil
from tests.support.evidence import blame

# Both forms run in float64: two forms of one function may order their sums differently (a
# flatten by .view or by nn.Flatten, a residual added before or after a copy), and a random
# network amplifies float32 rounding by up to 1e4; in float64 such differences stay below 1e-12,
# while a form that computes something else is off by more than 1e-3.
SEQ_TOL = 1e-9
LR = 0.1
# 33+ px: the last stage's map is at least 2x2, so the global pooling has something to average.
seq_image_sizes = st.integers(33, 48)


def _first_difference(a: list[tuple[str, Tensor]], b: list[tuple[str, Tensor]], what: str) -> str | None:
    """The first tensor of the group ``b`` (the Sequential form's) that differs from ``a``'s, each
    relative to the larger of its own norm and the group's scale (torchutil.group_rel_errs): some
    gradients vanish in exact arithmetic, and two residues must not decide."""
    for (name_a, ta), (name_b, tb) in zip(a, b, strict=True):
        if (ta is None) != (tb is None):
            return f"{what} of {name_a} / {name_b}: present in only one form"
    pairs = [(na, ta, nb, tb) for (na, ta), (nb, tb) in zip(a, b, strict=True) if ta is not None and tb is not None]
    errs = torchutil.group_rel_errs([tb for *_, tb in pairs], [ta for _, ta, _, _ in pairs])
    torchutil.margin(f"SEQ-2 {what}", max(errs, default=0.0), SEQ_TOL)
    for (name_a, _, name_b, _), err in zip(pairs, errs, strict=True):
        if err > SEQ_TOL:
            return f"{what} of EfficientNet's {name_a} and EfficientNetSequential's {name_b} differ by {err:.2e}"
    return None


@pytest.mark.clause("SEQ-1")
@given(w=strategies.model_width_factors, d=strategies.model_depth_factors, n=strategies.class_counts)
def test_sequential_has_the_same_tensors_in_the_same_order(impl, w, d, n):
    """The module form is the reference: that it has timm's tensors (ARCH-5) is this test's premise."""
    module = models.to_inspect(lambda: impl.EfficientNet(w, d, n))  # shapes only: the meta device
    premises.module_form_matches_timm(module, w, d, n)
    sequential = models.to_inspect(lambda: impl.EfficientNetSequential(w, d, n))
    problem = torchutil.first_shape_mismatch(sequential, module)
    assert problem is None, f"EfficientNetSequential({w!r}, {d!r}, {n}) vs EfficientNet: {problem}"


@pytest.mark.clause("SEQ-2")
@strategies.fewer_examples(0.4)  # about 0.4 s per example: two models, six passes
@given(
    w=strategies.model_width_factors,
    d=strategies.model_depth_factors,
    n=strategies.class_counts,
    size=seq_image_sizes,
)
@example(w=0.5, d=0.6, n=10, size=33)  # depths 1,2,2,2,2,3,1: residual blocks, so stochastic depth runs
def test_sequential_computes_the_same_function_in_eval_and_training(impl, device, w, d, n, size):
    where = f"EfficientNet({w!r}, {d!r}, {n}) and EfficientNetSequential at {size} px"
    torch.manual_seed(0)
    module: nn.Module = impl.EfficientNet(w, d, n).to(device, torch.float64)
    sequential: nn.Module = impl.EfficientNetSequential(w, d, n).to(device, torch.float64)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(12, 3, size, size, generator=generator, dtype=torch.float64).to(device)
    x = images[:4]
    torchutil.calibrate_batchnorm(module, [images[4:]])
    torchutil.copy_weights_in_order(module, sequential)

    with torch.no_grad():
        a, b = module.eval()(x), sequential.eval()(x)
    with blame():  # the test's own premise: a comparison of outputs that ignore the input shows nothing
        assert torchutil.input_dependence(a) > 1e-3, f"{where}: test setup: the output does not depend on the input"
    err = torchutil.margin("SEQ-2 eval output", torchutil.rel_err(b, a), SEQ_TOL)
    assert err <= SEQ_TOL, f"{where}: eval outputs differ by {err:.2e} relative"

    # Training: BN on batch statistics, stochastic depth and dropout on, the same seed for both.
    module.train()
    sequential.train()
    probe = torch.randn(4, n, generator=generator, dtype=torch.float64).to(device)
    outputs = []
    for model in (module, sequential):
        torch.manual_seed(1)
        out = model(x)
        (out * probe).sum().backward()
        outputs.append(out.detach())
    err = torchutil.margin("SEQ-2 train output", torchutil.rel_err(outputs[1], outputs[0]), SEQ_TOL)
    assert err <= SEQ_TOL, f"{where}: train-mode outputs under the same seed differ by {err:.2e} relative"
    grads = [[(name, p.grad) for name, p in m.named_parameters()] for m in (module, sequential)]
    problem = _first_difference(*grads, "gradients")
    assert problem is None, f"{where}: {problem}"

    for model in (module, sequential):
        with torch.no_grad():
            for p in model.parameters():
                p -= LR * p.grad
    states = [list(m.state_dict().items()) for m in (module, sequential)]
    problem = _first_difference(*states, "after a training step, the parameters or BN statistics")
    assert problem is None, f"{where}: {problem}"

    # The train-mode comparison is sharpest when training is random.  A spec-conforming model is
    # random in train mode whenever it has a residual block (stochastic depth) or classifier
    # dropout; a fork without classifier dropout and drawn at a depth factor that leaves every
    # stage one block deep is deterministic, which is REG-3's business, not this clause's.
    with torch.no_grad():
        torch.manual_seed(2)
        one = module(x)
        torch.manual_seed(3)
        other = module(x)
    event("train mode random" if torchutil.rel_err(one, other) > 1e-4 else "train mode deterministic")
