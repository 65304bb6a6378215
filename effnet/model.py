"""EfficientNet B0-B7 (Tan & Le, 2019, arXiv:1905.11946), plus B8 and L2.

The module reads top to bottom like the network: the base architecture as data,
the conv-BN-SiLU block, squeeze-and-excitation, stochastic depth, the MBConv
block, compound scaling, and the model in two forms (``EfficientNet`` and the
plain ``nn.Sequential`` of ``EfficientNetSequential``) that compute the same
function.  Parameter and buffer order matches timm's ``efficientnet_bN`` and
torchvision's ``efficientnet_bN``, so their state_dicts load by position.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from numbers import Integral, Real
from typing import NamedTuple

import torch
from torch import Tensor, nn

__all__ = [
    "VARIANTS",
    "EfficientNet",
    "EfficientNetSequential",
    "MBConv",
    "SEBlock",
    "StochasticDepth",
    "Variant",
    "conv_block",
    "create_stage",
    "depths",
    "efficientnet_b0",
    "efficientnet_b1",
    "efficientnet_b2",
    "efficientnet_b3",
    "efficientnet_b4",
    "efficientnet_b5",
    "efficientnet_b6",
    "efficientnet_b7",
    "efficientnet_b8",
    "efficientnet_l2",
    "efficientnet_scaler",
    "kernel_sizes",
    "mbconv1",
    "mbconv6",
    "ps",
    "scale_width",
    "stochastic_depth_schedule",
    "strides",
    "widths",
]

# --- The base network, EfficientNet-B0 (paper, Table 1) ----------------------
# widths: stem, the seven MBConv stages, the head conv.  depths, kernel_sizes,
# strides: one entry per MBConv stage.  Stage 1 is MBConv1, the rest MBConv6.
widths = [32, 16, 24, 40, 80, 112, 192, 320, 1280]
depths = [1, 2, 2, 3, 3, 4, 1]
kernel_sizes = [3, 3, 5, 3, 5, 5, 3]
strides = [1, 2, 2, 2, 1, 2, 1]
expansions = [1, 6, 6, 6, 6, 6, 6]
# SE reduction r is relative to the block's expanded channels, so that the
# squeezed width is n_in / 4 (the paper's se_ratio 0.25 of the block input).
se_reductions = [4, 24, 24, 24, 24, 24, 24]

DROP_PATH_RATE = 0.2  # the paper's reference code: drop_connect_rate for all variants

# Per-stage stochastic-depth probability of each stage's first block in B0.
# Kept for the tutorial's API; the network itself uses the per-block schedule
# of `stochastic_depth_schedule` (probability rising linearly with block index).
ps = [DROP_PATH_RATE * sum(depths[:i]) / sum(depths) for i in range(len(depths))]


class Variant(NamedTuple):
    """A named member of the family: compound-scaling factors and training defaults."""

    name: str
    w_factor: float
    d_factor: float
    resolution: int  # native input resolution (square)
    drop_rate: float  # classifier dropout


# The reference code's efficientnet_params; b8 and l2 as in timm.
VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("b0", 1.0, 1.0, 224, 0.2),
        Variant("b1", 1.0, 1.1, 240, 0.2),
        Variant("b2", 1.1, 1.2, 260, 0.3),
        Variant("b3", 1.2, 1.4, 300, 0.3),
        Variant("b4", 1.4, 1.8, 380, 0.4),
        Variant("b5", 1.6, 2.2, 456, 0.4),
        Variant("b6", 1.8, 2.6, 528, 0.5),
        Variant("b7", 2.0, 3.1, 600, 0.5),
        Variant("b8", 2.2, 3.6, 672, 0.5),
        Variant("l2", 4.3, 5.3, 800, 0.5),
    )
}

# Refuse models larger than this before allocating them (L2 has 480M parameters).
MAX_PARAMETERS = 1_000_000_000


# --- Argument checks: raised at the boundary, naming the argument -------------
def _check_factor(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    try:
        as_float = float(value)
    except OverflowError:  # an int beyond float range, e.g. 10**400
        as_float = math.inf
    if not (math.isfinite(as_float) and as_float > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return as_float


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_probability(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a probability in [0, 1), got {value!r}")
    try:
        as_float = float(value)
    except OverflowError:  # an int beyond float range, e.g. 10**400
        as_float = math.inf
    if not 0 <= as_float < 1:  # NaN fails this too
        raise ValueError(f"{name} must be a probability in [0, 1), got {value!r}")
    return as_float


def _check_size(what: str, count: int) -> None:
    if count > MAX_PARAMETERS:
        raise ValueError(f"{what} would have {count:,} parameters, more than the limit of {MAX_PARAMETERS:,}")


def _se_parameter_count(c: int, r: int) -> int:
    rd = max(1, c // r)
    return (c * rd + rd) + (rd * c + c)


def _block_parameter_count(n_in: int, n_out: int, expansion: int, k: int, r: int) -> int:
    """Closed-form parameter count of an MBConv block (BN: weight and bias)."""
    e = n_in * expansion
    expand = 0 if expansion == 1 else n_in * e + 2 * e
    return expand + e * k * k + 2 * e + _se_parameter_count(e, r) + e * n_out + 2 * n_out


# --- Blocks --------------------------------------------------------------------
# torch.jit does not re-export these for type checkers; TorchScript knows them by identity.
_is_scripting: Callable[[], bool] = torch.jit.is_scripting  # type: ignore[attr-defined]
_is_tracing: Callable[[], bool] = torch.jit.is_tracing  # type: ignore[attr-defined]


class SiLU(nn.SiLU):
    """``nn.SiLU`` that overwrites its input when autograd is off.

    Each one follows a convolution or BN, whose output no one else reads (their backward needs
    their input), so in inference it saves an allocation per layer, as timm's in-place SiLU does.
    Under autograd in place would cost a copy of the input for the backward, so it is not done.
    """

    def forward(self, x: Tensor) -> Tensor:
        # Not while tracing either: torch.jit.trace checks its graph by tracing again without grad.
        return nn.functional.silu(x, inplace=not (torch.is_grad_enabled() or _is_tracing()))


def conv_block(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    stride: int = 1,
    padding: int = 0,
    groups: int = 1,
    bias: bool = False,
    bn: bool = True,
    act: bool = True,
) -> nn.Sequential:
    """Conv2d, then BatchNorm2d (or Identity), then SiLU (or Identity)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=bias),
        nn.BatchNorm2d(out_channels) if bn else nn.Identity(),
        SiLU() if act else nn.Identity(),
    )


class GlobalAvgPool(nn.Module):
    """The mean of each channel over the spatial dimensions, as an (N, C, 1, 1) map.

    The function of ``nn.AdaptiveAvgPool2d(1)``, computed as timm's SE computes it: on a
    channels-last input the adaptive pool restrides its result (one more ``as_strided`` per call,
    and an ``AsStridedBackward`` with a zero-filled buffer in training).
    """

    def forward(self, x: Tensor) -> Tensor:
        return x.mean((2, 3), keepdim=True)


class SEBlock(nn.Module):
    """Squeeze-and-excitation: rescale each channel by a gate in (0, 1).

    The squeeze is the global *average* (paper, after Hu et al. 2018); the
    excitation squeezes ``c`` channels to ``max(1, c // r)`` and back.
    """

    def __init__(self, c: int, r: int = 24) -> None:
        super().__init__()
        c = _check_int("c", c, 1)
        r = _check_int("r", r, 1)
        _check_size(f"SEBlock(c={c!r}, r={r!r})", _se_parameter_count(c, r))
        self.squeeze = GlobalAvgPool()
        self.excitation = nn.Sequential(
            nn.Conv2d(c, max(1, c // r), kernel_size=1),
            SiLU(),
            nn.Conv2d(max(1, c // r), c, kernel_size=1),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        gate: Tensor = self.excitation(self.squeeze(x))
        return x * gate


class StochasticDepth(nn.Module):
    """Drop the whole residual branch of a sample with probability ``p`` (Huang et al. 2016).

    In training, each sample's branch is kept or zeroed as a whole and the
    survivors are scaled by 1 / (1 - p), so the expected output is unchanged;
    in eval mode this is the identity.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = _check_probability("p", p)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        # Same draws, in the same order, as timm's drop_path: one Bernoulli per sample.
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class MBConv(nn.Module):
    """Mobile inverted bottleneck: expand (1x1), depthwise (k x k), SE, project (1x1).

    The residual connection exists exactly when ``stride == 1`` and
    ``n_in == n_out``; its branch is regularised by stochastic depth with
    probability ``dropout`` (the tutorial's name for the argument).
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        expansion: int,
        kernel_size: int = 3,
        stride: int = 1,
        r: int = 24,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        n_in = _check_int("n_in", n_in, 1)
        n_out = _check_int("n_out", n_out, 1)
        expansion = _check_int("expansion", expansion, 1)
        kernel_size = _check_int("kernel_size", kernel_size, 1)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size!r}")
        if isinstance(stride, bool) or stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride!r}")
        dropout = _check_probability("dropout", dropout)
        r = _check_int("r", r, 1)
        _check_size(
            f"MBConv(n_in={n_in!r}, n_out={n_out!r}, expansion={expansion!r}, kernel_size={kernel_size!r}, r={r!r})",
            _block_parameter_count(n_in, n_out, expansion, kernel_size, r),
        )

        self.skip_connection = stride == 1 and n_in == n_out
        expanded = n_in * expansion
        self.expand_pw = nn.Identity() if expansion == 1 else conv_block(n_in, expanded, kernel_size=1)
        self.depthwise = conv_block(
            expanded, expanded, kernel_size, stride=stride, padding=(kernel_size - 1) // 2, groups=expanded
        )
        self.se = SEBlock(expanded, r=r)
        self.reduce_pw = conv_block(expanded, n_out, kernel_size=1, act=False)
        # Stochastic depth only makes sense on a residual branch.
        self.dropout = StochasticDepth(dropout) if self.skip_connection else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.reduce_pw(self.se(self.depthwise(self.expand_pw(x))))
        if self.skip_connection:
            out = self.dropout(out) + x
        return out


def mbconv1(n_in: int, n_out: int, kernel_size: int = 3, stride: int = 1, r: int = 24, dropout: float = 0.1) -> MBConv:
    return MBConv(n_in, n_out, 1, kernel_size=kernel_size, stride=stride, r=r, dropout=dropout)


def mbconv6(n_in: int, n_out: int, kernel_size: int = 3, stride: int = 1, r: int = 24, dropout: float = 0.1) -> MBConv:
    return MBConv(n_in, n_out, 6, kernel_size=kernel_size, stride=stride, r=r, dropout=dropout)


# --- Compound scaling ----------------------------------------------------------
def scale_width(w: float, w_factor: float) -> int:
    """Scale a channel count and round it to a multiple of 8.

    Round to the nearest multiple of 8, but never below 8 and never more than
    10% below the exact scaled width (the reference code's round_filters).
    """
    w = _check_factor("w", w)
    w_factor = _check_factor("w_factor", w_factor)
    scaled = w * w_factor
    if not math.isfinite(scaled):
        raise ValueError(f"w * w_factor must be finite, got w={w!r}, w_factor={w_factor!r}")
    new_w = max(8, int(scaled + 4) // 8 * 8)
    if new_w < 0.9 * scaled:
        new_w += 8
    return new_w


def efficientnet_scaler(w_factor: float = 1, d_factor: float = 1) -> tuple[list[int], list[int]]:
    """Widths (9) and depths (7) of the network scaled by the two factors."""
    w_factor = _check_factor("w_factor", w_factor)
    d_factor = _check_factor("d_factor", d_factor)
    if not math.isfinite(d_factor * max(depths)):
        raise ValueError(f"d_factor is too large: the scaled depths overflow, got {d_factor!r}")
    scaled_widths = [scale_width(w, w_factor) for w in widths]
    scaled_depths = [math.ceil(d_factor * d) for d in depths]
    return scaled_widths, scaled_depths


def stochastic_depth_schedule(num_blocks: int, drop_path_rate: float) -> list[float]:
    """Per-block drop probability, rising linearly with the global block index from 0."""
    return [drop_path_rate * i / num_blocks for i in range(num_blocks)]


def create_stage(
    n_in: int,
    n_out: int,
    num_layers: int,
    layer: Callable[..., nn.Module] = mbconv6,
    kernel_size: int = 3,
    stride: int = 1,
    r: int = 24,
    ps: float | Sequence[float] = 0,
) -> nn.Sequential:
    """``num_layers`` blocks; the first changes channels and carries the stride.

    ``ps`` is one stochastic-depth probability for every block, or one per block.
    """
    num_layers = _check_int("num_layers", num_layers, 1)
    if not callable(layer):
        raise TypeError(f"layer must be a callable that builds a block, got {layer!r}")
    rates = _stage_rates(ps, num_layers)

    def block(i: int) -> nn.Module:
        return layer(
            n_in if i == 0 else n_out,
            n_out,
            kernel_size=kernel_size,
            stride=stride if i == 0 else 1,
            r=r,
            dropout=rates(i),
        )

    blocks = [block(i) for i in range(min(num_layers, 2))]
    # The blocks after the first are alike: refuse a stage too large from the first two.
    count = [sum(p.numel() for p in b.parameters()) for b in blocks]
    _check_size(
        f"create_stage(n_in={n_in!r}, n_out={n_out!r}, num_layers={num_layers!r})",
        count[0] + (num_layers - 1) * count[-1],
    )
    return nn.Sequential(*blocks, *(block(i) for i in range(2, num_layers)))


def _stage_rates(ps: object, num_layers: int) -> Callable[[int], float]:
    """The stochastic-depth probability of each block of a stage, from ``ps`` (one or a list)."""
    if isinstance(ps, Real) and not isinstance(ps, bool):
        rate = _check_probability("ps", ps)
        return lambda _i: rate
    if not isinstance(ps, Iterable) or isinstance(ps, (str, bytes)):
        raise TypeError(f"ps must be a probability or a sequence of {num_layers} probabilities, got {ps!r}")
    rates = list(ps)
    if len(rates) != num_layers:
        raise ValueError(f"ps must be a number or {num_layers} numbers, got {ps!r}")
    try:
        checked = [_check_probability("ps", p) for p in rates]
    except (TypeError, ValueError) as e:
        raise type(e)(f"ps must hold {num_layers} probabilities in [0, 1), got {ps!r}") from None
    return lambda i: checked[i]


def _parameter_count(scaled_widths: list[int], scaled_depths: list[int], n_classes: int) -> int:
    """Closed-form parameter count of the network, to refuse huge models before building them."""

    def bn(c: int) -> int:
        return 2 * c

    block = _block_parameter_count

    total = 3 * scaled_widths[0] * 9 + bn(scaled_widths[0])
    for i, d in enumerate(scaled_depths):
        n_in, n_out = scaled_widths[i], scaled_widths[i + 1]
        args = (expansions[i], kernel_sizes[i], se_reductions[i])
        total += block(n_in, n_out, *args) + (d - 1) * block(n_out, n_out, *args)
    total += scaled_widths[-2] * scaled_widths[-1] + bn(scaled_widths[-1])
    return total + scaled_widths[-1] * n_classes + n_classes


def _efficientnet_layers(
    w_factor: float, d_factor: float, n_classes: int, drop_rate: float, drop_path_rate: float
) -> list[nn.Module]:
    """The eleven top-level modules shared by both forms of the network."""
    n_classes = _check_int("n_classes", n_classes, 1)
    drop_rate = _check_probability("drop_rate", drop_rate)
    drop_path_rate = _check_probability("drop_path_rate", drop_path_rate)
    scaled_widths, scaled_depths = efficientnet_scaler(w_factor, d_factor)
    count = _parameter_count(scaled_widths, scaled_depths, n_classes)
    if count > MAX_PARAMETERS:
        raise ValueError(
            f"EfficientNet(w_factor={w_factor!r}, d_factor={d_factor!r}, n_classes={n_classes!r}) "
            f"would have {count:,} parameters, more than the limit of {MAX_PARAMETERS:,}"
        )

    rates = stochastic_depth_schedule(sum(scaled_depths), drop_path_rate)
    stages = []
    for i, d in enumerate(scaled_depths):
        first = sum(scaled_depths[:i])
        stages.append(
            create_stage(
                scaled_widths[i],
                scaled_widths[i + 1],
                d,
                layer=mbconv1 if expansions[i] == 1 else mbconv6,
                kernel_size=kernel_sizes[i],
                stride=strides[i],
                r=se_reductions[i],
                ps=rates[first : first + d],
            )
        )
    return [
        conv_block(3, scaled_widths[0], stride=2, padding=1),
        *stages,
        conv_block(scaled_widths[-2], scaled_widths[-1], kernel_size=1),
        nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()),
        nn.Sequential(nn.Dropout(drop_rate), nn.Linear(scaled_widths[-1], n_classes)),
    ]


@torch.fx.wrap  # a call in the traced graph: fx cannot branch on a traced shape
def _check_input(x: Tensor) -> None:
    # TorchScript cannot compile the message, and a tracer would record the check as a constant.
    if _is_scripting() or _is_tracing():
        return
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a Tensor of shape (N, 3, H, W), got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(f"x must be a batch of RGB images of shape (N, 3, H, W), got shape {tuple(x.shape)}")


# --- The network ---------------------------------------------------------------
class EfficientNet(nn.Module):
    """EfficientNet with width and depth scaled by ``w_factor`` and ``d_factor``.

    ``drop_rate`` is the dropout before the classifier; ``drop_path_rate`` the
    stochastic-depth probability of the last block (block i of N gets
    ``drop_path_rate * i / N``).
    """

    def __init__(
        self,
        w_factor: float = 1,
        d_factor: float = 1,
        n_classes: int = 1000,
        *,
        drop_rate: float = 0.2,
        drop_path_rate: float = DROP_PATH_RATE,
    ) -> None:
        super().__init__()
        stem, *stages, pre, pool_flatten, head = _efficientnet_layers(
            w_factor, d_factor, n_classes, drop_rate, drop_path_rate
        )
        self.stem = stem
        self.stages = nn.Sequential(*stages)
        self.pre = pre
        self.pool_flatten = pool_flatten
        self.head = head

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x)
        x = self.stem(x)
        x = self.stages(x)
        x = self.pre(x)
        x = self.pool_flatten(x)
        logits: Tensor = self.head(x)
        return logits

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        """The outputs of the seven MBConv stages (strides 2, 4, 8, 16, 16, 32, 32), for backbones."""
        _check_input(x)
        x = self.stem(x)
        outputs = []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs


def EfficientNetSequential(  # noqa: N802 - the tutorial's name
    w_factor: float = 1,
    d_factor: float = 1,
    n_classes: int = 1000,
    *,
    drop_rate: float = 0.2,
    drop_path_rate: float = DROP_PATH_RATE,
) -> nn.Sequential:
    """The same network as ``EfficientNet`` as one ``nn.Sequential`` of 11 children."""
    return nn.Sequential(*_efficientnet_layers(w_factor, d_factor, n_classes, drop_rate, drop_path_rate))


# --- Named variants ---------------------------------------------------------------
def _named_variant(name: str) -> Callable[..., EfficientNet]:
    v = VARIANTS[name]

    def build(
        n_classes: int = 1000, *, drop_rate: float | None = None, drop_path_rate: float = DROP_PATH_RATE
    ) -> EfficientNet:
        return EfficientNet(
            v.w_factor,
            v.d_factor,
            n_classes,
            drop_rate=v.drop_rate if drop_rate is None else drop_rate,
            drop_path_rate=drop_path_rate,
        )

    build.__name__ = build.__qualname__ = f"efficientnet_{name}"
    build.__doc__ = (
        f"EfficientNet-{name.upper()}: width x{v.w_factor}, depth x{v.d_factor}, "
        f"native resolution {v.resolution}, classifier dropout {v.drop_rate} by default."
    )
    return build


efficientnet_b0 = _named_variant("b0")
efficientnet_b1 = _named_variant("b1")
efficientnet_b2 = _named_variant("b2")
efficientnet_b3 = _named_variant("b3")
efficientnet_b4 = _named_variant("b4")
efficientnet_b5 = _named_variant("b5")
efficientnet_b6 = _named_variant("b6")
efficientnet_b7 = _named_variant("b7")
efficientnet_b8 = _named_variant("b8")
efficientnet_l2 = _named_variant("l2")
