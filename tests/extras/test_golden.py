"""Regression fingerprints (EXT-3): each variant's architecture and its outputs for closed-form
weights and inputs equal the committed tests/golden/golden.json.

A refactor of effnet that changes what any variant computes fails here with the variant, the
stage and the size of the difference; `nox -s golden -- --update` regenerates the file (and
cross-checks the new numbers against timm) when the change is intended.  The records are float64,
compared within 1e-9: other CPU kernel sets, thread counts and memory formats move them by at most
2.4e-12, a wrong function by 1e-2 or more, so the verdict is the same on every machine.  See
tests/golden/golden.py for how the weights, inputs and records are made without a random number
generator, and for the measured margins (`python tests/golden/update.py --margins`).
"""

from __future__ import annotations

import pytest

from tests.golden import golden
from tests.support.loader import require_optional

UPDATE = "if the change is intended: nox -s golden -- --update"


@pytest.fixture(scope="module")
def golden_data():
    data = golden.load()
    assert data["header"]["settings"] == golden.settings(), f"golden.json was made with other settings: {UPDATE}"
    return data


@pytest.mark.extra
@pytest.mark.clause("EXT-3")
@pytest.mark.parametrize("variant", golden.OUTPUT_VARIANTS)
def test_variant_outputs_match_golden(impl, golden_data, variant):
    factory = getattr(impl, f"efficientnet_{variant}")
    problems = golden.compare(variant, golden_data["variants"][variant], golden.record(factory, with_outputs=True))
    assert not problems, "\n".join([*problems, UPDATE])


@pytest.mark.extra
@pytest.mark.clause("EXT-3")
@pytest.mark.parametrize("variant", golden.FINGERPRINT_ONLY)
def test_large_variant_architecture_matches_golden(impl, golden_data, variant):
    factory = require_optional(impl, f"efficientnet_{variant}")
    problems = golden.compare(variant, golden_data["variants"][variant], golden.record(factory, with_outputs=False))
    assert not problems, "\n".join([*problems, UPDATE])


@pytest.mark.extra
@pytest.mark.clause("EXT-3")
def test_golden_outputs_depend_on_the_input(golden_data):
    """The recorded logits would not reveal a broken function if they were the same for every input."""
    import torch

    from tests.support.torchutil import input_dependence

    for variant in golden.OUTPUT_VARIANTS:
        for key in ("logits_eval", "logits_batchnorm_training"):
            dependence = input_dependence(torch.tensor(golden_data["variants"][variant][key], dtype=torch.float64))
            # 0.1: the per-class spread across the two inputs is at least a tenth of the logits' size.
            assert dependence > 0.1, f"{variant} {key}: input dependence {dependence:.2e}; the golden data is weak"


@pytest.mark.extra
@pytest.mark.clause("EXT-3")
def test_formula_is_the_committed_one(golden_data):
    """A changed weight or input formula must not pass for a changed model: the file records a few
    of the formula's own values, and they must still come out."""
    assert golden.formula_check() == golden_data["header"]["formula_check"], f"the formula changed: {UPDATE}"
