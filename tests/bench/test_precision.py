"""Reduced precision on the client (dydca_lib.bench.precision) on tiny shapes: what runs where,
the peaks, int8 calibration data, quality through the engines, and the tables and headline from
known numbers. No timing is asserted."""

import time

import numpy as np
import pandas as pd
import pytest
import torch

from dydca_lib.bench import ondevice
from dydca_lib.bench import precision as PR
from dydca_lib.client.plan import Workload, plans_from_manifest
from dydca_lib.models import WDSR
from dydca_lib.runinfo import cpu_flags
from dydca_lib.video import bicubic_resize


def test_support_table_lists_what_runs_here_and_what_is_not_built():
    t = PR.support_table(["torch_batched", "torch_batched_bf16", "onnxruntime_int8", "tvm_int8"],
                         flags={"avx512f", "avx512_bf16", "avx_vnni"})
    built = t[t.built].set_index("runtime")
    assert built.loc["torch_batched_bf16", "runs_here"] and built.loc["torch_batched", "precision"] == "fp32"
    assert built.loc["onnxruntime_int8", "runs_here"]  # 256-bit VNNI is enough for MLAS
    assert not built.loc["tvm_int8", "runs_here"] and "avx512_vnni" in built.loc["tvm_int8", "note"]
    missing = t[~t.built]
    assert ("tvm", "bf16") in set(zip(missing.runtime, missing.precision))  # no AMX in these flags
    assert not {("tvm", "int8"), ("torch", "int8")} & set(zip(missing.runtime, missing.precision))
    assert PR.runnable(["torch_ref", "onnxruntime_int8", "torch_batched_bf16"], flags=set()) == ["torch_ref"]
    amx = PR.support_table(["tvm_amx_bf16"], flags={"avx512f", "amx_tile", "amx_bf16"})
    assert amx.iloc[0].runs_here and ("tvm", "bf16") not in set(zip(amx[~amx.built].runtime, amx[~amx.built].precision))


def test_matmul_peaks_measure_each_precision_the_cpu_has():
    only_fp32 = PR.matmul_peaks(n=64, repeats=1, threads=1, flags=set())
    assert set(only_fp32) == {"fp32"} and only_fp32["fp32"]["peak_gflops"] > 0
    every = PR.matmul_peaks(n=64, repeats=1, threads=1, flags={"avx512_bf16", "avx512_vnni"})
    assert set(every) == {"fp32", "bf16", "int8"}
    assert all(v["peak_gflops"] >= v["median_gflops"] > 0 for v in every.values())


class _Frames:
    """A 3-frame clip: LR random texture, HR its bicubic x2 (any SR lands near it)."""

    scale = 2

    def __init__(self):
        self._lr = {i: np.random.default_rng(i).integers(0, 256, size=(16, 20, 3), dtype=np.uint8) for i in range(3)}

    def lr(self, i):
        return self._lr[i]

    def hr(self, i):
        return bicubic_resize(self._lr[i], (32, 40))


class _Data:
    frames = _Frames()


class _Method:
    """A prepared whole-frame method: one model per chunk (frames 0, 1 in chunk 0, frame 2 in 1)."""

    name, key, context = "one model per chunk", "per_chunk", 0

    def __init__(self):
        torch.manual_seed(0)
        self._units = {0: WDSR(scale=2, n_blocks=1, n_feats=4).eval(), 1: WDSR(scale=2, n_blocks=1, n_feats=4).eval()}

    def units(self):
        return self._units

    def dynamic_model(self):
        return None

    def frame_manifest(self, ids):
        return pd.DataFrame({"frame": list(ids), "y": 0, "x": 0, "h": 16, "w": 20, "path": [int(i == 2) for i in ids]})


def test_calibration_batches_group_training_patches_by_unit():
    cal = PR.calibration_batches(_Method(), _Data(), [0, 1, 2], context=0, per_unit=8)
    assert sorted(cal) == [0, 1]
    assert sum(len(b) for b in cal[0]) == 2 and sum(len(b) for b in cal[1]) == 1
    assert all(b.dtype == np.uint8 and b.shape[1:] == (16, 20, 3) for bs in cal.values() for b in bs)


def test_quality_through_each_engine_against_fp32(tmp_path):
    m, data = _Method(), _Data()
    ids = [0, 1, 2]
    wl = Workload("clip 20x16", {i: data.frames.lr(i) for i in ids},
                  plans_from_manifest(m.frame_manifest(ids), ids), {0: 0, 1: 0, 2: 1})
    cal = {"per_chunk": PR.calibration_batches(m, data, ids, context=0)}
    cfgs = ondevice.build_configs({"per_chunk": m}, {("per_chunk", "clip 20x16"): wl},
                                  ["torch_batched", "onnxruntime", "torch_batched_bf16", "onnxruntime_int8"], [],
                                  "clip 20x16", tmp_path, scale=2, calibration=cal)
    q = PR.quality_table(cfgs, {"per_chunk": m}, data, [1, 2], threads=1, resolution="clip 20x16",
                         progress=False).set_index("runtime")
    assert list(q.precision) == ["fp32", "fp32", "bf16", "int8"] and (q.frames == 2).all()
    assert (q.reference == "torch_batched").all() and q.loc["torch_batched", "d_psnr_rgb_db"] == 0
    assert abs(q.loc["onnxruntime", "d_psnr_rgb_db"]) < 0.01  # fp32 peers: float noise only
    for rt in ("torch_batched_bf16", "onnxruntime_int8"):  # a rounding cost, not a broken model
        assert 0 < abs(q.loc[rt, "d_psnr_rgb_db"]) < 3 and q.loc[rt, "frame_psnr_rgb"] > 20


def test_precision_table_and_fastest_client_within_tolerance():
    clip, hd = "clip 360x198", "540p 960x540->1920x1080"
    lat = pd.DataFrame([
        ("Dy-DCA", "torch_batched", clip, 10.0, 100.0, 20.0), ("Dy-DCA", "onnxruntime", clip, 12.0, 83.0, 24.0),
        ("Dy-DCA", "torch_batched_bf16", clip, 30.0, 33.0, 72.0), ("Dy-DCA", "onnxruntime_int8", clip, 40.0, 25.0, 96.0),
        ("Dy-DCA", "torch_batched", hd, 1.0, 1000.0, 20.0), ("Dy-DCA", "torch_batched_bf16", hd, 3.5, 285.0, 70.0),
        ("Dy-DCA", "onnxruntime_int8", hd, 4.0, 250.0, 80.0), ("Dy-DCA", "tvm_winograd", hd, 2.0, 500.0, 40.0)],
        columns=["method", "runtime", "resolution", "fps", "median_ms", "achieved_gflops"])
    quality = PR.with_fp32_deltas(pd.DataFrame([
        ("Dy-DCA", "torch_batched", "fp32", 40.0, 42.0, 0.98), ("Dy-DCA", "onnxruntime", "fp32", 40.001, 42.0, 0.98),
        ("Dy-DCA", "torch_batched_bf16", "bf16", 39.97, 41.98, 0.98), ("Dy-DCA", "tvm_winograd", "fp32", 40.0, 42.0, 0.98),
        ("Dy-DCA", "onnxruntime_int8", "int8", 39.5, 41.4, 0.97)],
        columns=["method", "runtime", "precision", "frame_psnr_rgb", "frame_psnr_y", "frame_ssim_y"]))
    peaks = {"fp32": {"peak_gflops": 200.0}, "bf16": {"peak_gflops": 400.0}, "int8": {"peak_gflops": 800.0}}
    t = PR.precision_table(lat, quality, peaks)
    bf = t[(t.runtime == "torch_batched_bf16") & (t.resolution == clip)].iloc[0]
    assert bf.share_of_precision_peak == pytest.approx(72 / 400) and bf.within_tolerance
    assert bf.d_psnr_rgb_db == pytest.approx(-0.03)
    assert not t[t.runtime == "onnxruntime_int8"].within_tolerance.any()  # 0.5 dB: too costly
    best = PR.fastest_within_tolerance(t, "Dy-DCA")
    assert best["clip"]["fastest_fp32"] == {"runtime": "onnxruntime", "fps": 12.0}
    assert best["clip"]["fastest_within_tolerance"]["runtime"] == "torch_batched_bf16"
    assert best["clip"]["speedup_vs_fastest_fp32"] == 2.5
    assert best["clip"]["speedup_vs_fastest_fp32_peer"] == 2.5  # the fastest fp32 client is a peer
    # at 540p the fastest fp32 client is TVM's; the peers' fastest (PyTorch, 1 FPS) is the other reference
    assert best["540p"]["fastest_fp32"] == {"runtime": "tvm_winograd", "fps": 2.0}
    assert best["540p"]["speedup_vs_fastest_fp32"] == 1.75  # the 540p rows take the clip's PSNR change
    assert best["540p"]["fastest_fp32_peer"] == {"runtime": "torch_batched", "fps": 1.0}
    assert best["540p"]["speedup_vs_fastest_fp32_peer"] == 3.5
    assert best["540p"]["fastest_reduced_any_quality"]["runtime"] == "onnxruntime_int8"
    # the strongest peer in any precision within tolerance: oneDNN bf16 (ONNX Runtime int8 loses 0.5 dB)
    assert best["540p"]["fastest_peer_within_tolerance"] == {"runtime": "torch_batched_bf16", "precision": "bf16", "fps": 3.5}
    assert best["540p"]["speedup_vs_fastest_peer_within_tolerance"] == 1.0
    assert best["540p"]["fps_by_runtime"]["tvm_winograd"] == 2.0


def test_path_table_runs_one_path_through_each_engine(tmp_path):
    from dydca_lib.compiler import StaticShape

    torch.manual_seed(0)
    path = WDSR(scale=2, n_blocks=1, n_feats=16, expansion=2).eval()
    rng = np.random.default_rng(0)
    lr = rng.integers(0, 256, (2, 10, 12, 3), dtype=np.uint8)
    cal = [rng.integers(0, 256, (4, 10, 12, 3), dtype=np.uint8)]
    runtimes = PR.runnable(["onnxruntime", "onnxruntime_int8", "tvm_int8", "tvm_amx_int8", "tvm_amx_bf16"])
    t = PR.path_table(path, StaticShape(0, 10, 12, 2), lr, cal, runtimes, threads=1, work_dir=tmp_path, context=2,
                      peaks={"fp32": {"peak_gflops": 100.0}, "int8": {"peak_gflops": 400.0}}, number=1, repeat=2)
    assert t.runtime.tolist() == runtimes  # the fp32 PyTorch reference is left out unless asked for
    by = t.set_index("runtime")
    assert by.loc["onnxruntime", "max_diff_levels"] <= 1 and (t.median_ms > 0).all()
    assert by.loc["onnxruntime", "share_of_precision_peak"] == pytest.approx(by.loc["onnxruntime", "gflops"] / 100.0)
    for rt in ("onnxruntime_int8", "tvm_int8", "tvm_amx_int8"):  # quantization error only: a few levels at most
        if rt in by.index:
            assert by.loc[rt, "precision"] == "int8" and by.loc[rt, "mean_diff_levels"] < 1.0
    if "tvm_amx_bf16" in by.index:  # bf16 rounding only
        assert by.loc["tvm_amx_bf16", "precision"] == "bf16" and by.loc["tvm_amx_bf16", "max_diff_levels"] <= 1
    with pytest.raises(ValueError, match="uint8 patches"):
        PR.path_table(path, StaticShape(0, 10, 12, 2), lr[:1], cal, runtimes, 1, tmp_path, 2)


@pytest.mark.skipif("avx512_vnni" not in cpu_flags(), reason="the int8 kernels use AVX-512 VNNI")
def test_kernel_table_times_each_kernel_of_a_path_once_per_distinct_kernel():
    from dydca_lib.compiler import StaticShape
    from dydca_lib.compiler import int8 as Q

    path = WDSR(scale=2, n_blocks=2, n_feats=16, expansion=2).eval()
    mod = Q.schedule_int8_module(Q.int8_module(path.config, [StaticShape(0, 10, 12, 2)]))
    t = PR.kernel_table(mod, Q.int8_target(), {"int8": {"peak_gflops": 100.0}}, number=1, repeat=1).set_index("kernel")
    relu = next(k for k in t.index if k.startswith("qconv_relu"))
    assert t.loc[relu, "calls"] == 2 and t.loc[relu, "precision"] == "int8"  # one per residual block
    assert t.loc[relu, "gop_per_call"] == pytest.approx(2 * 2 * 10 * 12 * 16 * 32 * 9 / 1e9)
    assert t.loc[relu, "share_of_precision_peak"] == pytest.approx(t.loc[relu, "gops"] / 100.0)
    assert np.isnan(t.loc["from_uint8", "gops"]) and t.share_of_path.sum() == pytest.approx(1.0)
    skip = next(k for k in t.index if k.startswith("conv_skip"))
    assert t.loc[skip, "precision"] == "fp32" and t.loc[skip, "gop_per_call"] == pytest.approx(2 * 2 * 10 * 12 * 3 * 12 * 25 / 1e9)


def test_warm_up_calls_at_least_the_calls_and_for_at_least_the_seconds():
    from dydca_lib.bench.timing import warm_up

    calls = []
    warm_up(lambda: calls.append(1), calls=3)
    assert len(calls) == 3
    calls.clear()
    t0 = time.perf_counter()
    warm_up(lambda: (calls.append(1), time.sleep(0.01)), calls=1, seconds=0.05)
    assert time.perf_counter() - t0 >= 0.05 and 4 <= len(calls) <= 8
