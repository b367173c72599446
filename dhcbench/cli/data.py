"""Commands about data and the registries: ``methods``, ``datasets``, ``prepare``, ``splits``."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from dhcbench.benchmark.validation import check_ratio
from dhcbench.cli.common import VARIANTS, app, console, user_errors
from dhcbench.errors import UserError

#: How each family is headed in ``dhcbench methods``, in the order of the paper's tables.
_FAMILY_HEADINGS = {
    "bound": "bounds", "general": "general semi-supervised methods",
    "imbalance": "class-imbalance methods", "ours": "DHC and its weightings",
    "ablation": "ablation pairings <a>-<b>: weighting a on branch A, b on branch B (Table 3)",
}
#: What each data mode trains on, for ``dhcbench methods METHOD``.
_DATA_MODES = {
    "semi": "the labeled and the unlabeled cases of the split",
    "labeled": "the labeled cases of the split only (the unlabeled ones are not used)",
    "all": "every training case, with its label (the ratio does not matter)",
}
#: The sections of docs/reference.md on each weighting (for pairings, which cite none).
_WEIGHTING_SECTIONS = {"uniform": "§8.1", "distdw": "§7.1", "diffdw": "§7.2", "crest": "§8.8",
                       "simis": "§8.9", "cld": "§8.11"}
#: What the methods' keyword arguments mean (``--set method.kwargs.NAME=VALUE``).
_KWARGS = {
    "beta": "β, momentum of DistDW's EMA of the class weights (branch B)",
    "alpha": "α, exponent of DiffDW's unlearning / learning speed ratio (branch A)",
    "tau": "τ, iterations DiffDW accumulates over (EMA momentum (τ-1)/τ)",
    "sup_loss": "supervised loss: auto (by variant), w_ce+dice, wce or (ce+dice)/2",
    "unsup_loss": "unsupervised loss: auto (by variant), wce or ce+dice",
}
_CITATION = re.compile(r"\s*\((?:reference )?(§[^)]*)\)")
_SENTENCE = re.compile(r"(?<=\.)\s+(?=[A-Z]|variant=)")


@app.command()
@user_errors
def methods(
    key: Annotated[str | None, typer.Argument(metavar="METHOD", help="One method (key or alias): its variants, arguments, paper and reference sections.", show_default=False)] = None,
    details: Annotated[bool, typer.Option("--details", hidden=True, help="Deprecated: every method, described as by `methods METHOD`.")] = False,
) -> None:
    """List the methods, or describe one (`dhcbench methods dhc`)."""
    from dhcbench.methods import METHODS
    from dhcbench.methods.base import FAMILIES

    if key is not None:
        _describe(METHODS.canonical(key))
    elif details:
        for name, _ in sorted(METHODS.items(), key=lambda kv: FAMILIES.index(kv[1].family)):
            _describe(name)
            console.print()
    else:
        _overview()


def _fmt(value: object) -> str:
    """A setting's value as a user writes it: ``none``, ``true``, ``0.99``, ``auto``."""
    if value is None or isinstance(value, bool):
        return {None: "none", True: "true", False: "false"}[value]
    return f"{value:g}" if isinstance(value, float) else str(value)


def _short_paper(paper: str) -> str:
    """``Authors, venue year`` of a registry citation, without its title or remarks."""
    parts = [p.strip() for p in re.sub(r"\([^)]*\)", "", paper).split(",")]
    return f"{parts[0]}, {parts[-1]}" if len(parts) > 1 else paper


def _what(info: Any) -> str:
    """A method's row text in ``dhcbench methods``: its name and where it comes from."""
    if info.paper.endswith("weightings)"):
        return f"{info.title} (Table 3)"
    bound = re.search(r"\(trained on ([^)]*)\)", info.paper)
    if bound:
        return f"V-Net trained on {bound.group(1)}"
    paper = _short_paper(info.paper)
    return paper if paper.startswith(info.title) else f"{info.title}: {paper}"


def _overview() -> None:
    """One row per method; the ablation pairings one row per branch-A weighting."""
    from dhcbench.methods import METHODS
    from dhcbench.methods.base import FAMILIES
    from dhcbench.methods.weighting import WEIGHTINGS

    groups: dict[str, list[tuple[str, str, str, str]]] = {f: [] for f in FAMILIES}
    for k, i in METHODS.items():
        if i.family == "ablation":  # one row per weighting of branch A, filled below
            continue
        what = _what(i)
        groups[i.family].append((k, ", ".join(METHODS.aliases_of(k)), what, ", ".join(i.variants)))
    pairs = [(k, i) for k, i in METHODS.items() if i.family == "ablation"]
    for a in WEIGHTINGS:
        mine = [(k, i) for k, i in pairs if k.startswith(f"{a}-")]
        variants = sorted({v for _, i in mine for v in i.variants}, key=list(VARIANTS).index)
        if mine:
            title = WEIGHTINGS.get(a).title
            title += "" if title.lower() == a else f" ({a})"
            groups["ablation"].append((f"{a}-<b>", "", f"{title} on A; b = "
                                       + ", ".join(k[len(a) + 1:] for k, _ in mine),
                                       ", ".join(variants)))
    rows = [r for f in FAMILIES for r in groups[f]]
    widths = [max(len(r[c]) + (2 if c == 0 else 0) for r in rows) for c in range(4)]
    widths[2] = max(24, console.width - widths[0] - widths[1] - widths[3] - 6)
    head = ("key", "aliases", "what", "variants")
    console.print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip(),
                  style="bold", markup=False)
    for family in FAMILIES:
        if groups[family]:
            console.print(_FAMILY_HEADINGS[family], style="bold", markup=False)
        for key, aliases, what, variants in groups[family]:
            for n, part in enumerate(textwrap.wrap(what, widths[2]) or [""]):
                cells = (f"  {key}", aliases, part, variants) if n == 0 else ("", "", part, "")
                line = "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))
                console.print(line.rstrip(), markup=False, highlight=False, soft_wrap=True)
    console.print(f"{len(METHODS)} methods. One in detail: dhcbench methods METHOD (a key or an"
                  " alias); all of them: docs/reference.md.", markup=False, highlight=False)


def _sections(key: str, info: Any, cited: list[str]) -> str:
    """The sections of docs/reference.md on a method: its own citations or its parts'."""
    if not cited and "-" in key and info.paper.endswith("weightings)"):
        cited = ["§7"] + [_WEIGHTING_SECTIONS.get(w, "§8") for w in key.split("-")]
    if not cited:
        cited = {"dhc": ["§7, §7.1, §7.2, §12 items 1–9"]}.get(key, ["§8.12"] if info.family == "bound" else ["§8"])
    return "docs/reference.md " + ", ".join(dict.fromkeys(", ".join(cited).split(", ")))


def _describe(key: str) -> None:
    """Print one method as text: what it is, its variants, arguments and sources."""
    from dhcbench.methods import METHODS

    info = METHODS.get(key)
    cited = _CITATION.findall(info.description)
    variants = {v: VARIANTS.get(v, v) for v in info.variants}
    what = []
    for sentence in _SENTENCE.split(_CITATION.sub("", info.description)):
        found = [v for v in variants if f"variant='{v}'" in sentence]
        if not found:
            what.append(sentence)
        for v in found:
            text = sentence.replace(f"variant='{v}'", "this variant").strip()
            variants[v] = text[0].upper() + text[1:]
    console.print(f"{key} — {info.title}, family {info.family}", style="bold", markup=False)
    rows = [("aliases", ", ".join(METHODS.aliases_of(key)) or "none"), ("paper", info.paper),
            ("networks", info.networks), ("trains on", _DATA_MODES.get(info.data_mode, info.data_mode)),
            ("what", " ".join(what)), ("reference", _sections(key, info, cited)), ("", ""),
            ("--variant", "")]
    rows += [(f"  {v}", text) for v, text in variants.items()]
    rows += [("", ""), ("arguments", "--set method.kwargs.NAME=VALUE" if info.defaults else "none")]
    rows += [(f"  {n} = {_fmt(v)}", _KWARGS.get(n, "")) for n, v in info.defaults.items()]
    overrides = ", ".join(f"{k} = {_fmt(v)}" for k, v in _flat(info.train_overrides))
    space = ", ".join(f"{n} {_fmt(s[1])} to {_fmt(s[2])}{' (log)' if s[0].startswith('log') else ''}"
                      for n, s in info.search_space.items())
    lam = ("not used" if info.reference_lambda == "not used" else
           f"train.unsup_weight = 0.1 here; the reference script: {info.reference_lambda}")
    rows += [("", ""), ("λ", lam), ("settings", overrides or "the defaults"),
             ("tune space", space or "none")]
    width = max(len(label) for label, _ in rows) + 2
    for label, text in rows:
        lines = textwrap.wrap(text, max(30, console.width - width)) or [""]
        for n, line in enumerate(lines):
            out = f"{label if n == 0 else '':<{width}}{line}".rstrip()
            console.print(out, markup=False, highlight=False, soft_wrap=True)


def _flat(tree: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """``{"train": {"patience": None}}`` -> ``[("train.patience", None)]``."""
    if not isinstance(tree, dict | Mapping):
        return [(prefix, tree)]
    return [kv for k, v in tree.items() for kv in _flat(v, f"{prefix}.{k}" if prefix else k)]


@app.command()
def datasets() -> None:
    """List the registered datasets."""
    from rich.table import Table

    from dhcbench.datasets import DATASETS

    t = Table(title="datasets", header_style="bold")
    for col in ("key", "classes", "ratios", "description"):
        t.add_column(col)
    for key, source in DATASETS.items():
        t.add_row(key, source.classes_text, ", ".join(f"{r:g}" for r in source.ratios),
                  source.description)
    console.print(t)


@app.command()
@user_errors
def prepare(
    layout: Annotated[str, typer.Argument(help="synapse, amos, nnunet or dhc-npy.")],
    src: Annotated[Path, typer.Option(help="The downloaded dataset folder.")],
    out: Annotated[Path | None, typer.Option(help="Data root (default $DHCBENCH_DATA or ./dhcbench-data).")] = None,
    profile: Annotated[str | None, typer.Option(help="dhc2023 (80×160×160, the paper's), dhc2024 (the reference at HEAD) or native. Default: dhc2023, native for nnunet.")] = None,
    spacing: Annotated[str | None, typer.Option(help="native profile: resample to this voxel size in mm, z,y,x.")] = None,
    mri_normalization: Annotated[str, typer.Option(help="MRI cases: window (the reference's CT window) or zscore.")] = "window",
    task: Annotated[str | None, typer.Option(help="dhc-npy only: synapse or amos.")] = None,
) -> None:
    """Import a downloaded dataset into the prepared layout (once; runs then load it)."""
    from dhcbench.benchmark.progress import RichReporter
    from dhcbench.datasets.base import data_root
    from dhcbench.datasets.importers import prepare as do_prepare

    spacing_mm = None
    if spacing:
        try:
            spacing_mm = tuple(float(v) for v in spacing.split(","))
        except ValueError:
            raise UserError(f"--spacing {spacing!r}: expected three numbers z,y,x") from None
        if len(spacing_mm) != 3 or min(spacing_mm) <= 0:
            raise UserError(f"--spacing {spacing!r}: expected three positive numbers z,y,x")
    chosen = profile or ("native" if layout == "nnunet" else "dhc2023")
    reporter = RichReporter(console)
    with reporter:
        ds = do_prepare(layout, src, out or data_root(), chosen, spacing_mm,  # type: ignore[arg-type]
                        mri_normalization, task, reporter.progress_callback(f"prepare {layout}"))
    shapes = sorted({rec.shape for rec in ds.cases.values()})
    console.print(f"prepared {len(ds.cases)} cases of {ds.name} ({ds.num_classes - 1} classes,"
                  f" profile {ds.profile}) into {ds.path}; shapes {shapes[:3]}"
                  f"{' …' if len(shapes) > 3 else ''}")


splits_app = typer.Typer(help="Show and verify split manifests.", no_args_is_help=True)
app.add_typer(splits_app, name="splits")


@splits_app.command("show")
@user_errors
def splits_show(
    name: Annotated[str, typer.Argument(help="synapse:dhc2023, synapse:dhc2024, amos:dhc, or a dataset (phantom, nnunet:<name>).")],
    ratio: Annotated[float | None, typer.Option(help="One labeled ratio (default: all shipped).")] = None,
    split_seed: Annotated[int, typer.Option(help="0: shipped lists; other: seeded draw.")] = 0,
    profile: Annotated[str | None, typer.Option(help="Profile of the prepared data to count classes in.")] = None,
    ids: Annotated[bool, typer.Option("--ids/--no-ids", help="Print every id.")] = True,
    data: Annotated[Path | None, typer.Option(help="Data root (default $DHCBENCH_DATA or ./dhcbench-data).")] = None,
) -> None:
    """Print a split: its lists, SHA-256 and the labeled set's per-class voxel counts."""
    from dhcbench.benchmark.spec import check_seed
    from dhcbench.datasets.split_report import show

    if ratio is not None:
        check_ratio(ratio)
    check_seed(split_seed, "--split-seed")
    options = {"profile": profile} if profile else {}
    for view in show(name, ratio, split_seed, options, data):
        console.print(f"[bold]{view.title}[/bold]  sha256 {view.sha256}")
        for note in view.notes:
            console.print(f"  {note}", markup=False)
        for key, values in view.lists.items():
            text = " ".join(values) if ids else ""
            console.print(f"  {key} ({len(values)}): {text}", markup=False, soft_wrap=True)
        if view.class_counts is not None:
            counts = ", ".join(f"{k} {v}" for k, v in view.class_counts.items())
            console.print(f"  labeled voxels per class: {counts}", markup=False,
                          soft_wrap=True)


@splits_app.command("verify")
@user_errors
def splits_verify(
    name: Annotated[str, typer.Argument(help="A manifest name or a dataset.")],
    profile: Annotated[str | None, typer.Option(help="Profile of the prepared data to check ids in.")] = None,
    data: Annotated[Path | None, typer.Option(help="Data root (default $DHCBENCH_DATA or ./dhcbench-data).")] = None,
) -> None:
    """Check a split: disjoint lists, labeled inside train, ids present in the data."""
    from dhcbench.datasets.split_report import verify

    for line in verify(name, options={"profile": profile} if profile else {}, root=data):
        console.print(f"ok: {line}", markup=False, soft_wrap=True)
