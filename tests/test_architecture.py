"""The package's layers, checked statically on every ``import`` statement (including the
ones inside functions): from the bottom, the core (errors, registry, interfaces,
schedules, allocator), then datasets and methods, evaluation, the training engine
(benchmark), the reports, and the command line on top. A layer never imports one above it,
and the engine never names a specific method: it knows methods through the registry and
their base interface only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dhcbench"
#: methods/ modules the engine may import: the registry, the base interface, the shared
#: networks and loss primitives. Everything else in methods/ is a specific method or one of
#: its strategies.
GENERIC_METHOD_MODULES = {"dhcbench.methods", "dhcbench.methods.base",
                          "dhcbench.methods.networks", "dhcbench.methods.losses"}
FORBIDDEN = {
    "methods": ("dhcbench.benchmark", "dhcbench.reports", "dhcbench.evaluation",
                "dhcbench.cli", "dhcbench.datasets"),
    "datasets": ("dhcbench.benchmark", "dhcbench.reports", "dhcbench.evaluation",
                 "dhcbench.cli", "dhcbench.methods"),
    "evaluation": ("dhcbench.benchmark", "dhcbench.reports", "dhcbench.cli"),
    "benchmark": ("dhcbench.reports", "dhcbench.cli"),
    "reports": ("dhcbench.cli",),
}
CORE = ("errors.py", "registry.py", "interfaces.py", "schedules.py", "allocator.py")


def imported_modules(path: Path) -> set[str]:
    """Absolute names of the dhcbench modules ``path`` imports (``from a import b`` counts
    as ``a.b`` as well as ``a``, since ``b`` may be a module)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {n for n in names if n == "dhcbench" or n.startswith("dhcbench.")}


def is_module(name: str) -> bool:
    """Whether the dotted ``name`` is a module or package of dhcbench (not an attribute)."""
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _modules(layer: str) -> list[Path]:
    return sorted((PACKAGE / layer).rglob("*.py"))


def _violations(paths: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    return [f"{p.name} imports {name}"
            for p in paths for name in sorted(imported_modules(p))
            if name.startswith(forbidden) and any(
                name == f or name.startswith(f + ".") for f in forbidden)]


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_layer_imports_one_above_it(layer: str) -> None:
    assert _violations(_modules(layer), FORBIDDEN[layer]) == []


def test_the_core_imports_nothing_of_the_package_but_the_core() -> None:
    core = [PACKAGE / name for name in CORE]
    allowed = ("dhcbench.errors", "dhcbench.registry")
    bad = [f"{p.name} imports {n}" for p in core for n in imported_modules(p)
           if not n.startswith(allowed)]
    assert bad == []


def test_the_engine_names_no_specific_method() -> None:
    bad = [f"{p.name} imports {name}"
           for layer in ("benchmark", "evaluation") for p in _modules(layer)
           for name in sorted(imported_modules(p))
           if name.startswith("dhcbench.methods.") and is_module(name)
           and name not in GENERIC_METHOD_MODULES]
    assert bad == []


def test_the_check_sees_a_violation(tmp_path: Path) -> None:
    module = tmp_path / "leak.py"
    module.write_text("def f():\n    from dhcbench.reports.figures import class_dice_bars\n")
    assert _violations([module], FORBIDDEN["benchmark"]) != []
    assert imported_modules(module) >= {"dhcbench.reports.figures"}
    assert is_module("dhcbench.methods.cotraining") and not is_module("dhcbench.methods.METHODS")
