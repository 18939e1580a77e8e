"""`make reproduce` machinery on a one-notebook project: parameters, resume, report."""

import json

import nbformat
import pytest

from dydca_lib import reproduce


def tiny_project(root):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell('profile: str = "t"  # profile\nvalue: int = 1  # a number')
    params.metadata["tags"] = ["parameters"]
    body = nbformat.v4.new_code_cell(
        "from dydca_lib.io import ResultDir\nfrom dydca_lib.paths import results_dir\n"
        "out = ResultDir(results_dir(profile, '01_tiny'))\nout.json({'value': value}, 'metrics')\nout.commit()")
    nb.cells = [params, body]
    (root / "notebooks").mkdir()
    nbformat.write(nb, root / "notebooks" / "01_tiny.ipynb")
    (root / "params").mkdir()
    (root / "params" / "t.yaml").write_text("common: {profile: t}\nnotebooks:\n  01_tiny: {value: 7}\n")


def test_reproduce_runs_then_skips_then_reruns_on_change(tmp_root, capsys):
    tiny_project(tmp_root)
    reproduce.run("t")
    metrics = tmp_root / "results" / "t" / "01_tiny" / "metrics.json"
    assert json.loads(metrics.read_text()) == {"value": 7}
    assert (tmp_root / "results" / "t" / "runs" / "01_tiny.ipynb").exists()
    capsys.readouterr()
    reproduce.run("t")
    assert "up to date" in capsys.readouterr().out
    (tmp_root / "params" / "t.yaml").write_text("common: {profile: t}\nnotebooks:\n  01_tiny: {value: 8}\n")
    reproduce.run("t")
    assert json.loads(metrics.read_text()) == {"value": 8}


def test_unknown_parameters_are_errors(tmp_root):
    tiny_project(tmp_root)
    (tmp_root / "params" / "t.yaml").write_text("common: {profile: t}\nnotebooks:\n  01_tiny: {valeu: 8}\n")
    with pytest.raises(SystemExit, match="valeu"):
        reproduce.run("t")
    (tmp_root / "params" / "t.yaml").write_text("common: {profile: t, nonsense: 1}\nnotebooks:\n  01_tiny: {}\n")
    with pytest.raises(SystemExit, match="nonsense"):
        reproduce.run("t")
    with pytest.raises(SystemExit, match="no profile"):
        reproduce.run("missing")


def test_report_gathers_tables_and_says_what_did_not_run(tmp_root):
    from dydca_lib import report
    from dydca_lib.io import ResultDir
    from dydca_lib.paths import results_dir
    from dydca_lib.runinfo import run_metadata
    import pandas as pd

    out = ResultDir(results_dir("t", "01_data_chunking"))
    out.table(pd.DataFrame({"chunk": [0], "frames": [25]}), "chunks")
    out.json(run_metadata({"profile": "t"}, 0), "metrics")
    out.commit()
    text = report.build_report("t").read_text()
    assert "| chunk | frames |" in text and "| 0 | 25 |" in text
    assert text.count("*not run in this profile*") == len(report.SECTIONS) - 1 - len(report.NOT_RUN)
    assert "*not run: needs a CUDA GPU" in text
    assert "planned memory, dynamic vs static build (x) | 1.61 | not run |" in text
    assert (results_dir("t") / "REPORT.html").read_text().startswith("<!doctype html>")


def test_compare_results_separates_measurements_from_results(tmp_path):
    import pandas as pd

    from dydca_lib.reproduce import compare_results

    a, b = tmp_path / "a" / "04", tmp_path / "b" / "04"
    a.mkdir(parents=True), b.mkdir(parents=True)
    pd.DataFrame({"method": ["x"], "psnr": [30.0], "median_ms": [1.0]}).to_csv(a / "t.csv", index=False)
    pd.DataFrame({"method": ["x"], "psnr": [30.0], "median_ms": [2.0]}).to_csv(b / "t.csv", index=False)
    pd.DataFrame({"psnr": [float("nan")]}).to_csv(a / "same.csv", index=False)
    pd.DataFrame({"psnr": [float("nan")]}).to_csv(b / "same.csv", index=False)
    pd.DataFrame({"psnr": [1.0]}).to_csv(a / "changed.csv", index=False)
    pd.DataFrame({"psnr": [1.5]}).to_csv(b / "changed.csv", index=False)
    pd.DataFrame({"psnr": [1.0]}).to_csv(a / "gone.csv", index=False)
    table = compare_results(tmp_path / "a", tmp_path / "b").set_index("table")
    assert table.loc["04/same.csv", "identical"]
    assert not table.loc["04/t.csv", "identical"] and table.loc["04/t.csv", "only_measurements"]
    assert table.loc["04/t.csv", "differing_columns"] == "median_ms"
    assert not table.loc["04/changed.csv", "identical"] and not table.loc["04/changed.csv", "only_measurements"]
    assert table.loc["04/gone.csv", "differing_columns"] == "(missing in b)"
