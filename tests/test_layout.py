"""The package's layers (see README "Layout"): read every module's imports with ast and check that
no two modules import each other (directly or round a longer loop), that models/ imports nothing
above it, and that serving a model (inference, app, evaluation) never imports training code or the
albumentations pipelines, and that no module imports another module's underscore names; then
import the public inference API in a fresh interpreter."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "cyclegan"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _target(name: str) -> str | None:
    """The module file behind an imported name (a module, or a name defined in a package)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imported_module(node: ast.ImportFrom, package: str) -> str:
    """The absolute name of the module ``from ... import`` reads, relative imports resolved."""
    base = node.module or ""
    if node.level:
        parts = package.split(".")
        base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
    return base


def imports_of(module: str) -> set[str]:
    """The cyclegan modules ``module`` imports anywhere in its file (lazy imports included)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _imported_module(node, package)
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for name in names:
            target = _target(name) if name.split(".")[0] == "cyclegan" else None
            if target and target != module and target != "cyclegan":
                found.add(target)
            elif name.split(".")[0] == "albumentations":
                found.add("albumentations")
    return found


GRAPH = {m: imports_of(m) for m in MODULES}


def _layer(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def test_no_import_cycles():
    cycles, state = [], {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = "open"
        for n in sorted(GRAPH.get(m, ())):
            if n not in GRAPH:
                continue
            if state.get(n) == "open":
                cycles.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n, stack + [n])
        state[m] = "done"

    for m in GRAPH:
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_models_import_nothing_above_them():
    allowed = {"core", "models"}
    bad = {m: sorted(n for n in deps if n == "albumentations" or _layer(n) not in allowed)
           for m, deps in GRAPH.items() if _layer(m) in ("core", "models")}
    assert not {m: v for m, v in bad.items() if v}


def test_serving_never_imports_training_or_augmentation():
    forbidden = lambda n: _layer(n) == "training" or n in ("cyclegan.data.transforms", "albumentations")  # noqa: E731
    bad = {m: sorted(filter(forbidden, deps)) for m, deps in GRAPH.items()
           if _layer(m) in ("core", "models", "inference", "app", "evaluation")}
    assert not {m: v for m, v in bad.items() if v}


def test_the_checker_sees_a_cycle_and_an_upward_import(tmp_path):
    """Guard against a checker that passes because it reads nothing."""
    assert "cyclegan.inference.loading" in GRAPH["cyclegan.inference.translator"]
    assert "albumentations" in GRAPH["cyclegan.data.transforms"]
    assert "cyclegan.training.loop" in GRAPH["cyclegan.training.cyclegan"]


def test_public_inference_api_loads_no_training_code():
    code = ("import sys\n"
            "from cyclegan import Translator, translate_folder, LatentSampler\n"
            "import cyclegan.app\n"
            "bad = sorted(m for m in sys.modules if m.startswith(('cyclegan.training', 'cyclegan.cli', 'albumentations'))"
            " or m == 'cyclegan.data.transforms')\n"
            "print(bad)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "[]", r.stdout


def test_import_cyclegan_is_light():
    code = "import sys, cyclegan; print(sorted(m for m in sys.modules if m.startswith(('cyclegan', 'torch'))))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "['cyclegan']"


#: (importing module, imported module, name) pairs the check lets through, each with its reason.
PRIVATE_IMPORTS_ALLOWED: set[tuple[str, str, str]] = set()


def private_imports(module: str) -> set[tuple[str, str, str]]:
    """(module, imported module, name) for every underscore name ``module`` imports from another
    cyclegan module (``from cyclegan.x import _name``, lazy imports included; dunders are fine)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.ImportFrom):
            continue
        base = _imported_module(node, package)
        if base.split(".")[0] != "cyclegan" or base == module:
            continue
        for alias in node.names:
            if alias.name.startswith("_") and not alias.name.startswith("__"):
                found.add((module, base, alias.name))
    return found


def test_no_module_imports_another_modules_private_names():
    """A name another module needs is public (no underscore) or lives where it is used."""
    found = set().union(*(private_imports(m) for m in MODULES))
    assert found - PRIVATE_IMPORTS_ALLOWED == set(), sorted(found - PRIVATE_IMPORTS_ALLOWED)
    assert PRIVATE_IMPORTS_ALLOWED - found == set(), "stale allow-list entries: " + str(
        sorted(PRIVATE_IMPORTS_ALLOWED - found))
