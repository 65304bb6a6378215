"""The implementation's values, checked where they enter the suite.

The ``impl`` fixture (tests/support/plugin.py) hands the tests ``checked(module)``: the
implementation seen through a view whose constructors (those of ``CONTRACTS``) check what they
return before the test sees it, and attach a check of the forward's output to the module they
return.  Every other name is the module's own object.  Each check is a contract of the clause that
defines the value (docs/architecture.md, a verdict's step 2; ``CONTRACTS``).  The ``state_dict`` may
hold tensors of any dtype (API-4): a model kept in float64 that returns its input's dtype computes
the same function.

A value that breaks its contract raises ``BoundaryViolation``, blamed (``evidence.blame``) on that
clause and naming what was returned, before any of the suite's code uses it: so a fork whose
forward returns ``(logits, features)`` fails ARCH-6 instead of breaking a helper with an
``AttributeError`` (which ``evidence.suite_error`` would count as a bug of the suite).

Costs and limits.  Only the module a constructor returns gets a hook (one per built model, not one
per layer), and the output check is a few comparisons and one ``isfinite`` over the output; on the
meta device finiteness cannot be read and is not checked.  The implementation's own code is
unchanged: its functions call its own names (``create_stage``'s default ``layer`` is the module's
``mbconv6``, compared by identity in API-2), and a view's constructor given to another one as an
argument (``create_stage(..., layer=impl.mbconv1)``) is passed on as the module's own function
(``unchecked``).  effnet's extras (tests/extras) get the module as it is (plugin.py's ``impl`` says why).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from tests.support import loader
from tests.support.evidence import blame


class BoundaryViolation(BaseException):
    """A value the implementation returned breaks the contract of the clause it is blamed on.

    A BaseException, as ``evidence.Undecided``: no ``except Exception`` of the suite (a fallback from
    the meta device to the CPU, a shape pass that records the forward's error, a test that turns a
    constructor's exception into its own failure) and no hypothesis property takes it for something
    else, and ``evidence.suite_error`` never counts it as an error of the suite.  A property stops at
    the first example that shows it, unshrunk: the message names the call and what it returned."""


def violation(clause: str, message: str) -> None:
    """Raise a ``BoundaryViolation`` blamed on ``clause``."""
    with blame(clause):
        raise BoundaryViolation(f"{message} (clause {clause})")


# --- What each constructor's module must return --------------------------------------------------
Shape = tuple[int | None, ...]  # None: a dimension the contract does not fix


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _convolved(x: tuple[int, ...], channels: int | None, k: int | None, s: int | None, p: int | None) -> Shape:
    """``(N, channels, H', W')`` of a 2-d convolution of kernel ``k``, stride ``s`` and padding ``p``
    (ARCH-6's formula), a free size where one of them is not an integer."""
    if k is None or s is None or p is None or s < 1:
        return (x[0], channels, *(None for _ in x[2:]))
    return (x[0], channels, *((n + 2 * p - k) // s + 1 for n in x[2:]))


def _conv_block(a: dict[str, Any], x: tuple[int, ...]) -> Shape:
    return _convolved(x, _int(a.get("out_channels")), *(_int(a.get(n)) for n in ("kernel_size", "stride", "padding")))


def _mbconv(a: dict[str, Any], x: tuple[int, ...]) -> Shape:
    k = _int(a.get("kernel_size"))
    return _convolved(x, _int(a.get("n_out")), k, _int(a.get("stride")), None if k is None else (k - 1) // 2)


@dataclass(frozen=True)
class Contract:
    """The forward's contract of one constructor's modules: the clause of its output (type, dtype,
    device, shape), the clause its function breaks where it turns a finite input into a non-finite
    output (``None``: the network's NUM-1, or NUM-2 where a layer trains), and its shape for an
    input of a shape (from the constructor's arguments, by name: API-2's signatures)."""

    output: str
    shape: Callable[[dict[str, Any], tuple[int, ...]], Shape]
    function: str | None = None
    what: str = ""  # what the output is, for the message
    dims: int = 4  # the input's dimensions the shape rule needs


NETWORK = Contract("ARCH-6", lambda a, x: (x[0], _int(a.get("n_classes"))), what="the logits")
MBCONV = Contract("BLOCK-3", _mbconv, "BLOCK-3")
CONTRACTS: dict[str, Contract] = {
    "conv_block": Contract("BLOCK-1", _conv_block, "BLOCK-1"),
    "SEBlock": Contract("SE-2", lambda a, x: x, "SE-2", dims=0),  # the input's shape
    "MBConv": MBCONV,
    "mbconv1": MBCONV,
    "mbconv6": MBCONV,
    "create_stage": Contract("ARCH-3", lambda a, x: (x[0], _int(a.get("n_out")), None, None), "ARCH-3"),
    "EfficientNet": NETWORK,
    "EfficientNetSequential": NETWORK,
    **{f"efficientnet_b{n}": NETWORK for n in range(9)},
    "efficientnet_l2": NETWORK,
}


# --- Describing what was returned -----------------------------------------------------------------
def describe(value: object, depth: int = 0) -> str:
    """What a value is, in a few words: ``a tuple of 2 (Tensor (2, 10) float32, Tensor ...)``."""
    if isinstance(value, Tensor):
        return f"Tensor {tuple(value.shape)} {str(value.dtype).removeprefix('torch.')} on {value.device}"
    if inspect.isclass(value):
        return f"the class {value.__qualname__}"
    if inspect.isfunction(value) or inspect.isbuiltin(value) or inspect.ismethod(value):
        return f"the function {value.__qualname__}"
    if isinstance(value, tuple | list) and depth == 0:
        items = ", ".join(describe(v, 1) for v in value[:3]) + (", ..." if len(value) > 3 else "")
        return f"a {type(value).__name__} of {len(value)} ({items})"
    if isinstance(value, dict) and depth == 0:
        keys = ", ".join(repr(k) for k in list(value)[:5]) + (", ..." if len(value) > 5 else "")
        return f"a {type(value).__name__} with keys {keys}"
    if value is None:
        return "None"
    if callable(value) and not isinstance(value, nn.Module):
        return f"a callable {type(value).__name__}"
    text = repr(value)
    return f"a {type(value).__name__}" + (f" {text}" if len(text) <= 40 else "")


def _argument(value: object) -> str:
    if callable(value) and hasattr(value, "__name__"):
        return str(value.__name__)
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def call_text(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """``EfficientNet(0.25, 0.34, 10)``: the call as the test made it."""
    parts = [_argument(a) for a in args] + [f"{k}={_argument(v)}" for k, v in kwargs.items()]
    return f"{name}({', '.join(parts)})"


def _shape_text(shape: Shape) -> str:
    return "(" + ", ".join("*" if n is None else str(n) for n in shape) + ("," if len(shape) == 1 else "") + ")"


# --- The checks ----------------------------------------------------------------------------------
def tensors_problem(module: nn.Module) -> str | None:
    """API-4: the ``state_dict`` holds only tensors (a module's extra state may be anything)."""
    if any(type(m).get_extra_state is not nn.Module.get_extra_state for m in module.modules()):
        for key, value in module.state_dict().items():
            if not isinstance(value, Tensor):
                return f"its state_dict entry {key} is {describe(value)}, not a tensor"
    return None


def _capturing() -> bool:
    """A graph capture (TorchScript's tracer, dynamo) runs the forward: nothing to check there."""
    return bool(torch.jit.is_tracing() or torch.compiler.is_compiling())


def _autocast(x: Tensor) -> bool:
    try:
        return x.device.type in ("cpu", "cuda") and torch.is_autocast_enabled(x.device.type)
    except (RuntimeError, TypeError):
        return False


def output_check(call: str, contract: Contract, arguments: dict[str, Any] | None) -> Callable[..., None]:
    """The forward hook (``with_kwargs=True``) that holds ``call``'s module to ``contract``.  A
    closure over plain values: a deep copy of the module shares it."""

    def check(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        if _capturing():
            return
        x = args[0] if args else next(iter(kwargs.values()), None)

        def returned() -> str:
            given = f" for x {describe(x)}" if isinstance(x, Tensor) else ""
            return f"{call}(x) returned {describe(out)}{given}"

        if not isinstance(out, Tensor):
            violation(
                contract.output, f"{returned()}, not one Tensor" + (f" ({contract.what})" if contract.what else "")
            )
        if not isinstance(x, Tensor):
            return
        if out.dtype != x.dtype and not _autocast(x):
            violation(contract.output, f"{returned()}: not the input's dtype")
        if out.device != x.device:
            violation(contract.output, f"{returned()}: not on the input's device")
        if arguments is not None and x.dim() >= contract.dims:
            want = contract.shape(arguments, tuple(x.shape))
            got = tuple(out.shape)
            if len(got) != len(want) or any(w is not None and g != w for g, w in zip(got, want, strict=False)):
                violation(contract.output, f"{returned()}, want shape {_shape_text(want)}")
        if out.is_meta or x.is_meta or bool(torch.isfinite(out).all()) or not bool(torch.isfinite(x).all()):
            return  # finite (unknown on the meta device), or a non-finite input: nothing is promised
        training = any(m.training for m in module.modules())
        clause = contract.function or ("NUM-2" if training else "NUM-1")
        mode = "training" if training else "eval"
        nan, inf = int(torch.isnan(out).sum()), int(torch.isinf(out).sum())
        violation(
            clause,
            f"{call}(x) in {mode} mode returned {nan} NaN and {inf} infinite values of {out.numel()} "
            f"for a finite input x {describe(x)}",
        )

    return check


# --- The view ------------------------------------------------------------------------------------
class Constructor:
    """One of the implementation's constructors, checked: calls the module's own callable (given
    the module's own functions where the caller passed a view's), checks what it returned, and
    attaches the output check to the returned module.  Everything else (its signature through
    ``__wrapped__``, its attributes, ``isinstance`` with a class) is the module's own callable's."""

    def __init__(self, name: str, raw: Callable[..., Any]) -> None:
        self.__wrapped__ = raw
        self.__doc__ = raw.__doc__
        self._name = name
        self._contract = CONTRACTS[name]

    def __getattr__(self, attribute: str) -> Any:
        wrapped = vars(self).get("__wrapped__")
        if wrapped is None:  # not initialised (a copy being made)
            raise AttributeError(attribute)
        return getattr(wrapped, attribute)

    def __repr__(self) -> str:
        return repr(self.__wrapped__)

    def __instancecheck__(self, obj: object) -> bool:
        return inspect.isclass(self.__wrapped__) and isinstance(obj, self.__wrapped__)

    def __subclasscheck__(self, cls: type) -> bool:
        return inspect.isclass(self.__wrapped__) and issubclass(cls, self.__wrapped__)

    @functools.cached_property
    def _signature(self) -> inspect.Signature | None:
        try:
            return inspect.signature(self.__wrapped__)
        except (TypeError, ValueError):
            return None

    def _arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any] | None:
        """The call's arguments by name, defaults included (None where they do not bind)."""
        if self._signature is None:
            return None
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError:
            return None
        bound.apply_defaults()
        return dict(bound.arguments)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        args = tuple(unchecked(a) for a in args)
        kwargs = {k: unchecked(v) for k, v in kwargs.items()}
        built = self.__wrapped__(*args, **kwargs)
        call = call_text(self._name, args, kwargs)
        if not isinstance(built, nn.Module):
            violation("API-2", f"{call} returned {describe(built)}, not an nn.Module")
        problem = tensors_problem(built)
        if problem:
            violation("API-4", f"{call}: {problem}")
        built.register_forward_hook(output_check(call, self._contract, self._arguments(args, kwargs)), with_kwargs=True)
        return built


class CheckedImplementation(ModuleType):
    """The implementation under test as the tests see it: its constructors checked (``Constructor``),
    every other attribute the module's own."""

    def __init__(self, module: ModuleType, unusable: dict[str, str]) -> None:
        super().__init__(module.__name__, module.__doc__)
        for attribute in ("__file__", "__spec__", "__package__", "__loader__"):
            if hasattr(module, attribute):
                setattr(self, attribute, getattr(module, attribute))
        vars(self)["_effnet_unchecked"] = module
        vars(self)["_effnet_constructors"] = {}
        vars(self)["_effnet_unusable"] = dict(unusable)

    def __getattr__(self, name: str) -> Any:
        module = vars(self)["_effnet_unchecked"]
        if why := vars(self)["_effnet_unusable"].get(name):
            # Judge what is there: a test that needs a name the fork lacks (or defines otherwise) is not
            # run, undecided for its clauses; API-1/API-2 fail on the name itself.
            pytest.skip(f"undecided: needs {name}: {why}")
        value = getattr(module, name)
        if name not in CONTRACTS or not callable(value):
            return value
        cache: dict[str, Constructor] = vars(self)["_effnet_constructors"]
        if name not in cache or cache[name].__wrapped__ is not value:
            cache[name] = Constructor(name, value)
        return cache[name]

    def __dir__(self) -> list[str]:
        return dir(vars(self)["_effnet_unchecked"])

    def __repr__(self) -> str:
        return repr(vars(self)["_effnet_unchecked"])


_VIEWS: dict[int, CheckedImplementation] = {}


def checked(module: ModuleType, unusable: dict[str, str] | None = None) -> CheckedImplementation:
    """The checked view of ``module`` (one per module), through which the tests that need a name of
    ``unusable`` (name: why; ``loader.unusable``) are not run."""
    if isinstance(module, CheckedImplementation):
        return module
    view = _VIEWS.get(id(module))
    if view is None or vars(view)["_effnet_unchecked"] is not module:
        view = _VIEWS[id(module)] = CheckedImplementation(module, unusable or {})
    return view


def lacks(view: Any, name: str) -> str | None:
    """Why the tests cannot use the implementation's ``name`` (it lacks it, or defines it otherwise:
    ``loader.unusable``), else None."""
    if isinstance(view, CheckedImplementation):
        why: str | None = vars(view)["_effnet_unusable"].get(name)
        return why
    return None if hasattr(view, name) else loader.lacking(name)


def unchecked(value: Any) -> Any:
    """The module's own object behind a view or a view's constructor; anything else as it is."""
    if isinstance(value, Constructor):
        return value.__wrapped__
    if isinstance(value, CheckedImplementation):
        return vars(value)["_effnet_unchecked"]
    return value
