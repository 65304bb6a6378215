"""The implementation's values, checked where they enter the suite (tests/support/boundary.py).

End to end, pytest runs a small selection of the conformance suite in a subprocess against copies
of effnet whose constructor or forward returns the wrong kind of value (a tuple, float64 for a
float32 input, non-finite logits, a callable instead of a module): each fails the clause that
defines the value, with a message naming what was returned, and none is reported as an error of
the suite.  The checker itself is tested in process on a hand-made implementation.
"""

from __future__ import annotations

import copy
import inspect
import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from tests.support import boundary, evidence, loader, spec, subrun

# --- End to end: forks that return the wrong kind of value ---------------------------------------
SHAPES = "tests/conformance/test_shapes.py"  # ARCH-6 (the logits) and NUM-3: the network's forward
NUM1_B0 = "tests/conformance/test_numerics.py::test_eval_output_matches_timm_stage_by_stage[b0]"

# name -> (code appended to a copy of effnet/model.py, the selection, the clause that must fail and
# be the only root cause, words its detail must contain)
FORKS: dict[str, tuple[str, tuple[str, ...], str, tuple[str, ...]]] = {
    # The case of the issue: a forward that also returns the pooled features broke the suite's helpers
    # (AttributeError: 'tuple' object has no attribute 'detach'), and no clause failed.
    "forward_returns_a_tuple": (
        """
class _WithFeatures(EfficientNet):
    def forward(self, x):
        features = self.pool_flatten(self.pre(self.stages(self.stem(x))))
        return self.head(features), features


EfficientNet = _WithFeatures
""",
        (SHAPES,),
        "ARCH-6",
        ("returned a tuple of 2 (Tensor", "not one Tensor (the logits)"),
    ),
    "forward_returns_float64": (
        """
class _Float64(EfficientNet):
    def forward(self, x):
        return super().forward(x).double()


EfficientNet = _Float64
""",
        (SHAPES,),
        "ARCH-6",
        ("float64", "not the input's dtype"),
    ),
    # Finite logits come out of the head (what the stage-by-stage taps see); the forward divides them
    # by a temperature of 0.
    "forward_returns_non_finite_logits": (
        """
class _Temperature(EfficientNet):
    temperature = 0.0

    def forward(self, x):
        return torch.log_softmax(super().forward(x) / self.temperature, dim=-1)


EfficientNet = _Temperature
""",
        (SHAPES, NUM1_B0),
        "NUM-1",
        ("in eval mode returned", "NaN", "for a finite input"),
    ),
    "variant_returns_a_callable": (
        """
import functools


def efficientnet_b0(n_classes=1000):
    return functools.partial(EfficientNet, 1.0, 1.0, n_classes)
""",
        ("tests/conformance/test_api.py",),
        "API-2",
        ("efficientnet_b0(10) returned a callable partial, not an nn.Module",),
    ),
}


def run_fork(tmp_path: Path, code: str, selection: tuple[str, ...]) -> tuple[int, str, dict[str, Any]]:
    """The selection against a copy of effnet with ``code`` appended, with --report: (exit code, output,
    report JSON)."""
    fork = tmp_path / "fork.py"
    fork.write_text((spec.ROOT / "effnet" / "model.py").read_text() + code)
    report = tmp_path / "report"
    env = {k: v for k, v in os.environ.items() if k not in ("EFFNET_IMPL", "PYTEST_ADDOPTS")}
    args = [*selection, "-p", "no:cacheprovider", "--impl", str(fork), "--report", str(report)]
    result = subrun.pytest(args, env=env, cwd=spec.ROOT, timeout=300)
    output = result.stdout + result.stderr
    assert (tmp_path / "report.json").exists(), f"no report.json written:\n{output}"
    return result.returncode, output, json.loads((tmp_path / "report.json").read_text())


@pytest.mark.parametrize("name", sorted(FORKS))
def test_a_wrong_value_fails_the_clause_that_defines_it_not_the_suite(tmp_path, name):
    code, selection, clause, words = FORKS[name]
    returncode, output, payload = run_fork(tmp_path, code, selection)
    assert returncode == 1, output
    assert payload["suite_errors"] == [], f"reported as errors of the suite: {payload['suite_errors']}"
    rows = {row["clause"]: row for row in payload["clauses"]}
    failed = [c for c, row in rows.items() if row["status"] == "FAILED"]
    assert (failed, payload["root_causes"]) == ([clause], [clause]), payload["verdict"]
    detail = rows[clause]["detail"]
    assert "BoundaryViolation" in detail, detail
    for word in words:
        assert word in detail, f"{word!r} not in the detail: {detail}"
    assert (
        f"does NOT conform: 1 of {sum(r['status'] != 'not run' for r in rows.values())} clauses failed ({clause})"
        in (payload["verdict"])
    ), payload["verdict"]


# --- The checker, in process ---------------------------------------------------------------------
class Net(nn.Module):
    """A tiny stand-in for EfficientNet: pooled features to ``n_classes`` logits."""

    def __init__(self, w_factor: float = 1, d_factor: float = 1, n_classes: int = 1000) -> None:
        super().__init__()
        self.head = nn.Linear(3, n_classes)

    def forward(self, x: Tensor) -> Any:
        return self.head(x.mean((2, 3)))


class Block(nn.Module):
    """A stand-in for MBConv with the right output shape: a strided depthwise-like convolution."""

    def __init__(self, n_in, n_out, expansion, kernel_size=3, stride=1, r=24, dropout=0.1):  # type: ignore[no-untyped-def]
        super().__init__()
        self.conv = nn.Conv2d(n_in, n_out, kernel_size, stride, (kernel_size - 1) // 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


def mbconv6(n_in, n_out, kernel_size=3, stride=1, r=24, dropout=0.1):  # type: ignore[no-untyped-def]
    return Block(n_in, n_out, 6, kernel_size, stride, r, dropout)


def create_stage(n_in, n_out, num_layers, layer=mbconv6, kernel_size=3, stride=1, r=24, ps=0):  # type: ignore[no-untyped-def]
    """Compares its ``layer`` with its own mbconv6 by identity, as a fork may."""
    assert layer is mbconv6 or layer is mbconv1, f"create_stage got a layer that is not one of its own: {layer!r}"
    return nn.Sequential(
        *(layer(n_in if i == 0 else n_out, n_out, kernel_size, stride if i == 0 else 1) for i in range(num_layers))
    )


def mbconv1(n_in, n_out, kernel_size=3, stride=1, r=24, dropout=0.1):  # type: ignore[no-untyped-def]
    return Block(n_in, n_out, 1, kernel_size, stride, r, dropout)


def fake(**overrides: Any) -> ModuleType:
    """A hand-made implementation: ``EfficientNet``, ``MBConv``, ``mbconv1``, ``mbconv6`` and
    ``create_stage``, with ``overrides`` in their place."""
    module = ModuleType("fake_effnet")
    vars(module).update(
        EfficientNet=Net, MBConv=Block, mbconv1=mbconv1, mbconv6=mbconv6, create_stage=create_stage, scale_width=max
    )
    vars(module).update(overrides)
    return module


def violation(call: Any) -> BaseException:
    with pytest.raises(boundary.BoundaryViolation) as caught:
        call()
    return caught.value


def assert_verdict(exc: BaseException, clause: str, *words: str) -> None:
    """Blamed on ``clause`` alone, a failure of the implementation (never an error of the suite)."""
    assert evidence.blamed(exc) == (clause,), evidence.blamed(exc)
    assert evidence.suite_error(exc) is None
    assert not isinstance(exc, Exception), "an `except Exception` of the suite would take it for something else"
    for word in words:
        assert word in str(exc), f"{word!r} not in {exc}"


X = torch.randn(2, 3, 9, 9)


def subclass(forward: Any) -> type[nn.Module]:
    return type("Broken", (Net,), {"forward": forward})


def test_the_view_is_the_module_with_its_constructors_checked():
    module = fake()
    view = boundary.checked(module)
    assert boundary.checked(module) is view
    assert boundary.checked(view) is view
    assert isinstance(view, ModuleType)
    assert (view.__name__, repr(view)) == ("fake_effnet", repr(module))
    assert view.scale_width is max, "a name that is no constructor is the module's own object"
    assert view.EfficientNet is view.EfficientNet, "one checked constructor per name"
    assert boundary.unchecked(view.mbconv6) is mbconv6
    assert boundary.unchecked(view) is module
    assert inspect.signature(view.create_stage) == inspect.signature(create_stage)
    # API-2 compares create_stage's default layer with the module's mbconv6 by identity.
    params = list(inspect.signature(view.create_stage).parameters.values())
    assert loader.signature_problem(boundary.unchecked(view), "create_stage", params) is None
    model = view.EfficientNet(0.5, 0.5, 4)
    assert isinstance(model, view.EfficientNet)
    assert type(model) is Net, "the module's own class, not a subclass"
    assert tuple(model(X).shape) == (2, 4)


def test_a_constructor_given_to_another_is_passed_on_as_the_modules_own():
    view = boundary.checked(fake())
    stage = view.create_stage(4, 8, 2, view.mbconv1, 3, 2)  # the fork's identity check passes
    assert tuple(stage(torch.randn(1, 4, 7, 7)).shape) == (1, 8, 4, 4)


def test_a_forward_that_returns_a_tuple_fails_arch_6_naming_it():
    view = boundary.checked(fake(EfficientNet=subclass(lambda self, x: (Net.forward(self, x), x.mean((2, 3))))))
    model = view.EfficientNet(1, 1, 5)
    exc = violation(lambda: model(X))
    assert_verdict(
        exc, "ARCH-6", "EfficientNet(1, 1, 5)(x) returned a tuple of 2 (Tensor (2, 5) float32", "not one Tensor"
    )


@pytest.mark.parametrize(
    ("returned", "words"),
    [
        (lambda out: out.double(), ("float64", "not the input's dtype")),
        (lambda out: out.unsqueeze(1), ("Tensor (2, 1, 5)", "want shape (2, 5)")),
        (lambda out: out[:, :4], ("want shape (2, 5)",)),
        (lambda out: out.to("meta"), ("on meta", "not on the input's device")),
        (lambda out: {"logits": out}, ("a dict with keys 'logits'",)),
        (lambda out: None, ("returned None",)),
    ],
    ids=["float64", "extra-dimension", "too-few-classes", "another-device", "dict", "none"],
)
def test_a_forward_output_of_another_dtype_shape_device_or_kind_fails_arch_6(returned, words):
    view = boundary.checked(fake(EfficientNet=subclass(lambda self, x: returned(Net.forward(self, x)))))
    exc = violation(lambda: view.EfficientNet(n_classes=5)(X))
    assert_verdict(exc, "ARCH-6", *words)


def test_non_finite_logits_for_a_finite_input_fail_num_1_in_eval_and_num_2_in_training():
    view = boundary.checked(fake(EfficientNet=subclass(lambda self, x: Net.forward(self, x) / 0.0)))
    model = view.EfficientNet(n_classes=5)
    assert_verdict(violation(lambda: model.eval()(X)), "NUM-1", "in eval mode returned", "for a finite input")
    assert_verdict(violation(lambda: model.train()(X)), "NUM-2", "in training mode returned")
    model.eval()(torch.full_like(X, float("nan")))  # a non-finite input: nothing is promised


def test_finiteness_is_not_read_on_the_meta_device_but_the_shape_is():
    nan_net = boundary.checked(fake(EfficientNet=subclass(lambda self, x: Net.forward(self, x) / 0.0)))
    with torch.device("meta"):
        model = nan_net.EfficientNet(n_classes=5)
    assert model(torch.empty(2, 3, 9, 9, device="meta")).is_meta
    wide = boundary.checked(fake(EfficientNet=subclass(lambda self, x: Net.forward(self, x).unsqueeze(1))))
    with torch.device("meta"):
        model = wide.EfficientNet(n_classes=5)
    assert_verdict(violation(lambda: model(torch.empty(2, 3, 9, 9, device="meta"))), "ARCH-6", "want shape (2, 5)")


def test_a_blocks_output_is_held_to_its_own_clause():
    view = boundary.checked(fake())
    block = view.MBConv(4, 8, 6, 5, 2)
    assert tuple(block(torch.randn(2, 4, 9, 8)).shape) == (2, 8, 5, 4)  # ceil(9 / 2), ceil(8 / 2)
    unpadded = type(
        "Unpadded", (Block,), {"forward": lambda self, x: nn.functional.conv2d(x, self.conv.weight, stride=2)}
    )
    exc = violation(lambda: boundary.checked(fake(MBConv=unpadded)).MBConv(4, 8, 6, 5, 2)(torch.randn(2, 4, 9, 8)))
    assert_verdict(exc, "BLOCK-3", "MBConv(4, 8, 6, 5, 2)(x) returned Tensor (2, 8, 3, 2)", "want shape (2, 8, 5, 4)")


@pytest.mark.parametrize(
    ("built", "words"),
    [
        (lambda *a: Net, ("returned the class Net, not an nn.Module",)),
        (lambda *a: mbconv6, ("returned the function mbconv6",)),
        (lambda *a: (Net(), Net()), ("returned a tuple of 2",)),
        (lambda *a: [nn.Linear(3, 5)], ("returned a list of 1",)),
    ],
    ids=["class", "function", "tuple", "list"],
)
def test_a_constructor_that_returns_no_module_fails_api_2(built, words):
    view = boundary.checked(fake(EfficientNet=built))
    assert_verdict(violation(lambda: view.EfficientNet(0.5, 0.5, 5)), "API-2", "EfficientNet(0.5, 0.5, 5)", *words)


def test_a_module_whose_state_dict_holds_no_tensor_fails_api_4_whatever_its_dtype():
    double = boundary.checked(fake(EfficientNet=lambda *a: Net(*a).double()))
    assert isinstance(double.EfficientNet(), nn.Module)  # a model kept in float64 is judged by what it computes

    class ExtraState(Net):
        def get_extra_state(self) -> Any:
            return {"version": 2}

    extra = boundary.checked(fake(EfficientNet=ExtraState))
    assert_verdict(violation(lambda: extra.EfficientNet()), "API-4", "state_dict entry _extra_state is a dict")


def test_the_check_survives_a_deep_copy_and_leaves_autocast_alone():
    view = boundary.checked(fake(EfficientNet=subclass(lambda self, x: Net.forward(self, x).double())))
    model = copy.deepcopy(view.EfficientNet(n_classes=5))
    assert_verdict(violation(lambda: model(X)), "ARCH-6", "not the input's dtype")
    correct = boundary.checked(fake()).EfficientNet(n_classes=5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert correct(X).dtype == torch.bfloat16  # autocast chooses the dtype: not the module's doing


def test_effnet_meets_every_contract():
    view = boundary.checked(loader.load("effnet"))
    x = torch.randn(2, 3, 33, 17)
    for model in (view.EfficientNet(0.1, 0.1, 7), view.EfficientNetSequential(0.1, 0.1, 7), view.efficientnet_b0(3)):
        model.eval()(x)
        model.train()(x)
    view.SEBlock(8, 2)(torch.randn(2, 8, 5, 5))
    view.conv_block(3, 8, 3, 2, 1)(x)
    view.create_stage(8, 16, 2, view.mbconv1, 5, 2)(torch.randn(1, 8, 7, 7))
