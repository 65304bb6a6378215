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

SPEC.md's generated parts are the "Checked by:" line of every clause (from the clause markers of
the collected suite) and the tables between ``<!-- generated: NAME -->`` and
``<!-- end generated: NAME -->`` (from efficientnet.toml and expected.toml).
"""

from __future__ import annotations

import argparse
import difflib
import math
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

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


# --- What timm's model is -----------------------------------------------------------------
def measure(name: str, resolution: int, device: str) -> dict[str, Any]:
    """Everything expected.toml records about timm's ``efficientnet_<name>``, built on ``device``."""
    import timm
    import torch
    from torch import nn
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device(device):
        model = timm.create_model(f"efficientnet_{name}").eval()
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
    versions = f"timm {timm.__version__}, torch {torch.__version__}"
    return {"conventions": conventions, "variants": variants}, versions


# --- A small TOML writer: fixed key order, stable number formatting -------------------------
def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} to TOML")


def _table(prefix: str, table: dict[str, Any], out: list[str]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
    if scalars:
        out += ["", f"[{prefix}]"] if prefix else []
        out += [f"{k} = {_value(v)}" for k, v in scalars.items()]
    for k, v in table.items():
        if isinstance(v, dict):
            _table(f"{prefix}.{k}" if prefix else k, v, out)


def to_toml(data: dict[str, Any], versions: str) -> str:
    out = [
        "# spec/expected.toml: expectations derived from timm.  GENERATED, do not edit.",
        f"# Tool: spec/generate.py with {versions}; models built on the meta device",
        "# (a real CPU build of b0 gives the same numbers, checked on every run).",
        f"# Command: {COMMAND}",
        "# Per variant: widths (stem, 7 stages, head) and depths read off timm's modules; output shapes",
        "# at the native resolution, batch 1; exact parameter count; MACs and fingerprint as [conventions].",
    ]
    _table("", data, out)
    return "\n".join(out) + "\n"


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
