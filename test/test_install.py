"""Installs: setup.py gives torch a lower bound (a ROS user's CUDA/Jetson torch is kept), CI pins it.

The exact version CI tests lives in the constraints file that the README's install command (and
therefore .ci/run) passes with ``-c``.
"""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$")


def _setup_kwargs() -> dict[str, ast.expr]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "setup"]
    assert len(calls) == 1, "setup.py must call setup() once"
    return {k.arg: k.value for k in calls[0].keywords if k.arg}


def _requirement(lines: list[str], name: str) -> str:
    """The specifier part of the requirement ``name`` in ``lines`` ('' if unconstrained)."""
    found = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        m = _NAME.match(line)
        if m and m.group(1).lower().replace("_", "-") == name:
            found.append(m.group(3).split(";", 1)[0].replace(" ", ""))
    assert len(found) == 1, f"expected one {name} requirement, found {found}"
    return found[0]


def _readme_install_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "README Set-up has no bash block"
    return [ln.strip() for ln in block.group(1).splitlines() if ln.strip() and not ln.startswith("#")]


def _pip_install(cmd: str) -> list[str] | None:
    argv = shlex.split(cmd)
    return argv if argv[:4] == ["python3", "-m", "pip", "install"] else None


def test_setup_py_torch_is_a_lower_bound_not_a_pin():
    install_requires = ast.literal_eval(_setup_kwargs()["install_requires"])
    spec = _requirement(install_requires, "torch")
    assert "==" not in spec and "~=" not in spec and "<" not in spec.replace("<=", ""), spec
    m = re.fullmatch(r">=(\d+)\.(\d+)", spec)
    assert m, f"torch needs a plain lower bound (>=X.Y), got {spec!r}"
    assert (int(m.group(1)), int(m.group(2))) >= (2, 7), "the code needs torch >= 2.7 (see setup.py)"


def test_constraints_file_pins_torch_exactly():
    lines = (ROOT / "constraints" / "ci.txt").read_text().splitlines()
    spec = _requirement(lines, "torch")
    assert re.fullmatch(r"==\d+\.\d+\.\d+", spec), f"constraints must pin torch exactly, got {spec!r}"
    # The pin satisfies the lower bound of setup.py.
    install_requires = ast.literal_eval(_setup_kwargs()["install_requires"])
    lo = tuple(int(x) for x in _requirement(install_requires, "torch")[2:].split("."))
    assert tuple(int(x) for x in spec[2:].split("."))[: len(lo)] >= lo


def test_readme_install_uses_the_constraints_file_and_ci_runs_it():
    commands = _readme_install_commands()
    installs = [c for c in commands if _pip_install(c)]
    assert len(installs) == 1, installs
    argv = _pip_install(installs[0])
    assert "-e" in argv and "-c" in argv, argv
    constraints = argv[argv.index("-c") + 1]
    assert constraints == "constraints/ci.txt" and (ROOT / constraints).is_file()
    # .ci/run runs exactly the README's Set-up commands (install and colcon build), in that order.
    ci = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    positions = [ci.index(c) for c in commands if c in ci]
    assert len(positions) == len(commands), f".ci/run lacks README commands: {commands}"
    assert positions == sorted(positions)
