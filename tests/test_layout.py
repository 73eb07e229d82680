"""The layout SPEC.md fixes, and imports that point one way.

omni_core (shared) at the bottom; pipelines, evaluation, omni_model above it and independent of
each other; benchmark on top of those; omni_cli (the `omni` command) above everything.
"""

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["omni_core", "pipelines", "evaluation", "omni_model", "benchmark", "omni_cli",
            "bench"]
ALLOWED = {
    "omni_core": set(),
    "pipelines": {"omni_core"},
    "evaluation": {"omni_core"},
    "omni_model": {"omni_core"},
    "benchmark": {"omni_core", "pipelines", "evaluation", "omni_model"},
    "omni_cli": {"omni_core", "pipelines", "evaluation", "omni_model", "benchmark"},
    "bench": {"omni_core", "pipelines", "evaluation", "omni_model", "benchmark"},  # speed only
}


def suite_imports(path: Path) -> set[str]:
    """Top-level suite packages imported anywhere in a file (also inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {n.split(".")[0] for n in names} & set(PACKAGES)
    return found


def test_layout_exists():
    for d in ["pipelines", "omni_model", "benchmark", "evaluation", "tests", "configs",
              "omni_core", "omni_cli"]:
        assert (ROOT / d).is_dir(), d
    assert (ROOT / "ray_cluster.yaml").is_file()
    for pkg in PACKAGES:
        assert (ROOT / pkg / "__init__.py").is_file(), pkg


@pytest.mark.parametrize("pkg", PACKAGES)
def test_imports_point_one_way(pkg):
    bad = []
    for f in sorted((ROOT / pkg).rglob("*.py")):
        for imported in suite_imports(f) - ALLOWED[pkg] - {pkg}:
            bad.append(f"{f.relative_to(ROOT)} imports {imported}")
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_import_checker_catches_a_violation(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import os\ndef g():\n    from evaluation.metrics import x\n")
    assert suite_imports(f) == {"evaluation"}


def test_tests_mirror_the_source_tree():
    """Every test module sits under the folder named after the package it tests."""
    for f in (ROOT / "tests").rglob("test_*.py"):
        rel = f.relative_to(ROOT / "tests")
        if len(rel.parts) > 1:
            assert rel.parts[0] in PACKAGES, f"{rel}: tests/<package>/... expected"
            src = ROOT.joinpath(*rel.parts[:-1])
            assert src.is_dir(), f"{rel}: no source folder {src.relative_to(ROOT)}"


def test_test_file_names_are_unique():
    """The test tree has no packages (pytest's default import mode), so two test files with
    one basename cannot both be collected: give the newer one a more specific name."""
    names = [p.name for p in (ROOT / "tests").rglob("test_*.py")]
    assert sorted(n for n in set(names) if names.count(n) > 1) == []


# --------------------------------------------------------------------------------------------
# the module graph: private names stay home, no cycles


def _module_of(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _suite_files() -> dict[str, Path]:
    return {_module_of(f): f for pkg in PACKAGES for f in sorted((ROOT / pkg).rglob("*.py"))}


def _package_of(module: str, files: dict[str, Path]) -> str:
    """The package (folder) a module lives in: itself for an ``__init__``."""
    return module if files[module].name == "__init__.py" else module.rpartition(".")[0]


def module_imports(module: str, files: dict[str, Path]) -> list[tuple[str, str | None]]:
    """``(imported module, name or None)`` for every suite import of ``module`` (also inside
    functions), relative imports resolved; ``from pkg import mod`` names the module."""
    path = files[module]
    here = _package_of(module, files)
    found = []
    tree = ast.parse(path.read_text(), filename=str(path))
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and ast.unparse(block.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
                   for stmt in block.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in typing_only:  # annotations only: no import when the code runs
            continue
        if isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names if a.name.split(".")[0] in PACKAGES]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[: len(here.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] not in PACKAGES:
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                found.append((sub, None) if sub in files else (target, a.name))
    return [(m, n) for m, n in found if m in files]


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_imports(files: dict[str, Path]) -> list[str]:
    """Imports of a leading-underscore name (or module) from another package."""
    bad = []
    for module in files:
        home = _package_of(module, files)
        for target, name in module_imports(module, files):
            there = _package_of(target, files)
            private = _private(name or "") or any(_private(p) for p in target.split("."))
            if private and there != home:
                bad.append(f"{module} imports {target}{'.' + name if name else ''}")
    return bad


def test_no_private_name_is_imported_across_packages():
    bad = private_imports(_suite_files())
    assert not bad, "private names used across packages:\n" + "\n".join(bad)


def test_the_private_import_check_catches_one(tmp_path, monkeypatch):
    pkg = tmp_path / "pipelines"
    (pkg / "a").mkdir(parents=True)
    (pkg / "b").mkdir()
    for f in ("__init__.py", "a/__init__.py", "b/__init__.py"):
        (pkg / f).write_text("")
    (pkg / "a" / "dag.py").write_text("def _helper():\n    pass\n")
    (pkg / "b" / "dag.py").write_text("def f():\n    from ..a.dag import _helper\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    files = {_module_of(f): f for f in sorted(pkg.rglob("*.py"))}
    assert private_imports(files) == ["pipelines.b.dag imports pipelines.a.dag._helper"]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def import_graphs(files: dict[str, Path]) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """The package graph (folder -> folders it imports) and the file graph inside each
    package (module -> modules of the same folder it imports; ``__init__`` re-exports
    left out, they only gather)."""
    packages: dict[str, set[str]] = {}
    modules: dict[str, set[str]] = {}
    for module in files:
        home = _package_of(module, files)
        for target, _ in module_imports(module, files):
            there = _package_of(target, files)
            if there != home and not home.startswith(there + ".") \
                    and not there.startswith(home + "."):
                packages.setdefault(home, set()).add(there)
            elif there == home and target != module and files[module].name != "__init__.py" \
                    and files[target].name != "__init__.py":
                modules.setdefault(module, set()).add(target)
    return packages, modules


def test_no_import_cycle_between_packages_or_files():
    packages, modules = import_graphs(_suite_files())
    assert _cycles(packages) == [], "packages importing each other"
    assert _cycles(modules) == [], "files of one package importing each other"


def test_the_cycle_check_finds_one():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
