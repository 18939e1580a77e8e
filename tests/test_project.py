"""Project hygiene: pins agree, notebooks are clean and fully parameterised, profiles are valid."""

import json
import re
from pathlib import Path

import papermill as pm
import pytest
import yaml

from dydca_lib.profiles import load_profile, notebook_parameters, notebook_paths

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = notebook_paths()


def pins(lines):
    return sorted(l.strip().lstrip("- ").strip() for l in lines if re.match(r"^\s*-?\s*[A-Za-z0-9_.-]+==", l))


def test_environment_yml_mirrors_requirements():
    req = pins((ROOT / "requirements.txt").read_text().splitlines())
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pins(pip_section) == req
    assert "python=3.11" in env["dependencies"]
    pinned = {line.split("==")[0] for line in req}
    # an open range would pull a multi-GB CUDA torch, or a tvm-ffi that segfaults: these three stay exact
    assert {"torch", "apache-tvm", "apache-tvm-ffi"} <= pinned


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS][:1] == ["01_data_chunking.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_clean(path):
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    assert sum("parameters" in c.get("metadata", {}).get("tags", []) for c in code) == 1


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_parameter_is_listed_with_type_and_help(path):
    nb = json.loads(path.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    src = "".join(cell["source"]).splitlines()
    declared = [l.split(":")[0] for l in src if l.strip() and not l.startswith("#")]
    inspected = pm.inspect_notebook(str(path))
    assert list(inspected) == declared  # papermill parsed every line (it silently skips some)
    for name, p in inspected.items():
        assert p["inferred_type_name"] != "None" and p["help"], f"{name} lacks a type or a # help comment"


PROFILES = sorted(p.stem for p in (ROOT / "params").glob("*.yaml"))


def test_the_profiles_are_all_here():
    assert {"smoke", "default", "paper", "budget", "full"} <= set(PROFILES)


@pytest.mark.parametrize("profile", PROFILES)
def test_profiles_only_set_declared_parameters(profile):
    cfg = load_profile(profile)
    assert cfg["common"]["profile"] == profile
    for nb in NOTEBOOKS:
        if nb.stem in cfg["notebooks"]:
            notebook_parameters(cfg, nb)  # raises on an unknown parameter


@pytest.mark.parametrize("profile", PROFILES)
def test_notebooks_built_on_notebook_04_see_its_frames(profile):
    """04b, 06 and 08 reuse notebook 04's trained models and cells: the frames and chunks must be
    04's (and 06 loads 04's models: its epochs too), or they would silently train others."""
    cfg = load_profile(profile)
    by_stem = {nb.stem: nb for nb in NOTEBOOKS}
    if "04_baseline_comparison" not in cfg["notebooks"]:
        pytest.skip(f"{profile} does not run notebook 04")

    def resolved(stem):  # the notebook's defaults, then the profile's values
        nb = by_stem[stem]
        defaults = {k: yaml.safe_load(p["default"]) for k, p in pm.inspect_notebook(str(nb)).items()}
        return {**defaults, **notebook_parameters(cfg, nb)}

    base = resolved("04_baseline_comparison")
    for stem, keys in {"04b_budget_study": ("max_frames", "chunk_seconds"), "06_on_device": ("max_frames", "chunk_seconds", "epochs"),
                       "08_rate_quality": ("max_frames", "chunk_seconds")}.items():
        if stem in cfg["notebooks"]:
            got = resolved(stem)
            assert {k: got[k] for k in keys} == {k: base[k] for k in keys}, f"{profile}: {stem} vs notebook 04"


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.stem != "09_report"], ids=lambda p: p.stem)
def test_notebook_records_every_declared_parameter(path):
    """`params` (metrics.json, the cells' specs) is built from the parameters cell, not a hand-kept list."""
    code = "".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
    assert f'params = {{k: globals()[k] for k in declared_parameters(notebook_path("{path.stem}"))}}' in code
