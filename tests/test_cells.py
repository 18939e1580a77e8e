import numpy as np
import pytest

from dydca_lib import cells, comparison

TINY = dict(max_frames=30, chunk_seconds=1.0, heldout_every=5, grid_rows=4, grid_cols=4, levels=2, general_blocks=0,
            general_feats=4, general_steps=2, general_batch=2, general_patch=8, fps=0.0, heldout_policy="interleaved",
            lr_kernel="pil", patch_size=0, patch_policy="pad", threshold_mode="quantile", split_thresholds=[0.5],
            general_expansion=2, general_clips=[], general_frames_per_clip=6, seed=0)


def nb04_params(video, **changes):
    return {**TINY, "videos": [str(video)], "scales": [2], "seeds": [0, 1], "stdo_ks": [2], "joint_k": 2,
            "joint_shares": [], "model_blocks": 0, "model_feats": 4, "model_expansion": 2, "path_blocks": [1, 0],
            "epochs": 0.2, "batch_size": 4, "learning_rate": 1e-3, "context": 1, "equal_size": False,
            "eval_train_every": 4, **changes}


def test_comparison_specs_follow_the_tables_order_and_keep_crops_once(synthetic_video):
    specs = comparison.comparison_specs(nb04_params(synthetic_video, scales=[2, 3]))
    assert [(s["patch"]["scale"], s["seed"]) for s in specs] == [(2, 0), (2, 1), (3, 0), (3, 1)]
    assert [s["untrained"] for s in specs] == [True, False, True, False]
    assert [s["keep_hardest"] for s in specs] == [3, 0, 0, 0]
    with pytest.raises(ValueError, match="seeds"):
        comparison.comparison_specs(nb04_params(synthetic_video, seeds=[]))


def test_a_cell_is_computed_once_and_read_back_the_same(tmp_root, synthetic_video, monkeypatch):
    spec = comparison.comparison_specs(nb04_params(synthetic_video))[0]
    assert not cells.is_done("comparison", spec)
    first = comparison.comparison_cell(spec)
    assert cells.is_done("comparison", spec)
    names = [r["method"] for r in first["rows"]]
    assert names[:2] == ["bicubic", "general"] and "Dy-DCA" in names
    assert set(first["per_frame"].method) == set(names)
    assert first["kept"] and all(isinstance(a, np.ndarray) for k in first["kept"].values() for a in k.values())

    monkeypatch.setattr(cells, "_compute", lambda kind: lambda spec: pytest.fail("a done cell was computed again"))
    again = comparison.comparison_cell(spec)
    assert again["rows"] == first["rows"]
    assert again["per_frame"].equals(first["per_frame"])
    for m in first["kept"]:
        for f in first["kept"][m]:
            assert (again["kept"][m][f] == first["kept"][m][f]).all()


def test_second_seed_cell_trains_only_the_trained_methods(tmp_root, synthetic_video):
    spec = comparison.comparison_specs(nb04_params(synthetic_video))[1]
    rows = comparison.comparison_cell(spec)["rows"]
    assert {r["seed"] for r in rows} == {1} and "bicubic" not in [r["method"] for r in rows]


def test_a_failed_cell_leaves_nothing(tmp_root, monkeypatch):
    def boom(spec):
        raise RuntimeError("killed")

    spec = {"method": "Dy-DCA", "epochs": 1.0, "seed": 0}
    with pytest.raises(RuntimeError):
        cells.run_cell("budget", spec, compute=boom)
    cell_dir = cells.cell_path("budget", spec).parent
    assert not cells.is_done("budget", spec)
    assert not cell_dir.exists() or not any(cell_dir.iterdir())
    with pytest.raises(ValueError, match="unknown cell kind"):
        cells.cell_key("nope", {})
