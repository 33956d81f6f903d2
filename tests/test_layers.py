"""The layering contract of docs/contracts.md: imports point down only.

Every import in the package's source, function-level ones included, is read with `ast` (nothing
is imported to find them), resolved to a module, and placed in its layer:

    0 graphpath_common < 1 data_gen < 2 graphpath.core.model < 3 handcrafted < 4 graphpath.* < 5 experiments
    blog: graphpath_common only

`graphpath/__init__` (the front door) imports only the standard library; its lazy `_EXPORTS` table
may name modules of layers 0-4. `import blog` and `import graphpath` are checked in a fresh
interpreter to load no torch.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("graphpath_common", "data_gen", "graphpath", "handcrafted", "experiments", "blog")
BLOG_LAYER = "blog"


def layer(module: str):
    """The layer of one of our modules (a dotted name), or None for anything outside the package."""
    top = module.split(".")[0]
    if top not in PACKAGES:
        return None
    if top == "graphpath":
        return 2 if module in ("graphpath", "graphpath.core", "graphpath.core.model") else 4
    if top == "blog":
        return BLOG_LAYER
    return {"graphpath_common": 0, "data_gen": 1, "handcrafted": 3, "experiments": 5}[top]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[str, int]]:
    """(imported module, line) for every import statement in the file, at any depth."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.append((target, node.lineno))
            # `from graphpath import model` imports the submodule graphpath.core.model
            found += [(f"{target}.{alias.name}", node.lineno) for alias in node.names
                      if (ROOT / Path(*target.split("."), alias.name + ".py")).is_file()]
    return found


def source_files():
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def allowed(source: str, target: str) -> bool:
    low, high = layer(target), layer(source)
    if low is None or target == source:
        return True
    if high == BLOG_LAYER:
        return low == 0 or low == BLOG_LAYER
    if low == BLOG_LAYER:
        return False  # nothing builds on the page renderer
    if target in ("graphpath", "graphpath.core") and high >= 2:
        return True  # the packages themselves (their __init__s import nothing)
    return low <= high


def test_every_import_points_down():
    violations = []
    for path in source_files():
        source = module_name(path)
        for target, line in imports_of(path):
            if not allowed(source, target):
                violations.append(f"{path.relative_to(ROOT)}:{line} {source} (layer {layer(source)}) "
                                  f"imports {target} (layer {layer(target)})")
    assert not violations, "imports against the layering of docs/contracts.md:\n" + "\n".join(violations)


def test_the_checker_sees_a_violation(tmp_path):
    """The rule above can fail: an upward import, hidden inside a function, is caught."""
    assert not allowed("handcrafted.bfs_transformer", "graphpath.evaluation.suite")
    assert not allowed("data_gen.sampler", "graphpath.core.model")
    assert not allowed("blog.render", "data_gen.files")
    assert not allowed("graphpath.core.model", "handcrafted")
    assert allowed("graphpath.evaluation.suite", "handcrafted")
    assert allowed("handcrafted.bfs_transformer", "graphpath.core.model")
    hidden = ROOT / "handcrafted" / "_probe_for_layer_test.py"
    hidden.write_text("def f():\n    from graphpath.evaluation.suite import evaluate_run\n")
    try:
        assert ("graphpath.evaluation.suite", 2) in imports_of(hidden)
    finally:
        hidden.unlink()


def test_package_inits_of_graphpath_import_only_the_standard_library():
    """handcrafted imports graphpath.core.model, which runs graphpath/__init__: that must not drag in
    training or evaluation (the front door imports its names lazily, PEP 562)."""
    for init in (ROOT / "graphpath" / "__init__.py", ROOT / "graphpath" / "core" / "__init__.py"):
        found = [target for target, _ in imports_of(init)]
        assert all(target.split(".")[0] in sys.stdlib_module_names for target in found), (init, found)


def front_door() -> dict:
    """graphpath/__init__.py's `_EXPORTS` table, read with `ast` (nothing is imported)."""
    tree = ast.parse((ROOT / "graphpath" / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "_EXPORTS":
            return ast.literal_eval(node.value)
    raise AssertionError("graphpath/__init__.py has no _EXPORTS table")


def test_the_front_door_names_existing_modules_below_the_studies():
    for name, (module, attribute) in front_door().items():
        path = ROOT / Path(*module.split("."))
        assert path.with_suffix(".py").is_file() or (path / "__init__.py").is_file(), (name, module)
        assert layer(module) in (0, 1, 2, 3, 4), f"graphpath.{name} reaches {module} (layer {layer(module)})"


@pytest.mark.parametrize("module, banned", [("blog", ("torch", "numba", "data_gen", "graphpath")),
                                            ("graphpath", ("torch", "numpy", "data_gen", "graphpath.core")),
                                            ("graphpath_common.files", ("torch", "numba")),
                                            ("graphpath_common.cli", ("torch", "numba")),
                                            ("graphpath_common.rundir", ("torch", "numpy")),
                                            ("graphpath_common.provenance", ("torch", "numpy"))])
def test_light_imports_stay_light(module, banned):
    code = (f"import sys, {module}; "
            f"print(','.join(m for m in {banned!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"import {module} loaded {result.stdout.strip()}"
