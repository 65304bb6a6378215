"""tests/support/models.py's shortcuts change the cost of a build, never the model a test sees:
the meta device's builds skip only the fills, and a model built to be overwritten computes, once
every state_dict entry is copied in, what a model built with real weights computes."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F  # noqa: N812 - the usual alias
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from tests.support import models, reference, torchutil


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        nn.init.kaiming_uniform_(self.conv.weight, a=0.1)
        nn.init.trunc_normal_(self.conv.bias, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class _AttributeConstant(_Block):  # a tensor outside the state_dict: a plain attribute
    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.full((1, 4, 1, 1), 2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * self.scale


class _NonPersistentBuffer(_Block):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("shift", torch.full((1, 4, 1, 1), 0.5), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + self.shift


class _Tied(_Block):
    def __init__(self) -> None:
        super().__init__()
        self.again = nn.Conv2d(4, 4, 1)
        self.other = nn.Conv2d(4, 4, 1)
        self.other.weight = self.again.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.other(self.again(super().forward(x)))


class _RenamedKeys(nn.Module):  # a state_dict hook renames the keys: they name no parameter (and there is no buffer)
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self._register_state_dict_hook(_rename_keys)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _rename_keys(module: nn.Module, state: dict[str, torch.Tensor], prefix: str, local: object) -> None:
    for key in list(state):
        state[key + "_renamed"] = state.pop(key)


def test_a_meta_build_has_the_cpu_builds_tensors_and_leaves_the_cpus_fills_alone() -> None:
    meta, cpu = models.to_run(_Block, models.META), models.to_run(_Block)
    assert torchutil.first_shape_mismatch(meta, cpu) is None
    assert all(t.is_meta for t in meta.state_dict().values())
    with models._NoFillOnMeta():  # only the meta device's fills are skipped
        assert torch.zeros(3).uniform_(1.0, 2.0).min() >= 1.0


class _Ops(TorchDispatchMode):
    """Records the ATen operators that reach the dispatcher."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.seen.append(func.__name__)
        return func(*args, **(kwargs or {}))


def test_nn_inits_own_dispatch_skips_the_fill_on_meta_but_keeps_its_checks() -> None:
    """nn.init.uniform_, normal_, constant_ and kaiming_uniform_ hand themselves to the mode whole
    (torch.nn.Conv2d's default initialisation is kaiming_uniform_): their fill must not run on meta
    (it reached the meta kernels once the mode had popped itself), their argument checks still must."""
    w = torch.empty(8, 4, 3, 3, device="meta")
    with _Ops() as ops, models._NoFillOnMeta():
        for init in (nn.init.kaiming_uniform_, nn.init.uniform_, nn.init.normal_):
            assert init(w) is w
        assert nn.init.constant_(w, 1.0) is w
    fills = [op for op in ops.seen if op.split(".")[0] in ("uniform_", "normal_", "fill_", "copy_")]
    assert not fills, f"filled on meta: {fills}"
    with models._NoFillOnMeta():
        for bad in ({"mode": "fan_inn"}, {"nonlinearity": "swishy"}):
            with pytest.raises(ValueError, match=r"(?i)mode|nonlinearity"):
                nn.init.kaiming_uniform_(w, **bad)
        cpu = torch.zeros(8, 4, 3, 3)
        assert nn.init.kaiming_uniform_(cpu).abs().sum() > 0  # the CPU's fill still happens


def _bn_meta(x_shape: tuple[int, ...], channels: int, **kwargs: object) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """F.batch_norm on meta tensors, with and without the short cut: (shape, strides) of each."""
    x = torch.empty(x_shape, device="meta")
    stats = [torch.empty(channels, device="meta") for _ in range(4)]
    outs = []
    for mode in (models._MetaBatchNorm(), contextlib.nullcontext()):
        with mode:
            y = F.batch_norm(x, *stats[:2], weight=stats[2], bias=stats[3], **kwargs)  # type: ignore[arg-type]
        outs.append((tuple(y.shape), y.stride()))
    return outs[0], outs[1]


@pytest.mark.parametrize("x_shape", [(2, 5, 7, 9), (3, 5), (1, 5, 4)])
def test_the_meta_batchnorm_short_cut_gives_what_the_meta_kernel_gives(x_shape) -> None:
    fast, kernel = _bn_meta(x_shape, 5)
    assert fast == kernel
    x = torch.empty(2, 5, 7, 9, device="meta").to(memory_format=torch.channels_last)
    stats = [torch.empty(5, device="meta") for _ in range(2)]
    with models._MetaBatchNorm():
        fast_cl = F.batch_norm(x, *stats)
    assert fast_cl.stride() == F.batch_norm(x, *stats).stride()


def _bn_error(*args: object, **kwargs: object) -> str:
    """What F.batch_norm raises (type and message) with the short cut, checked to be what it raises
    without it."""
    raised = []
    for mode in (models._MetaBatchNorm(), contextlib.nullcontext()):
        with mode, pytest.raises((RuntimeError, ValueError, TypeError, AttributeError)) as error:
            F.batch_norm(*args, **kwargs)  # type: ignore[arg-type]
        raised.append(f"{error.type.__name__}: {error.value}")
    assert raised[0] == raised[1]
    return raised[0]


def test_the_meta_batchnorm_short_cut_raises_where_the_kernel_raises() -> None:
    """A BatchNorm of another channel count than its input raises with the short cut as without
    it (the shape passes of ARCH-6 must name such a layer, not pass it); so do training mode,
    statistics that are not kept and arguments that are no tensors, which take F.batch_norm's own
    path."""

    def meta(*shape: int) -> torch.Tensor:
        return torch.empty(shape, device="meta")

    assert _bn_error(meta(2, 5, 7, 9), meta(6), meta(6))
    assert _bn_error(meta(2, 5, 7, 9), meta(5), meta(5), weight=meta(4))
    assert "more than 1 value" in _bn_error(meta(1, 5, 1, 1), meta(5), meta(5), training=True)
    assert "running_mean" in _bn_error(meta(1, 5, 1, 1), None, None)
    assert _bn_error(meta(2, 5, 3, 3), None, meta(5))
    assert _bn_error(meta(2, 5, 3, 3), meta(5), None)
    assert _bn_error(meta(2, 5, 3, 3), meta(5), meta(5), 1.0)  # a weight that is not a tensor
    assert _bn_error(1.0, meta(5), meta(5))  # nor an input
    y = torch.randn(2, 5, 3, 3)  # and the CPU computes as before
    with models._MetaBatchNorm():
        out = F.batch_norm(y, torch.zeros(5), torch.ones(5))
    assert torch.allclose(out, y / (1 + 1e-5) ** 0.5)


def test_a_model_built_to_be_overwritten_computes_what_a_cpu_build_computes() -> None:
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    for cls in (_Block, _AttributeConstant, _NonPersistentBuffer, _Tied):
        source = reference.randomise(models.to_run(cls))
        fast, slow = models.to_overwrite(cls), models.to_run(cls)
        torchutil.copy_weights_in_order(source, fast)
        torchutil.copy_weights_in_order(source, slow)
        assert torch.equal(fast.eval()(x), slow.eval()(x)), cls.__name__


def test_a_model_with_values_outside_its_state_dict_is_built_with_real_weights() -> None:
    assert models._state_dict_holds_everything(models.to_run(_Block, models.META))
    for cls in (_AttributeConstant, _NonPersistentBuffer, _Tied):
        assert not models._state_dict_holds_everything(models.to_run(cls, models.META)), cls.__name__


def test_a_model_given_the_references_tensors_computes_what_a_copy_computes() -> None:
    """with_weights_of shares the reference's tensors where every state_dict entry is a parameter
    or buffer under its key, and falls back to a copy (to_overwrite) where it is not."""
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    for cls, shares in (
        (_Block, True),
        (_AttributeConstant, False),
        (_NonPersistentBuffer, False),
        (_Tied, False),
        (_RenamedKeys, False),
    ):
        source = reference.randomise(models.to_run(cls))
        copied = models.to_run(cls)
        torchutil.copy_weights_in_order(source, copied)
        model = models.with_weights_of(source, cls)
        assert not model.training, cls.__name__
        assert torch.equal(model(x), copied.eval()(x)), cls.__name__
        pointers = [t.data_ptr() for t in model.state_dict().values()]
        assert (pointers == [t.data_ptr() for t in source.state_dict().values()]) is shares, cls.__name__
        assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in model.parameters()), cls.__name__


def test_a_model_given_the_references_tensors_names_the_first_shape_that_differs() -> None:
    with pytest.raises(AssertionError, match=r"cannot copy weights by position: position 0: conv\.weight"):
        models.with_weights_of(models.to_run(lambda: nn.Sequential(nn.Conv2d(3, 5, 3))), _Block)


class _NeedsData(nn.Module):  # reads a value while it is built: the meta device has none
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, int(torch.ones(()).item()) * 4, 1)


class _RaisesAnywhere(nn.Module):  # the implementation's own error, raised on any device
    calls = 0

    def __init__(self) -> None:
        super().__init__()
        _RaisesAnywhere.calls += 1
        self.conv = nn.Conv2d(3, 4, 1)
        self.head = nn.Linear(4, -2)  # a width rule gone wrong


@pytest.mark.parametrize("build", [models.to_inspect, models.call_on_meta_or_cpu])
def test_a_failure_only_the_meta_device_causes_falls_back_to_the_cpu(build) -> None:
    assert build(_NeedsData).conv.weight.device.type == "cpu"
    assert build(_Block).conv.weight.device.type == "meta"


@pytest.mark.parametrize("build", [models.to_inspect, models.call_on_meta_or_cpu])
def test_an_error_raised_on_any_device_is_the_implementations_raised_once(build) -> None:
    """Not repeated with real weights (the cost meta_caused avoids); the meta kernels of some torch
    operators word a shape error otherwise than the CPU's (a broadcast, a convolution's channels)."""
    with pytest.raises(RuntimeError) as on_cpu:
        _RaisesAnywhere()
    _RaisesAnywhere.calls = 0
    with pytest.raises(RuntimeError) as raised:
        build(_RaisesAnywhere)
    assert str(raised.value) == str(on_cpu.value)
    assert _RaisesAnywhere.calls == 1


def _parametrised(test: object) -> list[object]:
    """The values of a test's one ``parametrize`` mark, without their marks."""
    (mark,) = [m for m in getattr(test, "pytestmark", []) if m.name == "parametrize"]
    return [getattr(p, "values", [p])[0] for p in mark.args[1]]


def test_the_servers_warm_up_makes_what_the_conformance_tests_ask_for(monkeypatch) -> None:
    """models.warm_up fills the caches under the very keys the tests look up, for every variant they
    are parametrised with (a key that differs, say another eps, would only leave every forked run to
    compute it again)."""
    from tests.conformance import test_architecture, test_numerics, test_torchvision
    from tests.support import spec

    asked: list[tuple[object, ...]] = []
    monkeypatch.setattr(models, "timm_to_inspect", lambda name: None)
    monkeypatch.setattr(models, "torchvision_to_inspect", lambda name: None)
    monkeypatch.setattr(models, "timm_shapes", lambda *key: asked.append(("shapes", *key)))
    monkeypatch.setattr(models, "prepared_named", lambda *key, eps=None, keep=False: asked.append((*key, eps, keep)))
    models.warm_up()
    num1 = _parametrised(test_numerics.test_eval_output_matches_timm_stage_by_stage)
    wanted = [("timm", n, test_numerics.RESOLUTION, reference.CPU, None, True) for n in num1]
    num4 = _parametrised(test_torchvision.test_eval_output_matches_torchvision_stage_by_stage)
    eps = test_torchvision.PYTORCH_EPS_VALUE
    wanted += [("torchvision", n, models.EVAL_RESOLUTION, reference.CPU, eps, True) for n in num4]
    for name in spec.variants():
        wanted += [("shapes", name, reference.native_input(name)), ("shapes", name, test_architecture.SMALL_INPUT)]
    assert sorted(map(repr, asked)) == sorted(map(repr, wanted))


def test_a_prepared_reference_is_kept_only_when_asked(monkeypatch) -> None:
    monkeypatch.setattr(models, "_PREPARED", {})
    args = ("timm", "b0", 32, reference.CPU)
    one, other = models.prepared_named(*args), models.prepared_named(*args)
    assert one is not other  # freed with its test
    # Made again, it is the same (seeded): a kept one, made in subrun's server, is what a run would make.
    assert one.expected.keys() == other.expected.keys()
    assert all(torch.equal(one.expected[k], other.expected[k]) for k in one.expected)
    kept = models.prepared_named(*args, keep=True)
    assert models.prepared_named(*args) is kept
    fresh = models.prepared_named(*args, eps=1e-3)
    assert fresh is not kept
    assert {bn.eps for bn in torchutil.batchnorms(fresh.model)} == {1e-3}
