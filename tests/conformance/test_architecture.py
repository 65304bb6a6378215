"""Architecture against timm (spec section 2, API-4): for every variant, the output shape of the
stem, each stage, the head conv and the logits, and the ordered parameter and buffer shapes,
equal those of timm's ``efficientnet_bN``.

Both models run on the meta device (shapes without data), so B7 at 600 px costs about a second;
an implementation that cannot be built there is run with real weights instead.  The properties
of shapes for arbitrary inputs are tested with hypothesis elsewhere; this module holds the named
variants, and the network at any factors (ARCH-5: timm's generator on the meta device), to an
independent implementation.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F  # noqa: N812 - the usual alias
from hypothesis import example, given

from tests.support import models, premises, reference, spec, strategies, torchutil
from tests.support.evidence import blame

NAMED = spec.variants(include_optional=False)
OPTIONAL = [n for n in spec.variants() if n not in NAMED]  # b8, l2 (API-5): large, so slow
ALL = [*NAMED, *(pytest.param(n, marks=pytest.mark.slow) for n in OPTIONAL)]

LAYERS = spec.data()["base"]["layers"]
HEAD_TOL = 1e-5  # the same kernels in another order; every head bug looked for is >= 1e-2 relative

SMALL_INPUT = models.SMALL_ODD_INPUT  # (2, 3, 57, 71)


def _shape_report(actual: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]]) -> str:
    rows = [f"  {k}: {actual.get(k)} (timm {v})" for k, v in expected.items() if actual.get(k) != v]
    return "\n".join(rows)


def _part(actual: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]]) -> str:
    """The clause of the first output whose shape differs: the stem (ARCH-2), a stage (ARCH-6),
    the head conv or logits (ARCH-4)."""
    first = next((k for k, v in expected.items() if actual.get(k) != v), "")
    return "ARCH-2" if first == "stem" else "ARCH-4" if first in ("head conv", "logits") else "ARCH-6"


def _assert_timms_shapes(run: models.Pass, expected: dict[str, tuple[int, ...]], where: str) -> None:
    """The pass's shapes are timm's (at the taps the network has: all of API-3's, or those found by
    parameter order); the failure blames the first part that differs or, where the pass raised, the first
    part that did not run."""
    if run.tapped is not None:
        expected = {key: shape for key, shape in expected.items() if key in run.tapped}
    with blame(_part(run.shapes, expected)):
        same = run.shapes == expected and run.error is None
        assert same, (
            f"{where}: output shapes differ from timm's"
            + (f" (the forward pass raised {run.error})" if run.error else "")
            + ":\n"
            + _shape_report(run.shapes, expected)
        )


def _expected_toml_shapes(name: str) -> dict[str, tuple[int, ...]] | None:
    row = spec.expected().get("variants", {}).get(name)
    if row is None:
        return None
    stages = {f"stage {i}": tuple(s) for i, s in enumerate(row["stage_shapes"])}
    return {
        "stem": tuple(row["stem_shape"]),
        **stages,
        "head conv": tuple(row["head_shape"]),
        "logits": tuple(row["logits_shape"]),
    }


@pytest.mark.clause("ARCH-6", "ARCH-2", "ARCH-4")
@pytest.mark.parametrize("name", ALL)
def test_stage_shapes_at_native_resolution_match_timm(impl, name):
    shape = reference.native_input(name)
    expected = models.timm_shapes(name, shape)
    run = models.impl_forward_shapes(impl, name, shape, count_macs=True)  # the pass test_table2 uses
    _assert_timms_shapes(run, expected, f"efficientnet_{name} at {shape[-1]}x{shape[-1]}")
    actual = run.shapes
    recorded = _expected_toml_shapes(name)
    if recorded is not None and run.tapped is not None:
        recorded = {key: shape for key, shape in recorded.items() if key in run.tapped}
    if recorded is not None:
        with blame(_part(actual, recorded)):
            assert actual == recorded, (
                f"efficientnet_{name}: output shapes differ from spec/expected.toml:\n"
                + _shape_report(actual, recorded)
            )


@pytest.mark.clause("ARCH-6", "ARCH-2", "ARCH-4")
@pytest.mark.parametrize("name", ALL)
def test_stage_shapes_at_small_odd_resolution_match_timm(impl, name):
    expected = models.timm_shapes(name, SMALL_INPUT)
    _assert_timms_shapes(
        models.impl_forward_shapes(impl, name, SMALL_INPUT), expected, f"efficientnet_{name} on {SMALL_INPUT}"
    )


@pytest.mark.clause("API-4", "ARCH-5")
@pytest.mark.parametrize("name", ALL)
def test_parameter_and_buffer_shapes_match_timm_in_order(impl, name):
    model, ref = models.impl_to_inspect(impl, name), models.timm_to_inspect(name)
    problem = torchutil.first_shape_mismatch(model, ref)
    # The same tensors in another order break API-4 only; other tensors break ARCH-5 (and API-4 with it).
    reordered = sorted(spec.shape_signature(model)) == sorted(spec.shape_signature(ref))
    with blame("API-4" if reordered else "ARCH-5"):
        assert problem is None, f"efficientnet_{name} state_dict differs from timm's at {problem}"
    problem = premises.first_kind_mismatch(model, ref)
    assert problem is None, f"efficientnet_{name} state_dict differs from timm's at {problem}"
    recorded = spec.expected().get("variants", {}).get(name, {}).get("fingerprint")
    if recorded is not None and torchutil.first_exact_shape_mismatch(model, ref) is None:  # else API-8's
        assert spec.fingerprint(model) == recorded, f"efficientnet_{name}: fingerprint differs from spec/expected.toml"


@pytest.mark.clause("ARCH-5")
@pytest.mark.parametrize("name", ALL)
def test_parameter_count_matches_timm(impl, name):
    model, ref = models.impl_to_inspect(impl, name), models.timm_to_inspect(name)
    count = sum(p.numel() for p in model.parameters())
    expected = sum(p.numel() for p in ref.parameters())
    assert count == expected, f"efficientnet_{name} has {count:,} parameters, timm's has {expected:,}"


# --- ARCH-5 for any factors: timm's generator at the same (w, d, n_classes) ----------------------
# Where the rules' edges lie: w = 0.33, where torchvision's head rule (4 x the last stage's width,
# 416) differs from round_filters(1280 w) (424); w = 0.7, where the 10% rule adds 8 (16 x 0.7 =
# 11.2 rounds to 8 < 10.08); w = 0.01, where every width before the head is 8 (the first block
# of a stride-1 stage keeps its width); d just above an integer ratio, where every depth gains a
# block; the top of the range (690M parameters, beyond L2); one class.
STRUCTURE_EXAMPLES = [
    (0.33, 1.0, 1000),
    (0.7, 0.5, 10),
    (0.01, 0.5, 3),
    (0.05, 0.05, 1),
    (1.0, 1.0000001, 10),
    (1.1, 2.0000001, 7),
    (5.0, 6.0, 1),
]


def _with_structure_examples(test: Callable[..., None]) -> Callable[..., None]:
    for w, d, n in STRUCTURE_EXAMPLES:
        test = example(w=w, d=d, n=n)(test)
    return test


@pytest.mark.clause("ARCH-5")
@strategies.fewer_examples(0.4)  # up to a second per example: three models with hundreds of blocks
@given(w=strategies.structure_width_factors, d=strategies.structure_depth_factors, n=strategies.structure_class_counts)
@_with_structure_examples
def test_state_dict_matches_timms_generator_at_any_factors(impl, w, d, n):
    """``EfficientNet(w, d, n)``, built on the meta device (on the CPU if it cannot be), has the
    shapes, the kinds (parameter or buffer) and the parameter count of timm's generator at the same
    factors.  The Sequential form is held to the module form by SEQ-1."""
    model = models.to_inspect(lambda: impl.EfficientNet(w, d, n))
    problem = premises.state_dict_problem(model, "EfficientNet", w, d, n)
    assert problem is None, problem


@pytest.mark.clause("ARCH-4")
@strategies.fewer_examples(0.4)  # two models on the meta device per example
@given(w=strategies.structure_width_factors, n=strategies.structure_class_counts)
@example(w=0.33, n=10)  # torchvision's rule, 4 x the last stage's 104 channels, gives 416, not 424
@example(w=0.05, n=1)
def test_head_conv_has_the_scaled_1280_channels_at_any_width(impl, w, n):
    """The head conv (API-3 ``pre``) maps the last stage's width to scale_width(1280, w), as timm's
    generator does (one block per stage: the depth does not change the head).  Premise: the
    implementation's own width rounding (SCALE-1) and scaler (SCALE-3) agree with the spec at ``w``."""
    premises.scaling(impl, w)
    model = models.to_inspect(lambda: impl.EfficientNet(w, 0.05, n))
    ref = models.timm_scaled_to_inspect(w, 0.05, n)
    if reference.has_the_structure(model):
        got = [tuple(t.shape) for t in model.pre.state_dict().values() if t.ndim == 4]
        where = f"EfficientNet({w!r}, 0.05, {n}).pre"
    else:  # a network without API-3's children: its head conv is its last convolution (API-4 order)
        got = [tuple(t.shape) for t in model.state_dict().values() if t.ndim == 4][-1:]
        where = f"EfficientNet({w!r}, 0.05, {n})'s last convolution (the head conv)"
    want = tuple(ref.conv_head.weight.shape)
    assert got == [want], (
        f"{where} has convolution weights {got}, want one of shape {want}: "
        f"{want[1]} -> {want[0]} channels, as in {models.TIMM_GENERATOR}"
    )


@pytest.mark.clause("ARCH-4")
@pytest.mark.parametrize(("w", "d", "n"), [(0.25, 0.3, 10), (0.5, 0.5, 3)])
def test_head_is_conv_bn_silu_average_pool_linear(impl, w, d, n):
    """The head as a function, from its own tensors (API-4: the last eight state_dict entries are
    the 1x1 conv, its BN and the Linear): ``pre`` computes SiLU(BN(conv1x1(last stage))),
    ``pool_flatten`` the spatial mean, ``head`` in eval mode the affine map (dropout off)."""
    torch.manual_seed(0)
    model = impl.EfficientNet(w, d, n)
    tensors = list(model.state_dict().values())
    conv_w, bn_w, bn_b, bn_mean, bn_var, _, lin_w, lin_b = tensors[-8:]
    assert lin_w.shape[0] == lin_b.shape[0] == n, (
        f"EfficientNet({w}, {d}, {n}): the classifier (API-4: the last two entries) has weight "
        f"{tuple(lin_w.shape)} and bias {tuple(lin_b.shape)}, want {n} outputs (n_classes)"
    )
    with torch.no_grad():  # BN affine away from (1, 0), so an activation or pooling bug shows
        bn_w.uniform_(0.5, 1.5)
        bn_b.normal_(0.0, 0.5)
    generator = torch.Generator().manual_seed(0)
    torchutil.calibrate_batchnorm(model, [torch.randn(8, 3, 64, 64, generator=generator)])
    x = torch.randn(4, 3, 64, 72, generator=generator)
    taps = {"last stage": model.stages[-1], "pre": model.pre, "pool_flatten": model.pool_flatten, "head": model.head}
    out = reference.record(model.eval(), taps, x)
    with blame():  # the test's own premise: a comparison of outputs that ignore the input shows nothing
        assert torchutil.input_dependence(out["head"]) > 1e-2, "test setup: the logits do not depend on the input"

    with torch.no_grad():
        z = F.conv2d(out["last stage"], conv_w)
        z = F.batch_norm(z, bn_mean, bn_var, bn_w, bn_b, training=False, eps=LAYERS["batchnorm_eps"])
        expected = {"pre": F.silu(z)}
        expected["pool_flatten"] = out["pre"].mean((2, 3))
        expected["head"] = F.linear(out["pool_flatten"], lin_w, lin_b)
    where = f"EfficientNet({w}, {d}, {n}) head"
    for key, e in expected.items():
        a = out[key]
        assert a.shape == e.shape, f"{where}: {key} gives shape {tuple(a.shape)}, want {tuple(e.shape)}"
        err = torchutil.rel_err(a, e)
        assert err <= HEAD_TOL, f"{where}: {key} differs from {_HEAD_STEPS[key]} by {err:.2e} relative"


_HEAD_STEPS = {
    "pre": "SiLU(BN(1x1 conv of the last stage's output))",
    "pool_flatten": "the spatial mean of pre's output",
    "head": "the Linear map of pool_flatten's output (eval mode: no dropout)",
}


# --- ARCH-2: the stem as a function, in both forms ------------------------------------------------
STEM = spec.data()["base"]["stem"]
STEM_TOL = 1e-9  # float64: another order of the same sums stays below 1e-13; a missing BN or SiLU is off by > 1e-2


def _stem_of(model: torch.nn.Module, form: str) -> torch.nn.Module:
    """The stem (API-3: ``EfficientNet.stem``, the Sequential's first child)."""
    with blame("API-3"):
        stem = model.stem if form == "EfficientNet" else model[0]
        assert isinstance(stem, torch.nn.Module), f"premise API-3: {form}'s stem is {type(stem).__name__}"
    return stem


@pytest.mark.clause("ARCH-2")
@pytest.mark.parametrize("form", ["EfficientNet", "EfficientNetSequential"])
@pytest.mark.parametrize("w", [0.25, 1.1])
def test_stem_computes_strided_conv_then_batchnorm_then_silu(impl, device, form, w):
    """Each form's stem against F.conv2d (3x3, stride 2, padding 1, no bias), then BatchNorm (its
    running statistics in eval mode, the batch's in training), then SiLU, from its own tensors by
    position (API-4): a conv weight of shape (scale_width(32, w), 3, 3, 3) and a BN, in float64.
    Premise: the implementation's width rounding and scaler (SCALE-1, SCALE-3) at ``w``."""
    premises.scaling(impl, w)
    c, k = premises.scale_width(STEM["channels"], w), STEM["kernel"]
    torch.manual_seed(0)
    model = getattr(impl, form)(w, 0.1, 10)
    stem = _stem_of(model, form).to(device, torch.float64)
    tensors = list(stem.state_dict().values())
    shapes = [tuple(t.shape) for t in tensors]
    want = [(c, 3, k, k), (c,), (c,), (c,), (c,), ()]
    same = len(shapes) == len(want) and all(torchutil.same_layout(g, e) for g, e in zip(shapes, want, strict=False))
    assert same, (
        f"{form}({w}, 0.1, 10)'s stem holds tensors of shapes {shapes}, want (API-4 order) {want}: a {k}x{k} "
        f"convolution from 3 to {c} channels without bias, then a BatchNorm"
    )
    generator = torch.Generator().manual_seed(0)
    weight, bn_w, bn_b, mean, var = (t.view(s) for t, s in zip(tensors[:5], want[:5], strict=True))
    with torch.no_grad():
        weight.copy_(torch.randn(want[0], generator=generator, dtype=torch.float64) / (3 * k * k) ** 0.5)
        bn_w.copy_(torch.rand(c, generator=generator, dtype=torch.float64) + 0.5)
        bn_b.copy_(torch.randn(c, generator=generator, dtype=torch.float64) * 0.2)
        mean.copy_(torch.randn(c, generator=generator, dtype=torch.float64) * 0.2)
        var.copy_(torch.rand(c, generator=generator, dtype=torch.float64) * 1.5 + 0.5)
    eps = [float(m.eps) for m in torchutil.batchnorms(stem) if hasattr(m, "eps")]
    eps_value = eps[0] if len(eps) == 1 else LAYERS["batchnorm_eps"]  # the value is BLOCK-2's to judge
    x = torch.randn(4, 3, 19, 24, generator=generator, dtype=torch.float64)
    conv = F.conv2d(x, weight.detach().cpu(), stride=STEM["stride"], padding=STEM["padding"])
    for training in (False, True):
        stem.train(training)
        with torch.no_grad():
            got = stem(x.to(device)).cpu()
            stats = (None, None) if training else (mean.cpu(), var.cpu())
            want_out = F.silu(F.batch_norm(conv, *stats, bn_w.cpu(), bn_b.cpu(), training, eps=eps_value))
        mode = "training" if training else "eval"
        assert got.shape == want_out.shape, (
            f"{form}({w}, 0.1, 10)'s stem maps {tuple(x.shape)} to {tuple(got.shape)}, want {tuple(want_out.shape)}"
        )
        err = torchutil.margin("ARCH-2 stem", torchutil.rel_err(got, want_out), STEM_TOL)
        assert err <= STEM_TOL, (
            f"{form}({w}, 0.1, 10)'s stem in {mode} mode differs from SiLU(BN(conv 3x3, stride 2, padding 1)) "
            f"by {err:.2e} relative"
        )
