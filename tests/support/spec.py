"""The spec, read once: data from spec/*.toml and clause IDs from spec/SPEC.md."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

SPEC_DIR = Path(__file__).resolve().parents[2] / "spec"
CLAUSE_HEADING = re.compile(r"^#### ([A-Z][A-Z0-9]*-\d+) · (.+)$")


@dataclass(frozen=True)
class Clause:
    id: str
    title: str
    text: str
    optional: bool


@cache
def data() -> dict[str, Any]:
    """spec/efficientnet.toml: the hand-written normative numbers."""
    with open(SPEC_DIR / "efficientnet.toml", "rb") as f:
        return tomllib.load(f)


@cache
def expected() -> dict[str, Any]:
    """spec/expected.toml: expectations derived from timm by `nox -s spec`."""
    path = SPEC_DIR / "expected.toml"
    if not path.exists():
        return {}
    with open(path, "rb") as f:
        return tomllib.load(f)


@cache
def clauses() -> dict[str, Clause]:
    """Clause ID -> clause, in document order, parsed from SPEC.md headings."""
    found: dict[str, Clause] = {}
    current: tuple[str, str] | None = None
    body: list[str] = []

    def close() -> None:
        if current is not None:
            text = " ".join(line.strip() for line in body if line.strip() and not line.startswith("#"))
            found[current[0]] = Clause(current[0], current[1], text, "(optional)" in current[1])

    for line in (SPEC_DIR / "SPEC.md").read_text().splitlines():
        m = CLAUSE_HEADING.match(line)
        if m or line.startswith("## "):
            close()
            current, body = (m.group(1), m.group(2)) if m else None, []
        elif current is not None:
            body.append(line)
    close()
    return found


def variants(include_optional: bool = True) -> list[str]:
    return [n for n, v in data()["variants"].items() if include_optional or not v.get("optional", False)]


def variant(name: str) -> dict[str, Any]:
    return data()["variants"][name]


def base_widths() -> list[int]:
    d = data()["base"]
    return [d["stem"]["channels"], *(s["channels"] for s in d["stages"]), d["head"]["channels"]]


def base_depths() -> list[int]:
    return [s["repeats"] for s in data()["base"]["stages"]]
