"""The architecture holds: the import contract of pyproject.toml (infrastructure <- core <- captioning),
no import cycles between modules (function-level imports included), no `_private` name imported across
modules, and a model registry that finds every shipped model."""

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from captioning import CONFIG_DIR
PACKAGE = Path(__file__).resolve().parents[1] / "captioning"
ROOT = PACKAGE.parent


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every `import` / `from ... import` in a file, at any depth."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
    return out


def graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (``from pkg import module`` counts as the module)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        targets = set()
        for module, names in imports(path):
            if not module.startswith("captioning"):
                continue
            subs = {f"{module}.{n}" for n in names} & modules.keys()
            targets |= subs or {module}
        edges[name] = targets - {name}
    return edges


def test_the_import_contract_is_kept():
    if importlib.util.find_spec("importlinter") is None:
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    # in a subprocess: import-linter reconfigures logging, which other tests' log captures rely on
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(config_filename=sys.argv[1]))"
    done = subprocess.run([sys.executable, "-c", code, str(ROOT / "pyproject.toml")], capture_output=True, text=True,
                          cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr  # 0: every contract kept


def test_no_import_cycles():
    edges, cycles = graph(), []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in edges.get(node, ()):
            if nxt.startswith("captioning") and nxt not in state:
                visit(nxt, path + [nxt])
            elif state.get(nxt) == 1 and nxt != "captioning":  # back to a module on the current path
                cycles.append(path[path.index(nxt):] + [nxt] if nxt in path else path + [nxt])
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles


def test_no_private_name_is_imported_across_modules():
    offenders = [f"{module_name(p)}: from {module} import {n}" for p in [*PACKAGE.rglob("*.py")]
                 for module, names in imports(p) if module.startswith("captioning")
                 for n in names if n.startswith("_")]
    assert not offenders, offenders


def test_every_shipped_model_is_registered_and_has_a_yaml():
    import captioning.config  # noqa: F401 (imports the package's models)
    from captioning.models.base import MODELS

    yamls = {p.stem for p in (CONFIG_DIR / "model").glob("*.yaml")}
    assert "show_tell" in MODELS and set(MODELS) == yamls
