"""The generators of tests/mutants/generate.py and rewrites.py, and a small leg of each.

The unit tests are cheap: cosmic-ray still enumerates effnet/model.py's mutations, the sample is
seeded and extends, every rewrite still finds its construct in effnet and in the tutorial.

The two legs judge a few generated mutants (`--first-failure`: each must be rejected, or accepted
when REF-1 finds it equivalent) and ten named rewrites (all applied to the tutorial in one fork,
`--combine`: accepted, each of them applied), so that a change to the suite that rejects correct
code or lets a generated bug through cannot land unnoticed.  They run in `nox -s tests` (and so in
CI; they are marked slow, so `-m "not slow"` leaves them out).  Their cost is set by the equivalent
mutants and the rewrites: each is a whole conformance run, where a rejected mutant stops at its first
failure (docs/time-budget.md).  The mutant leg is the first 8 of seed 0's sample, the draw
docs/generated-mutants.md reports on (a change to effnet/model.py redraws it).  The measurement itself is
`nox -s mutate -- --sample 100 --seed 0` and `nox -s rewrites`; `nox -s generated` runs this module alone.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.mutants import generate, rewrites
from tests.support import spec, subrun

ROOT = Path(__file__).resolve().parents[2]
MUTANTS, MUTANT_SEED = 8, 0  # the CI leg: the first 8 of docs/generated-mutants.md's draw, --first-failure
# and these rewrites of the tutorial (fixed), in one fork, among them the classes users make (in place,
# functional SE, padding='same', torchvision's drop path, a ModuleList of stages); named, not drawn.
REWRITES = (
    "batchnorm-applies-activation",
    "kaiming-init",
    "conv-block-without-identity",
    "silu-as-x-sigmoid-x",
    "inplace-silu",
    "se-functional",
    "padding-same",
    "inplace-residual-add",
    "torchvision-stochastic-depth",
    "stages-modulelist",
)
# Beside other xdist workers (one per core): one run at a time, on one torch thread (_run).
JOBS = "1" if os.environ.get("PYTEST_XDIST_WORKER") else "2"


@pytest.fixture(scope="module")
def source() -> str:
    return generate.SOURCE.read_text()


@pytest.fixture(scope="module")
def mutations(source: str) -> list[generate.Mutation]:
    return generate.enumerate_mutations(source)


def test_cosmic_ray_enumerates_the_single_point_mutations_of_effnet(mutations):
    assert len(mutations) > 1000, f"cosmic-ray found only {len(mutations)} mutations of effnet/model.py"
    operators = {m.operator for m in mutations}
    assert {"core/NumberReplacer", "core/ReplaceComparisonOperator_Lt_LtE", "core/AddNot"} <= operators


def test_the_sample_is_seeded_and_a_larger_one_extends_a_smaller_one(mutations):
    small, large = generate.sample(mutations, 8, seed=3), generate.sample(mutations, 40, seed=3)
    assert small == generate.sample(mutations, 8, seed=3)
    assert large[:8] == small
    assert generate.sample(mutations, 8, seed=4) != small
    assert len(set(large)) == 40


def test_the_shards_partition_the_sample(mutations):
    drawn = generate.sample(mutations, 10, seed=0)
    shares = [generate.shard(drawn, f"{i}/3") for i in (1, 2, 3)]
    assert sorted(rank for share in shares for rank, _ in share) == list(range(1, 11))
    assert [m for _, m in generate.shard(drawn, None)] == drawn


def test_every_drawn_mutation_changes_the_module(source, mutations):
    for m in generate.sample(mutations, 25, seed=0):
        mutated = generate.mutate(source, m)
        assert mutated != source, m.label
        assert generate.diff(source, mutated).count("\n+") >= 1, m.label


def _conformance_test_functions() -> set[str]:
    functions = set()
    for path in sorted((ROOT / "tests" / "conformance").glob("test_*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                functions.add(f"{path.relative_to(ROOT).as_posix()}::{node.name}")
    return functions


def test_the_recorded_durations_name_every_conformance_test():
    """The first-failure runs without a control run (the mutant leg below) order their tests by
    tests/mutants/durations.json: a test it does not name runs at the median, so a stale file only
    slows those runs down.  It must name every conformance test function, and only those."""
    recorded = json.loads(generate.RECORDED_DURATIONS.read_text())
    named = {spec.function_id(nodeid) for nodeid in recorded}
    functions = _conformance_test_functions()
    assert functions, "found no conformance tests"
    stale = sorted(named - functions)
    missing = sorted(functions - named)
    again = "record it again: see RECORDED_DURATIONS in tests/mutants/generate.py"
    assert not stale, f"tests/mutants/durations.json names tests that no longer exist ({again}): {stale}"
    assert not missing, f"tests/mutants/durations.json lacks conformance tests ({again}): {missing}"
    assert all(isinstance(v, float | int) and v >= 0 for v in recorded.values())


def test_an_annotation_only_or_uncompilable_mutant_is_told_apart():
    source = "from __future__ import annotations\ndef f(x: int = 1) -> int:\n    return x + 1\n"
    assert generate.static_kind(source, source.replace("-> int", "-> float")) == "unchanged"
    assert generate.static_kind(source, source.replace("x + 1", "x +* 1")) == "no-compile"
    assert generate.static_kind(source, source.replace("x + 1", "x - 1")) == ""


@pytest.mark.parametrize("rewrite", rewrites.REWRITES, ids=lambda r: r.name)
def test_every_rewrite_applies_to_every_base_and_compiles(rewrite):
    for base, text in rewrites.bases().items():
        rewritten = rewrites.rewrite(text, rewrite)  # NotApplicable: the construct is gone from this base
        assert rewritten != rewrites._normalised(text), f"{rewrite.name} changed nothing in {base}"


_MAX_POOL = "class SEBlock:\n    def __init__(self):\n        self.squeeze = nn.AdaptiveMaxPool2d(1)\n"
_MAX_POOL += "    def forward(self, x):\n        return self.squeeze(x)\n"
_SE = "class SEBlock:\n    def __init__(self, c):\n        self.excitation = nn.Sequential({})\n"
_SE += "    def forward(self, x):\n        return x * self.excitation(x.mean((2, 3), keepdim=True))\n"
_MBCONV = "class MBConv:\n    def forward(self, x):\n        residual = x\n        out = self.branch(x)\n{}"


@pytest.mark.parametrize(
    ("name", "source", "message"),
    [
        # A max-pool squeeze: inlined as a mean it would change the function.
        ("se-squeeze-inline", _MAX_POOL, "average-pooling"),
        # A padding other than (k - 1) // 2, or a stride-2 1x1 convolution: 'same' would change the function.
        ("padding-same", "def f(k):\n    return nn.Conv2d(3, 8, k, stride=2, padding=1)\n", "padding"),
        ("padding-same", "def f():\n    return nn.Conv2d(3, 8, 1, stride=2)\n", "padding"),
        # A 3x3 convolution in the SE: not a Linear layer.
        ("se-linear", _SE.format("nn.Conv2d(c, c, 3, padding=1)"), "1x1 Conv2d"),
        # The input added to itself, or the residual added twice: nothing to add in place.
        ("inplace-residual-add", _MBCONV.format("        return x + residual\n"), "not once"),
        ("inplace-residual-add", _MBCONV.format("        out = out + x\n        out = out + residual\n"), "not once"),
    ],
    ids=lambda v: v if isinstance(v, str) and "\n" not in v and " " not in v else "",
)
def test_a_rewrite_refuses_a_construct_it_would_change(name, source, message):
    chosen = next(r for r in rewrites.REWRITES if r.name == name)
    with pytest.raises(rewrites.NotApplicable, match=message):
        rewrites.rewrite(source, chosen)


def _run(script: str, args: list[str], out: Path, report: str) -> list[dict]:
    """The results of ``script`` in OUT/REPORT.json."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "EFFNET_HYPOTHESIS"))}
    # The scripts give each run cpu_count // jobs torch threads unless OMP_NUM_THREADS says otherwise.
    env = subrun.one_thread_under_xdist(env)
    command = [sys.executable, f"tests/mutants/{script}", *args, "--jobs", JOBS, "--out", str(out)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert (out / f"{report}.json").exists(), done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((out / f"{report}.json").read_text())["results"]


@pytest.mark.slow
@pytest.mark.long
def test_a_seeded_sample_of_generated_mutants_is_judged_as_required(tmp_path):
    # No control run: the tests' order comes from tests/mutants/durations.json (cheapest first).
    args = ["--sample", str(MUTANTS), "--seed", str(MUTANT_SEED), "--first-failure", "--no-control"]
    results = _run("generate.py", args, tmp_path, "generated-mutants")
    wrong = [r for r in results if r["verdict"] in ("SURVIVED", "FALSE POSITIVE", "ERROR", "TIMEOUT", "NO VERDICT")]
    assert not wrong, (tmp_path / "generated-mutants.md").read_text()
    assert len(results) == MUTANTS


@pytest.mark.slow
@pytest.mark.long
def test_named_generated_rewrites_of_the_tutorial_combined_are_accepted(tmp_path):
    # The tutorial (fixed) where its text is at hand (tests/forks/tutorial.py), else effnet.
    base = "tutorial" if rewrites.tutorial_base() is not None else "effnet"
    args = [*(a for name in REWRITES for a in ("--only", name)), "--base", base, "--combine"]
    args += ["--no-refactor-check", "--no-base-check"]
    results = _run("rewrites.py", args, tmp_path, "generated-rewrites")
    assert all(r["ok"] for r in results), (tmp_path / "generated-rewrites.md").read_text()
    judged = [r for r in results if r["rewrite"]]  # one fork of the base with every named rewrite
    seen = [(r["base"], sorted(r["rewrite"].split("+")), r["outcome"]) for r in judged]
    want = [(base, sorted(REWRITES), "accepted")]
    assert seen == want, f"the leg judged {[(r['base'], r['rewrite']) for r in results]}"
