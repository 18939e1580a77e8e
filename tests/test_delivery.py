"""Rate–quality (notebook 08): encoder checks, stream round trips, rates, BD metrics, verdicts, and
one real point on a tiny clip (encode, decode, train on the decoded frames, score)."""

import numpy as np
import pandas as pd
import pytest

from dydca_lib import codec as C
from dydca_lib import delivery as D
from dydca_lib.metrics import psnr

from .conftest import synthetic_frames
from .test_cells import TINY


def test_check_ladder_names_every_problem_before_any_work():
    with pytest.raises(ValueError) as e:
        C.check_ladder(["x264", "vp9"], [30, 60, 30], "fastest", encoders={"libx264"})
    msg = str(e.value)
    assert "unknown codec 'vp9'" in msg and "CRF 60" in msg and "repeat" in msg and "preset 'fastest'" in msg
    with pytest.raises(ValueError, match="no libx265 encoder"):
        C.check_ladder(["x265"], [30], "slow", encoders={"libx264"})
    C.check_ladder(["x264", "x265"], [18, 42], "slow", encoders={"libx264", "libx265"})


def test_the_bundled_ffmpeg_has_both_encoders():
    assert {"libx264", "libx265"} <= C.available_encoders()


@pytest.mark.parametrize("codec", ["x264", "x265"])
def test_encode_decode_round_trip_keeps_size_count_and_quality_order(codec):
    frames = np.stack(synthetic_frames(n=5, h=33, w=47))  # odd sides: padded for 4:2:0, cropped back
    fine = C.encode(frames, 10.0, C.Encoding(codec, 10, "ultrafast"))
    coarse = C.encode(frames, 10.0, C.Encoding(codec, 45, "ultrafast"))
    assert len(coarse) < len(fine)
    a, b = C.decode(fine, codec, (33, 47)), C.decode(coarse, codec, (33, 47))
    assert a.shape == b.shape == frames.shape and a.dtype == np.uint8
    assert psnr(frames[2], a[2]) > psnr(frames[2], b[2])


def test_yuv420_round_trip_is_the_colour_conversion_alone():
    frames = np.stack(synthetic_frames(n=3, h=32, w=48))
    rt = C.yuv420_roundtrip(frames, 10.0)
    assert rt.shape == frames.shape
    assert psnr(frames[1], rt[1], y_channel=True) > 40.0 and not np.array_equal(frames, rt)


def test_rates_count_video_side_information_and_models_over_the_delivery():
    assert D.kbps(1000, 2.0) == 4.0
    assert D.model_payload_bytes(100, "fp32") == 400 and D.model_payload_bytes(100, "fp16") == 200
    with pytest.raises(ValueError, match="fp8"):
        D.model_payload_bytes(1, "fp8")
    clip = D.delivery_kbps(1000, 5000, 250, 2.0)
    assert clip == pytest.approx(D.kbps(1250, 2.0) + D.kbps(5000, 2.0))
    assert D.delivery_kbps(1000, 5000, 250, 2.0, amortise_s=100) == pytest.approx(D.kbps(1250, 2.0) + D.kbps(5000, 100))
    assert D.delivery_kbps(1000, 5000, 0, 2.0, amortise_s=1.0) == D.delivery_kbps(1000, 5000, 0, 2.0)  # never shorter than the clip


def _curve(rates, psnrs):
    return pd.DataFrame({"kbps": rates, "psnr_y": psnrs})


def test_bd_rate_of_a_curve_at_half_the_bits_is_minus_50_percent():
    anchor = _curve([100, 200, 400, 800], [30, 33, 36, 39])
    half = _curve([50, 100, 200, 400], [30, 33, 36, 39])
    m = D.bd_metrics(anchor, half)
    assert m["bd_rate_pct"] == pytest.approx(-50.0, abs=0.5) and m["bd_psnr_db"] == pytest.approx(3.0, abs=0.1)
    assert m["quality_overlap"] == "30.00–39.00 dB"
    vmaf = D.bd_metrics(anchor.rename(columns={"psnr_y": "vmaf"}), half.rename(columns={"psnr_y": "vmaf"}), quality="vmaf")
    assert vmaf["quality_overlap"] == "30.00–39.00"  # VMAF has no unit
    apart = D.bd_metrics(anchor, _curve([1000, 2000], [20, 21]))
    assert np.isnan(apart["bd_rate_pct"]) and np.isnan(apart["bd_psnr_db"]) and apart["quality_overlap"] == "none"
    assert D.bd_metrics(anchor, _curve([100], [30]))["quality_overlap"] == "too few points"


def test_winning_rates_find_where_one_curve_lies_above_the_other():
    anchor = _curve([100, 1000], [30, 40])
    flat = _curve([100, 1000], [35, 35])  # above the anchor below ~316 kbit/s (the log-midpoint)
    (lo, hi), = D.winning_rates(anchor, flat)
    assert lo == pytest.approx(100) and hi == pytest.approx(316, rel=0.02)
    assert D.winning_rates(anchor, _curve([2000, 3000], [50, 51])) == []
    assert D._intersect([[(1, 5), (7, 9)], [(4, 8)]]) == [(4, 5), (7, 8)]


def _points():
    base = {"video": "clip", "scale": 2, "codec": "x265", "frames": 20, "seconds": 2.0, "psnr_rgb": 0.0, "ssim_y": 0.0}
    rows = []
    for crf, stream, q in [(20, 4000, 36.0), (30, 1000, 33.0), (40, 250, 28.0)]:
        rows.append({**base, "crf": crf, "stream_bytes": stream, "method": "bicubic", "parameters": 0,
                     "routing_map_bytes": 0, "psnr_y": q})
        rows.append({**base, "crf": crf, "stream_bytes": stream, "method": "model", "parameters": 10_000,
                     "routing_map_bytes": 100, "psnr_y": q + 3})
    return pd.DataFrame(rows)


def test_curves_bd_table_and_verdict_agree():
    curves = D.delivery_curves(_points(), ["fp32", "fp16"], [60])
    assert len(curves) == 6 * 2 * 2
    m = curves[(curves.method == "model") & (curves.crf == 30)].set_index(["model_dtype", "delivered_s"]).kbps
    assert m["fp32", 2.0] > m["fp16", 2.0] > m["fp16", 60.0] > D.kbps(1100, 2.0)
    assert curves[curves.method == "bicubic"].model_bytes.eq(0).all()
    anchors = pd.DataFrame([{"video": "clip", "codec": c, "crf": crf, "stream_kbps": r, "psnr_y": q}
                            for c, shift in [("x264", 1.3), ("x265", 1.0)]
                            for crf, r, q in [(20, 40 * shift, 37.0), (30, 10 * shift, 34.0), (40, 2.5 * shift, 29.0)]]
                           + [{"video": "clip", "codec": "none", "crf": None, "stream_kbps": 0.0, "psnr_y": 45.0}])
    bd = D.bd_table(curves, anchors)
    assert set(bd.anchor) == {"HR x264", "HR x265"}
    assert len(bd) == 2 + 2 * 2 * 2  # bicubic sends no model: one curve, not one per weight width and length
    wins, text = D.verdict(curves, anchors, "fp16")
    assert set(wins.delivered_s) == {2.0, 60.0} and "beats every anchor" in wins
    assert "clip, models sent with the clip" in text and "amortised over 60 s (extrapolation)" in text
    s = D.summary(bd[bd.model_dtype == "fp16"], wins, pd.DataFrame())
    assert {r["anchor"] for r in s["best_bd_rate"]} <= {"HR x264", "HR x265"}


def test_check_choices_rejects_inconsistent_parameters():
    with pytest.raises(ValueError) as e:
        D.check_choices([], 31, [30, 40], ["fp32"], "fp16", "vmaf")
    msg = str(e.value)
    assert "video" in msg and "clean_check_crf 31" in msg and "figure_dtype 'fp16'" in msg and "quality 'vmaf'" in msg


def nb08_params(video, **changes):
    return {**TINY, "scale": 2, "videos": [str(video)], "crfs": [30, 40], "preset": "ultrafast", "anchor_codecs": ["x264"],
            "lr_codecs": ["x264"], "methods": ["bicubic", "one model per video", "Dy-DCA"], "epochs": 0.2,
            "clean_check_crf": 40, "joint_k": 2, "joint_shares": [], "model_blocks": 0, "model_feats": 4,
            "model_expansion": 2, "path_blocks": [1, 0], "batch_size": 4, "learning_rate": 1e-3, "context": 1, **changes}


def test_a_point_trains_on_the_decoded_frames_and_checks_clean_training(tmp_root, synthetic_video):
    params = nb08_params(synthetic_video)
    anchors = pd.DataFrame([D.anchor_cell(s) for s in D.anchor_specs(params, params["videos"], ["x264"])])
    assert list(anchors.codec) == ["none", "x264", "x264"] and anchors.stream_bytes.iloc[1] > anchors.stream_bytes.iloc[2]
    specs = D.point_specs(params, params["videos"], ["x264"])
    assert [(s["crf"], s["clean_check"]) for s in specs] == [(30, False), (40, True)]
    out = D.point_cell(specs[1])
    rows, clean = pd.DataFrame(out["rows"]), pd.DataFrame(out["clean_rows"])
    assert list(rows.method) == ["bicubic", "one model per video", "Dy-DCA"]
    assert rows.parameters.iloc[0] == 0 and (rows.parameters.iloc[1:] > 0).all()
    assert rows.routing_map_bytes.iloc[2] > 0 and rows.stream_bytes.nunique() == 1
    assert list(clean.method) == ["one model per video", "Dy-DCA"] and set(clean.trained_on) == {"clean LR"}
    # the decoded LR frames are cached beside the clip's frames, keyed by the encoding
    folders = sorted((tmp_root / "data" / "frames" / "encoded").iterdir())
    assert len(folders) == 1 and "x264-crf40-ultrafast" in folders[0].name and (folders[0] / "stream.json").exists()
    again = D.point_cell(specs[1])
    assert again["rows"] == out["rows"]
    cv = D.clean_vs_decoded(rows, clean)
    assert list(cv.method) == ["one model per video", "Dy-DCA"] and "loss_db" in cv


def test_vmaf_is_near_100_for_the_reference_and_lower_for_noise_and_blur():
    import cv2

    rng = np.random.default_rng(0)
    ref = np.stack([cv2.GaussianBlur(rng.integers(0, 256, (72, 96, 3), dtype=np.uint8), (5, 5), 2) for _ in range(4)])
    noisy = np.clip(ref.astype(int) + rng.integers(-20, 21, ref.shape), 0, 255).astype(np.uint8)
    blurred = np.stack([cv2.GaussianBlur(f, (7, 7), 3) for f in ref])
    same, noise, blur = (C.vmaf(ref, d, 24.0) for d in (ref, noisy, blurred))
    assert same["vmaf"] > 95 and len(same["vmaf_frames"]) == 4
    assert blur["vmaf"] < noise["vmaf"] < same["vmaf"] - 5
    assert noise["vmaf_min"] <= noise["vmaf"]
    with pytest.raises(ValueError, match="one shape"):
        C.vmaf(ref, ref[:, :70], 24.0)


class _Shipped:
    """A stand-in trained method: two 16-feature WDSR units (int8 needs 16-channel multiples)."""

    name = "two units"

    def __init__(self):
        import torch

        from dydca_lib.models import WDSR

        torch.manual_seed(0)
        self.nets = {u: WDSR(scale=2, n_blocks=1, n_feats=16, expansion=2).eval() for u in (0, 1)}

    def models(self):
        return {str(u): m for u, m in self.nets.items()}

    def units(self):
        return dict(self.nets)


def test_shipped_model_bytes_fp16_int8_and_compression():
    from dydca_lib.models import count_parameters

    m = _Shipped()
    params = sum(count_parameters(n) for n in m.nets.values())
    cal = {u: [np.random.default_rng(u).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)] for u in (0, 1)}
    fp16_raw = D.shipped_model_bytes(m, "fp16", "none")
    fp16 = D.shipped_model_bytes(m, "fp16", "lzma")
    int8 = D.shipped_model_bytes(m, "int8", "lzma", cal)
    assert 2 * params <= fp16_raw < 2 * params + 8192  # fp16 numbers plus the npz headers (~200 bytes an array)
    assert fp16 < fp16_raw  # entropy coding helps (random init: a little)
    assert int8 < fp16  # one byte per weight, zero padding compressed away
    with pytest.raises(ValueError, match="calibration patches for units"):
        D.shipped_model_bytes(m, "int8", "lzma", {0: cal[0]})
    with pytest.raises(ValueError, match="one of fp16, int8"):
        D.shipped_model_bytes(m, "fp32")
