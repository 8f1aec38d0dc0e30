"""The README's Layout section names exactly what the tree holds: every top-level entry, and every entry of each
folder whose contents it lists (a module or package added, moved or deleted must be named there)."""
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def layout_entries() -> dict[str, set]:
    """{"": top-level names, "folder/": names listed under it} from the Layout section's code block. An entry is
    the first word of a line indented by 0 (top level) or 2 spaces (inside the last top-level folder); deeper
    lines continue a description."""
    section = ROOT.joinpath("README.md").read_text().split("\n## Layout\n", 1)[1]
    block = re.search(r"```\n(.*?)```", section, re.S).group(1)
    entries, folder = {"": set()}, ""
    for line in block.splitlines():
        indent = len(line) - len(line.lstrip(" "))
        if not line.strip() or indent > 2:
            continue
        name = line.split()[0]
        if indent == 0:
            entries[""].add(name)
            folder = name if name.endswith("/") else ""
        else:
            assert folder, f"{name!r} is indented under no folder"
            entries.setdefault(folder, set()).add(name)
    return entries


def tree_entries(folder: str) -> set:
    """The names in ``folder`` ("" for the root) of files git tracks or would track, folders with a slash."""
    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", folder or "."],
                                cwd=ROOT, capture_output=True, text=True, check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("the Layout check reads the tree through git; this is not a git checkout")
    names = set()
    for path in listed:
        parts = Path(path).relative_to(folder or ".").parts
        if not Path(ROOT, path).exists():  # deleted in the working tree, not yet committed
            continue
        names.add(parts[0] + "/" if len(parts) > 1 else parts[0])
    return {name for name in names if not name.startswith(".") and name != "__init__.py"}


def test_the_layout_lists_every_top_level_entry_and_no_other():
    assert layout_entries()[""] == tree_entries("") | {"__init__.py"}


def test_the_layout_lists_every_entry_of_each_folder_it_opens():
    for folder, listed in layout_entries().items():
        if folder:
            assert listed == tree_entries(folder), folder
