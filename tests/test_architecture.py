"""The house keeps its shape: owl imports only downward (DESIGN.md), with no import cycles.

The layers live in pyproject.toml ([tool.importlinter]); `make lint` runs the same check.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "owl"


def test_owl_imports_only_downward() -> None:
    beside = Path(sys.executable).with_name("lint-imports")
    lint_imports = str(beside) if beside.exists() else shutil.which("lint-imports")
    assert lint_imports, "lint-imports is not installed: make test installs owl[dev]"
    done = subprocess.run(
        [lint_imports, "--no-cache", "--no-logo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"lint-imports failed:\n{done.stdout}\n{done.stderr}"


def test_every_folder_of_owl_is_a_package() -> None:
    # A folder without __init__.py is a namespace package: grimp, and so the layers contract
    # and the cycle count below, do not see the modules in it at all.
    folders = {path.parent for path in PACKAGE.rglob("*.py") if "__pycache__" not in path.parts}
    bare = [folder for folder in folders if not (folder / "__init__.py").is_file()]
    missing = sorted(str(folder.relative_to(ROOT)) for folder in bare)
    assert not missing, f"folders of owl without __init__.py: {missing}"


def direct_imports(graph: grimp.ImportGraph) -> dict[str, set[str]]:
    """Each module's imports of owl's modules, as Python runs them.

    `from owl.tune import checkpoints` runs owl/tune/__init__.py before it reads checkpoints:
    grimp records only owl.tune.checkpoints, so the package is added here (as the cycle
    count of the house's plan, tools/import_cycles.py, counts it)."""
    imports: dict[str, set[str]] = {}
    for module in graph.modules:
        targets = set(graph.find_modules_directly_imported_by(module))
        for target in list(targets):
            package = target.rpartition(".")[0]
            if package in (module, "") or package not in graph.modules:
                continue
            for detail in graph.get_import_details(importer=module, imported=target):
                words = detail["line_contents"].split()
                if words[:1] == ["from"] and len(words) > 1 and words[1] == package:
                    targets.add(package)
        imports[module] = targets
    return imports


def import_cycles(imports: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    ordered = {module: sorted(targets) for module, targets in imports.items()}
    for start in sorted(ordered):
        if start in index:
            continue
        work = [(start, 0)]
        while work:
            module, position = work.pop()
            if position == 0:
                index[module] = low[module] = len(index)
                stack.append(module)
                on_stack.add(module)
            targets = ordered[module]
            if position < len(targets):
                work.append((module, position + 1))
                target = targets[position]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[module] = min(low[module], index[target])
                continue
            if low[module] == index[module]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == module:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[module])
    return cycles


def test_no_import_cycles_among_owl_modules() -> None:
    # Imports under `if TYPE_CHECKING:` never run, so they make no cycle.
    graph = grimp.build_graph("owl", cache_dir=None, exclude_type_checking_imports=True)
    cycles = import_cycles(direct_imports(graph))
    shown = "\n".join(" <-> ".join(cycle) for cycle in cycles)
    assert not cycles, f"{len(cycles)} import cycles among owl's modules:\n{shown}"
