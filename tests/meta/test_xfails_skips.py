"""--xfails-file and --skips-file (tests/support/idfiles.py): a fork declares its known deviations.

As in array-api-tests, each line of the file names a test (a full test ID, a test ID without its
parameters, a test file, a directory) and ``#`` starts a comment; here a line can also name a
spec clause (every test citing it) or a bare test name, and the comment after an entry is the
reason shown.  Expected failures are strict: one that passes fails the run and the clause, so the
file cannot go stale.  End to end, pytest runs in a subprocess on tests/conformance/test_api.py
against a copy of effnet whose EfficientNet names its head conv `head_conv` instead of `pre`,
which fails exactly one API-3 test.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.support import idfiles, subrun, verdict

ROOT = Path(__file__).resolve().parents[2]
SELECTION = "tests/conformance/test_api.py"
FAILING_TEST = f"{SELECTION}::test_efficientnet_children_in_order"


@pytest.fixture
def deviating_fork(tmp_path: Path) -> Path:
    text = (ROOT / "effnet" / "model.py").read_text()
    assert text.count("self.pre") == 2, "effnet/model.py changed: update the deviating fork of this test"
    path = tmp_path / "renamed_pre.py"
    path.write_text(text.replace("self.pre", "self.head_conv"))
    return path


def run(tmp_path: Path, impl: str, *args: str, **files: str) -> tuple[int, str, dict[str, verdict.Row]]:
    """Run the selection with the given id files (option name -> file text); (exit status, output,
    report rows by clause)."""
    options = []
    for option, text in files.items():
        path = tmp_path / f"{option}.txt"
        path.write_text(text)
        options += [f"--{option.replace('_', '-')}", str(path)]
    report = tmp_path / "report"
    env = {k: v for k, v in os.environ.items() if k not in ("EFFNET_IMPL", "PYTEST_ADDOPTS")}
    cmd = [SELECTION, "-p", "no:cacheprovider", "-rxXs", "--impl", impl, "--report", str(report), *options, *args]
    result = subrun.pytest(cmd, env=env, cwd=ROOT, timeout=300)
    output = result.stdout + result.stderr
    written = verdict.read(report)
    return result.returncode, output, {r.clause: r for r in written.clauses} if written else {}


def test_the_deviating_fork_fails_without_a_file(tmp_path: Path, deviating_fork: Path) -> None:
    returncode, output, rows = run(tmp_path, str(deviating_fork))
    assert returncode == 1, output
    assert rows["API-3"].status == "FAILED", rows["API-3"]
    assert rows["API-3"].detail.startswith(FAILING_TEST), rows["API-3"]


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_clause_entry_turns_the_deviation_into_an_expected_failure(
    tmp_path: Path, deviating_fork: Path, xdist: list[str]
) -> None:
    xfails = "# known deviations of renamed_pre\nAPI-3   # the head conv is called head_conv\nno_such_test_anywhere\n"
    returncode, output, rows = run(tmp_path, str(deviating_fork), *xdist, xfails_file=xfails)
    assert returncode == 0, output
    assert rows["API-3"].status == "XFAIL", rows["API-3"]
    assert rows["API-3"].xfailed == 1, rows["API-3"]
    assert rows["API-3"].passed >= 1, rows["API-3"]  # the other API-3 tests pass: ordinary passes
    assert "XPASS" not in output, output
    assert "the head conv is called head_conv" in output, f"the entry's note is not the reason:\n{output}"
    assert "no_such_test_anywhere" in output, f"an entry matching no test gave no warning:\n{output}"


@pytest.mark.parametrize(
    ("entry", "passed"),
    [(FAILING_TEST, "its test passed"), ("API-3", "all {n} of its tests passed")],
    ids=["test", "clause"],
)
def test_a_stale_expected_failure_fails_the_run(tmp_path: Path, entry: str, passed: str) -> None:
    # effnet passes API-3, so declaring it a known deviation is stale.
    returncode, output, rows = run(tmp_path, "effnet", xfails_file=f"{entry}  # renamed head\n")
    assert returncode == 1, output
    passed = passed.format(n=rows["API-3"].passed)  # every API-3 test of the selection
    message = f"line 1: {entry} (renamed head) is listed as a known deviation, but {passed}: remove the entry"
    assert message in output, output
    assert rows["API-3"].status == "FAILED", rows["API-3"]
    assert message in rows["API-3"].detail, rows["API-3"]


def test_skips_file_skips_with_its_reason(tmp_path: Path, deviating_fork: Path) -> None:
    returncode, output, rows = run(tmp_path, str(deviating_fork), skips_file="test_efficientnet_children_in_order\n")
    assert returncode == 0, output
    assert rows["API-3"].skipped == 1, rows["API-3"]
    assert rows["API-3"].failed == 0, rows["API-3"]
    assert "skipped (--skips-file" in output, output


def test_missing_id_file_is_a_usage_error(tmp_path: Path) -> None:
    cmd = [SELECTION, "-p", "no:cacheprovider", "--xfails-file", "no/such/xfails.txt"]
    result = subrun.pytest(cmd, cwd=ROOT, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 4, output
    assert "--xfails-file no/such/xfails.txt: cannot read it" in output, output
    assert "Traceback" not in output, output


# --- Parsing and matching, in process --------------------------------------------------------
def test_unknown_clause_id_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "xfails.txt"
    path.write_text("SE-1\nSE-99  # a typo\n")
    with pytest.raises(pytest.UsageError, match=r"line 2: 'SE-99' is not a clause ID of spec/SPEC.md"):
        idfiles.read_id_file("--xfails-file", str(path))


def test_id_file_ignores_blank_lines_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "skips.txt"
    path.write_text("# header\n\n  SE-1   # max-pool squeeze\ntests/conformance/test_api.py\n")
    entries = idfiles.read_id_file("--skips-file", str(path))
    assert [(e.id, e.note, e.line) for e in entries] == [
        ("SE-1", "max-pool squeeze", 3),
        ("tests/conformance/test_api.py", "", 4),
    ]


ITEM = SimpleNamespace(
    nodeid="tests/conformance/test_blocks.py::test_se_squeeze[b0]",
    name="test_se_squeeze[b0]",
    originalname="test_se_squeeze",
)


@pytest.mark.parametrize(
    "entry",
    [
        "SE-1",  # a clause the test cites
        "tests/conformance/test_blocks.py::test_se_squeeze[b0]",  # the full test ID
        "tests/conformance/test_blocks.py::test_se_squeeze",  # every parametrization
        "tests/conformance/test_blocks.py",  # the file
        "tests/conformance/",  # the directory
        "test_se_squeeze",  # the bare name
        "test_se_squeeze[b0]",
    ],
)
def test_entry_matches(entry: str) -> None:
    assert idfiles._matches(entry, ITEM, ["SE-1", "NUM-1"])


@pytest.mark.parametrize(
    "entry",
    ["SE-2", "tests/conformance/test_blocks.py::test_se", "tests/conformance/test_block", "test_se", "tests/meta/"],
)
def test_entry_does_not_match(entry: str) -> None:
    assert not idfiles._matches(entry, ITEM, ["SE-1", "NUM-1"])
