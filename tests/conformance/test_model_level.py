"""Block rules held by every block of the built network (BLOCK-2, BLOCK-4), at any factors.

test_blocks.py checks blocks built on their own; a network may build its blocks differently (a
stride stored as a list, BatchNorm settings changed for the large variants only), so here the
rules are checked on the models themselves: every BatchNorm of every named variant and of drawn
factors (on the meta device: settings need no data), and every block's residual connection,
found functionally (with the block's last BatchNorm at zero weight and bias its branch outputs
exactly 0, so the block outputs its input when it has a residual connection and 0 when not),
not by the names a fork gives its attributes.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import example, given
from torch import Tensor, nn

from tests.support import models, norms, reference, spec, strategies, torchutil
from tests.support.evidence import blame

NAMED = spec.variants(include_optional=False)
OPTIONAL = [n for n in spec.variants() if n not in NAMED]  # b8, l2 (API-5): large, so slow
ALL = [*NAMED, *(pytest.param(n, marks=pytest.mark.slow) for n in OPTIONAL)]


# --- BLOCK-2: every BatchNorm of the models (found and judged by behaviour: tests/support/norms.py) ---
@pytest.mark.clause("BLOCK-2")
@pytest.mark.parametrize("name", ALL)
def test_every_batchnorm_of_a_named_variant_has_the_spec_settings(impl, name):
    with blame():  # building the variant is the structure clauses' business, not BLOCK-2's
        model = models.impl_to_inspect(impl, name)
    assert norms.layers(model), f"efficientnet_{name} has no normalisation layer"
    problem = norms.problem(model)
    assert problem is None, f"efficientnet_{name}: {problem}"


@pytest.mark.clause("BLOCK-2")
@strategies.fewer_examples(0.2)  # both forms, up to hundreds of blocks, on the meta device
@given(w=strategies.structure_width_factors, d=strategies.structure_depth_factors, n=strategies.structure_class_counts)
@example(w=1.6, d=2.2, n=10)  # B5's factors: TensorFlow ports switch to eps 1e-3 here (torchvision)
@example(w=0.01, d=0.05, n=1)
def test_every_batchnorm_has_the_spec_settings_at_any_factors(impl, w, d, n):
    for form in ("EfficientNet", "EfficientNetSequential"):
        with blame():  # building the model is the structure clauses' business, not BLOCK-2's
            model = models.to_inspect(lambda form=form: getattr(impl, form)(w, d, n))
        problem = norms.problem(model)
        assert problem is None, f"{form}({w!r}, {d!r}, {n}): {problem}"


# --- BLOCK-4: every block's residual connection ----------------------------------------------------
# 32 px: every stride-2 block receives at least a 2x2 map, so a stride shows in the output size.
RESIDUAL_RESOLUTION = 32
# A block without a residual connection has no stochastic depth: in training (BN held fixed) it
# computes its eval-mode output, up to kernels that a fork may choose differently in training.
TRAIN_EVAL_TOL = 1e-6


def _blocks(model: nn.Module, w: float, d: float, n: int) -> dict[str, nn.Module]:
    """API-3: the blocks ``stages[i][j]``, by module path; in a network without API-3's children, the
    modules that hold the parameters of timm's blocks at the same factors (parts.taps_like)."""
    if reference.has_the_structure(model):
        return {f"stages.{i}.{j}": block for i, stage in enumerate(model.stages) for j, block in enumerate(stage)}
    ref = models.timm_scaled_to_inspect(w, d, n)
    taps = reference.impl_taps(model, per_block=True, ref=ref, ref_taps=reference.timm_taps)
    return {key: block for key, block in taps.items() if key.startswith("stage ")}


@torch.no_grad()
def _inputs_and_outputs(model: nn.Module, blocks: dict[str, nn.Module], x: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
    """Each block's input and output in one eval forward pass of the model (copied)."""
    inputs: dict[str, Tensor] = {}
    outputs: dict[str, Tensor] = {}
    handles = []
    for path, block in blocks.items():
        handles.append(
            block.register_forward_pre_hook(lambda _m, args, path=path: inputs.setdefault(path, args[0].clone()))
        )
        handles.append(
            block.register_forward_hook(lambda _m, _a, out, path=path: outputs.setdefault(path, out.clone()))
        )
    try:
        model.eval()(x)
    finally:
        for h in handles:
            h.remove()
    missing = [path for path in blocks if path not in outputs]
    assert not missing, f"the forward pass never ran {', '.join(missing)}"
    return {path: (inputs[path], outputs[path]) for path in blocks}


@pytest.mark.clause("BLOCK-4", "REG-1")
@strategies.fewer_examples(0.4)  # a model and two passes of every block per example
@given(w=strategies.narrow_width_factors, d=strategies.model_depth_factors, n=strategies.class_counts)
@example(w=0.01, d=0.6, n=3)  # every width before the head is 8: the first blocks of stages 0, 4, 6 keep it
@example(w=0.5, d=0.6, n=10)  # widths change at every stage: only the repeated blocks are residual
def test_every_block_has_its_residual_exactly_when_stride_one_and_width_kept(impl, device, w, d, n):
    """With the block's last BatchNorm (the projection's) at zero weight and bias, the block's
    output is exactly its input when it has a residual connection, and exactly 0 when not."""
    torch.manual_seed(0)
    with blame():  # building the network is the scaling clauses' business, not BLOCK-4's
        model = impl.EfficientNet(w, d, n).to(device)
    blocks = _blocks(model, w, d, n)
    x = torch.randn(2, 3, RESIDUAL_RESOLUTION, RESIDUAL_RESOLUTION, generator=torch.Generator().manual_seed(0))
    seen = _inputs_and_outputs(model, blocks, x.to(device))
    for path, block in blocks.items():
        x_in, y = seen[path]
        where = f"{path} of EfficientNet({w!r}, {d!r}, {n})"
        stride = 1 if x_in.shape[2:] == y.shape[2:] else 2
        residual = stride == 1 and x_in.shape[1] == y.shape[1]
        shape = f"stride {stride}, {x_in.shape[1]} -> {y.shape[1]} channels"
        if not residual:  # stochastic depth only on a residual branch
            with torch.no_grad():
                trained = torchutil.everything_but_batchnorm_training(block)(x_in.clone())
            err = torchutil.rel_err(trained, y)
            with blame("REG-1"):  # REG-1: blocks without a residual connection draw no random numbers
                assert err <= TRAIN_EVAL_TOL, (
                    f"{where} ({shape}, no residual connection): in training, with BatchNorm fixed, its output "
                    f"differs from eval mode by {err:.2e} relative: stochastic depth (or dropout) on a block without "
                    "a residual connection"
                )
        with blame("API-4"):  # the premise (API-4): the block's last five entries are its projection BN
            tensors = list(block.state_dict().values())
            last = [tuple(t.shape) for t in tensors[-5:]]
            want = [(y.shape[1],)] * 4 + [()]
            assert last == want, f"{where}: its last state_dict entries {last} are not a BatchNorm of {want[0]}"
        with torch.no_grad():
            tensors[-5].zero_()  # the projection BN's weight and bias
            tensors[-4].zero_()
            out = block.eval()(x_in.clone())
        # An output of exactly 0 (or exactly the input) shows the residual missing (or added) whatever
        # the branch computes (BLOCK-3): conclusive for BLOCK-4 even where BLOCK-3 fails too.
        if residual:
            with blame("BLOCK-4", conclusive=not out.any()):
                assert torch.equal(out, x_in), (
                    f"{where}: {shape}, so it must add its input (BLOCK-4), but with its last BatchNorm at zero "
                    f"weight and bias its output is {'exactly 0' if not out.any() else 'not its input'} (max "
                    f"|output - input| {(out - x_in).abs().max().item():.3g}): the residual connection is missing"
                )
        else:
            with blame("BLOCK-4", conclusive=torch.equal(out, x_in)):
                assert not out.any(), (
                    f"{where}: {shape}, so it must not add its input (BLOCK-4), but with its last BatchNorm at zero "
                    f"weight and bias its output is {'exactly its input' if torch.equal(out, x_in) else 'not 0'}: "
                    "a residual connection is added"
                )
