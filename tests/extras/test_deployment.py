"""Deployment (EXT-4): channels-last memory format, bfloat16 autocast, torch.compile, TorchScript
(script and trace), torch.fx and torch.export each compute the eager float32 function.

Each path is compared with the eager model on the same weights and input.  The numerical tests
use calibrated BN statistics (torchutil.calibrate_batchnorm), without which a random network's
output barely depends on its input and a wrong answer would not show.  The graph-capture tests use
a tiny network (every kind of layer, one block per stage) at 32 px: what they check is that the
capture works and computes the same function, and capturing costs seconds per layer, not per pixel.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Callable
from types import ModuleType

import pytest
import torch
from torch import Tensor, nn

from tests.support import torchutil

pytestmark = [
    pytest.mark.extra,
    pytest.mark.clause("EXT-4"),
    # torch 2.9+ deprecates TorchScript; it still works, and the tests below show that it does.
    pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:FutureWarning"),
]

# Widths 8 to 320 and one block per stage: every kind of layer, at a fraction of b0's cost.
TINY = {"w_factor": 0.25, "d_factor": 0.34, "n_classes": 10}
# b0's real widths for the layout and precision tests, where kernels are chosen by channel count;
# 64 px leaves the last stage a 2x2 map.
RESOLUTION = 64
# A calibrated random network scores 0.4-0.8 on torchutil.input_dependence; near 0 shows nothing.
MIN_INPUT_DEPENDENCE = 0.1

# Channels-last convolutions sum in another order: b0's eval logits move by about 4e-6 relative,
# its training-mode output by 8e-6 and its parameter gradients (all together) by 2e-5.  A layout
# bug (a view of channels-last data as contiguous, a permuted reshape) moves them by O(1).
CHANNELS_LAST_TOL = 5e-5
CHANNELS_LAST_GRAD_TOL = 2e-4
# bfloat16 keeps 8 significant bits (rounding error 2^-9 per operation); over b0's 82 layers the
# logits move by about 0.09 relative at 64 px (0.04 for the tiny network).  A wrong function moves
# them by about 1 or more.
BF16_TOL = 0.25
# The graph-capture paths run the same float32 kernels as eager mode (TorchScript, fx, export,
# and compile's aot_eager backend): the outputs agree to rounding, in practice bit for bit.
CAPTURE_TOL = 1e-6
# Inductor generates its own kernels (BN folded, SiLU fused): float32 rounding, a few 1e-7.
INDUCTOR_TOL = 1e-5


def _calibrated(factory: Callable[[], nn.Module], resolution: int, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    model = factory().to(device)
    gen = torch.Generator().manual_seed(1)
    batches = [torch.randn(8, 3, resolution, resolution, generator=gen).to(device) for _ in range(2)]
    return torchutil.calibrate_batchnorm(model, batches)


@pytest.fixture(scope="module")
def b0(impl: ModuleType, device: torch.device) -> nn.Module:
    """efficientnet_b0 with BN calibrated at 64 px, in eval mode (tests take a deep copy)."""
    return _calibrated(impl.efficientnet_b0, RESOLUTION, device)


@pytest.fixture(scope="module")
def tiny(impl: ModuleType, device: torch.device) -> nn.Module:
    """EfficientNet(0.25, 0.34, 10) with BN calibrated at 32 px, in eval mode (tests take a deep copy)."""
    return _calibrated(lambda: impl.EfficientNet(**TINY), 32, device)


def images(batch: int, resolution: int, device: torch.device, seed: int = 2) -> Tensor:
    return torch.randn(batch, 3, resolution, resolution, generator=torch.Generator().manual_seed(seed)).to(device)


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
def test_channels_last_eval_output_equals_contiguous(b0, device):
    x = images(4, RESOLUTION, device)
    expected = eager(b0, x)
    model = copy.deepcopy(b0).to(memory_format=torch.channels_last)
    with torch.no_grad():
        out = model(x.contiguous(memory_format=torch.channels_last))
    assert_close(out, expected, CHANNELS_LAST_TOL, "channels-last model and input, eval mode")


def test_channels_last_training_output_and_gradients_equal_contiguous(b0, device):
    x = images(4, RESOLUTION, device)
    runs = []
    for memory_format in (torch.contiguous_format, torch.channels_last):
        # BN on batch statistics, no dropout or stochastic depth: deterministic, so comparable.
        model = torchutil.only_batchnorm_training(copy.deepcopy(b0).to(memory_format=memory_format))
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


def test_bfloat16_autocast_stays_close_to_float32(b0, device):
    x = images(4, RESOLUTION, device)
    expected = eager(b0, x)
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
        out = b0(x)
    # Else autocast was escaped (a cast to float32 inside the model) and the test shows nothing.
    assert out.dtype == torch.bfloat16, f"under bfloat16 autocast the logits are {out.dtype}"
    assert_close(out, expected, BF16_TOL, "bfloat16 autocast")


# --- Graph capture ----------------------------------------------------------------------------
def check_capture(tiny: nn.Module, device: torch.device, capture: Callable[[nn.Module, Tensor], Callable[..., Tensor]],
                  what: str, tol: float = CAPTURE_TOL) -> Callable[..., Tensor]:
    """Capture a copy of the tiny model on one input, then compare it with eager mode on another."""
    model = copy.deepcopy(tiny)
    captured = capture(model, images(2, 32, device, seed=4))
    x = images(2, 32, device)
    with torch.no_grad():
        out = captured(x)
    assert_close(out, eager(tiny, x), tol, what)
    return captured


def assert_still_validates(tiny: nn.Module, captured: Callable[..., Tensor], device: torch.device, what: str) -> None:
    """If the eager model rejects a 4-channel image with ValueError, the captured one must too."""
    bad = torch.randn(2, 4, 32, 32, device=device)
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
def test_torch_compile_inductor_matches_eager(tiny, device):
    """The default backend generates and compiles C++ (or Triton) kernels: about a minute on 2 cores."""
    torch._dynamo.reset()
    check_capture(tiny, device, lambda m, _: torch.compile(m), "torch.compile (inductor)", INDUCTOR_TOL)


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
    out = scripted(images(4, 32, device))
    out.square().mean().backward()
    assert all(p.grad is not None for p in scripted.parameters()), "a parameter got no gradient"


def test_torchscript_trace_matches_eager_on_another_input(tiny, device):
    # check_trace re-runs and compares with its own tolerance; check_capture compares on a new input.
    check_capture(tiny, device, lambda m, x: torch.jit.trace(m, x, check_trace=False), "torch.jit.trace")


def test_fx_symbolic_trace_matches_eager_and_keeps_the_input_check(tiny, device):
    traced = check_capture(tiny, device, lambda m, _: torch.fx.symbolic_trace(m), "torch.fx.symbolic_trace")
    assert_still_validates(tiny, traced, device, "torch.fx.symbolic_trace")


def test_torch_export_matches_eager_with_a_dynamic_batch(tiny, device):
    batch = torch.export.Dim("batch", min=1, max=64)

    def export(model: nn.Module, x: Tensor) -> Callable[..., Tensor]:
        return torch.export.export(model, (x,), dynamic_shapes=({0: batch},)).module()

    exported = check_capture(tiny, device, export, "torch.export")
    x = images(3, 32, device)  # a batch size the export never saw
    with torch.no_grad():
        assert_close(exported(x), eager(tiny, x), CAPTURE_TOL, "torch.export, batch of 3")
