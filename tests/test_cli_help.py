"""What the command line tells about itself: ``dhcbench methods``, help pages, setting typos,
the reference sections it cites, and the progress display's time left.

In-process (typer's CliRunner) and fast: nothing here trains or writes a store.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import typer.main
from rich.console import Console
from rich.progress import Progress, TimeRemainingColumn
from typer.testing import CliRunner

from dhcbench.cli import app
from dhcbench.cli import common as cli_common
from dhcbench.errors import UserError
from dhcbench.methods import METHODS

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "reference.md"
SECTION = re.compile(r"§(\d+(?:\.\d+[a-z]?)?)(?: items? (\d+)(?:[–-](\d+))?)?")


def invoke(*args: str, width: int = 80, monkeypatch: pytest.MonkeyPatch | None = None):
    """Run the app in-process on a console ``width`` columns wide."""
    old = cli_common.console.width
    cli_common.console.width = width
    try:
        return CliRunner().invoke(app, list(args), env={"COLUMNS": str(width)})
    finally:
        cli_common.console.width = old


# -- dhcbench methods ----------------------------------------------------------------------


def test_methods_fits_80_columns_and_names_every_method_and_alias() -> None:
    res = invoke("methods")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert len(lines) < 80
    assert max(len(line) for line in lines) <= 80
    text = res.stdout
    rows = {line.split()[0]: line for line in lines if line.startswith("  ")}
    for key, info in METHODS.items():
        for alias in METHODS.aliases_of(key):
            assert re.search(rf"(^|\s){re.escape(alias)}(,|\s|$)", text, re.M), alias
        if info.family != "ablation":
            assert key in rows, key
            continue
        a, b = key.split("-")  # one row per weighting of branch A lists every b
        row = rows[f"{a}-<b>"]
        listed = re.search(r"b = (.*?)\s{2,}", row + "  ").group(1)
        following = lines[lines.index(row) + 1:]
        for more in following:  # the b list may wrap onto the next lines
            if not more.startswith(" " * 10) or more.strip().startswith(("reference", "paper")):
                break
            listed += " " + more.strip()
        assert b in re.split(r"[,\s]+", listed), (key, listed)


def test_methods_dhc_is_readable_text_with_its_defaults() -> None:
    res = invoke("methods", "dhc", width=100)
    assert res.exit_code == 0, res.output
    out = res.stdout
    for line in ("beta = 0.99", "alpha = 0.2", "tau = 50", "sup_loss = auto"):
        assert re.search(rf"^\s+{re.escape(line)}\s", out, re.M), line
    for symbol in ("β", "α", "τ"):
        assert symbol in out
    for repr_like in ("{'", "('", "None", "True", "': ", "dict("):
        assert repr_like not in out, repr_like
    assert "Wang & Li" in out and "diffdw-distdw" in out
    assert re.search(r"^\s+paper\s+This variant uses the paper's Eq\. 3-5", out, re.M)
    assert "docs/reference.md §7" in out
    assert "8.12" not in out


def test_methods_accepts_an_alias_and_refuses_an_unknown_key_in_one_line() -> None:
    res = invoke("methods", "distdw")
    assert res.exit_code == 0 and res.stdout.startswith("distdw-distdw — ")
    res = invoke("methods", "dhx")
    assert res.exit_code == 2
    assert res.stderr.count("\n") == 1
    assert res.stderr.startswith("error: unknown method 'dhx'; did you mean 'dhc'?")


def test_methods_details_is_kept_as_a_hidden_alias() -> None:
    res = invoke("methods", "--details", width=100)
    assert res.exit_code == 0
    assert res.stdout.count(" — ") == len(METHODS)
    assert "--details" not in invoke("methods", "--help").stdout


# -- help pages ------------------------------------------------------------------------------


def _command_paths(command, path=()):  # noqa: ANN001, ANN202
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from _command_paths(sub, (*path, name))


def test_no_help_page_shows_a_type_label() -> None:
    paths = list(_command_paths(typer.main.get_command(app)))
    assert ("run",) in paths and ("splits", "show") in paths
    for path in paths:
        out = invoke(*path, "--help", width=120).stdout
        assert not re.search(r"<(bool|str|int|float|path|list\[\w+\])>", out), (path, out)
        flags = [line for line in out.splitlines() if re.search(r"--(help|resume|dry-run)\b", line)]
        for line in flags:  # a flag takes no value: no placeholder after it
            assert not re.search(r"--(help|resume|dry-run)\s+(<|[A-Z_=,]{2,}\s)", line), line


def test_value_options_show_meaningful_placeholders() -> None:
    out = invoke("run", "--help", width=120).stdout
    for option, shown in (("--method", "METHOD"), ("--dataset", "DATASET"), ("--ratio", "RATIO"),
                          ("--seeds", "N"), ("--set", "KEY=VALUE"), ("--config", "FILE"),
                          ("--out", "PATH")):
        assert re.search(rf"{option}\s+(-\w\s+)?{re.escape(shown)}\s", out), option


def test_run_help_names_every_variant_a_method_has() -> None:
    registered = {v for _, info in METHODS.items() for v in info.variants}
    assert registered <= set(cli_common.VARIANTS)
    out = " ".join(invoke("run", "--help", width=200).stdout.split())
    for variant in registered:
        assert re.search(rf"\b{variant}:", out), variant


# -- setting typos ---------------------------------------------------------------------------


def test_set_typo_names_the_closest_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    monkeypatch.chdir(tmp_path)
    res = invoke("run", "--set", "train.lrr=1")
    assert res.exit_code == 2
    assert res.stderr.count("\n") == 1
    assert "unknown setting train.lrr; did you mean train.lr?" in res.stderr
    config = tmp_path / "my.yaml"
    config.write_text("trian:\n  epochs: 3\n")
    res = invoke("run", "--config", str(config))
    assert res.exit_code == 2
    assert "unknown setting trian.epochs; did you mean train.epochs?" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my.yaml"]  # nothing written


def test_unknown_settings_without_a_close_name_list_the_valid_ones() -> None:
    from dhcbench.benchmark.spec import check_layer

    with pytest.raises(UserError, match=r"unknown setting train\.zzz \(valid: epochs, "):
        check_layer({"train": {"zzz": 1}}, "--set")
    with pytest.raises(UserError, match="unknown setting methdo; did you mean method"):
        check_layer({"methdo": 1}, "--set")


def test_method_argument_typo_names_the_closest_argument() -> None:
    with pytest.raises(UserError, match=r"no argument 'bta'; did you mean method\.kwargs\.beta"):
        METHODS.get("dhc").build(num_classes=3, in_channels=1, base_filters=4,
                                 variant="reference", kwargs={"bta": 0.9})


# -- the reference sections cited ------------------------------------------------------------


def _headings() -> tuple[set[str], dict[str, set[int]], set[str]]:
    """Section numbers of docs/reference.md, the numbered items of each, its anchors."""
    numbers: set[str] = set()
    items: dict[str, set[int]] = {}
    anchors: set[str] = set()
    current = ""
    for line in REFERENCE.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"#{1,4} (.+)", line)
        if heading:
            title = heading.group(1)
            number = re.match(r"(\d+(?:\.\d+[a-z]?)?)\.? ", title)
            current = number.group(1) if number else ""
            numbers.add(current)
            anchor = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
            anchors.add(anchor)
            continue
        item = re.match(r"(\d+)\. ", line)
        if item and current:
            items.setdefault(current, set()).add(int(item.group(1)))
    return numbers, items, anchors


def _check_citations(text: str, where: str) -> int:
    numbers, items, _ = _headings()
    found = 0
    for section, first, last in SECTION.findall(text):
        found += 1
        assert section in numbers, f"{where}: §{section} is no heading of docs/reference.md"
        for item in {int(first), int(last or first)} if first else ():
            assert item in items.get(section, set()), f"{where}: §{section} item {item}"
    return found


def test_every_section_a_method_or_the_cli_cites_is_in_docs_reference() -> None:
    from dhcbench.cli.data import _CITATION, _sections

    cited = 0
    for key, info in METHODS.items():
        for text in (info.description, info.paper, info.networks, info.reference_lambda):
            cited += _check_citations(text, key)
            for anchor in re.findall(r"docs/reference\.md#([\w-]+)", text):
                assert anchor in _headings()[2], f"{key}: #{anchor}"
        shown = _sections(key, info, _CITATION.findall(info.description))
        assert shown.startswith("docs/reference.md §")
        cited += _check_citations(shown, key)
    assert cited > len(METHODS)


def test_every_section_the_source_cites_is_in_docs_reference() -> None:
    package = REFERENCE.parents[1] / "dhcbench"
    cited = sum(_check_citations(path.read_text(encoding="utf-8"), str(path.relative_to(package)))
                for path in sorted(package.rglob("*.py")))
    assert cited > 50


def test_the_links_inside_docs_reference_resolve() -> None:
    _, _, anchors = _headings()
    links = re.findall(r"\]\(#([\w-]+)\)", REFERENCE.read_text(encoding="utf-8"))
    assert links and set(links) <= anchors, set(links) - anchors
    for number in ("0", "7.1", "7.2a", "8.12", "8.13", "12"):
        assert number in _headings()[0]
    assert _headings()[1]["12"] >= set(range(1, 25))


# -- progress --------------------------------------------------------------------------------


def test_time_left_survives_a_long_evaluation() -> None:
    from dhcbench.benchmark.progress import SteadyTimeRemaining

    now = [0.0]
    steady, stock = SteadyTimeRemaining(), TimeRemainingColumn()
    progress = Progress(steady, stock, get_time=lambda: now[0], auto_refresh=False,
                        console=Console(file=None, force_terminal=False, width=80))
    task = progress.add_task("train", total=100)
    shown = []

    def step(completed: int, at: float) -> None:
        now[0] = at
        progress.update(task, completed=completed)
        t = progress.tasks[0]
        shown.append((steady.seconds_left(t), stock.render(t).plain))

    step(1, 1.0)  # the first step: the pace is not known yet
    step(11, 11.0)  # ten steps in ten seconds: 89 s left
    step(11, 131.0)  # two minutes of evaluation, no step
    step(12, 132.0)
    assert shown[0][0] is None
    assert shown[1][0] == pytest.approx(89.0)
    assert shown[2][1] == shown[3][1] == "-:--:--"  # rich's own column loses its estimate
    assert shown[2][0] == pytest.approx(89 * 130 / 10)  # the evaluation slows the mean pace
    assert shown[3][0] == pytest.approx(88 * 131 / 11)
    assert steady.render(progress.tasks[0]).plain == "0:17:28"


def test_run_header_counts_only_the_cases_a_method_trains_on() -> None:
    from dhcbench.benchmark.progress import run_header

    split = SimpleNamespace(labeled=("a",) * 4, unlabeled=("b",) * 16, train=("c",) * 20)

    def header(method: str) -> str:
        spec = SimpleNamespace(method=SimpleNamespace(name=method),
                               data=SimpleNamespace(name="phantom"), seed=0)
        return run_header(SimpleNamespace(specs=(spec,), split=split), 0.2)

    assert header("dhc") == "dhc on phantom 0.2: 4 labeled / 16 unlabeled, seeds 0"
    assert "unlabeled" not in header("labeled-only").replace("no unlabeled", "")
    assert header("labeled-only").startswith("labeled-only on phantom 0.2: 4 labeled cases")
    assert header("fully") == "fully on phantom 0.2: 20 training cases, all labeled, seeds 0"
