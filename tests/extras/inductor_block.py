"""One MBConv block through torch.compile's default backend (inductor), in a process of its own.

    python tests/extras/inductor_block.py --impl IMPL --device DEVICE --out FILE

Builds ``impl.MBConv(16, 16, 6, 3, 1, 24, 0.1)`` (expand, depthwise, SE, project, residual with
stochastic depth in eval mode), calibrates its BN statistics, and saves the eager and the compiled
outputs on one input to FILE (``torch.save``, a dict with ``eager`` and ``compiled``); the test
(tests/extras/test_deployment.py) compares them.

Why a process of its own: inductor generates C++ (or Triton) code, compiles it and loads it into
the process that asked.  In the 3 December CI run that process, an xdist worker that had run other
tests before, died of a fatal signal inside the compiled block, and once under
ATEN_CPU_CAPABILITY=avx2 it computed NaN; neither came back in a fresh process, with a cold or a
warm inductor cache.  Here the compiled code runs in a fresh interpreter, so what an earlier test
left in the process cannot decide the result, and a crash is one test's message instead of a
lost worker.
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


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

    from tests.support import devices, torchutil
    from tests.support import impl as impl_loader

    if "OMP_NUM_THREADS" in os.environ:
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    impl = impl_loader.load(args.impl)
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
