"""Hypothesis strategies for the property tests, in one place.

Sizes are bounded so that every example stays cheap on a CPU: whole models are built
with ``w_factor`` in [0.1, 0.5] (0.01 for the residual rule) and ``d_factor`` in [0.1, 0.6]
(widths 8-160 before the head, one to three blocks per stage), images are at most 64 px,
batches at most 4, and single blocks have at most 24 input channels.  The scaling properties,
which build nothing, and the structure properties, which build on the meta device, range much
wider.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st

from tests.support import spec


def fewer_examples(fraction: float) -> settings:
    """Settings for an expensive property: this fraction of the active profile's max_examples
    (at least 5), so that `thorough` still runs many more than `ci`."""
    return settings(max_examples=max(5, int(settings().max_examples * fraction)))


# --- Scaling arguments (no model is built) -----------------------------------------------
# Channel counts as a user would pass them: every integer up to 4096, and the base table.
channel_counts = st.one_of(st.integers(1, 4096), st.sampled_from(spec.base_widths()))

# Scaling factors in [0.05, 8]: arbitrary floats, the two-decimal values people write
# (1.1 is not 11/10 in binary, which is where rounding rules differ), and the variants'.
_variant_factors = sorted({v[k] for v in spec.data()["variants"].values() for k in ("w_factor", "d_factor")})
scale_factors = st.one_of(
    st.floats(0.05, 8.0, allow_nan=False, allow_infinity=False, allow_subnormal=False),
    st.integers(5, 800).map(lambda n: n / 100),
    st.sampled_from(_variant_factors),
)

# --- Whole models on the meta device (structure only): any factors a user might pass ------
# Width factors 0.05-5 and depth factors 0.05-6 (beyond L2's 4.3 and 5.3; 690M parameters at the
# top, shapes without data), as arbitrary floats and as the two-decimal values people write.
structure_width_factors = st.one_of(
    st.floats(0.05, 5.0, allow_nan=False, allow_subnormal=False), st.integers(5, 500).map(lambda n: n / 100)
)
structure_depth_factors = st.one_of(
    st.floats(0.05, 6.0, allow_nan=False, allow_subnormal=False), st.integers(5, 600).map(lambda n: n / 100)
)
structure_class_counts = st.integers(1, 2000)

# --- Whole models: small enough to build and run in tens of milliseconds -----------------
model_width_factors = st.floats(0.1, 0.5, allow_nan=False, allow_subnormal=False)
# Down to 0.01, where every width before the head is 8: the first block of a stride-1 stage then
# keeps its width and must have a residual connection (BLOCK-4 at model level).
narrow_width_factors = st.one_of(
    st.floats(0.01, 0.5, allow_nan=False, allow_subnormal=False), st.sampled_from([0.01, 0.05, 0.25])
)
model_depth_factors = st.floats(0.1, 0.6, allow_nan=False, allow_subnormal=False)
class_counts = st.integers(1, 20)
batch_sizes = st.integers(1, 4)
any_image_sizes = st.integers(1, 64)  # ARCH-6 holds for every H, W >= 1

# --- Regularisation ----------------------------------------------------------------------
drop_probabilities = st.floats(0.05, 0.9, allow_nan=False, allow_subnormal=False)
# Depth factors for the stochastic-depth schedule, whose models are built at width factor 0.01
# (8 channels per block): 7 to 16 blocks.
schedule_depth_factors = st.floats(0.1, 1.0, allow_nan=False, allow_subnormal=False)


# --- Single blocks -----------------------------------------------------------------------
@dataclass(frozen=True)
class BlockConfig:
    """Arguments of ``MBConv(n_in, n_out, expansion, kernel_size, stride, r, dropout)``.

    ``r`` is always ``4 * expansion``, the tutorial's convention (``r=4`` for MBConv1,
    ``r=24`` for MBConv6), so that SE squeezes to ``max(1, n_in // 4)`` channels (SE-2).
    """

    n_in: int
    n_out: int
    expansion: int
    kernel_size: int
    stride: int
    dropout: float = 0.0

    @property
    def r(self) -> int:
        return 4 * self.expansion

    @property
    def residual(self) -> bool:
        """BLOCK-4: the block adds its input exactly when stride is 1 and channels are kept."""
        return self.stride == 1 and self.n_in == self.n_out

    def build(self, impl: Any) -> Any:
        return impl.MBConv(self.n_in, self.n_out, self.expansion, self.kernel_size, self.stride, self.r, self.dropout)


MIN_NETWORK_CHANNELS: int = spec.data()["scaling"]["width_min"]  # SCALE-1: no EfficientNet has a narrower layer


@st.composite
def block_configs(
    draw: st.DrawFn,
    *,
    residual: bool | None = None,
    dropout: st.SearchStrategy[float] | None = None,
    min_channels: int = 1,
) -> BlockConfig:
    """MBConv configurations with ``min_channels``-24 channels; ``residual`` forces (True) or
    forbids (False) the residual connection, None leaves it to chance (about half of the examples).
    ``min_channels=MIN_NETWORK_CHANNELS`` keeps to blocks that occur in some EfficientNet, for tests
    whose clause is not about the SE width (SE-2: ``max(1, n_in // 4)``, 0 for a naive n_in < 4)."""
    n_in = draw(st.integers(min_channels, 24))
    stride = draw(st.sampled_from([1, 2]))
    same = draw(st.booleans()) if residual is None else residual
    if residual is True:
        stride = 1
    if same:
        n_out = n_in
    else:
        n_outs = st.integers(min_channels, 24)
        n_out = draw(n_outs.filter(lambda n: n != n_in)) if stride == 1 else draw(n_outs)
    return BlockConfig(
        n_in=n_in,
        n_out=n_out,
        expansion=draw(st.sampled_from([1, 6]) | st.integers(1, 6)),
        kernel_size=draw(st.sampled_from([1, 3, 5, 7])),
        stride=stride,
        dropout=draw(dropout) if dropout is not None else 0.0,
    )


@dataclass(frozen=True)
class ConvBlockArgs:
    """Arguments of the tutorial's ``conv_block``, all given explicitly."""

    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int
    padding: int
    groups: int
    bias: bool
    bn: bool
    act: bool


@st.composite
def conv_block_args(draw: st.DrawFn) -> ConvBlockArgs:
    groups = draw(st.integers(1, 4))  # channel counts are multiples of groups, as Conv2d requires
    return ConvBlockArgs(
        in_channels=groups * draw(st.integers(1, 6)),
        out_channels=groups * draw(st.integers(1, 6)),
        kernel_size=draw(st.integers(1, 5)),
        stride=draw(st.integers(1, 3)),
        padding=draw(st.integers(0, 2)),
        groups=groups,
        bias=draw(st.booleans()),
        bn=draw(st.booleans()),
        act=draw(st.booleans()),
    )


# --- Invalid arguments (EXT-1), by the kind of argument ----------------------------------------
# "Too large" means over the 10^9-parameter limit with the other arguments at the small values the
# tests use (16 channels, w_factor 0.1): 10^10 and up for a channel count, where 10^7 would be a
# valid (and slow to build) block.
_not_numbers = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=4),
    st.sampled_from(["1", "0.5", b"1", [1], (2,), {"a": 1}, complex(1, 1), object()]),
)
_non_finite = st.sampled_from([math.nan, math.inf, -math.inf])
_non_positive = st.one_of(st.floats(max_value=0.0), st.integers(max_value=0))
_too_large_factors = st.one_of(st.floats(1e6, 1e300), st.integers(10**6, 10**20), st.just(10**400))
_too_large_counts = st.integers(10**10, 10**400)  # 10**400 does not fit a float
_not_probabilities = st.one_of(_non_finite, st.floats(max_value=-1e-9), st.floats(1.0, 1e300), st.just(10**400))

invalid_arguments: dict[str, st.SearchStrategy[Any]] = {
    "factor": st.one_of(_not_numbers, _non_finite, _non_positive),  # scale_width, efficientnet_scaler
    "model_factor": st.one_of(_not_numbers, _non_finite, _non_positive, _too_large_factors),
    "count": st.one_of(_not_numbers, _non_finite, st.integers(max_value=0), st.floats(0.5, 64.0)),  # an int >= 1
    "size": st.one_of(_not_numbers, _non_finite, st.integers(max_value=0), st.floats(0.5, 64.0), _too_large_counts),
    "classes": st.one_of(_not_numbers, _non_finite, st.integers(max_value=0), st.just(10.0), _too_large_counts),
    "kernel": st.one_of(  # odd, >= 1
        _not_numbers,
        st.integers(max_value=0),
        st.integers(1, 64).map(lambda k: 2 * k),
        st.integers(10**5, 10**400).map(lambda k: k | 1),
    ),
    "stride": st.one_of(_not_numbers, st.integers(max_value=0), st.integers(3, 100), st.just(1.5)),
    "probability": st.one_of(_not_numbers, _not_probabilities),
    # efficientnet_bN(drop_rate=None) means the variant's own rate
    "optional_probability": st.one_of(_not_numbers.filter(lambda v: v is not None), _not_probabilities),
}
