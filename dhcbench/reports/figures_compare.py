"""Figures that compare runs: per-class Dice against class frequency, and slices.

Like :mod:`dhcbench.reports.figures`, functions take plain data and return a Figure; each
organ has its colour of :mod:`dhcbench.reports.palette`, so a run or method is told by its
marker (classes) or its column (slices), never by a colour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from dhcbench.datasets.classes import abbreviation
from dhcbench.reports.figures import plt
from dhcbench.reports.palette import class_colours, organ_colours

#: Marker shapes of the series (runs or methods); past 15, the same shapes hollow.
MARKERS = "osD^vP<>X*phH8d"
#: Label font size (pt) and the gap (px) kept between two labels of one row.
_LABEL_PT, _LABEL_GAP = 7, 3.0


def series_style(i: int) -> dict[str, object]:
    """Marker and fill of the ``i``-th series: 15 shapes filled, then the same hollow."""
    return {"marker": MARKERS[i % len(MARKERS)], "filled": (i // len(MARKERS)) % 2 == 0}


def _scatter(ax: Axes, xs: Sequence[float], ys: Sequence[float], colours: Sequence[str],
             style: dict[str, object], label: str) -> None:
    if style["filled"]:
        kw = {"c": list(colours), "edgecolors": "#222222", "linewidths": 0.6}
    else:
        kw = {"facecolors": "none", "edgecolors": list(colours), "linewidths": 1.4}
    ax.scatter(xs, ys, marker=style["marker"], s=36, zorder=3, label=label, **kw)


def _stack_labels(fig: Figure, labels: list) -> None:
    """Move annotations above an axis into rows so that no two overlap.

    Each label keeps its x position; it goes to the lowest row whose last label ends left of
    it (a gap of :data:`_LABEL_GAP` px). Drawing lays the figure out, and rows are assigned
    again until the layout no longer changes them.
    """
    for _ in range(4):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        boxes = sorted(((a.get_window_extent(renderer), a) for a in labels),
                       key=lambda item: item[0].x0)
        ends: list[float] = []
        changed = False
        for box, label in boxes:
            row = next((k for k, end in enumerate(ends) if box.x0 > end + _LABEL_GAP),
                       len(ends))
            ends[row:row + 1] = [box.x1]
            offset = (0.0, 3.0 + row * (_LABEL_PT + 2.5))
            if tuple(label.xyann) != offset:
                label.xyann = offset
                changed = True
        if not changed:
            return


def dice_vs_proportion(
    results: Mapping[str, Mapping[str, float]],
    proportions: Mapping[str, float],
    class_names: Sequence[str],
    title: str = "",
) -> Figure:
    """Per-class Dice against class frequency (DHC paper, Fig. 1).

    Two panels: Dice (%) against the class's voxel proportion (log scale; class names
    above the panel, stacked so that none overlaps another) and per class, ordered from the
    most to the least frequent (``results[series][class]`` = Dice in %;
    ``proportions[class]`` = voxel share in [0, 1]). Points have their organ's colour and
    no line joins them; each series (method or run) has its marker (:func:`series_style`)
    and, in the right panel, its own offset within the class's slot. The series legend is
    below the panels; past 6 series the panels are stacked for room. A class absent from
    the labeled set (proportion 0) has no place on the log axis: it appears in the right
    panel only, last.
    """
    classes = [c for c in class_names if c != "background" and c in proportions]
    order = sorted(classes, key=lambda c: -proportions[c])
    logged = [c for c in classes if proportions[c] > 0]
    colour = dict(zip(class_names, class_colours(class_names), strict=True))
    many = len(results) > 6
    fig = plt.figure(figsize=(12, 9.5) if many else (12, 5.2), layout="constrained")
    left, right = fig.subplots(2, 1) if many else fig.subplots(1, 2)
    step = min(0.16, 0.8 / max(1, len(results)))
    handles = []
    for i, (label, dice) in enumerate(results.items()):
        style = series_style(i)
        have = [c for c in classes if c in dice]
        on_log = [c for c in logged if c in dice]
        _scatter(left, [proportions[c] for c in on_log], [dice[c] for c in on_log],
                 [colour[c] for c in on_log], style, label)
        offset = (i - (len(results) - 1) / 2) * step
        _scatter(right, [order.index(c) + 1 + offset for c in have], [dice[c] for c in have],
                 [colour[c] for c in have], style, label)
        handles.append(plt.Line2D([], [], linestyle="none", marker=style["marker"],
                                  markersize=7, markeredgecolor="#222222",
                                  markerfacecolor="#BBBBBB" if style["filled"] else "none",
                                  label=label))
    labels = [left.annotate(abbreviation(c), (proportions[c], 1.0),
                            xycoords=("data", "axes fraction"), textcoords="offset points",
                            xytext=(0, 3), ha="center", va="bottom", fontsize=_LABEL_PT,
                            color="#333333", annotation_clip=False) for c in logged]
    left.set_xscale("log")
    left.set_xlabel("voxel proportion in the labeled set")
    right.set_xticks(range(1, len(order) + 1), [abbreviation(c) for c in order], fontsize=8)
    right.set_xlim(0.5, len(order) + 0.5)
    for k in range(1, len(order)):
        right.axvline(k + 0.5, color="#DDDDDD", linewidth=0.6, zorder=0)
    right.set_xlabel("classes, most to least frequent")
    for ax in (left, right):
        ax.set_ylabel("Dice (test, %)")
        ax.set_ylim(-5, 105)
        ax.grid(axis="y", alpha=0.3)
    if handles:
        fig.legend(handles=handles, loc="outside lower center", fontsize=8, frameon=False,
                   ncol=min(3 if many else 4, len(handles)))
    if title:
        fig.suptitle(title)
    if labels:
        _stack_labels(fig, labels)
    return fig


def _slice_indices(label: np.ndarray, n_slices: int) -> np.ndarray:
    """``n_slices`` axial indices spread over the foreground extent of ``label`` (D, H, W)."""
    fg = np.nonzero(label.reshape(label.shape[0], -1).any(axis=1))[0]
    lo, hi = (int(fg.min()), int(fg.max())) if fg.size else (0, label.shape[0] - 1)
    return np.unique(np.linspace(lo, hi, n_slices + 2)[1:-1].round().astype(int))


def slice_comparison(
    image: np.ndarray,
    label: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    class_names: Sequence[str],
    n_slices: int = 3,
    title: str = "",
) -> Figure:
    """Rows of axial slices: image, ground truth and each run's prediction (DHC Fig. 5).

    ``image`` is ``(D, H, W)`` or ``(C, D, H, W)`` (the first channel is shown), ``label``
    and every prediction integer label maps ``(D, H, W)``; ``predictions`` is keyed by the
    column title (a run's name). Each organ has its fixed colour (:func:`organ_colours`)
    and the legend below lists the classes present. ``n_slices`` slices along D are spread
    over the ground truth's foreground extent.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    if image.ndim == 4:
        image = image[0]
    slices = _slice_indices(label, n_slices)
    colours = organ_colours(class_names)
    cmap = ListedColormap(colours)
    columns = [("image", None), ("ground truth", label), *predictions.items()]
    fig = plt.figure(figsize=(2.6 * len(columns), 2.6 * len(slices) + 1.0),
                     layout="constrained")
    axes = fig.subplots(len(slices), len(columns), squeeze=False)
    for r, z in enumerate(slices):
        for c, (name, seg) in enumerate(columns):
            ax = axes[r][c]
            ax.imshow(image[z], cmap="gray")
            if seg is not None:
                ax.imshow(np.ma.masked_equal(seg[z], 0), cmap=cmap, vmin=-0.5,
                          vmax=len(class_names) - 0.5, interpolation="nearest", alpha=0.75)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=9)
            if c == 0:
                ax.set_ylabel(f"slice {z}", fontsize=8)
    present = sorted(set(np.unique(label)) | {int(v) for p in predictions.values()
                                              for v in np.unique(p)})
    handles = [Patch(facecolor=colours[k], edgecolor="#333333", linewidth=0.5,
                     label=abbreviation(class_names[k])) for k in present if k > 0]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 8),
                   fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    return fig
