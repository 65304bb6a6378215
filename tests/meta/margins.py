"""How far inside their tolerances the same-function comparisons stay: NUM-3 (a sample alone and in
a batch), SEQ-2 (EfficientNet and EfficientNetSequential), NUM-2 (a training step against timm's)
and ARCH-2 (the stem against its functional definition), all in float64, on effnet, on every correct
variation of tests/mutants/corpus.toml, on timm's own modules (tests/forks/timm_adapter.py) and on
any further implementation named with --impl (a generated rewrite, say).

    python tests/meta/margins.py                          # hypothesis profile thorough (400 examples each)
    python tests/meta/margins.py --profile ci -k timm     # a quicker look, one implementation

Each implementation runs the two tests with $EFFNET_MARGINS set; every comparison appends its error
and tolerance (tests/support/torchutil.py ``margin``).  The table gives, per implementation, the
number of comparisons, the largest error and the smallest ratio tolerance / error (the margin).
Exit status 1 when a margin is below its REQUIRED value (100x in float64, 10x for NUM-1 and NUM-4).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.mutants import corpus  # noqa: E402

TESTS = [
    "tests/conformance/test_shapes.py::test_eval_output_of_a_sample_does_not_depend_on_the_batch",
    "tests/conformance/test_sequential.py::test_sequential_computes_the_same_function_in_eval_and_training",
    "tests/conformance/test_numerics.py::test_training_step_matches_timm",
    "tests/conformance/test_numerics.py::test_training_step_matches_timms_generator_at_any_factors",
    "tests/conformance/test_architecture.py::test_stem_computes_strided_conv_then_batchnorm_then_silu",
    "tests/conformance/test_numerics.py::test_eval_output_matches_timm_stage_by_stage",
    "tests/conformance/test_numerics.py::test_eval_output_matches_timms_generator_at_any_factors",
    "tests/conformance/test_torchvision.py",
]
# The least margin each comparison must keep: 100x for those in float64; 10x for the eval-mode
# comparisons with timm and torchvision (NUM-1, NUM-4), which stay in float32 (the references'
# recorded outputs are shared by every test) per segment, with damped residual branches.
REQUIRED = {"NUM-3": 100.0, "SEQ-2": 100.0, "NUM-2": 100.0, "ARCH-2": 100.0, "NUM-1": 10.0, "NUM-4": 10.0}


def implementations(directory: Path) -> dict[str, str]:
    found = {"effnet": "effnet", "timm-modules": str(ROOT / "tests" / "forks" / "timm_adapter.py")}
    source = corpus.SOURCE.read_text()
    for fork in corpus.load():
        if fork.kind == "variation":
            found[f"variation {fork.name}"] = str(corpus.write(fork, corpus.build(fork, source), directory))
    return found


def measure(impl: str, profile: str, jobs: int) -> list[dict[str, float]]:
    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as f:
        path = Path(f.name)
    env = {**os.environ, "EFFNET_MARGINS": str(path), "EFFNET_HYPOTHESIS_PROFILE": profile}
    cmd = [sys.executable, "-m", "pytest", *TESTS, "--impl", impl, "-q", "-p", "no:cacheprovider", "-n", str(jobs)]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        print(result.stdout[-3000:], result.stderr[-2000:], file=sys.stderr)
        raise SystemExit(f"{impl}: the tests failed (exit {result.returncode})")
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    path.unlink()
    return records


def _named_impl(value: str) -> tuple[str, str]:
    name, sep, path = value.partition("=")
    if not (sep and name and path):
        raise argparse.ArgumentTypeError(f"--impl must be NAME=PATH (a module name or a .py path), got {value!r}")
    return name, path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="thorough", help="hypothesis profile (default thorough)")
    parser.add_argument("-k", action="append", default=[], help="only implementations whose name contains it")
    parser.add_argument("-n", type=int, default=2, help="pytest-xdist workers per run (default 2)")
    parser.add_argument(
        "--impl", action="append", default=[], type=_named_impl, metavar="NAME=PATH", help="another implementation"
    )
    args = parser.parse_args()
    rows, short = [], []
    with tempfile.TemporaryDirectory() as tmp:
        found = implementations(Path(tmp)) | dict(args.impl)
        for name, impl in found.items():
            if args.k and not any(k in name for k in args.k):
                continue
            records = measure(impl, args.profile, args.n)
            for clause, required in REQUIRED.items():
                mine = [r for r in records if r["what"].startswith(clause)]
                largest = max((r["err"] for r in mine), default=0.0)
                margin = min((r["tol"] / r["err"] for r in mine if r["err"] > 0), default=float("inf"))
                if margin < required:
                    short.append(f"{name} {clause}: {margin:.3g}x < {required:g}x")
                rows.append(f"| {name} | {clause} | {len(mine)} | {largest:.2e} | {margin:.3g}x |")
                print(rows[-1], flush=True)
    print(f"\nprofile {args.profile}; margins below the required: {'; '.join(short) or 'none'}")
    print("| implementation | clause | comparisons | largest error | smallest tolerance / error |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    return 1 if short else 0


if __name__ == "__main__":
    raise SystemExit(main())
