"""Commands about data and the registries: ``methods``, ``datasets``, ``prepare``, ``splits``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dhcbench.benchmark.validation import check_ratio
from dhcbench.cli.common import app, console, user_errors
from dhcbench.errors import UserError


@app.command()
def methods(
    details: Annotated[bool, typer.Option("--details", help="Describe every method: variants, defaults, λ, search space.")] = False,
) -> None:
    """List the registered methods with their family, networks and paper."""
    from rich.table import Table

    from dhcbench.methods import METHODS
    from dhcbench.reports.table import FAMILY_ORDER

    ordered = sorted(METHODS.items(), key=lambda kv: (FAMILY_ORDER.get(kv[1].family, 9), kv[0]))
    if details:
        for key, info in ordered:
            aliases = METHODS.aliases_of(key)
            console.print(f"[bold]{key}[/bold] — {info.title} ({info.family})"
                          f"{'  aliases: ' + ', '.join(aliases) if aliases else ''}")
            for label, value in (
                ("paper", info.paper), ("networks", info.networks),
                ("what", info.description), ("variants", ", ".join(info.variants)),
                ("data", info.data_mode), ("defaults", dict(info.defaults) or "none"),
                ("run-spec overrides", dict(info.train_overrides) or "none"),
                ("λ in the reference code", info.reference_lambda + ("" if info.reference_lambda == "not used" else "; dhcbench default 0.1")),
                ("search space", dict(info.search_space)),
            ):
                console.print(f"  {label}: {value}", markup=False, soft_wrap=True)
        return
    t = Table(title="methods", header_style="bold")
    for col in ("key", "family", "networks", "variants", "paper"):
        t.add_column(col)
    for key, info in ordered:
        t.add_row(key, info.family, info.networks, ", ".join(info.variants), info.paper)
    console.print(t)


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
