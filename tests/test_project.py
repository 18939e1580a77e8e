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


@pytest.mark.parametrize("profile", ["smoke", "default", "full"])
def test_profiles_only_set_declared_parameters(profile):
    cfg = load_profile(profile)
    assert cfg["common"]["profile"] == profile
    for nb in NOTEBOOKS:
        if nb.stem in cfg["notebooks"]:
            notebook_parameters(cfg, nb)  # raises on an unknown parameter
