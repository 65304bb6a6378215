"""The reference EfficientNets of the cross-checks (timm, torchvision) and the implementation's
variants, built under a fixed seed, plus hooks that read the same intermediate outputs
("stem", "stage i", "stage i block j", "head conv", "logits") from any of them.

Models on the meta device have shapes but no data: building and running them costs no memory
and little time (a fraction of a second for B7: BatchNorm in eval mode takes a short cut there,
_MetaBatchNorm), so shape, parameter and MAC checks run there, even for B7 at 600 px.  Those are
cached per worker; models with real weights are built by the test that needs them (each is used
once and some are modified: BN calibration, a training step).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cache, lru_cache
from types import ModuleType
from typing import Any
from unittest import mock

import pytest
import torch
import torch.nn.functional as F  # noqa: N812 - the usual alias
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode

from tests.support import spec, torchutil

SEED = 0
META = torch.device("meta")
CPU = torch.device("cpu")
# The input sizes of checks whose reference work tests/support/warm.py does ahead of a forked run:
EVAL_RESOLUTION = 64  # NUM-1 and NUM-4 (tests/conformance/test_numerics.py says why 64 px suffices)
# ARCH-6 at a size that is odd and non-square: every stride-2 layer must round up (ceil(57/2) = 29),
# for H and W separately.
SMALL_ODD_INPUT = (2, 3, 57, 71)

Taps = dict[str, nn.Module]


class InputOf(nn.Module):
    """A tap at a module's input rather than its output: the stem's output, of a network whose stem is not
    one module, is its first block's input (tests/support/parts.py ``taps_like``).  Not a submodule of
    anything; ``hook`` hooks the module it stands at."""

    def __init__(self, target: nn.Module) -> None:
        super().__init__()
        object.__setattr__(self, "target", target)  # not registered: the network holds it already


def hook(tap: nn.Module, fn: Callable[[nn.Module, object, Tensor], None]) -> torch.utils.hooks.RemovableHandle:
    """``fn(module, args, output)`` after the tap's forward; at an ``InputOf`` tap, before its module's
    forward, with the module's input as ``output``."""
    if isinstance(tap, InputOf):
        target: nn.Module = tap.target  # type: ignore[assignment]
        return target.register_forward_pre_hook(lambda m, args: fn(m, args, args[0]))
    return tap.register_forward_hook(fn)


class _NoFillOnMeta(TorchFunctionMode):
    """Skips the in-place random and constant fills of tensors on the meta device, where there are
    no values to fill: building a model there spent up to half its time in the fills' meta kernels
    (each initialisation call dispatches to Python reference implementations).  The
    initialisation code itself still runs (its fan-in arithmetic and argument checks), and every
    other operation is unchanged."""

    FILLS = frozenset(
        getattr(Tensor, name)
        for name in ("uniform_", "normal_", "fill_", "zero_", "random_", "exponential_", "bernoulli_", "erfinv_")
    )

    # torch.nn.init's functions that hand themselves to the mode whole (has_torch_function): the mode then
    # sees them instead of the Tensor fill inside, which would run with the mode popped.  On meta they
    # are skipped like the fills; kaiming_uniform_'s argument checks still run (_kaiming_checks).
    INIT_FILLS = frozenset((nn.init.uniform_, nn.init.normal_, nn.init.constant_))

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        target = args[0] if args else kwargs.get("tensor")  # nn.init passes its tensor by keyword
        if isinstance(target, Tensor) and target.is_meta:
            if func in self.FILLS or func in self.INIT_FILLS:
                return target
            if func is nn.init.kaiming_uniform_:
                _kaiming_checks(*args, **kwargs)
                return target
        return func(*args, **kwargs)


def _batch_norm_arguments(
    input: Tensor,  # F.batch_norm's own name: callers may pass it by keyword
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> tuple[Tensor, list[Tensor | None], bool]:
    """F.batch_norm's arguments by name, as F.batch_norm binds them."""
    return input, [running_mean, running_var, weight, bias], training


class _MetaBatchNorm(TorchFunctionMode):
    """F.batch_norm in eval mode on the meta device without its decomposition: the meta device
    computes BatchNorm's output shape through Python reference implementations of the normalisation
    (mean, variance, broadcasting), which was half the time of a shape pass (B0-L2 at native
    resolution and at 57x71, the implementation's and timm's: 7.7 s of CPU -> 3.9 s, the same
    shapes and MACs).  Where every tensor argument is on meta, of the input's dtype and of shape
    (C,) for an input of C channels, and the statistics are given and not being updated, the output
    is an empty tensor like the input, which is what the decomposition gives; any other call (a
    channel count that differs, training, a real tensor, an argument that is no tensor) runs
    F.batch_norm as it is, and raises where it would raise."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        if func is F.batch_norm:
            x, tensors, training = _batch_norm_arguments(*args, **kwargs)  # bound by F.batch_norm already
            if (
                isinstance(x, Tensor)
                and x.is_meta
                and x.dim() >= 2
                and not training
                and tensors[0] is not None
                and tensors[1] is not None
                and all(t is None or _meta_channels_like(t, x) for t in tensors)
            ):
                return torch.empty_like(x)
        return func(*args, **kwargs)


def _meta_channels_like(t: object, x: Tensor) -> bool:
    """``t`` is a meta tensor of ``x``'s dtype and of shape (C,) for ``x``'s C channels."""
    return isinstance(t, Tensor) and t.is_meta and t.dtype == x.dtype and t.shape == x.shape[1:2]


def _kaiming_checks(
    tensor: Tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", **_: Any
) -> None:
    """What nn.init.kaiming_uniform_ computes before its fill: the fan (raises for a bad mode or a
    tensor of fewer than two dimensions) and the gain (raises for an unknown nonlinearity)."""
    nn.init._calculate_correct_fan(tensor, mode)  # type: ignore[attr-defined]
    nn.init.calculate_gain(nonlinearity, a)  # type: ignore[arg-type]


def build(factory: Callable[[], nn.Module], device: torch.device = CPU) -> nn.Module:
    """``factory()`` on ``device``, in eval mode, with parameters drawn from a fixed seed (on the
    meta device, without the fills, which have nothing to fill there)."""
    with torch.random.fork_rng(devices=[]), device, _NoFillOnMeta() if device == META else nullcontext():
        torch.manual_seed(SEED)
        return factory().eval()


def _state_dict_holds_everything(model: nn.Module) -> bool:
    """Whether the state_dict holds every value of ``model``: no parameter shared by two modules,
    no buffer left out of it (non-persistent), no tensor kept in a plain attribute (or a list,
    tuple or dict attribute)."""
    if len(list(model.named_parameters(remove_duplicate=False))) != len(list(model.named_parameters())):
        return False
    if {n for n, _ in model.named_buffers(remove_duplicate=False)} - set(model.state_dict()):
        return False
    for module in model.modules():
        for key, value in vars(module).items():
            if key in ("_parameters", "_buffers", "_modules"):
                continue
            items = value.values() if isinstance(value, dict) else value if isinstance(value, list | tuple) else [value]
            if isinstance(value, Tensor) or any(isinstance(v, Tensor) for v in items):
                return False
    return True


def build_to_overwrite(factory: Callable[[], nn.Module], device: torch.device = CPU) -> nn.Module:
    """``factory()`` for a test that copies every state_dict entry into it (copy_weights_in_order)
    before using it: built on the meta device and given uninitialised memory on ``device``, which
    skips the initialisation (a second for B7, of the CPU's random numbers) that the copy would
    overwrite.  Where the state_dict does not hold every value the model computes with
    (``_state_dict_holds_everything``), or the meta device cannot build it, it is built on
    ``device`` as ``build`` does: the result is the same model once the copy is done."""
    try:
        model = build(factory, META)
    except Exception as e:
        if not meta_caused(e):
            raise
        return build(factory).to(device)
    if not _state_dict_holds_everything(model):
        return build(factory).to(device)
    return model.to_empty(device=device)


def with_weights_of(ref: nn.Module, factory: Callable[[], nn.Module]) -> nn.Module:
    """``factory()`` in eval mode holding ``ref``'s parameters and buffers by position (API-4), for
    a comparison that changes neither model's tensors (an eval-mode forward): built on the meta
    device and given ``ref``'s tensors themselves, shared rather than copied (copying B8's 87M
    parameters into fresh memory costs about a second, most of it page faults).  Where a shared
    tensor cannot be put in place (the meta device cannot build the model, the state_dict does not
    hold every value, a state_dict key that names no parameter or buffer), it is
    ``build_to_overwrite`` and ``copy_weights_in_order``: the same model, computing the same."""
    try:
        model = build(factory, META)
    except Exception as e:
        if not meta_caused(e):
            raise
        model = None
    if model is not None:
        problem = torchutil.first_shape_mismatch(model, ref)
        if problem:  # the message copy_weights_in_order gives
            raise AssertionError(f"cannot copy weights by position: {problem}")
        if _state_dict_holds_everything(model) and _share_in_order(ref, model):
            return model.eval()
    model = build_to_overwrite(factory, next(ref.parameters()).device)
    torchutil.copy_weights_in_order(ref, model)
    return model.eval()


def _share_in_order(src: nn.Module, dst: nn.Module) -> bool:
    """Put ``src``'s state_dict tensors in the places of ``dst``'s, by position; False (``dst``
    unchanged) when some state_dict entry of ``dst`` is not a parameter or buffer under its key."""
    places = []
    for key, tensor in dst.state_dict(keep_vars=True).items():
        owner, _, name = key.rpartition(".")
        try:
            module = dst.get_submodule(owner)
        except AttributeError:
            return False
        if module._parameters.get(name) is tensor:
            places.append((module._parameters, name, True))
        elif module._buffers.get(name) is tensor:
            places.append((module._buffers, name, False))
        else:
            return False
    with torch.no_grad():
        for (table, name, is_parameter), value in zip(places, src.state_dict().values(), strict=True):
            old = table[name]
            assert old is not None
            value = value.reshape(old.shape)  # the same values where the two differ in size-1 dimensions
            table[name] = nn.Parameter(value, requires_grad=old.requires_grad) if is_parameter else value
    return True


# --- The implementation under test ------------------------------------------------------------
def impl_factory(impl: ModuleType, name: str) -> Callable[[], nn.Module]:
    """``impl.efficientnet_<name>``; skips the test when an optional variant (API-5) is missing."""
    factory = getattr(impl, f"efficientnet_{name}", None)
    if factory is None:
        if spec.variant(name).get("optional", False):
            pytest.skip(f"the implementation has no efficientnet_{name} (optional, clause API-5)")
        raise AssertionError(f"the implementation has no efficientnet_{name} (clause API-1)")
    return factory


def meta_caused(error: BaseException) -> bool:
    """Whether an exception is the meta device's doing (a value read, an operator without a meta
    kernel, a tensor the implementation made on another device): only then is the same step worth
    repeating on the CPU.  Any other exception (a shape mismatch, the implementation's own argument
    check) is raised on any device, so it is the implementation's error as it stands, and repeating
    it with real weights would only cost time: minutes for a large model that fails part-way."""
    return isinstance(error, NotImplementedError) or "meta" in str(error).lower()


_META: dict[tuple[ModuleType, str], nn.Module | None] = {}


def impl_meta(impl: ModuleType, name: str) -> nn.Module | None:
    """The implementation's variant on the meta device (cached; treat as read-only), or None if the
    meta device cannot build it (e.g. data-dependent construction): callers then use real weights.
    An error that is not the meta device's doing (``meta_caused``) is raised as the CPU would raise
    it (not cached: building on meta again costs little)."""
    if (impl, name) not in _META:
        try:
            _META[impl, name] = build(impl_factory(impl, name), META)
        except Exception as e:
            if not meta_caused(e):
                raise
            _META[impl, name] = None
    return _META[impl, name]


def impl_shapes_only(impl: ModuleType, name: str) -> nn.Module:
    """The variant for looking at shapes and counts: on the meta device (cached) if the
    implementation builds there, else with real weights (not for l2: about 2 GB)."""
    model = impl_meta(impl, name)
    if model is None:
        if name == "l2":
            pytest.skip("l2 (480M parameters) is checked only on the meta device, where this implementation fails")
        model = build(impl_factory(impl, name))
    return model


@dataclass(frozen=True)
class Pass:
    """What one forward pass of a model showed without looking at values."""

    shapes: dict[str, tuple[int, ...]]  # output shape of each tap (those that ran, when the pass raised)
    macs: float  # multiply-accumulates: torch.utils.flop_counter's total, halved (TABLE2-2); NaN if not counted
    error: str | None = None  # what the implementation's forward raised, after the taps in ``shapes``
    tapped: tuple[str, ...] | None = None  # the taps the network has (None: all of API-3's)


def _probe(shape: tuple[int, ...], device: torch.device) -> Tensor:
    """An input of ``shape`` for a pass that looks only at shapes: empty on meta, random elsewhere."""
    return torch.empty(shape, device=device) if device == META else torch.randn(shape, device=device)


def run_pass(model: nn.Module, taps: Taps, shape: tuple[int, ...], count_macs: bool = False) -> Pass:
    """Tap shapes (and MACs, which slow the pass down) for an input of ``shape``, on the model's device."""
    device = next(model.parameters()).device
    x = _probe(shape, device)
    with _MetaBatchNorm() if device == META else nullcontext():
        tapped = None if has_the_structure(model) else tuple(taps)
        if not count_macs:
            return Pass({k: tuple(v.shape) for k, v in record(model, taps, x).items()}, math.nan, None, tapped)
        with FlopCounterMode(display=False) as counter:
            outputs = record(model, taps, x)
    return Pass({k: tuple(v.shape) for k, v in outputs.items()}, counter.get_total_flops() / 2, None, tapped)


@cache
def impl_pass(impl: ModuleType, name: str, shape: tuple[int, ...], count_macs: bool = False) -> Pass:
    """Tap shapes (and MACs) of the implementation's variant (cached): on the meta device when the
    implementation builds and runs there, else with real weights (slow for large variants and inputs)."""
    model = impl_meta(impl, name)
    if model is not None:
        taps = impl_taps(model, ref=timm_meta(name), ref_taps=timm_taps)
        try:
            return run_pass(model, taps, shape, count_macs)
        except Exception as e:
            if not meta_caused(e):  # the implementation's own error: the parts that ran, on meta
                return _partial_pass(model, taps, shape, e)
            # else a forward that needs data: the real run below
    model = build(impl_factory(impl, name))
    taps = impl_taps(model, ref=timm_meta(name), ref_taps=timm_taps)
    try:
        return run_pass(model, taps, shape, count_macs)
    except Exception as e:
        return _partial_pass(model, taps, shape, e)


def _partial_pass(model: nn.Module, taps: Taps, shape: tuple[int, ...], error: Exception) -> Pass:
    """The shapes of the taps that ran before the forward raised ``error``, so that the first part
    that failed is named."""
    message = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300]
    device = next(model.parameters()).device
    seen: dict[str, tuple[int, ...]] = {}
    handles = [hook(m, lambda _m, _a, out, k=k: seen.setdefault(k, tuple(out.shape))) for k, m in taps.items()]
    try:
        with torch.no_grad(), _MetaBatchNorm() if device == META else nullcontext():
            model(_probe(shape, device))
    except Exception:
        pass  # the error above, again
    finally:
        for h in handles:
            h.remove()
    return Pass(seen, math.nan, message, None if has_the_structure(model) else tuple(taps))


# --- The references -------------------------------------------------------------------------
def timm_name(name: str) -> str:
    return f"efficientnet_{name}"


@cache
def timm_meta(name: str) -> nn.Module:
    """timm's ``efficientnet_<name>`` on the meta device (cached; treat as read-only)."""
    return timm_model_on(name, META)


@cache
def timm_shapes(name: str, shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """The tap shapes of timm's ``efficientnet_<name>`` for an input of ``shape`` (cached)."""
    ref = timm_meta(name)
    return run_pass(ref, timm_taps(ref), shape).shapes


def timm_model(name: str) -> nn.Module:
    """timm's ``efficientnet_<name>`` (no pretrained weights) on the CPU with random weights (randomise)."""
    return randomise(timm_model_on(name, META).to_empty(device=CPU))


def timm_model_on(name: str, device: torch.device) -> nn.Module:
    """timm's ``efficientnet_<name>`` built on ``device``, with timm's own initialisation (none on
    the meta device: see _timm_generator)."""
    import timm
    from timm.models import efficientnet

    init = mock.patch.object(efficientnet, "efficientnet_init_weights", return_value=None)
    with init if device == META else nullcontext():
        return build(lambda: timm.create_model(timm_name(name), pretrained=False), device)


def timm_scaled(w_factor: float, d_factor: float, n_classes: int) -> nn.Module:
    """timm's EfficientNet at any compound-scaling factors (its builder behind efficientnet_bN),
    on the CPU with random weights (randomise)."""
    return randomise(_timm_generator(w_factor, d_factor, n_classes).to_empty(device=CPU))


@lru_cache(maxsize=16)  # a property's shrinking revisits examples; meta models of L2's size are a few MB each
def timm_scaled_meta(w_factor: float, d_factor: float, n_classes: int) -> nn.Module:
    """timm's EfficientNet at any factors on the meta device (cached; treat as read-only)."""
    return _timm_generator(w_factor, d_factor, n_classes)


TIMM_GENERATOR = "timm _gen_efficientnet('efficientnet_b0', channel_multiplier=w, depth_multiplier=d)"


def _timm_generator(w_factor: float, d_factor: float, n_classes: int) -> nn.Module:
    """timm's generator on the meta device, without timm's weight initialisation: its values would
    be meaningless there (and randomise replaces them), and on meta it costs half the build."""
    from timm.models import efficientnet

    with mock.patch.object(efficientnet, "efficientnet_init_weights", return_value=None):
        return build(
            lambda: efficientnet._gen_efficientnet(
                "efficientnet_b0", channel_multiplier=w_factor, depth_multiplier=d_factor, num_classes=n_classes
            ),
            META,
        )


def structure(factory: Callable[[], nn.Module]) -> nn.Module:
    """``factory()`` on the meta device for looking at its structure (shapes, counts, module
    settings), or on the CPU when it cannot be built on meta (e.g. data-dependent construction)."""
    try:
        return build(factory, META)
    except Exception as e:
        if not meta_caused(e):  # the implementation's own error, raised as the CPU would raise it
            raise
    return build(factory)  # the meta device could not build it; the CPU raises a genuine error, if any


@torch.no_grad()
def randomise(model: nn.Module, seed: int = SEED) -> nn.Module:
    """Random values for every parameter, fresh BN statistics: convolution and linear weights
    N(0, 2 / fan_in) (He), BN weights U(0.5, 1.5), all biases N(0, 0.1^2).  One pass, and unlike
    the libraries' initialisation (BN weight 1, biases 0) every BN weight and bias matters."""
    g = torch.Generator().manual_seed(seed)
    done: set[int] = set()
    # Drawn in place (out=), with the values torch.randn(shape) * scale would give: B8's 87M
    # parameters drawn into temporaries and copied cost twice the memory traffic and page faults.
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            fan_in = module.weight[0].numel()
            torch.randn(module.weight.shape, generator=g, out=module.weight.detach()).mul_((2 / fan_in) ** 0.5)
            done.add(id(module.weight))
        elif isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            torch.rand(module.weight.shape, generator=g, out=module.weight.detach()).add_(0.5)
            done.update(id(t) for t in (module.weight, module.running_mean, module.running_var))
            done.add(id(module.num_batches_tracked))
        else:
            continue
        if module.bias is not None:
            torch.randn(module.bias.shape, generator=g, out=module.bias.detach()).mul_(0.1)
            done.add(id(module.bias))
    missed = [name for name, t in model.state_dict(keep_vars=True).items() if id(t) not in done]
    if missed:
        raise AssertionError(f"randomise: no rule for {', '.join(missed[:3])} of {type(model).__name__}")
    return model.eval()


@cache
def torchvision_meta(name: str) -> nn.Module:
    """torchvision's ``efficientnet_<name>`` on the meta device (cached; treat as read-only)."""
    return torchvision_model_on(name, META)


def torchvision_model(name: str) -> nn.Module:
    """torchvision's ``efficientnet_<name>(weights=None)`` on the CPU with random weights (randomise)."""
    return randomise(torchvision_model_on(name, META).to_empty(device=CPU))


def torchvision_model_on(name: str, device: torch.device) -> nn.Module:
    """torchvision's ``efficientnet_<name>(weights=None)`` built on ``device``."""
    import torchvision

    return build(lambda: getattr(torchvision.models, f"efficientnet_{name}")(weights=None), device)


# --- Taps: the same named points in each model --------------------------------------------------
def _stages(stages: nn.Module, per_block: bool) -> Taps:
    taps: Taps = {}
    for i, stage in enumerate(stages):
        if per_block:
            taps.update({f"stage {i} block {j}": block for j, block in enumerate(stage)})
        else:
            taps[f"stage {i}"] = stage
    return taps


STRUCTURE = ("stem", "stages", "pre", "pool_flatten", "head")  # API-3's children


def has_the_structure(model: nn.Module) -> bool:
    """Whether ``model`` has the tutorial's children (API-3)."""
    return all(hasattr(model, name) for name in STRUCTURE)


def impl_taps(
    model: nn.Module, per_block: bool = False, ref: nn.Module | None = None, ref_taps: Callable[..., Taps] | None = None
) -> Taps:
    """API-3: ``stem``, ``stages[i][j]``, ``pre`` (head conv), ``head`` (its output is the logits).  A network
    without that structure, given a reference with the same tensors (``ref`` and its taps' function), is
    tapped where its modules hold the reference's segments (tests/support/parts.py ``taps_like``): some taps
    may be missing there, and the callers compare those there are."""
    if ref is not None and ref_taps is not None and not has_the_structure(model):
        from tests.support import parts

        return parts.taps_like(model, ref, ref_taps(ref, per_block))
    return {
        "stem": model.stem,
        **_stages(model.stages, per_block),
        "head conv": model.pre,
        "logits": model.head,
    }


def timm_taps(model: nn.Module, per_block: bool = False) -> Taps:
    """timm: ``conv_stem``/``bn1`` (BN with its activation), ``blocks[i][j]``, ``conv_head``/``bn2``."""
    return {
        "stem": model.bn1,
        **_stages(model.blocks, per_block),
        "head conv": model.bn2,
        "logits": model.classifier,
    }


def torchvision_taps(model: nn.Module, per_block: bool = False) -> Taps:
    """torchvision: ``features[0]`` stem, ``features[1..7]`` stages, ``features[8]`` head conv."""
    features = model.features
    return {
        "stem": features[0],
        **_stages(features[1:8], per_block),
        "head conv": features[8],
        "logits": model.classifier,
    }


@torch.no_grad()
def record(model: nn.Module, taps: Taps, x: Tensor) -> dict[str, Tensor]:
    """Run ``model(x)`` and return each tap's output (copied: a later in-place op cannot change it)."""
    outputs: dict[str, Tensor] = {}

    def saver(key: str) -> Callable[..., None]:
        def save(module: nn.Module, args: object, output: Tensor) -> None:
            outputs[key] = output.detach().clone()

        return save

    handles = [hook(module, saver(key)) for key, module in taps.items()]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    missing = [k for k in taps if k not in outputs]
    if missing:
        raise AssertionError(f"the forward pass never ran {', '.join(missing)}")
    return {k: outputs[k] for k in taps}


def first_divergence(
    actual: dict[str, Tensor], expected: dict[str, Tensor], tol: float | dict[str, float], what: str | None = None
) -> str | None:
    """None when every tap agrees within relative L2 error ``tol`` (one for all, or one per tap), else
    where the first one diverges.  ``what``: the name under which each error is recorded with its
    tolerance (torchutil.margin)."""
    for key, e in expected.items():
        a = actual[key]
        if a.shape != e.shape:
            return f"{key}: shape {tuple(a.shape)}, reference {tuple(e.shape)}"
        err, bound = torchutil.rel_err(a, e), tol[key] if isinstance(tol, dict) else tol
        if what is not None:
            torchutil.margin(what, err, bound)
        if not err <= bound:  # NaN diverges too
            return f"{key}: relative error {err:.3g} > {bound:g}"
    return None


# --- Eval-mode comparison with a reference's weights (NUM-1, NUM-4) ------------------------------
def images(seed: int, batch: int, resolution: int, device: torch.device = CPU) -> Tensor:
    """A seeded batch of random images (standard normal, like normalised inputs)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, resolution, resolution, generator=g).to(device)


# With random weights and BN statistics from a few small images, deep variants are chaotic: at
# 64 px, B7's logits move by 6e5 times a relative input perturbation, so float32 rounding alone
# (or any equivalent reordering of operations in a fork) changes them by 60%.  Trained networks
# have small residual branches; scaling the last BN weight of every residual branch by this
# factor gives the random reference the same property: B0-B8 then amplify a relative input
# perturbation 4-5 times, and their logits still depend on the input (input_dependence 0.6-0.7).
RESIDUAL_DAMPING = 0.1


def _last_bn_of_residual_branch(module: nn.Module) -> nn.Module | None:
    if getattr(module, "has_skip", False):  # timm InvertedResidual (bn3), DepthwiseSeparableConv (bn2)
        return module.bn3 if hasattr(module, "bn3") else module.bn2
    if getattr(module, "use_res_connect", False):  # torchvision MBConv: block[-1] is the projection conv + BN
        return module.block[-1][1]
    return None


def _is_reference_block(module: nn.Module) -> bool:
    return hasattr(module, "has_skip") or hasattr(module, "use_res_connect")


@torch.no_grad()
def damp_residual_branches(ref: nn.Module) -> nn.Module:
    """Scale the last BN weight of every residual branch of a timm or torchvision EfficientNet
    (at small depth factors there may be none: every stage one block that changes the width)."""
    if not any(map(_is_reference_block, ref.modules())):
        raise AssertionError(f"found no block of timm or torchvision in {type(ref).__name__}")
    damped = [bn for bn in map(_last_bn_of_residual_branch, ref.modules()) if bn is not None]
    for bn in damped:
        bn.weight.mul_(RESIDUAL_DAMPING)
    return ref


def prepare_reference(ref: nn.Module, resolution: int) -> nn.Module:
    """Damped residual branches and BN statistics of random images at ``resolution``: a well
    conditioned random network whose output depends on its input (torchutil.calibrate_batchnorm)."""
    device = next(ref.parameters()).device
    damp_residual_branches(ref)
    return torchutil.calibrate_batchnorm(ref, [images(1, 8, resolution, device)])


@dataclass(frozen=True)
class Prepared:
    """A prepared reference (prepare_reference) and the output of each of its taps, per block, for
    compare_eval's images at ``resolution`` (``eval_images``), with the float32 rounding noise of each
    tap in a whole forward pass (``noise``: the reference against itself on a channels-last input,
    whose convolutions sum in another order).  Shared by every test that compares against it:
    read-only."""

    model: nn.Module
    taps: Callable[..., Taps]
    resolution: int
    expected: dict[str, Tensor]
    noise: dict[str, float]


def eval_images(resolution: int, device: torch.device) -> Tensor:
    """The images of every eval-mode comparison (compare_eval)."""
    return images(2, 4, resolution, device)


def prepared(ref: nn.Module, taps: Callable[..., Taps], resolution: int) -> Prepared:
    """``ref`` prepared at ``resolution`` (prepare_reference), with its tap outputs recorded."""
    device = next(ref.parameters()).device
    prepare_reference(ref, resolution)
    x = eval_images(resolution, device)
    expected = record(ref, taps(ref, per_block=True), x)
    again = record(ref, taps(ref, per_block=True), x.contiguous(memory_format=torch.channels_last))
    noise = {key: torchutil.rel_err(again[key], e) for key, e in expected.items()}
    return Prepared(ref, taps, resolution, expected, noise)


_PREPARED: dict[tuple[Any, ...], Prepared] = {}


def prepared_named(
    library: str, name: str, resolution: int, device: torch.device, eps: float | None = None, keep: bool = False
) -> Prepared:
    """timm's or torchvision's ``efficientnet_<name>`` with random weights (``library`` "timm" or
    "torchvision"), every BatchNorm's eps set to ``eps`` unless it is None, prepared at
    ``resolution`` on ``device``.  It depends on nothing of the implementation: one made with
    ``keep`` is kept and handed out again (read-only), which tests/support/warm.py does in subrun's
    server for the runs forked from it.  Otherwise it is made for the caller and freed with it (each
    test asks once: kept, the named ones would hold 2 GB for the rest of the run)."""
    key = (library, name, resolution, device, eps)
    if key in _PREPARED:
        return _PREPARED[key]
    if library == "timm":
        ref, taps = timm_model(name), timm_taps
    elif library == "torchvision":
        ref, taps = torchvision_model(name), torchvision_taps
    else:
        raise ValueError(f"library: {library!r}; expected 'timm' or 'torchvision'")
    if eps is not None:
        for bn in torchutil.batchnorms(ref):
            bn.eps = eps
    made = prepared(ref.to(device), taps, resolution)
    if keep:
        _PREPARED[key] = made
    return made


@dataclass(frozen=True)
class EvalComparison:
    local_divergence: str | None  # the first segment that differs given the reference's input to it
    divergence: str | None  # the first tap that differs in a whole forward pass (first_divergence)
    logits_err: float  # relative L2 error of the logits in a whole forward pass
    input_dependence: float  # of the reference's logits (torchutil.input_dependence)


def compare_eval(
    factory: Callable[[], nn.Module], ref: Prepared, tol: float, clause: str | None = None
) -> EvalComparison:
    """Build ``factory()`` with all weights of a prepared reference by position (API-4,
    ``with_weights_of``) and compare, in eval mode on the reference's device, the output of the
    stem, every block, the head conv and the logits: each segment of the model given the
    reference's input to that segment (so that rounding differences cannot accumulate), and the
    whole forward pass.  The reference's outputs were recorded when it was prepared: the model
    shares its tensors, and a model that changed them cannot change what it is compared with."""
    device = next(ref.model.parameters()).device
    model = with_weights_of(ref.model, factory)  # fails naming the first tensor whose shape differs
    x = eval_images(ref.resolution, device)
    expected = ref.expected
    taps = impl_taps(model, per_block=True, ref=ref.model, ref_taps=ref.taps)
    actual = record(model, taps, x)
    if "logits" not in actual:  # a network tapped by the reference's segments: its output is the logits
        with torch.no_grad():
            actual["logits"] = model(x).detach().clone()
    tapped = {key: e for key, e in expected.items() if key in actual}
    segments = _segment_outputs(model, x, expected, taps)
    return EvalComparison(
        first_divergence(
            segments, {k: e for k, e in expected.items() if k in segments}, tol, clause and f"{clause} segments"
        ),
        first_divergence(actual, tapped, whole_pass_tolerances(ref, tol), clause and f"{clause} whole pass"),
        torchutil.rel_err(actual["logits"], expected["logits"]),
        torchutil.input_dependence(expected["logits"]),
    )


# A whole forward pass compounds rounding: damped as the reference is, its taps move by 2e-6 to 3.2e-6
# (B0 to B7, timm and torchvision, native and `default` kernels) on a channels-last input, and correct
# forks by as much (channels-last input 2.6e-6, an nn.Linear SE 3.3e-6), where each segment given the
# reference's input moves by a few 1e-7 (EVAL_TOL holds those).  At each tap the tolerance is at least
# this many times the reference's own noise there: 1e-4 to 1.6e-4, 30 times the forks' errors.  A
# forward that composes its segments otherwise (a block skipped or run twice, the head on the wrong
# stage) is off by 1e-2 or more.
WHOLE_PASS_NOISE_FACTOR = 50


def whole_pass_tolerances(ref: Prepared, tol: float) -> dict[str, float]:
    """Each tap's tolerance in a whole forward pass: ``tol``, or WHOLE_PASS_NOISE_FACTOR times the
    reference's own rounding noise there (``Prepared.noise``) where that is larger."""
    return {key: max(tol, WHOLE_PASS_NOISE_FACTOR * noise) for key, noise in ref.noise.items()}


@torch.no_grad()
def _segment_outputs(model: nn.Module, x: Tensor, expected: dict[str, Tensor], taps: Taps) -> dict[str, Tensor]:
    """Each segment of ``model`` that ``taps`` holds applied to the reference's output of the segment
    before it (the reference's taps, in order: ``expected``).  The logits are the head's output on the
    pooled head conv (API-3's ``pool_flatten`` and ``head``; a network tapped by the reference's segments:
    its classifier on the spatial mean, as eval mode computes it)."""
    structured = has_the_structure(model)
    outputs, previous = {}, x
    for key, e in expected.items():
        if key in taps and not isinstance(taps[key], InputOf):
            given = previous.clone()  # the segment may work in place on its input
            if key != "logits":
                outputs[key] = taps[key](given)
            elif structured:
                outputs[key] = model.head(model.pool_flatten(given))
            else:
                outputs[key] = taps[key](given.mean((2, 3)))
        previous = e
    return outputs


def native_input(name: str) -> tuple[int, int, int, int]:
    """The input shape of one image at the variant's native resolution."""
    resolution = spec.variant(name)["resolution"]
    return (1, 3, resolution, resolution)
