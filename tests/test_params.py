"""Parameters defined once: every notebook declares the shared parameters with the defaults of
dydca_lib.params.PatchParams, and notebook 06 runs on exactly the models notebook 04 trains."""

import dataclasses

import pytest

from dydca_lib import pipeline
from dydca_lib.params import PATCH_PARAMS, PatchParams
from dydca_lib.profiles import load_profile, notebook_defaults, notebook_parameters, notebook_path, notebook_paths

NOTEBOOKS = notebook_paths()
DEFAULTS = PatchParams().asdict()


def _normal(v):
    return tuple(v) if isinstance(v, list) else v


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_shared_parameters_have_the_library_defaults(path):
    declared = notebook_defaults(path)
    for name in set(declared) & set(PATCH_PARAMS):
        assert _normal(declared[name]) == DEFAULTS[name], f"{path.stem}: {name} = {declared[name]!r}, " \
                                                          f"PatchParams says {DEFAULTS[name]!r}"


@pytest.mark.parametrize("stem", ["02_patch_clustering", "03_dynamic_training", "05_tvm_compile_tune", "06_on_device"])
def test_patch_notebooks_declare_every_shared_parameter(stem):
    assert set(PATCH_PARAMS) <= set(notebook_defaults(notebook_path(stem)))


def test_notebook_04_declares_every_shared_parameter_but_the_clip_and_scale():
    declared = set(notebook_defaults(notebook_path("04_baseline_comparison")))
    assert set(PATCH_PARAMS) - declared == {"video", "scale"} and {"videos", "scales"} <= declared


def test_patch_params_reject_unknown_names_and_pick_known_ones():
    with pytest.raises(TypeError, match="grid_row"):
        PatchParams(grid_row=3)
    p = PatchParams.pick({"grid_rows": 5, "split_thresholds": [0.3], "threads": 2})
    assert p.grid_rows == 5 and p.split_thresholds == (0.3,) and p == dataclasses.replace(p)
    with pytest.raises(TypeError):
        pipeline.patch_data(max_frame=3)  # a typo fails before any work


# what notebook 06 must share with notebook 04 so that it loads 04's trained models instead of training others
SAME_AS_04 = [*PATCH_PARAMS, "model_blocks", "model_feats", "model_expansion", "path_blocks", "epochs", "batch_size",
              "learning_rate", "context"]


def _effective(cfg: dict, stem: str) -> dict:
    """A notebook's parameters in a profile: its defaults, then the profile's values."""
    nb = notebook_path(stem)
    return {**notebook_defaults(nb), **notebook_parameters(cfg, nb)}


@pytest.mark.parametrize("profile", ["smoke", "default", "full"])
def test_notebook_06_runs_notebook_04s_models(profile):
    cfg = load_profile(profile)
    if "06_on_device" not in cfg["notebooks"] or "04_baseline_comparison" not in cfg["notebooks"]:
        pytest.skip(f"profile {profile} does not run both")
    p04, p06 = _effective(cfg, "04_baseline_comparison"), _effective(cfg, "06_on_device")
    for name in SAME_AS_04:
        if name in ("video", "scale"):
            continue
        assert _normal(p06[name]) == _normal(p04[name]), f"{profile}: notebook 06 {name}={p06[name]!r}, 04 has {p04[name]!r}"
    assert p06["video"] in p04["videos"] and p06["scale"] in p04["scales"] and p06["stdo_k"] in p04["stdo_ks"]
    assert p06["seed"] in p04["seeds"], f"{profile}: notebook 06 trains with seed {p06['seed']}, 04 with {p04['seeds']}"


def test_budget_study_declares_every_shared_parameter():
    assert set(PATCH_PARAMS) <= set(notebook_defaults(notebook_path("04b_budget_study")))


@pytest.mark.parametrize("profile", ["smoke", "default", "full"])
def test_budget_study_reuses_notebook_04s_models(profile):
    """At notebook 04's epochs and seeds the study loads 04's models (same cache keys), which the
    profile's timing counts on."""
    cfg = load_profile(profile)
    if "04b_budget_study" not in cfg["notebooks"] or "04_baseline_comparison" not in cfg["notebooks"]:
        pytest.skip(f"profile {profile} does not run both")
    p04, p04b = _effective(cfg, "04_baseline_comparison"), _effective(cfg, "04b_budget_study")
    for name in SAME_AS_04:
        if name in ("video", "scale", "epochs"):
            continue
        assert _normal(p04b[name]) == _normal(p04[name]), f"{profile}: notebook 04b {name}={p04b[name]!r}, 04 has {p04[name]!r}"
    assert p04b["video"] in p04["videos"] and p04b["scale"] in p04["scales"]
    assert float(p04["epochs"]) in [float(b) for b in p04b["budgets"]]
    assert set(p04b["seeds"]) <= set(p04["seeds"]) or set(p04["seeds"]) <= set(p04b["seeds"])
