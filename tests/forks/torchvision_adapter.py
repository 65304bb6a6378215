"""torchvision's EfficientNet behind the tutorial's API: a fork the conformance suite can hold to the spec.

Every module of the network is torchvision's own, built by torchvision's own code
(`torchvision.models.efficientnet`): `EfficientNet(w, d, n)` is what `efficientnet_b0` builds, with the
factors passed to its `_efficientnet_conf` (torchvision's path to any factors); `efficientnet_bN` is
torchvision's `efficientnet_bN`; `MBConv` is torchvision's `MBConv` on a `_MBConvConfig`; `conv_block`
is torchvision's `Conv2dNormActivation`; `SEBlock` its `SqueezeExcitation`; widths are rounded by
`_MBConvConfig.adjust_channels` (`_make_divisible`) and depths by `MBConvConfig.adjust_depth`.
This adapter only re-wires the modules into the tutorial's layout (children stem, stages, pre,
pool_flatten, head) and fixes nothing: the head width, the BatchNorm settings of B5-B7, the
dropout and stochastic-depth rates, and the block's channel rounding are torchvision's, so that the
suite's verdict (docs/torchvision-verdict.md, `python tests/forks/verdicts.py`) is about torchvision.

Two pieces of glue are the adapter's own, each noted where it is: the tutorial's `r` of `SEBlock`
(torchvision's SE takes the squeezed width itself; `MBConv` ignores `r`, as torchvision's block
squeezes to `max(1, n_in // 4)` always), and `create_stage`, which torchvision does not have.  The
glue that is the same for every library (the layout, `mbconv1`/`mbconv6`, `create_stage`) is
tests/forks/tutorial_layout.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

from torch import nn
from torchvision.models import efficientnet as tv
from torchvision.ops.misc import Conv2dNormActivation, SqueezeExcitation

from tests.forks.tutorial_layout import TutorialLayout, expansion_blocks, stage_builder

LIBRARY = "torchvision"
_B0_SETTING, _B0_LAST_CHANNEL = tv._efficientnet_conf("efficientnet_b0", width_mult=1.0, depth_mult=1.0)
DROP_PATH_RATE = 0.2  # torchvision EfficientNet(stochastic_depth_prob=0.2), its default


def _head_width(setting: Sequence[tv._MBConvConfig], last_channel: int | None) -> int:
    # torchvision EfficientNet.__init__: lastconv_output_channels = last_channel if last_channel is
    # not None else 4 * lastconv_input_channels (last_channel is None for the B series).
    return last_channel if last_channel is not None else 4 * setting[-1].out_channels


# --- The tables, read off torchvision's B0 configuration -----------------------------------------
widths = [_B0_SETTING[0].input_channels, *(c.out_channels for c in _B0_SETTING), _head_width(_B0_SETTING, None)]
depths = [c.num_layers for c in _B0_SETTING]
kernel_sizes = [c.kernel for c in _B0_SETTING]
strides = [c.stride for c in _B0_SETTING]
# B0's stochastic-depth probability at the first block of each stage, as torchvision computes it
# (stochastic_depth_prob * stage_block_id / total_stage_blocks).
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
    """torchvision's Conv2dNormActivation, with Identity where it leaves out the norm or activation."""
    layers = list(
        Conv2dNormActivation(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            groups,
            norm_layer=nn.BatchNorm2d if bn else None,
            activation_layer=nn.SiLU if act else None,
            bias=bias,
        )
    )
    conv, rest = layers[0], layers[1:]
    norm = rest.pop(0) if bn else nn.Identity()
    activation = rest.pop(0) if act else nn.Identity()
    return nn.Sequential(conv, norm, activation)


def SEBlock(c: int, r: int = 24) -> nn.Module:  # noqa: N802 - the tutorial's name
    """torchvision's SqueezeExcitation (as its MBConv builds it: SiLU, at least 1 channel); the
    squeezed width max(1, c // r) is the adapter's reading of the tutorial's r."""
    return SqueezeExcitation(c, max(1, c // r), activation=partial(nn.SiLU, inplace=True))


def MBConv(  # noqa: N802 - the tutorial's name
    n_in: int, n_out: int, expansion: int, kernel_size: int = 3, stride: int = 1, r: int = 24, dropout: float = 0.1
) -> nn.Module:
    """torchvision's MBConv with stochastic-depth probability `dropout`; BatchNorm2d as torchvision's
    EfficientNet uses by default.  `r` is not used: torchvision squeezes to max(1, n_in // 4)."""
    cnf = tv._MBConvConfig(expansion, kernel_size, stride, n_in, n_out, 1, tv.MBConv)
    return tv.MBConv(cnf, dropout, nn.BatchNorm2d)


mbconv1, mbconv6 = expansion_blocks(MBConv)


# --- Scaling: torchvision's rounding --------------------------------------------------------------
def scale_width(w: float, w_factor: float) -> int:
    return tv._MBConvConfig.adjust_channels(w, w_factor)


def efficientnet_scaler(w_factor: float = 1, d_factor: float = 1) -> tuple[list[int], list[int]]:
    """The widths (stem, 7 stages, head) and depths that torchvision builds at these factors."""
    setting, last_channel = tv._efficientnet_conf("efficientnet_b0", width_mult=w_factor, depth_mult=d_factor)
    scaled = [setting[0].input_channels, *(c.out_channels for c in setting), _head_width(setting, last_channel)]
    return scaled, [c.num_layers for c in setting]


# The adapter's own (torchvision builds stages inside EfficientNet): the first block changes the width and
# carries the stride, as torchvision's EfficientNet does.
create_stage = stage_builder(mbconv6)


# --- The network: torchvision's modules in the tutorial's layout --------------------------------------
def _parts(model: tv.EfficientNet) -> list[nn.Module]:
    """stem, the 7 stages, pre, pool_flatten, head of a torchvision EfficientNet (features[0] is the
    stem, features[1:8] the stages, features[8] the head conv; torchvision flattens with torch.flatten)."""
    features = model.features
    return [
        features[0],
        *features[1:-1],
        features[-1],
        nn.Sequential(model.avgpool, nn.Flatten(1)),
        model.classifier,
    ]


def _torchvision_model(
    w_factor: float, d_factor: float, n_classes: int, drop_rate: float, drop_path_rate: float
) -> tv.EfficientNet:
    """What torchvision's efficientnet_b0 builds, at other factors."""
    setting, last_channel = tv._efficientnet_conf("efficientnet_b0", width_mult=w_factor, depth_mult=d_factor)
    return tv.EfficientNet(setting, drop_rate, drop_path_rate, n_classes, last_channel=last_channel)


class EfficientNet(TutorialLayout):
    def __init__(
        self,
        w_factor: float = 1,
        d_factor: float = 1,
        n_classes: int = 1000,
        *,
        drop_rate: float = 0.2,  # torchvision's efficientnet_b0 dropout
        drop_path_rate: float = DROP_PATH_RATE,
    ) -> None:
        super().__init__(_parts(_torchvision_model(w_factor, d_factor, n_classes, drop_rate, drop_path_rate)))


def EfficientNetSequential(  # noqa: N802 - the tutorial's name
    w_factor: float = 1,
    d_factor: float = 1,
    n_classes: int = 1000,
    *,
    drop_rate: float = 0.2,
    drop_path_rate: float = DROP_PATH_RATE,
) -> nn.Sequential:
    return nn.Sequential(*_parts(_torchvision_model(w_factor, d_factor, n_classes, drop_rate, drop_path_rate)))


def _named(n: int) -> Callable[..., EfficientNet]:
    factory = getattr(tv, f"efficientnet_b{n}")

    def build(
        n_classes: int = 1000, *, drop_rate: float | None = None, drop_path_rate: float = DROP_PATH_RATE
    ) -> EfficientNet:
        """torchvision's efficientnet_bN (its own dropout unless drop_rate is given)."""
        kwargs = {} if drop_rate is None else {"dropout": drop_rate}
        model = factory(num_classes=n_classes, stochastic_depth_prob=drop_path_rate, **kwargs)
        return EfficientNet.wrapping(_parts(model))

    build.__name__ = build.__qualname__ = f"efficientnet_b{n}"
    return build


efficientnet_b0 = _named(0)
efficientnet_b1 = _named(1)
efficientnet_b2 = _named(2)
efficientnet_b3 = _named(3)
efficientnet_b4 = _named(4)
efficientnet_b5 = _named(5)
efficientnet_b6 = _named(6)
efficientnet_b7 = _named(7)

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
    *(f"efficientnet_b{n}" for n in range(8)),
]
