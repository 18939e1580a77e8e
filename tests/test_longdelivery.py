"""Delivery on long content (dydca_lib.longdelivery) and the frame-by-frame codec helpers, on a
tiny synthetic video."""

import cv2
import numpy as np
import pytest

from dydca_lib import codec as C
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
