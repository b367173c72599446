"""Figures logged with every run: class-weight trajectories and per-class test Dice.

Plotting functions take plain data (no MLflow objects) and return a matplotlib Figure; the
caller saves or logs it. The Agg backend is used, so no display is needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from dhcbench.datasets.classes import abbreviation  # noqa: E402


def _class_colours(n: int) -> list:
    cmap = plt.get_cmap("tab20")
    return [cmap(i % 20) for i in range(n)]


def weight_trajectories(
    history: Mapping[str, Mapping[str, Sequence[tuple[int, float]]]],
    class_names: Sequence[str],
    title: str = "",
) -> Figure:
    """One panel per branch (``history[branch][class] = [(epoch, weight), …]``), one line per
    class: how each branch's class weights evolve during training (DHC paper, Fig. 4)."""
    branches = sorted(history)
    fig, axes = plt.subplots(1, max(1, len(branches)), figsize=(5.5 * max(1, len(branches)), 4),
                             squeeze=False, sharey=False)
    colours = _class_colours(len(class_names))
    for ax, branch in zip(axes[0], branches, strict=False):
        for colour, name in zip(colours, class_names, strict=True):
            points = history[branch].get(name, [])
            if points:
                xs, ys = zip(*sorted(points), strict=True)
                ax.plot(xs, ys, color=colour, label=abbreviation(name), linewidth=1.5)
        ax.set_title(f"branch {branch.upper()}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("class weight")
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="center right", fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 0.9, 1))
    return fig


def class_dice_bars(dice: Mapping[str, float], class_names: Sequence[str], title: str = ""
                    ) -> Figure:
    """Bar chart of per-class test Dice (%) in the class order of the dataset."""
    names = [c for c in class_names if c in dice]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.5 * len(names) + 1.5), 3.5))
    colours = _class_colours(len(class_names))
    ax.bar([abbreviation(n) for n in names], [dice[n] for n in names],
           color=[colours[class_names.index(n)] for n in names])
    ax.set_ylabel("Dice (%)")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
