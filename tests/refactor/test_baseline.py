"""REF-1: the implementation under test computes the same function as a baseline (``--baseline REF``).

The baseline is a git revision of this checkout or another implementation (tests/support/baseline.py);
both are built here, in one process, with the same factors, and the baseline's weights and BN
statistics are copied into the implementation by position (API-4).  Then, on drawn inputs:

* eval mode: every segment (stem, each block, head conv, pool, classifier) given the baseline's input
  to it, and the whole forward pass;
* a training step under the same seed, with stochastic depth and dropout active: every segment given
  the baseline's input and random-number state, the whole train-mode output, the gradient of every
  parameter, and the BN running statistics after the step;

for ``EfficientNet`` and ``EfficientNetSequential`` at drawn small factors and at B0-B2's factors,
and for ``MBConv`` and ``SEBlock`` alone.  No stored number is involved: the verdict does not depend
on the machine.

A pure refactor is bit-identical, and the run says so.  A refactor may also legitimately change the
rounding of float32 (``x.mean`` for ``AdaptiveAvgPool2d``, a fused kernel, another summation order):
every comparison then passes within ``REF_TOL`` and the run reports "equal within float32 rounding"
with the largest difference.  A segment is compared given the baseline's own input to it, so
rounding differences cannot accumulate into a false failure; a change of function (a BN eps, the
drop-path schedule, the SE squeeze) moves a segment by far more.  A failure names the first
diverging segment, mode and factors.
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
from tests.support import spec, strategies, torchutil

pytestmark = pytest.mark.clause("REF-1")

# Relative L2 difference allowed in any compared tensor.  float32 rounds at 6e-8 relative; a
# reordered sum or another kernel for the same operation moves a segment's output by well under
# 1e-6 and a small network's gradients by under 1e-5 (measured: see the README's refactor check);
# a change of function moves them by 1e-4 or more (BN eps 1e-5 -> 1e-3: 1e-3).
REF_TOL = 1e-5
SEED = 0
LR = 0.1
BATCH = 4
# 33+ px: the last stage's map is at least 2x2 (pooling averages something, BN sees > 1 value).
network_sizes = st.integers(33, 48)
block_sizes = st.integers(4, 16)
# B0-B2 at a small resolution: their architecture, cheap enough to train a step on a CPU.
NAMED = ("b0", "b1", "b2")
NAMED_SIZE = 33

# Hypothesis: a function-scoped fixture (request) is fine here, it only records the outcome.
_SETTINGS = {"suppress_health_check": [*settings().suppress_health_check, HealthCheck.function_scoped_fixture]}


# --- What is compared ------------------------------------------------------------------------
@dataclass
class Comparison:
    """Every tensor compared for one case, in the order the causes should be looked for."""

    case: str  # e.g. "EfficientNet(0.31, 0.45, 7) at 40 px"
    items: list[tuple[str, float, bool]] = field(default_factory=list)  # (what, relative L2, bit-identical)

    def add(self, what: str, actual: Tensor | None, expected: Tensor | None) -> None:
        if actual is None or expected is None:
            if (actual is None) != (expected is None):
                self.items.append((f"{what}: present on one side only", float("inf"), False))
            return
        if actual.shape != expected.shape:
            self.items.append((f"{what}: shape {tuple(actual.shape)}, baseline {tuple(expected.shape)}", 1e30, False))
            return
        exact = torch.equal(actual, expected)
        self.items.append((what, 0.0 if exact else torchutil.rel_err(actual, expected), exact))

    def check(self, request: pytest.FixtureRequest) -> None:
        """Fail naming the first comparison beyond REF_TOL, else record how exact the match was."""
        beyond = [(what, err) for what, err, _ in self.items if not err <= REF_TOL]  # NaN is beyond
        if beyond:
            what, err = beyond[0]
            later = f"; {len(beyond) - 1} later comparison(s) differ too" if len(beyond) > 1 else ""
            pytest.fail(
                f"{self.case}: first divergence from the baseline: {what}, relative difference {err:.3g} "
                f"> {REF_TOL:g}{later}",
                pytrace=False,
            )
        _note_exactness(request, self)


def _note_exactness(request: pytest.FixtureRequest, comparison: Comparison) -> None:
    """Record on the test item whether every comparison so far was bit-identical, and the largest difference
    (the plugin in tests/support/baseline.py sums this up at the end of the run)."""
    properties = dict(request.node.user_properties)
    exact = properties.get(baseline_support.EXACT, True) and all(e for _, _, e in comparison.items)
    largest = properties.get(baseline_support.LARGEST, (0.0, ""))
    for what, err, _ in comparison.items:
        if err > largest[0]:
            largest = (err, f"{what} of {comparison.case}")
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
    """What each segment received and returned in one forward pass, and the random-number state
    it started from."""

    inputs: dict[str, Tensor] = field(default_factory=dict)
    outputs: dict[str, Tensor] = field(default_factory=dict)
    rng: dict[str, Any] = field(default_factory=dict)


@contextmanager
def tracing(model: nn.Module, device: torch.device) -> Iterator[Trace]:
    trace = Trace()

    def before(key: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Tensor, ...]) -> None:
            trace.inputs[key] = args[0].detach().clone()
            trace.rng[key] = rng_state(device)

        return hook

    def after(key: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: object, output: Tensor) -> None:
            trace.outputs[key] = output.detach().clone()

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


# --- The comparison of two networks --------------------------------------------------------
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
    pairs = list(zip(segments(model), segments(base), strict=False))
    if len(segments(model)) != len(segments(base)):
        result.add(f"number of blocks ({len(segments(model))} segments, baseline {len(segments(base))})", None, x)

    # Eval: each segment given the baseline's input to it, then the whole pass.
    with torch.no_grad(), tracing(base.eval(), device) as expected:
        want = base(x)
    model.eval()
    with torch.no_grad():
        for (key, part), _ in pairs:
            given = expected.inputs[key].clone()  # the segment may work in place on its input
            result.add(f"eval, {key} (given the baseline's input)", part(given), expected.outputs[key])
        result.add("eval output", model(x), want)

    # Training: each segment given the baseline's input and random state, then the whole step.
    frozen = copy.deepcopy(model)  # BN statistics before the step, for the segment-wise comparison
    base_out, base_trace = _train_step(base, x, probe, device)
    out, _ = _train_step(model, x, probe, device)
    for (key, part), _ in zip(segments(frozen.train()), pairs, strict=False):
        set_rng_state(device, base_trace.rng[key])
        with torch.no_grad():
            result.add(
                f"train mode, {key} (given the baseline's input and random state)",
                part(base_trace.inputs[key].clone()),
                base_trace.outputs[key],
            )
    result.add("train-mode output under the same seed", out, base_out)
    # The backward runs from the classifier to the stem: the last parameter (in forward order) whose
    # gradient differs is where it first diverges; every earlier one follows from it.
    grads = list(zip(model.named_parameters(), base.named_parameters(), strict=False))
    for (name, p), (base_name, q) in reversed(grads):
        result.add(f"gradient of {name} (baseline {base_name})", p.grad, q.grad)
    for (name, t), (base_name, u) in zip(model.state_dict().items(), base.state_dict().items(), strict=False):
        if name not in dict(model.named_parameters()):
            result.add(f"after the training step, buffer {name} (baseline {base_name})", t, u)
    return result


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
    same seed, the gradients of every parameter and of the input, and the BN statistics after the step."""
    g = torch.Generator().manual_seed(SEED + 2)
    calibration = torch.randn(x.shape, generator=g).to(x.device) * 2 + 0.5  # BN statistics unlike the defaults
    torchutil.calibrate_batchnorm(base, [calibration])
    try:
        torchutil.copy_weights_in_order(base, model)
    except AssertionError as e:
        pytest.fail(f"{case}: the block's tensors differ from the baseline's: {e}", pytrace=False)
    result = Comparison(case)
    with torch.no_grad():
        result.add("eval output", model.eval()(x.clone()), base.eval()(x.clone()))
    outputs, input_grads = [], []
    for block in (model, base):
        block.train()
        torch.manual_seed(SEED + 1)
        given = x.clone().requires_grad_(True)
        out = block(given)
        probe = torch.randn(out.shape, generator=torch.Generator().manual_seed(SEED + 3)).to(out.device)
        (out * probe).sum().backward()
        outputs.append(out.detach())
        input_grads.append(given.grad)
    result.add("train-mode output under the same seed", *outputs)
    for (name, p), (base_name, q) in reversed(list(zip(model.named_parameters(), base.named_parameters(), strict=False))):
        result.add(f"gradient of {name} (baseline {base_name})", p.grad, q.grad)
    result.add("gradient of the input", *input_grads)
    parameters = dict(model.named_parameters())
    for (name, t), (base_name, u) in zip(model.state_dict().items(), base.state_dict().items(), strict=False):
        if name not in parameters:
            result.add(f"after the training step, buffer {name} (baseline {base_name})", t, u)
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


@pytest.mark.parametrize("name", NAMED)
def test_named_variant_computes_the_same_function_as_the_baseline(impl, baseline, device, request, name):
    model = _build(getattr(impl, f"efficientnet_{name}"), device)
    base = _build(getattr(baseline.module, f"efficientnet_{name}"), device)
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
    config=strategies.block_configs(dropout=strategies.drop_probabilities),
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
