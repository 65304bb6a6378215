"""The derived numbers of spec/expected.toml follow from spec/efficientnet.toml and the rules of SPEC.md.

expected.toml is generated from timm; here every number in it is recomputed from the spec's own
data (the base table, the scaling rules, the layer rules of SPEC.md) without timm or any
implementation: scaled widths and depths, output shapes (the convolution output-size formula),
the exact parameter count and the tensor counts (closed form per layer), the architecture
fingerprint (the shape sequence in API-4 order), and the multiply-accumulate count.  Agreement
means the spec's prose, its data and timm describe one network.  The same rules at any factors
hold timm's generator, the oracle of ARCH-5's any-factor property, on a grid.  Then Table 2: each
count against the published figure (TABLE2-1, TABLE2-2).

These are tests of the spec, not of an implementation: they cite no clause.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import pytest

from tests.support import models, spec

N_CLASSES = 1000  # the API default (API-2): the variants of expected.toml are ImageNet classifiers
IN_CHANNELS = 3  # RGB input (ARCH-2)


# --- The spec's rules, written out -----------------------------------------------------------
def scale_width(w: int, factor: float) -> int:
    """SCALE-1, with the constants of efficientnet.toml [scaling]."""
    s = spec.data()["scaling"]
    divisor, minimum, limit = s["width_divisor"], s["width_min"], s["width_round_limit"]
    scaled = w * factor
    new = max(minimum, int(scaled + divisor / 2) // divisor * divisor)
    return new + divisor if new < limit * scaled else new


def scale_depth(d: int, factor: float) -> int:
    assert spec.data()["scaling"]["depth_rounding"] == "ceil"
    return math.ceil(d * factor)  # SCALE-2


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


@dataclass
class Tally:
    """Parameters, multiply-accumulates and the shape signature (spec.shape_signature's format),
    accumulated layer by layer in state_dict order (API-4)."""

    params: int = 0
    macs: int = 0
    signature: list[str] = field(default_factory=list)

    def tensor(self, kind: str, *shape: int) -> None:
        self.signature.append(f"{kind}:{'x'.join(map(str, shape)) or 'scalar'}")
        if kind == "P":
            self.params += math.prod(shape)

    def conv(self, c_in: int, c_out: int, kernel: int, size: int, groups: int = 1, bias: bool = False) -> None:
        """A convolution producing a size x size map: weight (c_out, c_in/groups, k, k), optional bias."""
        self.tensor("P", c_out, c_in // groups, kernel, kernel)
        if bias:
            self.tensor("P", c_out)
        self.macs += c_out * (c_in // groups) * kernel * kernel * size * size

    def bn(self, c: int) -> None:
        """BatchNorm2d (BLOCK-2): weight, bias; running_mean, running_var, num_batches_tracked."""
        self.tensor("P", c)
        self.tensor("P", c)
        self.tensor("B", c)
        self.tensor("B", c)
        self.tensor("B")

    def linear(self, c_in: int, c_out: int) -> None:
        self.tensor("P", c_out, c_in)
        self.tensor("P", c_out)
        self.macs += c_in * c_out

    @property
    def counts(self) -> tuple[int, int]:
        return sum(t.startswith("P:") for t in self.signature), sum(t.startswith("B:") for t in self.signature)


@dataclass(frozen=True)
class Derived:
    widths: list[int]
    depths: list[int]
    stem_shape: list[int]
    stage_shapes: list[list[int]]
    head_shape: list[int]
    logits_shape: list[int]
    tally: Tally


def mbconv(t: Tally, n_in: int, n_out: int, stage: dict, stride: int, size: int) -> int:
    """One MBConv block (BLOCK-3, SE-2) on a size x size input; returns the output size."""
    expanded = n_in * stage["expansion"]
    if stage["expansion"] != 1:
        t.conv(n_in, expanded, 1, size)
        t.bn(expanded)
    k = stage["kernel"]
    size = conv_out(size, k, stride, (k - 1) // 2)
    t.conv(expanded, expanded, k, size, groups=expanded)
    t.bn(expanded)
    squeezed = max(1, int(n_in * stage["se_ratio"]))
    t.conv(expanded, squeezed, 1, 1, bias=True)  # on the pooled 1x1 map
    t.conv(squeezed, expanded, 1, 1, bias=True)
    t.conv(expanded, n_out, 1, size)
    t.bn(n_out)
    return size


def derive(name: str) -> Derived:
    """Everything expected.toml records for a variant, from efficientnet.toml alone."""
    v = spec.variant(name)
    return derive_at(v["w_factor"], v["d_factor"], v["resolution"])


def derive_at(w_factor: float, d_factor: float, resolution: int, n_classes: int = N_CLASSES) -> Derived:
    """The network at any factors, from efficientnet.toml alone."""
    base = spec.data()["base"]
    widths = [scale_width(w, w_factor) for w in spec.base_widths()]
    depths = [scale_depth(d, d_factor) for d in spec.base_depths()]
    t, stem = Tally(), base["stem"]
    size = conv_out(resolution, stem["kernel"], stem["stride"], stem["padding"])
    t.conv(IN_CHANNELS, widths[0], stem["kernel"], size)
    t.bn(widths[0])
    stem_shape, stage_shapes = [1, widths[0], size, size], []
    for i, (stage, depth) in enumerate(zip(base["stages"], depths, strict=True)):
        for j in range(depth):
            n_in = widths[i] if j == 0 else widths[i + 1]
            size = mbconv(t, n_in, widths[i + 1], stage, stage["stride"] if j == 0 else 1, size)
        stage_shapes.append([1, widths[i + 1], size, size])
    t.conv(widths[-2], widths[-1], 1, size)
    t.bn(widths[-1])
    t.linear(widths[-1], n_classes)
    return Derived(widths, depths, stem_shape, stage_shapes, [1, widths[-1], size, size], [1, n_classes], t)


# --- The tests -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def expected() -> dict:
    data = spec.expected()
    assert data, "spec/expected.toml is missing: run `nox -s spec` (python spec/generate.py)"
    return data["variants"]


VARIANTS = spec.variants()
TABLE2 = list(spec.data()["table2"])


def test_expected_covers_exactly_the_spec_variants(expected):
    assert list(expected) == VARIANTS, f"expected.toml has variants {list(expected)}, efficientnet.toml {VARIANTS}"


@pytest.mark.parametrize("name", VARIANTS)
def test_scaled_widths_and_depths_follow_the_rounding_rules(name, expected):
    d = derive(name)
    assert expected[name]["widths"] == d.widths, f"{name}: widths (stem, 7 stages, head) vs SCALE-1"
    assert expected[name]["depths"] == d.depths, f"{name}: depths vs SCALE-2"


@pytest.mark.parametrize("name", VARIANTS)
def test_output_shapes_follow_from_the_strides(name, expected):
    d, e = derive(name), expected[name]
    assert e["resolution"] == spec.variant(name)["resolution"], f"{name}: expected.toml measured another resolution"
    assert e["stem_shape"] == d.stem_shape, f"{name}: stem output shape"
    for i, (got, want) in enumerate(zip(e["stage_shapes"], d.stage_shapes, strict=True)):
        assert got == want, f"{name}: stage {i} output shape {got}, the strides give {want}"
    assert e["head_shape"] == d.head_shape, f"{name}: head conv output shape"
    assert e["logits_shape"] == d.logits_shape, f"{name}: logits shape"


@pytest.mark.parametrize("name", VARIANTS)
def test_parameter_count_is_the_closed_form(name, expected):
    d, e = derive(name), expected[name]
    assert e["params"] == d.tally.params, (
        f"{name}: {e['params']:,} parameters, the closed form gives {d.tally.params:,}"
    )
    assert (e["param_tensors"], e["buffer_tensors"]) == d.tally.counts, f"{name}: (parameter, buffer) tensor counts"


@pytest.mark.parametrize("name", VARIANTS)
def test_fingerprint_is_the_api4_shape_sequence(name, expected):
    d = derive(name)
    digest = hashlib.sha256(";".join(d.tally.signature).encode()).hexdigest()
    assert expected[name]["fingerprint"] == digest, (
        f"{name}: the fingerprint differs from the shape sequence that SPEC.md's API-4 order and the "
        f"tables give (first tokens: {';'.join(d.tally.signature[:8])})"
    )


@pytest.mark.parametrize("name", VARIANTS)
def test_macs_are_the_closed_form(name, expected):
    d, e = derive(name), expected[name]
    assert e["macs"] == d.tally.macs, f"{name}: {e['macs']:,} MACs, the closed form gives {d.tally.macs:,}"


# timm's generator is the oracle of ARCH-5 at any factors (test_architecture.py): here it is held to
# the spec's rules on a grid through the rules' edges (the 10% rule at w = 0.7, torchvision's
# other head rule at w = 0.33, every width 8 at w = 0.01, depths just above an integer ratio).
GENERATOR_GRID = [
    *((w, 0.5) for w in (0.01, 0.05, 0.1, 0.25, 0.33, 0.5, 0.7, 0.9, 1.3, 1.7, 2.9, 5.0)),
    *((0.25, d) for d in (0.05, 0.34, 1.0000001, 1.5, 2.0000001, 3.1, 6.0)),
    (1.2, 1.4),
    (4.3, 5.3),
]


@pytest.mark.parametrize(("w", "d"), GENERATOR_GRID)
def test_timms_generator_follows_the_spec_rules_at_any_factors(w, d):
    n_classes = 10
    got = spec.shape_signature(models.timm_scaled_to_inspect(w, d, n_classes))
    want = derive_at(w, d, 224, n_classes).tally.signature
    first = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), min(len(got), len(want)))
    assert got == want, (
        f"{models.TIMM_GENERATOR} at w={w}, d={d}: {len(got)} tensors, the spec's rules give {len(want)}; "
        f"first difference at position {first}: timm {got[first : first + 1]}, spec {want[first : first + 1]}"
    )


@pytest.mark.parametrize("name", TABLE2)
def test_parameter_count_rounds_to_table2(name, expected):
    params, figure = expected[name]["params"], spec.data()["table2"][name]["params"]
    low, high = spec.table2_params_interval(name)
    assert low <= params < high, f"{name}: {params:,} parameters do not round to the published {figure}"


@pytest.mark.parametrize("name", TABLE2)
def test_macs_are_within_ten_percent_of_table2(name, expected):
    macs, figure = expected[name]["macs"], spec.data()["table2"][name]["flops"]
    low, high = spec.table2_macs_interval(name)
    assert low <= macs <= high, f"{name}: {macs:,} MACs are not within 10% of the published {figure} FLOPs"


@pytest.mark.parametrize("name", TABLE2)
def test_recorded_ratios_are_the_counts_over_the_figures(name, expected):
    e, published = expected[name], spec.data()["table2"][name]
    t = e["table2"]
    assert (t["published_params"], t["published_flops"]) == (published["params"], published["flops"])
    assert t["params_ratio"] == round(e["params"] / spec.published(published["params"])[0], 4)
    assert t["macs_ratio"] == round(e["macs"] / spec.published(published["flops"])[0], 4)


@pytest.mark.parametrize(
    ("figure", "value", "step"),
    [("5.3M", 5_300_000, 100_000), ("0.39B", 390_000_000, 10_000_000), ("12M", 12_000_000, 1_000_000),
     ("1.0B", 1_000_000_000, 100_000_000)],
)  # fmt: skip
def test_published_figures_parse_at_their_precision(figure, value, step):
    assert spec.published(figure) == (value, step)


def test_only_b2_needs_slack():
    """The slack is for a slip of the paper; without it B2 would fail, and no other row needs one."""
    slack = [n for n, row in spec.data()["table2"].items() if row.get("params_slack")]
    assert slack == ["b2"], f"params_slack is given for {slack}"
    value, step = spec.published(spec.data()["table2"]["b2"]["params"])
    assert not value - step / 2 <= spec.expected()["variants"]["b2"]["params"] < value + step / 2


# --- Where the references disagree (expected.toml [references], SPEC.md section 11) -----------------
def _references() -> dict:
    refs = spec.expected().get("references")
    assert refs, "spec/expected.toml has no [references]: run `nox -s spec` (python spec/generate.py)"
    return refs


def test_reference_code_port_has_the_spec_variants():
    """efficientnet-pytorch's efficientnet_params is the reference code's table: every variant of
    efficientnet.toml has its width and depth factors, resolution and classifier dropout."""
    ep = pytest.importorskip("efficientnet_pytorch.utils")
    for name in VARIANTS:
        v = spec.variant(name)
        want = (v["w_factor"], v["d_factor"], v["resolution"], v["drop_rate"])
        got = ep.efficientnet_params(f"efficientnet-{name}")
        assert got == want, f"{name}: efficientnet-pytorch has (w, d, resolution, dropout) {got}, the spec {want}"


def test_spec_rows_of_the_references_follow_from_the_spec():
    """The spec's own rows of [references]: its BN settings, its classifier dropout, and the last
    block's rate 0.2 (N - 1) / N with N the blocks of expected.toml's depths (REG-2)."""
    refs = _references()
    layers = spec.data()["base"]["layers"]
    assert refs["batchnorm"]["spec"] == [layers["batchnorm_eps"], layers["batchnorm_momentum"]]
    rate = spec.data()["regularisation"]["drop_path_rate"]
    for name, (drop, last, _) in refs["regularisation"]["spec"].items():
        n = sum(spec.expected()["variants"][name]["depths"])
        assert drop == spec.variant(name)["drop_rate"], f"{name}: classifier dropout {drop}"
        assert math.isclose(last, rate * (n - 1) / n), f"{name}: last block's rate {last}, want {rate} (N-1)/N, N = {n}"


def test_torchvisions_head_disagreement_is_its_rule_against_the_spec_rule():
    """The recorded count of grid factors where torchvision's head (4 x its last stage width, by its
    own rounding) differs from the spec's scaled 1280, recomputed with SCALE-1 as written here."""
    tv = pytest.importorskip("torchvision.models.efficientnet")
    head = _references()["head_width"]
    low, high, step = head["grid"]
    grid = [round(low + step * i, 2) for i in range(head["grid_factors"])]
    assert grid[-1] == high
    last_stage = spec.base_widths()[-2]
    differ = [w for w in grid if 4 * tv._MBConvConfig.adjust_channels(last_stage, w) != scale_width(1280, w)]
    assert len(differ) == head["torchvision"]["differ"], (
        f"torchvision's head differs at {len(differ)} factors, expected.toml records {head['torchvision']['differ']}"
    )
    assert 4 * last_stage == spec.base_widths()[-1], "the base head is 4 x the last stage: the rules agree at w = 1"
