"""The package's rooms form a stack and every import points down it (or stays in its room): read from the source of
every module (function-level imports included), so an upward arrow fails here, naming the file and the import."""

from __future__ import annotations

import ast
from pathlib import Path

import cycleisp_fast

PACKAGE = Path(cycleisp_fast.__file__).parent
LAYERS = (
    ("_dtypes", "_extension", "backend", "checks", "seeds", "color", "arguments"),
    ("reference", "triton_kernels"),
    ("ops",),
    ("nn", "noise", "data"),
    ("models", "optimization"),
    ("pipelines",),
    ("training",),
    ("cases",),
    ("bench",),
    ("commands", "selftest"),
    ("cli", "__main__"),
)
"""Bottom first: a room may import its own modules and those of the rooms of lower rows."""
LEVEL = {room: level for level, rooms in enumerate(LAYERS) for room in rooms}


def _room(module: str) -> str:
    """``cycleisp_fast.data.raw`` -> ``data``; ``cycleisp_fast.color`` -> ``color``."""
    return module.split(".")[1]


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every ``cycleisp_fast`` import of ``path`` (``from cycleisp_fast import x`` -> x's module)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.startswith("cycleisp_fast.")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "cycleisp_fast":
                found += [(node.lineno, f"cycleisp_fast.{alias.name}") for alias in node.names]
            elif node.module.startswith("cycleisp_fast."):
                found.append((node.lineno, node.module))
    return found


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "__init__.py":
            continue  # the package's own __init__ gathers the rooms for the user
        yield relative, relative.parts[0].removesuffix(".py")


def test_every_module_of_the_package_has_a_room():
    rooms = {room for _, room in _modules()}
    assert rooms <= set(LEVEL), f"rooms missing from LAYERS: {sorted(rooms - set(LEVEL))}"


def test_no_import_points_up_the_stack():
    upward = []
    for relative, room in _modules():
        for line, module in _imports(PACKAGE / relative):
            target = _room(module)
            if target != room and LEVEL.get(target, -1) > LEVEL[room]:
                upward.append(
                    f"{relative}:{line} ({room}, row {LEVEL[room]}) imports {module} ({target}, row {LEVEL[target]})"
                )
    assert not upward, "imports pointing up the stack:\n" + "\n".join(upward)


def test_the_installed_package_is_typed_and_has_one_version():
    """PEP 561's marker ships with the package; the version is written once (``__init__``), pyproject reads it."""
    assert (PACKAGE / "py.typed").is_file()
    pyproject = PACKAGE.parent / "pyproject.toml"
    if pyproject.is_file():  # a source checkout
        text = pyproject.read_text(encoding="utf-8")
        assert 'version = { attr = "cycleisp_fast.__version__" }' in text and '\nversion = "' not in text
