"""Numerics against timm (spec section 6, NUM-1 and NUM-2): with timm's randomly initialised weights
copied in state_dict order (API-4), the implementation computes timm's function, in eval mode and
in the deterministic part of training mode (BN on batch statistics, no dropout or stochastic depth).

The comparisons run at 64x64: every layer is exercised at any resolution, and 64 px still leaves
the last stages a 2x2 map, so the SE squeeze averages several positions (a max would differ), the
depthwise padding is visible and a wrong stride changes the shapes.  BN statistics come from the
same resolution (torchutil.calibrate_batchnorm): with the default statistics a random network's
output barely depends on its input and a wrong answer would not show.  On a mismatch the message
names the first stem, block or head output that diverges, not only the logits.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from tests.support import reference, spec, torchutil

NAMED = spec.variants(include_optional=False)
# b8 (87M parameters) with real weights is slow; l2 (480M, about 2 GB per copy) is not run with real weights.
EVAL_VARIANTS = [*NAMED, pytest.param("b8", marks=pytest.mark.slow)]

RESOLUTION = 64
CALIBRATION_BATCH = 8
TEST_BATCH = 4

# NUM-1: both compute the same float32 operations; 1e-5 leaves room for a different but
# equivalent order of operations (x.mean for AdaptiveAvgPool2d, x * sigmoid(x) for SiLU, ...).
EVAL_TOL = 1e-5
# NUM-2: the same for the training-mode output and BN statistics.  Gradients pass back through
# every BN's batch statistics, which amplifies rounding differences of a different but
# equivalent forward; per tensor, small tensors (SE biases) see it most.
TRAIN_OUTPUT_TOL = 1e-5
GRAD_TOL = 1e-4
# A calibrated random network scores about 0.7 on torchutil.input_dependence; one that
# ignores its input (default BN statistics at a small resolution) scores near 0.
MIN_INPUT_DEPENDENCE = 0.1


def _inputs(seed: int, batch: int, device: torch.device) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, RESOLUTION, RESOLUTION, generator=g).to(device)


def _with_timm_weights(impl_model: nn.Module, ref: nn.Module) -> nn.Module:
    torchutil.copy_weights_in_order(ref, impl_model)  # fails naming the first tensor whose shape differs
    return impl_model


# --- NUM-1: eval mode ------------------------------------------------------------------------
@pytest.mark.clause("NUM-1")
@pytest.mark.parametrize("name", EVAL_VARIANTS)
def test_eval_output_matches_timm_stage_by_stage(impl, device, name, record_property):
    ref = reference.timm_model(name).to(device)
    torchutil.calibrate_batchnorm(ref, [_inputs(1, CALIBRATION_BATCH, device)])
    model = _with_timm_weights(reference.build(reference.impl_factory(impl, name)).to(device), ref).eval()

    x = _inputs(2, TEST_BATCH, device)
    expected = reference.record(ref, reference.timm_taps(ref, per_block=True), x)
    dependence = torchutil.input_dependence(expected["logits"])
    assert dependence > MIN_INPUT_DEPENDENCE, f"the calibrated reference ignores its input ({dependence:.3g})"

    actual = reference.record(model, reference.impl_taps(model, per_block=True), x)
    logits_err = torchutil.rel_err(actual["logits"], expected["logits"])
    record_property("logits_rel_err", logits_err)
    where = reference.first_divergence(actual, expected, EVAL_TOL)
    assert where is None, (
        f"efficientnet_{name} in eval mode with timm's weights diverges from timm first at {where} "
        f"(logits relative error {logits_err:.3g})"
    )


# --- NUM-2: training mode, deterministic part --------------------------------------------------
# B0, a small factor pair (few channels, one block in most stages) and a larger variant.
TRAIN_CASES: dict[str, str | tuple[float, float, int]] = {
    "b0": "b0",
    "w0.25-d0.34": (0.25, 0.34, 10),  # EfficientNet(w_factor, d_factor, n_classes)
    "b3": "b3",
}


def _train_pair(impl, case: str) -> tuple[nn.Module, nn.Module]:
    what = TRAIN_CASES[case]
    if isinstance(what, str):
        ref = reference.timm_model(what)
        model = reference.build(reference.impl_factory(impl, what))
    else:
        w, d, n = what
        ref = reference.timm_scaled(w, d, n)
        model = reference.build(lambda: impl.EfficientNet(w, d, n))
    return model, ref


def _buffers(model: nn.Module) -> list[tuple[str, Tensor]]:
    parameters = {n for n, _ in model.named_parameters()}
    return [(n, t) for n, t in model.state_dict().items() if n not in parameters]


@pytest.mark.clause("NUM-2")
@pytest.mark.parametrize("case", list(TRAIN_CASES))
def test_training_step_matches_timm(impl, device, case):
    model, ref = _train_pair(impl, case)
    # Start from realistic statistics so that the running averages after the step are not trivial.
    torchutil.calibrate_batchnorm(ref, [_inputs(1, CALIBRATION_BATCH, torch.device("cpu"))])
    _with_timm_weights(model, ref)
    model, ref = model.to(device), ref.to(device)
    torchutil.only_batchnorm_training(model)
    torchutil.only_batchnorm_training(ref)

    x = _inputs(2, TEST_BATCH, device)
    out, expected = model(x), ref(x)
    err = torchutil.rel_err(out, expected)
    assert err <= TRAIN_OUTPUT_TOL, f"{case}: training-mode output differs from timm's (relative error {err:.3g})"

    # A random linear functional of the logits: every logit gets its own gradient.
    weight = torch.randn(expected.shape, generator=torch.Generator().manual_seed(3)).to(device)
    (out * weight).sum().backward()
    (expected * weight).sum().backward()
    for (name, p), (ref_name, q) in zip(model.named_parameters(), ref.named_parameters(), strict=True):
        assert p.grad is not None, f"{case}: parameter {name} got no gradient (timm's {ref_name} did)"
        err = torchutil.rel_err(p.grad, q.grad)
        assert err <= GRAD_TOL, (
            f"{case}: the gradient of {name} differs from that of timm's {ref_name} (relative error {err:.3g}); "
            "it is the first parameter in state_dict order that differs"
        )

    for (name, b), (ref_name, c) in zip(_buffers(model), _buffers(ref), strict=True):
        err = torchutil.rel_err(b, c)
        assert err <= TRAIN_OUTPUT_TOL, (
            f"{case}: after the step, buffer {name} differs from timm's {ref_name} (relative error {err:.3g})"
        )
