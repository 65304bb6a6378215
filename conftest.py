"""Root conftest: the verification suite's plugin and hypothesis settings profiles.

Options (see `pytest --help`, group "EfficientNet verification"): --impl, --device,
--report, --xfails-file, --skips-file, --run-extras.  Hypothesis profiles: `dev`
(default), `ci` (derandomized: the same examples on every run) and `thorough`;
choose with --hypothesis-profile NAME or $EFFNET_HYPOTHESIS_PROFILE.
"""

import atexit
import gc
import os

from hypothesis import HealthCheck, settings
from hypothesis.internal.conjecture import engine as _engine

# One module per concern: options and loading, the clause report, ID files and expected failures, the
# refactor check's baseline, each test's bound and what a fork that hangs, exits or crashes did (each
# module's docstring names the hooks it owns).
pytest_plugins = [
    "tests.support.plugin",
    "tests.support.watchdog",
    "tests.support.report",
    "tests.support.idfiles",
    "tests.support.baseline",
]

# pytest-xdist already runs one worker per core: more than one intra-op thread per worker
# oversubscribes the cores, and OpenMP's spinning threads then slow every worker down (about
# ten times for a model forward on a busy 2-core machine).
if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    torch.set_num_threads(1)

# Model-building properties are slow per example; the deadline is off because the
# first example of a worker pays for imports and allocator warm-up.  A property stops at its first
# failure (report_multiple_bugs=False): by default hypothesis goes on drawing at least ten examples
# in search of other failures, each building models (12 s of a failing property's 17 s), and one
# failure decides the test.  `thorough` still looks for every distinct failure.
settings.register_profile("dev", max_examples=25, deadline=None, report_multiple_bugs=False)
settings.register_profile(
    "ci",
    max_examples=25,
    deadline=None,
    derandomize=True,
    print_blob=True,
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("thorough", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("EFFNET_HYPOTHESIS_PROFILE", "dev"))

# Shrinking re-runs a failing property, each attempt building its models again: a broken fork's
# verdict would wait minutes on it.  Hypothesis bounds the time it spends shrinking one failure
# (five minutes; a module constant that it keeps monkeypatchable for this purpose); the suite lowers
# the bound to $EFFNET_SHRINK_SECONDS (default 3: a shrink step of a model-building property takes
# up to 2 s).  The failure, its clause and the verdict are the same; only the example may be a
# little less than minimal (the report says so).
SHRINK_SECONDS = int(os.environ.get("EFFNET_SHRINK_SECONDS", "3"))
_engine.MAX_SHRINKING_SECONDS = SHRINK_SECONDS

# At exit the interpreter's last garbage collections walk every object that torch, timm and
# hypothesis created: 0.8 s of each pytest process's exit (the controller and every xdist worker;
# the controller waits for the workers), with nothing left to reclaim in a process that is ending.
# Freezing the heap at exit (gc.freeze: later collections skip the objects it holds) leaves 0.15 s.
# Handlers registered after this one (pytest's, the plugins') still run first; files the suite
# writes are closed explicitly, not by the collector.
atexit.register(gc.freeze)
