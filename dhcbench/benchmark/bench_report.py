"""What ``dhcbench bench`` prints and writes: one rich table per part, and a JSON file.

The JSON (``--json PATH``) holds the part, the machine (processor, CPU count, torch threads,
torch version, CUDA device if any), the commit, and each result as its ``to_json()``;
``docs/performance.md`` quotes its figures.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from rich.table import Table

from dhcbench.benchmark.bench import StepTiming
from dhcbench.errors import UserError

PARTS = ("step", "data", "infer", "eval")
GRIDS = {"synapse": (147, 256, 256), "amos": (80, 160, 160)}
#: The grids each part runs on when ``--grid`` is not given.
DEFAULT_GRIDS = {"data": ("synapse",), "infer": ("amos",), "eval": ("amos", "synapse")}


def parse_shape(text: str, what: str) -> tuple[int, int, int]:
    """``D,H,W`` (or a grid name: ``synapse`` 147×256×256, ``amos`` 80×160×160)."""
    if text.lower() in GRIDS:
        return GRIDS[text.lower()]  # type: ignore[return-value]
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 8:
        raise UserError(f"{what} {text!r}: expected D,H,W (each at least 8) or one of"
                        f" {', '.join(GRIDS)}")
    return shape  # type: ignore[return-value]


def _fmt_opt(value: float | None, fmt: str = ".1f", scale: float = 1.0) -> str:
    return "n/a" if value is None else f"{scale * value:{fmt}}"


def step_table(dataset: str, steps: int, rounds: int) -> Table:
    """The empty step table (rows added by :func:`add_step_row`)."""
    t = Table(title=f"training step / model floor on {dataset}"
                    f" ({rounds} alternating rounds of {steps} + {steps} steps)",
              header_style="bold")
    for col in ("method", "step/floor (min–max)", "IQR", "step ms", "floor ms", "peak MB"):
        t.add_column(col, justify="left" if col == "method" else "right")
    return t


def add_step_row(t: Table, r: StepTiming) -> None:
    """One method's row of the step table."""
    ratio = r.ratio
    t.add_row(r.method, "n/a" if ratio is None else ratio.text(".2f"),
              "n/a" if ratio is None else f"{ratio.q1:.2f}–{ratio.q3:.2f}",
              f"{1e3 * r.median_s:.0f}", _fmt_opt(r.floor_median_s, ".0f", 1e3),
              f"{r.peak_mb:.0f}")


def step_line(r: StepTiming) -> str:
    """One method's result as a line, printed as soon as it is measured."""
    ratio = "no floor" if r.ratio is None else f"step/floor {r.ratio.text('.3f')}"
    return f"{r.method}: {ratio}, {1e3 * r.median_s:.1f} ms/step, peak {r.peak_mb:.0f} MB"


def _grid_text(grid: Sequence[int]) -> str:
    return "×".join(str(v) for v in grid)


def _data_table(results: Sequence[Any]) -> Table:
    t = Table(title="one labeled patch from a prepared case vs re-reading + resizing per item",
              header_style="bold")
    for col in ("grid", "patch", "patch ms", "re-read ms", "re-read/patch (min–max)",
                "identical"):
        t.add_column(col, justify="right")
    for r in results:
        t.add_row(_grid_text(r.grid), _grid_text(r.patch), f"{r.patch_ms:.2f}",
                  f"{r.reread_ms:.0f}", r.ratio.text(".0f"), str(r.identical))
    return t


def _infer_table(results: Sequence[Any]) -> Table:
    t = Table(title="sliding-window inference of one volume (DHC: two V-Nets)",
              header_style="bold")
    for col in ("grid", "F", "configuration", "s/volume", "vs default (min–max)",
                "same labels"):
        t.add_column(col, justify="left" if col == "configuration" else "right")
    for r in results:
        for c in r.configs:
            same = ("yes" if c.identical_labels else
                    f"no: {c.differing_voxels} voxel(s), top-2 gap {c.tie_gap:.1g}")
            t.add_row(_grid_text(r.grid), str(r.filters), c.name, f"{c.median_s:.2f}",
                      c.speedup.text(), same)
    return t


def _eval_table(results: Sequence[Any]) -> Table:
    t = Table(title="one case's metrics (13 classes, both contracts): case_metrics vs medpy",
              header_style="bold")
    for col in ("grid", "ours ms", "medpy ms", "medpy/ours (min–max)", "identical",
                "max |diff|"):
        t.add_column(col, justify="right")
    for r in results:
        t.add_row(_grid_text(r.grid), f"{r.ours_ms:.0f}", f"{r.medpy_ms:.0f}",
                  r.ratio.text(".1f"), str(r.identical), f"{r.max_abs_diff:.3g}")
    return t


def run_part(part: str, grids: Sequence[str], patch: str | None, filters: int, rounds: int,
             device: str, on_result: Callable[[Any], None] | None = None
             ) -> tuple[list[Any], Table]:
    """Run ``data``, ``infer`` or ``eval`` on each grid; the results and their table."""
    from dhcbench.benchmark.bench_eval import bench_eval
    from dhcbench.benchmark.bench_parts import PATCH, bench_data, bench_infer

    shapes = [parse_shape(g, "--grid") for g in (grids or DEFAULT_GRIDS[part])]
    patch_shape = parse_shape(patch, "--patch") if patch else PATCH
    runners: dict[str, tuple[Callable[[tuple[int, int, int]], Any], Callable]] = {
        "data": (lambda g: bench_data(g, patch_shape, rounds), _data_table),
        "infer": (lambda g: bench_infer(g, patch_shape, filters, rounds, device), _infer_table),
        "eval": (lambda g: bench_eval(g, rounds), _eval_table),
    }
    run, table = runners[part]
    results = []
    for shape in shapes:
        results.append(run(shape))
        if on_result is not None:
            on_result(results[-1])
    return results, table(results)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    info: dict[str, Any] = {
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


def write_json(path: Path, part: str, results: Sequence[Any], **extra: Any) -> None:
    """Write the part's results, the machine and the commit to ``path`` (folders made)."""
    from dhcbench.benchmark.planning import git_sha

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"part": part, "commit": git_sha(), "machine": machine(), **extra,
           "results": [r.to_json() for r in results]}
    path.write_text(json.dumps(doc, indent=1, default=str) + "\n")


#: The methods of the paper's Table 1 and the two bounds (``--methods paper``).
PAPER_METHODS = ("fully", "labeled-only", "uamt", "urpc", "cps", "ssnet", "dst", "depl",
                 "adsh", "crest", "simis", "basak", "cld", "dhc")


def method_names(text: str) -> list[str]:
    """``--methods``: ``paper``, ``all`` or comma-separated keys/aliases (canonical keys)."""
    from dhcbench.methods import METHODS

    if text == "paper":
        return list(PAPER_METHODS)
    if text == "all":
        return list(METHODS)
    return [METHODS.canonical(m.strip()) for m in text.split(",") if m.strip()]
