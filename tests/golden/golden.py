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

Everything is computed in float64 and stored with 17 significant digits (the very doubles).  In
float32, the records of B6 and B7 moved by up to 3e-4 (relative) between CPU kernel sets
(ATEN_CPU_CAPABILITY), thread counts and machines, past the float32 tolerance of 1e-4: their deep
stacks of batch-normalised blocks amplify last-bit differences about 1000-fold, so no float32
tolerance could both hold on every machine and be tight.  In float64 the same amplification
leaves the rounding noise near 1e-12, far below the tolerance of 1e-9, while a change of function
(a pooling, an epsilon, an activation) moves the records by 1e-2 or more.  timm, given the same
weights, reproduces the records bit for bit (update.py checks it before writing).  The largest
deviation from golden.json, measured with `python tests/golden/update.py --margins` (every
variant, both logits records and all stage values):

    ATEN_CPU_CAPABILITY  threads  memory format   logits eval  logits BN training  stage values
    default              1, 2     contiguous      2.2e-13      5.0e-13            6.7e-13
    default              1, 2     channels-last   3.5e-13      9.7e-13            2.4e-12
    avx2                 1, 2     contiguous      1.3e-13      2.6e-13            2.0e-13
    avx2                 1, 2     channels-last   3.4e-13      7.4e-13            1.8e-12
    avx512 (native)      1, 2     contiguous      4.5e-14      1.0e-13            1.3e-13
    avx512 (native)      1, 2     channels-last   3.5e-13      8.0e-13            1.8e-12
    tolerance                                     1e-9         1e-9               1e-9      (413x the largest)
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
DTYPE = torch.float64  # weights, inputs, calibration and records (see the module docstring)
SIGNIFICANT = 17  # digits stored: enough to give back the very float64 computed
FORMULA_CHECK_DIGITS = 12
# Tolerances, for float64.  Computing the same function another way (kernel set, thread count,
# memory format) moved the records by at most 2.4e-12 (the
# table above): the tolerance leaves a factor of 400.  A wrong function moves them by 1e-2 or more
# (BN eps 1e-3 instead of 1e-5: 5e-2; ReLU for SiLU, a max-pool squeeze or head: 1 or more).
LOGITS_REL_TOL = 1e-9  # relative L2 error of a batch of logits
STAGE_TOL = 1e-9  # per value, relative to the stage output's standard deviation
LOGITS_KEYS = ("logits_eval", "logits_batchnorm_training")


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
    return amplitude * wave + offset + 0.5 * noise


def build(factory: Callable[..., nn.Module], **kwargs: Any) -> nn.Module:
    """The model from ``factory``, allocated without running its initialisation (on the meta device,
    then materialised), and filled from the formula."""
    with torch.device("meta"):
        model = factory(**kwargs)
    return fill(model.to_empty(device="cpu").to(DTYPE))


def architecture(model: nn.Module) -> dict[str, Any]:
    """The name-agnostic fingerprint of ARCH-5 (spec.fingerprint) and the counts behind it."""
    return {
        "fingerprint": spec.fingerprint(model),
        "tensors": len(model.state_dict()),
        "parameters": sum(p.numel() for p in model.parameters()),
        "buffer_elements": sum(b.numel() for b in model.buffers()),
    }


def _round(values: Tensor, significant: int = SIGNIFICANT) -> list[float]:
    return [float(f"{v:.{significant}g}") for v in values.double().flatten().tolist()]


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
def outputs(
    model: nn.Module, stages: nn.Module, memory_format: torch.memory_format = torch.contiguous_format
) -> dict[str, Any]:
    """Logits (eval; BatchNorm in training mode) and the stage summaries of the eval pass."""
    captured: list[Tensor] = []
    hooks = [s.register_forward_hook(lambda _m, _i, out: captured.append(out)) for s in stages]
    x = formula_input().contiguous(memory_format=memory_format)
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
        "logits_eval": [_round(row) for row in logits],  # LOGITS_KEYS
        "logits_batchnorm_training": [_round(row) for row in train_logits],
        "stages": [summary(s) for s in captured],
    }


def record(
    factory: Callable[..., nn.Module],
    with_outputs: bool,
    stages: Callable[[nn.Module], nn.Module] = lambda model: model.stages,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> dict[str, Any]:
    """The golden record of the model ``factory(n_classes=N_CLASSES)`` builds; ``stages`` finds its
    seven stages (API-3 ``model.stages``; timm's ``model.blocks``).  ``memory_format`` applies to the
    model and every input (the margin measurement of update.py runs channels-last too)."""
    if not with_outputs:
        with torch.device("meta"):
            return {"architecture": architecture(factory(n_classes=N_CLASSES))}
    model = build(factory, n_classes=N_CLASSES).to(memory_format=memory_format)
    # BatchNorm statistics of the model's own activations on a calibration batch: with statistics
    # that do not fit the activations, the input's signal fades within a few blocks and the eval
    # output hardly depends on the input.  The batch includes the recorded input, so that no
    # channel meets values far outside those it was calibrated on (which would blow up).
    calibration = torch.cat([formula_input(), formula_input(salt=CALIBRATION_SALT, batch=CALIBRATION_BATCH)])
    torchutil.calibrate_batchnorm(model, [calibration.contiguous(memory_format=memory_format)])
    return {"architecture": architecture(model), **outputs(model, stages(model), memory_format)}


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
        "dtype": str(DTYPE).removeprefix("torch."),
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
    for key in LOGITS_KEYS:
        want, got = _logits(expected, key), _logits(actual, key)
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
        name, w, g, scale = _worst_stage_value(want, got)
        if abs(g - w) > STAGE_TOL * scale:
            problems.append(
                f"{where}: max abs diff {abs(g - w):.3e} at {name} ({g:.10g}, golden {w:.10g}), "
                f"tolerance {STAGE_TOL:.0e} x std {scale:.3g}"
            )
    return problems


def _logits(record: dict[str, Any], key: str) -> Tensor:
    return torch.tensor(record[key], dtype=torch.float64)  # torch.tensor would make float32 of floats


def _worst_stage_value(want: dict[str, Any], got: dict[str, Any]) -> tuple[str, float, float, float]:
    """(name, golden value, value, scale) of the stage summary value farthest from the golden one."""
    values = [("mean", want["mean"], got["mean"]), ("std", want["std"], got["std"])]
    values += [(f"probe {j}", w, g) for j, (w, g) in enumerate(zip(want["probes"], got["probes"], strict=True))]
    name, w, g = max(values, key=lambda v: abs(v[2] - v[1]))
    return name, w, g, max(want["std"], 1e-12)


def deviations(expected: dict[str, Any], actual: dict[str, Any]) -> dict[str, float]:
    """The largest deviation of each kind between two records of one variant, in the units of its
    tolerance's definition: logits as relative L2 error, stage values relative to the stage's std."""
    found = {key: torchutil.rel_err(_logits(actual, key), _logits(expected, key)) for key in LOGITS_KEYS}
    stage_errors = []
    for want, got in zip(expected["stages"], actual["stages"], strict=True):
        _name, w, g, scale = _worst_stage_value(want, got)
        stage_errors.append(abs(g - w) / scale)
    return {**found, "stage_values": max(stage_errors)}


def formula_check() -> dict[str, Any]:
    """A few values of the formula itself, recorded in golden.json's header, to 12 significant
    digits: a sine or a long sum may differ in its last bits on another machine."""
    return {
        "hash_uniform(4, 0)": _round(hash_uniform(4, 0), FORMULA_CHECK_DIGITS),
        "formula_input()[0, :, 0, 0]": _round(formula_input()[0, :, 0, 0], FORMULA_CHECK_DIGITS),
        "formula_input().sum()": _round(formula_input().sum().reshape(1), FORMULA_CHECK_DIGITS)[0],
    }


def load() -> dict[str, Any]:
    return json.loads(GOLDEN.read_text())
