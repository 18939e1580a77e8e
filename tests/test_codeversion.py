"""Cache keys follow the code that computes a result (dydca_lib.codeversion): a cell is reused after
an unrelated edit and recomputed after an edit to the code it depends on."""

import functools
import shutil

import pytest

from dydca_lib import cells, codeversion as cv


@pytest.fixture
def package_copy(tmp_path):
    """A copy of the library's sources to edit (the real package is never touched)."""
    dst = tmp_path / "src" / "dydca_lib"
    shutil.copytree(cv.PACKAGE_DIR, dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def edit(path, old, new):
    text = path.read_text()
    assert old in text, f"{path.name} no longer holds {old!r}"
    path.write_text(text.replace(old, new, 1))


def test_closures_hold_what_a_result_runs_and_nothing_else():
    comparison = cv.closure(["dydca_lib.comparison"])
    assert {"dydca_lib.train", "dydca_lib.methods", "dydca_lib.models", "dydca_lib.cells"} <= set(comparison)
    assert not [m for m in comparison if m.startswith(("dydca_lib.compiler", "dydca_lib.client", "dydca_lib.bench"))]
    assert "dydca_lib.delivery" not in comparison and "dydca_lib.codec" not in comparison
    assert "dydca_lib.delivery" in cv.closure(["dydca_lib.delivery"])
    library = cv.closure(["dydca_lib.compiler.library"])
    assert {"dydca_lib.compiler", "dydca_lib.compiler.amx", "dydca_lib.compiler.int8", "dydca_lib.compiler.winograd",
            "dydca_lib.compiler.passes"} <= set(library)  # every compiler module a build runs, lazy imports included
    assert set(cv.closure(["dydca_lib.cells"])) == {"dydca_lib", "dydca_lib.cells", "dydca_lib.codeversion",
                                                   "dydca_lib.io", "dydca_lib.paths"}  # a cache that knows no domain


def test_comments_and_docstrings_do_not_count_code_does(tmp_path):
    f = tmp_path / "m.py"
    f.write_text('"""Doc."""\n\ndef f(x):\n    """Say."""\n    return x + 1  # one\n')
    base = cv.source_digest(f)
    f.write_text('"""Another doc."""\n\n\ndef f(x):\n    """Say more."""\n\n    return x + 1  # two\n')
    assert cv.source_digest(f) == base
    f.write_text('"""Doc."""\n\ndef f(x):\n    """Say."""\n    return x + 2\n')
    assert cv.source_digest(f) != base
    f.write_text("if a:\n    b = 1\n    c = 2\n")
    nested = cv.source_digest(f)
    f.write_text("if a:\n    b = 1\nc = 2\n")  # the same tokens, another nesting
    assert cv.source_digest(f) != nested


@pytest.fixture
def counted(tmp_root, package_copy, monkeypatch):
    """Cells keyed by the code of ``package_copy`` and computed by a counter: ``(computed, compute)``."""
    monkeypatch.setattr(cells, "code_version", functools.partial(cv.code_version, package_dir=package_copy))
    computed = []
    return computed, lambda spec: computed.append(spec) or {"rows": [1], "row": {}}


def _code_before(name: str, line: str = "X = 1") -> tuple[str, str]:
    return f"def {name}(", f"{line}\n\n\ndef {name}("


# per cell kind: edits that must keep its cells (other modules; comments and docstrings in its own
# code), then one edit to the code that computes it, which must recompute them
CACHE_CASES = {
    "comparison": ([("compiler/amx.py", *_code_before("padded_layout", "def _unused():\n    return 1")),
                    ("report.py", '"""', '"""A reworded docstring. '),
                    ("train.py", "def train_or_load(", "# a comment\ndef train_or_load("),
                    ("delivery.py", *_code_before("point_specs"))],  # notebook 08's code is not notebook 04's
                   ("train.py", *_code_before("train_or_load", "TRAINER_CHANGED = True"))),
    "longvideo": ([("longvideo.py", *_code_before("verdict")),  # notebook 07's analysis, not its runs
                   ("comparison.py", *_code_before("over_seeds")), ("cells.py", *_code_before("cell_path"))],
                  ("windows.py", *_code_before("prepare_window", "WINDOWS_CHANGED = True"))),
}


@pytest.mark.parametrize("kind", CACHE_CASES)
def test_a_cell_is_reused_after_an_unrelated_edit_and_recomputed_after_its_code_changes(counted, package_copy, kind):
    computed, compute = counted
    spec = {"clip": "tiny", "seed": 0}
    kept, breaking = CACHE_CASES[kind]
    cells.run_cell(kind, spec, compute=compute)
    for path, old, new in kept:
        edit(package_copy / path, old, new)
    cells.run_cell(kind, spec, compute=compute)
    assert len(computed) == 1, "an edit outside the cell's code (or a comment in it) recomputed the cell"
    edit(package_copy / breaking[0], *breaking[1:])
    cells.run_cell(kind, spec, compute=compute)
    assert len(computed) == 2, f"an edit to {breaking[0]} kept a stale cell"


def test_a_compiled_library_key_covers_every_compiler_module(package_copy):
    before = cv.code_version("dydca_lib.compiler.library", package_dir=package_copy)
    edit(package_copy / "compiler" / "passes.py", "def fuse(", "Y = 2\n\n\ndef fuse(")
    assert cv.code_version("dydca_lib.compiler.library", package_dir=package_copy) != before
    assert cv.code_version("dydca_lib.train", package_dir=package_copy) == cv.code_version("dydca_lib.train")


def test_unknown_modules_are_an_error():
    with pytest.raises(ValueError, match="not a module"):
        cv.imports_of("dydca_lib.nope")


def test_stale_cells_are_those_the_current_code_no_longer_reads(counted, package_copy, tmp_path):
    computed, compute = counted
    store = tmp_path / "cells"
    cells.run_cell("budget", {"seed": 0}, store=store, compute=compute)
    cells.run_cell("longpoint", {"seed": 0}, store=store, compute=compute)
    assert cells.stale_cells(store) == []
    old_budget = cells.cell_path("budget", {"seed": 0}, store)
    old_budget.with_suffix(".npz").write_bytes(b"kept frames")
    edit(package_copy / "budget.py", *_code_before("compute_cell"))
    assert cells.stale_cells(store) == [old_budget], "only the cell whose code changed is stale"
    cells.run_cell("budget", {"seed": 0}, store=store, compute=compute)  # recomputed beside the stale one
    assert len(computed) == 3 and cells.stale_cells(store) == [old_budget]
    (store / "nokind-0.json").write_text('{"kind": "gone", "spec": {}}')
    assert cells.stale_cells(store) == [old_budget, store / "nokind-0.json"]
    cells.remove_cells(cells.stale_cells(store))
    assert sorted(p.name for p in store.iterdir()) == sorted(
        [cells.cell_path("budget", {"seed": 0}, store).name, cells.cell_path("longpoint", {"seed": 0}, store).name])


def test_the_stale_cells_command_lists_and_deletes(counted, package_copy, tmp_path, capsys):
    from dydca_lib import reproduce

    computed, compute = counted
    store = tmp_path / "cells"
    cells.run_cell("budget", {"seed": 0}, store=store, compute=compute)
    edit(package_copy / "budget.py", *_code_before("compute_cell"))
    assert reproduce.main(["--stale-cells", str(store)]) == 0
    assert "1 of 1 cells" in capsys.readouterr().out and len(list(store.glob("*.json"))) == 1
    assert reproduce.main(["--stale-cells", str(store), "--delete"]) == 0
    assert "deleted" in capsys.readouterr().out and not list(store.glob("*.json"))
    with pytest.raises(SystemExit, match="no cells folder"):
        reproduce.main(["--stale-cells", str(tmp_path / "nope")])
