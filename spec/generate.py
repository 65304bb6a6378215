"""Generate spec/expected.toml from timm, and the generated parts of spec/SPEC.md.

    python spec/generate.py                   regenerate expected.toml and SPEC.md's generated parts
    python spec/generate.py --update-clauses  only SPEC.md: the "Checked by:" lines and the tables
    python spec/generate.py --check           regenerate in memory; exit 1 with a diff if a committed
                                              file differs (what CI runs: nox -s spec -- --check)

expected.toml holds, for each variant of efficientnet.toml ``[variants]``, what timm's
``efficientnet_<name>`` is: scaled widths and depths, output shapes at the native resolution,
the exact parameter count, the multiply-accumulate count, an architecture fingerprint, and the
ratios to the paper's Table 2.  It is derived from timm only, never from effnet, so that effnet
is checked against something it did not produce.  Models are built on the meta device (shapes
without storage), which makes L2 at 800 px free; a real CPU build of b0 is checked to give the
same numbers on every run.

Its ``[references]`` record where the references disagree (SPEC.md section 11): the head width over
a grid of width factors, BatchNorm eps and momentum, padding, the SE width of tiny blocks, and the
classifier dropout and stochastic depth as constructed, measured from timm (``efficientnet_`` and
``tf_efficientnet_``), torchvision, efficientnet-pytorch and the tutorial's code, never from effnet.
The tutorial is not part of the repository: without it, its committed entries are kept.

SPEC.md's generated parts are the "Checked by:" line of every clause (from the clause markers of
the collected suite) and the tables between ``<!-- generated: NAME -->`` and
``<!-- end generated: NAME -->`` (from efficientnet.toml and expected.toml).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import math
import sys
import tempfile
import time
import tomllib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import tomli_w

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import spec  # noqa: E402 - needs the repository root on sys.path

EXPECTED = ROOT / "spec" / "expected.toml"
SPEC_MD = ROOT / "spec" / "SPEC.md"
REGENERATE = "nox -s spec (or: python spec/generate.py)"
COMMAND = f"{REGENERATE}; check: nox -s spec -- --check"

MACS_CONVENTION = (
    "multiply-accumulates of one image at the native resolution: the total of "
    "torch.utils.flop_counter.FlopCounterMode divided by 2. It counts convolutions (depthwise and the "
    "SE 1x1 convolutions included) and the classifier's matrix product, each multiply-add once; biases, "
    "BatchNorm, activations, pooling and the SE gating product are not counted."
)
FINGERPRINT_CONVENTION = (
    "sha256 of the state_dict entries in order, each written P:<shape> (parameter) or B:<shape> (buffer), "
    "dimensions joined by x, 'scalar' for 0-d, entries joined by ';' (tests/support/spec.py fingerprint)."
)


TIMM_META: dict[str, Any] = {}  # timm's efficientnet_<name> on the meta device, as measure() built it


# --- What timm's model is -----------------------------------------------------------------
def measure(name: str, resolution: int, device: str) -> dict[str, Any]:
    """Everything expected.toml records about timm's ``efficientnet_<name>``, built on ``device``."""
    import timm
    import torch
    from torch import nn
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device(device):
        model = timm.create_model(f"efficientnet_{name}").eval()
    if device == "meta":
        TIMM_META[name] = model  # the [references] measurements read these too
    shapes: dict[str, list[int]] = {}

    def record(key: str) -> Any:
        return lambda _module, _inputs, output: shapes.__setitem__(key, list(output.shape))

    model.bn1.register_forward_hook(record("stem"))  # timm's stem is conv_stem + bn1 (BN with SiLU)
    for i, stage in enumerate(model.blocks):
        stage.register_forward_hook(record(f"stage{i}"))
    model.conv_head.register_forward_hook(record("head"))
    x = torch.zeros(1, 3, resolution, resolution, device=device)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        logits = model(x)

    def out_channels(stage: nn.Module) -> int:
        return [m for m in stage.modules() if isinstance(m, nn.Conv2d)][-1].out_channels

    return {
        "timm_name": f"efficientnet_{name}",
        "resolution": resolution,
        "widths": [model.conv_stem.out_channels, *map(out_channels, model.blocks), model.conv_head.out_channels],
        "depths": [len(stage) for stage in model.blocks],
        "params": sum(p.numel() for p in model.parameters()),
        "macs": counter.get_total_flops() // 2,
        "param_tensors": len(list(model.parameters())),
        "buffer_tensors": len(list(model.buffers())),
        "fingerprint": spec.fingerprint(model),
        "stem_shape": shapes["stem"],
        "stage_shapes": [shapes[f"stage{i}"] for i in range(len(model.blocks))],
        "head_shape": shapes["head"],
        "logits_shape": list(logits.shape),
    }


def ratio(measured: int, figure: str) -> float:
    return round(measured / spec.published(figure)[0], 4)


def generate() -> tuple[dict[str, Any], str]:
    """The data of expected.toml, and the versions line of its header."""
    import timm
    import torch

    data = spec.data()
    b0 = data["variants"]["b0"]["resolution"]
    real, meta = measure("b0", b0, "cpu"), measure("b0", b0, "meta")
    if real != meta:
        differ = [k for k in real if real[k] != meta[k]]
        raise SystemExit(f"generate.py: the meta-device build of b0 differs from the real one in {differ}")
    variants: dict[str, Any] = {}
    for name, v in data["variants"].items():
        entry = meta if name == "b0" else measure(name, v["resolution"], "meta")
        if name in data["table2"]:
            published = data["table2"][name]
            entry["table2"] = {
                "published_params": published["params"],
                "published_flops": published["flops"],
                "params_ratio": ratio(entry["params"], published["params"]),
                "macs_ratio": ratio(entry["macs"], published["flops"]),
            }
        variants[name] = entry
    conventions = {"macs": MACS_CONVENTION, "fingerprint": FINGERPRINT_CONVENTION}
    references, measured_tutorial = measure_references(TIMM_META)
    if not measured_tutorial:
        keep_tutorial_values(references)
    versions = f"timm {timm.__version__}, torch {torch.__version__}, {reference_versions()}"
    return {"conventions": conventions, "variants": variants, "references": references}, versions


# --- Where the references disagree ----------------------------------------------------------------
# Each disagreement is measured from the installed libraries (models on the meta device, a
# convolution on the CPU where padding is probed) and from the tutorial's code when it is at hand;
# without it, the tutorial's committed values are kept (its code is not part of this repository).
REFERENCES = ("timm", "timm_tf", "torchvision", "efficientnet_pytorch", "tutorial")
REFERENCE_LABELS = {
    "spec": "the spec",
    "timm": "timm `efficientnet_bN`",
    "timm_tf": "timm `tf_efficientnet_bN`",
    "torchvision": "torchvision",
    "efficientnet_pytorch": "efficientnet-pytorch",
    "tutorial": "the tutorial",
}
NAMED = tuple(f"b{n}" for n in range(8))  # the variants every reference has
HEAD_GRID = tuple(round(0.05 + 0.01 * i, 2) for i in range(295))  # w = 0.05, 0.06, ..., 2.99
HEAD_BUILT = (0.25, 0.33, 0.5, 1.0, 1.6, 2.0)  # where each head rule is checked against a built model
HEAD_DEPTH = 0.1  # depth factor of those models: one block per stage, which the head does not depend on
SE_INPUTS = tuple(range(1, 33))  # block input widths n_in of the SE comparison
ODD_INPUT = (57, 71)  # an input size where static padding for the native size shows
TUTORIAL_HINT = "shared/seeds/000_da33de6cc8062d0c.txt beside the clone, or $EFFNET_TUTORIAL"


def _tutorial_fork() -> Any | None:
    """The tutorial's code as a module (tests/forks/tutorial.py extracts it), or None without the text."""
    from tests.forks import tutorial
    from tests.support import loader

    seed = tutorial.find_seed()
    if seed is None:
        return None
    path = Path(tempfile.mkdtemp()) / "tutorial_fork.py"
    path.write_text(tutorial.extract(seed.read_text()))
    return loader.load(str(path))


def _spec_width(c: float, f: float) -> int:
    """SCALE-1 from efficientnet.toml [scaling]: the reference code's round_filters."""
    s = spec.data()["scaling"]
    scaled = c * f
    new = max(s["width_min"], int(scaled + s["width_divisor"] / 2) // s["width_divisor"] * s["width_divisor"])
    return new + s["width_divisor"] if new < s["width_round_limit"] * scaled else new


@contextlib.contextmanager
def _without_weight_init() -> Iterator[None]:
    """Build models without initialising their weights: on the meta device the values mean nothing
    (none of the [references] depends on them), and the initialisers are most of a build's cost."""
    from unittest import mock

    from timm.models import efficientnet as timm_efficientnet
    from torch.nn import init

    def keep(tensor: Any, *_args: Any, **_kwargs: Any) -> Any:
        return tensor

    initialisers = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_")
    initialisers += ("kaiming_uniform_", "kaiming_normal_", "xavier_uniform_", "xavier_normal_")
    with contextlib.ExitStack() as stack:
        for name in initialisers:
            stack.enter_context(mock.patch.object(init, name, keep))
        stack.enter_context(mock.patch.object(timm_efficientnet, "efficientnet_init_weights", keep))
        yield


def _named_model(ref: str, name: str, tutorial: Any) -> Any:
    """The reference's own constructor of variant ``name`` on the meta device."""
    import timm
    import torch
    import torchvision.models as tvm
    from efficientnet_pytorch import EfficientNet as EfficientNetPyTorch

    builders = {
        "timm": lambda: timm.create_model(f"efficientnet_{name}"),
        "timm_tf": lambda: timm.create_model(f"tf_efficientnet_{name}"),  # bn_eps and pad_type 'same'
        "torchvision": lambda: getattr(tvm, f"efficientnet_{name}")(),
        "efficientnet_pytorch": lambda: EfficientNetPyTorch.from_name(f"efficientnet-{name}"),
        "tutorial": lambda: getattr(tutorial, f"efficientnet_{name}")(),
    }
    with torch.device("meta"), warnings.catch_warnings(), _without_weight_init():
        warnings.simplefilter("ignore")  # the tutorial's zero-width SE convolutions warn
        return builders[ref]()


def _scaled_model(ref: str, w: float, tutorial: Any) -> Any:
    """The reference's network at width factor w (depth factor HEAD_DEPTH) on the meta device."""
    import torch
    from efficientnet_pytorch import EfficientNet as EfficientNetPyTorch
    from timm.models.efficientnet import _gen_efficientnet
    from torchvision.models import efficientnet as tv

    def torchvision() -> Any:
        setting, last_channel = tv._efficientnet_conf("efficientnet_b0", width_mult=w, depth_mult=HEAD_DEPTH)
        return tv.EfficientNet(setting, 0.2, last_channel=last_channel)

    builders = {
        "timm": lambda: _gen_efficientnet("efficientnet_b0", channel_multiplier=w, depth_multiplier=HEAD_DEPTH),
        "torchvision": torchvision,
        "efficientnet_pytorch": lambda: EfficientNetPyTorch.from_name(
            "efficientnet-b0", width_coefficient=w, depth_coefficient=HEAD_DEPTH
        ),
        "tutorial": lambda: tutorial.EfficientNet(w, HEAD_DEPTH),
    }
    with torch.device("meta"), _without_weight_init():
        return builders[ref]()


def _head_rule(ref: str, w: float, tutorial: Any) -> int:
    """The head width each reference computes at width factor w, by its own scaling functions."""
    from efficientnet_pytorch import utils as ep
    from timm.models._efficientnet_builder import round_channels
    from torchvision.models import efficientnet as tv

    if ref == "timm":
        return int(round_channels(1280, w, 8))  # _gen_efficientnet: num_features=round_chs_fn(1280)
    if ref == "torchvision":  # EfficientNet: last_channel None for B0-B7, so 4 * lastconv_input_channels
        setting, last_channel = tv._efficientnet_conf("efficientnet_b0", width_mult=w, depth_mult=1.0)
        return int(last_channel if last_channel is not None else 4 * setting[-1].out_channels)
    if ref == "efficientnet_pytorch":  # EfficientNet.__init__: round_filters(1280, global_params)
        _, params = ep.get_model_params("efficientnet-b0", {"width_coefficient": w})
        return int(ep.round_filters(1280, params))
    return int(tutorial.efficientnet_scaler(w)[0][-1])


def _head_width(model: Any) -> int:
    from torch import nn

    return int([m for m in model.modules() if isinstance(m, nn.Linear)][-1].in_features)


def _batchnorm(model: Any) -> list[float]:
    """[eps, momentum] shared by every BatchNorm of the model (an error if they are not shared)."""
    from torch.nn.modules.batchnorm import _BatchNorm

    pairs = {(m.eps, m.momentum) for m in model.modules() if isinstance(m, _BatchNorm)}
    if len(pairs) != 1:
        raise SystemExit(f"generate.py: expected one BatchNorm (eps, momentum) in {type(model).__name__}, got {pairs}")
    eps, momentum = pairs.pop()
    return [float(eps), float(momentum)]


def _regularisation(ref: str, model: Any) -> list[Any]:
    """[classifier dropout, drop probability of the last block, how a block drops] as constructed."""
    from torch import nn

    if ref in ("timm", "timm_tf"):
        last = list(model.blocks[-1])[-1].drop_path
        return [float(model.drop_rate), float(getattr(last, "drop_prob", 0.0)), type(last).__name__]
    if ref == "torchvision":
        last = list(model.features[-2])[-1].stochastic_depth
        return [float(model.classifier[0].p), float(last.p), type(last).__name__]
    if ref == "efficientnet_pytorch":  # forward: drop_connect_rate * idx / len(blocks), per sample (drop_connect)
        n, rate = len(model._blocks), model._global_params.drop_connect_rate
        return [float(model._dropout.p), float(rate * (n - 1) / n), "drop_connect"]
    dropouts = [m.p for m in model.head.modules() if isinstance(m, nn.Dropout)]
    last = list(model.stages[-1])[-1].dropout
    return [float(max(dropouts, default=0.0)), float(last.p), type(last).__name__]


def _probe_padding(conv: Any, size: tuple[int, int]) -> list[int]:
    """[top, bottom, left, right] padding that ``conv`` applies to an input of ``size``, found by
    running a copy of it on the CPU with a kernel that picks its centre tap from an index image."""
    import copy

    import torch

    conv = copy.deepcopy(conv).to_empty(device="cpu")
    k, s = conv.weight.shape[-1], conv.stride[0]
    h, w = size
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, k // 2, k // 2] = 1.0
        if conv.bias is not None:
            conv.bias.zero_()
        index = torch.arange(1, h * w + 1, dtype=torch.float32).reshape(1, 1, h, w)
        x = index.expand(1, conv.in_channels, h, w).contiguous()
        y = conv(x)[0, 0]
    first = int(y[0, 0].item()) - 1
    top, left = k // 2 - first // w, k // 2 - first % w
    bottom = (y.shape[0] - 1) * s + k - h - top
    right = (y.shape[1] - 1) * s + k - w - left
    return [top, bottom, left, right]


def _padding(model: Any, resolution: int) -> dict[str, Any]:
    """The stem's padding at the top and left at the native resolution, how many stride-2
    convolutions pad there otherwise than (k - 1) // 2, and the stem's output size at ODD_INPUT."""
    import torch
    from torch import nn

    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    stride2 = [m for m in convs if m.stride[0] == 2]
    sizes: dict[int, tuple[int, int]] = {}
    handles = [
        m.register_forward_hook(lambda m, args, _out: sizes.__setitem__(id(m), tuple(args[0].shape[-2:])))
        for m in stride2
    ]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, resolution, resolution, device="meta"))
    for h in handles:
        h.remove()
    pads = [(m.weight.shape[-1], _probe_padding(m, sizes[id(m)])) for m in stride2]
    shifted = sum(top != (k - 1) // 2 or left != (k - 1) // 2 for k, (top, _, left, _) in pads)
    stem_out = convs[0](torch.zeros(1, 3, *ODD_INPUT, device="meta")).shape[-2:]
    top, _, left, _ = pads[0][1]
    return {"stem_top_left": [top, left], "stride2": len(pads), "shifted": shifted, "stem_out": list(stem_out)}


def _se_width(ref: str, n_in: int, expansion: int, tutorial: Any) -> int:
    """The squeezed width of the SE of a block with n_in input channels, built by the reference's own
    block code (meta device)."""
    import torch
    from efficientnet_pytorch import model as ep_model
    from efficientnet_pytorch import utils as ep
    from timm.models._efficientnet_blocks import SqueezeExcite
    from timm.models._efficientnet_builder import EfficientNetBuilder, decode_arch_def
    from torch import nn
    from torchvision.models import efficientnet as tv

    def timm_block() -> int:
        kind = "ds" if expansion == 1 else "ir"
        arch = decode_arch_def([[f"{kind}_r1_k3_s1_e{expansion}_c{n_in}_se0.25"]])
        builder = EfficientNetBuilder(
            round_chs_fn=lambda c: c, act_layer=nn.SiLU, norm_layer=nn.BatchNorm2d, se_layer=SqueezeExcite
        )
        return int(builder(n_in, arch)[0][0].se.conv_reduce.out_channels)

    def torchvision_block() -> int:
        cnf = tv._MBConvConfig(expansion, 3, 1, n_in, n_in, 1, tv.MBConv)
        return int(tv.MBConv(cnf, 0.0, nn.BatchNorm2d).block[-2].fc1.out_channels)

    def efficientnet_pytorch_block() -> int:
        _, params = ep.get_model_params("efficientnet-b0", None)
        args = ep.BlockArgs(1, 3, 1, expansion, n_in, n_in, 0.25, True)
        return int(ep_model.MBConvBlock(args, params)._se_reduce.out_channels)

    def tutorial_block() -> int:  # the tutorial's r: 4 for MBConv1, 24 for MBConv6
        return int(tutorial.MBConv(n_in, n_in, expansion, 3, 1, 4 * expansion, 0.0).se.excitation[0].out_channels)

    builders = {
        "timm": timm_block,
        "torchvision": torchvision_block,
        "efficientnet_pytorch": efficientnet_pytorch_block,
        "tutorial": tutorial_block,
    }
    with torch.device("meta"), warnings.catch_warnings(), _without_weight_init():
        warnings.simplefilter("ignore")
        return builders[ref]()


def measure_references(timm_models: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """expected.toml [references]: what each reference does where they disagree; and whether the
    tutorial was measured (without it, its entries are left for the caller to keep)."""
    tutorial = _tutorial_fork()
    refs = [r for r in REFERENCES if tutorial is not None or r != "tutorial"]
    grid_refs = [r for r in refs if r != "timm_tf"]  # tf_ models share timm's generator and head rule

    head: dict[str, Any] = {"grid": [HEAD_GRID[0], HEAD_GRID[-1], 0.01], "grid_factors": len(HEAD_GRID)}
    spec_heads = [_spec_width(1280, w) for w in HEAD_GRID]
    for ref in grid_refs:
        for w in HEAD_BUILT:  # the rule used for the grid is the one the library's model is built with
            built, rule = _head_width(_scaled_model(ref, w, tutorial)), _head_rule(ref, w, tutorial)
            if built != rule:
                raise SystemExit(f"generate.py: {ref} builds a {built}-channel head at w={w}, its rule gives {rule}")
        heads = [_head_rule(ref, w, tutorial) for w in HEAD_GRID]
        differ = [(w, h, s) for w, h, s in zip(HEAD_GRID, heads, spec_heads, strict=True) if h != s]
        examples = [differ[0], differ[len(differ) // 2], differ[-1]] if differ else []  # first, middle, last
        head[ref] = {"differ": len(differ), "examples": [list(d) for d in examples]}

    layers = spec.data()["base"]["layers"]
    batchnorm: dict[str, Any] = {"spec": [layers["batchnorm_eps"], layers["batchnorm_momentum"]]}
    regularisation: dict[str, Any] = {}
    padding: dict[str, Any] = {}
    for ref in refs:
        batchnorm[ref], regularisation[ref] = {}, {}
        for name in NAMED:
            model = timm_models[name] if ref == "timm" else _named_model(ref, name, tutorial)
            batchnorm[ref][name] = _batchnorm(model)
            regularisation[ref][name] = _regularisation(ref, model)
            if name == "b0":
                padding[ref] = _padding(model, spec.variant("b0")["resolution"])
    rate = spec.data()["regularisation"]["drop_path_rate"]
    regularisation["spec"] = {}
    for name in NAMED:
        v, blocks = spec.variant(name), sum(math.ceil(d * spec.variant(name)["d_factor"]) for d in spec.base_depths())
        regularisation["spec"][name] = [v["drop_rate"], rate * (blocks - 1) / blocks, "DropPath"]

    se: dict[str, Any] = {"inputs": [SE_INPUTS[0], SE_INPUTS[-1]], "spec": [max(1, int(n * 0.25)) for n in SE_INPUTS]}
    for ref in grid_refs:
        se[ref] = {f"e{e}": [_se_width(ref, n, e, tutorial) for n in SE_INPUTS] for e in (1, 6)}

    data = {
        "head_width": head,
        "batchnorm": batchnorm,
        "padding": padding,
        "se_width": se,
        "regularisation": regularisation,
    }
    return data, tutorial is not None


def reference_versions() -> str:
    import importlib.metadata

    import torchvision

    efficientnet_pytorch = importlib.metadata.version("efficientnet-pytorch")
    return f"torchvision {torchvision.__version__}, efficientnet-pytorch {efficientnet_pytorch}"


def keep_tutorial_values(references: dict[str, Any]) -> None:
    """Without the tutorial's text, its entries are the committed ones (the tutorial does not change)."""
    committed = tomllib.loads(EXPECTED.read_text()).get("references", {}) if EXPECTED.exists() else {}
    kept = [topic for topic, entries in committed.items() if isinstance(entries, dict) and "tutorial" in entries]
    for topic in kept:
        entries = {**references[topic], "tutorial": committed[topic]["tutorial"]}
        # The committed key order (the tutorial's entry is measured before some others): the file must
        # come out the same with the tutorial at hand or without it.
        order = [k for k in committed[topic] if k in entries] + [k for k in entries if k not in committed[topic]]
        references[topic] = {k: entries[k] for k in order}
    print(
        f"generate.py: the tutorial is not at hand ({TUTORIAL_HINT}): kept its committed values for {', '.join(kept)}"
    )


def to_toml(data: dict[str, Any], versions: str) -> str:
    out = [
        "# spec/expected.toml: expectations derived from timm (and the references).  GENERATED, do not edit.",
        f"# Tool: spec/generate.py with {versions}; models built on the meta device",
        "# (a real CPU build of b0 gives the same numbers, checked on every run).",
        f"# Command: {COMMAND}",
        "# Per variant: widths (stem, 7 stages, head) and depths read off timm's modules; output shapes",
        "# at the native resolution, batch 1; exact parameter count; MACs and fingerprint as [conventions].",
        "# [references]: where timm (efficientnet_ and tf_efficientnet_), torchvision, efficientnet-pytorch and",
        "# the tutorial disagree (spec/SPEC.md section 11), measured from each; the tutorial's entries are kept",
        "# as committed when its text is not at hand.  [references.head_width]: grid = [first, last, step];",
        "# examples = [w, head, spec head]. batchnorm: [eps, momentum]. regularisation: [classifier dropout,",
        "# last block's drop probability, the module that drops]. se_width: squeezed width for n_in in inputs.",
    ]
    # tomli-w keeps the dicts' key order: the order generate() measured in, the same on every run.
    return "\n".join(out) + "\n\n" + tomli_w.dumps(data)


# --- SPEC.md: generated tables and Checked-by lines ---------------------------------------
def _rows(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(map(str, r)) + " |" for r in rows]


def base_table(data: dict[str, Any]) -> list[str]:
    """Table 1 of the paper, from efficientnet.toml [base]: one row per stage, input resolution at 224."""
    base, size = data["base"], data["variants"]["b0"]["resolution"]
    stem, k = base["stem"], base["stem"]["kernel"]
    rows: list[list[object]] = [["1 (stem)", f"Conv{k}x{k}", "-", k, stem["stride"], "-", stem["channels"], 1, size]]
    size = math.ceil(size / stem["stride"])
    for i, s in enumerate(base["stages"]):
        rows.append([i + 2, s["block"], s["expansion"], s["kernel"], s["stride"], s["se_ratio"], s["channels"],
                     s["repeats"], size])  # fmt: skip
        size = math.ceil(size / s["stride"])
    rows.append(["9 (head)", "Conv1x1, pooling, FC", "-", 1, 1, "-", base["head"]["channels"], 1, size])
    for row in rows:
        row[-1] = f"{row[-1]}x{row[-1]}"
    header = ["Stage", "Operator", "Expansion", "Kernel", "Stride", "SE ratio", "Channels", "Layers", "Input"]
    return _rows(header, rows)


def variants_table(data: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    rows: list[list[object]] = []
    for name, v in data["variants"].items():
        e = expected["variants"][name]
        label = name.upper() + (" (optional)" if v.get("optional") else "")
        widths, depths = " ".join(map(str, e["widths"])), " ".join(map(str, e["depths"]))
        rows.append([label, v["w_factor"], v["d_factor"], v["resolution"], v["drop_rate"], widths, depths,
                     f"{e['params']:,}", f"{e['macs'] / 1e9:.2f}B"])  # fmt: skip
    header = ["Variant", "w_factor", "d_factor", "Resolution", "Classifier dropout", "Widths", "Depths",
              "Parameters", "MACs"]  # fmt: skip
    return _rows(header, rows)


def table2_table(expected: dict[str, Any]) -> list[str]:
    rows: list[list[object]] = []
    for name, e in expected["variants"].items():
        if "table2" not in e:
            continue
        t = e["table2"]
        low, high = spec.table2_params_interval(name)
        rounds = "yes" if low <= e["params"] < high else "**no**"
        if rounds == "yes" and spec.data()["table2"][name].get("params_slack"):
            rounds = "with slack"
        low, high = spec.table2_macs_interval(name)
        within = "yes" if low <= e["macs"] <= high else "**no**"
        rows.append([name.upper(), f"{e['params']:,}", t["published_params"], f"{t['params_ratio']:.4f}", rounds,
                     f"{e['macs']:,}", t["published_flops"], f"{t['macs_ratio']:.4f}", within])  # fmt: skip
    header = ["Variant", "Parameters", "Published", "Ratio", "Rounds to it", "MACs", "Published FLOPs", "Ratio",
              "Within 10%"]  # fmt: skip
    return _rows(header, rows)


# The references' columns, and the rules whose extent the tables measure.
HEAD_RULES = {
    "timm": "`round_channels(1280, w)`",
    "torchvision": "4 x the last stage's width",
    "efficientnet_pytorch": "`round_filters(1280, w)`",
    "tutorial": "`scale_width(1280, w)`",
}
DROP_KINDS = {
    "DropPath": "per sample",
    "StochasticDepth": "per sample",
    "drop_connect": "per sample",
    "Dropout": "element-wise",
    "Identity": "none",
}


def _bold_if(text: str, differs: bool) -> str:
    return f"**{text}**" if differs else text


def _shown(references: dict[str, Any], topic: str) -> list[str]:
    return [r for r in REFERENCES if r in references.get(topic, {})]


def references_tables(expected: dict[str, Any]) -> list[str]:
    """SPEC.md section 10: the tables of expected.toml [references]; a cell in bold departs from the spec."""
    refs = expected.get("references")
    if not refs:
        return [f"(expected.toml has no [references]: run {REGENERATE})"]
    out: list[str] = []
    for table in (_head_table, _batchnorm_table, _padding_table, _se_table, _regularisation_table):
        caption, header, rows = table(refs)
        out += [caption, "", *_rows(header, rows), ""]
    return out[:-1]


Table = tuple[str, list[str], list[list[object]]]


def _head_table(refs: dict[str, Any]) -> Table:
    head = refs["head_width"]
    low, high, step = head["grid"]
    rows: list[list[object]] = []
    for r in _shown(refs, "head_width"):
        e = head[r]
        examples = ", ".join(f"w = {w}: {h} (spec {s})" for w, h, s in e["examples"]) or "-"
        differ = _bold_if(f"{e['differ']} of {head['grid_factors']}", e["differ"] > 0)
        rows.append([REFERENCE_LABELS[r], HEAD_RULES[r], differ, examples])
    caption = (
        f"**Head width** (ARCH-4) at the factors w = {low}, {low + step:.2f}, ..., {high}: where each reference's "
        "head differs from the spec's `round_filters(1280 w)`. Each rule is checked against the reference's built "
        f"model at w = {', '.join(map(str, HEAD_BUILT))}."
    )
    return caption, ["Reference", "Head width", "Differs at", "First differences"], rows


def _batchnorm_table(refs: dict[str, Any]) -> Table:
    bn, shown = refs["batchnorm"], _shown(refs, "batchnorm")
    want = bn["spec"]
    rows: list[list[object]] = []
    for name in NAMED:
        cells = [_bold_if(f"{bn[r][name][0]:g} / {bn[r][name][1]:.3g}", bn[r][name] != want) for r in shown]
        rows.append([name.upper(), f"{want[0]:g} / {want[1]:.3g}", *cells])
    caption = (
        "**BatchNorm eps / momentum** (BLOCK-2) of every BatchNorm of each reference's named variant (PyTorch's "
        "momentum: TensorFlow's decay 0.99 is momentum 0.01)."
    )
    return caption, ["Variant", REFERENCE_LABELS["spec"], *(REFERENCE_LABELS[r] for r in shown)], rows


def _padding_table(refs: dict[str, Any]) -> Table:
    pad, stem = refs["padding"], spec.data()["base"]["stem"]
    centre = [(stem["kernel"] - 1) // 2] * 2
    spec_out = [math.ceil(n / stem["stride"]) for n in ODD_INPUT]
    odd = "x".join(map(str, ODD_INPUT))
    rows: list[list[object]] = [
        [REFERENCE_LABELS["spec"], ", ".join(map(str, centre)), "0", "x".join(map(str, spec_out))]
    ]
    for r in _shown(refs, "padding"):
        p = pad[r]
        rows.append(
            [
                REFERENCE_LABELS[r],
                _bold_if(", ".join(map(str, p["stem_top_left"])), p["stem_top_left"] != centre),
                _bold_if(f"{p['shifted']} of {p['stride2']}", p["shifted"] > 0),
                _bold_if("x".join(map(str, p["stem_out"])), p["stem_out"] != spec_out),
            ]
        )
    native = spec.variant("b0")["resolution"]
    caption = (
        f"**Padding** (ARCH-6, BLOCK-3) of B0, probed on each reference's own convolutions: the stem's padding at "
        f"the top and left of a {native}x{native} input, the stride-2 convolutions padded otherwise than "
        f"`(k - 1) / 2` there, and the stem's output for a {odd} input."
    )
    header = ["Reference", f"Stem padding (top, left) at {native}", f"Stride-2 convolutions shifted at {native}"]
    return caption, [*header, f"Stem output at {odd}"], rows


def _se_table(refs: dict[str, Any]) -> Table:
    se = refs["se_width"]
    first, last = se["inputs"]
    rows: list[list[object]] = []
    for r in _shown(refs, "se_width"):
        cells = []
        for e in ("e1", "e6"):
            pairs = zip(range(first, last + 1), se[r][e], se["spec"], strict=True)
            differ = [(n, got) for n, got, want in pairs if got != want]
            listed = ", ".join(f"{n} -> {got}" for n, got in differ[:6]) + (", ..." if len(differ) > 6 else "")
            cells.append(
                _bold_if(f"{len(differ)} of {last - first + 1}", bool(differ)) + (f": {listed}" if differ else "")
            )
        rows.append([REFERENCE_LABELS[r], *cells])
    caption = (
        f"**SE width** (SE-2) of a block built alone with n_in = {first} ... {last} input channels: the n_in where "
        "the squeezed width differs from the spec's `max(1, floor(0.25 n_in))` (n_in -> the reference's width)."
    )
    return caption, ["Reference", "MBConv1 (expansion 1)", "MBConv6 (expansion 6)"], rows


def _regularisation_table(refs: dict[str, Any]) -> Table:
    reg, shown = refs["regularisation"], _shown(refs, "regularisation")
    rows: list[list[object]] = []
    for name in NAMED:
        want = reg["spec"][name]
        cells = [
            _bold_if(f"{reg[r][name][0]:g} / {reg[r][name][1]:.3g}", not _close(reg[r][name][:2], want[:2]))
            for r in shown
        ]
        rows.append([name.upper(), f"{want[0]:g} / {want[1]:.3g}", *cells])
    kinds = [DROP_KINDS.get(reg[r]["b0"][2], reg[r]["b0"][2]) for r in shown]
    spec_kind = DROP_KINDS[reg["spec"]["b0"][2]]
    rows.append(["how a block drops", spec_kind, *(_bold_if(k, k != spec_kind) for k in kinds)])
    caption = (
        "**Classifier dropout / the last block's stochastic-depth probability** (REG-1, REG-2, REG-3), as each "
        "reference's named variant is constructed by default."
    )
    return caption, ["Variant", REFERENCE_LABELS["spec"], *(REFERENCE_LABELS[r] for r in shown)], rows


def _close(a: list[float], b: list[float]) -> bool:
    return all(math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12) for x, y in zip(a, b, strict=True))


def _replace_block(lines: list[str], name: str, body: list[str]) -> list[str]:
    begin = f"<!-- generated: {name} (spec/generate.py from efficientnet.toml and expected.toml; do not edit) -->"
    end = f"<!-- end generated: {name} -->"
    starts = [i for i, line in enumerate(lines) if line.startswith(f"<!-- generated: {name} ")]
    ends = [i for i, line in enumerate(lines) if line == end]
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise SystemExit(f"generate.py: SPEC.md needs exactly one '<!-- generated: {name} ... -->' ... '{end}' pair")
    return [*lines[: starts[0]], begin, *body, *lines[ends[0] :]]


def checked_by_line(tests: list[str]) -> str:
    """``Checked by: `tests/a.py`: `test_x`, `test_y`; `tests/b.py`: `C::test_z`.`` (spec.parse_checked_by)."""
    if not tests:
        return f"Checked by: {spec.NOT_CHECKED}."
    by_file: dict[str, list[str]] = {}
    for t in tests:
        path, name = t.split("::", 1)
        by_file.setdefault(path, []).append(name)
    groups = [f"`{path}`: " + ", ".join(f"`{n}`" for n in names) for path, names in sorted(by_file.items())]
    return "Checked by: " + "; ".join(groups) + "."


def update_checked_by(lines: list[str], checked: dict[str, list[str]]) -> list[str]:
    """Every clause section (its heading up to the next heading) ends with one Checked-by line."""
    out: list[str] = []
    clause: str | None = None

    def close() -> None:
        if clause is None:
            return
        trailing = 0
        while out and not out[-1].strip():
            out.pop()
            trailing += 1
        out.append(checked_by_line(checked.get(clause, [])))
        out.extend([""] * trailing)

    fenced = False
    for line in lines:
        if line.startswith("```"):
            fenced = not fenced
        if line.startswith("#") and not fenced:
            close()
            m = spec.CLAUSE_HEADING.match(line)
            clause = m.group(1) if m else None
        elif clause is not None and line.startswith("Checked by:"):
            continue
        out.append(line)
    close()
    return out


def render_spec(text: str, data: dict[str, Any], expected: dict[str, Any], checked: dict[str, list[str]]) -> str:
    lines = text.splitlines()
    lines = _replace_block(lines, "base-table", base_table(data))
    lines = _replace_block(lines, "variants-table", variants_table(data, expected))
    lines = _replace_block(lines, "table2-ratios", table2_table(expected))
    lines = _replace_block(lines, "references-disagree", references_tables(expected))
    lines = update_checked_by(lines, checked)
    return "\n".join(lines) + "\n"


# --- Diffs for --check ----------------------------------------------------------------------
def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for k, v in value.items():
            flat.update(_flatten(v, f"{prefix}.{k}" if prefix else k))
        return flat
    return {prefix: value}


def data_diff(committed: dict[str, Any], fresh: dict[str, Any]) -> list[str]:
    a, b = _flatten(committed), _flatten(fresh)
    missing = "(absent)"
    return [
        f"  {key}: committed {a.get(key, missing)!r}, fresh {b.get(key, missing)!r}"
        for key in sorted(a.keys() | b.keys())
        if a.get(key, missing) != b.get(key, missing)
    ]


def text_diff(path: Path, committed: str, fresh: str, limit: int = 80) -> list[str]:
    diff = list(
        difflib.unified_diff(
            committed.splitlines(), fresh.splitlines(), f"{path} (committed)", f"{path} (fresh)", lineterm="", n=1
        )
    )
    return diff[:limit] + ([f"... ({len(diff) - limit} more diff lines)"] if len(diff) > limit else [])


def _body(toml_text: str) -> list[str]:
    """The file without its header comment, whose versions line may differ harmlessly."""
    return [line for line in toml_text.splitlines() if not line.startswith("#")]


def check_expected(fresh_text: str) -> list[str]:
    rel = EXPECTED.relative_to(ROOT)
    if not EXPECTED.exists():
        return [f"{rel} does not exist: run {REGENERATE}"]
    committed_text = EXPECTED.read_text()
    try:
        committed = tomllib.loads(committed_text)
    except tomllib.TOMLDecodeError as e:
        return [f"{rel} is not valid TOML ({e})"]
    problems = data_diff(committed, tomllib.loads(fresh_text))
    if problems:
        return [f"{rel} differs from what timm gives (key: committed vs fresh):", *problems]
    if _body(committed_text) != _body(fresh_text):
        return [f"{rel} has the right data but not the generated layout:", *text_diff(rel, committed_text, fresh_text)]
    return []


def check_spec(fresh_text: str) -> list[str]:
    rel = SPEC_MD.relative_to(ROOT)
    committed = SPEC_MD.read_text()
    if committed == fresh_text:
        return []
    return [f"{rel}: generated parts (Checked-by lines, tables) are stale:", *text_diff(rel, committed, fresh_text)]


# --- Main ---------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="fail with a diff if a committed file is stale")
    mode.add_argument("--update-clauses", action="store_true", help="only rewrite SPEC.md's generated parts")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.update_clauses and not EXPECTED.exists():
        print(f"generate.py: {EXPECTED.relative_to(ROOT)} is missing: run {REGENERATE} first", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory() as tmp:
        # Collecting the suite (a second interpreter importing torch) overlaps with timm's work.
        out = Path(tmp) / "clauses.json"
        collection = spec.start_clause_collection(out)
        try:
            if args.update_clauses:
                expected_text, versions = EXPECTED.read_text(), ""
            else:
                fresh, versions = generate()
                expected_text = to_toml(fresh, versions)
                if not args.check:
                    EXPECTED.write_text(expected_text)
                    print(f"wrote {EXPECTED.relative_to(ROOT)} ({versions})")
            checked = spec.checked_by(spec.finish_clause_collection(collection, out))
        except spec.CollectionError as e:
            print(f"generate.py: {e}", file=sys.stderr)
            return 2
        finally:
            if collection.poll() is None:
                collection.kill()
                collection.wait()

    spec_text = render_spec(SPEC_MD.read_text(), spec.data(), tomllib.loads(expected_text), checked)
    elapsed = f"{time.perf_counter() - start:.1f} s"
    if args.check:
        problems = check_expected(expected_text) + check_spec(spec_text)
        if problems:
            print("\n".join(problems), file=sys.stderr)
            print(f"generate.py --check: stale ({elapsed}); regenerate with {REGENERATE}", file=sys.stderr)
            return 1
        print(f"generate.py --check: spec/expected.toml and spec/SPEC.md are up to date ({versions}; {elapsed})")
        return 0
    SPEC_MD.write_text(spec_text)
    print(f"wrote {SPEC_MD.relative_to(ROOT)} (Checked-by lines of {len(spec.clauses())} clauses; tables) in {elapsed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
