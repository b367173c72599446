"""Figures: one distinct, colour-blind-safe colour per organ in every figure kind, whole
epochs on epoch axes, legends and class labels that hide nothing, branch names and metric
labels in words, file names that name the runs, and a note instead of flat CPS weights."""

from __future__ import annotations

import itertools
from pathlib import Path
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_hex
from typer.testing import CliRunner

from dhcbench.cli import app
from dhcbench.datasets.classes import AMOS_CLASSES, SYNAPSE_CLASSES, abbreviation
from dhcbench.reports.cli_plot import mean_over_seeds
from dhcbench.reports.figures import (
    class_dice_bars,
    constant_branches,
    training_curves,
    weight_trajectories,
)
from dhcbench.reports.figures_compare import dice_vs_proportion, slice_comparison
from dhcbench.reports.palette import (
    ORGAN_COLOURS,
    class_colours,
    hex_to_rgb,
    min_delta_e,
    simulate_cvd,
    srgb_to_lab,
)
from dhcbench.reports.plot_labels import branch_titles, metric_label, run_stem, runs_stem

#: CIE76 ΔE*ab every two organ colours of a figure keep, for normal vision and under a
#: simulated deuteranopia: far above the just-noticeable 2.3, so that small markers and thin
#: lines are told apart at a glance (the palette measures 18.2 and 15.8; protanopia 10.0).
MIN_DELTA_E = 15.0
MIN_DELTA_E_PROTANOPIA = 9.5
#: Organs that touch in the body or stand next to each other in the class order of Synapse
#: or AMOS (the issue's RK/LK, Ga/Es, RAG/LAG, Li/St, Sp/IVC among them): at least ΔE 30.
NEIGHBOURS = """Sp-RK RK-LK LK-Ga Ga-Es Es-Li Li-St St-Ao Ao-IVC IVC-PSV PSV-Pa Pa-RAG RAG-LAG
IVC-Pa LAG-Du Du-Bl Bl-P/U Li-Ga Li-IVC Li-RK Li-PSV Li-Du Li-RAG Sp-St Sp-LK Sp-Pa Sp-PSV
St-Pa St-Es St-Du St-LAG Ao-Es Ao-Pa Ao-LAG Ao-PSV IVC-RK IVC-RAG IVC-Du Pa-Du Pa-LK RK-RAG
LK-LAG RK-Du Ga-Du Sp-IVC""".split()
#: 13 Synapse organs, and the 15 of an AMOS-like class list.
DATASETS = {"synapse": SYNAPSE_CLASSES, "amos": AMOS_CLASSES}
runner = CliRunner()


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def assert_distinct(colours: dict[str, str]) -> None:
    rgb = [hex_to_rgb(h) for h in colours.values()]
    assert min_delta_e(rgb) >= MIN_DELTA_E
    assert min_delta_e(rgb, "deuteranopia") >= MIN_DELTA_E
    assert min_delta_e(rgb, "protanopia") >= MIN_DELTA_E_PROTANOPIA


def integer_epoch_ticks(fig) -> list:
    """The x ticks of every epoch axis of a drawn figure."""
    fig.canvas.draw()
    epoch_axes = [ax for ax in fig.axes if ax.get_xlabel() == "epoch"]
    assert epoch_axes
    return [t for ax in epoch_axes for t in ax.get_xticks()]


def overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def assert_legends_outside(fig) -> None:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    assert legends
    for legend in legends:
        box = legend.get_window_extent(renderer)
        assert not any(overlaps(box, ax.get_window_extent(renderer)) for ax in fig.axes)


def weight_history(names, epochs: int, constant: bool = False) -> dict:
    rng = np.random.default_rng(0)
    return {b: {c: [(e, 1.0 if constant else 1.0 + rng.random() * e) for e in range(epochs)]
                for c in names} for b in ("a", "b")}


def curves_history(names, epochs: int) -> dict:
    rng = np.random.default_rng(1)
    keys = ["train/loss", "train/loss_sup", "train/loss_unsup", "train/lambda", "train/lr",
            "eval/dice_mean", "eval/best_dice_mean", *(f"eval/dice/{c}" for c in names[1:])]
    return {k: [(e, float(rng.random())) for e in range(epochs)] for k in keys}


def class_volume(names) -> np.ndarray:
    label = np.zeros((8, 4 * len(names), 4), dtype=np.uint8)
    for k in range(1, len(names)):
        label[2:6, 4 * k:4 * k + 3, :] = k
    return label


def figure_colours(names) -> dict[str, dict[str, str]]:
    """Per figure kind, the colour each organ is drawn in (abbreviation -> hex)."""
    organs = names[1:]
    weights = weight_trajectories(weight_history(names, 3), names)
    curves = training_curves(curves_history(names, 3), "", names)
    share = {c: 10.0 ** -(i / 3) for i, c in enumerate(names)}
    classes = dice_vs_proportion({"cps": {c: 50.0 for c in organs}}, share, names)
    label = class_volume(names)
    slices = slice_comparison(np.zeros(label.shape), label, {"dhc": label}, names, 1)
    bars = class_dice_bars({c: 50.0 for c in organs}, names)
    out = {
        "weights": {line.get_label(): to_hex(line.get_color())
                    for line in weights.axes[0].lines},
        "curves": {line.get_label(): to_hex(line.get_color()) for ax in curves.axes
                   if ax.get_ylabel().startswith("Dice per class") for line in ax.lines},
        "slices": {p.get_label(): to_hex(p.get_facecolor())
                   for p in slices.legends[0].get_patches()},
        "bars": {t.get_text(): to_hex(p.get_facecolor()) for t, p in
                 zip(bars.axes[0].get_xticklabels(), bars.axes[0].patches, strict=True)},
    }
    points = classes.axes[0].collections[0]  # left panel: x is the class's share
    by_share = {share[c]: abbreviation(c) for c in organs}
    out["classes"] = {by_share[x]: to_hex(rgba) for (x, _), rgba in
                      zip(points.get_offsets(), points.get_facecolors(), strict=True)}
    cmap = [im for ax in slices.axes for im in ax.images if im.get_cmap().name != "gray"]
    out["overlay"] = {abbreviation(c): to_hex(cmap[0].get_cmap()(cmap[0].norm(k)))
                      for k, c in enumerate(names) if k}
    return out


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_every_figure_kind_draws_each_organ_in_one_distinct_colour(dataset: str) -> None:
    names = DATASETS[dataset]
    expected = {abbreviation(c): h.lower() for c, h in zip(names, class_colours(names),
                                                          strict=True)}
    for kind, colours in figure_colours(names).items():
        organs = {k: v for k, v in colours.items() if k != "Bg"}
        assert len(organs) == len(names) - 1, kind
        assert organs == {k: v for k, v in expected.items() if k != "Bg"}, kind
        assert_distinct(organs)


def test_palette_distinctness_and_colour_blind_simulation() -> None:
    every = {c: ORGAN_COLOURS[c] for c in ORGAN_COLOURS}
    assert len(set(every.values())) == 16
    assert_distinct(every)
    assert_distinct(dict(zip(AMOS_CLASSES, class_colours(AMOS_CLASSES), strict=True)))
    by_abbreviation = {abbreviation(c): h for c, h in ORGAN_COLOURS.items()}
    for a, b in (p.split("-") for p in NEIGHBOURS):
        pair = [hex_to_rgb(by_abbreviation[a]), hex_to_rgb(by_abbreviation[b])]
        assert min(min_delta_e(pair), min_delta_e(pair, "deuteranopia")) >= 30.0, (a, b)
    # The simulation: grays stay gray, red and green collapse for a deuteranope.
    gray = np.array([[0.5, 0.5, 0.5]])
    assert np.allclose(simulate_cvd(gray), gray, atol=2e-3)
    red_green = [hex_to_rgb("#D62728"), hex_to_rgb("#2CA02C")]
    assert min_delta_e(red_green) > 70 and min_delta_e(red_green, "deuteranopia") < 25
    assert np.allclose(srgb_to_lab(np.array([[1.0, 1.0, 1.0]])), [[100, 0, 0]], atol=0.01)
    # A class outside the known organs takes a colour the list leaves free.
    mixed = class_colours(("background", "liver", "tumour", "vessel"))
    assert len(set(mixed)) == 4 and mixed[1] == ORGAN_COLOURS["liver"]


@pytest.mark.parametrize("epochs", [2, 7, 41])
def test_epoch_axes_have_whole_epoch_ticks(epochs: int) -> None:
    for fig in (weight_trajectories(weight_history(SYNAPSE_CLASSES, epochs), SYNAPSE_CLASSES),
                training_curves(curves_history(SYNAPSE_CLASSES, epochs), "", SYNAPSE_CLASSES)):
        ticks = integer_epoch_ticks(fig)
        assert all(float(t).is_integer() for t in ticks), ticks


def test_weights_name_the_branches_and_constant_weights_give_a_note() -> None:
    names = ("background", "spleen", "liver")
    titles = branch_titles(SimpleNamespace(method=SimpleNamespace(
        name="dhc", variant="reference", kwargs={})), len(names))
    assert titles == {"a": "DiffDW (branch A)", "b": "DistDW (branch B)"}
    history = weight_history(names, 4)
    history["b"] = weight_history(names, 4, constant=True)["b"]
    fig = weight_trajectories(history, names, "", titles)
    assert [ax.get_title() for ax in fig.axes] == ["DiffDW (branch A)", "DistDW (branch B)"]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["Bg", "Sp", "Li"]
    assert not fig.axes[1].lines
    assert "constant 1 for every class" in fig.axes[1].texts[0].get_text()
    assert_legends_outside(fig)
    assert constant_branches(history) == ["b"]
    cps = branch_titles(SimpleNamespace(method=SimpleNamespace(
        name="cps", variant="reference", kwargs={})), 3)
    assert cps == {"a": "Org (branch A)", "b": "Org (branch B)"}


def test_curves_label_metrics_in_words_with_legends_outside() -> None:
    assert metric_label("eval/dice_mean") == "Dice (eval, %)"
    assert metric_label("train/loss_sup") == "loss (supervised)"
    assert metric_label("train/loss_lds") == "loss (lds)"
    assert metric_label("eval/dice/left_adrenal_gland") == "LAG"
    fig = training_curves(curves_history(SYNAPSE_CLASSES, 3), "run", SYNAPSE_CLASSES)
    labels = {line.get_label() for ax in fig.axes for line in ax.lines}
    assert {"loss (total)", "loss (supervised)", "Dice (eval, %)", "Sp", "LAG"} <= labels
    assert not any("/" in label for label in labels)
    assert_legends_outside(fig)


def test_classes_figure_has_markers_only_and_no_overlapping_labels() -> None:
    organs = SYNAPSE_CLASSES[1:]
    share = {c: 10.0 ** -(i / 4) for i, c in enumerate(SYNAPSE_CLASSES)}
    # the adrenal glands and the esophagus nearly share a proportion (overprinted before)
    share.update(right_adrenal_gland=1.0e-4, left_adrenal_gland=1.05e-4, esophagus=1.1e-4)
    results = {f"m{i}": {c: 100.0 if c == "liver" else 40.0 + i for c in organs}
               for i in range(14)}
    fig = dice_vs_proportion(results, share, SYNAPSE_CLASSES)
    left, right = fig.axes
    for ax in (left, right):  # no line joins classes: separators are vertical, one x each
        assert all(len(set(line.get_xdata())) <= 1 for line in ax.lines)
    markers = {(c.get_paths()[0].vertices.tobytes(), len(c.get_facecolors()) > 0)
               for c in right.collections}
    assert len(markers) == 14
    assert_legends_outside(fig)
    renderer = fig.canvas.get_renderer()
    for texts in ([t for t in left.texts], right.get_xticklabels()):
        boxes = [t.get_window_extent(renderer) for t in texts]
        assert len(boxes) == len(organs)
        assert not any(overlaps(a, b) for a, b in itertools.combinations(boxes, 2))


def test_seeds_of_a_configuration_are_averaged() -> None:
    per_run = {
        "cps-phantom-20p-seed0": {"liver": 90.0, "spleen": 60.0},
        "cps-phantom-20p-seed1": {"liver": 80.0, "spleen": 70.0},
        "cps-phantom-20p-seed666": {"liver": 70.0},  # spleen missing: averaged over two
        "dhc-phantom-20p-seed0": {"liver": 50.0, "spleen": 40.0},
    }
    assert mean_over_seeds(per_run) == {
        "cps-phantom-20p (mean of 3 seeds)": {"liver": 80.0, "spleen": 65.0},
        "dhc-phantom-20p-seed0": {"liver": 50.0, "spleen": 40.0}}


def test_file_names_name_the_runs() -> None:
    a, b = "0123456789abcdef" * 2, "fedcba9876543210" * 2
    assert run_stem("weights", "dhc-phantom-20p-seed0", a) == (
        "weights_dhc-phantom-20p-seed0_01234567")
    assert runs_stem("slices", ["cps", "dhc"], [a, b], "phantom_0004") == (
        "slices_phantom_0004_cps-dhc_01234567-fedcba98")
    assert runs_stem("classes", ["dhc", "dhc"], [a, b]) == "classes_dhc_01234567-fedcba98"
    many = runs_stem("classes", [f"m{i}" for i in range(8)], [f"{i:032x}" for i in range(8)])
    assert many.startswith("classes_m0-m1-m2-m3-m4-m5+2_8runs-") and len(many) < 80
    assert many != runs_stem("classes", [f"m{i}" for i in range(8)],
                             [f"{i:032x}" for i in range(1, 9)])


def _invoke(runs: dict, *args: str):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DHCBENCH_DATA", str(runs["data"]))
        mp.setenv("MLFLOW_TRACKING_URI", str(runs["uri"]))
        return runner.invoke(app, list(args))


def test_plot_names_files_after_runs_and_skips_constant_weights(
        finished_runs: dict, tmp_path: Path) -> None:
    seed0 = {c.data.tags["method"]: c for c in finished_runs["children"]
             if c.data.tags["seed"] == "0"}
    cps, dhc = seed0["cps"].info.run_id, seed0["dhc"].info.run_id
    res = _invoke(finished_runs, "plot", "weights", "--run", cps, "--out", str(tmp_path))
    assert res.exit_code == 0, res.output
    assert "class weights constant 1 for every class" in res.output
    assert "no figure written" in res.output and not list(tmp_path.iterdir())
    res = _invoke(finished_runs, "plot", "weights", "--run", dhc, "--run", cps,
                  "--out", str(tmp_path))
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"weights_dhc-phantom-20p-seed0_{dhc[:8]}.{ext}" for ext in ("pdf", "png")]
    res = _invoke(finished_runs, "plot", "slices", "--run", cps, "--run", dhc,
                  "--out", str(tmp_path / "s"))
    assert res.exit_code == 0, res.output
    (png,) = (tmp_path / "s").glob("*.png")
    assert png.name.startswith("slices_phantom_") and png.name.endswith(
        f"_cps-dhc_{cps[:8]}-{dhc[:8]}.png")


def test_a_class_absent_from_the_labeled_set_keeps_the_classes_figure_laid_out() -> None:
    import io
    import warnings

    from dhcbench.reports.figures_compare import dice_vs_proportion

    names = ("background", "spleen", "liver", "left_adrenal_gland")
    share = {"background": 0.9, "spleen": 0.05, "liver": 0.05, "left_adrenal_gland": 0.0}
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # "axes sizes collapsed" before the fix
        fig = dice_vs_proportion({"run": {"spleen": 50.0, "liver": 90.0,
                                          "left_adrenal_gland": 0.0}}, share, names)
        fig.savefig(io.BytesIO(), format="png")
    left, right = fig.axes[:2]
    assert len(left.collections[0].get_offsets()) == 2  # no point at proportion 0 on a log axis
    assert len(right.collections[0].get_offsets()) == 3  # the absent class is still shown
