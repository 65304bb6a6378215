"""torchvision as a second, independent reference (NUM-4): the same parameter and buffer shapes in
the same order for B0-B7, and with torchvision's random weights copied in order, the same eval
function for B0-B7.  torchvision's B5-B7 normalise with BatchNorm eps 1e-3 (their weights were
ported from TensorFlow): the test asserts that, then sets eps to 1e-5 (BLOCK-2) in torchvision's
model, so that it compares everything else.

As in test_numerics.py (which says why that suffices), the function is compared at 64x64 with a
prepared reference (calibrated BN, damped residual branches), and a mismatch names the first stem,
block or head output that diverges.
"""

from __future__ import annotations

import pytest

from tests.support import models, premises, reference, spec, torchutil

NAMED = spec.variants(include_optional=False)
TENSORFLOW_EPS = ("b5", "b6", "b7")  # NUM-4: torchvision's efficientnet_b5..b7 pass eps=0.001
TENSORFLOW_EPS_VALUE = 1e-3
PYTORCH_EPS_VALUE = models.NUM4_EPS  # 1e-5, BLOCK-2

EVAL_TOL = 1e-5  # NUM-4; test_numerics.py says what a correct fork's rounding differences are
MIN_INPUT_DEPENDENCE = 0.1  # see test_numerics.py


def _torchvision_eps(name: str) -> set[float]:
    return {bn.eps for bn in torchutil.batchnorms(models.torchvision_to_inspect(name))}


@pytest.mark.clause("NUM-4")
@pytest.mark.parametrize("name", NAMED)
def test_parameter_and_buffer_shapes_match_torchvision_in_order(impl, name):
    model = models.impl_to_inspect(impl, name)
    ref = models.torchvision_to_inspect(name)
    problem = torchutil.first_shape_mismatch(model, ref)
    assert problem is None, f"efficientnet_{name} state_dict differs from torchvision's at {problem}"
    count, expected = (sum(p.numel() for p in m.parameters()) for m in (model, ref))
    assert count == expected, f"efficientnet_{name} has {count:,} parameters, torchvision's has {expected:,}"


@pytest.mark.clause("NUM-4")
@pytest.mark.parametrize("name", models.NUM4_VARIANTS)
def test_eval_output_matches_torchvision_stage_by_stage(impl, device, name):
    premises.variant_matches_timm(impl, name)  # timm's and torchvision's tensors agree (the test above)
    eps = _torchvision_eps(name)
    want = TENSORFLOW_EPS_VALUE if name in TENSORFLOW_EPS else PYTORCH_EPS_VALUE
    assert eps == {want}, f"torchvision's efficientnet_{name} BatchNorm eps: {eps}, expected {want:g}"

    # eps 1e-5 in every torchvision model (B5-B7 included): compare the architecture, not the ported eps
    ref = models.num4_reference(name, device)
    model = models.with_weights_of(ref.model, reference.impl_factory(impl, name))
    result = reference.compare_eval(model, ref, EVAL_TOL, "NUM-4")
    assert result.input_dependence > MIN_INPUT_DEPENDENCE, (
        f"the calibrated reference ignores its input ({result.input_dependence:.3g}): the comparison shows nothing"
    )
    assert result.local_divergence is None, (
        f"efficientnet_{name} with torchvision's weights, in eval mode, given torchvision's input to each stem, "
        f"block and head: the first that computes something else is {result.local_divergence}"
    )
    assert result.divergence is None, (
        f"efficientnet_{name} with torchvision's weights, in eval mode: every block agrees given torchvision's "
        f"input, but in a whole forward pass the output diverges first at {result.divergence} "
        f"(logits relative error {result.logits_err:.3g}): differences accumulate"
    )
