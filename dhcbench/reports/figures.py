"""Figures of one run: class-weight trajectories, training curves and per-class test Dice.

Plotting functions take plain data (no MLflow objects) and return a matplotlib Figure; the
caller saves or logs it. The Agg backend is used, so no display is needed. Every organ has
its colour of :mod:`dhcbench.reports.palette`; lines that are not organs (losses, λ, the
learning rate, mean Dice) are black and gray, so a colour always means an organ. Epoch axes
have integer ticks, and legends sit outside the axes, hiding nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from dhcbench.datasets.classes import abbreviation  # noqa: E402
from dhcbench.reports.palette import class_colours, class_linestyle  # noqa: E402
from dhcbench.reports.plot_labels import metric_label  # noqa: E402

Points = Sequence[tuple[int, float]]

#: Styles of the series that are not organs: black and grays, told apart by line style.
NEUTRAL_STYLES = (("#000000", "-"), ("#666666", "--"), ("#999999", ":"), ("#333333", "-."))


def epoch_axis(ax: Axes) -> None:
    """Label the x axis ``epoch`` and put its ticks on whole epochs only."""
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _draw(ax: Axes, points: Points, **style: object) -> None:
    """One series of ``(epoch, value)`` points; a marker on each while there are few."""
    xs, ys = zip(*sorted(points), strict=True)
    ax.plot(xs, ys, marker="." if len(xs) < 40 else None, linewidth=1.5, **style)


def is_constant(points: Points, rtol: float = 1e-6) -> bool:
    """Whether a series keeps one value (up to ``rtol`` of its magnitude)."""
    ys = [v for _, v in points]
    return not ys or max(ys) - min(ys) <= rtol * max(1.0, *(abs(v) for v in ys))


def constant_branches(history: Mapping[str, Mapping[str, Points]]) -> list[str]:
    """The branches of a weight history whose every class weight never changed."""
    return [b for b in sorted(history) if all(is_constant(p) for p in history[b].values())]


def constant_note(series: Mapping[str, Points]) -> str:
    """What weights that never changed were, in words.

    ``constant 1 for every class`` or ``fixed per class, 0.5 to 3``.
    """
    values = [v for points in series.values() for _, v in points]
    if not values:
        return "not logged"
    if is_constant([(0, v) for v in values]):
        return f"constant {values[0]:.3g} for every class"
    return f"fixed per class, {min(values):.3g} to {max(values):.3g}"


def weight_trajectories(
    history: Mapping[str, Mapping[str, Points]],
    class_names: Sequence[str],
    title: str = "",
    branch_titles: Mapping[str, str] | None = None,
) -> Figure:
    """How each branch's class weights evolve during training (DHC paper, Fig. 4).

    One panel per branch (``history[branch][class] = [(epoch, weight), …]``), titled from
    ``branch_titles`` (e.g. ``{"a": "DiffDW (branch A)"}``; default ``branch A``), one line
    per class of ``class_names`` that has points, in its organ colour and a line style that
    cycles with the class index; one class legend right of the panels. A branch whose
    weights never change shows a note instead of flat lines (callers skip the figure when
    every branch is constant, :func:`constant_branches`).
    """
    branches = sorted(history)
    titles = branch_titles or {}
    colours = class_colours(class_names)
    fig = plt.figure(figsize=(5.0 * max(1, len(branches)) + 1.6, 4.2), layout="constrained")
    axes = fig.subplots(1, max(1, len(branches)), squeeze=False)[0]
    flat = set(constant_branches(history))
    for ax, branch in zip(axes, branches, strict=False):
        ax.set_title(titles.get(branch, f"branch {branch.upper()}"))
        if branch in flat:
            note = f"class weights {constant_note(history[branch])},\nnever updated"
            ax.text(0.5, 0.5, note, ha="center", va="center", transform=ax.transAxes,
                    fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        for i, name in enumerate(class_names):
            points = history[branch].get(name, [])
            if points:
                _draw(ax, points, color=colours[i], linestyle=class_linestyle(i),
                      label=abbreviation(name))
        epoch_axis(ax)
        ax.set_ylabel("class weight")
        ax.grid(alpha=0.3)
    labelled = _legend_entries(axes)
    if labelled:
        fig.legend(list(labelled.values()), list(labelled), loc="outside right upper",
                   fontsize=8, title="class", ncol=1 if len(labelled) <= 16 else 2)
    if title:
        fig.suptitle(title)
    return fig


def _legend_entries(axes: Sequence[Axes]) -> dict[str, object]:
    """Label -> handle over several axes, each label once, in drawing order."""
    out: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            out.setdefault(label, handle)
    return out


def class_dice_bars(dice: Mapping[str, float], class_names: Sequence[str], title: str = ""
                    ) -> Figure:
    """Bar chart of per-class test Dice (%) in the class order of the dataset.

    ``dice`` maps a class name to its Dice in %; classes of ``class_names`` missing from it
    get no bar. Each bar has its organ's colour, with a dark edge (pale colours on white).
    """
    names = [c for c in class_names if c in dice]
    colours = dict(zip(class_names, class_colours(class_names), strict=True))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.5 * len(names) + 1.5), 3.5),
                           layout="constrained")
    ax.bar([abbreviation(n) for n in names], [dice[n] for n in names],
           color=[colours[n] for n in names], edgecolor="#333333", linewidth=0.6)
    ax.set_ylabel("Dice (test, %)")
    ax.set_ylim(0, 100)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="y", alpha=0.3)
    if title:
        ax.set_title(title)
    return fig


def _panel(ax: Axes, history: Mapping[str, Points], keys: Sequence[str], ylabel: str) -> None:
    """Neutral-coloured series of ``keys`` against epoch; a legend above when several."""
    drawn = 0
    for key in keys:
        if history.get(key):
            colour, style = NEUTRAL_STYLES[drawn % len(NEUTRAL_STYLES)]
            _draw(ax, history[key], color=colour, linestyle=style, label=metric_label(key))
            drawn += 1
    if not drawn:
        ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes,
                color="dimgray")
    if drawn > 1:
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.01), fontsize=8, frameon=False,
                  ncol=2, borderaxespad=0.0)
    epoch_axis(ax)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def training_curves(history: Mapping[str, Points], title: str = "",
                    class_names: Sequence[str] = ()) -> Figure:
    """Losses, λ, learning rate, mean eval Dice and per-class eval Dice against epoch.

    ``history`` maps a logged metric key (``train/loss``, ``train/loss_sup``,
    ``train/lambda``, ``train/lr``, ``eval/dice_mean``, ``eval/dice/<class>`` …) to its
    ``(epoch, value)`` points; missing keys are left out. Series are labelled in words
    (:func:`~dhcbench.reports.plot_labels.metric_label`); the per-class panel draws the
    classes in the order of ``class_names`` (then any other) in their organ colours.
    """
    fig = plt.figure(figsize=(13, 7), layout="constrained")
    axd = fig.subplot_mosaic([["loss", "lambda", "lr"], ["dice", "classes", "classes"]])
    losses = sorted((k for k in history if k.startswith("train/loss")),
                    key=lambda k: (k != "train/loss", k))
    _panel(axd["loss"], history, losses, "loss")
    _panel(axd["lambda"], history, ["train/lambda"], metric_label("train/lambda"))
    _panel(axd["lr"], history, ["train/lr"], metric_label("train/lr"))
    _panel(axd["dice"], history, ["eval/dice_mean", "eval/best_dice_mean"], "Dice (eval, %)")
    ax = axd["classes"]
    logged = [k[len("eval/dice/"):] for k in history if k.startswith("eval/dice/")]
    names = [*class_names, *(c for c in logged if c not in class_names)]
    colours = class_colours(names)
    for i, name in enumerate(names):
        if history.get(f"eval/dice/{name}"):
            _draw(ax, history[f"eval/dice/{name}"], color=colours[i],
                  linestyle=class_linestyle(i), label=abbreviation(name))
    if ax.get_legend_handles_labels()[0]:
        n = len(ax.get_legend_handles_labels()[0])
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False,
                  title="class", ncol=1 if n <= 9 else 2, borderaxespad=0.0)
    else:
        ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes,
                color="dimgray")
    epoch_axis(ax)
    ax.set_ylabel("Dice per class (eval, %)")
    ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig
