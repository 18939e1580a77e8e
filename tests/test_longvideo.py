"""Notebook 07's machinery on tiny inputs: windows of a video, the plateau loop, the tables and the
verdict (dydca_lib.windows, dydca_lib.longvideo). No timing is asserted."""

import numpy as np
import pandas as pd
import pytest

from dydca_lib import longvideo as LV
from dydca_lib import windows as W
from dydca_lib.sources import DataError

from .test_cells import TINY


def test_window_frames_are_sampled_evenly_and_must_fit():
    assert W.window_frame_ids(24.0, 1000, 1.0, 2.0, 2.0) == [24, 36, 48, 60]
    assert W.window_frame_ids(25.0, 1000, 0.0, 1.0, 10.0) == [0, 2, 5, 8, 10, 12, 15, 18, 20, 22]  # nearest frame
    with pytest.raises(DataError, match="does not fit"):
        W.window_frame_ids(24.0, 100, 3.0, 2.0, 2.0)
    with pytest.raises(ValueError, match="above the video"):
        W.window_frame_ids(24.0, 1000, 0.0, 2.0, 30.0)


def test_a_window_is_a_frame_set_at_the_sampling_rate(tmp_root, synthetic_video):
    frames = W.prepare_window(synthetic_video, 2, 1.0, 1.5, 5.0)  # frames 10, 12, ... 24 of a 10 fps clip
    assert len(frames) == 7 and frames.fps == 5.0 and frames.lr_hw == (24, 36)
    whole = W.prepare_window(synthetic_video, 2, 0.0, 3.0, 10.0)  # every frame
    assert np.array_equal(frames.hr(0), whole.hr(10)) and np.array_equal(frames.hr(6), whole.hr(22))
    again = W.prepare_window(synthetic_video, 2, 1.0, 1.5, 5.0)  # from the cache
    assert again.hr_paths == frames.hr_paths


def fake_runs(psnr):
    """A ``run`` that scores a spec by ``psnr(method, epochs, seed, length)``, and a log of the calls."""
    calls = []

    def run(spec, epochs, store=None):
        calls.append((spec["method"], spec["rule"], epochs))
        w = spec["window"]
        return {"method": spec["method"], "rule": spec["rule"], "seed": spec["seed"], "epochs": epochs,
                "model_epochs": epochs, "start_s": w["start_s"], "length_s": w["length_s"], "models": 1,
                "parameters": 100, "model_bytes": 400, "routing_map_bytes": 0, "gflop_per_frame": 1.0,
                "train_seconds": 1.0, "frame_psnr_rgb": psnr(spec["method"], epochs, spec["seed"], w["length_s"]),
                "frame_psnr_y": 0.0, "frame_ssim_y": 0.0}
    return run, calls


def specs(methods=("one model per video", "one model per chunk", "Dy-DCA"), lengths=(5.0, 45.0), seeds=(0, 1)):
    return LV.base_specs({**TINY, "video": "x", "scale": 4, "methods": list(methods), "lengths_s": list(lengths),
                          "starts_s": [0.0], "sample_fps": 2.0, "seeds": list(seeds), "paper_rule_max_s": 15.0,
                          "stdo_k": 2, "joint_k": 4, "joint_shares": [], "model_blocks": 1, "model_feats": 4,
                          "model_expansion": 2, "path_blocks": [1, 0], "batch_size": 4, "learning_rate": 1e-3,
                          "context": 1})


def test_base_specs_give_the_paper_rule_to_models_trained_apart_on_short_windows():
    got = {(s["window"]["length_s"], s["method"], s["rule"]) for s in specs(seeds=(0,))}
    assert got == {(5.0, "one model per video", "equal"), (5.0, "one model per chunk", "equal"),
                   (5.0, "one model per chunk", "paper"), (5.0, "Dy-DCA", "equal"),
                   (45.0, "one model per video", "equal"), (45.0, "one model per chunk", "equal"),
                   (45.0, "Dy-DCA", "equal")}
    with pytest.raises(ValueError, match="unknown method"):
        specs(methods=("one model per planet",))


def test_budgets_double_until_the_last_doubling_gains_little_or_the_cap(monkeypatch):
    gain = {"one model per video": [1.0, 0.5, 0.05, 0.01], "one model per chunk": [1.0, 1.0, 1.0, 1.0, 1.0],
            "Dy-DCA": [0.02]}
    psnr = lambda m, e, seed, L: 30 + sum(gain[m][:int(np.log2(e / 0.5))]) + 0.01 * seed  # noqa: E731
    run, calls = fake_runs(psnr)
    monkeypatch.setattr(LV, "run", run)
    runs = LV.to_plateau(specs(lengths=(5.0,)), 0.5, 8.0, 0.1, None)
    budgets = runs.groupby(["method", "rule"]).epochs.max().to_dict()
    assert budgets[("one model per video", "equal")] == 4.0  # 0.5 -> 1 (+1.0) -> 2 (+0.5) -> 4 (+0.05 < 0.1): stop
    assert budgets[("one model per chunk", "equal")] == 8.0  # still gaining at the cap
    assert budgets[("Dy-DCA", "equal")] == 1.0  # the first doubling already gains < 0.1
    plateau = LV.plateaus(runs, 0.1).set_index(["method", "rule"])
    assert plateau.reached.to_dict() == {("one model per video", "equal"): True, ("one model per chunk", "equal"): False,
                                         ("one model per chunk", "paper"): False, ("Dy-DCA", "equal"): True}
    assert len(calls) == len(runs) and (runs.groupby(["method", "rule", "epochs"]).size() == 2).all()  # both seeds
    with pytest.raises(ValueError, match="epochs0"):
        LV.to_plateau(specs(), 2.0, 1.0, 0.1)


def test_tables_find_where_one_model_per_video_falls_behind(monkeypatch):
    # per video wins on 5 s windows, loses on 45 s; Dy-DCA between; seeds spread 0.02 dB
    base = {("one model per video", 5.0): 35.0, ("one model per video", 45.0): 30.0,
            ("one model per chunk", 5.0): 34.0, ("one model per chunk", 45.0): 32.0, ("Dy-DCA", 5.0): 34.5,
            ("Dy-DCA", 45.0): 32.5}
    run, _ = fake_runs(lambda m, e, seed, L: base[(m, L)] + 0.02 * seed)
    monkeypatch.setattr(LV, "run", run)
    runs = LV.to_plateau(specs(), 1.0, 1.0, 0.1)
    summ = LV.summary(LV.final_runs(runs))
    assert summ.runs.eq(2).all() and np.allclose(summ.frame_psnr_rgb_std, np.sqrt(2) * 0.01)
    cross = LV.crossover(LV.final_runs(runs)).set_index("per_chunk_rule")
    assert cross.loc["equal", "per_video_falls_below_at_s"] == 45.0 == cross.loc["equal", "per_video_below_in_mean_at_s"]
    assert cross.loc["equal", "per_video_minus_per_chunk_db"] == [1.0, -2.0] and cross.loc["equal", "pairs"] == [2, 2]
    assert np.isnan(cross.loc["paper", "per_video_falls_below_at_s"])  # the paper rule ran only on 5 s windows
    gaps = LV.gaps(summ, LV.final_runs(runs)).set_index(["length_s", "vs", "rule"])
    assert gaps.loc[(45.0, "one model per video", "equal"), "reading"] == "Dy-DCA better"
    assert gaps.loc[(5.0, "one model per video", "equal"), "dydca_minus_other_db"] == -0.5
    text = LV.verdict(summ, LV.gaps(summ, LV.final_runs(runs)), LV.crossover(LV.final_runs(runs)), LV.plateaus(runs, 0.1))
    assert "falls below one model per chunk (equal budget) from 45 s windows, by more than twice the spread" in text
    assert "had not reached the plateau" in text  # one budget only: nothing says a plateau was reached


def test_gaps_are_paired_so_a_harder_scene_does_not_hide_a_difference(monkeypatch):
    """Two window starts 10 dB apart (a hard and an easy scene) and Dy-DCA 0.3 dB above one model per
    video on each start and seed (seed noise 0.05 dB): each method's std over the runs is ~5 dB, the
    paired differences' ~0.05 dB, so the gap reads as a difference, not a tie."""
    def run(spec, epochs, store=None):
        w, m = spec["window"], spec["method"]
        psnr = 30 + 10 * (w["start_s"] > 0) + (0.3 if m == "Dy-DCA" else 0.0) + 0.05 * spec["seed"] * (m == "Dy-DCA")
        return {"method": m, "rule": spec["rule"], "seed": spec["seed"], "epochs": epochs, "model_epochs": epochs,
                "start_s": w["start_s"], "length_s": w["length_s"], "models": 1, "parameters": 100, "model_bytes": 400,
                "routing_map_bytes": 0, "gflop_per_frame": 1.0, "train_seconds": 1.0, "frame_psnr_rgb": psnr,
                "frame_psnr_y": 0.0, "frame_ssim_y": 0.0}

    monkeypatch.setattr(LV, "run", run)
    two_starts = [{**s, "window": {**s["window"], "start_s": t}} for s in specs(methods=("one model per video", "Dy-DCA"),
                                                                           lengths=(5.0,)) for t in (0.0, 60.0)]
    runs = LV.to_plateau(two_starts, 1.0, 1.0, 0.1)
    final = LV.final_runs(runs)
    summ = LV.summary(final)
    assert (summ.frame_psnr_rgb_std > 5).all()  # the scenes dominate each method's spread
    seed_std = summ.set_index("method").frame_psnr_rgb_seed_std  # the seeds alone: 0.05 dB apart on Dy-DCA, none elsewhere
    assert seed_std["Dy-DCA"] == pytest.approx(0.05 / np.sqrt(2)) and seed_std["one model per video"] == pytest.approx(0.0)
    g = LV.gaps(summ, final).iloc[0]
    assert g.pairs == 4 and g.dydca_minus_other_db == pytest.approx(0.325) and g.two_spreads_db < 0.1
    assert g.reading == "Dy-DCA better"
    # one model per video 0.05 dB below one per chunk in the mean, the pairs spread 0.1 dB: below in the mean, a tie
    noisy = final.assign(method=final.method.replace({"Dy-DCA": "one model per chunk"}),
                         frame_psnr_rgb=final.frame_psnr_rgb + np.where(final.method == "Dy-DCA", -0.275, 0.0)
                         + np.where(final.method == "Dy-DCA", [0.1, -0.1] * (len(final) // 2), 0.0))
    c = LV.crossover(noisy).iloc[0]
    assert c.per_video_below_in_mean_at_s == 5.0 and np.isnan(c.per_video_falls_below_at_s)
    assert "below one model per chunk (equal budget) in the mean from 5 s windows, but within twice the spread" in \
        LV.verdict(summ, LV.gaps(summ, final), LV.crossover(noisy), LV.plateaus(runs, 0.1))
    # the training cost: one run whose wall time includes a pause does not move the row's median
    paused = final.assign(train_seconds=[5000.0] + [1.0] * (len(final) - 1))
    assert (LV.summary(paused).train_seconds_median == 1.0).all()


def test_one_run_trains_and_scores_a_window(tmp_root, synthetic_video):
    params = {**TINY, "video": str(synthetic_video), "scale": 2, "chunk_seconds": 1.0, "heldout_every": 5,
              "methods": ["per_chunk", "dydca"], "lengths_s": [2.0], "starts_s": [0.5], "sample_fps": 5.0, "seeds": [0],
              "paper_rule_max_s": 2.0, "stdo_k": 2, "joint_k": 2, "joint_shares": [], "model_blocks": 0,
              "model_feats": 4, "model_expansion": 2, "path_blocks": [1, 0], "batch_size": 4, "learning_rate": 1e-3,
              "context": 1}
    runs = LV.to_plateau(LV.base_specs(params), 0.2, 0.2, 0.1)
    rows = runs.set_index(["method", "rule"])
    assert set(rows.index) == {("one model per chunk", "equal"), ("one model per chunk", "paper"), ("Dy-DCA", "equal")}
    assert rows.loc[("one model per chunk", "equal"), "models"] == 2 == rows.loc[("one model per chunk", "equal"), "chunks"]
    assert rows.loc[("one model per chunk", "paper"), "model_epochs"] == pytest.approx(0.4)  # 2 chunk models, 2x each
    assert rows.loc[("Dy-DCA", "equal"), "models"] == 1 and (runs.heldout_frames == 2).all()
    assert runs.frame_psnr_rgb.between(10, 60).all()
    with pytest.raises(ValueError, match="no frame is held out"):
        LV.window_data({**params, "heldout_every": 10}, {"start_s": 0.5, "length_s": 2.0, "sample_fps": 5.0})
    assert isinstance(LV.summary(LV.final_runs(runs)), pd.DataFrame)
