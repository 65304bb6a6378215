"""The refactor check (REF-1, ``--baseline REF``; tests/support/baseline.py, tests/refactor) end to end.

pytest runs in a subprocess on a small selection of tests/refactor (B0 at 33 px, and the drawn
blocks): a pure refactor of effnet (reformatted, a local renamed) passes against the git revision
it came from and is reported bit-identical, a one-line change of function fails naming the first
diverging block, a bad REF stops the run with one usage error, and without ``--baseline`` REF-1 is
reported skipped with the reason, never passed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import baseline as baseline_support
from tests.support import subrun

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "effnet" / "model.py"
B0 = "tests/refactor/test_baseline.py::test_named_variant_computes_the_same_function_as_the_baseline[b0]"
BLOCKS = "tests/refactor/test_baseline.py::test_mbconv_computes_the_same_function_as_the_baseline"
USAGE_ERROR = 4  # pytest.ExitCode.USAGE_ERROR


def run(*args: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("EFFNET_IMPL", "EFFNET_BASELINE", "PYTEST_ADDOPTS")}
    # One intra-op thread: several OpenMP threads on a busy machine make these runs ten times slower.
    env.update(OMP_NUM_THREADS="1", EFFNET_HYPOTHESIS_PROFILE="ci")
    result = subrun.pytest(["-p", "no:cacheprovider", "-n", "0", *args], env=env, cwd=ROOT, timeout=300)
    return result.returncode, result.stdout + result.stderr


def fork(tmp_path: Path, name: str, old: str, new: str) -> Path:
    """A copy of effnet/model.py with one text replaced (the text must occur exactly once)."""
    text = SOURCE.read_text()
    assert text.count(old) == 1, f"effnet/model.py no longer contains {old!r} exactly once: update this test"
    path = tmp_path / f"{name}.py"
    path.write_text(text.replace(old, new))
    return path


def test_a_reformatted_copy_is_bit_identical_to_the_git_revision_it_came_from(tmp_path: Path) -> None:
    """effnet/model.py as committed at HEAD, reformatted (ruff, line length 60) and with a local renamed,
    against ``--baseline HEAD``: the revision's package is built beside it, and a pure refactor is
    reported bit-identical (HEAD, not the working tree: uncommitted edits cannot change the verdict)."""
    commit = baseline_support.git_commit("HEAD")
    if commit is None:
        pytest.skip("not a git checkout (or git is not installed)")
    if importlib.util.find_spec("ruff") is None:
        pytest.skip("ruff is not installed (the test extra has it: pip install -e '.[test]')")
    show = subprocess.run(["git", "show", f"{commit}:effnet/model.py"], cwd=ROOT, capture_output=True, check=True)
    text = show.stdout.decode()
    assert "expanded = n_in * expansion" in text, "effnet/model.py has no local 'expanded': update this test"
    path = tmp_path / "reformatted.py"
    path.write_text(re.sub(r"\bexpanded\b(?! channels)", "hidden", text))
    subprocess.run([sys.executable, "-m", "ruff", "format", "--line-length", "60", str(path)], check=True)
    assert path.read_text().count("\n") > text.count("\n") + 20, "ruff format hardly changed the copy"
    returncode, output = run(B0, BLOCKS, "--impl", str(path), "--baseline", "HEAD")
    assert returncode == 0, f"a reformatted copy of effnet at HEAD fails the refactor check:\n{output}"
    summary = f"refactor check against git HEAD ({commit[:10]}): 2 passing REF-1 test(s) bit-identical"
    assert summary in output, output


# name -> (old text, new text, the first divergence the failure must name)
ONE_LINE_CHANGES = {
    "se_squeeze_max": (
        "return x.mean((2, 3), keepdim=True)",
        "return x.amax((2, 3), keepdim=True)",
        "eval, stage 0 block 0 given the baseline's input: output",
    ),
    "drop_path_schedule_shifted": (
        "return [drop_path_rate * i / num_blocks for i in range(num_blocks)]",
        "return [drop_path_rate * (i + 1) / num_blocks for i in range(num_blocks)]",
        "train mode, stage 1 block 1 given the baseline's input, random state and output gradient: output",
    ),
    "batchnorm_momentum": (
        "nn.BatchNorm2d(out_channels) if bn",
        "nn.BatchNorm2d(out_channels, momentum=0.01) if bn",
        "train mode, stem given the baseline's input, random state and output gradient: 1.running_mean after the step",
    ),
    "forward_composes_differently": (  # every segment the same: only the whole network shows it
        "logits: Tensor = self.head(x)",
        "logits: Tensor = self.head(x * 1.01)",
        "eval, the whole network: output",
    ),
}


@pytest.mark.parametrize("name", sorted(ONE_LINE_CHANGES))
def test_a_one_line_change_fails_naming_the_first_diverging_block(tmp_path: Path, name: str) -> None:
    old, new, where = ONE_LINE_CHANGES[name]
    path = fork(tmp_path, name, old, new)
    returncode, output = run(B0, "--impl", str(path), "--baseline", "effnet")
    assert returncode == 1, f"the refactor check passed a copy of effnet with {new!r}:\n{output}"
    message = f"efficientnet_b0() at 33 px against module effnet: first divergence from the baseline: {where}"
    assert message in output, f"the failure does not name {where!r}:\n{output}"


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        (
            "no-such-ref~7",
            f"--baseline no-such-ref~7: neither a git revision of {ROOT} nor an importable module or .py file",
        ),
        ("json", "--baseline json (module json) is not the EfficientNet API: it defines no network constructor"),
    ],
    ids=["unknown_ref", "not_the_api"],
)
def test_a_bad_ref_is_one_usage_error(ref: str, message: str) -> None:
    returncode, output = run(B0, "--baseline", ref)
    assert returncode == USAGE_ERROR, f"exit status {returncode}, not {USAGE_ERROR} (usage error):\n{output}"
    assert f"ERROR: cannot load the baseline: {message}" in output, output
    assert "Traceback" not in output, f"a traceback was printed:\n{output}"
    assert len([line for line in output.splitlines() if line.startswith("ERROR")]) == 1, output


def test_without_a_baseline_ref1_is_reported_skipped_with_the_reason(tmp_path: Path) -> None:
    returncode, output = run(B0, "--report", str(tmp_path / "report"))
    assert returncode == 0, output
    rows = {row["clause"]: row for row in json.loads((tmp_path / "report.json").read_text())["clauses"]}
    assert rows["REF-1"]["status"] == "skipped", rows["REF-1"]
    assert rows["REF-1"]["passed"] == 0, rows["REF-1"]
    assert "run with --baseline REF" in rows["REF-1"]["detail"], rows["REF-1"]


def test_a_git_revision_is_imported_from_its_own_files_beside_the_live_package() -> None:
    """The revision's effnet imports itself by absolute name: its modules must still be its own (not the
    working tree's), and ``effnet`` in sys.modules must be the live package again afterwards."""
    if baseline_support.git_commit("HEAD") is None:
        pytest.skip("not a git checkout (or git is not installed)")
    import effnet

    found = baseline_support.resolve("HEAD")
    model_module = sys.modules[found.module.EfficientNet.__module__.replace("effnet", found.module.__name__, 1)]
    assert sys.modules["effnet"] is effnet, "loading the baseline replaced the live effnet in sys.modules"
    assert found.module.MBConv is not effnet.MBConv, "the baseline's MBConv is the working tree's"
    assert found.module.EfficientNet.__init__.__code__.co_filename == model_module.__file__
    assert not Path(model_module.__file__).is_relative_to(ROOT), f"the baseline runs {model_module.__file__}"


STRUCTURE_B0 = "tests/refactor/test_baseline.py::test_named_variant_has_the_baseline_structure[b0]"


def test_the_structure_is_compared_up_to_size_1_dimensions(tmp_path: Path) -> None:
    """REF-1's structure test takes an nn.Linear SE (weights (rd, c)) for the baseline's 1x1 convolutions
    (rd, c, 1, 1): the same values, as REF-1's function tests copy them.  A squeeze to other widths fails."""
    from tests.mutants import rewrites

    (se_linear,) = [r for r in rewrites.REWRITES if r.name == "se-linear"]
    linear = tmp_path / "se_linear.py"
    linear.write_text(rewrites.rewrite(SOURCE.read_text(), se_linear))
    returncode, output = run(STRUCTURE_B0, "--impl", str(linear), "--baseline", "effnet")
    assert returncode == 0, f"the structure test rejected an nn.Linear SE:\n{output}"
    wider = fork(
        tmp_path, "se_wider", "nn.Conv2d(c, max(1, c // r), kernel_size=1)", "nn.Conv2d(c, c // r + 1, kernel_size=1)"
    )
    returncode, output = run(STRUCTURE_B0, "--impl", str(wider), "--baseline", "effnet")
    assert returncode == 1, f"the structure test passed an SE of other widths:\n{output}"
    assert "tensors differ from module effnet's" in output, output


def _closest(output: str) -> float:
    found = re.search(r"closest to its tolerance: ([0-9.e+-]+) \(of ([0-9.e+-]+) allowed\)", output)
    assert found, f"no 'closest to its tolerance' in the summary:\n{output}"
    return float(found[1]) / float(found[2])


def test_a_change_of_rounding_is_compared_in_float64_where_both_sides_compute_in_it(tmp_path: Path) -> None:
    """SiLU as ``x * sigmoid(x)`` changes float32 rounding only (about 1e-7 relative per segment): compared
    on float64 copies it comes within float64 rounding, far below any tolerance.  A fork whose blocks cast
    their input to float32 cannot compute in float64 (a float64 weight meets a float32 input): it is
    compared in float32, where it computes exactly what the baseline computes."""
    from tests.mutants import rewrites

    (silu,) = [r for r in rewrites.REWRITES if r.name == "silu-as-x-sigmoid-x"]
    path = tmp_path / "silu_x_sigmoid_x.py"
    path.write_text(rewrites.rewrite(SOURCE.read_text(), silu))
    returncode, output = run(B0, BLOCKS, "--impl", str(path), "--baseline", "effnet")
    assert returncode == 0, f"a change of rounding fails the refactor check:\n{output}"
    assert _closest(output) < 1e-6, f"not compared in float64 (float32 rounding is 1e-2 of a tolerance):\n{output}"
    expand = "self.depthwise(self.expand_pw(x))"
    float32 = fork(tmp_path, "float32", expand, expand.replace("(x)", "(x.float())"))  # float64 weights: raises
    returncode, output = run(B0, BLOCKS, "--impl", str(float32), "--baseline", "effnet")
    assert returncode == 0, f"a fork whose blocks compute in float32 only fails the refactor check:\n{output}"
    assert "2 passing REF-1 test(s) bit-identical" in output, output  # float32 on both sides: the same sums
