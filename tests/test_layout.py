"""The shape of the code: runtime (models/, explain/) never imports research/, the import
graph has no cycles, importing the app loads no research code (nor torch), no sys.path edits, and
every import inside a function says why it is lazy."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "explain", "research")
RUNTIME = ("models", "explain")
SOURCES = sorted(p for package in (*PACKAGES, "benchmarks") for p in (ROOT / package).rglob("*.py")) + [
    ROOT / "app.py", ROOT / "cli.py"]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The project modules `path` imports, anywhere in the file (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in known}
    return found


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}
    return {name: imported_modules(path, set(files)) - {name} for name, path in files.items()}


def test_runtime_never_imports_research():
    offenders = {module: sorted(m for m in imports if m.startswith("research"))
                 for module, imports in import_graph().items() if module.split(".")[0] in RUNTIME}
    assert {m: i for m, i in offenders.items() if i} == {}


def test_import_graph_has_no_cycles():
    graph = import_graph()
    state: dict[str, str] = {}
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_graph_sees_what_a_cycle_would_be():
    """The checker is not vacuous: the encoder registry and its base are linked, and a
    planted back edge would close a cycle."""
    graph = import_graph()
    assert "models.encoders.base" in graph["models.encoders"]
    assert "models.encoders" in graph["models.analysis"]
    assert "research.training" in graph["research.workflows"]


def test_importing_the_app_loads_no_research_code_and_neither_torch_nor_matplotlib():
    """The page is served before torch (about 2 s to import) and the figures load: the app's
    callbacks and its warm-up thread import them."""
    code = ("import app, sys; print(sorted({m.split('.')[0] for m in sys.modules} & {'research', 'torch', "
            "'matplotlib', 'transformers', 'mediapipe'}))")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == "[]"


def test_no_sys_path_edits():
    edits = [f"{p.relative_to(ROOT)}:{n}" for p in SOURCES + sorted((ROOT / "tests").glob("*.py"))
             for n, line in enumerate(p.read_text().splitlines(), 1)
             if "sys.path" in line and p.name != "test_layout.py"]
    assert edits == []


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_inside_functions_say_why_they_are_lazy(path):
    """Imports sit at the module top unless a `# lazy:` comment on the import, or on the
    line above its block, gives the reason (start-up time, an optional dependency)."""
    lines = path.read_text().splitlines()
    unexplained = []
    for function in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(function):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                first = node.lineno - 1
                while first > 0 and lines[first - 1].lstrip().startswith(("import ", "from ")):
                    first -= 1
                said = "lazy:" in " ".join(lines[node.lineno - 1:node.end_lineno]) or \
                    (first > 0 and "lazy:" in lines[first - 1])
                if not said:
                    unexplained.append(f"{path.name}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert unexplained == []
