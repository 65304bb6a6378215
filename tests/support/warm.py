"""The reference work of a conformance run that depends on nothing of the implementation, done
once in subrun's preloaded server (through warm_server.py) so that every run forked from it
finds it done: timm's and torchvision's models on the meta device, timm's tap shapes at the
native and the small odd input, and the prepared references of NUM-1 and NUM-4 with their
recorded outputs.  A run that is not forked (a fresh interpreter, `nox -s verify`) computes the
same where it is used: the meta models and shapes once (tests/support/reference.py's caches), each
prepared reference in the test that asks for it.  The values are the same either way (the same
code under the same seeds, on one thread as in an xdist worker or a runner's child).

``warm()`` does the work (13 s on one core); the server imports tests/support/warm_server.py,
which calls it.
"""

from __future__ import annotations

import time

import torch

from tests.support import reference, spec

NUM4_EPS = spec.data()["base"]["layers"]["batchnorm_eps"]  # BLOCK-2: test_torchvision.py's PYTORCH_EPS_VALUE


def warm() -> float:
    """Fill the caches; returns the seconds it took."""
    start = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        named = spec.variants(include_optional=False)
        for name in spec.variants():
            reference.timm_meta(name)
            reference.timm_shapes(name, reference.native_input(name))
            reference.timm_shapes(name, reference.SMALL_ODD_INPUT)
        for name in [*named, "b8"]:  # NUM-1's variants
            reference.prepared_named("timm", name, reference.EVAL_RESOLUTION, reference.CPU, keep=True)
        for name in named:  # NUM-4's
            reference.torchvision_meta(name)
            reference.prepared_named(
                "torchvision", name, reference.EVAL_RESOLUTION, reference.CPU, eps=NUM4_EPS, keep=True
            )
    finally:
        torch.set_num_threads(threads)
    return time.perf_counter() - start
