"""Deployment (EXT-4): channels-last memory format, bfloat16 autocast, torch.compile, TorchScript
(script and trace), torch.fx and torch.export each compute the eager float32 function.

Each path is compared with the eager model on the same weights and input.  The model is a tiny
network (every kind of layer, one block per stage): capturing a graph costs seconds per layer, and
what matters is that each path works and computes the same function.  Its BN statistics are
calibrated (torchutil.calibrate_batchnorm), without which a random network's output barely depends
on its input and a wrong answer would not show.
"""

from __future__ import annotations

import copy
import io
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch import Tensor, nn

from tests.support import devices, subrun, torchutil

pytestmark = [
    pytest.mark.extra,
    pytest.mark.clause("EXT-4"),
    # torch 2.9+ deprecates TorchScript; it still works, and the tests below show that it does.
    pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:FutureWarning"),
]

# Widths 8 to 320 and one block per stage: every kind of layer at a fraction of b0's cost (on a
# CPU without native bfloat16, autocast b0 takes seconds per image).  64 px leaves the last stage a
# 2x2 map, so the SE and head pooling average several positions.
TINY = {"w_factor": 0.25, "d_factor": 0.34, "n_classes": 10}
RESOLUTION = 64
# A calibrated random network scores 0.4-0.8 on torchutil.input_dependence; near 0 shows nothing.
MIN_INPUT_DEPENDENCE = 0.1

# Channels-last convolutions sum in another order: the tiny network's eval logits move by about
# 1e-6 relative (b0's by 4e-6), its training-mode output by 4e-6 and its parameter gradients (all
# together) by 7e-6 (b0: 2e-5).  A layout bug (a view of channels-last data as contiguous, a
# permuted reshape) moves them by O(1).  On CUDA cuDNN runs other kernels for either layout; with
# TF32 off (tests/support/devices.py) these tolerances held there too (with TF32 on: 3.6e-3).
CHANNELS_LAST_TOL = 5e-5
CHANNELS_LAST_GRAD_TOL = 2e-4
# bfloat16 keeps 8 significant bits (rounding error 2^-9 per operation); through the tiny network's
# 37 layers the logits move by about 0.04 relative (b0's 82 layers: 0.09).  A wrong function moves
# them by about 1.
BF16_TOL = 0.15
# The graph-capture paths (TorchScript, fx, export, compile's aot_eager backend) against eager mode:
# per device, devices.FLOAT32[...].capture (1e-6 on the CPU, where the same kernels run: bit for bit
# in practice; TorchScript fuses elementwise ops on CUDA).
# Inductor generates its own kernels (BN folded, SiLU fused): float32 rounding, a few 1e-7 on the
# CPU; on CUDA (Triton kernels, TF32 off) it held at the same tolerance.
INDUCTOR_TOL = 1e-5
INDUCTOR_SCRIPT = Path(__file__).with_name("inductor_block.py")
# The block's compile: about 12 s with a cold inductor cache, 4 s warm (idle, one core); far
# more on 2 busy cores.
INDUCTOR_TIMEOUT = 300


@pytest.fixture(scope="module")
def tiny(impl: ModuleType, device: torch.device) -> nn.Module:
    """EfficientNet(0.25, 0.34, 10) with BN calibrated at 64 px, in eval mode (tests take a deep copy)."""
    torch.manual_seed(0)
    model = impl.EfficientNet(**TINY).to(device)
    gen = torch.Generator().manual_seed(1)
    batches = [torch.randn(8, 3, RESOLUTION, RESOLUTION, generator=gen).to(device) for _ in range(2)]
    return torchutil.calibrate_batchnorm(model, batches)


def images(batch: int, device: torch.device, seed: int = 2) -> Tensor:
    return torch.randn(batch, 3, RESOLUTION, RESOLUTION, generator=torch.Generator().manual_seed(seed)).to(device)


def eager(model: nn.Module, x: Tensor) -> Tensor:
    with torch.no_grad():
        out = model(x)
    assert torchutil.input_dependence(out) > MIN_INPUT_DEPENDENCE, "the reference output ignores its input"
    return out


def assert_close(out: Tensor, expected: Tensor, tol: float, what: str) -> None:
    assert out.shape == expected.shape, f"{what}: output shape {tuple(out.shape)}, eager {tuple(expected.shape)}"
    err = torchutil.rel_err(out, expected)
    assert err <= tol, f"{what}: relative error {err:.3g} against eager float32 > {tol:g}"


# --- Memory format and precision ----------------------------------------------------------------
def test_channels_last_eval_output_equals_contiguous(tiny, device):
    x = images(4, device)
    expected = eager(tiny, x)
    model = copy.deepcopy(tiny).to(memory_format=torch.channels_last)
    with torch.no_grad():
        out = model(x.contiguous(memory_format=torch.channels_last))
    assert_close(out, expected, CHANNELS_LAST_TOL, "channels-last model and input, eval mode")


def test_channels_last_training_output_and_gradients_equal_contiguous(tiny, device):
    x = images(4, device)
    runs = []
    for memory_format in (torch.contiguous_format, torch.channels_last):
        # BN on batch statistics, no dropout or stochastic depth: deterministic, so comparable.
        model = torchutil.only_batchnorm_training(copy.deepcopy(tiny).to(memory_format=memory_format))
        out = model(x.contiguous(memory_format=memory_format))
        weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(3)).to(device)
        (out * weight).sum().backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        runs.append((out.detach(), grads))
    (out, grads), (out_cl, grads_cl) = runs
    assert_close(out_cl, out, CHANNELS_LAST_TOL, "channels-last, training-mode output")
    # Together, not one by one: some gradients vanish mathematically (a BN bias followed by a BN in
    # training mode) and their relative error is pure rounding.
    assert_close(grads_cl, grads, CHANNELS_LAST_GRAD_TOL, "channels-last, parameter gradients")


def test_bfloat16_autocast_stays_close_to_float32(tiny, device):
    x = images(4, device)
    expected = eager(tiny, x)
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
        out = tiny(x)
    # Else autocast was escaped (a cast to float32 inside the model) and the test shows nothing.
    assert out.dtype == torch.bfloat16, f"under bfloat16 autocast the logits are {out.dtype}"
    assert_close(out, expected, BF16_TOL, "bfloat16 autocast")


# --- Graph capture ----------------------------------------------------------------------------
def check_capture(
    tiny: nn.Module,
    device: torch.device,
    capture: Callable[[nn.Module, Tensor], Callable[..., Tensor]],
    what: str,
) -> Callable[..., Tensor]:
    """Capture a copy of the tiny model on one input, then compare it with eager mode on another."""
    model = copy.deepcopy(tiny)
    captured = capture(model, images(2, device, seed=4))
    x = images(2, device)
    with torch.no_grad():
        out = captured(x)
    assert_close(out, eager(tiny, x), devices.float32_tolerances(device).capture, what)
    return captured


def assert_still_validates(tiny: nn.Module, captured: Callable[..., Tensor], device: torch.device) -> None:
    """If the eager model rejects a 4-channel image with ValueError, the captured one must too."""
    bad = torch.randn(2, 4, RESOLUTION, RESOLUTION, device=device)
    try:
        tiny(bad)
    except ValueError:
        with pytest.raises(ValueError, match="shape"):
            captured(bad)


def test_torch_compile_aot_eager_full_graph_matches_eager(tiny, device):
    """Dynamo captures the whole forward pass in one graph (no graph breaks) and AOTAutograd
    traces it; the aot_eager backend then runs the eager kernels, so this costs seconds."""
    torch._dynamo.reset()
    check_capture(tiny, device, lambda m, _: torch.compile(m, backend="aot_eager", fullgraph=True), "torch.compile")


@pytest.mark.slow
def test_torch_compile_inductor_block_matches_eager(pytestconfig, tmp_path, device):
    """The default backend generates and compiles C++ (or Triton) kernels, about 3 minutes for the
    tiny network on 2 busy cores; one residual MBConv block (expand, depthwise, SE, project,
    stochastic depth in eval mode) exercises the same code generation in a fraction of that.

    The compiled code runs in a fresh process, with inductor's cache kept apart per
    ATEN_CPU_CAPABILITY (tests/extras/inductor_block.py says why: torch reuses code generated for
    another vector width, and the block crashed or computed NaN); a crash of compiled code fails
    this test with its signal and stack instead of taking the worker down."""
    out = tmp_path / "outputs.pt"
    env = subrun.one_thread_under_xdist(dict(os.environ))
    command = [sys.executable, str(INDUCTOR_SCRIPT), "--impl", pytestconfig.getoption("--impl")]
    command += ["--device", str(device), "--out", str(out)]
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=INDUCTOR_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"torch.compile (inductor) of one MBConv block: no result within {INDUCTOR_TIMEOUT} s")
    if done.returncode != 0:
        how = f"died of {_signal_name(-done.returncode)}" if done.returncode < 0 else f"exited {done.returncode}"
        pytest.fail(
            f"torch.compile (inductor) of one MBConv block: its process {how}; its stderr ends:\n"
            + "\n".join(done.stderr.splitlines()[-30:])
        )
    outputs = torch.load(out)
    assert_close(outputs["compiled"], outputs["eager"], INDUCTOR_TOL, "torch.compile (inductor), one MBConv block")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:  # a real-time signal, say
        return f"signal {number}"


def test_torchscript_script_matches_eager_after_save_and_load(tiny, device):
    def script_save_load(model: nn.Module, _: Tensor) -> Callable[..., Tensor]:
        buffer = io.BytesIO()
        torch.jit.save(torch.jit.script(model), buffer)
        buffer.seek(0)
        return torch.jit.load(buffer, map_location=device)

    check_capture(tiny, device, script_save_load, "torch.jit.script, saved and loaded")


def test_torchscript_script_runs_in_training_mode(tiny, device):
    """Stochastic depth's mask is built in scripted code too: a training step runs and has gradients."""
    scripted = torch.jit.script(copy.deepcopy(tiny).train())
    out = scripted(images(4, device))
    out.square().mean().backward()
    assert all(p.grad is not None for p in scripted.parameters()), "a parameter got no gradient"


def test_torchscript_trace_matches_eager_on_another_input(tiny, device):
    # With the default check_trace: torch.jit.trace traces again without autograd and fails if the
    # graphs differ (a model that changes what it does when autograd is off, say).
    check_capture(tiny, device, lambda m, x: torch.jit.trace(m, x), "torch.jit.trace")


def test_fx_symbolic_trace_matches_eager_and_keeps_the_input_check(tiny, device):
    traced = check_capture(tiny, device, lambda m, _: torch.fx.symbolic_trace(m), "torch.fx.symbolic_trace")
    assert_still_validates(tiny, traced, device)


def test_torch_export_matches_eager_with_a_dynamic_batch(tiny, device):
    batch = torch.export.Dim("batch", min=1, max=64)

    def export(model: nn.Module, x: Tensor) -> Callable[..., Tensor]:
        return torch.export.export(model, (x,), dynamic_shapes=({0: batch},)).module()

    exported = check_capture(tiny, device, export, "torch.export")
    x = images(3, device)  # a batch size the export never saw
    tol = devices.float32_tolerances(device).capture
    with torch.no_grad():
        assert_close(exported(x), eager(tiny, x), tol, "torch.export, batch of 3")
