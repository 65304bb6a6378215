"""efficientnet-pytorch (lukemelas, 0.7.1) behind the tutorial's API: a fork the conformance suite
can hold to the spec.

efficientnet-pytorch is a port of the TensorFlow reference code that keeps its conventions.  Every
module of the network is the library's own, built by the library's own code: `EfficientNet(w, d, n)`
is `EfficientNet.from_name("efficientnet-b0", width_coefficient=w, depth_coefficient=d,
num_classes=n)` (the library's documented way to other factors), `efficientnet_bN` is
`EfficientNet.from_name("efficientnet-bN")`, `MBConv` is the library's `MBConvBlock` on a `BlockArgs`
with the library's B0 `GlobalParams`, and widths and depths are rounded by its `round_filters` and
`round_repeats`.  This adapter only re-wires the modules into the tutorial's layout (children stem,
stages, pre, pool_flatten, head) and fixes nothing: BatchNorm eps and momentum, TensorFlow "same"
padding (static, for the native resolution, in the models; dynamic in a block built alone, which has
no image size), the dropout rates, and the first block's stride stored as a list (`[1]`, which the
block compares with `== 1`) are the library's, so that the suite's verdict
(docs/efficientnet-pytorch-verdict.md, `python tests/forks/verdicts.py`) is about the library.

The library computes each block's drop-connect rate in `EfficientNet.forward` and passes it to the
block's `forward`; here each block is wrapped with the rate the library computes for its position
(`drop_connect_rate * idx / len(blocks)`, transcribed).  The adapter's own glue: `conv_block` (the
library has no conv-BN-activation helper: a `Conv2d` with the given padding, then `BatchNorm2d` with
the library's eps and momentum, then the library's `Swish`), `SEBlock` (the library's SE lives inside
`MBConvBlock`: its four lines are transcribed), `create_stage`, and the tables, which list the
library's block strides as numbers.  The glue that is the same for every library (the layout,
`mbconv1`/`mbconv6`, `create_stage`) is tests/forks/tutorial_layout.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from efficientnet_pytorch import model as ep_model
from efficientnet_pytorch import utils as ep
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812 - the usual alias

from tests.forks.tutorial_layout import TutorialLayout, expansion_blocks, stage_builder

LIBRARY = "efficientnet_pytorch"
_B0_BLOCKS, _B0_GLOBAL = ep.get_model_params("efficientnet-b0", None)
STEM_WIDTH, HEAD_WIDTH = 32, 1280  # hard-coded in the library's EfficientNet.__init__ (round_filters(32), (1280))

# --- The tables, read off the library's B0 block strings ------------------------------------------
widths = [STEM_WIDTH, *(b.output_filters for b in _B0_BLOCKS), HEAD_WIDTH]
depths = [b.num_repeat for b in _B0_BLOCKS]
kernel_sizes = [b.kernel_size for b in _B0_BLOCKS]
strides = [b.stride[0] for b in _B0_BLOCKS]  # the library decodes 's11' as [1]
# B0's drop-connect rate at the first block of each stage, as EfficientNet.forward computes it.
ps = [_B0_GLOBAL.drop_connect_rate * sum(depths[:i]) / sum(depths) for i in range(len(depths))]


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
    """Conv2d with the given padding, BatchNorm2d as the library makes it (momentum = 1 -
    batch_norm_momentum, eps = batch_norm_epsilon), the library's Swish (nn.SiLU)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=bias),
        nn.BatchNorm2d(out_channels, momentum=1 - _B0_GLOBAL.batch_norm_momentum, eps=_B0_GLOBAL.batch_norm_epsilon)
        if bn
        else nn.Identity(),
        ep.Swish() if act else nn.Identity(),
    )


class SEBlock(nn.Module):
    """The squeeze-and-excitation of the library's MBConvBlock (its _se_reduce, _se_expand and the
    four lines of its forward), squeezing c channels to max(1, int(c / r))."""

    def __init__(self, c: int, r: int = 24) -> None:
        super().__init__()
        conv2d = ep.get_same_padding_conv2d(image_size=(1, 1))
        squeezed = max(1, int(c / r))
        self._se_reduce = conv2d(in_channels=c, out_channels=squeezed, kernel_size=1)
        self._se_expand = conv2d(in_channels=squeezed, out_channels=c, kernel_size=1)
        self._swish = ep.MemoryEfficientSwish()

    def forward(self, x: Tensor) -> Tensor:
        x_squeezed = F.adaptive_avg_pool2d(x, 1)
        x_squeezed = self._se_reduce(x_squeezed)
        x_squeezed = self._swish(x_squeezed)
        x_squeezed = self._se_expand(x_squeezed)
        return torch.sigmoid(x_squeezed) * x


class DropConnectBlock(nn.Module):
    """The library's MBConvBlock, called as EfficientNet.forward calls it: with its drop-connect rate."""

    def __init__(self, block: ep_model.MBConvBlock, drop_connect_rate: float) -> None:
        super().__init__()
        self.block = block
        self.drop_connect_rate = drop_connect_rate

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.block(x, drop_connect_rate=self.drop_connect_rate)
        return out


def MBConv(  # noqa: N802 - the tutorial's name
    n_in: int, n_out: int, expansion: int, kernel_size: int = 3, stride: int = 1, r: int = 24, dropout: float = 0.1
) -> nn.Module:
    """The library's MBConvBlock with B0's global parameters, SE ratio expansion / r (0.25 for the
    tutorial's r = 4 x expansion) and drop-connect rate `dropout`.  No image size: the library then
    pads "same" dynamically.  The stride is given as a number, as the library gives it to the blocks
    after a stage's first."""
    args = ep.BlockArgs(
        num_repeat=1,
        kernel_size=kernel_size,
        stride=stride,
        expand_ratio=expansion,
        input_filters=n_in,
        output_filters=n_out,
        se_ratio=expansion / r,
        id_skip=True,
    )
    return DropConnectBlock(ep_model.MBConvBlock(args, _B0_GLOBAL, image_size=None), dropout)


mbconv1, mbconv6 = expansion_blocks(MBConv)


# --- Scaling: the library's round_filters and round_repeats -------------------------------------------
def _global(w_factor: float, d_factor: float) -> Any:
    return _B0_GLOBAL._replace(width_coefficient=w_factor, depth_coefficient=d_factor)


def scale_width(w: float, w_factor: float) -> int:
    result: int = ep.round_filters(w, _global(w_factor, 1.0))
    return result


def efficientnet_scaler(w_factor: float = 1, d_factor: float = 1) -> tuple[list[int], list[int]]:
    g = _global(w_factor, d_factor)
    scaled = [ep.round_filters(w, g) for w in widths]
    return scaled, [ep.round_repeats(b.num_repeat, g) for b in _B0_BLOCKS]


# The adapter's own (the library builds one flat list of blocks): the first block changes the width and
# carries the stride.
create_stage = stage_builder(mbconv6)


# --- The network: the library's modules in the tutorial's layout -----------------------------------------
def _parts(model: ep_model.EfficientNet) -> list[nn.Module]:
    """stem, the 7 stages, pre, pool_flatten, head of the library's EfficientNet."""
    g = model._global_params
    blocks = list(model._blocks)
    rates = [
        g.drop_connect_rate * float(idx) / len(blocks) if g.drop_connect_rate else None for idx in range(len(blocks))
    ]
    wrapped = [DropConnectBlock(b, rate) for b, rate in zip(blocks, rates, strict=True)]  # type: ignore[arg-type]
    stages, start = [], 0
    for block_args in model._blocks_args:  # the library appends round_repeats(num_repeat) blocks per entry
        n = ep.round_repeats(block_args.num_repeat, g)
        stages.append(nn.Sequential(*wrapped[start : start + n]))
        start += n
    assert start == len(blocks), f"{start} blocks in the stages, the library built {len(blocks)}"
    return [
        nn.Sequential(model._conv_stem, model._bn0, model._swish),
        *stages,
        nn.Sequential(model._conv_head, model._bn1, model._swish),
        nn.Sequential(model._avg_pooling, nn.Flatten(1)),
        nn.Sequential(model._dropout, model._fc),
    ]


def _library_model(name: str, **override: Any) -> ep_model.EfficientNet:
    return ep_model.EfficientNet.from_name(name, **{k: v for k, v in override.items() if v is not None})


def _b0_at(
    w_factor: float, d_factor: float, n_classes: int, drop_rate: float | None, drop_path_rate: float | None
) -> ep_model.EfficientNet:
    """What the library's efficientnet-b0 is, at other factors (its own rates unless given)."""
    return _library_model(
        "efficientnet-b0",
        width_coefficient=w_factor,
        depth_coefficient=d_factor,
        num_classes=n_classes,
        dropout_rate=drop_rate,
        drop_connect_rate=drop_path_rate,
    )


class EfficientNet(TutorialLayout):
    def __init__(
        self,
        w_factor: float = 1,
        d_factor: float = 1,
        n_classes: int = 1000,
        *,
        drop_rate: float | None = None,
        drop_path_rate: float | None = None,
    ) -> None:
        super().__init__(_parts(_b0_at(w_factor, d_factor, n_classes, drop_rate, drop_path_rate)))


def EfficientNetSequential(  # noqa: N802 - the tutorial's name
    w_factor: float = 1,
    d_factor: float = 1,
    n_classes: int = 1000,
    *,
    drop_rate: float | None = None,
    drop_path_rate: float | None = None,
) -> nn.Sequential:
    return nn.Sequential(*_parts(_b0_at(w_factor, d_factor, n_classes, drop_rate, drop_path_rate)))


def _named(name: str) -> Callable[..., EfficientNet]:
    def build(
        n_classes: int = 1000, *, drop_rate: float | None = None, drop_path_rate: float | None = None
    ) -> EfficientNet:
        """EfficientNet.from_name("efficientnet-<name>") of the library (its own rates unless given)."""
        model = _library_model(
            f"efficientnet-{name}", num_classes=n_classes, dropout_rate=drop_rate, drop_connect_rate=drop_path_rate
        )
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
