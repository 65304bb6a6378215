"""Verdicts of real implementations: torchvision's EfficientNet and efficientnet-pytorch, each behind the
tutorial's API through an adapter in tests/forks/, run through the conformance suite; the verdicts are
written to docs/torchvision-verdict.md and docs/efficientnet-pytorch-verdict.md.

    python tests/forks/verdicts.py                       # every library
    python tests/forks/verdicts.py efficientnet-pytorch  # one
    python tests/forks/verdicts.py --slow                # the whole suite, slow tests included
    python tests/forks/verdicts.py --shims               # the network-only shims: docs/shims-verdict.md

Each run is `pytest tests/conformance --impl tests/forks/<adapter>.py -m "not slow" -n 2 --report ...`
with the hypothesis profile `ci` (derandomized: the same verdict on every run).  A library that is not
installed is reported and left out (exit status 1).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.forks import conformance_run  # noqa: E402
from tests.support import verdict  # noqa: E402


@dataclass(frozen=True)
class Library:
    name: str  # as on the package index
    module: str  # the import name
    adapter: str  # relative to ROOT
    title: str
    builds: str  # what the adapter builds, for the page's header
    source_reading: tuple[str, ...]  # departures read off the library's source, for the reader to compare
    departures: tuple[tuple[str, str], ...]  # (clause, why): the root causes the verdict should name, one a departure
    shim: str = ""  # the network-only shim (issue 28): the library's own constructors, arguments renamed
    alone: tuple[str, ...] = ()  # departures that only a block built alone shows (no network has them)


LIBRARIES = {
    lib.name: lib
    for lib in (
        Library(
            name="torchvision",
            module="torchvision",
            adapter="tests/forks/torchvision_adapter.py",
            shim="tests/forks/torchvision_shim.py",
            alone=("BLOCK-3",),
            title="torchvision's EfficientNet",
            builds=(
                "`EfficientNet(w, d, n)` is the model torchvision's `efficientnet_b0` builds, with the factors given "
                "to `_efficientnet_conf` (torchvision's path to any factors) and its default dropout 0.2 and "
                "stochastic depth 0.2; `efficientnet_bN` is torchvision's `efficientnet_bN`; `MBConv` is "
                "torchvision's `MBConv` on an `_MBConvConfig` with `nn.BatchNorm2d`; widths are rounded by "
                "`_MBConvConfig.adjust_channels`, depths by `MBConvConfig.adjust_depth`"
            ),
            source_reading=(
                "the head is `4 x` the last stage's width (`last_channel=None`), where the reference code and "
                "timm round `1280 w`: the same for B0-B7 and w = 0.25, different at most other factors "
                "(w = 0.33: 416 vs 424)",
                "B5-B7 are built with `BatchNorm2d(eps=1e-3, momentum=0.01)` (TensorFlow's values, for the ported "
                "weights); B0-B4 and other factors use PyTorch's defaults (1e-5, 0.1)",
                "a block expands to `_make_divisible(n_in x e, 8)` channels, and adds an expansion conv when "
                "`e = 1` but `n_in` is not a multiple of 8: only blocks built alone with such `n_in` show it (every "
                "width of the network is a multiple of 8)",
                "padding `(k - 1) // 2`, stochastic depth `0.2 k / N`, classifier dropout 0.2-0.5, SE width "
                "`max(1, n_in // 4)`: as the spec",
            ),
            departures=(
                ("ARCH-4", "the head rule `4 x` the last stage's width (erratum E-9)"),
                ("BLOCK-2", "B5-B7's TensorFlow BatchNorm eps 1e-3 and momentum 0.01 (erratum E-7)"),
                (
                    "BLOCK-3",
                    "the block built alone: `mbconv1(1, 1)` or `MBConv(1, 1, 1, ...)` expands 1 -> 8 channels and "
                    "adds an expansion conv that `e = 1` omits. `MBConv` is part of the tutorial's API, so this "
                    "is a departure of its own (a root cause, not a consequence of BLOCK-2: the block's test takes "
                    "the block's own BatchNorm eps), though no network that `EfficientNet(w, d)` builds shows it; "
                    "no erratum, as no port keeps it as a convention",
                ),
            ),
        ),
        Library(
            name="timm",
            module="timm",
            adapter="tests/forks/timm_adapter.py",
            shim="tests/forks/timm_shim.py",
            alone=("SE-2",),
            title="timm's own modules (the suite's reference, wired by hand)",
            builds=(
                '`EfficientNet(w, d, n)` is the model `_gen_efficientnet("efficientnet_b0", channel_multiplier=w, '
                "depth_multiplier=d, num_classes=n)` builds, in the tutorial's layout (stem: `conv_stem` and its "
                "`BatchNormAct2d`, stages: `blocks`, pre: `conv_head` and its `BatchNormAct2d`, pool_flatten: "
                "`global_pool`, head: dropout and `classifier`); `efficientnet_bN` is timm's `efficientnet_bN`; "
                "`MBConv` is `DepthwiseSeparableConv` (e = 1) or `InvertedResidual` with `SqueezeExcite(rd_ratio=1 / "
                "r)`; `SEBlock(c, r)` is `SqueezeExcite(c, rd_ratio=1 / r)`; `conv_block` is a `Conv2d` and a "
                "`BatchNormAct2d` (which applies the activation itself), or `Sequential(conv, SiLU)` without BN"
            ),
            source_reading=(
                "`SqueezeExcite` squeezes to `round(c / r)` channels with no lower bound: `SEBlock(1, 2)` has 0 "
                "channels and `SEBlock(6, 4)` 2 (the spec: `max(1, c // r)`); no network shows it (every width is "
                "a multiple of 8)",
                "`InvertedResidual` expands to `make_divisible(n_in x e, 8)` channels: `MBConv(3, 3, 6)` expands to "
                "24, not 18; only blocks built alone with such `n_in` show it. BLOCK-3 depends on SE-2, so while "
                "SE-2 fails the report lists BLOCK-3 as its consequence",
                "`BatchNormAct2d` is a `BatchNorm2d` subclass that applies SiLU: the same function as BatchNorm then "
                "SiLU, judged by what it computes (BLOCK-1, BLOCK-2)",
            ),
            departures=(("SE-2", "the SE width `round(c / r)`, 0 for `SEBlock(1, 2)` (erratum E-6)"),),
        ),
        Library(
            name="efficientnet-pytorch",
            module="efficientnet_pytorch",
            adapter="tests/forks/efficientnet_pytorch_adapter.py",
            shim="tests/forks/efficientnet_pytorch_shim.py",
            alone=("BLOCK-3",),
            title="efficientnet-pytorch (lukemelas), a TensorFlow-faithful port",
            builds=(
                '`EfficientNet(w, d, n)` is `EfficientNet.from_name("efficientnet-b0", width_coefficient=w, '
                "depth_coefficient=d, num_classes=n)` (the library's documented way to other factors); "
                '`efficientnet_bN` is `EfficientNet.from_name("efficientnet-bN")`; `MBConv` is the library\'s '
                "`MBConvBlock` with B0's `GlobalParams` (and no image size); widths and depths are rounded by "
                "`round_filters` and `round_repeats`; each block is called with the drop-connect rate the "
                "library's `forward` gives it"
            ),
            source_reading=(
                "BatchNorm eps 1e-3 and momentum 0.01 (`1 - 0.99`, TensorFlow's decay) everywhere",
                'TensorFlow "same" padding: in the models computed once for the native resolution '
                "(`Conv2dStaticSamePadding`), so at other sizes the padding is wrong (57x71 gives a 28x35 stem, "
                "not 29x36) and small inputs crash; in a block built alone, dynamic and asymmetric (more at the "
                "bottom and right) for stride 2 on even sizes",
                "the first block of each stage gets its stride as a list (`[1]`), and `MBConvBlock` tests "
                "`stride == 1`, so the first block of a stride-1 stage has no residual connection whenever it "
                "keeps its width (at small width factors, e.g. w = 0.01 where every width is 8)",
                "classifier dropout 0.2-0.5 per variant and drop-connect `0.2 k / N`, SE width "
                "`max(1, int(0.25 n_in))`, head `round_filters(1280)`: as the spec",
            ),
            departures=(
                ("ARCH-2", 'the models\' static TensorFlow "same" padding (erratum E-8)'),
                ("BLOCK-2", "TensorFlow's BatchNorm eps 1e-3 and momentum 0.01 (erratum E-7)"),
                (
                    "BLOCK-3",
                    'a block\'s dynamic TensorFlow "same" padding, only bottom and right for stride 2 on '
                    "even sizes (erratum E-10)",
                ),
                (
                    "BLOCK-4",
                    "the first block of a stride-1 stage without its residual (stride `[1]`): a bug, no erratum; "
                    "a root although BLOCK-3 fails too, as its evidence (with the projection BN zeroed the block "
                    "outputs exactly 0) cannot come from the branch",
                ),
            ),
        ),
    )
}


def verdict_path(lib: Library) -> Path:
    return ROOT / "docs" / f"{lib.name}-verdict.md"


def report_path(lib: Library) -> Path:
    return ROOT / "reports" / "verdicts" / lib.name


def version(lib: Library) -> str | None:
    try:
        return importlib.metadata.version(lib.name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cell(text: str, limit: int = 360) -> str:
    text = re.sub(r"\+?-{8,}\+?", " ", " ".join(text.split())).replace("|", "\\|").strip()  # hypothesis' boxes
    return text if len(text) <= limit else text[: limit - 3] + "..."


def render(lib: Library, report: verdict.Report, slow: bool, lib_version: str) -> str:
    import torch

    rows = [r for r in report.clauses if not r.clause.startswith("EXT-")]
    extras = [r.clause for r in report.clauses if r.clause.startswith("EXT-")]
    failed = [r.clause for r in rows if r.status == "FAILED"]
    passed = [r.clause for r in rows if r.status in ("passed", "partial")]
    roots = report.root_causes
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    lines = [
        f"<!-- Generated by `python tests/forks/verdicts.py {lib.name}`; do not edit. -->",
        "",
        f"# {lib.title}, held to the spec",
        "",
        f"{lib.title} ({lib.name} {lib_version}), put behind the tutorial's API by the adapter "
        f"[`{lib.adapter}`](../{lib.adapter}), which only re-wires the library's own modules into the tutorial's "
        f"layout and fixes none of its departures: {lib.builds}. Tested with",
        "",
        "```",
        f"python tests/forks/verdicts.py {lib.name}" + (" --slow" if slow else ""),
        f"# runs: {conformance_run.command(lib.adapter, slow)} --report ...",
        "```",
        "",
        f"{conformance_run.selection(slow).capitalize()}; hypothesis profile `ci`; "
        f"{lib.name} {lib_version}, torch {torch.__version__}; "
        f"generated {today}.",
        "",
        "Where the library departs from the spec, read off its source (for comparison with what the suite names):",
        "",
        *(f"- {item}" for item in lib.source_reading),
        "",
        f"**Verdict: {lib.name} fails {len(failed)} of the {len(rows)} clauses of the EfficientNet spec** "
        f"({', '.join(failed) or 'none'}), and passes {len(passed)}. The clauses of effnet's own extras "
        f"({', '.join(extras)}) are not held to forks.",
    ]
    consequences = [c for c in failed if c not in roots]
    lines += [
        "",
        f"**Root causes** (failed clauses not explained by another failed clause): {', '.join(roots) or 'none'}"
        + (f"; their consequences: {', '.join(consequences)}." if consequences else "."),
    ]
    want = [clause for clause, _ in lib.departures]
    missing = [c for c in want if c not in roots]
    extra = [c for c in roots if c not in want]
    agreement = (
        "the verdict's root causes are exactly these."
        if not missing and not extra
        else f"the verdict's root causes differ: {', '.join(missing) or 'none'} not named, "
        f"{', '.join(extra) or 'none'} named beside them."
    )
    lines += [
        "",
        f"The departures read off the source, each with the clause it violates first; {agreement}",
        "",
        *(f"- {clause}: {why}" for clause, why in lib.departures),
    ]
    lines += [
        "",
        "| Clause | Title | Result | Why (the most specific failing test) | Erratum or convention named |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        why = "" if r.status == "passed" else _cell(r.detail)
        errata = _cell("; ".join(r.errata), 240)
        status = conformance_run.STATUS.get(r.status, r.status)
        if r.clause in roots:
            status += " (root cause)"
        lines.append(f"| {r.clause} | {r.title} | {status} | {why} | {errata} |")
    return "\n".join(lines) + "\n"


def produce(lib: Library, slow: bool, extra: list[str]) -> bool:
    lib_version = version(lib)
    if lib_version is None:
        print(f"{lib.name} is not installed: no verdict for it (pip install {lib.name})")
        return False
    report = conformance_run.run(lib.adapter, report_path(lib), slow, extra)
    if report is None:
        return False
    path = verdict_path(lib)
    path.write_text(render(lib, report, slow, lib_version))
    print(f"wrote {path.relative_to(ROOT)}")
    return True


# The names a network-only shim lacks (API-1) and the structure it does not have (API-3): its form, not its network.
SHIM_FORM = ("API-1", "API-3")
SHIMS_PAGE = ROOT / "docs" / "shims-verdict.md"


def shim_row(lib: Library, slow: bool, extra: list[str]) -> str | None:
    """The shim's verdict beside its adapter's departures: the network-level root causes (every root but
    the shim's form) against the departures a network shows (those of the adapter's page that not only a
    block built alone shows)."""
    report = conformance_run.run(lib.shim, report_path(lib).with_name(f"{lib.name}-shim"), slow, extra)
    if report is None:
        return None
    roots = report.root_causes
    network = [c for c in roots if c not in SHIM_FORM]
    want = [clause for clause, _ in lib.departures if clause not in lib.alone]
    same = sorted(network) == sorted(want)
    print(f"{lib.shim}: root causes {', '.join(roots)}; network-level {network}, adapter's {want}: {same}")
    return (
        f"| {lib.name} | [`{lib.shim}`](../{lib.shim}) ({len(Path(ROOT / lib.shim).read_text().splitlines())} lines) "
        f"| {', '.join(roots)} | {', '.join(network) or 'none'} | {', '.join(want) or 'none'} "
        f"(page: [{lib.name}-verdict.md]({lib.name}-verdict.md); {', '.join(lib.alone)} only built alone) "
        f"| {'yes' if same else '**no**'} |"
    )


def produce_shims(chosen: list[str], slow: bool, extra: list[str]) -> bool:
    rows = [shim_row(LIBRARIES[name], slow, extra) for name in chosen if version(LIBRARIES[name])]
    lines = [
        "<!-- Generated by `python tests/forks/verdicts.py --shims`; do not edit. -->",
        "",
        "# The libraries behind the network protocol: shims beside the adapters",
        "",
        "Each shim defines only the network constructors (`EfficientNet(w, d, n)` through the library's own "
        "generator, `efficientnet_bN(n)`), renaming arguments and nothing else. The suite judges every clause "
        "from what a fork defines: the shim fails API-1 (the helpers it lacks) and API-3 (its modules are not "
        "the tutorial's children), the tests that need a helper are undecided, and the network-level clauses "
        "find the stem, blocks and head by the parameters they hold. Its network-level root causes must be "
        "the adapter's departures that a network shows.",
        "",
        f"{conformance_run.selection(slow).capitalize()}; hypothesis profile `ci`; generated "
        f"{datetime.datetime.now(datetime.UTC).date().isoformat()}.",
        "",
        "| Library | Shim | Root causes | Network-level root causes | The adapter's, in a network | Same |",
        "|---|---|---|---|---|---|",
        *(row for row in rows if row),
    ]
    SHIMS_PAGE.write_text("\n".join(lines) + "\n")
    print(f"wrote {SHIMS_PAGE.relative_to(ROOT)}")
    return all(row and "**no**" not in row for row in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("libraries", nargs="*", help=f"any of {', '.join(LIBRARIES)} (default: all)")
    parser.add_argument("--slow", action="store_true", help="run the whole suite, slow tests included")
    parser.add_argument("--shims", action="store_true", help="the network-only shims instead: docs/shims-verdict.md")
    args, extra = parser.parse_known_args()
    unknown = [name for name in args.libraries if name not in LIBRARIES]
    if unknown:
        parser.error(f"unknown library {', '.join(unknown)}; choose from {', '.join(LIBRARIES)}")
    chosen = args.libraries or list(LIBRARIES)
    if args.shims:
        return 0 if produce_shims(chosen, args.slow, extra) else 1
    results = [produce(LIBRARIES[name], args.slow, extra) for name in chosen]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
