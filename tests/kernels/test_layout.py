"""The layout of ``gpytorch_ext.kernels.keops``: one way imports, and nothing registered as a side effect of them."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "gpytorch_ext" / "kernels" / "keops"


def _modules() -> dict[str, ast.Module]:
    return {path.stem: ast.parse(path.read_text()) for path in sorted(PACKAGE.glob("*.py"))}


def _sibling_imports(tree: ast.Module) -> set[str]:
    """The sibling modules a module imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module} if node.module else {alias.name for alias in node.names}
    return found


def test_sibling_imports_form_no_cycle():
    graph = {name: _sibling_imports(tree) - {"__init__"} for name, tree in _modules().items()}
    order = list(graphlib.TopologicalSorter(graph).static_order())  # raises CycleError on a cycle
    assert order.index("_availability") < order.index("_operator") < order.index("_kernel") < order.index("rbf")


def _module_level_side_effects(tree: ast.Module) -> list[str]:
    """Module-level statements that change something else than the module's own new names."""
    effects = []
    for stmt in tree.body:
        if isinstance(stmt, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            effects += [ast.unparse(t) for t in targets if not isinstance(t, ast.Name)]
        elif isinstance(stmt, ast.Expr) and not isinstance(stmt.value, ast.Constant):  # a call, not a docstring
            effects.append(ast.unparse(stmt))
        elif isinstance(stmt, (ast.For, ast.While, ast.With)):
            effects.append(ast.unparse(stmt).splitlines()[0])
    return effects


def test_no_module_registers_anything_at_import():
    assert {name: e for name, tree in _modules().items() if (e := _module_level_side_effects(tree))} == {}


def test_the_side_effect_check_can_fail():
    tree = ast.parse("UPSTREAM[A] = B\nfor k in K:\n    KINDS[k] = 1\nregister(X)\n'''doc'''\nY = 1\n")
    assert _module_level_side_effects(tree) == ["UPSTREAM[A]", "for k in K:", "register(X)"]
