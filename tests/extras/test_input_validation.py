"""Input validation (EXT-1): arguments outside their domain fail fast with a useful message.

Every public constructor and function is called with one argument outside its domain (the
others valid): a non-number, a bool, None, zero, a negative number, NaN, an infinity, a value
too large to build (factors from 1e6, channel and block counts from 1e10: over the 10^9-parameter
limit; 10**400, whose float() overflows).  It must raise ValueError or TypeError whose message
names the argument and its value; any other exception fails.  Each call runs under a time limit
and, on Linux, an address-space limit of the current size plus MEMORY_HEADROOM, so that an
attempt to build a multi-GB model fails here instead of the machine.  The invalid values come
from ``strategies.invalid_arguments``.
"""

from __future__ import annotations

import contextlib
import resource
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import strategies

pytestmark = [pytest.mark.extra, pytest.mark.clause("EXT-1")]

TIME_LIMIT_S = 10  # a refusal is instant; building anything this suite would refuse takes minutes
MEMORY_HEADROOM = 2 << 30  # bytes; the largest valid thing built here is a few MB


class TimeLimitError(Exception):
    pass


@contextlib.contextmanager
def bounded() -> Iterator[None]:
    """Fail instead of hanging or allocating gigabytes."""

    def alarm(_signum: int, _frame: Any) -> None:
        raise TimeLimitError(f"no answer within {TIME_LIMIT_S} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, TIME_LIMIT_S)
    limits = resource.getrlimit(resource.RLIMIT_AS)
    if sys.platform == "linux":
        with open("/proc/self/status") as f:
            size_kb = next(int(line.split()[1]) for line in f if line.startswith("VmSize:"))
        resource.setrlimit(resource.RLIMIT_AS, (size_kb * 1024 + MEMORY_HEADROOM, limits[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, limits)
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass(frozen=True)
class Target:
    """A callable of the implementation with valid arguments and the kind of each argument."""

    name: str
    valid: dict[str, Any]
    kinds: dict[str, str]

    def call(self, impl: Any, **overrides: Any) -> Any:
        return getattr(impl, self.name)(**{**self.valid, **overrides})


SMALL_MODEL = {"w_factor": 0.1, "d_factor": 0.1, "n_classes": 10}
MODEL_KINDS = {
    "w_factor": "model_factor",
    "d_factor": "model_factor",
    "n_classes": "classes",
    "drop_rate": "probability",
    "drop_path_rate": "probability",
}
TARGETS = [
    Target("scale_width", {"w": 32, "w_factor": 1.0}, {"w": "factor", "w_factor": "factor"}),
    Target("efficientnet_scaler", {"w_factor": 1.0, "d_factor": 1.0}, {"w_factor": "factor", "d_factor": "factor"}),
    Target("EfficientNet", SMALL_MODEL, MODEL_KINDS),
    Target("EfficientNetSequential", SMALL_MODEL, MODEL_KINDS),
    Target("SEBlock", {"c": 16, "r": 4}, {"c": "size", "r": "count"}),
    Target(
        "MBConv",
        {"n_in": 16, "n_out": 16, "expansion": 6, "kernel_size": 3, "stride": 1, "r": 24, "dropout": 0.1},
        {
            "n_in": "size",
            "n_out": "size",
            "expansion": "size",
            "kernel_size": "kernel",
            "stride": "stride",
            "r": "count",
            "dropout": "probability",
        },
    ),
    *(
        Target(
            name,
            {"n_in": 16, "n_out": 16, "kernel_size": 3, "stride": 1, "r": 24, "dropout": 0.1},
            {"n_in": "size", "n_out": "size", "kernel_size": "kernel", "stride": "stride", "dropout": "probability"},
        )
        for name in ("mbconv1", "mbconv6")
    ),
    Target(
        "create_stage",
        {"n_in": 16, "n_out": 16, "num_layers": 2, "kernel_size": 3, "stride": 1, "r": 24, "ps": 0.1},
        {
            "n_in": "size",
            "n_out": "size",
            "num_layers": "size",
            "kernel_size": "kernel",
            "stride": "stride",
            "r": "count",
            "ps": "probability",
        },
    ),
    *(
        Target(
            f"efficientnet_b{i}",
            {},
            {"n_classes": "classes", "drop_rate": "optional_probability", "drop_path_rate": "probability"},
        )
        for i in range(8)
    ),
]


def _cases(target: Target) -> st.SearchStrategy[tuple[str, Any]]:
    def values(arg: str) -> st.SearchStrategy[tuple[str, Any]]:
        return st.tuples(st.just(arg), strategies.invalid_arguments[target.kinds[arg]])

    return st.sampled_from(sorted(target.kinds)).flatmap(values)


def raised(call: Callable[[], Any]) -> Exception | None:
    """The exception `call` raised within the time and memory bounds, or None."""
    try:
        with bounded():
            call()
    except Exception as e:
        return e
    return None


def assert_refused(call: Callable[[], Any], arg: str, value: Any, what: str) -> None:
    error = raised(call)
    assert error is not None, f"{what} was accepted"
    name = type(error).__name__
    assert isinstance(error, (ValueError, TypeError)), f"{what} raised {name}: {error}, not ValueError or TypeError"
    message = str(error)
    assert arg in message, f"{what}: {name} {message!r} does not name the argument {arg!r}"
    assert repr(value) in message or str(value) in message, f"{what}: {name} {message!r} does not show {value!r}"


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_invalid_argument_is_refused_naming_it(impl, target, data):
    if not hasattr(impl, target.name):
        pytest.skip(f"{target.name} is not provided")
    arg, value = data.draw(_cases(target), label="argument, value")
    assert_refused(lambda: target.call(impl, **{arg: value}), arg, value, f"{target.name}({arg}={value!r})")


@pytest.mark.parametrize(
    ("arg", "value"),
    [
        ("ps", [0.1]),
        ("ps", [0.1, 0.2, 0.3]),
        ("ps", [0.1, 1.5]),
        ("ps", [0.1, None]),
        ("ps", "ab"),
        ("layer", "mbconv6"),
    ],
)
def test_create_stage_refuses_a_malformed_schedule_or_layer(impl, arg, value):
    target = next(t for t in TARGETS if t.name == "create_stage")
    assert_refused(lambda: target.call(impl, **{arg: value}), arg, value, f"create_stage({arg}={value!r})")


@pytest.mark.parametrize(
    ("name", "arg", "value"),
    [
        ("EfficientNet", "w_factor", 1e6),
        ("EfficientNet", "d_factor", 1e6),
        ("EfficientNet", "n_classes", 10**10),
        ("EfficientNetSequential", "w_factor", 10**400),
        ("SEBlock", "c", 10**6),
        ("MBConv", "n_in", 10**6),
        ("MBConv", "expansion", 10**9),
        ("MBConv", "kernel_size", 10**5 + 1),
        ("mbconv6", "n_out", 10**8),
        ("create_stage", "num_layers", 10**6),
        ("create_stage", "kernel_size", 10**5 + 1),
    ],
)
def test_too_large_argument_is_refused_before_allocation(impl, name, arg, value):
    """The fuzzing above draws such values too, but not necessarily for every argument."""
    target = next(t for t in TARGETS if t.name == name)
    assert_refused(lambda: target.call(impl, **{arg: value}), arg, value, f"{name}({arg}={value!r})")


@pytest.mark.parametrize("arg", ["w_factor", "d_factor"])
def test_scaling_that_overflows_is_refused(impl, arg):
    """Each factor is finite, but the scaled widths or depths are not (1280 * 1e308 = inf)."""
    value = 1e308
    for target in ("efficientnet_scaler", "EfficientNet"):
        factory = getattr(impl, target)
        assert_refused(lambda factory=factory: factory(**{arg: value}), arg, value, f"{target}({arg}={value!r})")
    assert_refused(lambda: impl.scale_width(1e300, 1e300), "w_factor", 1e300, "scale_width(1e300, 1e300)")


@pytest.mark.parametrize("name", ["EfficientNet", "efficientnet_l2"])
def test_model_over_a_billion_parameters_is_refused_before_allocation(impl, name):
    """L2 itself (480M parameters) is built elsewhere; 1e9 is the limit (EXT-1)."""
    if not hasattr(impl, name):
        pytest.skip(f"{name} is not provided")
    n_classes = 10**6  # L2's 5504 features x 1e6 classes, and b0's 1280 x 1e6
    assert_refused(lambda: getattr(impl, name)(n_classes=n_classes), "n_classes", n_classes, f"{name}(n_classes=10**6)")


# --- Malformed inputs ---------------------------------------------------------------------------
def _bad_shapes() -> st.SearchStrategy[tuple[int, ...]]:
    dim = st.integers(1, 8)
    return st.one_of(
        st.lists(dim, min_size=0, max_size=3).map(tuple),  # too few dimensions
        st.lists(dim, min_size=5, max_size=6).map(tuple),  # too many
        st.tuples(dim, dim.filter(lambda c: c != 3), dim, dim),  # not 3 channels
        st.tuples(dim, st.just(3), st.just(0), dim),  # an empty image
        st.tuples(dim, st.just(3), dim, st.just(0)),
    )


@pytest.fixture(scope="module")
def small_model(impl):
    return impl.EfficientNet(**SMALL_MODEL).eval()


@given(shape=_bad_shapes())
def test_malformed_input_tensor_is_refused(impl, small_model, shape):
    x = torch.zeros(shape)
    methods = ["forward", "forward_stages"] if hasattr(small_model, "forward_stages") else ["forward"]
    for method in methods:
        what = f"EfficientNet.{method}(x of shape {shape})"
        with torch.no_grad():
            error = raised(lambda method=method: getattr(small_model, method)(x))
        assert error is not None, f"{what} was accepted"
        assert isinstance(error, ValueError), f"{what} raised {type(error).__name__}: {error}, not ValueError"
        assert str(tuple(shape)) in str(error), f"{what}: message {str(error)!r} does not show the shape"


@pytest.mark.parametrize("x", [None, [[1.0]], 3.0, "image"], ids=["None", "list", "float", "str"])
def test_input_that_is_not_a_tensor_is_refused(small_model, x):
    with torch.no_grad():
        error = raised(lambda: small_model(x))
    assert error is not None, f"EfficientNet({x!r}) was accepted"
    assert isinstance(error, TypeError), f"EfficientNet({x!r}) raised {type(error).__name__}: {error}, not TypeError"
    assert "Tensor" in str(error), f"message {str(error)!r} does not say that x must be a Tensor"
