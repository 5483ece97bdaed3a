"""The package's folders are layers: a module imports only from its own layer or those below,
and only the Flower glue imports Flower when it is imported."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fedleak"
LAYERS = [
    {"core"},
    {"data", "models", "results", "deploy"},
    {"attacks", "defenses"},
    {"runners"},
    {"scenario"},
    {"client", "adversary"},
    {"federation"},
    {"sweep"},
    {"cli"},
]
LEVEL = {name: level for level, names in enumerate(LAYERS) for name in names}


def _part(module: str) -> str | None:
    """The layer folder of a ``fedleak.…`` module name (``None``: the package itself)."""
    parts = module.split(".")
    return parts[1] if parts[0] == "fedleak" and len(parts) > 1 else None


def _imports(tree: ast.Module) -> list[tuple[str, bool]]:
    """Every imported module with whether the import runs when the module is imported
    (not inside a function or an ``if TYPE_CHECKING:`` block)."""
    found = []

    def visit(node: ast.AST, at_import: bool) -> None:
        for child in ast.iter_child_nodes(node):
            runs = at_import and not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) and not (
                isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test))
            if isinstance(child, ast.Import):
                found.extend((alias.name, runs) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                found.append((child.module, runs))
            visit(child, runs)

    visit(tree, True)
    return found


MODULES = sorted(path for path in PACKAGE.rglob("*.py") if path.parent != PACKAGE or path.stem == "cli")


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_a_module_imports_only_its_layer_and_those_below(path):
    own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    for module, runs in _imports(ast.parse(path.read_text(encoding="utf-8"))):
        target = _part(module)
        if target is not None:
            assert LEVEL[target] <= LEVEL[own], f"{own} imports {module} from a layer above"
        if module.split(".")[0] == "flwr" and runs:
            assert own == "federation", f"{own} imports Flower at import time ({module})"
