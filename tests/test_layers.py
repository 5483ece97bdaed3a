"""The package's folders are layers: a module imports only from its own layer or those below,
and only the Flower glue imports Flower when it is imported."""

import ast
import re
from pathlib import Path

import pytest

from fedleak.results.rows import AttackStatus, ReplyStatus, RunStatus

PACKAGE = Path(__file__).resolve().parents[1] / "fedleak"
ROOT = "fedleak"
"""The package itself (``fedleak/__init__.py``'s public API, ``__main__``): the top layer."""
LAYERS = [
    {"core"},
    {"data", "models", "results", "deploy"},
    {"attacks", "defenses", "crafting"},
    {"runners"},
    {"scenario"},
    {"client", "adversary"},
    {"federation"},
    {"sweep"},
    {"cli"},
    {ROOT},
]
LEVEL = {name: level for level, names in enumerate(LAYERS) for name in names}


def _part(module: str) -> str | None:
    """The layer of a module name: its folder under fedleak, :data:`ROOT` for the package itself,
    ``None`` outside fedleak."""
    parts = module.split(".")
    if parts[0] != "fedleak":
        return None
    return parts[1] if len(parts) > 1 else ROOT


def _layer_of(path: Path) -> str:
    """The layer a source file is in: its folder, ``cli``, or the package root's own files."""
    first = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    return first if first in LEVEL and first != ROOT else ROOT


def _absolute(path: Path, node: ast.ImportFrom) -> str:
    """The module a (maybe relative) ``from … import`` names, as an absolute name."""
    if not node.level:
        return node.module or ""
    package = ["fedleak", *path.relative_to(PACKAGE).parent.parts]
    base = package[: len(package) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


def _imports(path: Path) -> list[tuple[str, bool]]:
    """Every module ``path`` imports (relative imports made absolute), with whether the import runs
    when the module is imported (not inside a function or an ``if TYPE_CHECKING:`` block)."""
    found = []

    def visit(node: ast.AST, at_import: bool) -> None:
        for child in ast.iter_child_nodes(node):
            runs = at_import and not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) and not (
                isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test))
            if isinstance(child, ast.Import):
                found.extend((alias.name, runs) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                found.append((_absolute(path, child), runs))
            visit(child, runs)

    visit(ast.parse(path.read_text(encoding="utf-8")), True)
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_of_the_package_is_checked_the_root_included():
    names = {str(path.relative_to(PACKAGE)) for path in MODULES}
    assert {"__init__.py", "__main__.py", "cli.py", "core/fingerprint.py"} <= names
    assert _layer_of(PACKAGE / "__init__.py") == _layer_of(PACKAGE / "__main__.py") == ROOT
    assert _part("fedleak") == ROOT and _part("fedleak.core.errors") == "core" and _part("flwr.app") is None


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_a_module_imports_only_its_layer_and_those_below(path):
    own = _layer_of(path)
    for module, runs in _imports(path):
        target = _part(module)
        if target is not None:
            assert LEVEL[target] <= LEVEL[own], f"{own} imports {module} from a layer above"
        if module.split(".")[0] == "flwr" and runs:
            assert own == "federation", f"{own} imports Flower at import time ({module})"


def test_the_architecture_page_lists_the_folders_in_their_layers_order():
    page = (PACKAGE.parent / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    table = page[page.index("| layer | path | what |"):].split("\n\n")[0]
    listed = [_layer_of(PACKAGE / path) for path in re.findall(r"^\|[^|]*\| `fedleak/([\w./]+?)/?` ", table, re.M)]
    assert sorted(set(listed)) == sorted(LEVEL)  # every layer, each module folder named
    assert [LEVEL[name] for name in listed] == sorted(LEVEL[name] for name in listed), listed


_SQL = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP)\b.*\b(FROM|INTO|SET|TABLE)\b", re.I | re.S)
_STATUSES = {str(status) for vocabulary in (RunStatus, ReplyStatus, AttackStatus) for status in vocabulary}
_OTHER_MEANINGS = {("adversary/sanity.py", "failed"), ("adversary/adversary.py", "failed"),  # a sanity verdict
                   ("federation/run_config.py", "rejected")}  # the name of a rejected scenario's run directory
"""Strings equal to a stored status that mean something else where they stand."""


def _strings(path: Path) -> list[str]:
    """Every string constant of ``path`` that is not a docstring."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr)}
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


@pytest.mark.parametrize("path", [p for p in MODULES if _layer_of(p) != "results"],
                         ids=lambda path: str(path.relative_to(PACKAGE)))
def test_sql_and_status_strings_live_only_in_the_store(path):
    relative = str(path.relative_to(PACKAGE))
    strings = _strings(path)
    assert not [s for s in strings if _SQL.match(s)], f"{relative} holds SQL: the store's named reads belong in results/"
    statuses = {s for s in strings if s in _STATUSES and (relative, s) not in _OTHER_MEANINGS}
    assert not statuses, f"{relative} spells stored statuses {sorted(statuses)}: use fedleak.results.rows' members"


def test_the_store_check_sees_sql_and_a_spelled_status(tmp_path):
    """The check above fails on the code it exists to keep out."""
    module = tmp_path / "module.py"
    module.write_text('"""A docstring that says finished."""\nq = "SELECT status FROM runs"\nok = s == "finished"\n')
    strings = _strings(module)
    assert [s for s in strings if _SQL.match(s)] == ["SELECT status FROM runs"]
    assert [s for s in strings if s in _STATUSES] == ["finished"]
