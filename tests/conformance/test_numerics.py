"""Numerics against timm (spec section 6, NUM-1 and NUM-2): with timm's randomly initialised weights
copied in state_dict order (API-4), the implementation computes timm's function, in eval mode and
in the deterministic part of training mode (BN on batch statistics, no dropout or stochastic depth).

The comparisons run at 64x64: every layer is exercised at any resolution, and 64 px still leaves
the last stages a 2x2 map, so the SE squeeze averages several positions (a max would differ), the
depthwise padding is visible and a wrong stride changes the shapes.  The reference is prepared as
reference.prepare_reference says: BN statistics of random images at that resolution (with the
default statistics a random network's output barely depends on its input, and a wrong answer
would not show) and damped residual branches (else deep random networks are chaotic and float32
rounding alone moves B7's logits).  On a mismatch the message names the first stem, block or head
output that diverges, both given timm's input to it and in a whole forward pass.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from torch import Tensor, nn

from tests.support import models, premises, reference, spec, strategies, torchutil

NAMED = spec.variants(include_optional=False)
# b8 (87M parameters) with real weights is slow; l2 (480M, about 2 GB per copy) is not run with real weights.
EVAL_VARIANTS = [pytest.param(n, marks=pytest.mark.slow) if n not in NAMED else n for n in models.NUM1_VARIANTS]

RESOLUTION = models.EVAL_RESOLUTION  # 64

# NUM-1.  effnet's errors are exactly 0.  A correct fork that orders the float32 operations
# differently (BN folded into a scale and shift, x * sigmoid(x) for SiLU, x.mean for the SE
# squeeze, channels-last input, an nn.Linear SE) differs from timm by at most 4.2e-7 per block given
# the same input (EVAL_TOL), and by 2e-6 to 3.3e-6 at any tap of a whole forward pass of B0-B7, which
# is held to a multiple of the reference's own rounding noise there (reference.whole_pass_tolerances).
EVAL_TOL = 1e-5
# NUM-2 runs in float64 (both models converted after timm's weights are copied in): a training step
# passes back through every BN's batch statistics, and in float32 a correct fork that orders its
# sums otherwise (channels-last memory format) moved a gradient by 1.1e-4 relative, where a wrong
# one is off by 1e-3 or more.  In float64 the same reorderings stay below 1e-12.  Some gradients
# vanish in exact arithmetic (the bias of a BN followed, through a 1x1 convolution, by a BN in
# training mode): each is compared relative to the larger of its own norm and the group's scale
# (torchutil.group_rel_errs), never a residue against a residue.
TRAIN_OUTPUT_TOL = 1e-9
GRAD_TOL = 1e-9
# A calibrated random network scores about 0.6-0.8 on torchutil.input_dependence; one that
# ignores its input (default BN statistics at a small resolution) scores near 0.
MIN_INPUT_DEPENDENCE = 0.1


# --- NUM-1: eval mode ------------------------------------------------------------------------
def _assert_eval_agrees(result: reference.EvalComparison, what: str) -> None:
    assert result.input_dependence > MIN_INPUT_DEPENDENCE, (
        f"{what}: the calibrated reference ignores its input ({result.input_dependence:.3g}): "
        "the comparison shows nothing"
    )
    assert result.local_divergence is None, (
        f"{what} with timm's weights, in eval mode, given timm's input to each stem, block and head: "
        f"the first that computes something else is {result.local_divergence}"
    )
    assert result.divergence is None, (
        f"{what} with timm's weights, in eval mode: every block agrees given timm's input, but in a "
        f"whole forward pass the output diverges first at {result.divergence} "
        f"(logits relative error {result.logits_err:.3g}): differences accumulate"
    )


@pytest.mark.clause("NUM-1")
@pytest.mark.parametrize("name", EVAL_VARIANTS)
def test_eval_output_matches_timm_stage_by_stage(impl, device, name):
    premises.variant_matches_timm(impl, name)
    ref = models.num1_reference(name, device)
    model = models.with_weights_of(ref.model, reference.impl_factory(impl, name))
    result = reference.compare_eval(model, ref, EVAL_TOL, "NUM-1")
    _assert_eval_agrees(result, f"efficientnet_{name}")


# At any factors: timm's generator at the same (w, d, n_classes), at small resolutions (32 px leaves
# the last stages a 1x1 map, 64 px a 2x2 one).  Small factors keep an example to a fraction of a second.
small_resolutions = st.integers(32, 64)


@pytest.mark.clause("NUM-1")
@strategies.fewer_examples(0.2)  # two models, a calibration and three passes per example: the module stays near 30 s
@given(
    w=strategies.model_width_factors, d=strategies.model_depth_factors, n=strategies.class_counts, r=small_resolutions
)
@example(w=0.33, d=0.6, n=10, r=64)  # residual blocks in most stages; torchvision's head rule would differ here
@example(w=0.05, d=0.6, n=3, r=32)  # every width before the head is 8: the first blocks of stages 0, 4, 6 are residual
def test_eval_output_matches_timms_generator_at_any_factors(impl, device, w, d, n, r):
    premises.module_form_matches_timm(models.to_inspect(lambda: impl.EfficientNet(w, d, n)), w, d, n)
    ref = reference.prepared(models.timm_scaled(w, d, n).to(device), reference.timm_taps, r)
    model = models.with_weights_of(ref.model, lambda: impl.EfficientNet(w, d, n))
    result = reference.compare_eval(model, ref, EVAL_TOL, "NUM-1")
    _assert_eval_agrees(result, f"EfficientNet({w!r}, {d!r}, {n}) at {r} px")


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
        premises.variant_matches_timm(impl, what)
        ref = models.timm_model(what)
        model = models.to_overwrite(reference.impl_factory(impl, what))
    else:
        w, d, n = what
        premises.module_form_matches_timm(models.to_inspect(lambda: impl.EfficientNet(w, d, n)), w, d, n)
        ref = models.timm_scaled(w, d, n)
        model = models.to_overwrite(lambda: impl.EfficientNet(w, d, n))
    return model, ref


def _buffers(model: nn.Module) -> list[tuple[str, Tensor]]:
    parameters = {n for n, _ in model.named_parameters()}
    return [(n, t) for n, t in model.state_dict().items() if n not in parameters]


@pytest.mark.clause("NUM-2")
@pytest.mark.parametrize("case", list(TRAIN_CASES))
def test_training_step_matches_timm(impl, device, case):
    model, ref = _train_pair(impl, case)
    _assert_training_step_agrees(model, ref, device, RESOLUTION, case)


@pytest.mark.clause("NUM-2")
@strategies.fewer_examples(0.2)  # two models, a calibration, two passes and two backward passes per example
@given(
    w=strategies.model_width_factors, d=strategies.model_depth_factors, n=strategies.class_counts, r=small_resolutions
)
def test_training_step_matches_timms_generator_at_any_factors(impl, device, w, d, n, r):
    premises.module_form_matches_timm(models.to_inspect(lambda: impl.EfficientNet(w, d, n)), w, d, n)
    ref = models.timm_scaled(w, d, n)
    model = models.to_overwrite(lambda: impl.EfficientNet(w, d, n))
    _assert_training_step_agrees(model, ref, device, r, f"EfficientNet({w!r}, {d!r}, {n}) at {r} px")


def _assert_training_step_agrees(
    model: nn.Module, ref: nn.Module, device: torch.device, resolution: int, case: str
) -> None:
    # Realistic statistics make the running averages after the step non-trivial.
    reference.prepare_reference(ref, resolution)
    torchutil.copy_weights_in_order(ref, model)  # fails naming the first tensor whose shape differs
    model, ref = model.to(device, torch.float64), ref.to(device, torch.float64)
    torchutil.only_batchnorm_training(model)
    torchutil.only_batchnorm_training(ref)

    x = reference.images(2, 4, resolution, device).double()
    out, expected = model(x), ref(x)
    err = torchutil.margin("NUM-2 train output", torchutil.rel_err(out, expected), TRAIN_OUTPUT_TOL)
    assert err <= TRAIN_OUTPUT_TOL, f"{case}: training-mode output differs from timm's (relative error {err:.3g})"

    # A random linear functional of the logits: every logit gets its own gradient.
    weight = torch.randn(expected.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64).to(device)
    (out * weight).sum().backward()
    (expected * weight).sum().backward()
    params, ref_params = list(model.named_parameters()), list(ref.named_parameters())
    for (name, p), (ref_name, _) in zip(params, ref_params, strict=True):
        assert p.grad is not None, f"{case}: parameter {name} got no gradient (timm's {ref_name} did)"
    errs = torchutil.group_rel_errs([p.grad for _, p in params], [q.grad for _, q in ref_params])
    torchutil.margin("NUM-2 gradients", max(errs), GRAD_TOL)
    for (name, _), (ref_name, _), err in zip(params, ref_params, errs, strict=True):
        assert err <= GRAD_TOL, (
            f"{case}: the gradient of {name} differs from that of timm's {ref_name} (relative error {err:.3g}); "
            "it is the first parameter in state_dict order that differs"
        )

    buffers, ref_buffers = _buffers(model), _buffers(ref)
    errs = torchutil.group_rel_errs([b for _, b in buffers], [c for _, c in ref_buffers])
    torchutil.margin("NUM-2 BN statistics", max(errs, default=0.0), TRAIN_OUTPUT_TOL)
    for (name, _), (ref_name, _), err in zip(buffers, ref_buffers, errs, strict=True):
        assert err <= TRAIN_OUTPUT_TOL, (
            f"{case}: after the step, buffer {name} differs from timm's {ref_name} (relative error {err:.3g})"
        )
