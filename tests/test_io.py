import json

import pandas as pd
import pytest

from dydca_lib.io import ResultDir, atomic_write_text, markdown_table, to_json
from tests.conftest import listing


def test_atomic_write_leaves_no_temp_files(tmp_path):
    atomic_write_text(tmp_path / "a" / "x.txt", "hello")
    assert listing(tmp_path) == ["a/x.txt"]
    assert (tmp_path / "a" / "x.txt").read_text() == "hello"


def test_result_dir_publishes_everything_at_once(tmp_path):
    target = tmp_path / "nb"
    out = ResultDir(target)
    out.table(pd.DataFrame({"a": [1, 2], "b": [0.5, float("inf")]}), "t")
    out.json({"x": float("nan"), "y": 1}, "metrics")
    assert not target.exists()  # nothing visible before commit
    out.commit()
    assert listing(target) == ["metrics.json", "t.csv", "t.md"]
    assert json.loads((target / "metrics.json").read_text())["x"] == "nan"
    with pytest.raises(RuntimeError):
        out.table(pd.DataFrame({"a": [1]}), "late")


def test_result_dir_replaces_old_results_and_discard_keeps_them(tmp_path):
    target = tmp_path / "nb"
    first = ResultDir(target)
    first.json({"run": 1}, "metrics")
    first.commit()
    killed = ResultDir(target)
    killed.json({"run": 2}, "partial")
    killed.discard()  # as if the run had died: the old results stay, whole
    assert listing(tmp_path) == ["nb/metrics.json"]
    second = ResultDir(target)
    second.json({"run": 3}, "metrics")
    second.commit()
    assert json.loads((target / "metrics.json").read_text()) == {"run": 3}
    assert listing(tmp_path) == ["nb/metrics.json"]


def test_markdown_table_and_json():
    md = markdown_table(pd.DataFrame({"m": ["x"], "v": [1.234]}))
    assert md.splitlines() == ["| m | v |", "|---|---|", "| x | 1.23 |"]
    assert json.loads(to_json({"p": (1, 2)})) == {"p": [1, 2]}
