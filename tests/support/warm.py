"""Imported by subrun's preloaded server for a sweep of whole conformance runs (subrun.WARM): the
reference work that depends on nothing of the implementation (models.warm_up), done once at import, so
that every run forked from the server finds it done."""

from __future__ import annotations

from tests.support import models

try:
    SECONDS: float | None = models.warm_up()
except Exception:  # the server must start whatever happens here: the forked runs compute what is missing
    SECONDS = None
