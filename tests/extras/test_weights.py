"""effnet's weight import (EXT-2): ``load_reference_weights`` loads timm's and torchvision's
EfficientNet state_dicts by position, and a checkpoint that does not fit fails naming the first
tensor that differs, on both sides.  Round trips use random weights (no download): the imported
model must compute the reference's function (compared as in tests/conformance/test_numerics.py).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.support import models, reference, torchutil

pytestmark = pytest.mark.extra

RESOLUTION = 64
TOL = 1e-5  # the tolerance of NUM-1 and NUM-4: the same function from the same weights

REFERENCES = {
    "timm": (models.timm_model, reference.timm_taps),
    "torchvision": (models.torchvision_model, reference.torchvision_taps),
}
COUNTER = "num_batches_tracked"


def _logits(model: nn.Module, taps, x: torch.Tensor) -> torch.Tensor:
    return reference.record(model, {"logits": taps(model)["logits"]}, x)["logits"]


@pytest.mark.clause("EXT-2")
@pytest.mark.parametrize("source", list(REFERENCES))
@pytest.mark.parametrize("name", ["b0", "b2"])
def test_imported_weights_compute_the_reference_function(impl, source, name):
    make_reference, taps = REFERENCES[source]
    ref = reference.prepare_reference(make_reference(name), RESOLUTION)
    model = impl.load_reference_weights(models.to_run(reference.impl_factory(impl, name)), ref.state_dict())
    model.eval()
    x = reference.images(2, 4, RESOLUTION)
    expected = _logits(ref, taps, x)
    err = torchutil.rel_err(model(x), expected)
    assert torchutil.input_dependence(expected) > 0.1, "the prepared reference ignores its input"
    assert err <= TOL, f"efficientnet_{name} with {source}'s weights: logits relative error {err:.3g}"
    for (key, mine), (ref_key, theirs) in zip(model.state_dict().items(), ref.state_dict().items(), strict=True):
        assert torch.equal(mine, theirs), f"{key} is not a copy of {source}'s {ref_key}"


@pytest.mark.clause("EXT-2")
def test_checkpoint_without_batch_counters_loads(impl):
    ref = reference.prepare_reference(models.timm_model("b0"), RESOLUTION)
    state = {k: v for k, v in ref.state_dict().items() if not k.endswith(COUNTER)}
    model = impl.load_reference_weights(models.to_run(impl.efficientnet_b0), state).eval()
    x = reference.images(2, 4, RESOLUTION)
    err = torchutil.rel_err(model(x), _logits(ref, reference.timm_taps, x))
    assert err <= TOL, f"efficientnet_b0 loaded without {COUNTER}: logits relative error {err:.3g}"


@pytest.mark.clause("EXT-2")
def test_sequential_form_loads_the_same_weights(impl):
    ref = reference.prepare_reference(models.timm_model("b0"), RESOLUTION)
    model = impl.load_reference_weights(models.to_run(impl.EfficientNetSequential), ref.state_dict()).eval()
    x = reference.images(2, 4, RESOLUTION)
    err = torchutil.rel_err(model(x), _logits(ref, reference.timm_taps, x))
    assert err <= TOL, f"EfficientNetSequential() with timm's B0 weights: logits relative error {err:.3g}"


def _first_misfit(source: dict, target: dict) -> tuple[str, str]:
    """The first pair of names (checkpoint, model) whose shapes differ, counters aside."""
    pairs = zip(
        ((k, v) for k, v in source.items() if not k.endswith(COUNTER)),
        ((k, v) for k, v in target.items() if not k.endswith(COUNTER)),
        strict=False,
    )
    return next((k, m) for (k, v), (m, w) in pairs if v.shape != w.shape)


def _meta(factory) -> nn.Module:
    return models.to_run(factory, models.META)


@pytest.mark.clause("EXT-2")
@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("b1", "b0"),  # one more block in stage 1: same widths, the depths differ
        ("b0", "b2"),  # the widths differ from stage 3 on
    ],
)
def test_weights_of_another_variant_are_refused_naming_both_tensors(impl, source, target):
    state = models.timm_to_inspect(source).state_dict()
    model = _meta(reference.impl_factory(impl, target))
    key, model_key = _first_misfit(state, model.state_dict())
    with pytest.raises(ValueError, match="shape") as info:
        impl.load_reference_weights(model, state)
    message = str(info.value)
    assert repr(key) in message, f"the error does not name the checkpoint's {key!r}: {message}"
    assert repr(model_key) in message, f"the error does not name the model's {model_key!r}: {message}"


@pytest.mark.clause("EXT-2")
def test_weights_for_another_number_of_classes_are_refused(impl):
    state = models.timm_to_inspect("b0").state_dict()
    model = _meta(lambda: impl.efficientnet_b0(n_classes=10))
    key, model_key = _first_misfit(state, model.state_dict())
    with pytest.raises(ValueError, match="shape") as info:
        impl.load_reference_weights(model, state)
    assert repr(key) in str(info.value), str(info.value)
    assert repr(model_key) in str(info.value), str(info.value)


@pytest.mark.clause("EXT-2")
@pytest.mark.parametrize("change", ["truncated", "extended"])
def test_a_different_number_of_tensors_is_refused_with_both_counts(impl, change):
    state = models.timm_to_inspect("b0").state_dict()
    keys = list(state)
    if change == "truncated":  # the classifier is missing
        state = {k: state[k] for k in keys[:-2]}
    else:  # an extra tensor after the classifier
        state = {**state, "extra.weight": torch.empty(3, device="meta")}
    model = _meta(impl.efficientnet_b0)
    counted = sum(not k.endswith(COUNTER) for k in state)
    expected = sum(not k.endswith(COUNTER) for k in model.state_dict())
    with pytest.raises(ValueError, match=rf"{counted}\b.*{expected}\b"):
        impl.load_reference_weights(model, state)


@pytest.mark.clause("EXT-2")
@pytest.mark.parametrize(
    ("source", "name", "warns"),
    [("torchvision", "b5", True), ("torchvision", "b4", False), ("timm", "b5", False)],
)
def test_torchvision_b5_to_b7_weights_warn_about_batchnorm_eps(impl, source, name, warns, recwarn):
    to_inspect = {"timm": models.timm_to_inspect, "torchvision": models.torchvision_to_inspect}[source]
    state = to_inspect(name).state_dict()
    impl.load_reference_weights(_meta(reference.impl_factory(impl, name)), state)
    eps_warnings = [w for w in recwarn if "eps" in str(w.message)]
    if warns:
        assert eps_warnings, f"{source}'s efficientnet_{name} weights (BatchNorm eps 1e-3) load without a warning"
        assert "1e-3" in str(eps_warnings[0].message)
    else:
        assert not eps_warnings, f"{source}'s efficientnet_{name} weights warn: {eps_warnings[0].message}"
