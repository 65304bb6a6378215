"""The premise rule (docs/architecture.md, "Premises and forms"): a test checks what it takes from
other clauses first, under their blame; a part is checked in each form in which it exists; a
failure is told apart by inputs that isolate each part.

Each case is a corpus mutant whose root cause the suite once placed elsewhere (issue 27), run
against the test that misplaced it and the test of its own clause: the report must name exactly the
mutant's declared clause as the root cause.  Without the rule each of these names another clause
(seen): the SE width test took the block's expanded width as given (SE-2 for a block that expands
the wrong width), the stem was judged by shapes only (ARCH-5, by the parameter count, for a stem
without BN), and a squeeze was judged only by what its gate stays invariant to (SE-2 for a squeeze
over the channels too or over the rows only).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.mutants import corpus
from tests.support import subrun

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "effnet" / "model.py"
BLOCKS = "tests/conformance/test_blocks.py"
ARCHITECTURE = "tests/conformance/test_architecture.py"
STEM = f"{ARCHITECTURE}::test_stem_computes_strided_conv_then_batchnorm_then_silu"
SE_GATE = f"{BLOCKS}::test_se_gate_depends_only_on_channel_means"

# mutant -> the tests that once misplaced it, and its own clause's test.
CASES = {
    "mbconv-expands-n-out": [
        f"{BLOCKS}::test_se_squeezes_to_a_quarter_of_the_block_input",
        f"{BLOCKS}::test_mbconv_computes_expand_depthwise_se_project",
    ],
    "stem-without-batchnorm": [STEM, f"{ARCHITECTURE}::test_parameter_count_matches_timm"],
    "sequential-stem-without-batchnorm": [
        STEM,
        "tests/conformance/test_sequential.py::test_sequential_has_the_same_tensors_in_the_same_order",
    ],
    "se-squeeze-over-channels-too": [SE_GATE],
    "se-squeeze-over-height-only": [SE_GATE],
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_once_misplaced_bug_has_its_own_clause_as_root_cause(tmp_path: Path, name: str) -> None:
    fork = next(f for f in corpus.load() if f.name == name)
    path = corpus.write(fork, corpus.build(fork, SOURCE.read_text()), tmp_path)
    report = tmp_path / "report"
    env = {k: v for k, v in os.environ.items() if k not in ("EFFNET_IMPL", "PYTEST_ADDOPTS")}
    env["EFFNET_HYPOTHESIS_PROFILE"] = "ci"
    args = [*CASES[name], "--impl", str(path), "--report", str(report), "-q", "-p", "no:cacheprovider"]
    result = subrun.pytest(args, env=env, cwd=ROOT, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 1, f"{name}: exit status {result.returncode}, want 1 (tests failed):\n{output}"
    found = json.loads(report.with_suffix(".json").read_text())
    assert found["root_causes"] == list(fork.clauses), (
        f"{name}: root causes {found['root_causes']}, want {fork.clauses}:\n{found['verdict']}\n{output[-3000:]}"
    )
    assert not found["suite_errors"], found["suite_errors"]
