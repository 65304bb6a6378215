"""Small tensor and module helpers shared by the tests (no test logic here)."""

from __future__ import annotations

import json
import operator
import os
from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from tests.support import norms


def rel_err(actual: Tensor, expected: Tensor) -> float:
    """Relative L2 error ||actual - expected|| / ||expected|| (0 when both are zero)."""
    actual, expected = actual.detach().double().cpu(), expected.detach().double().cpu()
    denom = expected.norm().item()
    diff = (actual - expected).norm().item()
    return diff if denom == 0 else diff / denom


def margin(what: str, err: float, tol: float) -> float:
    """``err``, recorded with its tolerance when $EFFNET_MARGINS names a file (one JSON line per
    comparison: what, err, tol), so that a run can show how far inside its tolerance a comparison
    stays (tests/meta/margins.py)."""
    path = os.environ.get("EFFNET_MARGINS")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"what": what, "err": err, "tol": tol}) + "\n")
    return err


def layout(shape: tuple[int, ...] | torch.Size) -> tuple[int, ...]:
    """A shape without its size-1 dimensions: what a tensor's values are laid out as, whatever the
    module that holds them.  ``nn.Linear(32, 8)``'s weight (8, 32) and a 1x1 convolution's (8, 32,
    1, 1) hold the same values in the same order and compute the same map, so outside the API
    clauses they are the same tensor (a 0-d tensor and a (1,) one too)."""
    return tuple(n for n in shape if n != 1)


def same_layout(a: tuple[int, ...] | torch.Size, b: tuple[int, ...] | torch.Size) -> bool:
    """Whether tensors of shapes ``a`` and ``b`` hold the same values in the same order (``layout``)."""
    return layout(a) == layout(b)


def first_shape_mismatch(
    actual: nn.Module, expected: nn.Module, same: Callable[[tuple[int, ...], tuple[int, ...]], bool] | None = None
) -> str | None:
    """None when both state_dicts have tensors of the same shapes (by ``same``; default: up to size-1
    dimensions, ``same_layout``) in the same order, else a message naming the first differing
    position with both modules' names there."""
    same = same or same_layout
    a, e = ([(k, tuple(v.shape)) for k, v in m.state_dict().items()] for m in (actual, expected))
    for i, (x, y) in enumerate(zip(a, e, strict=False)):
        if not same(x[1], y[1]):
            return f"position {i}: {x[0]} has shape {x[1]}, reference {y[0]} has shape {y[1]}"
    if len(a) != len(e):
        extra = a[len(e)] if len(a) > len(e) else e[len(a)]
        return f"{len(a)} tensors vs the reference's {len(e)}; first unmatched: {extra[0]} {extra[1]}"
    return None


def first_exact_shape_mismatch(actual: nn.Module, expected: nn.Module) -> str | None:
    """``first_shape_mismatch`` with size-1 dimensions counted too: None exactly when ``expected``'s
    state_dict loads into ``actual`` unchanged."""
    return first_shape_mismatch(actual, expected, operator.eq)


def copy_weights_in_order(src: nn.Module, dst: nn.Module) -> None:
    """Copy every parameter and buffer of ``src`` into ``dst`` by position (API-4 order), reshaped
    where the two differ only in size-1 dimensions (``same_layout``)."""
    problem = first_shape_mismatch(dst, src)
    if problem:
        raise AssertionError(f"cannot copy weights by position: {problem}")
    with torch.no_grad():
        for d, s in zip(dst.state_dict().values(), src.state_dict().values(), strict=True):
            d.copy_(s.reshape(d.shape))


def group_rms(group: list[Tensor]) -> float:
    """The root mean square of every entry of a group of tensors (integer counters left out)."""
    floats = [t.detach().double() for t in group if t.is_floating_point()]
    count = sum(t.numel() for t in floats)
    return (sum(t.pow(2).sum().item() for t in floats) / count) ** 0.5 if count else 0.0


def group_rel_errs(actual: list[Tensor], expected: list[Tensor]) -> list[float]:
    """Relative L2 error of each tensor of a group (a model's gradients, its state after a step)
    against the larger of its own norm and the norm of a tensor of its size whose entries have the
    RMS of the whole group.  A value that is zero in exact arithmetic (the gradient of a bias
    followed by a BatchNorm in training mode, through a 1x1 convolution) is a rounding residue in
    both computations: relative to itself the residues differ by 100%, relative to the group's
    scale they are nothing.  Tensors are compared up to size-1 dimensions (``same_layout``)."""
    rms = group_rms(expected)
    errs = []
    for a, e in zip(actual, expected, strict=True):
        a, e = a.detach().double().cpu(), e.detach().double().cpu()
        scale = max(e.norm().item(), rms * e.numel() ** 0.5)
        diff = (a.reshape(e.shape) - e).norm().item()
        errs.append(diff / scale if scale > 0 else diff)
    return errs


def batchnorms(model: nn.Module) -> list[nn.Module]:
    """Every BatchNorm of the model, found by behaviour: torch's (and subclasses such as timm's
    BatchNormAct2d), or any module that keeps running statistics (tests/support/norms.py)."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm) or norms.keeps_running_statistics(m)]


def only_batchnorm_training(model: nn.Module) -> nn.Module:
    """Eval mode everywhere except BatchNorm: dropout and stochastic depth become the identity
    while BN normalises with batch statistics and updates its running statistics."""
    model.eval()
    for bn in batchnorms(model):
        bn.train()
    return model


def everything_but_batchnorm_training(model: nn.Module) -> nn.Module:
    """Train mode everywhere except BatchNorm: the stochastic layers act while BN is a fixed
    affine map, so a block's deterministic part is known from its eval-mode output."""
    model.train()
    for bn in batchnorms(model):
        bn.eval()
    return model


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, batches: Iterable[Tensor]) -> nn.Module:
    """Give BN realistic running statistics: the exact mean and variance of its inputs over
    ``batches``.  With the default statistics (mean 0, var 1) a randomly initialised network's
    eval output barely depends on its input, and a wrong answer would not show.

    Only the running statistics change: each BN's own momentum (which a test may be checking)
    is restored afterwards, and the model is returned in eval mode."""
    norms_ = batchnorms(model)
    momenta = [(bn, bn.momentum) for bn in norms_ if isinstance(bn, _BatchNorm)]
    for bn, _ in momenta:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
    # Any other module that keeps running statistics (a hand-written BatchNorm) may not take
    # momentum None: its inputs are recorded, and its statistics set to the same averages.
    inputs: dict[nn.Module, list[Tensor]] = {bn: [] for bn in norms_ if not isinstance(bn, _BatchNorm)}
    handles = [bn.register_forward_pre_hook(lambda m, args: inputs[m].append(args[0].detach())) for bn in inputs]
    only_batchnorm_training(model)
    try:
        for x in batches:
            model(x)
    finally:
        for handle in handles:
            handle.remove()
        for bn, momentum in momenta:
            bn.momentum = momentum
    for bn, seen in inputs.items():
        if seen:
            dims = [d for d in range(seen[0].ndim) if d != 1]
            bn.running_mean.copy_(torch.stack([x.mean(dims) for x in seen]).mean(0))
            bn.running_var.copy_(torch.stack([x.var(dims) for x in seen]).mean(0))
    return model.eval()


def input_dependence(outputs: Tensor) -> float:
    """How much a batch of outputs depends on the inputs: mean per-feature std across the batch,
    relative to the outputs' RMS.  Near 0 means the model ignores its input."""
    outputs = outputs.detach().double()
    return (outputs.std(0).mean() / outputs.pow(2).mean().sqrt()).item()
