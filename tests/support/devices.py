"""float32 comparisons on a defined footing per device: TF32 off on CUDA while a test runs, and the
tolerances that differ by device, each with its reason, in one table.

TF32.  On Ampere and later GPUs cuDNN rounds the inputs of float32 convolutions to TF32 (10
mantissa bits, a relative error near 1e-3 per convolution) unless told not to:
``torch.backends.cudnn.allow_tf32`` is True by default (matmul's TF32 is off by default).  The
suite's float32 tolerances are sized for float32 rounding (about 1e-7 per operation), so with TF32
on a correct model fails them (SE-1, NUM-3's batch independence, channels-last among others).  The
plugin's autouse fixture ``float32_footing`` (tests/support/plugin.py) runs every test of
``--device cuda`` under ``no_tf32()``, which restores the previous settings afterwards;
tests/extras/test_cuda.py, which uses the GPU under any ``--device``, takes ``no_tf32()`` itself.

The table.  With TF32 off, float32 kernels on CUDA differ from the CPU's by the order of their sums,
within the tolerances that already allow for other summation orders on the CPU (other kernel sets,
layouts, batch sizes).  Only where a test's CPU tolerance rests on the very same kernels running on
both sides does CUDA need its own value.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Float32Tolerances:
    """Relative L2 tolerances of float32 comparisons whose bound depends on the device."""

    # A captured graph (torch.jit.script/trace, torch.fx, torch.export, compile's aot_eager) against
    # eager mode on the same weights and input.  CPU: the same kernels run, bit for bit in practice.
    # CUDA: TorchScript's profiling executor fuses elementwise ops (SiLU, sigmoid, the SE product)
    # into generated kernels once it has profiled a graph, which moves the logits by rounding; a
    # wrong graph moves them by 1e-3 or more.
    capture: float


FLOAT32: dict[str, Float32Tolerances] = {
    "cpu": Float32Tolerances(capture=1e-6),
    "cuda": Float32Tolerances(capture=2e-5),
}


def float32_tolerances(device: torch.device) -> Float32Tolerances:
    if device.type not in FLOAT32:
        raise ValueError(f"no float32 tolerances for device type {device.type!r} (known: {', '.join(FLOAT32)})")
    return FLOAT32[device.type]


@contextmanager
def no_tf32() -> Iterator[None]:
    """float32 convolutions and matmuls in full float32 precision inside; the previous settings after.

    The legacy flags (``cudnn.allow_tf32``, the float32 matmul precision) are what torch's own code
    (inductor's convolution templates among it) still reads; if they cannot be read because the
    newer ``fp32_precision`` properties were set, those are used instead."""
    try:
        saved = torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision()
    except RuntimeError:  # "a mix of the legacy and new APIs": the new ones are in use
        with _no_tf32_fp32_precision():
            yield
        return
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = saved[0]
        torch.set_float32_matmul_precision(saved[1])


@contextmanager
def _no_tf32_fp32_precision() -> Iterator[None]:
    backends = (torch.backends.cuda.matmul, torch.backends.cudnn.conv)
    saved = [b.fp32_precision for b in backends]
    for b in backends:
        b.fp32_precision = "ieee"
    try:
        yield
    finally:
        for b, value in zip(backends, saved, strict=True):
            b.fp32_precision = value
