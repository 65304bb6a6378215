"""The reference EfficientNets of the cross-checks (timm, torchvision) as the tests compare with them:
hooks that read the same intermediate outputs ("stem", "stage i", "stage i block j", "head conv",
"logits") from the implementation and from either reference, random weights for a reference, a
reference prepared for eval-mode comparisons (NUM-1, NUM-4), and the comparisons themselves.

Building the models cheaply (on the meta device, sharing tensors, the per-worker caches) is
tests/support/models.py's business; this module works with any model it is given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import pytest
import torch
from torch import Tensor, nn

from tests.support import spec, torchutil

SEED = 0
CPU = torch.device("cpu")

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


# --- The implementation under test ------------------------------------------------------------
def impl_factory(impl: ModuleType, name: str) -> Callable[[], nn.Module]:
    """``impl.efficientnet_<name>``; skips the test when an optional variant (API-5) is missing."""
    factory = getattr(impl, f"efficientnet_{name}", None)
    if factory is None:
        if spec.variant(name).get("optional", False):
            pytest.skip(f"the implementation has no efficientnet_{name} (optional, clause API-5)")
        raise AssertionError(f"the implementation has no efficientnet_{name} (clause API-1)")
    return factory


def timm_name(name: str) -> str:
    return f"efficientnet_{name}"


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


@dataclass(frozen=True)
class EvalComparison:
    local_divergence: str | None  # the first segment that differs given the reference's input to it
    divergence: str | None  # the first tap that differs in a whole forward pass (first_divergence)
    logits_err: float  # relative L2 error of the logits in a whole forward pass
    input_dependence: float  # of the reference's logits (torchutil.input_dependence)


def compare_eval(model: nn.Module, ref: Prepared, tol: float, clause: str | None = None) -> EvalComparison:
    """Compare ``model``, which holds all weights of a prepared reference by position (API-4,
    models.with_weights_of), with it, in eval mode on the reference's device: the output of the stem,
    every block, the head conv and the logits, each segment of the model given the reference's input
    to that segment (so that rounding differences cannot accumulate), and the whole forward pass.  The
    reference's outputs were recorded when it was prepared: a model that shares its tensors and
    changes them cannot change what it is compared with."""
    device = next(ref.model.parameters()).device
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
