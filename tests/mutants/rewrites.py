"""Generated correct rewrites: function-preserving transformations of effnet and of a tutorial-style fork.

Each rewrite is an `ast` transformation that finds its construct by structure, not by text, so the
same rewrite applies to effnet/model.py and to a fork written in the tutorial's style:

    conv-block-without-identity   conv_block leaves out the layers it would make nn.Identity()
                                  (`*([bn_layer] if bn else [])` instead of `bn_layer if bn else nn.Identity()`)
    batchnorm-applies-activation  conv_block's BatchNorm is a BatchNorm2d subclass that also applies the
                                  activation (timm's BatchNormAct2d); the activation's slot holds nn.Identity()
    silu-as-x-sigmoid-x           every SiLU module is a module computing x * torch.sigmoid(x)
    silu-functional               every SiLU module is a generic wrapper around torch.nn.functional.silu
    se-squeeze-inline             SEBlock's average-pooling squeeze module is gone; forward() computes
                                  x.mean((2, 3), keepdim=True) inline (only where the squeeze is an average)
    kaiming-init                  EfficientNet and EfficientNetSequential initialise their weights as
                                  torchvision does (Kaiming-normal convolutions, uniform classifier)

The bases:

    effnet     effnet/model.py as it is.
    tutorial   the tutorial's own code (tests/forks/tutorial.py extracts it from the seed file; it is not
               part of this repository, and without it this base is left out, saying so), with its five
               known departures from the spec fixed by the small patches of TUTORIAL_FIXES: the SE
               squeezes by average (E-1) to at least one channel (E-6), the residual branch is dropped per
               sample (E-2), with the per-block linear schedule (E-3), and the classifier has its dropout
               (E-4).  The rest is the tutorial's code and style: `super(SEBlock, self).__init__()`,
               conv_block building a list of layers, nn.SiLU() and nn.AdaptiveAvgPool2d(1) modules,
               named variants written out one function each, no argument checks.  The fork is checked
               like a rewrite (REF-1 against effnet, and the suite), under the name `tutorial` alone.

A tutorial-style fork built from the tutorial rather than from effnet patched by the corpus'
tutorial-style variations: the rewrites must find their constructs in code that effnet's authors did
not write, which is the point of applying them to a second base.

Each (rewrite, base) pair is judged in two runs forked from run.py's preloaded server:

1. REF-1 against the unmodified effnet/model.py (`pytest tests/refactor -x --baseline ORIGINAL`): a
   rewrite REF-1 rejects is not function-preserving, a bug of the rewrite (INVALID), not a verdict
   on the suite.  `--no-refactor-check` skips it (the CI leg does).
2. `pytest tests/conformance -m "not slow" --report OUT` (profile ci).  Expected: accepted, or failing
   only the API clauses whose form the rewrite changes (`api_form` below; none of these rewrites
   changes the API's form), named as such.  Anything else is a FALSE POSITIVE of the suite.

    python tests/mutants/rewrites.py                     # every rewrite on every base (nox -s mutate -- --rewrites)
    python tests/mutants/rewrites.py --sample 4 --seed 1 # a seeded sample of the (rewrite, base) pairs
    python tests/mutants/rewrites.py --list              # the rewrites' diffs, nothing run
    python tests/mutants/rewrites.py --sample 4 --combine  # the sampled rewrites of each base in one fork

It prints a table and each failure's diff, writes reports/generated-rewrites.md and .json, and exits
1 unless every pair is as expected.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.mutants import corpus, run

ROOT = run.ROOT
SOURCE = ROOT / "effnet" / "model.py"
REFACTOR_ARGS = ["tests/refactor", "-q", "-p", "no:cacheprovider", "-x"]
CONFORMANCE_ARGS = ["tests/conformance", "-q", "-p", "no:cacheprovider", "-m", "not slow"]


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


class _ReplaceSiLU(ast.NodeTransformer):
    def __init__(self, replacement: str) -> None:
        self.replacement, self.count = replacement, 0

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        if _callee(node) == "SiLU" and not node.args:
            self.count += 1
            return _parse(self.replacement)
        return node


def _silu(tree: ast.Module, replacement: str, definition: str) -> None:
    swap = _ReplaceSiLU(replacement)
    swap.visit(tree)
    if not swap.count:
        raise NotApplicable("no SiLU() module is constructed")
    first = next(n for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef)))
    _insert_before(tree, first, _statements(definition))


def silu_as_x_sigmoid_x(tree: ast.Module) -> None:
    _silu(tree, "Swish()", SWISH)


def silu_functional(tree: ast.Module) -> None:
    _silu(tree, "Activation(torch.nn.functional.silu)", FUNCTIONAL)


def se_squeeze_inline(tree: ast.Module) -> None:
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

    class Inline(ast.NodeTransformer):
        count = 0

        def visit_Call(self, node: ast.Call) -> ast.AST:
            self.generic_visit(node)
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr == attr and len(node.args) == 1:
                self.count += 1
                return _parse(f"({ast.unparse(node.args[0])}).mean((2, 3), keepdim=True)")
            return node

    inline = Inline()
    inline.visit(forward)
    if inline.count != 1:
        raise NotApplicable(f"SEBlock.forward calls self.{attr}(...) {inline.count} times, not once")


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


def kaiming_init(tree: ast.Module) -> None:
    cls = _class(tree, "EfficientNet")
    _method(cls, "__init__").body += _statements("self.apply(_init_weights)")
    fn = _function(tree, "EfficientNetSequential")
    returns = [n for n in ast.walk(fn) if isinstance(n, ast.Return) and n.value is not None]
    if not returns:
        raise NotApplicable("EfficientNetSequential() returns nothing")
    for node in returns:
        node.value = ast.Call(ast.Name("_initialised", ast.Load()), [node.value], [])
    imported = any(
        isinstance(n, ast.Import) and any(a.name == "math" and not a.asname for a in n.names) for n in tree.body
    )
    _insert_before(tree, cls, [*([] if imported else _statements("import math")), *_statements(INIT)])


@dataclass(frozen=True)
class Rewrite:
    name: str
    description: str
    apply: Callable[[ast.Module], None]
    api_form: tuple[str, ...] = ()  # the API clauses whose form this rewrite changes: it may fail only these


REWRITES = (
    Rewrite(
        "batchnorm-applies-activation",
        "conv_block's BatchNorm is a BatchNorm2d subclass that applies the activation",
        batchnorm_applies_activation,
    ),
    Rewrite(
        "conv-block-without-identity",
        "conv_block leaves out the layers it would make nn.Identity()",
        conv_block_without_identity,
    ),
    Rewrite("silu-as-x-sigmoid-x", "every SiLU module computes x * torch.sigmoid(x)", silu_as_x_sigmoid_x),
    Rewrite("silu-functional", "every SiLU module wraps torch.nn.functional.silu", silu_functional),
    Rewrite("se-squeeze-inline", "SEBlock squeezes with x.mean((2, 3), keepdim=True) inline", se_squeeze_inline),
    Rewrite("kaiming-init", "the networks are initialised as torchvision's (Kaiming-normal)", kaiming_init),
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
    refactor: str = "not run"  # "same function" | "DIFFERS" | "not run" | "error"
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
    path = workdir / f"{stem}.py"
    path.write_text(f"# {result.name} (tests/mutants/rewrites.py)\n{text}")
    env = {"EFFNET_HYPOTHESIS_PROFILE": args.profile, "EFFNET_NO_SHRINK": "1"}
    start = time.perf_counter()
    if not args.no_refactor_check:
        report = workdir / f"{stem}-refactor"
        cmd = [
            *REFACTOR_ARGS,
            "-p",
            "tests.mutants.order",
            "--impl",
            str(path),
            "--baseline",
            str(workdir / "effnet_original.py"),
        ]
        code, _, _ = run.run_pytest(
            [*cmd, "--report", str(report)], report.with_suffix(".log"), env, args.timeout, preload
        )
        result.refactor = {0: "same function", 1: "DIFFERS"}.get(-1 if code is None else code, "error")
        if code != 0:
            result.difference = _first_detail(report, "REF-1") or _tail(report.with_suffix(".log"))
    report = workdir / f"{stem}-conformance"
    cmd = [*CONFORMANCE_ARGS, "-p", "tests.mutants.order", "--impl", str(path), "--report", str(report)]
    code, _, _ = run.run_pytest(cmd, report.with_suffix(".log"), env, args.timeout, preload)
    output = _tail(report.with_suffix(".log"), 40)
    if code in (0, 1) and report.with_suffix(".json").exists():
        payload = json.loads(report.with_suffix(".json").read_text())
        result.outcome = "accepted" if code == 0 else "rejected"
        result.failed = [r["clause"] for r in payload["clauses"] if r["status"] == "FAILED"]
        result.roots = list(payload.get("root_causes", []))
        result.detail = _first_detail(report, *(result.roots or result.failed)) or ""
    elif code == 4:
        result.outcome, result.detail = "refused at load", output
    else:
        result.outcome, result.detail = ("timeout" if code is None else "error"), output
    result.seconds = time.perf_counter() - start
    return result


def _first_detail(report: Path, *clauses: str) -> str:
    path = report.with_suffix(".json")
    if not path.exists():
        return ""
    rows = [r for r in json.loads(path.read_text())["clauses"] if r["clause"] in clauses and r["status"] == "FAILED"]
    return " ".join(str(rows[0]["detail"]).split())[:400] if rows else ""


def _tail(log: Path, lines: int = 15) -> str:
    return "\n".join(log.read_text(errors="replace").strip().splitlines()[-lines:]) if log.exists() else ""


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
    lines += ["", f"{len(ok)}/{len(results)} as expected in {seconds:.0f} s."]
    for r in results:
        if not r.ok:
            lines += ["", f"### {r.name}: {r.verdict}", ""]
            if r.difference:
                lines += [f"REF-1: {r.difference}", ""]
            if r.detail:
                lines += [f"First failure: {r.detail}", ""]
            lines += ["```diff", r.diff, "```"]
    return "\n".join(lines)


def plan(available: list[str], args: argparse.Namespace) -> list[tuple[str, str]]:
    """The (rewrite, base) pairs to judge: every pair, or a seeded sample; the tutorial base itself first
    when it is among the bases (a rewrite of a fork that fails already proves nothing)."""
    available = [b for b in available if not args.base or b in args.base]
    pairs = [(r.name, b) for b in available for r in REWRITES if not args.k or any(k in r.name for k in args.k)]
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
    workdir = Path(tempfile.mkdtemp(prefix="effnet-rewrites-"))
    (workdir / "effnet_original.py").write_text(texts["effnet"])
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // args.jobs)))
    preload = run.preload_context(args.no_preload, len(pairs))  # accepted rewrites run every test
    print(f"{len(pairs)} (rewrite, base) pairs, {args.jobs} at a time, in {workdir}", flush=True)
    start = time.perf_counter()
    results: list[Verdict] = []
    try:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = [pool.submit(judge, p, texts, workdir, args, preload) for p in pairs]
            for n, future in enumerate(as_completed(futures), 1):
                r = future.result()
                results.append(r)
                print(f"[{n:>2}/{len(pairs)}] {r.name}: {r.verdict} in {r.seconds:.0f} s", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    seconds = time.perf_counter() - start
    results.sort(key=lambda r: [b for _, b in pairs].index(r.base) + (0.5 if r.rewrite else 0))
    sampled = f"a sample of {args.sample}, seed {args.seed}" if args.sample is not None else "every pair"
    header = f"# Generated rewrites ({sampled}; conformance suite `-m 'not slow'`, hypothesis profile {args.profile})"
    text = summary(results, seconds, header)
    print("\n" + text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "generated-rewrites.md").write_text(text + "\n")
    payload = {"seconds": round(seconds, 1), "sample": args.sample, "seed": args.seed, "results": []}
    payload["results"] = [{**asdict(r), "verdict": r.verdict, "ok": r.ok} for r in results]
    (out / "generated-rewrites.json").write_text(json.dumps(payload, indent=1) + "\n")
    return 0 if all(r.ok for r in results) else 1


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sample", type=int, help="a seeded sample of this many (rewrite, base) pairs (default: all)")
    p.add_argument("--seed", type=int, default=0, help="the seed of the sample (default 0)")
    p.add_argument("-k", action="append", default=[], metavar="SUBSTRING", help="only rewrites whose name has it")
    p.add_argument("--base", action="append", choices=("effnet", "tutorial"), help="only this base (repeatable)")
    p.add_argument("--jobs", "-j", type=int, default=2, help="pairs at a time (default 2)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per pytest run (a busy machine is slow)")
    p.add_argument("--profile", default=os.environ.get("EFFNET_HYPOTHESIS_PROFILE", "ci"), help="hypothesis profile")
    p.add_argument(
        "--combine", action="store_true", help="one fork per base with every chosen rewrite applied (the CI leg)"
    )
    p.add_argument("--no-refactor-check", action="store_true", help="skip REF-1 (is each rewrite the same function?)")
    p.add_argument("--no-base-check", action="store_true", help="do not judge the tutorial base itself")
    p.add_argument("--list", action="store_true", help="print the rewrites' diffs and stop")
    p.add_argument("--out", default=str(ROOT / "reports"), help="where generated-rewrites.md and .json go")
    p.add_argument("--keep", action="store_true", help="keep the forks, logs and reports")
    p.add_argument("--no-preload", action="store_true", help="plain subprocesses instead of run.py's preloaded server")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
