"""Optional parts of the API (spec section 1: API-5, API-6, API-7, API-8).

Each test skips, naming its clause, when the implementation lacks the feature; when it has the
feature, the feature must do what the clause says.
"""

from __future__ import annotations

import pytest
import torch

from tests.support import models, reference, spec, torchutil
from tests.support.evidence import blame
from tests.support.loader import require_optional

STAGES_TOL = 1e-9
OPTIONAL_VARIANTS = [n for n in spec.variants() if spec.variant(n).get("optional", False)]  # b8, l2


@pytest.mark.clause("API-5")
@pytest.mark.parametrize("name", OPTIONAL_VARIANTS)
def test_larger_variant_has_the_specified_architecture(impl, name):
    require_optional(impl, f"efficientnet_{name}")
    model = models.impl_to_inspect(impl, name)  # meta device: L2's 480M parameters cost nothing
    row = spec.expected()["variants"][name]
    count = sum(p.numel() for p in model.parameters())
    assert count == row["params"], f"efficientnet_{name} has {count:,} parameters; the spec says {row['params']:,}"
    problem = torchutil.first_shape_mismatch(model, models.timm_to_inspect(name))
    assert problem is None, f"efficientnet_{name}: state_dict differs from timm's at {problem}"
    if torchutil.first_exact_shape_mismatch(model, models.timm_to_inspect(name)) is None:  # else API-8's
        assert spec.fingerprint(model) == row["fingerprint"], (
            f"efficientnet_{name}: parameter/buffer shapes differ from spec/expected.toml (fingerprint)"
        )


@pytest.mark.clause("API-6")
def test_forward_stages_returns_the_seven_stage_outputs(impl, device):
    require_optional(impl, "EfficientNet.forward_stages")
    torch.manual_seed(0)
    # float64: forward_stages may order its sums otherwise than forward (another function, the same
    # stages); in float64 that stays below 1e-12, a stage taken from the wrong place is off by far more.
    model = impl.EfficientNet(0.25, 0.34, n_classes=7).to(device, torch.float64).eval()
    x = torch.randn(2, 3, 45, 38, device=device, dtype=torch.float64)
    seen = reference.record(model, reference.impl_taps(model), x)
    with torch.no_grad():
        outputs = model.forward_stages(x)
    assert len(outputs) == 7, f"forward_stages returned {len(outputs)} tensors, not 7"
    for i, out in enumerate(outputs):
        expected = seen[f"stage {i}"]
        assert out.shape == expected.shape, f"stage {i}: shape {tuple(out.shape)}, forward had {tuple(expected.shape)}"
        err = torchutil.margin("API-6 stage outputs", torchutil.rel_err(out, expected), STAGES_TOL)
        assert err <= STAGES_TOL, f"stage {i}: forward_stages differs from the stage's output in forward by {err:.2e}"


def _build(impl, factory: str, **kwargs: float) -> torch.nn.Module:
    args = (10,) if factory.startswith("efficientnet_b") else (0.25, 0.34, 10)
    return getattr(impl, factory)(*args, **kwargs)


def _head(model: torch.nn.Module, factory: str) -> torch.nn.Module:
    """The head (API-3: ``head``, the Sequential form's 11th child): a premise of API-3's."""
    if factory != "EfficientNetSequential":
        return model.head
    with blame("API-3"):
        assert len(model) == 11, f"premise API-3: {factory}(...) has {len(model)} children, not 11"
    return model[-1]


FACTORIES = ["EfficientNet", "EfficientNetSequential", "efficientnet_b0"]


@pytest.mark.clause("API-7", "REG-3")
@pytest.mark.parametrize("factory", FACTORIES)
def test_drop_rate_keyword_sets_the_classifier_dropout(impl, factory):
    require_optional(impl, f"{factory}(drop_rate)")
    torch.manual_seed(0)
    for rate in (0.0, 0.5):
        head = _head(_build(impl, factory, drop_rate=rate), factory)
        weights = [t for t in head.state_dict().values() if t.dim() == 2]  # the classifier's (n_classes, width)
        with blame("ARCH-4"):
            assert weights, f"{factory}(drop_rate={rate}): the head holds no classifier weight"
        width = weights[-1].shape[1]
        # One sample repeated, in memory of its own: a head with in-place dropout (torchvision's) must not
        # meet an expanded view, whose rows alias one another.
        features = torch.randn(1, width).expand(4000, width).contiguous()
        with torch.no_grad():
            expected = head.eval()(features[:1]).expand(4000, -1)
            out = head.train()(features)
        if rate == 0.0:
            assert torchutil.rel_err(out, expected) < 1e-6, f"{factory}(drop_rate=0) still drops features in training"
        else:
            assert not torch.equal(out[0], out[1]), f"{factory}(drop_rate=0.5): training-mode head is deterministic"
            # Survivors are rescaled, so the mean over many draws is the eval output (sd of this
            # estimate is about 0.02 here; 0.1 leaves a wide margin).
            mean_err = torchutil.rel_err(out.mean(0), expected[0])
            assert mean_err < 0.1, f"{factory}(drop_rate=0.5): training-mode head is biased (rel err {mean_err:.3f})"


@pytest.mark.clause("API-7", "REG-1")
@pytest.mark.parametrize("factory", FACTORIES)
def test_drop_path_rate_keyword_sets_stochastic_depth(impl, factory):
    require_optional(impl, f"{factory}(drop_rate)")
    require_optional(impl, f"{factory}(drop_path_rate)")
    torch.manual_seed(0)
    with blame():  # building the network is the scaling clauses' business, not API-7's or REG-1's
        model = _build(impl, factory, drop_rate=0.0, drop_path_rate=0.0)
    x = torch.randn(3, 3, 40, 40)
    torchutil.calibrate_batchnorm(model, [torch.randn(8, 3, 40, 40)])
    with torch.no_grad():
        expected = model(x)
    torchutil.everything_but_batchnorm_training(model)
    with torch.no_grad():
        out = model(x)
    assert torchutil.rel_err(out, expected) < 1e-6, (
        f"{factory}(drop_path_rate=0): training-mode output (BN fixed) differs from eval: a block still drops"
    )
    # The keyword is not ignored: a large rate makes training-mode outputs random.
    noisy = _build(impl, factory, drop_rate=0.0, drop_path_rate=0.9)
    if factory == "EfficientNetSequential":
        with blame("API-3"):
            assert len(noisy) == 11, f"premise API-3: {factory}(...) has {len(noisy)} children, not 11"
    stages = noisy[1:8] if factory == "EfficientNetSequential" else noisy.stages
    with blame():  # only a stage of several blocks has residual blocks to drop: how many is SCALE-2's rule
        assert any(len(stage) > 1 for stage in stages), (
            f"{factory}: every stage has one block, so no block has a residual branch to drop (see SCALE-2)"
        )
    noisy.load_state_dict(model.state_dict())
    torchutil.everything_but_batchnorm_training(noisy)
    with torch.no_grad():
        a, b = noisy(x), noisy(x)
    assert not torch.equal(a, b), f"{factory}(drop_path_rate=0.9) has no effect in training mode"


@pytest.mark.clause("API-8")
@pytest.mark.parametrize("name", ["b0"])
def test_timms_state_dict_loads_unchanged(impl, name):
    """timm's state_dict, its keys renamed to the fork's by position (API-4), loads with the fork's
    own ``load_state_dict(strict=True)``, and every tensor then holds timm's values.  A fork whose
    tensors differ from timm's only in size-1 dimensions (the same values: ARCH-5 judges them equal)
    skips, naming the first.  Premise: the shapes agree up to size-1 dimensions (ARCH-5)."""
    ref = models.timm_model(name)
    torch.manual_seed(0)
    model = reference.impl_factory(impl, name)()
    with blame("ARCH-5"):
        problem = torchutil.first_shape_mismatch(model, ref)
        assert problem is None, f"premise ARCH-5: efficientnet_{name}'s state_dict differs from timm's at {problem}"
    exact = torchutil.first_exact_shape_mismatch(model, ref)
    if exact is not None:
        title = spec.clauses()["API-8"].title.removesuffix(" (optional)")
        pytest.skip(f"optional clause API-8 ({title}) not implemented: efficientnet_{name} at {exact}")
    renamed = dict(zip(model.state_dict(), ref.state_dict().values(), strict=True))
    model.load_state_dict(renamed, strict=True)
    for (key, got), want in zip(model.state_dict().items(), ref.state_dict().values(), strict=True):
        assert torch.equal(got, want), f"efficientnet_{name}: after load_state_dict, {key} does not hold timm's values"
