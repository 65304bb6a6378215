"""Generated correct rewrites: function-preserving transformations of effnet and of a tutorial-style fork.

Each rewrite is an `ast` transformation that finds its construct by structure, not by text, so the
same rewrite applies to effnet/model.py and to a fork written in the tutorial's style (REWRITES below,
in the order in which they compose; each function's docstring says what it changes).

The bases:

    effnet     effnet/model.py as it is.
    tutorial   the tutorial's own code (tests/forks/tutorial.py extracts it from the seed file; it is not
               part of this repository, and without it this base is left out, saying so), with its five
               known departures from the spec (E-1 to E-4, E-6) fixed by the small patches of
               TUTORIAL_FIXES.  The rest is the tutorial's code and style: `super(SEBlock, self).__init__()`,
               conv_block building a list of layers, nn.SiLU() and nn.AdaptiveAvgPool2d(1) modules,
               named variants written out one function each, no argument checks.  The fork is checked
               like a rewrite (REF-1 against effnet, and the suite), under the name `tutorial` alone.

A tutorial-style fork built from the tutorial rather than from effnet patched by the corpus'
tutorial-style variations: the rewrites must find their constructs in code that effnet's authors did
not write, which is the point of applying them to a second base.

Each (rewrite, base) pair is judged in two runs forked from the preloaded server (tests/mutants/judging.py):

1. REF-1 against the unmodified effnet/model.py (`pytest tests/refactor -x --baseline ORIGINAL`): a
   rewrite REF-1 rejects is not function-preserving, a bug of the rewrite (INVALID), not a verdict
   on the suite.  `--no-refactor-check` skips it (the CI leg does).
2. `pytest tests/conformance -m "not slow" --report OUT` (profile ci).  Expected: accepted, or failing
   only the API clauses whose form the rewrite changes (`api_form` below; none of these changes
   the API's form), named as such.  Anything else is a FALSE POSITIVE of the suite.  (A REF-1 whose
   test fails on a premise, another clause's contract, is reported "undecided", not as a difference.)

The table ends with the acceptance rate: the pairs whose fork the suite accepted, of the pairs
judged (a rewrite that finds no construct in a base is not judged there).

    python tests/mutants/rewrites.py                     # every rewrite on every base (nox -s mutate -- --rewrites)
    python tests/mutants/rewrites.py --sample 4 --seed 1 # a seeded sample of the (rewrite, base) pairs
    python tests/mutants/rewrites.py --list              # the rewrites' diffs, nothing run
    python tests/mutants/rewrites.py --sample 4 --combine  # the sampled rewrites of each base in one fork
    python tests/mutants/rewrites.py -k silu             # the rewrites whose name has "silu" (--only NAME: by name)

It prints a table and each failure's diff, writes reports/generated-rewrites.md and .json, and exits
1 unless every pair is as expected.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import hashlib
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.mutants import corpus, judging

SOURCE = judging.SOURCE
REFACTOR_ARGS = ["tests/refactor", *judging.QUIET, "-x"]
CONFORMANCE_ARGS = [*judging.CONFORMANCE, *judging.QUICK]


class NotApplicable(Exception):  # noqa: N818 - not an error: a fact about the module
    """The rewrite's construct is not in this module (the message says which construct)."""


# --- AST helpers ---------------------------------------------------------------------------------
def _parse(code: str) -> ast.expr:
    return ast.parse(code, mode="eval").body


def _statements(code: str) -> list[ast.stmt]:
    return ast.parse(code).body


def _callee(node: ast.AST) -> str:
    """The last name of a call's function: `nn.SiLU()` -> "SiLU"; "" for anything else."""
    if not isinstance(node, ast.Call):
        return ""
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _is_identity(node: ast.AST) -> bool:
    return _callee(node) == "Identity"


def _function(tree: ast.Module, name: str) -> ast.FunctionDef:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise NotApplicable(f"no module-level function {name}()")


def _class(tree: ast.Module, name: str) -> ast.ClassDef:
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node
    raise NotApplicable(f"no module-level class {name}")


def _method(cls: ast.ClassDef, name: str) -> ast.FunctionDef:
    for node in cls.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise NotApplicable(f"{cls.name} has no method {name}()")


def _insert_before(tree: ast.Module, anchor: ast.stmt, statements: list[ast.stmt]) -> None:
    i = tree.body.index(anchor)
    tree.body[i:i] = statements


def _define_first(tree: ast.Module, code: str) -> None:
    """``code`` (definitions) before the module's first class or function."""
    first = next(n for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef)))
    _insert_before(tree, first, _statements(code))


def _replace_calls(node: ast.AST, make: Callable[[ast.Call], ast.AST | None]) -> int:
    """Every call under ``node`` (innermost first) replaced by ``make(call)`` where that is not None; the count."""

    class Swap(ast.NodeTransformer):
        count = 0

        def visit_Call(self, call: ast.Call) -> ast.AST:
            self.generic_visit(call)
            new = make(call)
            self.count += new is not None
            return call if new is None else new

    swap = Swap()
    swap.visit(node)
    return swap.count


def _bare_silu(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and _callee(node) == "SiLU" and not node.args and not node.keywords


def _layer_sequence(fn: ast.FunctionDef) -> list[ast.expr]:
    """conv_block's layers: the elements of the list literal or of the `nn.Sequential(...)` call that
    holds an `X if cond else nn.Identity()` element."""
    for node in ast.walk(fn):
        elements = node.elts if isinstance(node, ast.List) else node.args if _callee(node) == "Sequential" else None
        if elements and any(isinstance(e, ast.IfExp) and _is_identity(e.orelse) for e in elements):
            return elements  # type: ignore[return-value]
    raise NotApplicable(f"{fn.name}() has no sequence of layers with an `... if ... else nn.Identity()` layer")


# --- The rewrites ----------------------------------------------------------------------------------
def conv_block_without_identity(tree: ast.Module) -> None:
    """conv_block leaves out the layers it would make nn.Identity() (`*([bn_layer] if bn else [])` instead of
    `bn_layer if bn else nn.Identity()`)."""
    layers = _layer_sequence(_function(tree, "conv_block"))
    for i, layer in enumerate(layers):
        if isinstance(layer, ast.IfExp) and _is_identity(layer.orelse):
            kept = ast.IfExp(test=layer.test, body=ast.List([layer.body], ast.Load()), orelse=ast.List([], ast.Load()))
            layers[i] = ast.Starred(kept, ast.Load())  # type: ignore[call-overload]


BATCHNORM_ACT = """
class BatchNormAct2d(nn.BatchNorm2d):
    '''BatchNorm2d that also applies the activation after normalising (timm's BatchNormAct2d).'''

    def __init__(self, *args, act, **kwargs):
        super().__init__(*args, **kwargs)
        self.act = act

    def forward(self, x):
        return self.act(super().forward(x))
"""


def batchnorm_applies_activation(tree: ast.Module) -> None:
    """conv_block's BatchNorm is a BatchNorm2d subclass that also applies the activation (timm's
    BatchNormAct2d); the activation's slot holds nn.Identity()."""
    fn = _function(tree, "conv_block")
    layers = _layer_sequence(fn)
    norm = next((i for i, e in enumerate(layers) if isinstance(e, ast.IfExp) and "BatchNorm" in _callee(e.body)), None)
    if norm is None or norm + 1 >= len(layers) or not isinstance(layers[norm + 1], ast.IfExp):
        raise NotApplicable("conv_block() has no `BatchNorm2d(...) if bn else ...` layer followed by the activation's")
    bn, act = layers[norm], layers[norm + 1]
    assert isinstance(bn, ast.IfExp)
    assert isinstance(bn.body, ast.Call)
    fused = ast.Call(ast.Name("BatchNormAct2d", ast.Load()), bn.body.args, [*bn.body.keywords, ast.keyword("act", act)])
    # Three layers as before, so that every tensor keeps its state_dict name: [conv, BN+act, Identity]
    # with BN, and [conv, Identity, act] without.
    layers[norm] = ast.IfExp(bn.test, fused, bn.orelse)
    layers[norm + 1] = ast.IfExp(bn.test, _parse("nn.Identity()"), act)
    _insert_before(tree, fn, _statements(BATCHNORM_ACT))


SWISH = """
class Swish(nn.Module):
    '''SiLU written out: x * sigmoid(x).'''

    def forward(self, x):
        return x * torch.sigmoid(x)
"""

FUNCTIONAL = """
class Activation(nn.Module):
    '''An activation given as a function of a tensor.'''

    def __init__(self, function):
        super().__init__()
        self.function = function

    def forward(self, x):
        return self.function(x)
"""


def _replace_silu(node: ast.AST, replacement: str) -> int:
    """Every ``SiLU()`` constructed under ``node`` replaced by ``replacement``; the count."""
    return _replace_calls(node, lambda call: _parse(replacement) if _bare_silu(call) else None)


def _silu(tree: ast.Module, replacement: str, definition: str) -> None:
    if not _replace_silu(tree, replacement):
        raise NotApplicable("no SiLU() module is constructed")
    _define_first(tree, definition)


def silu_as_x_sigmoid_x(tree: ast.Module) -> None:
    """every SiLU module is a module computing x * torch.sigmoid(x)."""
    _silu(tree, "Swish()", SWISH)


def silu_functional(tree: ast.Module) -> None:
    """every SiLU module is a generic wrapper around torch.nn.functional.silu."""
    _silu(tree, "Activation(torch.nn.functional.silu)", FUNCTIONAL)


def se_squeeze_inline(tree: ast.Module) -> None:
    """SEBlock's average-pooling squeeze module is gone; forward() computes x.mean((2, 3), keepdim=True) inline
    (only where the squeeze is an average)."""
    cls = _class(tree, "SEBlock")
    init, forward = _method(cls, "__init__"), _method(cls, "forward")
    pool = None
    for stmt in init.body:
        target = stmt.targets[0] if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 else None
        if isinstance(target, ast.Attribute) and _callee(stmt.value).endswith(("AvgPool", "AvgPool2d")):  # type: ignore[union-attr]
            pool = (stmt, target.attr)
    if pool is None:
        raise NotApplicable("SEBlock.__init__ assigns no average-pooling module (AdaptiveAvgPool2d, *AvgPool)")
    statement, attr = pool
    init.body.remove(statement)

    def inline(call: ast.Call) -> ast.AST | None:
        func = call.func
        if isinstance(func, ast.Attribute) and func.attr == attr and len(call.args) == 1:
            return _parse(f"({ast.unparse(call.args[0])}).mean((2, 3), keepdim=True)")
        return None

    count = _replace_calls(forward, inline)
    if count != 1:
        raise NotApplicable(f"SEBlock.forward calls self.{attr}(...) {count} times, not once")


INIT = """
def _init_weights(module):
    '''torchvision's EfficientNet initialisation.'''
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Linear):
        bound = 1.0 / math.sqrt(module.out_features)
        nn.init.uniform_(module.weight, -bound, bound)
        nn.init.zeros_(module.bias)


def _initialised(model):
    model.apply(_init_weights)
    return model
"""


def _at_construction(tree: ast.Module, statement: str, wrap: Callable[[str], str]) -> ast.ClassDef:
    """``statement`` at the end of EfficientNet.__init__, and each value EfficientNetSequential() returns,
    ``v``, replaced by ``wrap(v)`` (source text); the class EfficientNet."""
    cls = _class(tree, "EfficientNet")
    _method(cls, "__init__").body += _statements(statement)
    fn = _function(tree, "EfficientNetSequential")
    returns = [n for n in ast.walk(fn) if isinstance(n, ast.Return) and n.value is not None]
    if not returns:
        raise NotApplicable("EfficientNetSequential() returns nothing")
    for node in returns:
        node.value = _parse(wrap(ast.unparse(node.value)))  # type: ignore[arg-type]
    return cls


def kaiming_init(tree: ast.Module) -> None:
    """EfficientNet and EfficientNetSequential initialise their weights as torchvision does (Kaiming-normal
    convolutions, uniform classifier)."""
    cls = _at_construction(tree, "self.apply(_init_weights)", lambda v: f"_initialised({v})")
    imported = any(
        isinstance(n, ast.Import) and any(a.name == "math" and not a.asname for a in n.names) for n in tree.body
    )
    _insert_before(tree, cls, [*([] if imported else _statements("import math")), *_statements(INIT)])


# --- The rewrites a user makes: memory format, layer forms, in place, dtype, compilation ----------------
def _add_import(tree: ast.Module, statement: str) -> None:
    """``statement`` (an import) after the module's imports, unless the module has it already."""
    new = _statements(statement)[0]
    imports = [i for i, n in enumerate(tree.body) if isinstance(n, (ast.Import, ast.ImportFrom))]
    if any(ast.dump(tree.body[i]) == ast.dump(new) for i in imports):
        return
    first_def = next((i for i, n in enumerate(tree.body) if isinstance(n, (ast.FunctionDef, ast.ClassDef))), 0)
    before = [i for i in imports if i < first_def]
    tree.body.insert(before[-1] + 1 if before else 0, new)


def _import_functional(tree: ast.Module) -> None:
    """torch.nn.functional imported as F, unless a top-level import binds F already."""
    imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    if not any((a.asname or a.name.split(".")[0]) == "F" for node in imports for a in node.names):
        _add_import(tree, "import torch.nn.functional as F")


def _single_target(stmt: ast.stmt) -> ast.expr | None:
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
        return stmt.targets[0]
    if isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
        return stmt.target
    return None


def _self_attribute(node: ast.AST | None) -> str | None:
    """``X`` for ``self.X``, else None."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return node.attr
    return None


def _input_name(fn: ast.FunctionDef) -> str:
    """The name of a method's one input (``forward(self, x)``: "x")."""
    names = [a.arg for a in fn.args.args]
    if len(names) != 2 or fn.args.vararg or fn.args.kwonlyargs:
        raise NotApplicable(f"{fn.name}() does not take one input beside self")
    return names[1]


def _after_leading_checks(body: list[ast.stmt]) -> int:
    """The index after a body's leading docstring and bare calls (argument checks such as effnet's
    `_check_input(x)`): where a statement that changes the input goes."""
    i = 0
    while i < len(body) and isinstance(body[i], ast.Expr):
        i += 1
    return i


def _rewrite_calls(node: ast.AST, attr: str, make: Callable[[ast.expr], ast.expr]) -> int:
    """Replace every one-argument call ``self.<attr>(arg)`` under ``node`` with ``make(arg)``; the count."""

    def one_argument(call: ast.Call) -> ast.AST | None:
        if _self_attribute(call.func) == attr and len(call.args) == 1 and not call.keywords:
            return make(call.args[0])
        return None

    return _replace_calls(node, one_argument)


def inplace_silu(tree: ast.Module) -> None:
    """conv_block's SiLU is nn.SiLU(inplace=True): it overwrites the BN's (or the convolution's) output, which
    their backward does not need."""
    fn = _function(tree, "conv_block")
    if not _replace_silu(fn, "nn.SiLU(inplace=True)"):
        raise NotApplicable("conv_block() constructs no SiLU() module")


SWISH_AUTOGRAD = '''
class SwishFunction(torch.autograd.Function):
    """x * sigmoid(x), its derivative written out: sigmoid(x) * (1 + x * (1 - sigmoid(x)))."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * torch.sigmoid(x)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x)
        return grad_output * (s * (1 + x * (1 - s)))


class SwishAutograd(nn.Module):
    """Swish as a custom autograd.Function."""

    def forward(self, x):
        return SwishFunction.apply(x)
'''


def silu_autograd_function(tree: ast.Module) -> None:
    """every SiLU module applies a hand-written torch.autograd.Function (forward x * sigmoid(x), backward
    written out)."""
    _silu(tree, "SwishAutograd()", SWISH_AUTOGRAD)


def _kernel_and_stride(call: ast.Call) -> tuple[ast.expr | None, ast.expr | None, ast.expr | None]:
    """A Conv2d or conv_block call's kernel_size, stride and padding (positions 3 to 5 in both), None where
    not given."""
    keywords = {k.arg: k.value for k in call.keywords}
    found = []
    for i, name in ((2, "kernel_size"), (3, "stride"), (4, "padding")):
        found.append(call.args[i] if len(call.args) > i else keywords.get(name))
    return found[0], found[1], found[2]


def _is_literal(node: ast.AST | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value == value and type(node.value) is type(value)


def _conv_1x1(node: ast.AST) -> bool:
    """A Conv2d(in, out, 1) call: no stride, padding, groups or dilation, at most a bias keyword."""
    if _callee(node) != "Conv2d" or not isinstance(node, ast.Call):
        return False
    kernel, stride, padding = _kernel_and_stride(node)
    other = [k.arg for k in node.keywords if k.arg not in ("kernel_size", "bias")]
    return _is_literal(kernel, 1) and stride is None and padding is None and not other and len(node.args) <= 3


def se_linear(tree: ast.Module) -> None:
    """SEBlock's two 1x1 convolutions are nn.Linear layers on the flattened squeeze, the gate reshaped
    back to (N, C, 1, 1): the same function and parameter count, weights of shape (rd, c) where timm's
    are (rd, c, 1, 1)."""
    cls = _class(tree, "SEBlock")
    init, forward = _method(cls, "__init__"), _method(cls, "forward")

    def to_linear(call: ast.Call) -> ast.AST | None:
        bias = [k for k in call.keywords if k.arg == "bias"]
        return ast.Call(_parse("nn.Linear"), call.args[:2], bias) if _conv_1x1(call) else None

    holders = []
    for stmt in init.body:
        attr = _self_attribute(_single_target(stmt))
        if attr and any(_conv_1x1(n) for n in ast.walk(stmt.value)):  # type: ignore[union-attr, arg-type]
            holders.append((stmt, attr))
    if len(holders) != 1:
        raise NotApplicable(f"SEBlock.__init__ assigns {len(holders)} attributes holding 1x1 Conv2d layers, not one")
    stmt, attr = holders[0]
    _replace_calls(stmt, to_linear)

    # The squeeze (N, C, 1, 1) flattened to (N, C) for the Linear layers, the gate reshaped back.
    def flattened(arg: ast.expr) -> ast.expr:
        return _parse(f"self.{attr}(({ast.unparse(arg)}).flatten(1))[:, :, None, None]")

    if _rewrite_calls(forward, attr, flattened) != 1:
        raise NotApplicable(f"SEBlock.forward does not call self.{attr}(...) once")


def _global_average(node: ast.AST) -> bool:
    """``AdaptiveAvgPool2d(1)``, or a pooling module of no arguments whose name ends in AvgPool
    (effnet's GlobalAvgPool)."""
    callee = _callee(node)
    if callee == "AdaptiveAvgPool2d":
        return isinstance(node, ast.Call) and len(node.args) == 1 and _is_literal(node.args[0], 1)
    return callee.endswith("AvgPool") and isinstance(node, ast.Call) and not node.args and not node.keywords


def se_functional(tree: ast.Module) -> None:
    """SEBlock keeps only its two convolutions (as attributes); forward() computes F.adaptive_avg_pool2d(x, 1),
    F.silu and torch.sigmoid."""
    cls = _class(tree, "SEBlock")
    init, forward = _method(cls, "__init__"), _method(cls, "forward")
    used = {n.attr for n in ast.walk(cls) if _self_attribute(n)}  # type: ignore[arg-type]
    done = []
    for stmt in list(init.body):
        attr = _self_attribute(_single_target(stmt))
        value = getattr(stmt, "value", None)
        if attr is None or value is None:
            continue
        if _global_average(value):  # the squeeze: F.adaptive_avg_pool2d
            _import_functional(tree)
            init.body.remove(stmt)
            calls = _rewrite_calls(forward, attr, lambda a: _parse(f"F.adaptive_avg_pool2d({ast.unparse(a)}, 1)"))
            done.append(f"squeeze ({calls} call)")
        elif _callee(value) == "Sequential" and len(value.args) == 4 and _callee(value.args[3]) == "Sigmoid":
            # The excitation: its two layers as attributes, the activation and the gate as functions.
            layer1, act, layer2, _ = value.args
            if {"reduce", "expand", "act"} & used:
                raise NotApplicable("SEBlock already has an attribute reduce, expand or act")
            new = [ast.Assign([_parse("self.reduce")], layer1), ast.Assign([_parse("self.expand")], layer2)]
            if _bare_silu(act):
                _import_functional(tree)
                activation = "F.silu"
            else:  # another activation module (a rewritten SiLU): kept as a module
                new.insert(1, ast.Assign([_parse("self.act")], act))
                activation = "self.act"
            i = init.body.index(stmt)
            init.body[i : i + 1] = new  # type: ignore[assignment]

            def excite(a: ast.expr, activation: str = activation) -> ast.expr:
                return _parse(f"torch.sigmoid(self.expand({activation}(self.reduce({ast.unparse(a)}))))")

            calls = _rewrite_calls(forward, attr, excite)
            done.append(f"excitation ({calls} call)")
    if not done or any("(0 call)" in d for d in done):
        raise NotApplicable(
            "SEBlock.__init__ has no global-average squeeze module nor an excitation "
            "nn.Sequential(layer, activation, layer, Sigmoid()) that forward() calls"
        )


POOL_FLATTEN = '''
class GlobalAvgPoolFlatten(nn.Module):
    """Global average pooling and flatten: (N, C, H, W) -> (N, C)."""

    def forward(self, x):
        return x.mean((2, 3))
'''


def pool_flatten_mean(tree: ast.Module) -> None:
    """the head's nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()) is one module computing x.mean((2, 3))."""

    def swap(call: ast.Call) -> ast.AST | None:
        pool_flatten = _callee(call) == "Sequential" and len(call.args) == 2 and _global_average(call.args[0])
        flatten = call.args[-1] if pool_flatten else None
        if isinstance(flatten, ast.Call) and _callee(flatten) == "Flatten" and not (flatten.args or flatten.keywords):
            return _parse("GlobalAvgPoolFlatten()")
        return None

    if not _replace_calls(tree, swap):
        raise NotApplicable("no nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()) is constructed")
    _define_first(tree, POOL_FLATTEN)


def padding_same(tree: ast.Module) -> None:
    """padding='same' where PyTorch allows it: a convolution padded (k - 1) // 2 takes 'same' when its stride is
    1 and k is odd (the depthwise), a 1x1 convolution of stride 1 takes 'same' for its default 0."""
    count = 0
    for fn in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]:
        # A name assigned once in the function stands for its value (the tutorial's `padding = (k-1)//2`).
        assigned: dict[str, list[ast.expr]] = {}
        for node in ast.walk(fn):
            if isinstance(node, ast.Assign):
                for t in node.targets:
                    if isinstance(t, ast.Name):
                        assigned.setdefault(t.id, []).append(node.value)
        for call in [n for n in ast.walk(fn) if _callee(n) in ("conv_block", "Conv2d")]:
            assert isinstance(call, ast.Call)
            kernel, stride, padding = _kernel_and_stride(call)
            if kernel is None:
                continue
            if padding is None:
                # A 1x1 convolution with stride 1 and the default padding 0: 'same' is that padding.
                if _is_literal(kernel, 1) and (stride is None or _is_literal(stride, 1)) and len(call.args) <= 4:
                    call.keywords.append(ast.keyword("padding", ast.Constant("same")))
                    count += 1
                continue
            value = padding
            if isinstance(value, ast.Name) and len(assigned.get(value.id, [])) == 1:
                value = assigned[value.id][0]
            half = ast.BinOp(ast.BinOp(kernel, ast.Sub(), ast.Constant(1)), ast.FloorDiv(), ast.Constant(2))
            if ast.dump(value) != ast.dump(half):
                continue
            # (k - 1) // 2 is 'same' exactly where PyTorch allows 'same': stride 1, and an odd kernel.
            k = ast.unparse(kernel)
            condition = f"{k} % 2 == 1" if stride is None else f"{ast.unparse(stride)} == 1 and {k} % 2 == 1"
            same = _parse(f"'same' if {condition} else {ast.unparse(padding)}")
            if len(call.args) > 4:
                call.args[4] = same
            else:
                next(kw for kw in call.keywords if kw.arg == "padding").value = same
            count += 1
    if not count:
        raise NotApplicable("no convolution with padding (k - 1) // 2, nor a 1x1 convolution of stride 1")


def inplace_residual_add(tree: ast.Module) -> None:
    """MBConv adds its input in place to the branch's output (`out += x`), a tensor no one else needs (BN and
    the drop path do not keep their output)."""
    forward = _method(_class(tree, "MBConv"), "forward")
    x = _input_name(forward)
    inputs = {x}  # the names that hold the block's input at this point
    count = 0

    def holds_input(node: ast.AST | None) -> bool:
        return isinstance(node, ast.Name) and node.id in inputs

    def visit(body: list[ast.stmt]) -> None:
        nonlocal count
        i = 0
        while i < len(body):
            stmt = body[i]
            if isinstance(stmt, ast.If):
                visit(stmt.body)
                visit(stmt.orelse)
            target = _single_target(stmt)
            value = getattr(stmt, "value", None)
            if isinstance(target, ast.Name):
                name = target.id
                added = isinstance(value, ast.BinOp) and isinstance(value.op, ast.Add) and name not in inputs
                if added and holds_input(value.left) != holds_input(value.right):  # the input added once
                    residual, branch = value.left, value.right
                    if not holds_input(residual):
                        residual, branch = branch, residual
                    # `out = branch + x` -> `out = branch; out += x`: the branch's output, which no one
                    # else holds, takes the sum (a + b == b + a in floating point).
                    add = ast.AugAssign(ast.Name(name, ast.Store()), ast.Add(), residual)
                    keep = isinstance(branch, ast.Name) and branch.id == name
                    body[i : i + 1] = [add] if keep else [ast.Assign([ast.Name(name, ast.Store())], branch), add]
                    count += 1
                    i += 1 if keep else 2
                    inputs.discard(name)
                    continue
                if holds_input(value):
                    inputs.add(name)
                else:
                    inputs.discard(name)
            i += 1

    visit(forward.body)
    if count != 1:
        raise NotApplicable(f"MBConv.forward adds its input to a branch {count} times, not once")


def torchvision_stochastic_depth(tree: ast.Module) -> None:
    """the drop path's forward() is torchvision.ops.stochastic_depth(x, p, 'row', training): the same Bernoulli
    draws in the same order."""
    for cls in [n for n in tree.body if isinstance(n, ast.ClassDef)]:
        methods = {n.name: n for n in cls.body if isinstance(n, ast.FunctionDef)}
        forward = methods.get("forward")
        if forward is None or not any(
            isinstance(n, ast.Attribute) and n.attr in ("bernoulli_", "bernoulli") for n in ast.walk(forward)
        ):
            continue
        init = methods.get("__init__")
        if init is None or len(init.args.args) < 2:
            raise NotApplicable(f"{cls.name}, the drop path, takes no probability")
        p = init.args.args[1].arg
        attrs = [
            _self_attribute(_single_target(s))
            for s in init.body
            if any(isinstance(n, ast.Name) and n.id == p for n in ast.walk(getattr(s, "value", ast.Pass())))
        ]
        attrs = [a for a in attrs if a]
        if len(attrs) != 1:
            raise NotApplicable(f"{cls.name}.__init__ does not keep its probability {p} in one attribute")
        x = _input_name(forward)
        doc = forward.body[:1] if isinstance(forward.body[0], ast.Expr) else []
        call = f"return torchvision.ops.stochastic_depth({x}, self.{attrs[0]}, 'row', self.training)"
        forward.body = [*doc, *_statements(call)]
        _add_import(tree, "import torchvision")
        return
    raise NotApplicable("no module whose forward() draws Bernoulli numbers (the drop path)")


def stages_modulelist(tree: ast.Module) -> None:
    """EfficientNet's stages are an nn.ModuleList that forward() runs in a loop (API-3 asks only that `stages`
    has 7 children, stages[i][j] block j: no API form changes)."""
    cls = _class(tree, "EfficientNet")
    init, forward = _method(cls, "__init__"), _method(cls, "forward")
    assigns = [s for s in init.body if _self_attribute(_single_target(s)) == "stages"]
    stmt = next((s for s in assigns if _callee(getattr(s, "value", None)) == "Sequential"), None)
    if stmt is None:
        raise NotApplicable("EfficientNet.__init__ does not assign self.stages = nn.Sequential(...)")
    args = stmt.value.args  # type: ignore[attr-defined]
    items = args[0].value if len(args) == 1 and isinstance(args[0], ast.Starred) else ast.List(args, ast.Load())
    stmt.value = ast.Call(_parse("nn.ModuleList"), [items], [])  # type: ignore[attr-defined]
    names = {n.id for n in ast.walk(forward) if isinstance(n, ast.Name)}
    loop = next(v for v in ("stage", "stage_", "_stage") if v not in names)
    count = 0
    for node in list(ast.walk(forward)):
        body = getattr(node, "body", None)
        if not isinstance(body, list):
            continue
        for i, s in enumerate(body):
            target, value = _single_target(s), getattr(s, "value", None)
            one_call = isinstance(value, ast.Call) and _self_attribute(value.func) == "stages" and len(value.args) == 1
            if isinstance(target, ast.Name) and one_call:  # `t = self.stages(arg)`
                t = target.id
                arg = value.args[0]
                first = [] if isinstance(arg, ast.Name) and arg.id == t else [f"{t} = {ast.unparse(arg)}"]
                loop_code = [*first, f"for {loop} in self.stages:", f"    {t} = {loop}({t})"]
                body[i : i + 1] = _statements("\n".join(loop_code))
                count += 1
                break
    if count != 1:
        raise NotApplicable(f"EfficientNet.forward assigns the result of self.stages(...) {count} times, not once")


def channels_last_weights(tree: ast.Module) -> None:
    """EfficientNet and EfficientNetSequential convert themselves to channels-last at construction
    (`.to(memory_format=torch.channels_last)`)."""
    _at_construction(
        tree, "self.to(memory_format=torch.channels_last)", lambda v: f"({v}).to(memory_format=torch.channels_last)"
    )


def channels_last_input(tree: ast.Module) -> None:
    """EfficientNet's forward() (and forward_stages()) converts its input with
    x.contiguous(memory_format=torch.channels_last)."""
    cls = _class(tree, "EfficientNet")
    methods = [n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name in ("forward", "forward_stages")]
    if not any(m.name == "forward" for m in methods):
        raise NotApplicable("EfficientNet has no method forward()")
    for method in methods:
        x = _input_name(method)
        i = _after_leading_checks(method.body)
        method.body[i:i] = _statements(f"{x} = {x}.contiguous(memory_format=torch.channels_last)")


FLOAT64 = '''
def _compute_dtype(module, x):
    """The dtype a module computes in: its parameters' (float64, as built), else its input's."""
    for t in module.parameters():
        if t.is_floating_point():
            return t.dtype
    return x.dtype


class Float64Sequential(nn.Sequential):
    """nn.Sequential built in float64: it computes in its parameters' dtype and returns its input's."""

    def __init__(self, *args):
        super().__init__(*args)
        self.double()

    def forward(self, x):
        return super().forward(x.to(_compute_dtype(self, x))).to(x.dtype)
'''


def float64_parameters(tree: ast.Module) -> None:
    """The network built in float64: every nn.Sequential is a Float64Sequential and every module class
    with __init__ and forward(self, x) calls self.double(), and each computes in its parameters' dtype
    and returns its input's.  The suite feeds float32 (NUM-1, NUM-2, REF-1, the blocks alone) and float64
    (NUM-3, SEQ-2) and calls the parts on their own: a float32 input gives a float32 output, computed in
    float64, and `.float()` / `.double()` on the model still work (a model that only took float64 would
    not be the tutorial's API, and casting only at the model's boundary would break the parts)."""

    def float64(call: ast.Call) -> ast.AST | None:
        if _callee(call) != "Sequential":
            return None
        call.func = ast.Name("Float64Sequential", ast.Load())
        return call

    sequentials = _replace_calls(tree, float64)
    classes = 0
    for cls in [n for n in tree.body if isinstance(n, ast.ClassDef)]:
        methods = {n.name: n for n in cls.body if isinstance(n, ast.FunctionDef)}
        init, forward = methods.get("__init__"), methods.get("forward")
        if init is None or forward is None:
            continue  # no parameters of its own (a module without __init__)
        try:
            x = _input_name(forward)
        except NotApplicable:
            continue
        init.body += _statements("self.double()")

        class Returns(ast.NodeTransformer):
            """forward()'s own returns cast to the input's dtype (not those of a function defined in it)."""

            def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
                return node

            def visit_Return(self, node: ast.Return) -> ast.AST:
                if node.value is not None:
                    node.value = _parse(f"({ast.unparse(node.value)}).to(_input_dtype)")
                return node

        for statement in forward.body:
            Returns().visit(statement)
        i = _after_leading_checks(forward.body)
        forward.body[i:i] = _statements(f"_input_dtype = {x}.dtype\n{x} = {x}.to(_compute_dtype(self, {x}))")
        classes += 1
    if not sequentials and not classes:
        raise NotApplicable("no nn.Sequential is constructed and no module class has __init__ and forward(self, x)")
    _define_first(tree, FLOAT64)


def compile_blocks(tree: ast.Module) -> None:
    """MBConv.forward is torch.compile'd (inductor, lazily at a block's first call; a class attribute, so that a
    deep copy runs its own parameters), with torch._inductor.config.fallback_random so that the compiled drop
    path draws eager's random numbers.  Dynamo recompiles per block configuration and falls back to eager after
    its recompile limit (8)."""
    cls = _class(tree, "MBConv")
    forward = _method(cls, "forward")
    i = cls.body.index(forward)
    cls.body.insert(i + 1, _statements("forward = torch.compile(forward)")[0])
    _add_import(tree, "import torch._inductor.config")
    _define_first(tree, "torch._inductor.config.fallback_random = True")


@dataclass(frozen=True)
class Rewrite:
    name: str
    apply: Callable[[ast.Module], None]  # its docstring says what it changes
    api_form: tuple[str, ...] = ()  # the API clauses whose form this rewrite changes: it may fail only these


REWRITES = (  # in the order in which they compose (compose() applies them in this order)
    Rewrite("inplace-silu", inplace_silu),
    Rewrite("batchnorm-applies-activation", batchnorm_applies_activation),
    Rewrite("conv-block-without-identity", conv_block_without_identity),
    Rewrite("silu-as-x-sigmoid-x", silu_as_x_sigmoid_x),
    Rewrite("silu-functional", silu_functional),
    Rewrite("silu-autograd-function", silu_autograd_function),
    Rewrite("se-squeeze-inline", se_squeeze_inline),
    Rewrite("se-linear", se_linear),
    Rewrite("se-functional", se_functional),
    Rewrite("pool-flatten-mean", pool_flatten_mean),
    Rewrite("padding-same", padding_same),
    Rewrite("inplace-residual-add", inplace_residual_add),
    Rewrite("torchvision-stochastic-depth", torchvision_stochastic_depth),
    Rewrite("kaiming-init", kaiming_init),
    Rewrite("stages-modulelist", stages_modulelist),
    Rewrite("channels-last-weights", channels_last_weights),
    Rewrite("channels-last-input", channels_last_input),
    Rewrite("float64-parameters", float64_parameters),
    Rewrite("compile-blocks", compile_blocks),
)


def rewrite(source: str, rw: Rewrite) -> str:
    tree = ast.parse(source)
    rw.apply(tree)
    ast.fix_missing_locations(tree)
    text = ast.unparse(tree) + "\n"
    compile(text, f"{rw.name}.py", "exec")
    return text


def compose(source: str, chosen: list[Rewrite]) -> tuple[str, list[str]]:
    """``source`` with the rewrites applied in REWRITES' order (in which they compose), and why each
    rewrite that found no construct (or found it rewritten by an earlier one) was left out."""
    text, skipped = source, []
    for rw in sorted(chosen, key=REWRITES.index):
        try:
            text = rewrite(text, rw)
        except NotApplicable as e:
            skipped.append(f"{rw.name}: {e}")
    return text, skipped


# --- The bases -------------------------------------------------------------------------------------
# The tutorial's five departures (spec/SPEC.md section 9), fixed in its own style.  Each patch must
# match exactly `count` times, like the corpus' (tests/mutants/corpus.py).
STOCHASTIC_DEPTH = '''
class StochasticDepth(nn.Module):
    """Drop the whole residual branch of a sample with probability p (E-2: not element-wise)."""
    def __init__(self, p):
        super(StochasticDepth, self).__init__()
        self.p = p
    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        keep = 1 - self.p
        mask = x.new_empty((x.shape[0], 1, 1, 1)).bernoulli_(keep)
        return x * mask.div_(keep)

def block_rates(scaled_depths, i, drop_path_rate=0.2):
    """The stochastic-depth probabilities of stage i's blocks: rising linearly with the global block index (E-3)."""
    first, total = sum(scaled_depths[:i]), sum(scaled_depths)
    return [drop_path_rate * (first + j) / total for j in range(scaled_depths[i])]

def with_dropout(model, p):
    """The named variant's classifier dropout (E-4)."""
    model.head[0].p = p
    return model

class MBConv(nn.Module):'''

_HEAD = "nn.Linear(scaled_widths[-1], n_classes)"
_VARIANT_DROPOUT = {"1.1, 1.2": 0.3, "1.2, 1.4": 0.3, "1.4, 1.8": 0.4, "1.6, 2.2": 0.4, "1.8, 2.6": 0.5, "2, 3.1": 0.5}
TUTORIAL_FIXES = (
    corpus.Patch("nn.AdaptiveMaxPool2d(1)", "nn.AdaptiveAvgPool2d(1)"),  # E-1
    corpus.Patch("nn.Conv2d(c, c // r, kernel_size=1)", "nn.Conv2d(c, max(1, c // r), kernel_size=1)"),  # E-6
    corpus.Patch("nn.Conv2d(c // r, c, kernel_size=1)", "nn.Conv2d(max(1, c // r), c, kernel_size=1)"),
    corpus.Patch("class MBConv(nn.Module):", STOCHASTIC_DEPTH),  # E-2; E-3's and E-4's helpers
    corpus.Patch("self.dropout = nn.Dropout(dropout)", "self.dropout = StochasticDepth(dropout)"),
    corpus.Patch("ps=ps[i]) for i in range(7)", "ps=block_rates(scaled_depths, i)) for i in range(7)", count=2),
    corpus.Patch(
        "layers = [layer(n_in, n_out,",
        "rates = ps if isinstance(ps, list) else [ps] * num_layers\n    layers = [layer(n_in, n_out,",
    ),
    corpus.Patch("r=r, dropout=ps)]", "r=r, dropout=rates[0])]"),
    corpus.Patch("dropout=ps) for _ in range(num_layers-1)]", "dropout=rates[j]) for j in range(1, num_layers)]"),
    corpus.Patch(f"{_HEAD}\n", f"nn.Dropout(0.2), {_HEAD}\n"),  # E-4
    corpus.Patch(f"nn.Sequential({_HEAD})", f"nn.Sequential(nn.Dropout(0.2), {_HEAD})"),
    *(
        corpus.Patch(
            f"return EfficientNet({factors}, n_classes=n_classes)",
            f"return with_dropout(EfficientNet({factors}, n_classes=n_classes), {p})",
        )
        for factors, p in _VARIANT_DROPOUT.items()
    ),
)


def tutorial_base() -> str | None:
    """The tutorial's code with TUTORIAL_FIXES applied, or None when the tutorial is not at hand."""
    from tests.forks import tutorial

    seed = tutorial.find_seed()
    if seed is None:
        return None
    fixes = corpus.Fork("variation", "tutorial-fixed", "the tutorial, its departures fixed", (), TUTORIAL_FIXES)
    return corpus.apply(fixes, tutorial.extract(seed.read_text()))


def bases() -> dict[str, str]:
    found = {"effnet": SOURCE.read_text()}
    fixed = tutorial_base()
    if fixed is not None:
        found["tutorial"] = fixed
    return found


# --- Judging ---------------------------------------------------------------------------------------
@dataclass
class Verdict:
    rewrite: str  # "" for the base itself
    base: str
    diff: str
    api_form: list[str]
    refactor: str = "not run"  # "same function" | "DIFFERS" | "undecided" (a premise failed) | "not run" | "error"
    difference: str = ""
    outcome: str = "not run"  # "accepted" | "rejected" | "refused at load" | "error" | "timeout" | "not applicable"
    failed: list[str] = field(default_factory=list)  # every failed clause
    roots: list[str] = field(default_factory=list)
    detail: str = ""
    seconds: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.rewrite or '(the base itself)'} on {self.base}"

    @property
    def verdict(self) -> str:
        if self.outcome == "not applicable":
            return "not applicable"
        if self.refactor == "DIFFERS":
            return "INVALID REWRITE (not the same function)"
        if self.outcome == "accepted":
            return "accepted"
        if self.outcome == "rejected" and self.failed and set(self.failed) <= set(self.api_form):
            return f"fails only {', '.join(self.failed)}, the API form it changes"
        return "FALSE POSITIVE" if self.outcome in ("rejected", "refused at load") else self.outcome.upper()

    @property
    def ok(self) -> bool:
        return self.verdict == "accepted" or self.verdict.startswith("fails only") or self.verdict == "not applicable"


def _normalised(text: str) -> str:
    return ast.unparse(ast.parse(text)) + "\n"


def judge(
    item: tuple[str, str], texts: dict[str, str], workdir: Path, args: argparse.Namespace, preload: Any
) -> Verdict:
    rewrite_name, base = item
    chosen = [r for r in REWRITES if r.name in rewrite_name.split("+")]
    result = Verdict(rewrite_name, base, "", sorted({c for r in chosen for c in r.api_form}))
    text, skipped = compose(texts[base], chosen)
    if chosen and len(skipped) == len(chosen):
        result.outcome, result.detail = "not applicable", "; ".join(skipped)
        return result
    if skipped:  # combined: the others were applied, this one found its construct already rewritten
        result.rewrite = "+".join(r.name for r in chosen if not any(x.startswith(f"{r.name}:") for x in skipped))
    before = _normalised(texts[base]) if chosen else texts[base]
    result.diff = "\n".join(
        difflib.unified_diff(before.splitlines(), text.splitlines(), f"a/{base}", f"b/{base}", n=1, lineterm="")
    )
    stem = f"rewrite_{base}_{(rewrite_name or 'base').replace('-', '_').replace('+', '__')}"
    if len(stem) > 120:  # a combination of many: a file name has at most 255 bytes
        stem = f"rewrite_{base}_combined_{len(chosen)}_{hashlib.sha256(rewrite_name.encode()).hexdigest()[:8]}"
    path = workdir / f"{stem}.py"
    path.write_text(f"# {result.name} (tests/mutants/rewrites.py)\n{text}")
    env = {"EFFNET_HYPOTHESIS_PROFILE": args.profile}
    shrink = judging.Order(no_shrink=True)
    start = time.perf_counter()
    if not args.no_refactor_check:
        baseline = ["--baseline", str(workdir / "effnet_original.py")]
        refactor = REFACTOR_ARGS + (["-m", "not slow"] if args.quick_refactor_check else [])
        run = judging.run_fork(
            path, workdir / f"{stem}-refactor", refactor, env=env, timeout=args.timeout, preload=preload,
            order=shrink, extra=baseline,
        )  # fmt: skip
        result.refactor = {"accepted": "same function", "rejected": "DIFFERS"}.get(run.status, "error")
        row = run.report.row("REF-1") if run.report else None
        if run.returncode == 1 and row is not None and row.status == "skipped":
            # Its test failed on a premise (another clause's contract): REF-1 could not compare.
            result.refactor = "undecided"
        if run.returncode != 0:
            result.difference = (" ".join(row.detail.split())[:400] if row else "") or run.tail()
    run = judging.run_fork(
        path, workdir / f"{stem}-conformance", CONFORMANCE_ARGS, env=env, timeout=args.timeout, preload=preload,
        order=shrink,
    )  # fmt: skip
    result.outcome = run.status
    if run.report is not None and run.status in ("accepted", "rejected"):
        result.failed, result.roots = run.report.failed, run.report.root_causes
        result.detail = run.report.detail(*(result.roots or result.failed))
    else:
        result.detail = run.tail(40)
    result.seconds = time.perf_counter() - start
    return result


def acceptance_counts(results: list[Verdict]) -> tuple[int, int]:
    """(accepted, pairs judged): the acceptance rate of the module docstring."""
    judged = [r for r in results if r.outcome != "not applicable"]
    return sum(r.verdict == "accepted" for r in judged), len(judged)


def acceptance(results: list[Verdict]) -> str:
    accepted, pairs = acceptance_counts(results)
    rate = f" ({100 * accepted / pairs:.0f}%)" if pairs else ""
    skipped = len(results) - pairs
    return f"Acceptance rate: {accepted}/{pairs} pairs accepted{rate}" + (
        f", {skipped} not applicable" if skipped else ""
    )


def summary(results: list[Verdict], seconds: float, header: str) -> str:
    lines = [
        header,
        "",
        "| Rewrite | Base | REF-1 against effnet | Verdict | Failed clauses (root causes) | Time (s) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        failed = f"{', '.join(r.failed)} ({', '.join(r.roots)})" if r.failed else ""
        rewritten = r.rewrite or "(the base itself)"
        lines.append(f"| {rewritten} | {r.base} | {r.refactor} | {r.verdict} | {failed} | {r.seconds:.0f} |")
    ok = [r for r in results if r.ok]
    lines += ["", f"{acceptance(results)}; {len(ok)}/{len(results)} as expected in {seconds:.0f} s."]
    for r in results:
        if not r.ok:
            notes = {"REF-1": r.difference, "First failure": r.detail}
            lines += judging.diff_section(f"{r.name}: {r.verdict}", notes, r.diff)
    return "\n".join(lines)


def plan(available: list[str], args: argparse.Namespace) -> list[tuple[str, str]]:
    """The (rewrite, base) pairs to judge: every pair, or a seeded sample; the tutorial base itself first
    when it is among the bases (a rewrite of a fork that fails already proves nothing)."""
    available = [b for b in available if not args.base or b in args.base]
    unknown = set(args.only) - {r.name for r in REWRITES}
    if unknown:
        raise SystemExit(f"--only: no rewrite named {', '.join(sorted(unknown))}")
    chosen = [r for r in REWRITES if (not args.k or any(k in r.name for k in args.k))]
    chosen = [r for r in chosen if not args.only or r.name in args.only]
    pairs = [(r.name, b) for b in available for r in chosen]
    if args.sample is not None:
        random.Random(args.seed).shuffle(pairs)
        pairs = pairs[: args.sample]
    if args.combine:  # one fork per base, every chosen rewrite applied to it
        chosen = {b: "+".join(r for r, base in pairs if base == b) for b in available}
        pairs = [(names, b) for b, names in chosen.items() if names]
    if "tutorial" in available and not args.no_base_check:
        pairs.insert(0, ("", "tutorial"))
    return pairs


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    texts = bases()
    if "tutorial" not in texts:
        print("the tutorial is not at hand (tests/forks/tutorial.py finds no seed file): rewrites of effnet only")
    pairs = plan(list(texts), args)
    if args.list:
        for names, base in pairs:
            chosen = [r for r in REWRITES if r.name in names.split("+")]
            if not chosen:
                print(f"--- the base {base}\n{texts[base]}")
                continue
            text, skipped = compose(texts[base], chosen)
            before = _normalised(texts[base]).splitlines()
            print(f"--- {names} on {base}" + "".join(f"\n(left out: {x})" for x in skipped))
            print("\n".join(difflib.unified_diff(before, text.splitlines(), base, names, n=1, lineterm="")))
        return 0
    with judging.workdir("effnet-rewrites-", args.jobs, args.keep) as workdir:
        (workdir / "effnet_original.py").write_text(texts["effnet"])
        preload = judging.preload_context(args.no_preload, len(pairs))  # accepted rewrites run every test
        print(f"{len(pairs)} (rewrite, base) pairs, {args.jobs} at a time, in {workdir}", flush=True)
        start = time.perf_counter()
        results = judging.judge_all(
            pairs,
            lambda p: judge(p, texts, workdir, args, preload),
            args.jobs,
            lambda r: f"{r.name}: {r.verdict} in {r.seconds:.0f} s",
        )
    seconds = time.perf_counter() - start
    results.sort(key=lambda r: [b for _, b in pairs].index(r.base) + (0.5 if r.rewrite else 0))
    sampled = f"a sample of {args.sample}, seed {args.seed}" if args.sample is not None else "every pair"
    header = f"# Generated rewrites ({sampled}; conformance suite `-m 'not slow'`, hypothesis profile {args.profile})"
    text = summary(results, seconds, header)
    print("\n" + text)
    accepted, judged = acceptance_counts(results)
    payload = {"seconds": round(seconds, 1), "sample": args.sample, "seed": args.seed, "accepted": accepted}
    payload |= {"pairs": judged, "results": [{**asdict(r), "verdict": r.verdict, "ok": r.ok} for r in results]}
    judging.write_reports(Path(args.out), "generated-rewrites", text, payload)
    return 0 if all(r.ok for r in results) else 1


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sample", type=int, help="a seeded sample of this many (rewrite, base) pairs (default: all)")
    p.add_argument("--seed", type=int, default=0, help="the seed of the sample (default 0)")
    p.add_argument("-k", action="append", default=[], metavar="SUBSTRING", help="only rewrites whose name has it")
    p.add_argument(
        "--only", action="append", default=[], metavar="NAME", help="only the rewrite of this name (repeatable)"
    )
    p.add_argument("--base", action="append", choices=("effnet", "tutorial"), help="only this base (repeatable)")
    judging.add_common_options(
        p, "pairs", 1800, "seconds per pytest run (a busy machine is slow)", "generated-rewrites.md and .json"
    )
    p.add_argument(
        "--combine", action="store_true", help="one fork per base with every chosen rewrite applied (the CI leg)"
    )
    p.add_argument("--no-refactor-check", action="store_true", help="skip REF-1 (is each rewrite the same function?)")
    p.add_argument(
        "--quick-refactor-check", action="store_true", help="REF-1 without its slow tests (B3-L2: most of its time)"
    )
    p.add_argument("--no-base-check", action="store_true", help="do not judge the tutorial base itself")
    p.add_argument("--list", action="store_true", help="print the rewrites' diffs and stop")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
