"""Figures logged with every run: class-weight trajectories and per-class test Dice.

Plotting functions take plain data (no MLflow objects) and return a matplotlib Figure; the
caller saves or logs it. The Agg backend is used, so no display is needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np

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
    """How each branch's class weights evolve during training (DHC paper, Fig. 4).

    One panel per branch (``history[branch][class] = [(epoch, weight), …]``), one line per
    class of ``class_names`` that has points, a shared legend on the right.
    """
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
    """Bar chart of per-class test Dice (%) in the class order of the dataset.

    ``dice`` maps a class name to its Dice in %; classes of ``class_names`` missing from it
    get no bar.
    """
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


def organ_colours(class_names: Sequence[str]) -> list:
    """One fixed colour per class, the same in every figure.

    RGBA tuples indexed by class (background first, fully transparent), from the tab20
    colour map, so label map values index the list directly.
    """
    colours = _class_colours(len(class_names))
    colours[0] = (0.0, 0.0, 0.0, 0.0)
    return colours


def training_curves(history: Mapping[str, Sequence[tuple[int, float]]], title: str = ""
                    ) -> Figure:
    """Four panels against epoch: losses, λ, learning rate and eval Dice (%).

    ``history`` maps a metric key (``train/loss``, ``train/lambda``, ``train/lr``,
    ``eval/dice_mean`` …) to its ``(epoch, value)`` points; missing keys are left out.
    """
    panels = (
        ("losses", ("train/loss", "train/loss_sup", "train/loss_unsup")),
        ("unsupervised weight λ", ("train/lambda",)),
        ("learning rate", ("train/lr",)),
        ("eval Dice (%)", ("eval/dice_mean", "eval/best_dice_mean")),
    )
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for ax, (name, keys) in zip(axes.flat, panels, strict=True):
        for key in keys:
            points = history.get(key, [])
            if points:
                xs, ys = zip(*sorted(points), strict=True)
                ax.plot(xs, ys, marker="." if len(xs) < 40 else None, label=key.split("/")[1])
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def dice_vs_proportion(
    results: Mapping[str, Mapping[str, float]],
    proportions: Mapping[str, float],
    class_names: Sequence[str],
    title: str = "",
) -> Figure:
    """Per-class Dice against class frequency (DHC paper, Fig. 1).

    Two panels: Dice (%) against the class's voxel proportion (log scale) and against its
    rank, one marker series per method or run (``results[series][class]`` = Dice in %;
    ``proportions[class]`` = voxel share in [0, 1]). Up to 20 series keep distinct colours;
    beyond 6 the legend moves below the plots.
    """
    classes = [c for c in class_names if c != "background" and c in proportions]
    order = sorted(classes, key=lambda c: -proportions[c])
    many = len(results) > 6
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5.5 if many else 4.5))
    markers = "osD^v<>PX*"
    colours = plt.get_cmap("tab20" if len(results) > 10 else "tab10").colors
    for i, (label, dice) in enumerate(results.items()):
        style = {"marker": markers[i % len(markers)], "color": colours[i % len(colours)],
                 "label": label}
        xs = [proportions[c] for c in classes if c in dice]
        ys = [dice[c] for c in classes if c in dice]
        left.scatter(xs, ys, **style)
        ranks = [order.index(c) + 1 for c in classes if c in dice]
        right.plot(sorted(ranks), [y for _, y in sorted(zip(ranks, ys, strict=True))], **style)
    for c in classes:  # class names along the top edge, clear of the points
        left.annotate(abbreviation(c), (proportions[c], 100), textcoords="offset points",
                      xytext=(0, -3), ha="center", va="top", fontsize=7, rotation=90,
                      color="dimgray")
    left.set_xscale("log")
    left.set_xlabel("voxel proportion in the labeled set")
    right.set_xticks(range(1, len(order) + 1), [abbreviation(c) for c in order], fontsize=8)
    right.set_xlabel("classes, most to least frequent")
    for ax in (left, right):
        ax.set_ylabel("Dice (%)")
        ax.set_ylim(-5, 100)
        ax.grid(alpha=0.3)
        if not many:
            ax.legend(fontsize=8, loc="center left")
    if title:
        fig.suptitle(title)
    if many:
        handles, labels = right.get_legend_handles_labels()
        # Three columns: a label ("<method>-<dataset>-<ratio> (mean of 3 seeds)") is about a
        # third of the figure's width at this font size.
        rows = (len(labels) + 2) // 3
        fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)), fontsize=8)
        fig.tight_layout(rect=(0, 0.04 + 0.035 * rows, 1, 1))
    else:
        fig.tight_layout()
    return fig


def slice_comparison(
    image: np.ndarray,
    label: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    class_names: Sequence[str],
    n_slices: int = 3,
    title: str = "",
) -> Figure:
    """Rows of axial slices: image, ground truth and each method's prediction (DHC Fig. 5).

    ``image`` is ``(D, H, W)`` or ``(C, D, H, W)`` (the first channel is shown), ``label``
    and every prediction integer label maps ``(D, H, W)``. Each organ has one fixed colour
    (:func:`organ_colours`) and the legend lists the classes present. ``n_slices`` slices
    along D are spread over the ground truth's foreground extent.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    if image.ndim == 4:
        image = image[0]
    fg = np.nonzero(label.reshape(label.shape[0], -1).any(axis=1))[0]
    lo, hi = (int(fg.min()), int(fg.max())) if fg.size else (0, label.shape[0] - 1)
    slices = np.unique(np.linspace(lo, hi, n_slices + 2)[1:-1].round().astype(int))
    colours = organ_colours(class_names)
    cmap = ListedColormap(colours)
    columns = [("image", None), ("ground truth", label), *predictions.items()]
    fig, axes = plt.subplots(len(slices), len(columns),
                             figsize=(2.6 * len(columns), 2.6 * len(slices) + 0.8),
                             squeeze=False)
    for r, z in enumerate(slices):
        for c, (name, seg) in enumerate(columns):
            ax = axes[r][c]
            ax.imshow(image[z], cmap="gray")
            if seg is not None:
                ax.imshow(np.ma.masked_equal(seg[z], 0), cmap=cmap, vmin=0,
                          vmax=len(class_names) - 1, interpolation="nearest", alpha=0.75)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=9)
            if c == 0:
                ax.set_ylabel(f"slice {z}", fontsize=8)
    present = sorted(set(np.unique(label)) | {int(v) for p in predictions.values()
                                              for v in np.unique(p)})
    handles = [Patch(color=colours[k], label=abbreviation(class_names[k]))
               for k in present if k > 0]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8) or 1,
               fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig
