"""The models a test builds, named by what it does with them (``to_run``, ``to_inspect`` and the
``*_to_inspect`` models, ``to_overwrite``, ``with_weights_of``, the references with random weights, the
prepared references of NUM-1 and NUM-4), and every meta-device trick that makes building them cheap.

Models on the meta device have shapes but no data: building and running them costs no memory and little
time, so shape, parameter and MAC checks run there, even for B7 at 600 px (``on_meta_or_cpu``: where they
cannot).  Meta models are cached per worker; models with real weights are built by the test that needs
them (some are modified: BN calibration, a training step), except the reference work that depends on
nothing of the implementation, which ``warm_up`` does in subrun's server under the keys the tests ask by.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cache, lru_cache
from types import ModuleType
from typing import Any, TypeVar
from unittest import mock

import pytest
import torch
import torch.nn.functional as F  # noqa: N812 - the usual alias
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode

from tests.support import reference, spec, torchutil
from tests.support.reference import CPU, Prepared, Taps, hook

META = torch.device("meta")
T = TypeVar("T")

# The keys of the reference work that warm_up makes ahead of forked runs:
EVAL_RESOLUTION = 64  # NUM-1 and NUM-4 (tests/conformance/test_numerics.py says why 64 px suffices)
NUM1_VARIANTS = (*spec.variants(include_optional=False), "b8")  # timm's, prepared (num1_reference)
NUM4_VARIANTS = tuple(spec.variants(include_optional=False))  # torchvision's, prepared (num4_reference)
NUM4_EPS = spec.data()["base"]["layers"]["batchnorm_eps"]  # BLOCK-2: torchvision's every BN eps for NUM-4
# ARCH-6 at a size that is odd and non-square: every stride-2 layer must round up (ceil(57/2) = 29),
# for H and W separately.  timm's tap shapes are made there and at each variant's native input.
SMALL_ODD_INPUT = (2, 3, 57, 71)


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
    (mean, variance, broadcasting), about half the time of a shape pass.  Where every tensor argument
    is on meta, of the input's dtype and of shape (C,) for an input of C channels, and the statistics
    are given and not being updated, the output is an empty tensor like the input, which is what the
    decomposition gives; any other call (a channel count that differs, training, a real tensor, an
    argument that is no tensor) runs F.batch_norm as it is, and raises where it would raise."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        if func is F.batch_norm:
            x, tensors, training = _batch_norm_arguments(*args, **kwargs)  # bound by F.batch_norm already
            shape_only = isinstance(x, Tensor) and x.is_meta and x.dim() >= 2 and not training
            statistics = tensors[0] is not None and tensors[1] is not None  # the running mean and variance
            if shape_only and statistics and all(t is None or _meta_channels_like(t, x) for t in tensors):
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


def to_run(factory: Callable[[], nn.Module], device: torch.device = CPU) -> nn.Module:
    """A model to run: ``factory()`` on ``device``, in eval mode, with parameters drawn from a fixed
    seed (on the meta device, without the fills, which have nothing to fill there)."""
    with torch.random.fork_rng(devices=[]), device, _NoFillOnMeta() if device == META else nullcontext():
        torch.manual_seed(reference.SEED)
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


def to_overwrite(factory: Callable[[], nn.Module], device: torch.device = CPU) -> nn.Module:
    """A model whose every state_dict entry the test copies in (copy_weights_in_order) before using
    it: ``factory()`` built on the meta device and given uninitialised memory on ``device``, which
    skips the initialisation (the CPU's random numbers) that the copy would overwrite.  Where the
    state_dict does not hold every value the model computes with (``_state_dict_holds_everything``),
    or the meta device cannot build it, it is built on ``device`` as ``to_run`` does: the result is
    the same model once the copy is done."""
    model = on_meta_or_cpu(lambda: to_run(factory, META), lambda: None)
    if model is None or not _state_dict_holds_everything(model):
        return to_run(factory).to(device)
    return model.to_empty(device=device)


def with_weights_of(ref: nn.Module, factory: Callable[[], nn.Module]) -> nn.Module:
    """``factory()`` in eval mode holding ``ref``'s parameters and buffers by position (API-4), for
    a comparison that changes neither model's tensors (an eval-mode forward): built on the meta
    device and given ``ref``'s tensors themselves, shared rather than copied (copying B8's 87M
    parameters into fresh memory costs time, most of it page faults).  Where a shared tensor cannot
    be put in place (the meta device cannot build the model, the state_dict does not hold every
    value, a state_dict key that names no parameter or buffer), it is ``to_overwrite`` and
    ``copy_weights_in_order``: the same model, computing the same."""
    model = on_meta_or_cpu(lambda: to_run(factory, META), lambda: None)
    if model is not None:
        problem = torchutil.first_shape_mismatch(model, ref)
        if problem:  # the message copy_weights_in_order gives
            raise AssertionError(f"cannot copy weights by position: {problem}")
        if _state_dict_holds_everything(model) and _share_in_order(ref, model):
            return model.eval()
    model = to_overwrite(factory, next(ref.parameters()).device)
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


def meta_caused(error: BaseException) -> bool:
    """Whether an exception is the meta device's doing (a value read, an operator without a meta
    kernel, a tensor the implementation made on another device): only then is the same step worth
    repeating on the CPU.  Any other exception (a shape mismatch, the implementation's own argument
    check) is raised on any device, so it is the implementation's error as it stands, and repeating
    it with real weights would only cost time: minutes for a large model that fails part-way."""
    return isinstance(error, NotImplementedError) or "meta" in str(error).lower()


def on_meta_or_cpu(on_meta: Callable[[], T], otherwise: Callable[[], T]) -> T:
    """``on_meta()``, or ``otherwise()`` (the same step on the CPU, or None: "not on meta") where the meta device
    caused its failure (``meta_caused``): the one rule of every meta-device attempt; any other exception is raised."""
    try:
        return on_meta()
    except Exception as e:
        if not meta_caused(e):
            raise
    return otherwise()


def call_on_meta_or_cpu(call: Callable[[], T]) -> T:
    """``call()`` (a constructor of the implementation's, say) with the meta device as the default
    device, or again on the CPU where the meta device caused its failure (``on_meta_or_cpu``)."""

    def on_meta() -> T:
        with META:
            return call()

    return on_meta_or_cpu(on_meta, call)


@cache
def impl_meta(impl: ModuleType, name: str) -> nn.Module | None:
    """The implementation's variant on the meta device (cached; treat as read-only), or None if the
    meta device cannot build it (e.g. data-dependent construction): callers then use real weights.
    An error that is not the meta device's doing (``meta_caused``) is raised (not cached: building on
    meta again costs little)."""
    factory = reference.impl_factory(impl, name)
    return on_meta_or_cpu(lambda: to_run(factory, META), lambda: None)


def impl_to_inspect(impl: ModuleType, name: str) -> nn.Module:
    """The implementation's variant to read shapes and counts from: on the meta device (cached) if
    the implementation builds there, else with real weights (not for l2: about 2 GB)."""
    model = impl_meta(impl, name)
    if model is None:
        if name == "l2":
            pytest.skip("l2 (480M parameters) is checked only on the meta device, where this implementation fails")
        model = to_run(reference.impl_factory(impl, name))
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
    counter = FlopCounterMode(display=False) if count_macs else None
    with _MetaBatchNorm() if device == META else nullcontext(), counter or nullcontext():
        outputs = reference.record(model, taps, x)
    macs = counter.get_total_flops() / 2 if counter is not None else math.nan
    tapped = None if reference.has_the_structure(model) else tuple(taps)
    return Pass({k: tuple(v.shape) for k, v in outputs.items()}, macs, None, tapped)


@cache
def impl_forward_shapes(impl: ModuleType, name: str, shape: tuple[int, ...], count_macs: bool = False) -> Pass:
    """Tap shapes (and MACs) of a forward pass of the implementation's variant (cached): on the meta
    device when the implementation builds and runs there, else with real weights (slow for large
    variants and inputs)."""
    model = impl_meta(impl, name)
    if model is not None:
        taps = reference.impl_taps(model, ref=timm_to_inspect(name), ref_taps=reference.timm_taps)
        try:
            return run_pass(model, taps, shape, count_macs)
        except Exception as e:
            if not meta_caused(e):  # the implementation's own error: the parts that ran, on meta
                return _partial_pass(model, taps, shape, e)
            # else a forward that needs data: the real run below
    model = to_run(reference.impl_factory(impl, name))
    taps = reference.impl_taps(model, ref=timm_to_inspect(name), ref_taps=reference.timm_taps)
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
    return Pass(seen, math.nan, message, None if reference.has_the_structure(model) else tuple(taps))


@cache
def timm_to_inspect(name: str) -> nn.Module:
    """timm's ``efficientnet_<name>`` to read shapes from: on the meta device (cached; read-only)."""
    return _timm_named(name)


@cache
def timm_shapes(name: str, shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """The tap shapes of timm's ``efficientnet_<name>`` for an input of ``shape`` (cached)."""
    ref = timm_to_inspect(name)
    return run_pass(ref, reference.timm_taps(ref), shape).shapes


def timm_model(name: str) -> nn.Module:
    """timm's ``efficientnet_<name>`` (no pretrained weights) on the CPU with random weights (randomise)."""
    return reference.randomise(_timm_named(name).to_empty(device=CPU))


def timm_scaled(w_factor: float, d_factor: float, n_classes: int) -> nn.Module:
    """timm's EfficientNet at any compound-scaling factors (its builder behind efficientnet_bN),
    on the CPU with random weights (randomise)."""
    return reference.randomise(_timm_generator(w_factor, d_factor, n_classes).to_empty(device=CPU))


@lru_cache(maxsize=16)  # a property's shrinking revisits examples; meta models of L2's size are a few MB each
def timm_scaled_to_inspect(w_factor: float, d_factor: float, n_classes: int) -> nn.Module:
    """timm's EfficientNet at any factors to read shapes from: on the meta device (cached; read-only)."""
    return _timm_generator(w_factor, d_factor, n_classes)


TIMM_GENERATOR = "timm _gen_efficientnet('efficientnet_b0', channel_multiplier=w, depth_multiplier=d)"


def _timm_named(name: str) -> nn.Module:
    import timm

    return _timm_on_meta(lambda: timm.create_model(reference.timm_name(name), pretrained=False))


def _timm_generator(w_factor: float, d_factor: float, n_classes: int) -> nn.Module:
    from timm.models import efficientnet

    factors = {"channel_multiplier": w_factor, "depth_multiplier": d_factor, "num_classes": n_classes}
    return _timm_on_meta(lambda: efficientnet._gen_efficientnet("efficientnet_b0", **factors))


def _timm_on_meta(make: Callable[[], nn.Module]) -> nn.Module:
    """``make()``, a timm model, on the meta device without timm's weight initialisation: its values
    would be meaningless there (randomise replaces them), and on meta it costs half the build."""
    from timm.models import efficientnet

    with mock.patch.object(efficientnet, "efficientnet_init_weights", return_value=None):
        return to_run(make, META)


def to_inspect(factory: Callable[[], nn.Module]) -> nn.Module:
    """``factory()`` to read its structure from (shapes, counts, module settings): on the meta device,
    or on the CPU when it cannot be built there (e.g. data-dependent construction)."""
    return on_meta_or_cpu(lambda: to_run(factory, META), lambda: to_run(factory))


@cache
def torchvision_to_inspect(name: str) -> nn.Module:
    """torchvision's ``efficientnet_<name>(weights=None)`` to read settings from: on the meta device
    (cached; read-only)."""
    return _torchvision_on_meta(name)


def torchvision_model(name: str) -> nn.Module:
    """torchvision's ``efficientnet_<name>(weights=None)`` on the CPU with random weights (randomise)."""
    return reference.randomise(_torchvision_on_meta(name).to_empty(device=CPU))


def _torchvision_on_meta(name: str) -> nn.Module:
    import torchvision

    return to_run(lambda: getattr(torchvision.models, f"efficientnet_{name}")(weights=None), META)


_PREPARED: dict[tuple[Any, ...], Prepared] = {}


def prepared_named(
    library: str, name: str, resolution: int, device: torch.device, eps: float | None = None, keep: bool = False
) -> Prepared:
    """timm's or torchvision's ``efficientnet_<name>`` with random weights (``library`` "timm" or
    "torchvision"), every BatchNorm's eps set to ``eps`` unless it is None, prepared at
    ``resolution`` on ``device``.  It depends on nothing of the implementation: one made with
    ``keep`` is kept and handed out again (read-only), which ``warm_up`` does in subrun's server for
    the runs forked from it.  Otherwise it is made for the caller and freed with it (each
    test asks once: kept, the named ones would hold 2 GB for the rest of the run)."""
    key = (library, name, resolution, device, eps)
    if key in _PREPARED:
        return _PREPARED[key]
    if library == "timm":
        ref, taps = timm_model(name), reference.timm_taps
    elif library == "torchvision":
        ref, taps = torchvision_model(name), reference.torchvision_taps
    else:
        raise ValueError(f"library: {library!r}; expected 'timm' or 'torchvision'")
    if eps is not None:
        for bn in torchutil.batchnorms(ref):
            bn.eps = eps
    made = reference.prepared(ref.to(device), taps, resolution)
    if keep:
        _PREPARED[key] = made
    return made


def num1_reference(name: str, device: torch.device, keep: bool = False) -> Prepared:
    """NUM-1's reference: timm's ``efficientnet_<name>`` at EVAL_RESOLUTION (prepared_named)."""
    return prepared_named("timm", name, EVAL_RESOLUTION, device, keep=keep)


def num4_reference(name: str, device: torch.device, keep: bool = False) -> Prepared:
    """NUM-4's reference: torchvision's ``efficientnet_<name>``, every BN eps NUM4_EPS (prepared_named)."""
    return prepared_named("torchvision", name, EVAL_RESOLUTION, device, eps=NUM4_EPS, keep=keep)


def warm_up() -> float:
    """Make, on one thread, the reference work that depends on nothing of the implementation, under
    the keys the tests ask for it: timm's and torchvision's meta models, timm's tap shapes, NUM-1's and
    NUM-4's prepared references (kept).  Subrun's warm server does it once (tests/support/warm.py); a
    run that is not forked from it computes the same where it is used (the same code under the same
    seeds, on one thread as in an xdist worker or a runner's child).  Returns the seconds it took."""
    start = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name in spec.variants():
            timm_to_inspect(name)
            timm_shapes(name, reference.native_input(name))
            timm_shapes(name, SMALL_ODD_INPUT)
        for name in NUM1_VARIANTS:
            num1_reference(name, CPU, keep=True)
        for name in NUM4_VARIANTS:
            torchvision_to_inspect(name)
            num4_reference(name, CPU, keep=True)
    finally:
        torch.set_num_threads(threads)
    return time.perf_counter() - start
