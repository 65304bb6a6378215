"""Load the implementation under test and check its API (clauses API-1, API-2).

An implementation is a dotted module name (``effnet``, ``mypkg.effnet``) or a path to a
``.py`` file.  Loading problems become one ``ImplError`` whose message says what is wrong,
so that the suite can stop with a single clear line instead of a wall of tracebacks.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

REQUIRED = object()  # marks a parameter without a default

# API-2: the tutorial's public callables, their parameters in order, and their defaults.
SIGNATURES: dict[str, list[tuple[str, Any]]] = {
    "conv_block": [
        ("in_channels", REQUIRED),
        ("out_channels", REQUIRED),
        ("kernel_size", 3),
        ("stride", 1),
        ("padding", 0),
        ("groups", 1),
        ("bias", False),
        ("bn", True),
        ("act", True),
    ],
    "SEBlock": [("c", REQUIRED), ("r", 24)],
    "MBConv": [
        ("n_in", REQUIRED),
        ("n_out", REQUIRED),
        ("expansion", REQUIRED),
        ("kernel_size", 3),
        ("stride", 1),
        ("r", 24),
        ("dropout", 0.1),
    ],
    "mbconv1": [
        ("n_in", REQUIRED),
        ("n_out", REQUIRED),
        ("kernel_size", 3),
        ("stride", 1),
        ("r", 24),
        ("dropout", 0.1),
    ],
    "scale_width": [("w", REQUIRED), ("w_factor", REQUIRED)],
    "efficientnet_scaler": [("w_factor", 1), ("d_factor", 1)],
    "create_stage": [
        ("n_in", REQUIRED),
        ("n_out", REQUIRED),
        ("num_layers", REQUIRED),
        ("layer", "mbconv6"),  # compared by identity with the module's mbconv6
        ("kernel_size", 3),
        ("stride", 1),
        ("r", 24),
        ("ps", 0),
    ],
    "EfficientNet": [("w_factor", 1), ("d_factor", 1), ("n_classes", 1000)],
    "EfficientNetSequential": [("w_factor", 1), ("d_factor", 1), ("n_classes", 1000)],
}
SIGNATURES["mbconv6"] = SIGNATURES["mbconv1"]
for _n in range(8):
    SIGNATURES[f"efficientnet_b{_n}"] = [("n_classes", 1000)]

TABLES = ("widths", "depths", "kernel_sizes", "strides", "ps")
REQUIRED_NAMES = tuple(SIGNATURES) + TABLES
OPTIONAL_NAMES = ("efficientnet_b8", "efficientnet_l2")


class ImplError(Exception):
    """The implementation cannot be tested at all; the message says why."""


def load(spec: str) -> ModuleType:
    """Import the implementation named by ``spec`` (module name or .py path)."""
    path = Path(spec)
    try:
        if spec.endswith(".py") or path.is_file():
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
        return importlib.import_module(spec)
    except ImplError:
        raise
    except SyntaxError as e:
        raise ImplError(f"--impl {spec}: syntax error in {e.filename}, line {e.lineno}: {e.msg}") from None
    except ModuleNotFoundError as e:
        raise ImplError(f"--impl {spec}: cannot import it ({e})") from None
    except Exception as e:
        where = traceback.extract_tb(e.__traceback__)[-1]
        raise ImplError(
            f"--impl {spec}: importing it raised {type(e).__name__}: {e} "
            f"(at {where.filename}, line {where.lineno})"
        ) from None


def _format(params: list[tuple[str, Any]]) -> str:
    return "(" + ", ".join(n if d is REQUIRED else f"{n}={d}" for n, d in params) + ")"


def api_problems(module: ModuleType) -> list[str]:
    """Everything that stops the module from being the tutorial's API (API-1, API-2)."""
    missing = [n for n in REQUIRED_NAMES if not hasattr(module, n)]
    if missing:
        return [f"lacks required name(s) {', '.join(missing)} (clause API-1)"]
    problems = []
    for name, expected in SIGNATURES.items():
        obj = getattr(module, name)
        if not callable(obj):
            problems.append(f"{name} is not callable (clause API-1)")
            continue
        try:
            params = list(inspect.signature(obj).parameters.values())
        except (TypeError, ValueError):
            continue  # a builtin without a signature: let the tests decide
        problems.extend(_signature_problems(module, name, params, expected))
    return problems


def _signature_problems(
    module: ModuleType, name: str, params: list[inspect.Parameter], expected: list[tuple[str, Any]]
) -> list[str]:
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    got = [(p.name, REQUIRED if p.default is p.empty else p.default) for p in positional]
    want = _format(expected)
    head = got[: len(expected)]
    ok = len(head) == len(expected) and all(
        gn == en and _same_default(module, gd, ed) for (gn, gd), (en, ed) in zip(head, expected, strict=True)
    )
    extra_required = [p.name for p in params[len(expected) :] if p.default is p.empty and p.kind not in (
        p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if not ok or extra_required:
        return [f"{name}{_format(got)} does not match the required signature {name}{want} (clause API-2)"]
    return []


def _same_default(module: ModuleType, got: Any, expected: Any) -> bool:
    if expected is REQUIRED or got is REQUIRED:
        return got is expected
    if expected == "mbconv6":
        return got is getattr(module, "mbconv6", None)
    if isinstance(expected, bool) or isinstance(got, bool):
        return got is expected
    return bool(got == expected)
