"""Imported by subrun's preloaded server (subrun.WARM): warm.py's reference work, done at import."""

from __future__ import annotations

import gc

from tests.support import warm

try:
    SECONDS: float | None = warm.warm()
except Exception:  # the server must start whatever happens here: the forked runs compute what is missing
    SECONDS = None
# What the server holds is read by the forked runs, never freed: out of the collector's reach, a
# child's garbage collections do not write to (and so copy) the pages of the server's objects.
gc.freeze()
