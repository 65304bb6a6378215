"""Blocks (spec section 3): conv_block, BatchNorm, MBConv, residual, squeeze-and-excitation.

MBConv and SEBlock are checked against a reference computed here with ``torch.nn.functional``
from the block's own tensors, taken by position in ``state_dict`` order (API-4), so a block may
name its submodules as it likes.  The tensors are first set to random values of a realistic
scale (BN statistics included): with PyTorch's default BN statistics, a wrong order of
operations could hide behind near-identity layers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import torch
import torch.nn.functional as F  # noqa: N812 - the usual alias
from hypothesis import example, given
from hypothesis import strategies as st
from torch import Tensor, nn

from tests.support import boundary, norms, parts, spec, strategies, torchutil
from tests.support.evidence import blame
from tests.support.strategies import BlockConfig

LAYERS = spec.data()["base"]["layers"]
BN_EPS: float = LAYERS["batchnorm_eps"]
# float32 kernels may sum in a different order from the functional reference (e.g. a mean
# taken with x.mean instead of AdaptiveAvgPool2d); every error this suite looks for (a wrong
# activation, pooling, order, padding or BN eps) is far larger (>= 1e-4 relative).  The same
# bound holds on CUDA with TF32 off, as the plugin runs --device cuda (tests/support/devices.py);
# with TF32 on, SEBlock(7, r=1) was off by 1.98e-4 on an H200.
REL_TOL = 1e-5


# --- The block's tensors by position (API-4) -------------------------------------------------
@dataclass
class BN:
    weight: Tensor
    bias: Tensor
    mean: Tensor
    var: Tensor
    eps: float = BN_EPS

    def __call__(self, x: Tensor) -> Tensor:
        t = [u.double() for u in (self.mean, self.var, self.weight, self.bias)]
        return F.batch_norm(x.double(), *t, training=False, eps=self.eps)


@dataclass
class SETensors:
    reduce_weight: Tensor
    reduce_bias: Tensor
    expand_weight: Tensor
    expand_bias: Tensor

    def gate(self, x: Tensor) -> Tensor:
        """SE-1, SE-2: sigmoid(expand(SiLU(reduce(channel means))))."""
        s = x.double().mean((2, 3), keepdim=True)  # the oracle computes in float64, whatever the module keeps
        s = F.silu(F.conv2d(s, self.reduce_weight.double(), self.reduce_bias.double()))
        return torch.sigmoid(F.conv2d(s, self.expand_weight.double(), self.expand_bias.double()))


# A layout is the (kind, shape) of every state_dict entry in API-4 order; the kind says how
# _randomise fills it.
Layout = list[tuple[str, tuple[int, ...]]]


def _bn_layout(c: int) -> Layout:
    return [("bn.weight", (c,)), ("bn.bias", (c,)), ("bn.mean", (c,)), ("bn.var", (c,)), ("bn.count", ())]


def _se_layout(c: int, rd: int) -> Layout:
    return [("conv", (rd, c, 1, 1)), ("bias", (rd,)), ("se.expand", (c, rd, 1, 1)), ("se.expand_bias", (c,))]


def _mbconv_layout(cfg: BlockConfig) -> Layout:
    """API-4 layout of an MBConv: expand conv+BN (expansion > 1), depthwise conv+BN, SE reduce and
    expand (with biases, to max(1, n_in // 4) channels: SE-2), project conv+BN; no conv biases."""
    e = cfg.expansion * cfg.n_in
    k = cfg.kernel_size
    expand = [("conv", (e, cfg.n_in, 1, 1)), *_bn_layout(e)] if cfg.expansion > 1 else []
    return [
        *expand,
        ("conv", (e, 1, k, k)),
        *_bn_layout(e),
        *_se_layout(e, max(1, cfg.n_in // 4)),
        ("conv", (cfg.n_out, e, 1, 1)),
        *_bn_layout(cfg.n_out),
    ]


def _tensors(module: nn.Module, layout: Layout, what: str) -> list[Tensor]:
    """The module's state_dict tensors in API-4 order, each viewed in the layout's shape: a tensor
    that differs only in size-1 dimensions (an ``nn.Linear`` weight where the layout has a 1x1
    convolution's) holds the same values (torchutil.same_layout).  The views share the module's
    memory, so what ``_randomise`` writes is what the module computes with."""
    tensors = list(module.state_dict().values())
    got = [tuple(t.shape) for t in tensors]
    want = [shape for _, shape in layout]
    same = len(got) == len(want) and all(torchutil.same_layout(g, w) for g, w in zip(got, want, strict=False))
    assert same, f"{what}: state_dict shapes {got}, want (API-4 order, up to size-1 dimensions) {want}"
    return [t.view(shape) for t, shape in zip(tensors, want, strict=True)]


def _random_value(kind: str, shape: tuple[int, ...], generator: torch.Generator) -> Tensor | None:
    """Realistic random values: convolutions scaled by fan-in, BN affine near 1 and 0, running
    statistics away from (0, 1), SE gate pre-activations spread over about +-4 (where sigmoid
    and its piecewise-linear imitations differ, but float32 sigmoid does not reach 0 or 1)."""
    fan_in = max(1, torch.Size(shape[1:]).numel())
    normal = torch.randn(shape, generator=generator)
    uniform = torch.rand(shape, generator=generator)
    values = {
        "conv": normal * fan_in**-0.5,
        "bias": normal * 0.5,
        "se.expand": normal * 2 * fan_in**-0.5,
        "se.expand_bias": normal,
        "bn.weight": uniform + 0.5,
        "bn.bias": normal * 0.2,
        "bn.mean": normal * 0.2,
        "bn.var": uniform * 1.5 + 0.5,
    }
    return values.get(kind)


@torch.no_grad()
def _randomise(tensors: list[Tensor], layout: Layout, generator: torch.Generator) -> None:
    for t, (kind, shape) in zip(tensors, layout, strict=True):
        value = _random_value(kind, shape, generator)
        if value is not None:
            t.copy_(value)


@dataclass
class MBConvTensors:
    expand: tuple[Tensor, BN] | None
    depthwise: tuple[Tensor, BN]
    se: SETensors
    project: tuple[Tensor, BN]


def _own_eps(block: nn.Module, count: int) -> list[float]:
    """The eps of the block's own BatchNorms (``count`` of them, in order), else BLOCK-2's: the
    order of the layers is BLOCK-3's, their settings BLOCK-2's (its own tests), so a block with
    TensorFlow's eps 1e-3 in the right order passes here."""
    eps = [getattr(m, "eps", None) for m in torchutil.batchnorms(block)]
    return [float(e) for e in eps] if len(eps) == count and None not in eps else [BN_EPS] * count


def _mbconv_tensors(block: nn.Module, cfg: BlockConfig, generator: torch.Generator) -> MBConvTensors:
    layout = _mbconv_layout(cfg)
    t = _tensors(block, layout, f"MBConv{cfg}")
    _randomise(t, layout, generator)
    eps = _own_eps(block, 3 if cfg.expansion > 1 else 2)
    if cfg.expansion > 1:
        expand: tuple[Tensor, BN] | None = (t[0], BN(*t[1:5], eps.pop(0)))
        t = t[6:]
    else:
        expand = None
    return MBConvTensors(expand, (t[0], BN(*t[1:5], eps[0])), SETensors(*t[6:10]), (t[10], BN(*t[11:15], eps[1])))


def reference_mbconv(
    x: Tensor, p: MBConvTensors, cfg: BlockConfig, se: Callable[[Tensor], Tensor] | None = None
) -> Tensor:
    """BLOCK-3 in eval mode: expand, depthwise, SE, project, and the residual of BLOCK-4.  ``se``:
    the SE to apply (default: SE-1 and SE-2 computed from the block's SE tensors)."""
    return reference_branch(x, p, cfg, se) + x if cfg.residual else reference_branch(x, p, cfg, se)


def reference_branch(x: Tensor, p: MBConvTensors, cfg: BlockConfig, se: Callable[[Tensor], Tensor] | None) -> Tensor:
    """In float64 from the block's tensors, whatever dtype it keeps them in (``se`` gets and returns
    the input's dtype)."""
    h = x.double()
    if p.expand is not None:
        h = F.silu(p.expand[1](F.conv2d(h, p.expand[0].double())))
    k = cfg.kernel_size
    h = F.conv2d(h, p.depthwise[0].double(), stride=cfg.stride, padding=(k - 1) // 2, groups=h.shape[1])
    h = F.silu(p.depthwise[1](h))
    h = se(h.to(x.dtype)).double() if se is not None else h * p.se.gate(h)
    return p.project[1](F.conv2d(h, p.project[0].double())).to(x.dtype)


def own_se(block: nn.Module, cfg: BlockConfig) -> nn.Module | None:
    """The block's own SE module: the outermost submodule whose state_dict is exactly the four SE
    tensors (API-4 positions), an ancestor of them all; None when the block keeps them loose."""
    names = list(block.state_dict())
    first = 6 if cfg.expansion > 1 else 0
    parts = [name.split(".") for name in names[first + 6 : first + 10]]
    common = 0
    while all(len(p) > common + 1 for p in parts) and len({p[common] for p in parts}) == 1:
        common += 1
    for depth in range(1, common + 1):
        module = block.get_submodule(".".join(parts[0][:depth]))
        if len(module.state_dict()) == 4:
            return module
    return None


@contextlib.contextmanager
def last_leaf_output(block: nn.Module) -> Iterator[list[Tensor]]:
    """The output of the last leaf module that ran (its branch, for a block that adds the residual
    outside its layers), in a list filled during a forward pass."""
    seen: list[Tensor] = []

    def hook(_m: nn.Module, _args: Any, out: Any) -> None:
        if isinstance(out, Tensor):
            seen[:] = [out.detach()]

    handles = [m.register_forward_hook(hook) for m in block.modules() if not list(m.children())]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def inputs_of_the_layer_holding(module: nn.Module, position: int) -> Iterator[list[Tensor]]:
    """The input of the layer that holds ``module``'s state_dict entry at ``position`` (API-4), in a
    list filled during a forward pass: the part found by the tensor it holds, not by its name or
    class.  Empty when that tensor is not a parameter of a leaf module below ``module`` (a module
    that applies it with ``torch.nn.functional`` itself): then nothing is recorded."""
    seen: list[Tensor] = []
    key = list(module.state_dict(keep_vars=True))[position]
    owner_name, _, name = key.rpartition(".")
    handles = []
    if owner_name:
        owner = module.get_submodule(owner_name)
        if not list(owner.children()) and name in owner._parameters:

            def hook(_m: nn.Module, args: tuple[Any, ...]) -> None:
                if args and isinstance(args[0], Tensor) and not seen:
                    seen.append(args[0].detach())

            handles.append(owner.register_forward_pre_hook(hook))
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


# --- BLOCK-1 ----------------------------------------------------------------------------------
def _conv_block_layout(args: strategies.ConvBlockArgs) -> Layout:
    """API-4 layout of conv_block(...): the conv weight, its bias (bias=True), a BN (bn=True)."""
    k = args.kernel_size
    weight = [("conv", (args.out_channels, args.in_channels // args.groups, k, k))]
    bias = [("bias", (args.out_channels,))] if args.bias else []
    return [*weight, *bias, *(_bn_layout(args.out_channels) if args.bn else [])]


@pytest.mark.clause("BLOCK-1")
@given(args=strategies.conv_block_args(), h=st.integers(0, 6), w=st.integers(0, 6))
def test_conv_block_computes_conv_then_batchnorm_then_silu(impl, device, args, h, w):
    """What conv_block computes, in eval mode (BN with its running statistics) and in training (BN
    with the batch's statistics), against F.conv2d with the given arguments, then batch_norm, then
    SiLU, from the block's own tensors by position (API-4).  Its layers' classes and number are not
    judged: a Sequential of conv and SiLU computes what conv, Identity, SiLU computes, and a
    BatchNorm that applies the activation itself computes BatchNorm then SiLU."""
    block = impl.conv_block(
        args.in_channels,
        args.out_channels,
        args.kernel_size,
        args.stride,
        args.padding,
        args.groups,
        args.bias,
        args.bn,
        args.act,
    )
    layout = _conv_block_layout(args)
    tensors = _tensors(block, layout, f"conv_block{args}")
    _randomise(tensors, layout, torch.Generator().manual_seed(3))
    weight, bias = tensors[0], tensors[1] if args.bias else None
    bn = BN(*tensors[-5:-1], eps=_own_eps(block, 1)[0]) if args.bn else None
    size = args.kernel_size - 2 * args.padding  # the smallest input the convolution accepts, plus h, w
    x = torch.randn(2, args.in_channels, max(1, size + h), max(1, size + w), generator=torch.Generator().manual_seed(4))
    # The oracle in float64, whatever dtype the block keeps its tensors in.
    conv = F.conv2d(
        x.double(),
        weight.double(),
        None if bias is None else bias.double(),
        args.stride,
        args.padding,
        groups=args.groups,
    )
    block.to(device, torch.float64)  # training-mode BN on a few values is ill-conditioned: float32 moves it by 1e-4
    for mode in ("eval", "training"):
        if mode == "eval":
            normed = bn(conv) if bn is not None else conv
        else:
            affine = (bn.weight.double(), bn.bias.double()) if bn is not None else (None, None)
            normed = F.batch_norm(conv, None, None, *affine, True, eps=bn.eps) if bn is not None else conv
        want = F.silu(normed) if args.act else normed
        block.train(mode == "training")
        with torch.no_grad():
            got = block(x.to(device, torch.float64)).cpu()
        parts = " then ".join(["conv", *(["BatchNorm"] if args.bn else []), *(["SiLU"] if args.act else [])])
        assert got.shape == want.shape, f"conv_block{args}: output shape {tuple(got.shape)}, want {tuple(want.shape)}"
        err = torchutil.rel_err(got, want)
        assert err <= REL_TOL, f"conv_block{args} in {mode} mode: output differs from {parts} by {err:.2e} relative"


# --- BLOCK-2 (of whole models at any factors: test_model_level.py) -----------------------------
@pytest.mark.clause("BLOCK-2")
@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda impl: impl.EfficientNet(0.25, 0.34, 10), id="EfficientNet"),
        pytest.param(lambda impl: impl.EfficientNetSequential(0.25, 0.34, 10), id="EfficientNetSequential"),
        pytest.param(lambda impl: impl.MBConv(8, 8, 6, 3, 1), id="MBConv"),
        pytest.param(lambda impl: impl.conv_block(4, 8), id="conv_block"),
    ],
)
def test_every_normalisation_is_a_batchnorm_with_the_spec_settings(impl, build):
    """Normalisation layers found by the running statistics they keep, their settings read through
    BatchNorm's interface and the momentum measured (tests/support/norms.py), not their class."""
    with blame():  # building the module is the structure clauses' business
        module = build(impl)
    assert norms.layers(module), "no normalisation layer found"
    problem = norms.problem(module)
    assert problem is None, problem


# --- BLOCK-3, BLOCK-4, SE-1, SE-2: MBConv against the functional reference ---------------------
@pytest.mark.clause("BLOCK-3", "BLOCK-4")
@given(cfg=strategies.block_configs(), n=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9))
@example(cfg=BlockConfig(16, 16, 6, 5, 1), n=2, h=7, w=7)  # an MBConv6 of stage 3 of a small model
@example(cfg=BlockConfig(8, 16, 1, 3, 1), n=2, h=8, w=8)  # the first block: MBConv1, no residual
@example(cfg=BlockConfig(8, 24, 6, 3, 2), n=2, h=5, w=6)  # stride 2 on odd and even sizes
def test_mbconv_computes_expand_depthwise_se_project(impl, device, cfg, n, h, w):
    """The block against expand, depthwise, SE, project (and the residual) computed from its tensors.
    The SE is the block's own SE module where it has one: what SE computes is SE-1's and SE-2's
    business (their tests), so an SE bug leaves this test green.  A failure blames BLOCK-4 when the
    branch (the last layer's output) is right and only the residual is wrong, else BLOCK-3."""
    generator = torch.Generator().manual_seed(0)
    block = cfg.build(impl)
    with blame("BLOCK-3"):
        tensors = _mbconv_tensors(block, cfg, generator)
    block.to(device).eval()
    se = own_se(block, cfg)
    x = torch.randn(n, cfg.n_in, h, w, generator=generator)
    with torch.no_grad(), blame("BLOCK-3"):
        branch = reference_branch(x, tensors, cfg, None if se is None else lambda t: se(t.to(device)).cpu())
    want = branch + x if cfg.residual else branch
    error: Exception | None = None
    with torch.no_grad(), last_leaf_output(block) as seen:
        try:
            got = block(x.to(device)).cpu()
        except Exception as e:  # e.g. a residual added to a branch of another shape
            error, got = e, branch.new_full((0,), float("nan"))
    branch_right = bool(seen) and seen[0].shape == branch.shape and torchutil.rel_err(seen[0].cpu(), branch) <= REL_TOL
    with blame("BLOCK-4" if branch_right else "BLOCK-3"):
        if error is not None:
            raise error
        assert got.shape == want.shape, f"MBConv{cfg}: output shape {tuple(got.shape)}, want {tuple(want.shape)}"
        err = torchutil.rel_err(got, want)
        residual = "with" if cfg.residual else "without"
        assert err <= REL_TOL, (
            f"MBConv{cfg}: output differs from expand-depthwise-SE-project {residual} the residual by {err:.2e} "
            f"relative{' (the branch is right: the residual is not)' if branch_right else ''}"
        )


@pytest.mark.clause("BLOCK-4")
@given(cfg=strategies.block_configs(min_channels=strategies.MIN_NETWORK_CHANNELS), h=st.integers(1, 6))
def test_residual_exactly_when_stride_one_and_channels_kept(impl, device, cfg, h):
    """With the projection BN's scale and shift at zero the branch outputs exactly 0, so the
    block's output is its input (residual) or 0 (none)."""
    block = cfg.build(impl)
    # Only the projection BN matters here (API-4: the block's last five state_dict entries), so
    # that a block whose other layers are wrong (an SE width, say) fails their clauses, not this.
    tensors = list(block.state_dict().values())
    got = [tuple(t.shape) for t in tensors[-5:]]
    want = [shape for _, shape in _bn_layout(cfg.n_out)]
    assert got == want, f"MBConv{cfg}: the last state_dict entries {got} are not a BN of {cfg.n_out} channels {want}"
    with torch.no_grad():
        tensors[-5].zero_()  # the projection BN's weight and bias
        tensors[-4].zero_()
    block.to(device).eval()
    x = torch.randn(2, cfg.n_in, h, h, device=device)
    with torch.no_grad():
        out = block(x)
    if cfg.residual:
        assert torch.equal(out, x), f"MBConv{cfg}: stride 1 and n_in == n_out, but the input is not added"
    else:
        assert not out.any(), (
            f"MBConv{cfg}: stride {cfg.stride}, {cfg.n_in} -> {cfg.n_out} channels, but a residual is added"
        )


# --- SE-1, SE-2: SEBlock on its own -----------------------------------------------------------
@dataclass(frozen=True)
class SEUnderTest:
    module: nn.Module
    c: int  # channels in and out
    rd: int  # the channels it squeezes to
    what: str  # for messages


def _se_under_test(impl: Any, c: int, r: int) -> SEUnderTest:
    """``SEBlock(c, r)`` where the fork defines it; else one of the SE modules inside its network,
    found by parameter order (tests/support/parts.py), chosen by the drawn (c, r) and judged at its own
    widths."""
    if not boundary.lacks(impl, "SEBlock"):
        return SEUnderTest(impl.SEBlock(c, r), c, max(1, c // r), f"SEBlock({c}, r={r})")
    found = parts.network_ses(impl)
    se = found[(31 * c + r) % len(found)]
    return SEUnderTest(se.module, se.channels, se.reduced, se.what)


def _se_tensors(se: SEUnderTest, generator: torch.Generator) -> SETensors:
    layout = _se_layout(se.c, se.rd)
    t = _tensors(se.module, layout, se.what)
    _randomise(t, layout, generator)
    return SETensors(*t)


@pytest.mark.clause("SE-1", "SE-2")
@given(
    c=st.integers(1, 48),
    r=st.integers(1, 24),
    n=st.integers(1, 3),
    hw=st.tuples(st.integers(1, 8), st.integers(2, 8)),
)
def test_se_gate_depends_only_on_channel_means(impl, device, c, r, n, hw):
    """The output is the input times a per-channel gate computed from the channel means.  What a
    failure is about is told apart by inputs that isolate each part: where every channel is constant
    over its positions, any spatial squeeze gives the channel's value, so a wrong gate there is the
    excitation's or its application's (SE-2); a gate right there but wrong where the channels vary,
    or one that moves when the input changes but its channel means do not, is the squeeze's (SE-1)."""
    generator = torch.Generator().manual_seed(1)
    under_test = _se_under_test(impl, c, r)
    se, c, what = under_test.module, under_test.c, under_test.what
    with blame("SE-2"):  # the SE's layers
        tensors = _se_tensors(under_test, generator)
    se.to(device).eval()
    x = torch.rand(n, c, *hw, generator=generator) + 1.0  # away from 0, so gate = out / x
    bump = torch.randn(n, c, *hw, generator=generator)
    bump = bump - bump.mean((2, 3), keepdim=True)
    x2 = x + 0.9 * bump / bump.abs().amax().clamp_min(1e-12)  # same channel means, still > 0
    flat = (torch.rand(n, c, 1, 1, generator=generator) + 1.0).expand(n, c, *hw).contiguous()  # constant per channel
    with torch.no_grad():
        with inputs_of_the_layer_holding(se, 0) as squeezed:  # API-4: the reduce weight comes first
            gate = se(x.to(device)).cpu() / x
        gate2 = se(x2.to(device)).cpu() / x2
        gate_flat = se(flat.to(device)).cpu() / flat
    # Where the reduce weight sits in a layer of its own, that layer's input is the squeeze: it must
    # be each channel's own spatial mean (a mean over the channels too keeps every gate a function of
    # the channel means, and is wrong even where each channel is constant).
    means = x.mean((2, 3))
    if squeezed and squeezed[0].numel() == means.numel():
        got = squeezed[0].cpu().reshape(means.shape)
        with blame("SE-1"):
            assert torchutil.rel_err(got, means) <= REL_TOL, (
                f"{what}: the layer holding the SE's reduce weight receives values that differ from "
                f"each channel's spatial mean by {torchutil.rel_err(got, means):.2e} relative: the squeeze is not "
                "the per-channel average"
            )
    want_flat = tensors.gate(flat).expand_as(flat)
    with blame("SE-2"):
        err = torchutil.rel_err(gate_flat, want_flat)
        assert err <= REL_TOL, (
            f"{what}: on an input constant over each channel's positions the output is not the "
            f"input times sigmoid(expand(SiLU(reduce(channel value)))) (relative error {err:.2e}): the "
            "excitation or the way its gate is applied"
        )
    want = tensors.gate(x).expand_as(x)
    with blame("SE-1"):
        err = torchutil.rel_err(gate, want)
        assert err <= REL_TOL, (
            f"{what}: the gate is not sigmoid(expand(SiLU(reduce(channel mean)))) (relative error "
            f"{err:.2e}), though it is where each channel is constant: the squeeze is not each channel's mean"
        )
        assert torchutil.rel_err(gate2, gate) <= REL_TOL, (
            f"{what}: the gate changed by {torchutil.rel_err(gate2, gate):.2e} relative when the input "
            "changed but its channel means did not: the squeeze is not the mean"
        )


@pytest.mark.clause("SE-2")
@given(c=st.integers(1, 48), r=st.integers(1, 24))
def test_se_gate_is_strictly_between_zero_and_one(impl, device, c, r):
    generator = torch.Generator().manual_seed(2)
    under_test = _se_under_test(impl, c, r)
    se, c, what = under_test.module, under_test.c, under_test.what
    _se_tensors(under_test, generator)
    se.to(device).eval()
    x = torch.rand(4, c, 3, 3, generator=generator) + 1.0
    with torch.no_grad():
        gate = se(x.to(device)).cpu() / x
    where = f"{what}: gate values in [{gate.min():.4g}, {gate.max():.4g}], not within (0, 1)"
    assert gate.min() > 0, where
    assert gate.max() < 1, where


@pytest.mark.clause("SE-2")
@given(n_in=st.integers(1, 96), n_out=st.integers(1, 32))
def test_se_squeezes_to_a_quarter_of_the_block_input(impl, n_in, n_out):
    """mbconv6 with r=24 and mbconv1 with r=4 (the tutorial's values) squeeze to max(1, n_in // 4).
    Premise (BLOCK-3): the block's tensors before its SE, the expansion and the depthwise
    convolution with their BNs, are those of a block that expands n_in channels: the SE's input
    width is the block's business, so a block that expands the wrong width fails BLOCK-3, not this."""
    rd = max(1, n_in // 4)
    for name, e, block in (("mbconv6", 6, impl.mbconv6(n_in, n_out)), ("mbconv1", 1, impl.mbconv1(n_in, n_out, r=4))):
        layout = _mbconv_layout(BlockConfig(n_in, n_out, e, 3, 1))
        before_se = 12 if e > 1 else 6  # API-4: expand conv and BN (MBConv6 only), depthwise conv and BN
        shapes = [tuple(t.shape) for t in block.state_dict().values()]
        with blame("BLOCK-3", "ARCH-3"):  # MBConv's layers; mbconv1/mbconv6's expansion (the stage's block type)
            want = [shape for _, shape in layout[:before_se]]
            same = len(shapes) > before_se and all(
                torchutil.same_layout(g, w) for g, w in zip(shapes[:before_se], want, strict=True)
            )
            assert same, (
                f"premise BLOCK-3, ARCH-3: {name}({n_in}, {n_out}): the tensors before the SE are "
                f"{shapes[:before_se]}, want (API-4 order) {want}: an expansion to {e * n_in} channels and a "
                "depthwise convolution"
            )
        se_reduce = shapes[before_se]
        want_reduce = (rd, e * n_in, 1, 1)
        assert se_reduce[:1] == (rd,), (
            f"{name}({n_in}, {n_out}): SE reduce weight {se_reduce}, want {want_reduce} (max(1, n_in // 4))"
        )
