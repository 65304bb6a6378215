"""One MBConv block through torch.compile's default backend (inductor), in a process of its own.

    python tests/extras/inductor_block.py --impl IMPL --device DEVICE --out FILE

Builds ``impl.MBConv(16, 16, 6, 3, 1, 24, 0.1)`` (expand, depthwise, SE, project, residual with
stochastic depth in eval mode), calibrates its BN statistics, and saves the eager and the compiled
outputs on one input to FILE (``torch.save``, a dict with ``eager`` and ``compiled``); the test
(tests/extras/test_deployment.py) compares them.

Why a process of its own, and why a cache directory per CPU capability: inductor generates C++
for the CPU's vector width, compiles it and loads it into the process that asked, and it caches
both on disk (``TORCHINDUCTOR_CACHE_DIR``, by default one directory per user).  torch 2.14's cache
does not tell ``ATEN_CPU_CAPABILITY`` apart: code generated under ``avx2`` (8 floats a vector) is
reused by a run on this machine's native AVX-512, where each vector store writes 16 floats into an
8-float slot.  The block then crashed (SIGSEGV in CI on 3 December, SIGABRT or "stack smashing"
here) after one run under ``ATEN_CPU_CAPABILITY=avx2`` on the same cache directory, every time;
the other way round it computed garbage (relative errors of 1e23, 1e31, once NaN), and under
``default`` the reused code did not compile.  So the child keys its cache directory by the
capability (``cache_dir``), and runs apart from the xdist worker, so that a crash of compiled code
is this test's message, not a lost worker.  (A fresh interpreter: torch reads OMP_NUM_THREADS,
which the test sets to 1 under xdist, by itself.)
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def cache_dir(environ: Mapping[str, str]) -> str:
    """Inductor's cache directory for a run under ``environ``: the one it names (else inductor's
    default, torchinductor_USER in the temporary directory) with a subdirectory per
    ``ATEN_CPU_CAPABILITY`` ("native" when unset or empty)."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    base = environ.get("TORCHINDUCTOR_CACHE_DIR") or default_cache_dir()
    return os.path.join(base, "effnet-aten-cpu-capability-" + (environ.get("ATEN_CPU_CAPABILITY") or "native"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--impl", required=True, help="module name or .py path, as pytest's --impl")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", required=True, type=Path)
    args = p.parse_args(argv)
    faulthandler.enable()  # a fatal signal prints every thread's Python stack to stderr
    # As `python -m pytest` from the same directory: --impl resolves as it did in the parent.
    sys.path[:0] = [os.getcwd(), str(ROOT)]

    import torch

    from tests.support import devices, loader, torchutil

    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache_dir(os.environ)  # read when inductor compiles
    impl = loader.load(args.impl)
    device = torch.device(args.device)
    torch.manual_seed(0)
    block = impl.MBConv(16, 16, 6, 3, 1, 24, 0.1).to(device)
    gen = torch.Generator().manual_seed(1)
    torchutil.calibrate_batchnorm(block, [torch.randn(8, 16, 16, 16, generator=gen).to(device)])
    x = torch.randn(2, 16, 16, 16, generator=gen).to(device)
    # TF32 off on CUDA, as the suite's float32_footing fixture does in the parent.
    with torch.no_grad(), devices.no_tf32():
        eager = block(x)
        compiled = torch.compile(block, fullgraph=True)(x)
    torch.save({"eager": eager.cpu(), "compiled": compiled.cpu()}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
