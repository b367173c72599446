"""The GPU check's outputs: its JSON document as written, and a Markdown table of it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

JSON_NAME = "gpu-check.json"
MD_NAME = "gpu-check.md"


def _num(value: Any, fmt: str) -> str:
    return "–" if value is None else f"{value:{fmt}}"


def _run_rows(run: dict[str, Any]) -> list[tuple[str, str]]:
    f = run["filters"]
    inf = run["inference"]
    rows = [
        (f"F={f}: training step, median of {run['steps']} (p90)",
         f"{run['step_ms']:.1f} ms ({run['step_ms_p90']:.1f} ms)"),
        (f"F={f}: first step (warm-up)", f"{run['first_step_s']:.2f} s"),
        (f"F={f}: peak memory", f"{run['peak_mb']:.0f} MiB"),
        (f"F={f}: step waits for its batch, median (p95)",
         f"{run['wait_ms']:.2f} ms ({run['wait_ms_p95']:.2f} ms),"
         f" {100 * run['wait_share']:.1f} % of the step time"),
        (f"F={f}: one batch produced by the loader thread / fetched synchronously",
         f"{run['produce_ms']:.1f} ms / {run['sync_fetch_ms']:.1f} ms"
         f" (loader ×{run['loader_headroom']:.1f} faster than the step)"),
        (f"F={f}: sliding-window inference of one {'×'.join(map(str, inf['grid']))} volume",
         f"{inf['s_per_volume']:.2f} s (median of {inf['volumes']})"),
    ]
    comp = run["torch_compile"]
    if "skipped" in comp:
        rows.append((f"F={f}: torch.compile on / off", f"skipped: {comp['skipped']}"))
    else:
        rows.append((f"F={f}: torch.compile on / off",
                     f"{comp['compiled_step_ms']:.1f} / {comp['eager_step_ms']:.1f} ms"
                     f" (×{comp['speedup']:.2f}; first compiled step"
                     f" {comp['first_step_s']:.1f} s)"))
    return rows


def markdown(doc: dict[str, Any]) -> str:
    """The check as a Markdown table, one row per measurement."""
    cfg = doc["config"]
    lines = [
        f"# GPU check: {doc['device']}, torch {doc['torch']}",
        "",
        f"DHC (two V-Nets), patches {'×'.join(map(str, cfg['patch']))}, {cfg['batch']},"
        f" AMP {'on' if cfg['amp'] and doc['device'] != 'cpu' else 'off'}, synthetic cases of"
        f" {'×'.join(map(str, cfg['grid']))}{' (reduced form)' if cfg['reduced'] else ''};"
        f" {doc['elapsed_s']:.0f} s of a {cfg['max_seconds']:.0f} s budget.",
        "",
        "| measurement | value |",
        "|---|---|",
    ]
    rows: list[tuple[str, str]] = []
    for run in doc["runs"]:
        rows += _run_rows(run)
    amp = doc["amp_agreement"]
    if amp is not None:
        rows.append((f"F={amp['filters']}: AMP vs fp32 loss over the first {amp['steps']}"
                     " steps, relative difference max / mean / last"
                     + ("" if amp["amp_active"] else " (AMP inactive here)"),
                     f"{_num(amp['max_rel_diff'], '.2e')} / {_num(amp['mean_rel_diff'], '.2e')}"
                     f" / {_num(amp['final_rel_diff'], '.2e')}"))
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines) + "\n"


def write_outputs(doc: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """Write ``gpu-check.json`` and ``gpu-check.md`` under ``out``; their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / JSON_NAME, out / MD_NAME
    json_path.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    md_path.write_text(markdown(doc))
    return json_path, md_path
