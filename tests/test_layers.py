"""The package's layers and its map, both read from docs/DESIGN.md: imports between the top-level modules and
packages point down the layers only, and the module map names every module the package has (and no other)."""

from __future__ import annotations

import re
from pathlib import Path

from test_package_shape import PACKAGE, _imports, _modules

DESIGN = Path(__file__).resolve().parents[1] / "docs" / "DESIGN.md"
DATA_PACKAGES = {"data", "storyboards"}  # files the package ships, no code
MOST_TOP_LEVEL_MODULES = 15


def _block_after(heading: str) -> list[str]:
    """The lines of the first fenced block after ``heading`` in docs/DESIGN.md."""
    text = DESIGN.read_text(encoding="utf-8")
    after = text[text.index(heading):]
    block = re.search(r"```\n(.*?)```", after, flags=re.S)
    assert block, f"docs/DESIGN.md has no fenced block after {heading!r}"
    return block.group(1).splitlines()


def layers() -> list[list[str]]:
    """docs/DESIGN.md's layers, top first: each line one layer, its units separated by ``|``."""
    return [[unit.strip() for unit in line.split("|")] for line in _block_after("## Layers") if line.strip()]


def _unit(module: str) -> str | None:
    """The top-level module or package a module belongs to (``ttlesson.backends.tt.sd14`` → ``backends``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _unit_imports() -> dict[tuple[str, str], list[str]]:
    """(importing unit, imported unit) → the module-level import lines behind that edge."""
    modules = _modules()
    edges: dict[tuple[str, str], list[str]] = {}
    for name, path in modules.items():
        for target in _imports(name, path, modules):
            here, there = _unit(name), _unit(target)
            if here and there and here != there:
                edges.setdefault((here, there), []).append(f"{name} imports {target}")
    return edges


def test_every_unit_of_the_package_has_a_layer():
    placed = [unit for layer in layers() for unit in layer]
    assert len(placed) == len(set(placed)), "a unit is in two layers of docs/DESIGN.md"
    units = {path.stem if path.is_file() else path.name for path in PACKAGE.iterdir()
             if (path.suffix == ".py" and path.name != "__init__.py") or (path / "__init__.py").is_file()}
    assert units - DATA_PACKAGES == set(placed)


def test_imports_point_down_the_layers_only():
    level = {unit: index for index, layer in enumerate(layers()) for unit in layer}
    wrong = [f"{line} ({here} is not above {there} in docs/DESIGN.md's layers)"
             for (here, there), lines in sorted(_unit_imports().items()) if level[here] >= level[there]
             for line in lines]
    assert wrong == []


def test_the_graph_sees_the_edges_between_units():
    # the check above is only as good as its graph: relative imports and imports inside functions must show
    edges = _unit_imports()
    assert ("render", "backends") in edges and ("notebook", "render") in edges
    assert ("render", "notebook") not in edges


def test_at_most_fifteen_modules_sit_at_the_top():
    top = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert len(top) <= MOST_TOP_LEVEL_MODULES, top


def map_entries() -> set[str]:
    """The paths docs/DESIGN.md's module map names: one per line, two spaces of indent per folder level."""
    entries, folders = set(), []
    for line in _block_after("## Module map"):
        if not line.strip():
            continue
        name = line.split()[0]
        depth = (len(line) - len(line.lstrip(" "))) // 2
        folders = folders[:depth]
        if name.endswith("/"):
            folders.append(name.rstrip("/"))
        elif name.endswith(".py"):
            entries.add("/".join([*folders, name]))
    return entries


def test_the_module_map_names_every_module_and_only_those():
    on_disk = {str(path.relative_to(PACKAGE.parent)) for path in PACKAGE.rglob("*.py")}
    mapped = map_entries()
    assert sorted(on_disk - mapped) == [], "modules missing from docs/DESIGN.md's map"
    assert sorted(mapped - on_disk) == [], "docs/DESIGN.md's map names modules that do not exist"
