"""Output shapes for any input size (ARCH-6) and batch independence in eval mode (NUM-3).

Small models (w_factor <= 0.5, d_factor <= 0.6) in eval mode; stage outputs are captured with
forward hooks on ``model.stem`` and ``model.stages[i]`` (API-3).  The shapes at the native
resolutions, from timm, are checked elsewhere (test_architecture.py).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from torch import Tensor, nn

from tests.support import spec, strategies, torchutil
from tests.support.evidence import blame

STEM_STRIDE: int = spec.data()["base"]["stem"]["stride"]
STAGE_STRIDES: list[int] = [s["stride"] for s in spec.data()["base"]["stages"]]
# A batch and a single sample may run different convolution kernels (blocking, vectorisation),
# which reorders sums; a random network amplifies that rounding (in float32 a correct fork with
# another initialisation reached 2.2e-3, a batch-dependent layer is off by more than 1e-1), so the
# comparison runs in float64, where the same reorderings stay below 1e-12 and a tolerance can tell
# rounding from a batch dependence by nine orders of magnitude.
BATCH_TOL = 1e-9


def _halve(n: int, stride: int) -> int:
    return -(-n // stride)  # ceil: a stride-2 convolution with "same" padding


def _spatial_shapes(model: nn.Module, x: Tensor) -> tuple[list[tuple[int, int]], Tensor]:
    """Spatial sizes after the stem and after each stage, and the logits."""
    sizes: list[tuple[int, int]] = []

    def hook(_m: nn.Module, _args: tuple[Any, ...], out: Tensor) -> None:
        sizes.append((out.shape[-2], out.shape[-1]))

    handles = [model.stem.register_forward_hook(hook)]
    handles += [stage.register_forward_hook(hook) for stage in model.stages]
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        for h in handles:
            h.remove()
    return sizes, logits


@pytest.mark.clause("ARCH-6")
@given(
    w=strategies.model_width_factors,
    d=strategies.model_depth_factors,
    n_classes=strategies.class_counts,
    batch=strategies.batch_sizes,
    height=strategies.any_image_sizes,
    width=strategies.any_image_sizes,
)
@example(w=0.1, d=0.1, n_classes=1, batch=1, height=1, width=1)
@example(w=0.25, d=0.34, n_classes=3, batch=2, height=33, width=17)  # odd sizes at every stride
def test_stages_halve_the_size_rounding_up_and_logits_have_n_classes(
    impl, device, w, d, n_classes, batch, height, width
):
    model = impl.EfficientNet(w, d, n_classes).to(device).eval()
    sizes, logits = _spatial_shapes(model, torch.randn(batch, 3, height, width, device=device))
    want = [(_halve(height, STEM_STRIDE), _halve(width, STEM_STRIDE))]
    for stride in STAGE_STRIDES:
        want.append((_halve(want[-1][0], stride), _halve(want[-1][1], stride)))
    assert sizes == want, (
        f"EfficientNet({w!r}, {d!r}) on {height}x{width}: spatial sizes after the stem and the 7 stages "
        f"are {sizes}, want {want}"
    )
    assert tuple(logits.shape) == (batch, n_classes), (
        f"EfficientNet({w!r}, {d!r}, {n_classes}) on a batch of {batch}: logits {tuple(logits.shape)}"
    )


@pytest.mark.clause("NUM-3")
@strategies.fewer_examples(0.4)  # a model, its calibration and 1 + batch forwards per example
@given(
    w=strategies.model_width_factors,
    d=strategies.model_depth_factors,
    batch=st.integers(2, 4),
    size=st.integers(8, 32),
)
def test_eval_output_of_a_sample_does_not_depend_on_the_batch(impl, device, w, d, batch, size):
    torch.manual_seed(0)
    model = impl.EfficientNet(w, d, 10).to(device, torch.float64)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(8 + batch, 3, size, size, generator=generator, dtype=torch.float64).to(device)
    torchutil.calibrate_batchnorm(model, [images[:8]])
    x = images[8:]
    with torch.no_grad():
        together = model.eval()(x)
        alone = torch.cat([model(x[i : i + 1]) for i in range(batch)])
    with blame():  # the test's own premise: a comparison of outputs that ignore the input shows nothing
        assert torchutil.input_dependence(together) > 1e-3, "test setup: the output does not depend on the input"
    for i in range(batch):
        err = torchutil.margin("NUM-3 batch independence", torchutil.rel_err(alone[i], together[i]), BATCH_TOL)
        assert err <= BATCH_TOL, (
            f"EfficientNet({w!r}, {d!r}) at {size} px in eval mode (float64): sample {i} of a batch of {batch} "
            f"gives logits {err:.2e} (relative) away from the same sample alone"
        )
