"""The paper's Table 2 (TABLE2-1, TABLE2-2): parameter counts of B0-B7 round to the published
figures, and multiply-accumulates at the native resolution are within 10% of the published FLOPs.

MACs are ``torch.utils.flop_counter.FlopCounterMode``'s total for one image, halved: it counts
each multiply-add of a convolution (depthwise and SE included) or matrix product (the classifier)
as two FLOPs, and nothing for BN, activations, pooling or the SE gating product, which the paper's
multiply-add counts leave out too (spec/expected.toml [conventions]).  The count needs only shapes,
so it runs on the meta device; an implementation that cannot be built there is run for real.
"""

from __future__ import annotations

import pytest

from tests.support import models, reference, spec

NAMED = spec.variants(include_optional=False)  # Table 2 has B0-B7


@pytest.mark.clause("TABLE2-1")
@pytest.mark.parametrize("name", NAMED)
def test_parameter_count_rounds_to_table2(impl, name):
    count = sum(p.numel() for p in models.impl_to_inspect(impl, name).parameters())
    low, high = spec.table2_params_interval(name)
    published = spec.data()["table2"][name]["params"]
    assert low <= count < high, (
        f"efficientnet_{name} has {count:,} parameters, which does not round to Table 2's {published} "
        f"(the interval [{low:,.0f}, {high:,.0f}))"
    )


@pytest.mark.clause("TABLE2-2")
@pytest.mark.parametrize("name", NAMED)
def test_macs_at_native_resolution_within_10_percent_of_table2(impl, name):
    resolution = spec.variant(name)["resolution"]
    run = models.impl_forward_shapes(impl, name, reference.native_input(name), count_macs=True)
    assert run.error is None, f"efficientnet_{name}'s forward pass at {resolution}x{resolution} raised {run.error}"
    macs = run.macs
    published = spec.data()["table2"][name]["flops"]
    ratio = macs / spec.published(published)[0]
    low, high = spec.table2_macs_interval(name)
    assert low <= macs <= high, (
        f"efficientnet_{name} at {resolution}x{resolution}: {macs / 1e9:.3f}B multiply-accumulates, "
        f"{ratio:.3f} times Table 2's {published} FLOPs (allowed: {low / 1e9:.3f}B to {high / 1e9:.3f}B)"
    )
