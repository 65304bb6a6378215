"""The mutant corpus still applies to effnet/model.py (cheap; the verdicts are `nox -s mutants`).

When effnet changes, a patch whose text is gone would make its mutant a copy of effnet (a mutant
that cannot be rejected) or its variation a copy (a variation that proves nothing): this fails
first, naming every patch to update in tests/mutants/corpus.toml.
"""

from __future__ import annotations

import pytest

from tests.mutants import corpus


def test_every_patch_applies_and_compiles():
    try:
        corpus.check_all(corpus.load())
    except corpus.CorpusError as e:
        pytest.fail(str(e), pytrace=False)


def test_corpus_is_large_enough():
    kinds = [f.kind for f in corpus.load()]
    assert kinds.count("mutant") >= 25, f"{kinds.count('mutant')} mutants; the corpus promises at least 25"
    assert kinds.count("variation") >= 7, f"{kinds.count('variation')} variations"


def test_a_stale_patch_is_reported():
    fork = corpus.Fork("mutant", "demo", "demo", ("SE-1",), (corpus.Patch("AdaptiveAvgPool2d(1)", "X", count=1),))
    with pytest.raises(corpus.CorpusError, match=r"mutant demo, patch 1: its text occurs 2 time\(s\)"):
        corpus.apply(fork, "AdaptiveAvgPool2d(1) AdaptiveAvgPool2d(1)")


def test_a_fork_that_imports_effnet_is_refused():
    fork = corpus.Fork("variation", "demo", "demo", (), (corpus.Patch("import torch", "import effnet"),))
    with pytest.raises(corpus.CorpusError, match="imports effnet"):
        corpus.build(fork, "import torch\n")


def test_combined_variations_leave_out_those_alone_and_those_that_no_longer_apply():
    def variation(name: str, old: str, new: str, alone: str = "") -> corpus.Fork:
        return corpus.Fork("variation", name, name, (), (corpus.Patch(old, new),), alone=alone)

    a, b = variation("a", "one", "one, 1"), variation("b", "two", "TWO")
    # Rewrites the code `a` rewrote: its old text still occurs once after `a`, so only where the
    # patches apply in the original tells the two apart (a forward using what another renamed).
    clash = variation("clash", "one", "uno")
    apart = variation("apart", "three", "THREE", alone="removes what the others use")
    forks = [a, clash, b, apart]
    combined, left = corpus.combine(forks, "one two three")
    assert combined is not None
    assert corpus.apply(combined, "one two three") == "one, 1 TWO three"
    assert left == [clash, apart]
    assert corpus.members(combined, forks) == [a, b]
    assert corpus.combine([a, apart], "one two three") == (None, [a, apart])


def test_the_corpus_variations_combine():
    """CI judges the corpus' variations combined (run.py --combine-variations): most of them in one fork."""
    variations = [f for f in corpus.load() if f.kind == "variation"]
    combined, left = corpus.combine(variations, corpus.SOURCE.read_text())
    assert combined is not None, [f.name for f in left]
    assert len(corpus.members(combined, variations)) >= 5, [f.name for f in left]
    corpus.build(combined, corpus.SOURCE.read_text())  # compiles
