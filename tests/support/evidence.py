"""Evidence for the verdict (tests/support/verdict.py): which clause a failure is about, and whether
it is a bug of the suite rather than a verdict.  Pure Python (no torch), so that any test module can
``blame``; the errata's recognisers, which build models, are tests/support/errata.py.

Every blame, dependency and exception the suite adds follows from one of the principles of
docs/architecture.md (a verdict's steps 2 and 4; premises, forms and layouts), never from the name of
a mutant or a library that misbehaved.

Blame.  A test that cites several clauses can say, where it fails, which of them the failure is
about: ``with blame("SE-1"): assert ...``.  The exception carries the clause IDs; the report counts
the failure against those clauses only, and as undecided (not a pass) for the others the test
cites.  ``with blame():`` (no clause) marks a step that is not what the test checks, such as
building a model that another clause's tests cover, and ``blame("ARCH-5")`` in a test that does not
cite ARCH-5 marks a premise: a failure there is undecided for every clause the test cites.  A
hypothesis failure with several distinct examples blames the union of its members.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from pathlib import Path
from types import TracebackType

_BLAME = "_effnet_blame"
_CONCLUSIVE = "_effnet_conclusive"

# The clauses that the running test cites, so that ``blame`` can tell a failure that decides the
# test from one that leaves it undecided; None outside a test's call.
_CITED: ContextVar[tuple[str, ...] | None] = ContextVar("effnet_cited", default=None)


@contextlib.contextmanager
def citing(clauses: Sequence[str]) -> Iterator[None]:
    """Run the block as a test that cites ``clauses`` (tests/support/report.py, around each test call)."""
    token = _CITED.set(tuple(clauses))
    try:
        yield
    finally:
        _CITED.reset(token)


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

    cited = _CITED.get()
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
    tb = _innermost(exc)
    if not isinstance(exc, AttributeError) or tb is None:
        return False
    code = tb.tb_frame.f_code
    raised_by_torch = code.co_name == "__getattr__" and "torch" in Path(code.co_filename).parts
    return raised_by_torch and getattr(exc, "name", None) in STRUCTURE


# --- Errors of the suite -------------------------------------------------------------------------
# The suite's own code: a failure raised here that is not an assertion (an IndexError in a test's
# indexing, a KeyError in a helper) says nothing about the implementation.  tests/forks/ and any
# --impl file are the implementation's side, as are torch and every other library.
_TESTS = Path(__file__).resolve().parents[1]
_SUITE_DIRS = tuple(_TESTS / d for d in ("support", "conformance", "refactor", "extras", "golden"))


def _innermost(exc: BaseException) -> TracebackType | None:
    """The frame that raised ``exc``: the innermost of its traceback."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb


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
    tb = _innermost(exc)
    if tb is None:
        return None
    filename = tb.tb_frame.f_code.co_filename
    if not _in_suite(filename):
        return None
    where = Path(filename).resolve().relative_to(_TESTS.parent)
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} at {where}:{tb.tb_lineno}"
