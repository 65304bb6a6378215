"""Load the implementation under test and check what it must define (API-1, API-2) and what it may
(the optional API-5, API-6, API-7).

An implementation is a dotted module name (``effnet``, ``mypkg.effnet``) or a path to a ``.py``
file.  Every way loading it can fail becomes one ``ImplError`` whose message says what is wrong, so
that the suite stops with one clear line instead of a wall of tracebacks.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import inspect
import re
import sys
import sysconfig
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

from tests.support import spec

REQUIRED = object()  # marks a parameter without a default

# API-2: the tutorial's public callables, their parameters in order, and their defaults (``layer=mbconv6``:
# the module's own mbconv6, compared by identity).
_TUTORIAL = {
    "conv_block": (
        "in_channels, out_channels, kernel_size=3, stride=1, padding=0, groups=1, bias=False, bn=True, act=True"
    ),
    "SEBlock": "c, r=24",
    "MBConv": "n_in, n_out, expansion, kernel_size=3, stride=1, r=24, dropout=0.1",
    "mbconv1": "n_in, n_out, kernel_size=3, stride=1, r=24, dropout=0.1",
    "scale_width": "w, w_factor",
    "efficientnet_scaler": "w_factor=1, d_factor=1",
    "create_stage": "n_in, n_out, num_layers, layer=mbconv6, kernel_size=3, stride=1, r=24, ps=0",
    "EfficientNet": "w_factor=1, d_factor=1, n_classes=1000",
    "EfficientNetSequential": "w_factor=1, d_factor=1, n_classes=1000",
    "mbconv6": "n_in, n_out, kernel_size=3, stride=1, r=24, dropout=0.1",
    **{f"efficientnet_b{n}": "n_classes=1000" for n in range(8)},
}


def _parameters(text: str) -> list[tuple[str, Any]]:
    """``"n_in, r=24"`` -> ``[("n_in", REQUIRED), ("r", 24)]``."""
    pairs = [p.partition("=")[::2] for p in text.split(", ")]
    return [(n, REQUIRED if not d else d if d == "mbconv6" else ast.literal_eval(d)) for n, d in pairs]


SIGNATURES: dict[str, list[tuple[str, Any]]] = {name: _parameters(text) for name, text in _TUTORIAL.items()}
TABLES = ("widths", "depths", "kernel_sizes", "strides", "ps")
REQUIRED_NAMES = tuple(SIGNATURES) + TABLES
# The network protocol: a fork that defines at least one of these gets a verdict (the smallest fork is
# one network constructor); every clause is judged from what it defines.
NETWORK_CONSTRUCTORS = ("EfficientNet", *(f"efficientnet_b{n}" for n in range(8)), "EfficientNetSequential")


class ImplError(Exception):
    """The implementation cannot be tested at all; the message says why."""


def load(spec: str) -> ModuleType:
    """Import the implementation named by ``spec`` (module name or .py path); every way that can fail (a syntax
    error, a missing dependency, an exception or ``sys.exit`` at import time) is one ``ImplError``."""
    path = Path(spec)
    try:
        if spec.endswith(".py") or path.is_file():
            return _load_file(spec, path)
        return importlib.import_module(spec)
    except ImplError:
        raise
    except SyntaxError as e:  # IndentationError and TabError too
        line = f": {e.text.strip()}" if e.text and e.text.strip() else ""
        raise ImplError(f"--impl {spec}: {type(e).__name__} in {e.filename}, line {e.lineno}: {e.msg}{line}") from None
    except ModuleNotFoundError as e:
        if e.name and (spec == e.name or spec.startswith(e.name + ".")):
            raise ImplError(f"--impl {spec}: no module named {spec!r} (not a .py file either)") from None
        raise ImplError(f"--impl {spec}: it imports {e.name!r}, which is not installed ({e}){raised_at(e)}") from None
    except (Exception, SystemExit) as e:
        raise ImplError(f"--impl {spec}: importing it raised {type(e).__name__}: {one_line(e)}{raised_at(e)}") from None


def _load_file(spec: str, path: Path) -> ModuleType:
    if not path.is_file():
        raise ImplError(f"--impl {spec}: no such file")
    name = f"_effnet_impl_{abs(hash(str(path.resolve())))}"
    if name in sys.modules:
        return sys.modules[name]
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ImplError(f"--impl {spec}: not a loadable Python file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def one_line(e: BaseException, limit: int = 300) -> str:
    """The exception's message on one line, at most ``limit`` characters."""
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@functools.cache
def _library_dirs() -> tuple[str, ...]:
    paths = [sysconfig.get_paths().get(key) for key in ("stdlib", "platstdlib", "purelib", "platlib")]
    return tuple(str(Path(p).resolve()) for p in paths if p)


def in_library(filename: str) -> bool:
    """Whether ``filename`` is Python's, an installed library's or no file (``<string>``): code that is
    neither the fork's nor the suite's."""
    return filename.startswith("<") or str(Path(filename).resolve()).startswith(_library_dirs())


def raised_at(e: BaseException) -> str:
    """' (at FILE, line N)' for the innermost frame outside Python's and the libraries' own files:
    the fork's line that went wrong, not torch's."""
    frames = traceback.extract_tb(e.__traceback__)
    where = ([f for f in frames if not in_library(f.filename)] or frames or [None])[-1]
    return "" if where is None else f" (at {where.filename}, line {where.lineno})"


# --- What the fork must define (API-1, API-2) ------------------------------------------------------
def lacking(name: str) -> str:
    """Why a test cannot use ``name`` when the implementation does not define it."""
    return f"the implementation lacks {name} (clause API-1)"


def unusable(module: ModuleType) -> dict[str, str]:
    """The tutorial's names that the module lacks (API-1) or defines otherwise (API-2), each with what
    is wrong: the tests that need one of them are not run (``boundary.CheckedImplementation``), and
    every other clause is judged."""
    found: dict[str, str] = {}
    for name in REQUIRED_NAMES:
        if not hasattr(module, name):
            found[name] = lacking(name)
        elif name in SIGNATURES and not callable(getattr(module, name)):
            found[name] = f"{name} is not callable (clause API-1)"
        elif name in SIGNATURES:
            try:
                params = list(inspect.signature(getattr(module, name)).parameters.values())
            except (TypeError, ValueError):
                continue  # a builtin without a signature: let the tests decide
            if problem := signature_problem(module, name, params):
                found[name] = problem
    return found


def api_problems(module: ModuleType) -> list[str]:
    """Everything that stops the module from being the whole of the tutorial's API (API-1, API-2)."""
    found = unusable(module)
    missing = [n for n, why in found.items() if why == lacking(n)]
    problems = [f"lacks required name(s) {', '.join(missing)} (clause API-1)"] if missing else []
    return problems + [why for n, why in found.items() if n not in missing]


def no_network(module: ModuleType) -> str | None:
    """Why the module cannot be judged at all (it defines no usable network constructor), else None."""
    found = unusable(module)
    if any(name not in found for name in NETWORK_CONSTRUCTORS):
        return None
    otherwise = "; ".join(found[n] for n in NETWORK_CONSTRUCTORS if found[n] != lacking(n))
    return (
        "it defines no network constructor: none of EfficientNet(w_factor, d_factor, n_classes), "
        "efficientnet_b0..b7(n_classes), EfficientNetSequential(w_factor, d_factor, n_classes) (clause API-1)"
        + (f"; {otherwise}" if otherwise else "")
    )


def signature_problem(module: ModuleType, name: str, params: list[inspect.Parameter]) -> str | None:
    """API-2: what is wrong with the parameters ``params`` of the module's ``name`` (the tutorial's
    positional parameters, in order, with its defaults; any further one optional), else None."""
    expected = SIGNATURES[name]
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    got = [(p.name, REQUIRED if p.default is p.empty else p.default) for p in positional]
    head = got[: len(expected)]
    ok = len(head) == len(expected) and all(
        gn == en and _same_default(module, gd, ed) for (gn, gd), (en, ed) in zip(head, expected, strict=True)
    )
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    if ok and not any(p.default is p.empty and p.kind not in variadic for p in params[len(expected) :]):
        return None
    return f"{name}{_format(got)} does not match the required signature {name}{_format(expected)} (clause API-2)"


def _format(params: list[tuple[str, Any]]) -> str:
    return "(" + ", ".join(n if d is REQUIRED else f"{n}={d}" for n, d in params) + ")"


def _same_default(module: ModuleType, got: Any, expected: Any) -> bool:
    if expected is REQUIRED or got is REQUIRED:
        return got is expected
    if expected == "mbconv6":
        return got is getattr(module, "mbconv6", None)
    if isinstance(expected, bool) or isinstance(got, bool):
        return got is expected
    return bool(got == expected)


# --- What the fork may define (API-5, API-6, API-7) ---------------------------------------------
# feature -> the optional clause that defines it.  A feature is a module attribute
# ("efficientnet_b8"), an attribute of one ("EfficientNet.forward_stages"), or a keyword
# argument ("drop_rate": of every callable of API-7; "EfficientNet(drop_rate)": of one).
OPTIONAL_FEATURES: dict[str, str] = {
    "efficientnet_b8": "API-5",
    "efficientnet_l2": "API-5",
    "EfficientNet.forward_stages": "API-6",
    "drop_rate": "API-7",
    "drop_path_rate": "API-7",
}
REGULARISATION_KEYWORDS = ("drop_rate", "drop_path_rate")
# API-7: the callables that accept drop_rate and drop_path_rate.
REGULARISATION_CALLABLES = ("EfficientNet", "EfficientNetSequential", *(f"efficientnet_b{n}" for n in range(8)))
_KEYWORD = re.compile(r"^(\w+)\((\w+)\)$")


def optional_missing(module: ModuleType, feature: str) -> str | None:
    """None when ``module`` provides the optional ``feature``, else what it lacks (for a skip reason)."""
    if m := _KEYWORD.match(feature):
        return _lacks_keyword(module, m.group(1), m.group(2))
    if feature in REGULARISATION_KEYWORDS:
        lacking = [n for n in REGULARISATION_CALLABLES if _lacks_keyword(module, n, feature)]
        if len(lacking) == len(REGULARISATION_CALLABLES):
            return f"none of EfficientNet, EfficientNetSequential, efficientnet_b0..b7 accepts {feature!r}"
        return f"{', '.join(lacking)} accept(s) no keyword argument {feature!r}" if lacking else None
    owner: Any = module
    for i, part in enumerate(feature.split(".")):
        if not hasattr(owner, part):
            return f"it has no {'.'.join(feature.split('.')[: i + 1])}"
        owner = getattr(owner, part)
    return None


def _lacks_keyword(module: ModuleType, name: str, keyword: str) -> str | None:
    obj = getattr(module, name, None)
    if obj is None:
        return f"it has no {name}"
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return None  # cannot tell: let the test try
    p = params.get(keyword)
    accepts = (p is not None and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)) or any(
        q.kind is q.VAR_KEYWORD for q in params.values()
    )
    return None if accepts else f"{name} accepts no keyword argument {keyword!r}"


def require_optional(module: ModuleType, feature: str, clause: str | None = None) -> Any:
    """The optional ``feature`` of the implementation, or skip the calling test naming the optional
    clause: ``b8 = require_optional(impl, "efficientnet_b8")``,
    ``require_optional(impl, "EfficientNet.forward_stages")``, ``require_optional(impl, "drop_rate")``
    (every API-7 callable), ``require_optional(impl, "EfficientNet(drop_path_rate)")`` (one callable).

    Returns the attribute (or the callable, for a keyword; None for a bare keyword).  Only a clause
    that SPEC.md marks optional can be skipped this way; anything else is a bug in the test.
    """
    import pytest

    base = m.group(2) if (m := _KEYWORD.match(feature)) else feature
    clause = clause or OPTIONAL_FEATURES.get(base)
    known = spec.clauses()
    if clause is None or clause not in known or not known[clause].optional:
        raise ValueError(f"require_optional({feature!r}, clause={clause!r}): not an optional clause of spec/SPEC.md")
    missing = optional_missing(module, feature)
    if missing:
        pytest.skip(
            f"optional clause {clause} ({known[clause].title.removesuffix(' (optional)')}) not implemented: {missing}"
        )
    if m:
        return getattr(module, m.group(1))
    if base in REGULARISATION_KEYWORDS:
        return None
    return functools.reduce(getattr, feature.split("."), module)
