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
