"""Regularisation (spec section 4): stochastic depth, its schedule, classifier dropout.

A correct implementation may draw its random numbers in any order and any way, so nothing here
compares random streams.  Each test classifies every sample: a residual block's output must be
exactly its input (branch dropped) or the input plus the eval-mode branch scaled by 1 / (1 - p)
(kept), and the classifier's output exactly its bias or bias + W[:, j] * c / (1 - p) for a
feature vector c * e_j.  Anything else (element-wise dropout, no rescaling, a rescaling by another
rate) fails outright; the number dropped must then lie within the interval that the binomial
distribution leaves with probability below FALSE_FAILURE.  The seeds are fixed, so each test is
deterministic: the probability is over the ways an implementation may draw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from torch import Tensor, nn

from tests.support import models, premises, spec, strategies, torchutil
from tests.support.evidence import blame

FALSE_FAILURE = 1e-9  # per binomial check; a test makes at most a few dozen
# Kept and dropped samples differ by the whole branch, which the tests make at least 1% of the
# output; float32 rounding in x + branch / (1 - p) is below 1e-6 of it.
SAMPLE_TOL = 1e-5
DROP_PATH_RATE: float = spec.data()["regularisation"]["drop_path_rate"]
# REG-3: EfficientNet(...) has B0's classifier dropout.
DEFAULT_DROP_RATE: float = spec.variant("b0")["drop_rate"]


@cache
def binomial_acceptance(m: int, p: float, delta: float = FALSE_FAILURE) -> tuple[int, int]:
    """The interval [lo, hi] that Binomial(m, p) leaves with probability at most delta (at most
    delta / 2 on each side), from the exact distribution."""
    if p == 0:
        return 0, 0
    k = torch.arange(m + 1, dtype=torch.float64)
    log_pmf = (
        math.lgamma(m + 1) - torch.lgamma(k + 1) - torch.lgamma(m - k + 1) + k * math.log(p) + (m - k) * math.log1p(-p)
    )
    pmf = log_pmf.exp()
    at_most = pmf.cumsum(0)  # P(D <= k)
    at_least = pmf.flip(0).cumsum(0).flip(0)  # P(D >= k), summed from the small end
    lo = int((at_most <= delta / 2).sum())
    hi = m - int((at_least <= delta / 2).sum())
    return lo, hi


def rate_problem(dropped: int, m: int, p: float, where: str) -> str | None:
    """None when `dropped` of `m` is consistent with drop probability p, else what is wrong."""
    lo, hi = binomial_acceptance(m, p)
    if lo <= dropped <= hi:
        return None
    return f"{where}: {dropped}/{m} = {dropped / m:.4f} dropped, want p = {p:.4f} (between {lo} and {hi})"


def dropped_samples(out: Tensor, base: Tensor, branch: Tensor, p: float, where: str) -> Tensor:
    """Per sample, True when ``out == base`` (dropped) and False when ``out == base + branch / (1 - p)``
    (kept); fails on a sample that is neither.  The scale of a kept sample reveals the rate the
    implementation used, so a wrong rate often shows here, before any counting."""
    o, b, d = (t.detach().double().cpu().flatten(1) for t in (out, base, branch))
    kept_value = d / (1 - p)
    scale = b.norm(dim=1) + kept_value.norm(dim=1)
    assert (kept_value.norm(dim=1) >= 0.01 * scale).all(), f"{where}: test setup: some branch is too small to see"
    diff = o - b
    dropped = diff.norm(dim=1) <= SAMPLE_TOL * scale
    kept = (diff - kept_value).norm(dim=1) <= SAMPLE_TOL * scale
    bad = (~(dropped | kept)).nonzero().flatten()
    if len(bad) == 0:
        return dropped
    i = int(bad[0])
    factor = ((diff[i] * d[i]).sum() / (d[i] * d[i]).sum()).item()  # least-squares scale of the branch
    if (diff[i] - factor * d[i]).norm() <= SAMPLE_TOL * scale[i]:
        raise AssertionError(
            f"{where}: {len(bad)} of {len(o)} samples keep the whole branch but scale it by {factor:.6g} = "
            f"1 / (1 - {1 - 1 / factor:.6g}), not by 1 / (1 - p) with p = {p:.6g} (e.g. sample {i})"
        )
    frac = ((diff[i] - kept_value[i]).abs() > SAMPLE_TOL * scale[i]).double().mean().item()
    raise AssertionError(
        f"{where}: {len(bad)} of {len(o)} samples are neither dropped as a whole nor kept and scaled by "
        f"1 / (1 - p); e.g. sample {i}: {frac:.0%} of its values are neither"
    )


@torch.no_grad()
def shift_branch(block: nn.Module) -> nn.Module:
    """Set the projection BN's shift (API-4: the block's last BN bias) to 1, so that every
    sample's residual branch is clearly nonzero and a dropped branch shows."""
    list(block.state_dict().values())[-4].fill_(1.0)
    return block


def rng_state(device: torch.device) -> Tensor:
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()


# --- REG-1: stochastic depth in one block -------------------------------------------------------
SAMPLES_PER_BLOCK = 2000  # acceptance at p = 0.5: +-0.069, so p and 1 - p are told apart above 0.57


@pytest.mark.clause("REG-1")
@given(
    p=strategies.drop_probabilities,
    n=st.integers(1, 16),
    expansion=st.sampled_from([1, 6]),
    kernel_size=st.sampled_from([1, 3, 5]),
)
@example(p=0.2, n=8, expansion=6, kernel_size=3)
@example(p=0.8, n=1, expansion=1, kernel_size=1)  # one channel: element-wise must still show
def test_stochastic_depth_drops_the_whole_branch_per_sample(impl, device, p, n, expansion, kernel_size):
    torch.manual_seed(0)
    block = shift_branch(impl.MBConv(n, n, expansion, kernel_size, 1, 4 * expansion, p)).to(device)
    where = f"MBConv({n}, {n}, {expansion}, {kernel_size}, 1, dropout={p!r})"
    x = torch.randn(SAMPLES_PER_BLOCK, n, 3, 3, generator=torch.Generator().manual_seed(0)).to(device)
    with torch.no_grad():
        branch = block.eval()(x) - x
        torchutil.everything_but_batchnorm_training(block)
        torch.manual_seed(0)
        out = block(x)
    dropped = dropped_samples(out, x, branch, p, where)
    problem = rate_problem(int(dropped.sum()), SAMPLES_PER_BLOCK, p, where)
    assert problem is None, problem


def _residual_configs() -> st.SearchStrategy[strategies.BlockConfig]:
    return strategies.block_configs(
        residual=True, dropout=strategies.drop_probabilities, min_channels=strategies.MIN_NETWORK_CHANNELS
    )


@pytest.mark.clause("REG-1")
@given(cfg=_residual_configs())
def test_eval_mode_block_is_deterministic_and_unscaled(impl, device, cfg):
    """In eval mode the block equals the same block built with dropout=0, whatever the seed."""
    torch.manual_seed(0)
    block = cfg.build(impl)
    plain = strategies.BlockConfig(cfg.n_in, cfg.n_out, cfg.expansion, cfg.kernel_size, cfg.stride, 0.0).build(impl)
    torchutil.copy_weights_in_order(block, plain)
    block.to(device).eval()
    plain.to(device).eval()
    x = torch.randn(8, cfg.n_in, 3, 3, device=device)
    with torch.no_grad():
        want = plain(x)
        outs = []
        for seed in (0, 1):
            torch.manual_seed(seed)
            outs.append(block(x))
    for seed, out in enumerate(outs):
        err = torchutil.rel_err(out, want)
        assert err <= 1e-6, f"MBConv{cfg} in eval mode (seed {seed}) differs from dropout=0 by {err:.2e} relative"


@pytest.mark.clause("REG-1")
@given(
    cfg=strategies.block_configs(
        residual=False, dropout=strategies.drop_probabilities, min_channels=strategies.MIN_NETWORK_CHANNELS
    )
)
def test_block_without_residual_draws_no_random_numbers(impl, device, cfg):
    block = cfg.build(impl).to(device).train()
    x = torch.randn(4, cfg.n_in, 4, 4, device=device)
    before = rng_state(device)
    with torch.no_grad():
        block(x)
    assert torch.equal(rng_state(device), before), (
        f"MBConv{cfg} has no residual connection but drew random numbers in a train-mode forward"
    )


# --- REG-2: the schedule over the network's blocks ------------------------------------------------
@dataclass(frozen=True)
class BlockInfo:
    stage: int
    index: int  # within the stage
    k: int  # global index from 0
    c_in: int
    residual: bool


def _blocks(model: nn.Module, device: torch.device) -> list[BlockInfo]:
    """Every block with its global index and whether it is residual (BLOCK-4: stride 1 and the
    same channels, read from one eval forward at 32 px, where every stride shows)."""
    seen: list[tuple[int, int, torch.Size, torch.Size]] = []
    handles = []
    for i, stage in enumerate(model.stages):
        for j, block in enumerate(stage):

            def hook(_m: nn.Module, args: tuple[Any, ...], out: Tensor, i: int = i, j: int = j) -> None:
                seen.append((i, j, args[0].shape, out.shape))

            handles.append(block.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model.eval()(torch.randn(1, 3, 32, 32, device=device))
    finally:
        for h in handles:
            h.remove()
    return [BlockInfo(i, j, k, s_in[1], s_in == s_out) for k, (i, j, s_in, s_out) in enumerate(seen)]


def schedule_problems(model: nn.Module, device: torch.device, samples: int, what: str) -> list[str]:
    """Measure every residual block's drop rate and compare it with 0.2 k / N (REG-2); blocks
    without a residual must be deterministic (REG-1).

    Inputs are 2x2 and channels-last: on 1x1 or NCHW inputs of this shape PyTorch's CPU depthwise
    convolution is up to ten times slower, and the cost here is all in the convolutions."""
    blocks = _blocks(model, device)
    n = len(blocks)
    problems = []
    generator = torch.Generator().manual_seed(0)
    for info in blocks:
        block = model.stages[info.stage][info.index]
        where = f"{what} stage {info.stage} block {info.index} (k = {info.k} of N = {n})"
        m = samples if info.residual else 64  # determinism shows on any sample
        x = torch.randn(m, 2, 2, info.c_in, generator=generator).permute(0, 3, 1, 2).to(device)
        if info.residual:
            shift_branch(block)
        with torch.no_grad():
            want = block.eval()(x)
            torchutil.everything_but_batchnorm_training(block)
            torch.manual_seed(info.k)
            out = block(x)
            block.eval()
        if not info.residual:
            if not torch.equal(out, want):
                problems.append(f"{where}: no residual, but the train-mode output is random")
            continue
        p = DROP_PATH_RATE * info.k / n
        try:
            dropped = dropped_samples(out, x, want - x, p, where)
        except AssertionError as e:
            problems.append(str(e))
            # Not stochastic depth (REG-1); the rate it drops with is still REG-2's.
            zeroed = int(((out - x) == 0).sum())
            problem = rate_problem(zeroed, out.numel(), p, f"{where}: elements of the branch")
            if problem:
                problems.append(problem)
            continue
        problem = rate_problem(int(dropped.sum()), m, p, where)
        if problem:
            problems.append(problem)
    return problems


REG1_PROBLEMS = ("neither dropped as a whole", "no residual, but the train-mode output is random")


def schedule_blame(problems: list[str]) -> tuple[str, ...]:
    """REG-1 for blocks that are not stochastic depth, REG-2 for wrong rates."""
    reg1 = any(any(m in p for m in REG1_PROBLEMS) for p in problems)
    reg2 = any(not any(m in p for m in REG1_PROBLEMS) for p in problems)
    return (("REG-1",) if reg1 else ()) + (("REG-2",) if reg2 else ())


@pytest.mark.clause("REG-2", "REG-1")
def test_drop_rate_rises_linearly_with_the_global_block_index(impl, device):
    """B0's 16 blocks (d_factor 1) at width factor 0.01, where every block has 8 channels (and 12
    of them are residual) so that 20 000 samples per block are cheap; the schedule depends on the
    block positions only.

    Two checks per residual block.  The scale 1 / (1 - p) of a kept branch shows the rate the
    block uses to float precision, so a wrong schedule (the tutorial's 0.2 i / 7, 0.2 (k + 1) / N,
    0.2 k / (N - 1)) fails on its first kept sample.  The number dropped shows the rate the block
    draws with: a correct implementation fails with probability below 1.2e-8 (12 blocks at 1e-9);
    counts from the tutorial's schedule would pass with probability below 1e-12 (block 14 alone:
    0.143 for 0.175, 11.9 standard deviations off), an off-by-one 0.2 (k + 1) / N drops at block 0
    (p = 0) about 250 samples where none are allowed.
    """
    torch.manual_seed(0)
    premises.scaling(impl, 0.01, 1.0)
    model = impl.EfficientNet(0.01, 1.0, 10).to(device)
    premises.stage_depths(model, 1.0, "EfficientNet(0.01, 1.0)")
    problems = schedule_problems(model, device, 20_000, "EfficientNet(0.01, 1.0)")
    with blame(*schedule_blame(problems)):
        assert not problems, "stochastic-depth schedule (REG-2):\n  " + "\n  ".join(problems)


@pytest.mark.clause("REG-2", "REG-1")
@strategies.fewer_examples(0.4)  # about 0.5 s per example
@given(d=strategies.schedule_depth_factors)
def test_drop_schedule_for_any_depth_factor(impl, device, d):
    """The schedule for N from 7 to 16 blocks: the kept branches' scale checks each rate exactly,
    the counts (3000 samples per residual block, acceptance +-0.045 at p = 0.2) that the draws
    follow it."""
    torch.manual_seed(0)
    premises.scaling(impl, 0.01, d)  # the block count N is the fork's own; that it is ceil(d x repeats) is a premise
    model = impl.EfficientNet(0.01, d, 10).to(device)
    premises.stage_depths(model, d, f"EfficientNet(0.01, {d!r})")
    problems = schedule_problems(model, device, 3000, f"EfficientNet(0.01, {d!r})")
    with blame(*schedule_blame(problems)):
        assert not problems, "stochastic-depth schedule (REG-2):\n  " + "\n  ".join(problems)


# --- REG-3: classifier dropout ----------------------------------------------------------------------
# Acceptance +-0.039 at p = 0.2 and +-0.048 at p = 0.5 (6.2 standard deviations), so rates 0.1
# apart (the variants' steps) are told apart by 10 standard deviations.  Dropout draws one
# random number per feature: B7 has 2560, L2 5504.
HEAD_SAMPLES = 4_000
HEAD_CHUNK = 1_000  # rows per forward, to bound memory
# 16 classes: a random column W[:, j] of 16 normal entries is never near 0, so a kept feature
# always shows in the logits.
HEAD_CLASSES = 16


def classifier_dropout_problem(model: nn.Module, device: torch.device, p: float, what: str) -> str | None:
    """Feed c * e_j to pool_flatten + head in train mode; each logit vector must be the bias (the
    feature dropped) or bias + W[:, j] c / (1 - p), with the fraction dropped near p."""
    weight, bias = list(model.head.state_dict().values())[-2:]  # API-4: classifier weight, bias
    n_features = weight.shape[1]
    generator = torch.Generator().manual_seed(0)
    model.pool_flatten.train()
    model.head.train()
    dropped = 0
    with torch.no_grad():
        for _ in range(HEAD_SAMPLES // HEAD_CHUNK):
            j = torch.randint(n_features, (HEAD_CHUNK,), generator=generator)
            c = torch.rand(HEAD_CHUNK, generator=generator) + 0.5
            f = torch.zeros(HEAD_CHUNK, n_features)
            f[torch.arange(HEAD_CHUNK), j] = c
            out = model.head(model.pool_flatten(f[:, :, None, None].to(device))).cpu()
            base = bias.cpu().expand_as(out)
            branch = weight.cpu()[:, j].T * c[:, None]
            dropped += int(dropped_samples(out, base, branch, p, f"{what} classifier").sum())
    return rate_problem(dropped, HEAD_SAMPLES, p, f"{what} classifier dropout")


def _random_head(model: nn.Module, device: torch.device) -> nn.Module:
    """Materialise the (possibly meta) pool_flatten and head on `device` with random weights."""
    model.pool_flatten.to_empty(device=device)
    model.head.to_empty(device=device)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for t in model.head.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=generator))
    return model


@pytest.mark.clause("REG-3")
def test_efficientnet_has_the_default_classifier_dropout(impl, device):
    model = _random_head(impl.EfficientNet(0.1, 0.1, HEAD_CLASSES), device)
    problem = classifier_dropout_problem(model, device, DEFAULT_DROP_RATE, f"EfficientNet(0.1, 0.1, {HEAD_CLASSES})")
    assert problem is None, problem


@pytest.mark.clause("REG-3")
@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=[pytest.mark.slow] if spec.variant(n).get("optional") else []) for n in spec.variants()],
)
def test_named_variant_has_its_classifier_dropout(impl, device, name):
    factory = getattr(impl, f"efficientnet_{name}", None)
    if factory is None:
        pytest.skip(f"efficientnet_{name} is optional (API-5) and not provided")
    # only the head runs: the rest is built as shapes only, where the meta device can build it
    model = models.call_on_meta_or_cpu(lambda: factory(HEAD_CLASSES))
    _random_head(model, device)
    p = spec.variant(name)["drop_rate"]
    problem = classifier_dropout_problem(model, device, p, f"efficientnet_{name}({HEAD_CLASSES})")
    assert problem is None, problem


@pytest.mark.clause("REG-3")
def test_classifier_dropout_is_the_identity_in_eval_mode(impl, device):
    model = impl.EfficientNet(0.1, 0.1, 5).to(device).eval()
    weight, bias = list(model.head.state_dict().values())[-2:]
    f = torch.randn(64, weight.shape[1], 1, 1, device=device)
    with torch.no_grad():
        torch.manual_seed(0)
        out = model.head(model.pool_flatten(f))
    want = f.flatten(1).double() @ weight.double().T + bias.double()  # in float64, whatever the model keeps
    err = torchutil.rel_err(out, want)
    assert err <= 1e-5, f"EfficientNet head in eval mode differs from the Linear layer alone by {err:.2e} relative"
