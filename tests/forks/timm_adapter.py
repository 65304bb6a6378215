"""timm's EfficientNet behind the tutorial's API: a fork the conformance suite can hold to the spec.

timm is the suite's own reference (the spec's "timm", `expected.toml`, the generator of ARCH-5), so
this verdict says what the suite makes of the implementation it was written against.  Every module
of the network is timm's own, built by timm's own code (`timm.models.efficientnet`):
`EfficientNet(w, d, n)` is what `_gen_efficientnet("efficientnet_b0", channel_multiplier=w,
depth_multiplier=d, num_classes=n)` builds (the generator behind every `efficientnet_bN`, timm's
path to any factors); `efficientnet_bN` is timm's `efficientnet_bN`; `MBConv` is timm's
`DepthwiseSeparableConv` (expansion 1, as timm builds EfficientNet's first stage) or
`InvertedResidual`, each with timm's `SqueezeExcite`, the block arguments timm's
`EfficientNetBuilder` gives them (swish, BatchNorm2d, which the blocks turn into `BatchNormAct2d`)
and stochastic-depth rate `dropout`; `SEBlock` is `SqueezeExcite`; `conv_block` is a `Conv2d` and
timm's `BatchNormAct2d`, which applies the activation itself; widths are rounded by timm's
`round_channels` (`make_divisible`), and the scaler reads the widths and depths off the network timm
builds.  This adapter only re-wires the modules into the tutorial's layout (children stem, stages,
pre, pool_flatten, head, as timm's own `EfficientNet.as_sequential` orders them) and fixes nothing:
the SE width (timm rounds `c / r` to the nearest, Python's `round`), a block's expanded width
(`make_divisible(n_in * e)`), and the normalisation modules are timm's.

The adapter's own glue, each noted where it is: the tutorial's `r` (timm's SE takes a ratio of its
input channels: `rd_ratio = 1 / r`, which for the tutorial's `r = 4 x expansion` is exactly the
`se_ratio / exp_ratio` timm's builder passes); `conv_block` (timm has no conv-BN-activation helper
with the tutorial's arguments: `Conv2d`, then timm's `BatchNormAct2d`, or the bare activation when
`bn=False`); `create_stage` (timm builds the stages in `EfficientNetBuilder`); the dropout rates
(timm's factories default to `drop_rate=0` and `drop_path_rate=0`; the rates for training are in
each factory's comment, "drop_rate should be 0.2, drop_path_rate should be 0.2" for B0, and are
passed here, transcribed in `TRAINING_DROP_RATES`).  The glue that is the same for every library
(the layout, `mbconv1`/`mbconv6`, `create_stage`) is tests/forks/tutorial_layout.py.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache, partial

import torch
from timm.layers import BatchNormAct2d, create_act_layer
from timm.models import efficientnet as timm_effnet
from timm.models._efficientnet_blocks import DepthwiseSeparableConv, InvertedResidual, SqueezeExcite
from timm.models._efficientnet_builder import resolve_act_layer, resolve_bn_args, round_channels
from torch import Tensor, nn

from tests.forks.tutorial_layout import TutorialLayout, expansion_blocks, stage_builder

LIBRARY = "timm"
# What _gen_efficientnet gives every block: act_layer=resolve_act_layer(kwargs, 'swish') and
# norm_layer=partial(nn.BatchNorm2d, **resolve_bn_args(kwargs)), with no kwargs.
_ACT = resolve_act_layer({}, "swish")
_NORM = partial(nn.BatchNorm2d, **resolve_bn_args({}))
DROP_PATH_RATE = 0.2  # "drop_path_rate should be 0.2" (timm's efficientnet_bN comments, every variant)
# "drop_rate should be ..." in the comment of each of timm's efficientnet_bN (transcribed).
TRAINING_DROP_RATES = {
    "b0": 0.2,
    "b1": 0.2,
    "b2": 0.3,
    "b3": 0.3,
    "b4": 0.4,
    "b5": 0.4,
    "b6": 0.5,
    "b7": 0.5,
    "b8": 0.5,
    "l2": 0.5,
}


def _timm_model(
    w_factor: float, d_factor: float, n_classes: int, drop_rate: float, drop_path_rate: float
) -> timm_effnet.EfficientNet:
    """What timm's efficientnet_b0 builds, at other factors (the generator behind efficientnet_bN)."""
    return timm_effnet._gen_efficientnet(
        "efficientnet_b0",
        channel_multiplier=w_factor,
        depth_multiplier=d_factor,
        num_classes=n_classes,
        drop_rate=drop_rate,
        drop_path_rate=drop_path_rate,
    )


def _block_out(block: nn.Module) -> int:
    out: int = block.feature_info("bottleneck")["num_chs"]  # timm's blocks say their output width
    return out


@lru_cache(maxsize=64)
def _built(
    w_factor: float, d_factor: float
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """Widths (stem, 7 stages, head), depths, kernel sizes and strides of the network timm builds at
    these factors, read off it (built on the meta device: only its structure is read)."""
    with torch.device("meta"):
        model = _timm_model(w_factor, d_factor, 1, 0.0, 0.0)
    stages = list(model.blocks)
    widths = (model.conv_stem.out_channels, *(_block_out(s[-1]) for s in stages), model.num_features)
    first = [s[0] for s in stages]
    return (
        widths,
        tuple(len(s) for s in stages),
        tuple(b.conv_dw.kernel_size[0] for b in first),
        tuple(b.conv_dw.stride[0] for b in first),
    )


# --- The tables, read off timm's B0 ----------------------------------------------------------------
widths = list(_built(1.0, 1.0)[0])
depths = list(_built(1.0, 1.0)[1])
kernel_sizes = list(_built(1.0, 1.0)[2])
strides = list(_built(1.0, 1.0)[3])
# B0's stochastic-depth probability at the first block of each stage, as timm's builder computes it
# (drop_path_rate * block_idx / block_count).
ps = [DROP_PATH_RATE * sum(depths[:i]) / sum(depths) for i in range(len(depths))]


# --- Blocks -----------------------------------------------------------------------------------------
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
    """The adapter's own (timm has no such helper): Conv2d with the given arguments, then timm's
    BatchNormAct2d with swish (applied by the norm layer itself, as in timm's stem and head), or,
    without BN, the bare activation."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=bias)
    if bn:
        return nn.Sequential(conv, BatchNormAct2d(out_channels, apply_act=act, act_layer=_ACT))
    return nn.Sequential(conv, create_act_layer(_ACT, inplace=True)) if act else nn.Sequential(conv)


def SEBlock(c: int, r: int = 24) -> nn.Module:  # noqa: N802 - the tutorial's name
    """timm's SqueezeExcite with swish (as the blocks build it), squeezing c channels to
    round(c / r): the tutorial's r read as timm's rd_ratio = 1 / r."""
    return SqueezeExcite(c, rd_ratio=1 / r, act_layer=_ACT)


def MBConv(  # noqa: N802 - the tutorial's name
    n_in: int, n_out: int, expansion: int, kernel_size: int = 3, stride: int = 1, r: int = 24, dropout: float = 0.1
) -> nn.Module:
    """timm's DepthwiseSeparableConv (expansion 1) or InvertedResidual with the arguments timm's
    EfficientNetBuilder gives EfficientNet's blocks, the SE ratio 1 / r of the expanded channels
    (the builder's se_ratio / exp_ratio for the tutorial's r = 4 x expansion) and stochastic-depth
    rate `dropout`."""
    common = dict(
        dw_kernel_size=kernel_size,
        stride=stride,
        act_layer=_ACT,
        norm_layer=_NORM,
        se_layer=partial(SqueezeExcite, rd_ratio=1 / r),
        drop_path_rate=dropout,
    )
    if expansion == 1:
        return DepthwiseSeparableConv(n_in, n_out, **common)
    return InvertedResidual(n_in, n_out, exp_ratio=expansion, **common)


mbconv1, mbconv6 = expansion_blocks(MBConv)


# --- Scaling: timm's rounding -------------------------------------------------------------------------
def scale_width(w: float, w_factor: float) -> int:
    """timm's round_channels (make_divisible by 8, at most 10% down), as _gen_efficientnet uses it."""
    out: int = round_channels(w, multiplier=w_factor, divisor=8)
    return out


def efficientnet_scaler(w_factor: float = 1, d_factor: float = 1) -> tuple[list[int], list[int]]:
    """The widths (stem, 7 stages, head) and depths of the network timm builds at these factors."""
    scaled, scaled_depths, _, _ = _built(float(w_factor), float(d_factor))
    return list(scaled), list(scaled_depths)


# The adapter's own (timm builds stages in EfficientNetBuilder): the first block changes the width and
# carries the stride, as timm's builder does.
create_stage = stage_builder(mbconv6)


# --- The network: timm's modules in the tutorial's layout ---------------------------------------------
def _parts(model: timm_effnet.EfficientNet) -> list[nn.Module]:
    """stem, the 7 stages, pre, pool_flatten, head of a timm EfficientNet, in the order of timm's
    EfficientNet.as_sequential: conv_stem and bn1 (a BatchNormAct2d: BN and swish), the blocks'
    stages, conv_head and bn2, global_pool (SelectAdaptivePool2d, average and flatten), and
    Dropout(drop_rate) with the classifier (forward_head's F.dropout, as a module)."""
    return [
        nn.Sequential(model.conv_stem, model.bn1),
        *model.blocks,
        nn.Sequential(model.conv_head, model.bn2),
        model.global_pool,
        nn.Sequential(nn.Dropout(model.drop_rate), model.classifier),
    ]


class EfficientNet(TutorialLayout):
    def __init__(
        self,
        w_factor: float = 1,
        d_factor: float = 1,
        n_classes: int = 1000,
        *,
        drop_rate: float = TRAINING_DROP_RATES["b0"],
        drop_path_rate: float = DROP_PATH_RATE,
    ) -> None:
        super().__init__(_parts(_timm_model(w_factor, d_factor, n_classes, drop_rate, drop_path_rate)))

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        """The seven stage outputs (what timm's features_only model returns at every stage)."""
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
    drop_rate: float = TRAINING_DROP_RATES["b0"],
    drop_path_rate: float = DROP_PATH_RATE,
) -> nn.Sequential:
    return nn.Sequential(*_parts(_timm_model(w_factor, d_factor, n_classes, drop_rate, drop_path_rate)))


def _named(name: str) -> Callable[..., EfficientNet]:
    factory = getattr(timm_effnet, f"efficientnet_{name}")

    def build(
        n_classes: int = 1000, *, drop_rate: float | None = None, drop_path_rate: float = DROP_PATH_RATE
    ) -> EfficientNet:
        """timm's efficientnet_<name> with the training rates of its comment unless given."""
        rate = TRAINING_DROP_RATES[name] if drop_rate is None else drop_rate
        model = factory(num_classes=n_classes, drop_rate=rate, drop_path_rate=drop_path_rate)
        return EfficientNet.wrapping(_parts(model))

    build.__name__ = build.__qualname__ = f"efficientnet_{name}"
    return build


efficientnet_b0 = _named("b0")
efficientnet_b1 = _named("b1")
efficientnet_b2 = _named("b2")
efficientnet_b3 = _named("b3")
efficientnet_b4 = _named("b4")
efficientnet_b5 = _named("b5")
efficientnet_b6 = _named("b6")
efficientnet_b7 = _named("b7")
efficientnet_b8 = _named("b8")
efficientnet_l2 = _named("l2")

__all__ = [
    "EfficientNet",
    "EfficientNetSequential",
    "MBConv",
    "SEBlock",
    "conv_block",
    "create_stage",
    "depths",
    "efficientnet_scaler",
    "kernel_sizes",
    "mbconv1",
    "mbconv6",
    "ps",
    "scale_width",
    "strides",
    "widths",
    *(f"efficientnet_{name}" for name in TRAINING_DROP_RATES),
]
