"""The library's layout: imports run one way (data -> learning -> compiler -> client -> bench ->
report -> reproduce), no module imports from its right, and no module outgrows one idea."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dydca_lib"

LAYERS = [  # a module may import from its own layer or any layer above it
    {"paths", "io", "runinfo", "published", "profiles", "codeversion"},  # shared helpers
    {"sources", "video", "windows", "codec", "metrics", "tensors", "patches"},  # data
    {"models", "train", "general", "params", "pipeline", "evaluate", "methods", "registry", "comparison", "budget",
     "longvideo", "window_runs", "scores", "cells"},  # learning
    {"compiler"},
    {"client"},
    {"bench", "delivery", "longdelivery", "longcurves"},  # the experiments: notebooks 05/06 (bench), 08 (delivery: ships what the clients run)
    {"figures", "report"},
    {"overrides", "reproduce", "sweep"},
]
LAYER_OF = {name: i for i, names in enumerate(LAYERS) for name in names}
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def unit(path: Path) -> str:
    """The layered unit of a module: its top-level module or package under dydca_lib."""
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def imported_units(source: str, package: list[str]) -> set[str]:
    """dydca_lib units a module imports (anywhere in the file, lazy imports included); ``package``:
    the module's package path under dydca_lib (``["client"]`` for client/engines.py, ``[]`` at the top)."""
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level:
            anchor = package[:len(package) - (node.level - 1)]
            targets = [anchor + node.module.split(".")] if node.module else [anchor + [a.name] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "dydca_lib":
            rest = node.module.split(".")[1:]
            targets = [rest] if rest else [[a.name] for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name.split(".")[1:] for a in node.names if a.name.startswith("dydca_lib.")]
        else:
            continue
        out.update(t[0] for t in targets if t)
    return out


def units_of(path: Path) -> set[str]:
    return imported_units(path.read_text(), list(path.relative_to(PACKAGE).parts[:-1]))


def test_every_module_has_a_layer():
    assert {unit(p) for p in MODULES} <= set(LAYER_OF), {unit(p) for p in MODULES} - set(LAYER_OF)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_one_way(path):
    me = unit(path)
    upward = {u for u in units_of(path) - {me} if LAYER_OF.get(u, -1) > LAYER_OF[me]}
    assert not upward, f"{path.relative_to(PACKAGE)} ({me}, layer {LAYER_OF[me]}) imports from its right: {upward}"


def test_the_checker_reads_every_import_form():
    src = ("from . import compiler\nfrom .shapes import x\nfrom ..client.plan import y\nfrom .. import bench\n"
           "import dydca_lib.report\nfrom dydca_lib import reproduce\nimport numpy\n"
           "def f():\n    from ..tensors import z\n")
    assert imported_units(src, ["compiler"]) == {"compiler", "client", "bench", "report", "reproduce", "tensors"}
    assert imported_units("from .models import m\nfrom . import io\n", []) == {"models", "io"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_relative_imports_name_real_modules(path):
    """``from .x import y`` inside a subpackage must mean its sibling x (lazy imports included)."""
    package = list(path.relative_to(PACKAGE).parts[:-1])
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level and node.module:
            target = PACKAGE.joinpath(*package[:len(package) - (node.level - 1)], *node.module.split("."))
            assert target.with_suffix(".py").exists() or (target / "__init__.py").exists(), \
                f"{path.relative_to(PACKAGE)}:{node.lineno} imports {'.' * node.level}{node.module}, which does not exist"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_outgrows_one_idea(path):
    assert len(path.read_text().splitlines()) <= 500


@pytest.mark.parametrize("package", ["compiler", "client", "bench"])
def test_each_package_says_what_it_is_for_and_may_import(package):
    doc = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text()))
    assert doc and "import" in doc


def import_cycles(modules, package_dir=PACKAGE) -> list[list[str]]:
    """The strongly connected groups (more than one module) of the file-level import graph."""
    from dydca_lib.codeversion import imports_of

    graph = {m: sorted(imports_of(m, package_dir) - {m}) for m in modules}
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while not group or group[-1] != v:
                group.append(stack.pop())
                on.discard(group[-1])
            if len(group) > 1:
                out.append(sorted(group))

    for m in graph:
        if m not in index:
            visit(m)
    return out


def module_name(path: Path, package_dir=PACKAGE) -> str:
    return ".".join(["dydca_lib", *(p for p in path.relative_to(package_dir).with_suffix("").parts if p != "__init__")])


def test_no_import_cycles():
    """Not even inside a layer, lazy imports included: a cycle means two modules are one idea."""
    assert import_cycles([module_name(p) for p in PACKAGE.rglob("*.py")]) == []


def test_the_cycle_check_finds_a_cycle(tmp_path):
    pkg = tmp_path / "dydca_lib"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..a import x\n")
    (pkg / "c.py").write_text("import dydca_lib.a\n")
    mods = [module_name(p, pkg) for p in pkg.rglob("*.py")]
    assert import_cycles(mods, pkg) == [["dydca_lib.a", "dydca_lib.sub.b"]]
