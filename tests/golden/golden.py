"""Regression fingerprints (clause EXT-3): per variant, the architecture fingerprint and the
outputs for closed-form weights and inputs, compared with the committed tests/golden/golden.json.

Nothing here uses a random number generator.  Every tensor of a model's state_dict is filled from
an integer hash of (its position in the state_dict, the element's index), so the weights depend on
the API-4 order and the shapes only, never on names, the torch RNG or the initialisation code:
timm's model, whose state_dict has the same order and shapes, gets the very same weights.

    conv and linear weights  uniform, std 1 / sqrt(fan_in)
    biases                   uniform in [-0.1, 0.1)
    BatchNorm weight, bias   1 + uniform in [-0.25, 0.25), uniform in [-0.1, 0.1)
    BatchNorm running mean   uniform in [-0.1, 0.1); running var in [0.5, 1.0)
    input                    per image and channel a plane wave (formula_input), plus noise

For the recorded outputs, BatchNorm's running statistics are then calibrated (the exact mean and
variance of each BN's input over a calibration batch: the input and more of the formula), so that the
outputs depend on the input; without, they would not (tests.support.torchutil.calibrate_batchnorm).

Recorded per variant: the logits in eval mode, the logits with BatchNorm in training mode (batch
statistics; dropout and stochastic depth off), and for each of the seven stages (API-3
``stages[i]``) the output's shape, mean, standard deviation and eight values at fixed positions.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from tests.support import spec, torchutil

GOLDEN = Path(__file__).with_name("golden.json")
FORMULA = "integer-hash v1"  # change when the formula changes: golden.json must then be regenerated
RESOLUTION = 64  # small: B7 at 64 px is cheap, and every stage still has a spatial extent
BATCH = 2
N_CLASSES = 10
PROBES = 8
CALIBRATION_SALT = -2
CALIBRATION_BATCH = 4
OUTPUT_VARIANTS = [f"b{n}" for n in range(8)]
FINGERPRINT_ONLY = ["b8", "l2"]  # too large to run in the suite; their architecture is still pinned
# Tolerances.  A refactor that computes the same function in another order (x.mean instead of a
# pooling module, a fused op) moves float32 results by ~1e-6 relative; a wrong function moves them
# by far more than 1e-4.
LOGITS_REL_TOL = 1e-4  # relative L2 error of a batch of logits
STAGE_TOL = 1e-4  # per value, relative to the stage output's standard deviation
SIGNIFICANT = 8  # digits stored: float32 has about 7


def hash_uniform(count: int, salt: int) -> Tensor:
    """``count`` float64 values uniform in [-1, 1): a 32-bit integer hash (murmur3's finaliser) of the
    index and ``salt``, in unsigned 32-bit arithmetic that wraps exactly, so the same on every
    machine and every numpy and torch version."""
    x = np.arange(count, dtype=np.uint32)
    x *= np.uint32(0x9E3779B1)
    x += np.uint32((salt * 0x85EBCA77 + 0x165667B1) & 0xFFFFFFFF)
    for shift, multiplier in ((16, 0x85EBCA6B), (13, 0xC2B2AE35)):
        x ^= x >> np.uint32(shift)
        x *= np.uint32(multiplier)
    x ^= x >> np.uint32(16)
    return torch.from_numpy(x.astype(np.float64) / 2**31 - 1.0)


def _role(module: nn.Module, name: str) -> str:
    if isinstance(module, _BatchNorm):
        return f"bn.{name}"
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        return f"affine.{name}"
    raise ValueError(f"no formula for {name!r} of a {type(module).__name__}: golden weights cover Conv2d, Linear, BN")


def _formula(role: str, shape: torch.Size, position: int) -> Tensor:
    u = hash_uniform(math.prod(shape), position).reshape(shape)
    if role == "affine.weight":
        fan_in = math.prod(shape[1:])
        return u * math.sqrt(3.0 / fan_in)  # a uniform on [-a, a) has std a / sqrt(3)
    if role in ("affine.bias", "bn.bias", "bn.running_mean"):
        return 0.1 * u
    if role == "bn.weight":
        return 1.0 + 0.25 * u
    if role == "bn.running_var":
        return 0.75 + 0.25 * u
    if role == "bn.num_batches_tracked":
        return torch.zeros(shape)
    raise ValueError(f"no formula for {role}")


@torch.no_grad()
def fill(model: nn.Module) -> nn.Module:
    """Every state_dict tensor from the formula, by position (API-4 order); returns the model."""
    roles = {}
    for module in model.modules():
        for name, t in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
            if t is not None:
                roles[id(t)] = _role(module, name)
    for position, (name, t) in enumerate(model.state_dict(keep_vars=True).items()):
        if id(t) not in roles:
            raise ValueError(f"state_dict entry {name} belongs to no module")
        t.copy_(_formula(roles[id(t)], t.shape, position).to(t.dtype))
    return model


def formula_input(salt: int = -1, batch: int = BATCH) -> Tensor:
    """Each image channel a plane wave of its own frequency, phase, amplitude and offset, plus
    noise: samples that differ globally, so that pooled features (and logits) depend on the input.
    Pure noise would not do: its global averages are the same for every sample."""
    n, c = batch, 3
    params = hash_uniform(n * c * 5, 2 * salt).reshape(5, n, c, 1, 1)
    fy, fx = 1 + torch.floor(2 * (params[0] + 1)), 1 + torch.floor(2 * (params[1] + 1))  # 1 to 4 periods
    phase, amplitude, offset = torch.pi * params[2], 1.0 + 0.5 * params[3], 0.5 * params[4]
    coords = torch.arange(RESOLUTION, dtype=torch.float64) / RESOLUTION
    wave = torch.sin(2 * torch.pi * (fy * coords.reshape(-1, 1) + fx * coords.reshape(1, -1)) + phase)
    noise = hash_uniform(n * c * RESOLUTION**2, 2 * salt - 1).reshape(n, c, RESOLUTION, RESOLUTION)
    return (amplitude * wave + offset + 0.5 * noise).float()


def build(factory: Callable[..., nn.Module], **kwargs: Any) -> nn.Module:
    """The model from ``factory``, allocated without running its initialisation (on the meta device,
    then materialised), and filled from the formula."""
    with torch.device("meta"):
        model = factory(**kwargs)
    return fill(model.to_empty(device="cpu"))


def architecture(model: nn.Module) -> dict[str, Any]:
    """The name-agnostic fingerprint of ARCH-5 (spec.fingerprint) and the counts behind it."""
    return {
        "fingerprint": spec.fingerprint(model),
        "tensors": len(model.state_dict()),
        "parameters": sum(p.numel() for p in model.parameters()),
        "buffer_elements": sum(b.numel() for b in model.buffers()),
    }


def _round(values: Tensor) -> list[float]:
    return [float(f"{v:.{SIGNIFICANT}g}") for v in values.double().flatten().tolist()]


def summary(t: Tensor) -> dict[str, Any]:
    flat = t.detach().double().flatten()
    positions = torch.linspace(0, flat.numel() - 1, PROBES).round().long()
    return {
        "shape": list(t.shape),
        "mean": _round(flat.mean().reshape(1))[0],
        "std": _round(flat.std().reshape(1))[0],
        "probes": _round(flat[positions]),
    }


@torch.no_grad()
def outputs(model: nn.Module, stages: nn.Module) -> dict[str, Any]:
    """Logits (eval; BatchNorm in training mode) and the stage summaries of the eval pass."""
    captured: list[Tensor] = []
    hooks = [s.register_forward_hook(lambda _m, _i, out: captured.append(out)) for s in stages]
    x = formula_input()
    try:
        logits = model.eval()(x)
    finally:
        for h in hooks:
            h.remove()
    if len(captured) != 7:
        raise AssertionError(f"{len(captured)} stage outputs captured, not 7")
    train_logits = torchutil.only_batchnorm_training(model)(x)
    model.eval()
    return {
        "logits_eval": [_round(row) for row in logits],
        "logits_batchnorm_training": [_round(row) for row in train_logits],
        "stages": [summary(s) for s in captured],
    }


def record(
    factory: Callable[..., nn.Module],
    with_outputs: bool,
    stages: Callable[[nn.Module], nn.Module] = lambda model: model.stages,
) -> dict[str, Any]:
    """The golden record of the model ``factory(n_classes=N_CLASSES)`` builds; ``stages`` finds its
    seven stages (API-3 ``model.stages``; timm's ``model.blocks``)."""
    if not with_outputs:
        with torch.device("meta"):
            return {"architecture": architecture(factory(n_classes=N_CLASSES))}
    model = build(factory, n_classes=N_CLASSES)
    # BatchNorm statistics of the model's own activations on a calibration batch: with statistics
    # that do not fit the activations, the input's signal fades within a few blocks and the eval
    # output hardly depends on the input.  The batch includes the recorded input, so that no
    # channel meets values far outside those it was calibrated on (which would blow up).
    calibration = torch.cat([formula_input(), formula_input(salt=CALIBRATION_SALT, batch=CALIBRATION_BATCH)])
    torchutil.calibrate_batchnorm(model, [calibration])
    return {"architecture": architecture(model), **outputs(model, stages(model))}


def settings() -> dict[str, Any]:
    """What the recorded numbers depend on besides the model: a golden file with other settings
    must be regenerated, not compared."""
    return {
        "formula": FORMULA,
        "resolution": RESOLUTION,
        "batch": BATCH,
        "n_classes": N_CLASSES,
        "probes": PROBES,
        "calibration": {"salt": CALIBRATION_SALT, "batch": CALIBRATION_BATCH},
    }


def compare(variant: str, expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Readable differences between a golden record and a fresh one (empty when they agree)."""
    problems = []
    for key, want in expected["architecture"].items():
        got = actual["architecture"].get(key)
        if got != want:
            problems.append(f"{variant}: architecture {key} is {got}, golden {want}")
    if problems or "logits_eval" not in expected:
        return problems
    for key in ("logits_eval", "logits_batchnorm_training"):
        want, got = torch.tensor(expected[key]), torch.tensor(actual[key])
        err = torchutil.rel_err(got, want)
        if err > LOGITS_REL_TOL:
            diff = (got - want).abs().max().item()
            problems.append(
                f"{variant}: {key}: relative L2 error {err:.2e} > {LOGITS_REL_TOL:.0e} (max abs diff {diff:.3e})"
            )
    for i, (want, got) in enumerate(zip(expected["stages"], actual["stages"], strict=True)):
        where = f"{variant}: stage {i} (stages[{i}]) output"
        if got["shape"] != want["shape"]:
            problems.append(f"{where}: shape {got['shape']}, golden {want['shape']}")
            continue
        scale = max(want["std"], 1e-12)
        values = [("mean", want["mean"], got["mean"]), ("std", want["std"], got["std"])]
        values += [(f"probe {j}", w, g) for j, (w, g) in enumerate(zip(want["probes"], got["probes"], strict=True))]
        worst = max(values, key=lambda v: abs(v[2] - v[1]))
        if abs(worst[2] - worst[1]) > STAGE_TOL * scale:
            problems.append(
                f"{where}: max abs diff {abs(worst[2] - worst[1]):.3e} at {worst[0]} ({worst[2]:.6g}, golden "
                f"{worst[1]:.6g}), tolerance {STAGE_TOL:.0e} x std {scale:.3g}"
            )
    return problems


def formula_check() -> dict[str, Any]:
    """A few values of the formula itself, recorded in golden.json's header."""
    return {
        "hash_uniform(4, 0)": _round(hash_uniform(4, 0)),
        "formula_input()[0, :, 0, 0]": _round(formula_input()[0, :, 0, 0]),
        "formula_input().sum()": _round(formula_input().double().sum().reshape(1))[0],
    }


def load() -> dict[str, Any]:
    return json.loads(GOLDEN.read_text())
