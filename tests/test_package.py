"""The package itself: the versions it accepts, and modules that import without a cycle."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import ftutils

PACKAGE = Path(ftutils.__file__).parent


@pytest.mark.parametrize("keras_version", ["3.12.0", "3.13.2", "2.15.0"])
def test_a_keras_older_than_the_tested_range_is_refused_with_the_fix(keras_version):
    with pytest.raises(ImportError, match=rf"keras >= 3\.14.*has {keras_version}.*requirements"):
        ftutils.check_versions({"keras": keras_version, "tensorflow": "2.21.0"})


def test_the_tested_versions_pass_and_newer_ones_warn():
    ftutils.check_versions({"keras": "3.14.0", "tensorflow": "2.21.0"})
    ftutils.check_versions({"keras": "3.15.1", "tensorflow": "2.21.3"})
    with pytest.warns(UserWarning, match=r"tensorflow 2\.22\.0 is newer"):
        ftutils.check_versions({"keras": "3.15.1", "tensorflow": "2.22.0"})
    ftutils.check_versions({"keras": "3.14.0", "tensorflow": "2.20.0"})
    with pytest.raises(ImportError, match=r"tensorflow >= 2\.20"):
        ftutils.check_versions({"keras": "3.15.1", "tensorflow": "2.19.1"})


def _imported_modules(path: Path) -> set[str]:
    """The ftutils modules a module imports at its top level."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.level == 1:  # from .config import ...
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module == "ftutils":
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ftutils."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("ftutils."))
    return found


def test_the_modules_import_each_other_without_a_cycle():
    modules = {p.stem: p for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__")}
    graph = {name: _imported_modules(path) & modules.keys() for name, path in modules.items()}
    assert graph["backbones"] and graph["recipe"]  # the parse finds imports at all

    def cycle_from(name: str, path: list[str]) -> list[str] | None:
        if name in path:
            return path[path.index(name) :] + [name]
        for imported in sorted(graph[name]):
            found = cycle_from(imported, path + [name])
            if found:
                return found
        return None

    cycles = [c for c in (cycle_from(name, []) for name in sorted(graph)) if c]
    assert not cycles, " -> ".join(cycles[0])


def test_the_ftutils_command_is_installed_beside_python():
    command = Path(sys.executable).with_name("ftutils")
    assert command.is_file(), f"{command} missing: reinstall the package (pip install -e .)"
    result = subprocess.run([command, "finetune", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--backbone" in result.stdout
