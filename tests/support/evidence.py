"""Evidence for the conformance report (tests/support/report.py): which clause a failure is about,
which known departure (an erratum of spec/SPEC.md section 9) it shows, and whether it is a bug of
the suite rather than a verdict.

Principles.  Every blame, dependency and exception the suite adds follows from one of these, never
from the name of a mutant or a library that misbehaved:

1. Function, not form.  Outside the API clauses (API-1..4: names, signatures, the module and
   Sequential layout, the order of the tensors), a test judges what a module computes and its
   tensors by position, never a layer's class, a Sequential's number of children or an attribute's
   name (tests/support/norms.py finds a BatchNorm by the statistics it keeps).
2. Premises first.  What a test takes from other clauses (the fork's own scaling, its block count,
   its tensors' shapes, the form it compares against) is checked before its claim, under those
   clauses' blame (tests/support/premises.py): a failed premise leaves the test undecided for its
   own clauses, and the premise's own tests give the verdict (a hypothesis property stops at the
   first example whose premise fails: no other example could decide it).  Two forms of one network:
   the module form is the reference, the Sequential form is judged against it (SEQ-1, SEQ-2).
3. Conclusive evidence.  A failure that cannot come from any other part being wrong (a block that
   outputs exactly 0 where it must add its input) is a root cause whatever else failed
   (``blame(..., conclusive=True)``), as is a failure that shows an erratum's signature.
4. Function decides, not rounding.  Two computations of the same function are compared where
   float32 rounding cannot decide the outcome: in float64 (NUM-3, SEQ-2, EXT-3) or per segment with
   damped weights (NUM-1, REF-1), with the margin measured (tests/meta/margins.py).
5. The suite's own errors are not verdicts.  An exception that is not an assertion and was raised
   in the suite's own code (``suite_error``) is undecided for the test's clauses and reported as a
   bug of the suite, with its place.
6. Values are checked where they enter the suite.  What the implementation returns (a
   constructor's result: an nn.Module; its tensors; a forward's output: one Tensor of the stated
   shape, of the input's dtype, on its device, finite where the input is finite) is checked before
   the suite uses it, under the clause that defines it (tests/support/boundary.py, through the
   ``impl`` fixture): a value that breaks its contract fails that clause, naming what was returned.
   So an exception of the suite's own code is an error of the suite only where the
   implementation's values met every contract.

Blame.  A test that cites several clauses can say, where it fails, which of them the failure is
about: ``with blame("SE-1"): assert ...``.  The exception carries the clause IDs; the report counts
the failure against those clauses only, and as undecided (not a pass) for the others the test
cites.  ``with blame():`` (no clause) marks a step that is not what the test checks, such as
building a model that another clause's tests cover, and ``blame("ARCH-5")`` in a test that does not
cite ARCH-5 marks a premise: a failure there is undecided for every clause the test cites.  A
hypothesis failure with several distinct examples blames the union of its members.

Recognisers.  An erratum is named in the report only when its signature shows in the
implementation, never because its clause failed: each recogniser builds a small part of the
implementation (on CPU, with its own random generator) and returns what it saw, or None.  They
run in the process that writes the report, once per erratum whose clause failed.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor, nn

from tests.support import models

_BLAME = "_effnet_blame"
_CONCLUSIVE = "_effnet_conclusive"


# The clauses that the running test cites (set by tests/support/report.py around each test call),
# so that ``blame`` can tell a failure that decides the test from one that leaves it undecided.
cited: tuple[str, ...] | None = None


class Undecided(BaseException):
    """A failure inside a hypothesis property that leaves the test undecided: a premise (blamed on
    clauses the test does not cite) or a step blamed on no clause.  No other example can decide the
    test, so it is raised past hypothesis (which catches only ``Exception``): the property stops at
    this example instead of shrinking it and searching for more.  The report reads ``error``."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(
            f"{type(error).__name__}: {error}\n(undecided for this test's clauses: hypothesis stopped at "
            "the first example that showed it, without shrinking it)"
        )
        self.error = error
        for attribute in (_BLAME, _CONCLUSIVE):
            setattr(self, attribute, getattr(error, attribute))


def unwrap(exc: BaseException) -> BaseException:
    """The failure itself: the error an ``Undecided`` carries, else ``exc``."""
    return exc.error if isinstance(exc, Undecided) else exc


def _leaves_the_property_undecided(exc: BaseException) -> bool:
    import hypothesis

    if cited is None or not isinstance(exc, Exception) or not hypothesis.currently_in_test_context():
        return False
    return not set(getattr(exc, _BLAME)) & set(cited)


@contextlib.contextmanager
def blame(*clauses: str, conclusive: bool = False) -> Iterator[None]:
    """A failure inside the block is a failure of ``clauses`` (a subset of those the test cites; none:
    of no clause the test cites); an inner ``blame`` wins over an outer one.  ``conclusive``: the
    failure shows a violation of ``clauses`` whatever the clauses they depend on do (the evidence
    cannot come from another part being wrong), so the report names them root causes even where a
    dependency failed too, as it does for a clause that shows an erratum's signature.  In a
    hypothesis property, a failure that leaves the test undecided ends the property (``Undecided``)."""
    try:
        yield
    except BaseException as e:
        if not hasattr(e, _BLAME):
            setattr(e, _BLAME, tuple(clauses))
            setattr(e, _CONCLUSIVE, conclusive)
        if _leaves_the_property_undecided(e):
            raise Undecided(e) from e
        raise


def conclusive(exc: BaseException) -> bool:
    """Whether the exception's blame is conclusive (for an exception group: every member's)."""
    exc = unwrap(exc)
    if isinstance(exc, BaseExceptionGroup) and not hasattr(exc, _BLAME):
        return all(conclusive(member) for member in exc.exceptions)
    return bool(getattr(exc, _CONCLUSIVE, False))


def blamed(exc: BaseException) -> tuple[str, ...] | None:
    """The clauses an exception blames (the union over an exception group's members), or None when
    it (or one member) blames none: then the failure counts against every clause the test cites."""
    exc = unwrap(exc)
    if lacks_the_structure(exc):  # whatever block it was raised in: the suite asked for a form it lacks
        return ("API-3",)
    own = getattr(exc, _BLAME, None)
    if own is not None:
        return tuple(own)
    if isinstance(exc, BaseExceptionGroup):
        found: list[str] = []
        for member in exc.exceptions:
            clauses = blamed(member)
            if clauses is None:
                return None
            found += [c for c in clauses if c not in found]
        return tuple(found)
    return None


# API-3's names: a test that reads the tutorial's module structure (``model.stages[i][j]``, ``model.head``)
# stands on API-3, so a network without it (timm's own modules behind the network protocol) leaves that test
# undecided, and API-3's own tests give the verdict.
STRUCTURE = ("stem", "stages", "pre", "pool_flatten", "head")


def lacks_the_structure(exc: BaseException) -> bool:
    """Whether ``exc`` is torch's ``nn.Module.__getattr__`` saying that a module has none of API-3's
    names that the suite asked for: a failed premise (API-3), not a verdict on the test's clauses."""
    if not isinstance(exc, AttributeError) or exc.__traceback__ is None:
        return False
    tb = exc.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    raised_by_torch = (
        tb.tb_frame.f_code.co_name == "__getattr__" and "torch" in Path(tb.tb_frame.f_code.co_filename).parts
    )
    return raised_by_torch and getattr(exc, "name", None) in STRUCTURE


# --- Errors of the suite -------------------------------------------------------------------------
# The suite's own code: a failure raised here that is not an assertion (an IndexError in a test's
# indexing, a KeyError in a helper) says nothing about the implementation.  tests/forks/ and any
# --impl file are the implementation's side, as are torch and every other library.
_TESTS = Path(__file__).resolve().parents[1]
_SUITE_DIRS = tuple(_TESTS / d for d in ("support", "conformance", "refactor", "extras", "golden"))


def _in_suite(filename: str) -> bool:
    try:
        path = Path(filename).resolve()
    except (OSError, ValueError):
        return False
    return any(path.is_relative_to(d) for d in _SUITE_DIRS)


def suite_error(exc: BaseException) -> str | None:
    """Where the exception shows a bug of the suite, a one-line description ("IndexError: ... at
    tests/conformance/x.py:12"), else None.  That is: it is not an AssertionError and the innermost
    frame of its traceback, the code that raised it, is the suite's own (for an exception group:
    every member is such an error).  An exception raised in the implementation, or in torch on the
    implementation's behalf, is a verdict as usual, and so is a value that broke its contract where
    it entered the suite (principle 6: ``boundary.BoundaryViolation``, not an ``Exception``, is
    raised before the suite's code could fail on the value)."""
    exc = unwrap(exc)
    if isinstance(exc, BaseExceptionGroup) and not hasattr(exc, _BLAME):
        found = [suite_error(member) for member in exc.exceptions]
        return "; ".join(f for f in found if f) if all(found) else None
    if hasattr(exc, "suite_error_text"):  # a call that did not return: tests/support/watchdog.py read its stack
        return exc.suite_error_text
    if isinstance(exc, AssertionError) or not isinstance(exc, Exception):
        return None
    tb = exc.__traceback__
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    filename = tb.tb_frame.f_code.co_filename
    if not _in_suite(filename):
        return None
    where = Path(filename).resolve().relative_to(_TESTS.parent)
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} at {where}:{tb.tb_lineno}"


# --- Recognisers of known departures (spec/SPEC.md section 9, column "Signature") -------------
Recogniser = Callable[[ModuleType], "str | None"]
_REL = 1e-5


def _rel(a: Tensor, b: Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


@torch.no_grad()
def _randomise(module: nn.Module, generator: torch.Generator) -> nn.Module:
    for t in module.parameters():  # not the BN statistics: a variance must stay positive
        t.copy_(torch.randn(t.shape, generator=generator) * 0.5)
    return module


def _batchnorm_shift_to_one(block: nn.Module) -> None:
    """The block's last BN bias (API-4: the fourth entry from the end) at 1: its branch is nonzero."""
    with torch.no_grad():
        list(block.state_dict().values())[-4].fill_(1.0)


def se_max_pool(impl: ModuleType) -> str | None:
    """E-1: the SE gate follows the channel maxima, not the means."""
    generator = torch.Generator().manual_seed(0)
    se = _randomise(impl.SEBlock(8, 2), generator).eval()
    x = torch.rand(4, 8, 5, 5, generator=generator) + 1.0
    peak = x.amax((2, 3), keepdim=True)
    same_maxima = torch.where(x == peak, x, 0.5 * x)  # every mean moves, no maximum does
    with torch.no_grad():
        gate, gate_same, gate_scaled = (se(t) / t for t in (x, same_maxima, 1.5 * x))
    if _rel(gate_same, gate) <= _REL and _rel(gate_scaled, gate) > 1e-3:
        return (
            "SEBlock(8, 2)'s gate stays when each channel's mean changes but its maximum does not: a max-pool squeeze"
        )
    return None


def element_wise_branch_dropout(impl: ModuleType) -> str | None:
    """E-2: in training, single elements of the residual branch are zeroed (not whole samples)."""
    block = impl.MBConv(8, 8, 6, 3, 1, 24, 0.5)
    _randomise(block, torch.Generator().manual_seed(0))
    _batchnorm_shift_to_one(block)
    x = torch.randn(4, 8, 6, 6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        block.train()
        for m in block.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            out = block(x)
    zeroed = ((out - x).flatten(1) == 0).double().mean(1)
    partly = [i for i, f in enumerate(zeroed.tolist()) if 0.1 < f < 0.9]
    if partly:
        return (
            f"MBConv(8, 8, 6, dropout=0.5) in training zeroes {zeroed[partly[0]]:.0%} of sample {partly[0]}'s "
            "residual branch element by element: nn.Dropout, not stochastic depth"
        )
    return None


def _drop_rates(block: nn.Module) -> list[float]:
    return [float(m.p) for m in block.modules() if isinstance(getattr(m, "p", None), float) and m is not block]


def per_stage_drop_rate(impl: ModuleType) -> str | None:
    """E-3: one drop rate per stage (the tutorial's 0.2 i / 7), not one per block."""
    model = impl.EfficientNet(0.01, 1.0, 10)
    per_stage = [[r for block in stage for r in _drop_rates(block)] for stage in model.stages]
    shared = [rates for rates in per_stage if len(rates) > 1]
    if len(shared) >= 2 and all(len(set(rates)) == 1 for rates in shared) and len({r[0] for r in shared}) > 1:
        listed = ", ".join(f"{rates[0]:.3g}" for rates in per_stage if rates)
        return f"the blocks of each stage of EfficientNet(0.01, 1.0) share one drop rate ({listed}): one rate per stage"
    return None


def no_classifier_dropout(impl: ModuleType) -> str | None:
    """E-4: pooling and head compute the same in training and in eval mode."""
    model = impl.EfficientNet(0.1, 0.1, 10)
    weight = list(model.head.state_dict().values())[-2]
    f = torch.randn(256, weight.shape[1], 1, 1, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        train = model.head.train()(model.pool_flatten.train()(f))
        evaluated = model.head.eval()(model.pool_flatten.eval()(f))
    if torch.equal(train, evaluated):
        return (
            "EfficientNet(0.1, 0.1, 10)'s pooling and head give the same output in training as in eval mode: no dropout"
        )
    return None


def head_1080(impl: ModuleType) -> str | None:
    """E-5: the table's head width is 1080."""
    if list(impl.widths)[-1] == 1080:
        return "widths[-1] is 1080"
    return None


def se_squeezes_to_zero(impl: ModuleType) -> str | None:
    """E-6: SEBlock(c, r) squeezes some block of fewer than r channels to 0 channels (c // r, or
    c / r rounded to the nearest), where the reference code keeps at least 1."""
    for c, r in ((3, 4), (1, 2), (1, 3), (2, 8)):
        shapes = [tuple(t.shape) for t in impl.SEBlock(c, r).state_dict().values()]
        if shapes and shapes[0] and shapes[0][0] == 0:
            return f"SEBlock({c}, {r}) squeezes to 0 channels: its reduce weight is {shapes[0]}"
    return None


def _batchnorms_of(build: Callable[[], nn.Module]) -> list[nn.Module]:
    """The BatchNorm layers of a model, built on the meta device where the implementation allows it
    (a B7 has 66M parameters; only the layers' settings are read), else on CPU."""
    model = models.to_inspect(build)
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._NormBase)]


def tensorflow_batchnorm(impl: ModuleType) -> str | None:
    """E-7: BatchNorm eps 1e-3 or momentum 0.01, TensorFlow's values, in EfficientNet(0.25, 0.34) or
    in a named variant from B5 up (torchvision builds only B5-B7 with TensorFlow's values)."""
    builds = {"EfficientNet(0.25, 0.34)": lambda: impl.EfficientNet(0.25, 0.34, 10)}
    builds |= {f"efficientnet_b{i}": getattr(impl, f"efficientnet_b{i}") for i in (5, 6, 7)}
    for name, build in builds.items():
        layers = _batchnorms_of(build)
        found = []
        if any(math.isclose(m.eps, 1e-3) for m in layers):
            found.append("BatchNorm eps is 1e-3 (TensorFlow's), want 1e-5")
        if any(m.momentum is not None and math.isclose(m.momentum, 0.01) for m in layers):
            found.append("BatchNorm momentum is 0.01 (TensorFlow's decay 0.99), want 0.1")
        if found:
            return f"{name}: {'; '.join(found)}"
    return None


def tensorflow_same_padding(impl: ModuleType) -> str | None:
    """E-8: static TF "same" padding for an even input size: the stem maps 57x71 to 28x35."""
    stem = impl.EfficientNet(0.1, 0.1, 10).eval().stem
    with torch.no_grad():
        size = tuple(stem(torch.randn(1, 3, 57, 71, generator=torch.Generator().manual_seed(0))).shape[-2:])
    if size == (28, 35):
        return (
            "the stem maps 57x71 to 28x35, where padding 1 gives 29x36: TensorFlow 'same' padding "
            "computed once for an even input size"
        )
    return None


def _scale_width(w: int, f: float) -> int:
    """SCALE-1 (for the recogniser's expected value only)."""
    scaled = w * f
    new = max(8, int(scaled + 4) // 8 * 8)
    return new + 8 if new < 0.9 * scaled else new


def torchvision_head_rule(impl: ModuleType) -> str | None:
    """E-9: the head is 4x the last stage's width (torchvision), not the scaled 1280."""
    f = 0.33  # scale_width(1280, f) = 424, 4 * scale_width(320, f) = 416
    model = impl.EfficientNet(f, 0.1, 10)
    # The head conv is the network's last convolution (API-4 order), mapping the last stage's width to its own.
    head, last = [t.shape for t in model.state_dict().values() if t.ndim == 4][-1][:2]
    if head == 4 * last and head != _scale_width(1280, f):
        return (
            f"EfficientNet({f}, 0.1)'s head convolution has {head} = 4 x {last} channels (torchvision's rule), "
            f"want scale_width(1280, {f}) = {_scale_width(1280, f)}"
        )
    return None


def tensorflow_same_padding_in_blocks(impl: ModuleType) -> str | None:
    """E-10: a block's stride-2 depthwise convolution pads an even size only at the bottom and right
    (TensorFlow "same" padding, computed per input): with every weight 1, a 6x6 input of ones gives
    9 at the top-left output (no padding there) and 4 at the bottom-right, where padding 1 gives 4 and 9."""
    block = impl.MBConv(8, 8, 1, 3, 2)
    depthwise = [m for m in block.modules() if isinstance(m, nn.Conv2d) and m.groups > 1 and m.stride == (2, 2)]
    if len(depthwise) != 1:
        return None
    conv = depthwise[0]
    with torch.no_grad():
        conv.weight.fill_(1.0)
        if conv.bias is not None:
            conv.bias.zero_()
        out = conv(torch.ones(1, conv.in_channels, 6, 6))
    if out.shape[-2:] == (3, 3) and float(out[0, 0, 0, 0]) == 9.0 and float(out[0, 0, -1, -1]) == 4.0:
        return (
            "MBConv(8, 8, 1, 3, 2)'s depthwise convolution pads a 6x6 input only at the bottom and right "
            "(TensorFlow 'same' padding), where padding 1 pads every side"
        )
    return None


RECOGNISERS: dict[str, Recogniser] = {
    "E-1": se_max_pool,
    "E-2": element_wise_branch_dropout,
    "E-3": per_stage_drop_rate,
    "E-4": no_classifier_dropout,
    "E-5": head_1080,
    "E-6": se_squeezes_to_zero,
    "E-7": tensorflow_batchnorm,
    "E-8": tensorflow_same_padding,
    "E-9": torchvision_head_rule,
    "E-10": tensorflow_same_padding_in_blocks,
}
TENSORFLOW_CONVENTIONS = ("E-7", "E-8")


def recognise(erratum: str, impl: ModuleType) -> str | None:
    """What the implementation shows of the erratum's signature, or None (also when building the
    parts it looks at fails: then the failing tests say why)."""
    recogniser = RECOGNISERS.get(erratum)
    if recogniser is None:
        return None
    try:
        with torch.random.fork_rng(devices=[]):
            return recogniser(impl)
    except Exception:
        return None
