"""Imported by subrun's preloaded server (subrun.WARM): warm.py's reference work, done at import."""

from __future__ import annotations

from tests.support import warm

try:
    SECONDS: float | None = warm.warm()
except Exception:  # the server must start whatever happens here: the forked runs compute what is missing
    SECONDS = None
