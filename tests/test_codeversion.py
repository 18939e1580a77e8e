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


def test_a_cell_is_reused_after_an_unrelated_edit_and_recomputed_after_its_code_changes(counted, package_copy):
    computed, compute = counted
    spec = {"clip": "tiny", "seed": 0}

    assert cells.run_cell("comparison", spec, compute=compute)["rows"] == [1] and len(computed) == 1
    edit(package_copy / "compiler" / "amx.py", "def padded_layout(", "def _unused():\n    return 1\n\n\ndef padded_layout(")
    edit(package_copy / "report.py", '"""', '"""A reworded docstring. ', )
    edit(package_copy / "train.py", "def train_or_load(", "# a comment\ndef train_or_load(")
    cells.run_cell("comparison", spec, compute=compute)
    assert len(computed) == 1, "an edit outside the cell's code (or a comment in it) recomputed the cell"
    edit(package_copy / "train.py", "def train_or_load(", "TRAINER_CHANGED = True\n\n\ndef train_or_load(")
    cells.run_cell("comparison", spec, compute=compute)
    assert len(computed) == 2, "an edit to the trainer kept a stale cell"
    edit(package_copy / "delivery.py", "def point_specs(", "X = 1\n\n\ndef point_specs(")
    cells.run_cell("comparison", spec, compute=compute)
    assert len(computed) == 2  # notebook 08's code is not notebook 04's


def test_a_long_video_run_survives_edits_to_the_notebooks_analysis(counted, package_copy):
    """Notebook 07's runs (hours, committed) hold the code that trains and scores them, not the
    plateau loop, tables and verdict of :mod:`dydca_lib.longvideo`."""
    computed, compute = counted
    spec = {"method": "dydca", "epochs": 4.0}
    cells.run_cell("longvideo", spec, compute=compute)
    edit(package_copy / "longvideo.py", "def verdict(", "VERDICT_CHANGED = True\n\n\ndef verdict(")
    edit(package_copy / "comparison.py", "def over_seeds(", "X = 1\n\n\ndef over_seeds(")
    edit(package_copy / "cells.py", "def cell_path(", "Y = 1\n\n\ndef cell_path(")
    cells.run_cell("longvideo", spec, compute=compute)
    assert len(computed) == 1, "an edit to the analysis of the runs recomputed a run"
    edit(package_copy / "windows.py", "def prepare_window(", "WINDOWS_CHANGED = True\n\n\ndef prepare_window(")
    cells.run_cell("longvideo", spec, compute=compute)
    assert len(computed) == 2, "an edit to how windows are cut kept a stale run"


def test_a_compiled_library_key_covers_every_compiler_module(package_copy):
    before = cv.code_version("dydca_lib.compiler.library", package_dir=package_copy)
    edit(package_copy / "compiler" / "passes.py", "def fuse(", "Y = 2\n\n\ndef fuse(")
    assert cv.code_version("dydca_lib.compiler.library", package_dir=package_copy) != before
    assert cv.code_version("dydca_lib.train", package_dir=package_copy) == cv.code_version("dydca_lib.train")


def test_unknown_modules_are_an_error():
    with pytest.raises(ValueError, match="not a module"):
        cv.imports_of("dydca_lib.nope")
