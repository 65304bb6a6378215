"""The front page and the docs/ pages: the README stays one page with the commands CI runs, every link
resolves, and where a page states what the code does (the report's JSON fields, the errata, the
deployment tolerances) it agrees with the code."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.support import spec, verdict

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_the_readme_is_one_page_with_the_commands_ci_and_a_user_run():
    text = README.read_text()
    assert len(text.splitlines()) <= 120, "README.md is the front page: move details into docs/"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python3 -m nox -s tests" in ci, ".ci/run no longer runs the README's test command"
    assert "python3 -m nox -s tests" in text
    assert "python3 -m nox -s verify -- --impl" in text


def test_the_readmes_verdict_is_shaped_as_the_report_prints_it():
    block = re.search(r"## What a verdict looks like.*?```text\n(.*?)```", README.read_text(), re.DOTALL)
    assert block, "README.md: no pasted verdict under 'What a verdict looks like'"
    lines = block.group(1).strip().splitlines()
    assert lines[0].startswith("root cause "), "the paste starts with the root cause"
    assert lines[-1].startswith("verdict: "), "the paste ends with the verdict"
    assert "does NOT conform" in lines[-1], "the pasted verdict is a fork's with a bug"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page: Path):
    missing = [
        target
        for target in _LINK.findall(page.read_text())
        if "://" not in target and not (page.parent / target).exists()
    ]
    assert not missing, f"{page.relative_to(ROOT)} links to files that do not exist: {missing}"


def test_the_report_page_names_every_json_field(tmp_path: Path):
    json_path, _ = verdict.Report.of("fork", verdict.Clauses().rows(), []).write(tmp_path / "r")
    payload = json.loads(json_path.read_text())
    page = (DOCS / "report.md").read_text()
    fields = [*payload, *payload["clauses"][0]]
    unnamed = [f for f in fields if f"`{f}`" not in page]
    assert not unnamed, f"docs/report.md does not describe the report's JSON fields {unnamed}"


def test_the_errata_page_cites_the_spec_errata_table():
    page = (DOCS / "errata.md").read_text()
    table = {e.id: e.clauses for e in spec.errata()}
    cited = re.findall(r"\((E-\d+), clause ([A-Z0-9]+-\d+)\)", page)
    assert cited, "docs/errata.md cites no erratum as (E-n, clause X)"
    wrong = [(e, c) for e, c in cited if c not in table.get(e, ())]
    assert not wrong, f"docs/errata.md cites errata with clauses other than spec/SPEC.md section 9's: {wrong}"
    tutorial = [e.id for e in spec.errata() if e.departure.startswith("the tutorial")]
    assert sorted({e for e, _ in cited}) == sorted(tutorial), "docs/errata.md lists every tutorial erratum"


def test_the_performance_page_states_the_deployment_tests_tolerances():
    from tests.extras import test_deployment

    page = (DOCS / "performance.md").read_text()
    stated = {float(x) for x in re.findall(r"within ([0-9.]+(?:e-?\d+)?)", page)}
    for name in ("CHANNELS_LAST_TOL", "CHANNELS_LAST_GRAD_TOL", "BF16_TOL"):
        value = getattr(test_deployment, name)
        assert value in stated, f"docs/performance.md does not state {name} = {value:g} (it states {sorted(stated)})"
