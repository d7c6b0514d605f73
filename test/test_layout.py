"""Package layout rules, checked on the source with ``ast`` (nothing is imported).

* The ROS-free layers stay ROS-free: every package but ``ros`` (the rclpy node) never imports
  ``vggt_ros.ros``; ``core``, ``messages``, ``model``, ``params``, ``runner`` and ``outputs`` never
  import the tools built on them (``bag``, ``sim``).
* No module grows past :data:`MAX_LINES` lines unless it is listed, with a reason, in
  :data:`LONG_MODULES` (empty now: every module is short).
* No import cycles between modules at import time (imports inside functions are deferred and do not
  count).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vggt_ros"

ROS_FREE = ("core", "messages", "model", "eval", "params", "runner", "outputs", "bag", "sim", "graph")
NO_TOOLS = ("core", "messages", "model", "params", "runner", "outputs")  # may not import bag / sim
ALLOWED_ROS_IMPORTS: dict[str, set[str]] = {}

MAX_LINES = 550
LONG_MODULES: dict[str, str] = {}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported_names(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """Absolute dotted names an ``import`` / ``from ... import`` statement refers to (for ``from X
    import Y``: both ``X`` and ``X.Y``; the caller keeps those that are modules)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    assert isinstance(node, ast.ImportFrom)
    base = node.module or ""
    if node.level:
        pkg = module.split(".") if is_package else module.split(".")[:-1]
        pkg = pkg[: len(pkg) - (node.level - 1)]
        base = ".".join([*pkg, base] if base else pkg)
    return [base, *(f"{base}.{a.name}" for a in node.names)]


def all_imports(path: Path, root: Path = ROOT) -> list[str]:
    """Every vggt_ros name a module imports, also inside functions."""
    mod = module_name(path, root)
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out += [n for n in imported_names(node, mod, path.name == "__init__.py")
                    if n == "vggt_ros" or n.startswith("vggt_ros.")]
    return out


def import_time_statements(body: list[ast.stmt]) -> list[ast.stmt]:
    """Import statements that run when the module is imported: the top level, including inside
    ``if`` / ``try`` / ``with`` / class bodies, but not inside functions."""
    out: list[ast.stmt] = []
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        else:
            for field in ("body", "orelse", "finalbody"):
                out += import_time_statements(getattr(node, field, []) or [])
            for handler in getattr(node, "handlers", []) or []:
                out += import_time_statements(handler.body)
    return out


def test_ros_free_layers_do_not_import_the_node_or_the_tools():
    problems = []
    for sub in ROS_FREE:
        for path in sorted((PACKAGE / sub).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for name in all_imports(path):
                if name == "vggt_ros.ros" or name.startswith("vggt_ros.ros."):
                    allowed = ALLOWED_ROS_IMPORTS.get(sub, set())
                    if not any(name == a or name.startswith(a + ".") for a in allowed):
                        problems.append(f"{rel} imports {name}")
                if sub in NO_TOOLS and name.split(".")[:2] in (["vggt_ros", "bag"], ["vggt_ros", "sim"]):
                    problems.append(f"{rel} imports {name}")
    assert not problems, "\n".join(problems)


def test_layout_rules_see_imports(tmp_path):
    """The walkers above find absolute, relative and function-level imports."""
    tree = ast.parse("from . import x\nfrom ..ros import node\nimport vggt_ros.bag\n")
    names = [n for s in tree.body for n in imported_names(s, "vggt_ros.core.pipeline", False)]
    assert names == ["vggt_ros.core", "vggt_ros.core.x", "vggt_ros.ros", "vggt_ros.ros.node", "vggt_ros.bag"]
    source = ("import a\ndef f():\n    import vggt_ros.b\n"
              "try:\n    import c\nexcept ImportError:\n    import d\n")
    assert [s.names[0].name for s in import_time_statements(ast.parse(source).body)] == ["a", "c", "d"]
    path = tmp_path / "vggt_ros" / "m.py"
    path.parent.mkdir()
    path.write_text(source)
    assert all_imports(path, tmp_path) == ["vggt_ros.b"]  # function-level imports count here


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_module_size(path):
    rel = path.relative_to(ROOT).as_posix()
    n = len(path.read_text().splitlines())
    if rel in LONG_MODULES:
        return
    assert n <= MAX_LINES, f"{rel} has {n} lines (> {MAX_LINES}): split it, or list it in LONG_MODULES"


def test_long_module_allow_list_is_current():
    """Every listed module exists and is still long (drop it from the list once it is split)."""
    for rel in LONG_MODULES:
        path = ROOT / rel
        assert path.exists(), rel
        assert len(path.read_text().splitlines()) > MAX_LINES, f"{rel} is short now: remove it from the list"


def test_no_import_cycles_at_import_time():
    modules = all_modules()
    graph: dict[str, set[str]] = {}
    for mod, path in modules.items():
        edges = set()
        for node in import_time_statements(ast.parse(path.read_text()).body):
            for name in imported_names(node, mod, path.name == "__init__.py"):
                if name in modules and name != mod:
                    edges.add(name)
        graph[mod] = edges
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []
    cycles = []

    def visit(mod: str) -> None:
        state[mod] = 1
        stack.append(mod)
        for dep in sorted(graph[mod]):
            if state.get(dep) == 1:
                cycles.append(" -> ".join([*stack[stack.index(dep):], dep]))
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[mod] = 2

    for mod in sorted(graph):
        if mod not in state:
            visit(mod)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
