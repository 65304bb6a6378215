"""REF-1: the implementation under test computes the same function as a baseline (``--baseline REF``).

The baseline is a git revision of this checkout or another implementation (tests/support/baseline.py);
both are built here, in one process, with the same factors, and the baseline's weights and BN
statistics are copied into the implementation by position (API-4).  Then, on drawn inputs, for
``EfficientNet`` and ``EfficientNetSequential`` at drawn small factors and at B0-B2's:

* eval mode: every segment (stem, each block, head conv, pool, classifier) given the baseline's input
  to it, and the whole forward pass;
* a training step under the same seed, stochastic depth and dropout active: every segment given the
  baseline's input and random-number state (forward), the baseline's gradient of its output
  (backward: the gradient of each of its parameters and of its input) and its BN running statistics
  after the step; and the whole step's output, gradients and statistics;

and ``MBConv`` and ``SEBlock`` alone, the same way.  No stored number is involved: the verdict does
not depend on the machine.

Tolerance.  A pure refactor is bit-identical, and the run says so.  A refactor may also change only
the rounding (a fused kernel, another summation order, ``x * sigmoid(x)`` for SiLU, channels-last).
Every segment and block is therefore compared on float64 copies of both sides wherever both compute in
float64 (``run_both``): the two then differ by float64 rounding, about 1e-15 relative, far below
``REF_TOL`` and ``GRAD_TOL``, while a change of function (a BN eps, the drop-path schedule, the SE
squeeze) moves the first segment it touches by 1e-2 or more.  A side that keeps float32 somewhere is
compared in float32, where a change of rounding moved a segment given the baseline's own input by up to
1.5e-5 (B7, combined rewrites, other CPU kernels), its gradients by about 1e-6.  The whole network's
eval and train-mode outputs are compared on copies whose residual branches are damped alike
(``whole_network``), in float64 where possible, and held to ``NETWORK_TOL``: this catches a forward
that composes the segments differently.  Undamped, a random network at 33 px is chaotic: rounding
alone moved L2's eval output by 3e-2 even in float64.  The whole float32 training step's gradients and
statistics are compared for exactness and reported, not held to a tolerance (BN on 2x2 maps of a
random network amplifies rounding); every parameter's gradient is held to ``GRAD_TOL`` in its own
segment's backward.  A failure names the first diverging segment in forward order, the mode and what
differs (output, a gradient, a statistic), and the factors; the run ends with a line saying whether
every passing comparison was bit-identical, else the largest difference seen.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from tests.support import baseline as baseline_support
from tests.support import models, premises, reference, spec, strategies, torchutil

pytestmark = pytest.mark.clause("REF-1")

# Relative L2 difference allowed in a segment's output and BN statistics (REF_TOL) and in the gradient
# of a parameter or input (GRAD_TOL), given the baseline's input, random state and output gradient. In
# float64 (``run_both``) every correct rewrite of tests/mutants/rewrites.py, combined, came within
# 3.5e-14 at B0-L2 under ATEN_CPU_CAPABILITY=default.  In float32, measured against effnet with SiLU
# computed as x * sigmoid(x), a change of rounding only, over B0, B2 and three small networks: outputs
# 2.2e-7, statistics 4e-8, gradients 1.4e-6 (a BN weight's: a sum over the batch that cancels).  With BN
# eps 1e-3 or momentum 0.01, the SE squeeze as a max, or the drop-path schedule shifted by one block,
# the first segment that differs moves by 0.03 to 0.9.
REF_TOL = 1e-5
GRAD_TOL = 1e-4
# A parameter's gradient is compared relative to at least this fraction of the largest gradient in its
# segment.  BN in training makes the gradient of a weight that only scales BN's input zero in exact
# arithmetic (a 1x1 depthwise convolution: one scalar per channel; any weight of a 1-channel input),
# and float32 leaves noise there of about 2e-7 of the segment's largest gradient.
GRAD_FLOOR = 1e-2
# Relative L2 difference allowed in the whole network's eval and train-mode output, compared on damped
# copies (``whole_network``): in float64 a channels-last input alone moved the damped L2 at 33 px by
# 7e-16 (eval) and 7e-15 (train mode); a fork that does not compute in float64 is compared in float32,
# where a channels-last input alone moved the damped B2 and B7 by 3.5e-7 (eval) and 3.3e-6 (train mode),
# undamped B7's eval output by 0.56.
NETWORK_TOL = 1e-3
SEED = 0
BATCH = 4
# 33+ px: the last stage's map is at least 2x2 (pooling averages something, BN sees > 1 value).
network_sizes = st.integers(33, 48)
block_sizes = st.integers(4, 16)
# Blocks as in some EfficientNet (8+ channels, a 3x3 or larger depthwise kernel).  In a block with 1
# channel or a 1x1 depthwise kernel some weight only scales the input of a BN in training, so its
# gradient is zero in exact arithmetic and a comparison would compare rounding noise (GRAD_FLOOR).
network_blocks = strategies.block_configs(
    dropout=strategies.drop_probabilities, min_channels=strategies.MIN_NETWORK_CHANNELS
).filter(lambda config: config.kernel_size > 1)
# Every named variant (B0-L2) at a small resolution: its architecture, one eval pass and one training
# step; B3 and larger are `slow` (B7 takes a few seconds a side on a CPU, L2 about a minute).
NAMED = tuple(
    pytest.param(name, marks=pytest.mark.slow) if name not in ("b0", "b1", "b2") else name for name in spec.variants()
)
NAMED_SIZE = 33

# Hypothesis: the function-scoped fixture (request) only records the outcome on the test item.
_SETTINGS = {"suppress_health_check": [*settings().suppress_health_check, HealthCheck.function_scoped_fixture]}


# --- What is compared ------------------------------------------------------------------------
@dataclass
class Item:
    what: str
    err: float  # relative L2 difference (0 when bit-identical; inf when not comparable)
    exact: bool
    tol: float | None  # None: compared for exactness and reported only


@dataclass
class Comparison:
    """Every tensor compared for one case, in the order the causes should be looked for."""

    case: str  # e.g. "EfficientNet(0.31, 0.45, 7) at 40 px against git main (3f2c1ab)"
    items: list[Item] = field(default_factory=list)

    def add(
        self, what: str, actual: Tensor | None, expected: Tensor | None, tol: float | None = REF_TOL, floor: float = 0.0
    ) -> None:
        """Compare by relative L2 difference, ``||actual - expected|| / max(||expected||, floor)``."""
        if actual is None or expected is None:
            if (actual is None) != (expected is None):
                self.items.append(Item(f"{what}: present on one side only", float("inf"), False, tol))
            return
        if not torchutil.same_layout(actual.shape, expected.shape):
            what = f"{what}: shape {tuple(actual.shape)}, baseline {tuple(expected.shape)}"
            self.items.append(Item(what, float("inf"), False, tol))
            return
        actual = actual.reshape(expected.shape)  # an nn.Linear weight for a 1x1 convolution's: the same values
        exact = torch.equal(actual, expected)
        err = 0.0 if exact else _relative_difference(actual, expected, floor)
        self.items.append(Item(what, err, exact, tol))

    def check(self, request: pytest.FixtureRequest) -> None:
        """Fail naming the first comparison beyond its tolerance, else record how exact the match was."""
        beyond = [i for i in self.items if i.tol is not None and not i.err <= i.tol]  # NaN is beyond
        if beyond:
            first = beyond[0]
            later = f"; {len(beyond) - 1} later comparison(s) differ too" if len(beyond) > 1 else ""
            pytest.fail(
                f"{self.case}: first divergence from the baseline: {first.what}, relative difference "
                f"{first.err:.3g} > {first.tol:g}{later}",
                pytrace=False,
            )
        _note_exactness(request, self)


def _relative_difference(actual: Tensor, expected: Tensor, floor: float) -> float:
    diff = (actual.detach().double() - expected.detach().double()).norm().item()
    scale = max(expected.detach().double().norm().item(), floor)
    return diff if scale == 0 else diff / scale


def statistics_floor(statistics: list[tuple[str, Tensor]], t: Tensor) -> float:
    """A BN statistic is compared relative to at least the norm of a tensor of its size at the RMS of
    its segment's statistics: the running mean of a BN whose input is a 1x1 convolution of a BN's
    output in training mode is zero in exact arithmetic (the batch mean is 0), and two rounding
    residues (1e-9) differ by 100% of themselves (a channels-last model: 0.14)."""
    return torchutil.group_rms([u for _, u in statistics]) * t.numel() ** 0.5


def gradient_floor(module: nn.Module) -> float:
    """GRAD_FLOOR times the largest gradient norm among the module's parameters."""
    norms = [p.grad.double().norm().item() for p in module.parameters() if p.grad is not None]
    return GRAD_FLOOR * max(norms, default=0.0)


def _note_exactness(request: pytest.FixtureRequest, comparison: Comparison) -> None:
    """Record on the test item whether every comparison so far was bit-identical, and the difference closest
    to its tolerance (the plugin in tests/support/baseline.py sums this up at the end of the run)."""
    properties = dict(request.node.user_properties)
    exact = properties.get(baseline_support.EXACT, True) and all(i.exact for i in comparison.items)
    largest = properties.get(baseline_support.LARGEST, (0.0, ""))  # (difference / tolerance, description)
    for i in comparison.items:
        if i.tol is not None and i.err / i.tol > largest[0]:
            largest = (i.err / i.tol, f"{i.err:.2g} (of {i.tol:g} allowed), {i.what} of {comparison.case}")
    request.node.user_properties[:] = [
        (k, v) for k, v in request.node.user_properties if k not in (baseline_support.EXACT, baseline_support.LARGEST)
    ]
    request.node.user_properties += [(baseline_support.EXACT, exact), (baseline_support.LARGEST, largest)]


# --- Segments of a network (API-3) -----------------------------------------------------------
def segments(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The network as the sequence of its parts: stem, every block, head conv, pool, classifier.
    ``EfficientNet`` has the children stem, stages, pre, pool_flatten, head; ``EfficientNetSequential``
    eleven: stem, the 7 stages, pre, pool+flatten, head (API-3)."""
    children = list(model.children())
    if len(children) == 5:
        stem, stages, pre, pool, head = children
        stage_list = list(stages.children())
    elif len(children) == 11:
        stem, *stage_list, pre, pool, head = children
    else:
        raise AssertionError(f"{type(model).__name__} has {len(children)} children, not 5 or 11 (clause API-3)")
    blocks = [(f"stage {i} block {j}", block) for i, stage in enumerate(stage_list) for j, block in enumerate(stage)]
    return [("stem", stem), *blocks, ("head conv", pre), ("pool", pool), ("classifier", head)]


@dataclass
class Trace:
    """Each segment's input and output in one forward pass, the random-number state it started from,
    and (after a backward) the gradient of its output."""

    inputs: dict[str, Tensor] = field(default_factory=dict)
    outputs: dict[str, Tensor] = field(default_factory=dict)
    rng: dict[str, Any] = field(default_factory=dict)
    output_grads: dict[str, Tensor] = field(default_factory=dict)


@contextmanager
def tracing(model: nn.Module, device: torch.device) -> Iterator[Trace]:
    trace = Trace()

    def before(key: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Tensor, ...]) -> None:
            trace.inputs[key] = args[0].detach().clone()
            trace.rng[key] = rng_state(device)

        return hook

    def after(key: str) -> Callable[..., None]:
        def save_grad(grad: Tensor) -> None:
            trace.output_grads[key] = grad.detach().clone()

        def hook(module: nn.Module, args: object, output: Tensor) -> None:
            trace.outputs[key] = output.detach().clone()
            if output.requires_grad:
                output.register_hook(save_grad)

        return hook

    handles = []
    for key, module in segments(model):
        handles += [module.register_forward_pre_hook(before(key)), module.register_forward_hook(after(key))]
    try:
        yield trace
    finally:
        for h in handles:
            h.remove()


def rng_state(device: torch.device) -> Any:
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()


def set_rng_state(device: torch.device, state: Any) -> None:
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    else:
        torch.set_rng_state(state)


def buffers(module: nn.Module) -> list[tuple[str, Tensor]]:
    """The module's buffers (BN statistics and counters) in state_dict order."""
    names = {name for name, _ in module.named_parameters()}
    return [(name, t) for name, t in module.state_dict().items() if name not in names]


# --- The comparison of two networks --------------------------------------------------------
@dataclass
class Run:
    """One module's computation: its output, the gradient of its input and of each parameter (after a
    backward), and its buffers (BN statistics) afterwards."""

    output: Tensor
    input_grad: Tensor | None
    grads: list[tuple[str, Tensor | None]]
    buffers: list[tuple[str, Tensor]]
    floor: float  # gradient_floor of the module


def run_part(part: nn.Module, x: Tensor, rng: Any, out_grad: Tensor | None, device: torch.device) -> Run:
    """``part`` on ``x``: in eval mode without gradients where ``rng`` is None, else in train mode from
    the random state ``rng``, with a backward of ``out_grad`` (none where None)."""
    part.zero_grad(set_to_none=True)
    if rng is None:
        with torch.no_grad():
            return Run(part.eval()(x), None, [], buffers(part), 0.0)
    set_rng_state(device, rng)
    out = part.train()(x.requires_grad_(out_grad is not None))
    if out_grad is not None and out.requires_grad:
        out.backward(out_grad.to(out.dtype))
    grads = [(name, p.grad) for name, p in part.named_parameters()]
    return Run(out.detach(), x.grad, grads, buffers(part), gradient_floor(part))


def run_both(
    parts: tuple[nn.Module, nn.Module], x: Tensor, device: torch.device, rng: Any = None, out_grad: Tensor | None = None
) -> tuple[Run, Run]:
    """``run_part`` on copies of the implementation's part and the baseline's, both converted to float64
    where both compute in it: two computations of one function then differ by float64 rounding, and no
    float32 rounding decides (a sum in another order moved a block of B7 by 1.5e-5 in float32).  Else on
    float32 copies, where what the implementation raises is its own."""
    try:
        runs = [run_part(copy.deepcopy(p).double(), x.detach().double().clone(), rng, out_grad, device) for p in parts]
        if all(run.output.dtype == torch.float64 for run in runs):
            return runs[0], runs[1]
    except Exception:  # the part keeps float32 somewhere (or fails in any dtype: it fails again below)
        pass
    model, base = (run_part(copy.deepcopy(p).float(), x.detach().float().clone(), rng, out_grad, device) for p in parts)
    return model, base


def compare_runs(result: Comparison, where: str, run: Run, base: Run) -> None:
    """A part's output, then the gradients of its parameters from the last to the first (the order of
    the backward: the last that differs is where it diverges first) and of its input, then its BN
    statistics, against the baseline's."""
    result.add(f"{where}: output", run.output, base.output)
    for (name, g), (base_name, h) in reversed(list(zip(run.grads, base.grads, strict=False))):
        result.add(f"{where}: gradient of {name} (baseline {base_name})", g, h, GRAD_TOL, base.floor)
    if base.input_grad is not None or run.input_grad is not None:
        result.add(f"{where}: gradient of its input", run.input_grad, base.input_grad, GRAD_TOL)
    statistics = base.buffers
    for (name, t), (base_name, u) in zip(run.buffers, statistics, strict=False):
        at_least = statistics_floor(statistics, u)
        result.add(f"{where}: {name} after the step (baseline {base_name})", t, u, floor=at_least)


def compare_networks(model: nn.Module, base: nn.Module, case: str, size: int, n_classes: int) -> Comparison:
    """``model`` (the implementation under test) against ``base`` (the baseline), built with the same
    factors: the baseline's calibrated weights copied in, then eval and a training step compared."""
    device = next(base.parameters()).device
    g = torch.Generator().manual_seed(SEED)
    x = torch.randn(BATCH, 3, size, size, generator=g).to(device)
    calibration = torch.randn(2 * BATCH, 3, size, size, generator=g).to(device)
    probe = torch.randn(BATCH, n_classes, generator=g).to(device)
    torchutil.calibrate_batchnorm(base, [calibration])  # a BN at its default statistics would hide a bug
    try:
        torchutil.copy_weights_in_order(base, model)
    except AssertionError as e:
        pytest.fail(f"{case}: the architecture differs from the baseline's: {e}", pytrace=False)
    result = Comparison(case)
    parts, base_parts = segments(model), segments(base)
    if len(parts) != len(base_parts):
        result.add(f"number of segments ({len(parts)}, baseline {len(base_parts)})", None, x)
    pairs = [(key, (part, base_part)) for (key, part), (_, base_part) in zip(parts, base_parts, strict=False)]

    # Eval: each segment given the baseline's input to it, then the whole network.
    with torch.no_grad(), tracing(base.eval(), device) as expected:
        base(x)
    for key, both in pairs:
        run, want = run_both(both, expected.inputs[key], device)
        result.add(f"eval, {key} given the baseline's input: output", run.output, want.output)
    whole = whole_network(model, base, x, residual_branch_ends(base, expected))
    result.add("eval, the whole network: output", *whole[0], NETWORK_TOL)

    # Training: each segment given the baseline's input, random state and output gradient, from the
    # statistics before the step (the baseline's are put back after its step has been traced).
    before = [t.clone() for _, t in buffers(base)]
    _, trace = _train_step(base, x, probe, device)
    after = [(name, t.clone()) for name, t in buffers(base)]
    with torch.no_grad():
        for (_, t), u in zip(buffers(base), before, strict=True):
            t.copy_(u)
    for key, both in pairs:
        run, want = run_both(both, trace.inputs[key], device, trace.rng[key], trace.output_grads.get(key))
        where = f"train mode, {key} given the baseline's input, random state and output gradient"
        compare_runs(result, where, run, want)
    result.add("train mode, the whole network under the same seed: output", *whole[1], NETWORK_TOL)
    # The whole float32 step, for the exactness report only (rounding compounds through every block).
    _train_step(model, x, probe, device)
    for (name, p), (base_name, q) in zip(model.named_parameters(), base.named_parameters(), strict=False):
        result.add(f"train mode, the whole network: gradient of {name} (baseline {base_name})", p.grad, q.grad, None)
    for (name, t), (base_name, u) in zip(buffers(model), after, strict=False):
        result.add(f"train mode, the whole network: {name} after the step (baseline {base_name})", t, u, None)
    return result


def residual_branch_ends(base: nn.Module, trace: Trace) -> list[int]:
    """The positions in ``base``'s state_dict (API-4 order, the same in the implementation) of the
    weight of the last BN of every block whose output has its input's shape: a residual block, whose
    branch that BN ends."""
    names = {module: name for name, module in base.named_modules()}
    keys = list(base.state_dict())
    ends = []
    for key, part in segments(base):
        if key.startswith("stage") and trace.inputs[key].shape == trace.outputs[key].shape:
            norms = torchutil.batchnorms(part)
            weight = f"{names[norms[-1]]}.weight" if norms else None
            if weight in keys:
                ends.append(keys.index(weight))
    return ends


def whole_network(
    model: nn.Module, base: nn.Module, x: Tensor, branch_ends: list[int]
) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """((eval output, baseline's), (train-mode output, baseline's)) of deep copies of the two networks
    with every residual branch damped (the BN weights at ``branch_ends`` times RESIDUAL_DAMPING, in
    both), in float64 where both compute in it, else in float32; one network at a time (a float64 L2
    holds 4 GB).  A random network at 33 px is chaotic: L2's eval output moved by 3e-2 against itself
    on a channels-last input even in float64, B7's by 2e-8; damped, by 7e-16 and 4e-15."""
    for dtype in (torch.float64, torch.float32):
        found = []
        for network in (model, base):
            try:
                outputs = _damped_outputs(network, x, branch_ends, dtype)
            except Exception:  # the fork keeps float32 somewhere: compared in float32
                if dtype == torch.float32:
                    raise
                break
            if dtype == torch.float64 and any(out.dtype != dtype for out in outputs):
                break  # computed in float32 somewhere: both compared in float32
            found.append(outputs)
        else:
            (eval_out, train_out), (eval_want, train_want) = found
            return (eval_out, eval_want), (train_out, train_want)
    raise AssertionError("unreachable: the float32 pass returns or raises")


def _damped_outputs(network: nn.Module, x: Tensor, branch_ends: list[int], dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """The eval and train-mode output of a copy of ``network`` in ``dtype``, damped (the copy is freed
    on return)."""
    damped = copy.deepcopy(network).to(dtype)
    values = list(damped.state_dict().values())
    with torch.no_grad():
        for i in branch_ends:
            values[i].mul_(reference.RESIDUAL_DAMPING)
    x = x.to(dtype)
    return _eval(damped, x), _train_output(damped, x)


def _eval(model: nn.Module, x: Tensor) -> Tensor:
    with torch.no_grad():
        return model.eval()(x)


def _train_output(model: nn.Module, x: Tensor) -> Tensor:
    """The train-mode output under ``_train_step``'s seed, without a backward (no gradients held)."""
    model.train()
    torch.manual_seed(SEED + 1)
    with torch.no_grad():
        return model(x)


def _train_step(model: nn.Module, x: Tensor, probe: Tensor, device: torch.device) -> tuple[Tensor, Trace]:
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(SEED + 1)
    with tracing(model, device) as trace:
        out = model(x)
    (out * probe).sum().backward()
    return out.detach(), trace


def compare_blocks(model: nn.Module, base: nn.Module, case: str, x: Tensor) -> Comparison:
    """One block of the implementation against the baseline's: eval output, train-mode output under the
    same seed, the gradients of every parameter and of the input, and the BN statistics after the step,
    in float64 where both compute in it (``run_both``)."""
    g = torch.Generator().manual_seed(SEED + 2)
    calibration = torch.randn(x.shape, generator=g).to(x.device) * 2 + 0.5  # BN statistics unlike the defaults
    torchutil.calibrate_batchnorm(base, [calibration])
    try:
        torchutil.copy_weights_in_order(base, model)
    except AssertionError as e:
        pytest.fail(f"{case}: the block's tensors differ from the baseline's: {e}", pytrace=False)
    result = Comparison(case)
    run, want = run_both((model, base), x, x.device)
    result.add("eval output", run.output, want.output)
    torch.manual_seed(SEED + 1)
    rng = rng_state(x.device)
    probe = torch.randn(want.output.shape, generator=torch.Generator().manual_seed(SEED + 3)).to(x.device)
    run, want = run_both((model, base), x, x.device, rng, probe)
    compare_runs(result, "train mode under the same seed", run, want)
    return result


def _build(factory: Callable[[], nn.Module], device: torch.device) -> nn.Module:
    torch.manual_seed(SEED)
    return factory().to(device)


# --- The tests ---------------------------------------------------------------------------------
FORMS = ("EfficientNet", "EfficientNetSequential")


@pytest.mark.parametrize("form", FORMS)
@settings(strategies.fewer_examples(0.4), **_SETTINGS)  # about 0.5 s per example: two models, a step each
@given(
    w=strategies.model_width_factors,
    d=strategies.model_depth_factors,
    n=strategies.class_counts,
    size=network_sizes,
)
@example(w=0.5, d=0.6, n=10, size=33)  # depths 1,2,2,2,2,3,1: residual blocks, so stochastic depth draws
def test_network_computes_the_same_function_as_the_baseline(impl, baseline, device, request, form, w, d, n, size):
    model = _build(lambda: getattr(impl, form)(w, d, n), device)
    base = _build(lambda: getattr(baseline.module, form)(w, d, n), device)
    case = f"{form}({w!r}, {d!r}, {n}) at {size} px against {baseline.description}"
    compare_networks(model, base, case, size, n).check(request)


def _variant(module: Any, name: str, whose: str) -> Callable[..., nn.Module]:
    """``efficientnet_<name>`` of ``module``; the test is undecided (skipped) where either side lacks an
    optional variant (API-5) or where ``whose`` is the baseline and it lacks one (its API is not judged)."""
    factory = getattr(module, f"efficientnet_{name}", None)
    if factory is None:
        pytest.skip(f"undecided: {whose} has no efficientnet_{name}")
    return factory


@pytest.mark.parametrize("name", spec.variants())
def test_named_variant_has_the_baseline_structure(impl, baseline, name):
    """Every named variant on the meta device (milliseconds even for L2): the baseline's tensors, in
    its order, parameters where it has parameters, each of the same shape up to size-1 dimensions (an
    nn.Linear weight holds a 1x1 convolution's values: the same function, as the function tests copy
    it; whether timm's state_dict loads unchanged is API-8's)."""
    model = models.to_run(_variant(impl, name, "the implementation"), models.META)
    base = models.to_run(_variant(baseline.module, name, "the baseline"), models.META)
    problem = torchutil.first_shape_mismatch(model, base) or premises.first_kind_mismatch(model, base)
    assert problem is None, f"efficientnet_{name}()'s tensors differ from {baseline.description}'s: {problem}"


@pytest.mark.parametrize("name", NAMED)
def test_named_variant_computes_the_same_function_as_the_baseline(impl, baseline, device, request, name):
    model = _build(_variant(impl, name, "the implementation"), device)
    base = _build(_variant(baseline.module, name, "the baseline"), device)
    case = f"efficientnet_{name}() at {NAMED_SIZE} px against {baseline.description}"
    compare_networks(model, base, case, NAMED_SIZE, 1000).check(request)


@pytest.mark.parametrize("name", NAMED)
def test_named_variant_factors_in_sequential_form_compute_the_same_function(impl, baseline, device, request, name):
    w, d = spec.variant(name)["w_factor"], spec.variant(name)["d_factor"]
    model = _build(lambda: impl.EfficientNetSequential(w, d), device)
    base = _build(lambda: baseline.module.EfficientNetSequential(w, d), device)
    case = f"EfficientNetSequential({w}, {d}) ({name}'s factors) at {NAMED_SIZE} px against {baseline.description}"
    compare_networks(model, base, case, NAMED_SIZE, 1000).check(request)


@settings(strategies.fewer_examples(1.0), **_SETTINGS)
@given(
    config=network_blocks,
    batch=st.integers(2, 4),
    size=block_sizes,
)
def test_mbconv_computes_the_same_function_as_the_baseline(impl, baseline, device, request, config, batch, size):
    model = _build(lambda: config.build(impl), device)
    base = _build(lambda: config.build(baseline.module), device)
    x = torch.randn(batch, config.n_in, size, size, generator=torch.Generator().manual_seed(SEED)).to(device)
    case = f"{config} on a {tuple(x.shape)} input against {baseline.description}"
    compare_blocks(model, base, case, x).check(request)


@settings(strategies.fewer_examples(1.0), **_SETTINGS)
@given(c=st.integers(1, 48), r=st.sampled_from([4, 24]) | st.integers(1, 24), batch=st.integers(1, 4), size=block_sizes)
def test_se_block_computes_the_same_function_as_the_baseline(impl, baseline, device, request, c, r, batch, size):
    model = _build(lambda: impl.SEBlock(c, r), device)
    base = _build(lambda: baseline.module.SEBlock(c, r), device)
    x = torch.randn(batch, c, size, size, generator=torch.Generator().manual_seed(SEED)).to(device)
    case = f"SEBlock({c}, r={r}) on a {tuple(x.shape)} input against {baseline.description}"
    compare_blocks(model, base, case, x).check(request)
