"""Normalisation layers found and judged by behaviour (BLOCK-2), not by their class.

A normalisation layer is a module that keeps running statistics: its own ``running_mean`` and
``running_var`` buffers.  That finds ``torch.nn.BatchNorm2d``, its subclasses (timm's
``BatchNormAct2d``, which also applies the activation: the same function as BatchNorm then SiLU) and
a hand-written BatchNorm alike.  Its settings are read through BatchNorm's interface (``eps``,
``momentum``) and from what it holds (affine: a weight and a bias; statistics: the two buffers), and
the momentum is also checked by the update it makes to the running mean in one training step.  A
layer of another kind (GroupNorm, LayerNorm) keeps no running statistics: it is reported as such.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from tests.support import spec

LAYERS = spec.data()["base"]["layers"]
CONVENTIONS: dict[str, list[dict[str, Any]]] = spec.data()["batchnorm_conventions"]
# BLOCK-2: what every normalisation layer must have.
SETTINGS: dict[str, Any] = {
    "eps": LAYERS["batchnorm_eps"],
    "momentum": LAYERS["batchnorm_momentum"],
    "affine": True,
    "track_running_stats": True,
}
_OTHER_NORMS = (nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm, nn.modules.batchnorm._NormBase)


def keeps_running_statistics(m: nn.Module) -> bool:
    own = dict(m.named_buffers(recurse=False))
    return "running_mean" in own and "running_var" in own


def layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(path, module) of every normalisation layer: a module that keeps running statistics, or a
    torch.nn normalisation layer that does not (GroupNorm, LayerNorm, a BatchNorm without them)."""
    return [
        (name, m) for name, m in model.named_modules() if keeps_running_statistics(m) or isinstance(m, _OTHER_NORMS)
    ]


@torch.no_grad()
def applied_momentum(m: nn.Module) -> float | None:
    """The momentum the layer applies to its running mean in one training step of a copy, or None
    where that cannot be measured (no running mean, or a layer built on the meta device)."""
    mean = dict(m.named_buffers(recurse=False)).get("running_mean")
    if mean is None or mean.is_meta or mean.ndim != 1:
        return None
    layer = copy.deepcopy(m).train()
    c = mean.numel()
    before = layer.running_mean.clone()
    x = torch.randn(4, c, 3, 3, generator=torch.Generator().manual_seed(0), dtype=mean.dtype).to(mean.device) + 2
    layer(x)
    step = x.mean((0, 2, 3)) - before
    return float(((layer.running_mean - before) / step).mean())


def _convention(setting: str, value: object) -> str:
    """The known convention (efficientnet.toml [batchnorm_conventions]) that a value found belongs
    to, as ', name', or ''."""
    if not isinstance(value, float):
        return ""
    names = [c["name"] for c in CONVENTIONS.get(setting, []) if math.isclose(value, c["value"])]
    return f", {names[0]}" if names else ""


def _show(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else repr(value)  # 1 - 0.99 shows as 0.01


def _matches(value: object, want: object) -> bool:
    if isinstance(want, float) and isinstance(value, float):
        return math.isclose(value, want, rel_tol=1e-9)
    return value == want


def layer_problems(m: nn.Module) -> list[str]:
    if not keeps_running_statistics(m):
        return [f"is {type(m).__name__}, which keeps no running statistics: not a BatchNorm"]
    params = dict(m.named_parameters(recurse=False))
    found = {  # the layer's settings as BLOCK-2 names them
        "eps": getattr(m, "eps", None),
        "momentum": getattr(m, "momentum", None),
        "affine": "weight" in params and "bias" in params,
        "track_running_stats": keeps_running_statistics(m),
    }
    problems = [
        f"{setting} {_show(found[setting])}, want {_show(want)}{_convention(setting, found[setting])}"
        for setting, want in SETTINGS.items()
        if not _matches(found[setting], want)
    ]
    applied = applied_momentum(m)
    if not problems and applied is not None and not math.isclose(applied, SETTINGS["momentum"], rel_tol=1e-3):
        problems.append(f"momentum {found['momentum']} declared, but one training step applies {applied:.4g}")
    return problems


def problem(model: nn.Module) -> str | None:
    """None when every normalisation layer keeps running statistics with the spec's settings, else
    the first that does not (module path, each value found, value wanted, the convention it
    belongs to) and how many of the model's normalisation layers are wrong."""
    found = layers(model)
    wrong = [(path, problems) for path, m in found if (problems := layer_problems(m))]
    if not wrong:
        return None
    path, problems = wrong[0]
    count = f"{len(wrong)} of its {len(found)} normalisation layers are wrong"
    return f"{path or 'the module'}: {'; '.join(problems)}; {count}"
