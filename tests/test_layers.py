"""Imports run only downwards: host -> nodes -> engine (runtime). The engine imports neither the nodes nor the
host, the nodes do not import the host, and the pack's ComfyUI entry (``__init__.py``) never loads the host.

Every .py file is read as a syntax tree (nothing is imported), so an import inside a function counts as well."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"runtime": 0, "nodes": 1, "host": 2}  # a layer may import only layers with a smaller or equal number


def imported_layers(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, top-level package of the pack) of every import in ``path`` that names one, relative or ``unidit.``."""
    package = path.relative_to(root).parent.parts  # the module's package inside the pack, () at its root
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [tuple(alias.name.split(".")) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            targets = [tuple(node.module.split("."))]
        elif isinstance(node, ast.ImportFrom):  # `from .` is the module's own package, each further dot one up
            base = package[:len(package) - node.level + 1]
            module = tuple(node.module.split(".")) if node.module else ()
            targets = [base + module] if module else [base + (alias.name,) for alias in node.names]
        else:
            continue
        absolute = isinstance(node, ast.Import) or node.level == 0
        for parts in targets:
            if absolute:  # only `unidit.` names the pack
                parts = parts[1:] if parts[0] == "unidit" else ()
            if parts and parts[0] in LAYERS:
                found.append((node.lineno, parts[0]))
    return sorted(found)


def python_files(layer: str) -> list[Path]:
    return sorted((ROOT / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_a_layer_imports_only_the_layers_below_it(layer):
    files = python_files(layer)
    assert files, f"no Python files under {layer}/"
    upward = [f"{path.relative_to(ROOT)}:{line} imports {target}/"
              for path in files for line, target in imported_layers(path) if LAYERS[target] > LAYERS[layer]]
    assert upward == []


def test_the_comfyui_entry_loads_the_nodes_and_not_the_host():
    targets = {target for _, target in imported_layers(ROOT / "__init__.py")}
    assert "nodes" in targets and "host" not in targets


def test_the_check_sees_relative_absolute_and_nested_imports(tmp_path):
    """The walker itself: each spelling of an import of a layer is found, with its line."""
    module = tmp_path / "runtime" / "media" / "probe.py"
    module.parent.mkdir(parents=True)
    module.write_text("from ...host import cli\n"
                      "import unidit.nodes.save\n"
                      "import json\n"
                      "def later():\n"
                      "    from ... import host\n"
                      "from ..files import save_output\n"
                      "from . import video\n")
    assert imported_layers(module, tmp_path) == [(1, "host"), (2, "nodes"), (5, "host"), (6, "runtime"),
                                                 (7, "runtime")]
