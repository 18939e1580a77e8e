"""Delivery on long content (dydca_lib.longdelivery) and the frame-by-frame codec helpers, on a
tiny synthetic video."""

import cv2
import pandas as pd
import numpy as np
import pytest

from dydca_lib import codec as C
from dydca_lib import longcurves as LC
from dydca_lib import longdelivery as L
from dydca_lib.sources import DataError

from .conftest import synthetic_frames


@pytest.fixture
def six_seconds(tmp_path):
    """60 frames of 74x50 at 10 fps."""
    path = tmp_path / "six.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (74, 50))
    for f in synthetic_frames(60, h=50, w=74):
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def test_streaming_encode_and_partial_decode_match_the_whole_array_path():
    frames = np.stack(synthetic_frames(12, h=50, w=74))
    enc = C.Encoding("x264", 23, "medium")
    stream = C.encode_iter(iter(frames), (50, 74), 10.0, enc)
    assert stream == C.encode(frames, 10.0, enc)
    whole = C.decode(stream, "x264", (50, 74))
    some = C.decode_some(stream, "x264", (50, 74), [0, 5, 11])
    assert sorted(some) == [0, 5, 11] and all((some[k] == whole[k]).all() for k in some)
    with pytest.raises(RuntimeError, match="ended before frame"):
        C.decode_some(stream, "x264", (50, 74), [12])
    with pytest.raises(ValueError, match="the stream is 74x50"):
        C.encode_iter(iter([frames[0], frames[0][:, :70]]), (50, 74), 10.0, enc)


def test_window_plan_streams_every_native_frame_and_scores_notebook_07s_heldout_frames(six_seconds):
    plan = L.window_plan(six_seconds, 1.0, 4.0, 2.0, 2.0, 2, vmaf_run_s=1.0)
    assert (plan["first"], plan["n"], plan["fps"]) == (10, 40, 10.0)
    assert plan["sampled"] == list(range(10, 50, 5))  # 2 fps from 1 s
    assert set(plan["heldout"]) < set(plan["sampled"]) and len(plan["heldout"]) == 4  # 1 in 2, every chunk
    assert plan["run"] == list(range(25, 35))  # 1 s of consecutive frames around the middle
    with pytest.raises(ValueError, match="longer than the window"):
        L.window_plan(six_seconds, 1.0, 4.0, 2.0, 2.0, 2, vmaf_run_s=5.0)
    with pytest.raises(DataError):
        L.window_plan(six_seconds, 4.0, 4.0, 2.0, 2.0, 2)
    frames = list(L.window_frames(six_seconds, 10, 3, crop_multiple=4))
    assert len(frames) == 3 and frames[0].shape == (48, 72, 3)


def test_anchors_order_by_crf_in_bytes_psnr_and_vmaf(six_seconds):
    spec = dict(video=str(six_seconds), start_s=1.0, length_s=4.0, sample_fps=2.0, chunk_seconds=2.0, heldout_every=2,
                heldout_policy="interleaved", vmaf_run_s=1.0, scale=2, crop_multiple=2, preset="medium")
    lossless, good, bad = (L.compute_anchor({**spec, "codec": c, "crf": q})["row"]
                           for c, q in [(None, None), ("x264", 18), ("x264", 40)])
    assert lossless["stream_bytes"] == 0 and lossless["curve"] == "HR YUV 4:2:0 only"
    assert good["stream_bytes"] > bad["stream_bytes"] > 0
    assert lossless["psnr_y"] > good["psnr_y"] > bad["psnr_y"] + 5
    assert lossless["vmaf"] >= good["vmaf"] > bad["vmaf"] + 10
    assert good["frames"] == 40 and good["heldout_frames"] == 4 and good["vmaf_frames"] == 10
    assert good["stream_kbps"] == pytest.approx(8 * good["stream_bytes"] / 4.0 / 1000)


def point_spec(video, method, **changes):
    from dydca_lib.comparison import suite_kwargs
    from dydca_lib.params import PatchParams

    from .test_cells import TINY

    params = {**TINY, "video": str(video), "scale": 2, "heldout_every": 5, "joint_k": 2, "joint_shares": [],
              "model_blocks": 1, "model_feats": 16, "model_expansion": 2, "path_blocks": [1, 0], "batch_size": 4,
              "learning_rate": 1e-3, "context": 1}
    return {"patch": PatchParams.pick(params).asdict(), "suite": suite_kwargs(params, per_run=False),
            "window": {"start_s": 1.0, "length_s": 4.0, "sample_fps": 5.0, "vmaf_run_s": 1.0, "crop_multiple": 2},
            "codec": "x264", "crf": 30, "preset": "ultrafast", "method": method, "epochs": 0.2, "seed": 0,
            "calibration_patches": 8, **changes}


def test_a_point_streams_the_whole_window_and_scores_held_out_frames_and_the_run(tmp_root, six_seconds):
    rows = {m: L.compute_point(point_spec(six_seconds, m))["row"]
            for m in ["bicubic", "general", "per_video", "per_chunk", "cafm", "stdo", "stdo_joint", "dydca"]}
    stream = {r["stream_bytes"] for r in rows.values()}
    assert len(stream) == 1 and stream.pop() > 0  # one LR stream, whatever upscales it
    for name, r in rows.items():
        assert r["frames"] == 40 and r["vmaf_frames"] == 10 and r["heldout_frames"] == 4
        assert 0 < r["vmaf"] <= 100 and r["psnr_y"] > 20
    for untrained in ("bicubic", "general"):  # general: installed with the client
        assert rows[untrained]["int8_xz_bytes"] == rows[untrained]["fp16_xz_bytes"] == 0
    assert rows["per_video"]["fp16_xz_bytes"] < rows["cafm"]["fp16_xz_bytes"] < rows["per_chunk"]["fp16_xz_bytes"]
    per_chunk, per_video = rows["per_chunk"], rows["per_video"]
    assert 0 < per_video["int8_xz_bytes"] < per_video["fp16_xz_bytes"]  # (a body block: int8 weights outweigh the fp32 skip conv)
    assert per_chunk["fp16_xz_bytes"] > 3 * per_video["fp16_xz_bytes"]  # 4 chunk models vs 1
    assert rows["dydca"]["routing_map_bytes"] > 0 and rows["stdo"]["routing_map_bytes"] > 0
    assert per_video["routing_map_bytes"] == 0
    assert "int8_psnr_y" not in per_video  # no int8 client asked for
    # the decoded frames are cached once per window and encoding
    folders = list((tmp_root / "data" / "frames" / "encoded-windows").iterdir())
    assert len(folders) == 1 and len(list((folders[0] / "sampled").glob("*.png"))) == 20


def test_the_run_is_routed_by_the_rules_learned_on_the_window(tmp_root, six_seconds):
    from dydca_lib.pipeline import cached_labels, patch_data
    from dydca_lib.params import PatchParams
    from dydca_lib.registry import make, parse

    spec = point_spec(six_seconds, "dydca")
    p = PatchParams.pick(spec["patch"])
    train, run, _, plan = L.encoded_window(p.video, 1.0, 4.0, 5.0, p.chunk_seconds, p.heldout_every, p.heldout_policy,
                                           1.0, 2, p.lr_kernel, C.Encoding("x264", 30, "ultrafast"), 2)
    data = patch_data(p, frames=train)
    labels, _ = cached_labels(run, range(len(run)), data.geom, data.general_net, data.general_info)
    for ref in ["dydca", "stdo", "per_chunk", "per_video"]:
        m = make(parse(ref), 2, len(data.chunks), epochs=0.2, seed=0, **spec["suite"])
        m.data = data  # routing needs no training
        man = L.run_manifest(m, data, labels, range(len(run)), lambda f: 2)
        assert set(man.frame) == set(range(len(run)))
        if ref == "dydca":  # the window's thresholds: patch sizes the model has paths for
            assert set(zip(man.h, man.w)) <= set(data.routing)
        if ref == "stdo":
            assert set(man.path) <= {0, 1}
        if ref == "per_chunk":  # the run lies in chunk 2 of 4
            assert set(man.path) == {2}


def test_int8_rows_are_scored_through_the_int8_client(tmp_root, six_seconds):
    from dydca_lib.client.runtimes import unsupported_reason

    if unsupported_reason("tvm_int8"):
        pytest.skip(unsupported_reason("tvm_int8"))
    for method in ["per_chunk", "dydca"]:
        r = L.compute_point(point_spec(six_seconds, method, int8_runtime="tvm_int8"))["row"]
        assert r["int8_runtime"] == "tvm_int8"
        assert abs(r["int8_psnr_y"] - r["psnr_y"]) < 1.0  # int8 rounding, not another picture
        assert abs(r["int8_vmaf"] - r["vmaf"]) < 5 and r["int8_ssim_y"] > 0
    with pytest.raises(ValueError, match="does not compute in int8"):
        L.compute_point(point_spec(six_seconds, "per_video", int8_runtime="torch_batched"))


def study_params(video, **changes):
    from .test_cells import TINY

    return {**TINY, "video": str(video), "scale": 2, "heldout_every": 5, "lengths_s": [4.0], "starts_s": [1.0],
            "sample_fps": 5.0, "vmaf_run_s": 1.0, "crop_multiple": 2, "anchor_codecs": ["x264"], "lr_codecs": ["x264"],
            "crfs": [28, 40], "preset": "ultrafast", "methods": ["bicubic", "per_video", "dydca"], "seeds": [0, 1],
            "stdo_k": 2, "joint_k": 2, "joint_shares": [], "model_blocks": 1, "model_feats": 16, "model_expansion": 2,
            "path_blocks": [1, 0], "batch_size": 4, "learning_rate": 1e-3, "context": 1, "calibration_patches": 8,
            "int8_runtime": "", **changes}


def test_the_study_runs_points_to_their_plateau_and_compares_curves_with_the_anchors(tmp_root, six_seconds):
    params = study_params(six_seconds, anchor_crfs=[28, 40, 51])
    anchors = pd.DataFrame([L.anchor_cell(s) for s in L.anchor_specs(params)])
    assert list(anchors.codec) == ["none", "x264", "x264", "x264"] and list(anchors.crf[1:]) == [28, 40, 51]
    assert [s["crf"] for s in L.anchor_specs(study_params(six_seconds))] == [None, 28, 40]  # no anchor_crfs: crfs
    specs = L.point_specs(params)
    assert len(specs) == 2 * 3 * 2 and {s["method"] for s in specs} == {"bicubic", "one model per video", "Dy-DCA"}
    runs = L.points_to_plateau(specs, 0.1, 0.2, 0.1)
    bic = runs[runs.method == "bicubic"]
    assert len(bic) == 2 and set(bic.epochs) == {0.0}  # untrained: once per CRF, one seed
    trained = runs[runs.method != "bicubic"]
    assert set(trained.epochs) <= {0.1, 0.2} and (trained.groupby(["crf", "method", "epochs"]).seed.nunique() == 2).all()
    last = trained.epochs == trained.groupby(["crf", "method"]).epochs.transform("max")
    assert trained[last].vmaf.notna().all() and (trained[last].fp16_xz_bytes > 0).all()  # the clients at the last budget
    assert trained[~last].vmaf.isna().all() and len(trained[~last])  # below it: the held-out frames only
    assert trained.psnr_rgb.notna().all()
    final = LC.final_points(runs)
    assert len(final) == 2 * 3 and (final[final.method != "bicubic"].seeds == 2).all()
    curve = LC.curves(final, "six")
    assert set(curve.model_dtype) == {"fp16"}  # no int8 client asked for: no int8 rows
    dy = curve[curve.method == "Dy-DCA"].iloc[0]
    assert dy.kbps == pytest.approx(8 * (dy.stream_bytes + dy.model_bytes + dy.routing_map_bytes) / dy.seconds / 1000)
    table = LC.anchor_table(anchors, "six")
    bd = LC.bd_tables(curve, table)
    assert set(bd.quality) == {"psnr_y", "vmaf"} and set(bd.anchor) == {"HR x264"}
    text = LC.final_sentence(curve, table, dtype="fp16", anchor="x264")
    assert text.startswith("Dy-DCA, its fp16 model bytes counted, beats HR x264 at equal VMAF and Y-PSNR — six 1+4 s:")
    assert "BD-rate by Y-PSNR" in text and "BD-rate by VMAF" in text and "at equal rate" in text  # the numbers either way
    with pytest.raises(ValueError, match="at least one window"):
        L.point_specs(study_params(six_seconds, starts_s=[]))


def test_the_verdict_gives_the_bjontegaard_numbers_or_says_why_there_are_none():
    done = {"bd_rate_pct": 41.4, "bd_psnr_db": -1.234, "quality_overlap": "33.00–36.50 dB", "rate_overlap": "60–190 kbit/s"}
    assert LC._bd_text(done, "psnr_y") == ("BD-rate by Y-PSNR +41 % over 33.00–36.50 dB, "
                                          "-1.23 dB Y-PSNR at equal rate over 60–190 kbit/s")
    apart = {"bd_rate_pct": float("nan"), "bd_psnr_db": -8.5, "quality_overlap": "none", "rate_overlap": "60–190 kbit/s"}
    assert LC._bd_text(apart, "vmaf") == ("BD-rate by VMAF undefined (quality overlap: none), "
                                         "-8.50 VMAF at equal rate over 60–190 kbit/s")


def test_wins_are_the_rates_where_a_curve_lies_above_the_anchor_by_each_quality():
    anchors = pd.DataFrame({"video": "w", "codec": "x265", "stream_kbps": [50.0, 100.0, 200.0],
                            "psnr_y": [31.0, 34.0, 37.0], "vmaf": [20.0, 50.0, 80.0]})
    curve = pd.DataFrame({"video": "w", "method": "m", "codec": "x265", "model_dtype": "int8", "kbps": [50.0, 100.0, 200.0],
                          "psnr_y": [32.0, 35.0, 36.0], "vmaf": [10.0, 55.0, 90.0]})  # above by Y-PSNR below ~150, by VMAF above ~70
    row = LC.wins(curve, anchors).iloc[0]
    assert (row.anchor, row.lr_codec) == ("HR x265", "x265")
    lo, hi = (float(x) for x in row["beats by Y-PSNR"].split(" ")[0].split("–"))
    assert lo == pytest.approx(50) and 130 < hi < 170
    lo, hi = (float(x) for x in row["beats by VMAF"].split(" ")[0].split("–"))
    assert 75 < lo < 85 and hi == pytest.approx(200)  # crossing at 50 * 2 ** (2 / 3) = 79.4 in log-rate
    both = [float(x) for x in row["beats by both"].split(" ")[0].split("–")]
    assert 75 < both[0] < 85 and 130 < both[1] < 170
    below = LC.wins(curve.assign(psnr_y=curve.psnr_y - 5), anchors).iloc[0]
    assert below["beats by Y-PSNR"] == "no rate" and below["beats by both"] == "no rate"


def test_cap_sensitivity_raises_only_the_points_the_cap_stopped_by_their_last_gain():
    def run(crf, epochs, rgb, y):
        return {"start_s": 0.0, "length_s": 4.0, "codec": "x265", "crf": crf, "method": "m", "epochs": epochs, "seed": 0,
                "parameters": 10, "psnr_rgb": rgb, "psnr_y": y}
    runs = pd.DataFrame([run(22, 4, 30.0, 32.0), run(22, 8, 30.5, 32.4),  # capped at 8, still gaining 0.5 dB
                         run(34, 4, 28.0, 30.0), run(34, 8, 28.05, 30.02)])  # at its plateau
    curve = pd.DataFrame({"video": "w", "start_s": 0.0, "length_s": 4.0, "codec": "x265", "crf": [22, 34], "method": "m",
                          "model_dtype": "int8", "kbps": [120.0, 60.0], "psnr_y": [32.4, 30.02]})
    anchors = pd.DataFrame({"video": "w", "codec": "x265", "stream_kbps": [40.0, 80.0, 160.0], "psnr_y": [29.0, 31.0, 34.0]})
    row = LC.cap_sensitivity(runs, curve, anchors, epochs_cap=8, plateau_db=0.1).iloc[0]
    assert row.points_at_cap == "1 of 2" and row.largest_last_gain_y_db == pytest.approx(0.4)
    assert row.bd_rate_pct_if_one_more_doubling < row.bd_rate_pct  # better quality at the same rate: fewer bits
    same = LC.cap_sensitivity(runs, curve, anchors, epochs_cap=16, plateau_db=0.1).iloc[0]  # nothing reached this cap
    assert same.points_at_cap == "0 of 2" and same.bd_rate_pct_if_one_more_doubling == pytest.approx(same.bd_rate_pct)
