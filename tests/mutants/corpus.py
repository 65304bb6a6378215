"""The mutant corpus (corpus.toml): deliberately broken forks of effnet and correct variations,
each a list of text patches applied to a copy of effnet/model.py.

A patch whose text no longer occurs in effnet/model.py exactly as often as it says is an error
(``CorpusError``), so that a change to effnet cannot silently turn a mutant into a copy of
effnet; ``python tests/mutants/run.py --check`` and tests/mutants/test_corpus.py check this.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import spec

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "effnet" / "model.py"
CORPUS = Path(__file__).with_name("corpus.toml")
_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]*$")
# A fork that imported effnet would test effnet, not itself.
_IMPORTS_EFFNET = re.compile(r"^\s*(from\s+effnet\b|import\s+effnet\b)", re.MULTILINE)


class CorpusError(Exception):
    """The corpus is out of date with effnet/model.py or malformed; the message lists every problem."""


@dataclass(frozen=True)
class Patch:
    old: str
    new: str
    count: int = 1


@dataclass(frozen=True)
class Fork:
    kind: str  # "mutant" (must be rejected) or "variation" (must be accepted)
    name: str
    description: str
    clauses: tuple[str, ...]
    patches: tuple[Patch, ...]
    # A justified exception: the root causes the report names instead of ``clauses``, and why.
    root_causes: tuple[str, ...] = ()
    root_causes_reason: str = ""
    # A variation never judged in a combination with others (``combine``), and why.
    alone: str = ""
    # A mutant whose network computes what effnet's does (a helper's form): why its network-only form
    # (run.py --network-only) has nothing to reject.
    network_unchanged: str = ""

    @property
    def expected_roots(self) -> tuple[str, ...]:
        """The root causes the conformance report must name for this mutant: exactly these."""
        return self.root_causes or self.clauses

    @property
    def module_name(self) -> str:
        return f"{self.kind}_{self.name.replace('-', '_').replace('.', '_')}"


def load(path: Path = CORPUS) -> list[Fork]:
    """Every fork of the corpus, mutants first, validated (names, fields, clause IDs)."""
    with open(path, "rb") as f:
        data = tomllib.load(f)
    problems: list[str] = []
    forks: list[Fork] = []
    for kind in ("mutant", "variation"):
        for i, entry in enumerate(data.get(kind, [])):
            fork = _parse(kind, i, entry, problems)
            if fork is not None:
                forks.append(fork)
    unknown_tables = set(data) - {"mutant", "variation"}
    if unknown_tables:
        problems.append(f"unknown tables {sorted(unknown_tables)} (expected [[mutant]] and [[variation]])")
    names = [f.name for f in forks]
    problems += [f"name {n!r} is used twice" for n in sorted({n for n in names if names.count(n) > 1})]
    known = spec.clauses()
    for fork in forks:
        cited = (*fork.clauses, *fork.root_causes)
        problems += [f"{fork.name}: clause {c!r} is not in spec/SPEC.md" for c in cited if c not in known]
    if problems:
        raise CorpusError(f"{path}:\n  " + "\n  ".join(problems))
    return forks


def _parse(kind: str, index: int, entry: dict[str, Any], problems: list[str]) -> Fork | None:
    where = f"[[{kind}]] #{index + 1} ({entry.get('name', '?')})"
    allowed = {"name", "description", "clauses", "patch", "root_causes", "root_causes_reason"}
    allowed |= {"alone"} if kind == "variation" else {"network_unchanged"}
    if extra := set(entry) - allowed:
        problems.append(f"{where}: unknown keys {sorted(extra)}")
    name, description = entry.get("name", ""), entry.get("description", "")
    if not isinstance(name, str) or not _NAME.match(name):
        problems.append(f"{where}: name must be lower-case kebab-case, got {name!r}")
        return None
    if not description:
        problems.append(f"{where}: no description")
    clauses = tuple(entry.get("clauses", ()))
    if kind == "mutant" and not clauses:
        problems.append(f"{where}: a mutant names the clause(s) it violates")
    patches = []
    for p in entry.get("patch", []):
        if set(p) - {"old", "new", "count"} or not isinstance(p.get("old"), str) or not isinstance(p.get("new"), str):
            problems.append(f"{where}: a patch has `old` and `new` strings and an optional `count`")
            continue
        if p["old"] == p["new"] or not p["old"]:
            problems.append(f"{where}: a patch must replace a non-empty text by a different one")
        patches.append(Patch(p["old"], p["new"], int(p.get("count", 1))))
    if kind == "mutant" and not patches:
        problems.append(f"{where}: a mutant needs at least one patch")
    roots, reason = tuple(entry.get("root_causes", ())), str(entry.get("root_causes_reason", ""))
    if bool(roots) != bool(reason):
        problems.append(f"{where}: root_causes (an exception to `clauses`) needs a root_causes_reason, and back")
    alone, unchanged = str(entry.get("alone", "")), str(entry.get("network_unchanged", ""))
    return Fork(kind, name, description, clauses, tuple(patches), roots, reason, alone, unchanged)


def apply(fork: Fork, source: str) -> str:
    """``source`` with the fork's patches applied in order; CorpusError if one does not match."""
    problems = []
    for n, patch in enumerate(fork.patches, 1):
        found = source.count(patch.old)
        if found != patch.count:
            first = patch.old.strip().splitlines()[0] if patch.old.strip() else patch.old
            problems.append(
                f"{fork.kind} {fork.name}, patch {n}: its text occurs {found} time(s) in effnet/model.py, "
                f"not {patch.count} (update corpus.toml): {first!r}"
            )
            continue
        source = source.replace(patch.old, patch.new)
    if problems:
        raise CorpusError("\n".join(problems))
    return source


def build(fork: Fork, source: str) -> str:
    """The fork's module text, checked to compile and not to import effnet."""
    header = f"# {fork.kind} {fork.name!r} of effnet/model.py (tests/mutants/corpus.toml): {fork.description}\n"
    text = header + apply(fork, source)
    try:
        compile(text, f"{fork.module_name}.py", "exec")
    except SyntaxError as e:
        raise CorpusError(f"{fork.kind} {fork.name}: the patched module does not compile: {e}") from None
    if _IMPORTS_EFFNET.search(text):
        raise CorpusError(f"{fork.kind} {fork.name}: the patched module imports effnet, so it would test effnet")
    return text


def check_all(forks: list[Fork], source: str | None = None) -> dict[str, str]:
    """Every fork's module text by name; CorpusError listing every fork that no longer applies."""
    source = SOURCE.read_text() if source is None else source
    built, problems = {}, []
    for fork in forks:
        try:
            built[fork.name] = build(fork, source)
        except CorpusError as e:
            problems.append(str(e))
    if problems:
        raise CorpusError("\n".join(problems))
    return built


COMBINED = "variations-combined"


def _spans(fork: Fork, source: str) -> list[tuple[int, int]]:
    """Where in ``source`` the fork's patches apply: every occurrence of each patch's old text."""
    spans = []
    for patch in fork.patches:
        start = source.find(patch.old)
        while start != -1:
            spans.append((start, start + len(patch.old)))
            start = source.find(patch.old, start + 1)
    return spans


def combine(variations: list[Fork], source: str) -> tuple[Fork | None, list[Fork]]:
    """One variation with the patches of as many of ``variations`` as combine, in corpus order,
    and the variations left to be judged alone: those marked ``alone`` and those whose patches
    touch code that an earlier member's patches touch (two rewrites of the same code, whose
    combination would be neither's function).  None when fewer than two combine.  A combination
    that passes shows every member's construct passing beside the others; one that is rejected
    is judged again member by member (run.py), so that the report names the variation rejected."""
    members: list[Fork] = []
    left: list[Fork] = []
    taken: list[tuple[int, int]] = []
    text = source
    for fork in variations:
        spans = _spans(fork, source)
        touches = any(s1 <= e2 and s2 <= e1 for s1, e1 in spans for s2, e2 in taken)  # touching counts too
        if fork.alone or touches:
            left.append(fork)
            continue
        try:
            text = apply(fork, text)
        except CorpusError:  # an old text that another member's new text added or removed
            left.append(fork)
            continue
        members.append(fork)
        taken += spans
    if len(members) < 2:
        return None, variations
    description = f"{len(members)} variations applied together: " + ", ".join(f.name for f in members)
    combined = Fork("variation", COMBINED, description, (), tuple(p for f in members for p in f.patches))
    return combined, left


def members(combined: Fork, variations: list[Fork]) -> list[Fork]:
    """The variations whose patches make up ``combined``."""
    patches = set(combined.patches)
    return [f for f in variations if f.patches and set(f.patches) <= patches]


def write(fork: Fork, text: str, directory: Path) -> Path:
    path = directory / f"{fork.module_name}.py"
    path.write_text(text)
    return path
