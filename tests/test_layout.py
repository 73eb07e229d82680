"""The layout SPEC.md fixes, and imports that point one way.

omni_core (shared) at the bottom; pipelines, evaluation, omni_model above it and independent of
each other; benchmark on top of those; omni_cli (the `omni` command) above everything.
"""

import ast
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
