"""CUDA (EXT-5): on a CUDA device the model computes the CPU function within stated tolerances, in
eval mode and in a training step, and automatic mixed precision (float16 and bfloat16) runs.

Skipped where torch.cuda.is_available() is False.  The model is built and its BN statistics
calibrated on the CPU, then copied to the GPU, so both devices run the same weights on the same
input.  These tests use the GPU under any ``--device``, so they switch TF32 off themselves, with
tests/support/devices.py's ``no_tf32`` (the plugin does it for every test only under ``--device
cuda``): it rounds convolution and matmul inputs to 10 mantissa bits, a relative error near 1e-3,
which would hide nothing but swamp float32 rounding.  The mixed-precision tests compare against
the float32 CPU output.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from types import ModuleType

import pytest
import torch
from torch import Tensor, nn

from tests.support import devices, torchutil

pytestmark = [
    pytest.mark.extra,
    pytest.mark.cuda,
    pytest.mark.clause("EXT-5"),
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: torch.cuda.is_available() is False"),
]

CPU = torch.device("cpu")
CUDA = torch.device("cuda")
# b0's real widths (cuDNN chooses kernels by channel count and size); 64 px leaves a 2x2 map at
# the end, so the SE and head pooling average several positions.
RESOLUTION = 64
# A calibrated random network scores 0.4-0.8 on torchutil.input_dependence; near 0 shows nothing.
MIN_INPUT_DEPENDENCE = 0.1

# float32 on both devices, TF32 off: cuDNN and oneDNN sum in other orders, which moves b0's logits
# by about 1e-6 to 1e-5 relative (channels-last on the CPU, another order again, moves them by
# 4e-6).  A kernel that computes something else moves them by O(1).
FLOAT32_TOL = 1e-4
# Training mode: BN's batch statistics amplify rounding in the gradients (as in NUM-2); compared
# all together, since some gradients vanish mathematically and are pure rounding.
TRAIN_OUTPUT_TOL = 1e-4
GRAD_TOL = 1e-3
# Autocast: float16 keeps 11 significant bits, bfloat16 8; through b0's 82 layers the logits move
# by about 0.09 relative in bfloat16 on the CPU, and float16 is 8 times finer.
AUTOCAST_TOL = {torch.float16: 0.05, torch.bfloat16: 0.25}
# The scaler starts at 2^16 and halves its scale on each overflow; a handful of steps is plenty.
AMP_STEPS = 5


@pytest.fixture
def no_tf32() -> Iterator[None]:
    with devices.no_tf32():
        yield


@pytest.fixture(scope="module")
def b0(impl: ModuleType) -> nn.Module:
    """efficientnet_b0 with BN calibrated at 64 px on the CPU, in eval mode (tests take a deep copy)."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    batches = [torch.randn(8, 3, RESOLUTION, RESOLUTION, generator=gen) for _ in range(2)]
    return torchutil.calibrate_batchnorm(impl.efficientnet_b0(), batches)


def images(batch: int) -> Tensor:
    return torch.randn(batch, 3, RESOLUTION, RESOLUTION, generator=torch.Generator().manual_seed(2))


def assert_close(out: Tensor, expected: Tensor, tol: float, what: str) -> None:
    assert out.shape == expected.shape, f"{what}: shape {tuple(out.shape)} on CUDA, {tuple(expected.shape)} on CPU"
    err = torchutil.rel_err(out, expected)
    assert err <= tol, f"{what}: relative error {err:.3g} between CUDA and CPU > {tol:g}"


def cpu_logits(model: nn.Module, x: Tensor) -> Tensor:
    with torch.no_grad():
        out = model(x)
    assert torchutil.input_dependence(out) > MIN_INPUT_DEPENDENCE, "the CPU output ignores its input"
    return out


@pytest.mark.usefixtures("no_tf32")
def test_eval_output_on_cuda_matches_cpu(b0):
    x = images(4)
    expected = cpu_logits(b0, x)
    with torch.no_grad():
        out = copy.deepcopy(b0).to(CUDA)(x.to(CUDA))
    assert out.device.type == "cuda", f"the output is on {out.device}"
    assert_close(out, expected, FLOAT32_TOL, "eval mode, float32")


@pytest.mark.usefixtures("no_tf32")
def test_training_step_on_cuda_matches_cpu(b0):
    x = images(4)
    weight = torch.randn(4, 1000, generator=torch.Generator().manual_seed(3))
    runs = []
    for device in (CPU, CUDA):
        # BN on batch statistics, no dropout or stochastic depth: deterministic, so comparable.
        model = torchutil.only_batchnorm_training(copy.deepcopy(b0).to(device))
        out = model(x.to(device))
        (out * weight.to(device)).sum().backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        stats = torch.cat([b.running_var.flatten() for b in torchutil.batchnorms(model)])
        runs.append((out.detach(), grads, stats))
    (out, grads, stats), (out_cuda, grads_cuda, stats_cuda) = runs
    assert_close(out_cuda, out, TRAIN_OUTPUT_TOL, "training-mode output")
    assert_close(stats_cuda, stats, TRAIN_OUTPUT_TOL, "BN running variances after one step")
    assert_close(grads_cuda, grads, GRAD_TOL, "parameter gradients")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
def test_autocast_on_cuda_stays_close_to_float32(b0, dtype):
    if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16 support (compute capability < 8.0)")
    x = images(4)
    expected = cpu_logits(b0, x)
    with torch.no_grad(), torch.autocast("cuda", dtype=dtype):
        out = copy.deepcopy(b0).to(CUDA)(x.to(CUDA))
    # Else autocast was escaped (a cast to float32 inside the model) and the test shows nothing.
    assert out.dtype == dtype, f"under {dtype} autocast the logits are {out.dtype}"
    assert torch.isfinite(out).all(), f"{dtype} autocast: non-finite logits"
    assert_close(out, expected, AUTOCAST_TOL[dtype], f"{dtype} autocast")


def test_amp_training_step_with_grad_scaler_runs(b0):
    """float16 AMP steps as in the PyTorch recipe: autocast forward, scaled backward, optimizer step
    through the scaler.  The loss is finite, and within a few steps (the scaler skips a step whose
    gradients overflow while it calibrates its scale) the weights move."""
    model = copy.deepcopy(b0).to(CUDA).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cuda")
    x, target = images(4).to(CUDA), torch.arange(4, device=CUDA)
    before = [p.detach().clone() for p in model.parameters()]
    for _ in range(AMP_STEPS):
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.float16):
            loss = nn.functional.cross_entropy(model(x), target)
        assert torch.isfinite(loss), f"the float16 loss is {loss.item()}"
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    moved = sum(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))
    assert moved > 0, f"no parameter changed in {AMP_STEPS} AMP steps: the scaler skipped every one (inf/NaN gradients)"
