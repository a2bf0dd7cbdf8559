"""The public names of ``plait``: lazily loaded at run time, visible to type checkers."""

import ast
import importlib
from pathlib import Path

import plait

INIT = Path(plait.__file__)


def test_every_public_name_loads_from_its_module() -> None:
    for name in plait.__all__:
        module = importlib.import_module(plait._EXPORTS[name])
        assert getattr(plait, name) is getattr(module, name)


def test_type_checkers_see_every_public_name() -> None:
    # The TYPE_CHECKING imports must name what __getattr__ serves, from the same module, as
    # explicit re-exports (`X as X`), or a type checker sees a different API than users get.
    seen: dict[str, str] = {}
    for node in ast.walk(ast.parse(INIT.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("plait."):
            for alias in node.names:
                assert alias.asname == alias.name, f"{alias.name} is not re-exported"
                seen[alias.name] = node.module or ""
    assert seen == plait._EXPORTS


def test_package_is_marked_typed() -> None:
    assert (INIT.parent / "py.typed").is_file()
