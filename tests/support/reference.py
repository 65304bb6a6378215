"""The reference EfficientNets of the cross-checks (timm, torchvision) and the implementation's
variants, built under a fixed seed, plus hooks that read the same intermediate outputs
("stem", "stage i", "stage i block j", "head conv", "logits") from any of them.

Models on the meta device have shapes but no data: building and running them costs no memory
and almost no time, so shape, parameter and MAC checks run there even for B7 at 600 px.  Those
are cached per worker; models with real weights are built by the test that needs them (each is
used once and some are modified: BN calibration, a training step).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from types import ModuleType

import pytest
import torch
from torch import Tensor, nn

from tests.support import spec, torchutil

SEED = 0
META = torch.device("meta")
CPU = torch.device("cpu")

Taps = dict[str, nn.Module]


def build(factory: Callable[[], nn.Module], device: torch.device = CPU) -> nn.Module:
    """``factory()`` on ``device``, in eval mode, with parameters drawn from a fixed seed."""
    with torch.random.fork_rng(devices=[]), device:
        torch.manual_seed(SEED)
        return factory().eval()


# --- The implementation under test ------------------------------------------------------------
def impl_factory(impl: ModuleType, name: str) -> Callable[[], nn.Module]:
    """``impl.efficientnet_<name>``; skips the test when an optional variant (API-5) is missing."""
    factory = getattr(impl, f"efficientnet_{name}", None)
    if factory is None:
        if spec.variant(name).get("optional", False):
            pytest.skip(f"the implementation has no efficientnet_{name} (optional, clause API-5)")
        raise AssertionError(f"the implementation has no efficientnet_{name} (clause API-1)")
    return factory


@cache
def impl_meta(impl: ModuleType, name: str) -> nn.Module | None:
    """The implementation's variant on the meta device (cached; treat as read-only), or None if it
    cannot be built there (e.g. data-dependent construction): callers then use real weights."""
    factory = impl_factory(impl, name)
    try:
        return build(factory, META)
    except Exception:
        return None


def run_shapes(model: nn.Module, taps: Taps, shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Output shape of every tap for an input of ``shape``, on the model's device."""
    device = next(model.parameters()).device
    x = torch.empty(shape, device=device) if device == META else torch.randn(shape, device=device)
    return {k: tuple(v.shape) for k, v in record(model, taps, x).items()}


def impl_shapes(impl: ModuleType, name: str, shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Tap shapes of the implementation's variant: on the meta device when the implementation
    builds and runs there, else with real weights (slow for large variants and inputs)."""
    model = impl_meta(impl, name)
    if model is not None:
        try:
            return run_shapes(model, impl_taps(model), shape)
        except Exception:  # a forward that needs data (the real run below shows a genuine error)
            pass
    model = build(impl_factory(impl, name))
    return run_shapes(model, impl_taps(model), shape)


# --- The references -------------------------------------------------------------------------
def timm_name(name: str) -> str:
    return f"efficientnet_{name}"


@cache
def timm_meta(name: str) -> nn.Module:
    """timm's ``efficientnet_<name>`` on the meta device (cached; treat as read-only)."""
    return timm_model(name, META)


def timm_model(name: str, device: torch.device = CPU) -> nn.Module:
    """timm's ``efficientnet_<name>``, randomly initialised (no pretrained weights)."""
    import timm

    return build(lambda: timm.create_model(timm_name(name), pretrained=False), device)


def timm_scaled(w_factor: float, d_factor: float, n_classes: int) -> nn.Module:
    """timm's EfficientNet at any compound-scaling factors (its builder behind efficientnet_bN)."""
    from timm.models.efficientnet import _gen_efficientnet

    return build(
        lambda: _gen_efficientnet(
            "efficientnet_b0", channel_multiplier=w_factor, depth_multiplier=d_factor, num_classes=n_classes
        )
    )


@cache
def torchvision_meta(name: str) -> nn.Module:
    """torchvision's ``efficientnet_<name>`` on the meta device (cached; treat as read-only)."""
    return torchvision_model(name, META)


def torchvision_model(name: str, device: torch.device = CPU) -> nn.Module:
    """torchvision's ``efficientnet_<name>(weights=None)``."""
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


def impl_taps(model: nn.Module, per_block: bool = False) -> Taps:
    """API-3: ``stem``, ``stages[i][j]``, ``pre`` (head conv), ``head`` (its output is the logits)."""
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

    def hook(key: str) -> Callable[..., None]:
        def save(module: nn.Module, args: object, output: Tensor) -> None:
            outputs[key] = output.detach().clone()

        return save

    handles = [module.register_forward_hook(hook(key)) for key, module in taps.items()]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    missing = [k for k in taps if k not in outputs]
    if missing:
        raise AssertionError(f"the forward pass never ran {', '.join(missing)}")
    return {k: outputs[k] for k in taps}


def first_divergence(actual: dict[str, Tensor], expected: dict[str, Tensor], tol: float) -> str | None:
    """None when every tap agrees within relative L2 error ``tol``, else where the first one diverges."""
    for key, e in expected.items():
        a = actual[key]
        if a.shape != e.shape:
            return f"{key}: shape {tuple(a.shape)}, reference {tuple(e.shape)}"
        err = torchutil.rel_err(a, e)
        if not err <= tol:  # NaN diverges too
            return f"{key}: relative error {err:.3g} > {tol:g}"
    return None


def max_rel_err(actual: dict[str, Tensor], expected: dict[str, Tensor]) -> float:
    return max(torchutil.rel_err(actual[k], e) for k, e in expected.items())
