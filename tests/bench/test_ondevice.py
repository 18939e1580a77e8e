"""The on-device benchmark (dydca_lib.bench: ondevice, workloads, memory, timing, gpu) on tiny
shapes: manifests carried to another resolution, FLOP counts, fresh-process and sgemm helpers,
switch cost, the tables and the headline from known latencies. No timing is asserted anywhere."""

import os

os.environ.setdefault("TVM_NUM_THREADS", "2")

import numpy as np
import pandas as pd
import pytest
import torch

from dydca_lib import patches as P
from dydca_lib.bench import gpu, memory, ondevice, timing, workloads
from dydca_lib.client.bundle import export_bundle
from dydca_lib.client.plan import Workload, plans_from_manifest
from dydca_lib.models import WDSR, fold_weight_norm

from ..client.helpers import CONTEXT, SCALE, tiny_workload


@pytest.fixture(scope="module")
def setup():
    return tiny_workload()


def test_gpu_companion_reads_notebook_06_parameters_of_a_profile():
    smoke, default = gpu.notebook06_parameters("smoke"), gpu.notebook06_parameters("default")
    assert smoke["max_frames"] == 50 and smoke["bench_frames"] == 2  # the notebook's own defaults
    assert default["max_frames"] == 40 and default["video"] == "cityCC0" and default["bench_frames"] == 6


def test_transfer_manifest_same_grid_copies_decisions():
    src = P.PatchGeometry.from_grid((20, 36), 4, 8, levels=2)
    dst = P.PatchGeometry.from_grid((54, 96), 4, 8, levels=2)
    coarse = src.cells(0)
    rows = []
    for k, c in enumerate(coarse.itertuples()):
        if k % 3 == 0:
            fine = src.cells(1)
            fine = fine[(fine.y // c.h == c.row) & (fine.x // c.w == c.col)]
            rows += [{"frame": 5, "y": r.y, "x": r.x, "h": r.h, "w": r.w, "level": 1, "path": 0} for r in fine.itertuples()]
        else:
            rows.append({"frame": 5, "y": c.y, "x": c.x, "h": c.h, "w": c.w, "level": 0, "path": 1})
    src_m = pd.DataFrame(rows)
    out = workloads.transfer_manifest(src_m, src, dst)
    assert set(out.frame) == {5}
    assert sorted(map(tuple, out[["h", "w"]].drop_duplicates().to_numpy())) == [(14, 12), (28, 24)]
    assert out.level.value_counts().to_dict() == src_m.level.value_counts().to_dict()
    covered = np.zeros(dst.grid_hw, dtype=int)
    for r in out.itertuples():
        covered[r.y:r.y + r.h, r.x:r.x + r.w] += 1
    assert (covered == 1).all()  # the leaves tile the grid once
    assert (out.path == 1 - out.level).all()


def test_wdsr_flops_match_torch_counter():
    from torch.utils.flop_counter import FlopCounterMode

    m = fold_weight_norm(WDSR(scale=3, n_blocks=2, n_feats=8, expansion=3)).eval()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        m(torch.rand(1, 3, 10, 12))
    assert timing.wdsr_flops(m.config, 10, 12) == fc.get_total_flops()


def test_fresh_process_peak_rss_is_positive():
    small = memory.fresh_process("pass")
    big = memory.fresh_process("buf = b'x' * 60_000_000")
    assert small["peak_rss_bytes"] > 0 and small["wall_s"] > 0
    # the child's own peak, not the parent's high-water mark (which Linux carries into ru_maxrss)
    assert 40_000_000 < big["peak_rss_bytes"] - small["peak_rss_bytes"] < 120_000_000


def test_sgemm_peak_is_positive():
    out = timing.sgemm_peak(n=128, repeats=2, threads=1)
    assert out["peak_gflops"] > 0 and out["median_gflops"] > 0 and out["threads"] == 1


@pytest.mark.parametrize("runtime", ["onnxruntime", "tvm", "onnxruntime_int8"])
def test_memory_child_runs_without_torch(setup, runtime, tmp_path):
    model, manifest, lr, wl = setup
    units = {p: m for p, m in enumerate(model.paths)}
    calibration = {p: [np.random.default_rng(p).integers(0, 256, size=(4, s, s, 3), dtype=np.uint8)]
                   for p, s in ((0, 8), (1, 12))}
    bundle = export_bundle(units, runtime, tmp_path / runtime, scale=SCALE, context=CONTEXT, plans=wl.plans,
                             tuned=False, cache_dir=tmp_path / "cache", calibration=calibration)
    out = memory.measure_memory(bundle, wl.save(tmp_path / "wl"), threads=1, switching=False, frames=1)
    assert out["torch_imported"] is False
    assert out["peak_rss_bytes"] >= out["rss_loaded_bytes"] >= out["rss_runtime_bytes"] > out["rss_start_bytes"] > 0


def test_memory_child_of_a_bf16_client_runs_in_torch(setup, tmp_path):
    model, manifest, lr, wl = setup
    bundle = export_bundle({p: m for p, m in enumerate(model.paths)}, "torch_batched_bf16", tmp_path / "bf16",
                           scale=SCALE, context=CONTEXT)
    out = memory.measure_memory(bundle, wl.save(tmp_path / "wl"), threads=1, switching=False, frames=1)
    assert out["torch_imported"] is True and out["peak_rss_bytes"] >= out["rss_loaded_bytes"] > 0
    assert memory.runtime_module("onnxruntime_int8") == "onnxruntime"
    with pytest.raises(ValueError, match="runtime must be one of"):
        memory.runtime_module("coreml")


def test_gpu_training_guard_refuses_or_records_and_restores():
    from dydca_lib import train

    original = train.fit
    with gpu.training_guard(False):
        with pytest.raises(RuntimeError, match="only loads cached models"):
            train.fit(None, None, None, desc="x")
    assert train.fit is original
    with gpu.training_guard(True) as trained:
        with pytest.raises(AttributeError, match="device"):
            train.fit(None, None, None, desc="m0")  # the real fit: it reads cfg.device of cfg=None
    assert trained == ["m0"] and train.fit is original


# ---------------------------------------------------------------- tables and headline from known numbers

class _Method:
    """Stands for a prepared method: a name and its units."""

    def __init__(self, name, units, context=0):
        self.name, self._units, self.context = name, units, context

    def units(self):
        return self._units

    def dynamic_model(self):
        return None


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
    """Two methods x two runtimes on three frames: one model per video, and one model per chunk
    (two chunks, so its client switches)."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("configs")
    lr = {i: np.random.default_rng(i).integers(0, 256, size=(10, 12, 3), dtype=np.uint8) for i in range(3)}
    video = {0: WDSR(scale=2, n_blocks=1, n_feats=4).eval()}
    chunk = {0: WDSR(scale=2, n_blocks=1, n_feats=4).eval(), 1: WDSR(scale=2, n_blocks=1, n_feats=4).eval()}
    methods = {"per_video": _Method("one model per video", video), "per_chunk": _Method("one model per chunk", chunk)}
    wls = {}
    for key, path in (("per_video", [0, 0, 0]), ("per_chunk", [0, 0, 1])):
        man = pd.DataFrame({"frame": [0, 1, 2], "y": 0, "x": 0, "h": 10, "w": 12, "path": path})
        wls[(key, "clip 12x10")] = Workload("clip 12x10", lr, plans_from_manifest(man, [0, 1, 2]), {0: 0, 1: 0, 2: 1})
    cfgs = ondevice.build_configs(methods, wls, ["torch_ref", "torch_batched"], [], "clip 12x10", folder, scale=2)
    return methods, cfgs


def test_configs_tables_and_switch_cost(configs):
    methods, cfgs = configs
    assert [(c.key, c.runtime, c.switching) for c in cfgs] == [
        ("per_video", "torch_ref", False), ("per_video", "torch_batched", False),
        ("per_chunk", "torch_ref", True), ("per_chunk", "torch_batched", True)]
    wt = ondevice.workload_table(cfgs).set_index("method")
    flops = timing.wdsr_flops(methods["per_video"].units()[0].config, 10, 12) / 1e9
    assert wt.loc["one model per video", "gflop_per_frame"] == pytest.approx(flops)
    assert wt.loc["one model per chunk", "networks"] == 2 and wt.loc["one model per chunk", "switches_models"]
    per_frame, startup, outputs = ondevice.time_configs(cfgs, threads=1, passes=1, warmup=1, progress=False)
    check = ondevice.check_outputs(cfgs, {"per_video": _Reference(methods["per_video"]),
                                          "per_chunk": _Reference(methods["per_chunk"])}, outputs)
    assert (check.max_abs_diff == 0).all()  # PyTorch runtimes: the evaluation path's arithmetic
    sw = ondevice.switching_table(cfgs, per_frame, threads=1, repeats=1).set_index(["method", "runtime"])
    chunked = sw.loc[("one model per chunk", "torch_batched")]
    assert chunked.switches_timed == 1  # chunk 0 -> chunk 1 once in three frames (the warm-up loaded chunk 0)
    assert chunked.resident_weight_bytes == chunked.unit_weight_bytes  # a switching client holds one model
    assert chunked.load_ms_median > 0


class _Reference:
    """The method's evaluation-path upscaler (what notebooks 03/04 score) for check_outputs."""

    def __init__(self, method):
        self.method = method

    def upscaler(self):
        from dydca_lib.evaluate import model_upscaler

        ups = {p: model_upscaler(m, routed=False) for p, m in self.method.units().items()}
        return lambda patches, path: ups[path](patches, path)


def _latency(rows):
    cols = ["method", "runtime", "resolution", "median_ms", "fps", "achieved_gflops", "share_of_sgemm_peak"]
    return pd.DataFrame(rows, columns=cols)


def test_headline_ratios_from_known_latencies():
    clip = "clip 360x198"
    lat = _latency([("Dy-DCA", "torch_ref", clip, 400.0, 2.5, 1.0, 0.01), ("Dy-DCA", "tvm", clip, 100.0, 10.0, 40.0, 0.4),
                    ("Dy-DCA", "onnxruntime", clip, 50.0, 20.0, 80.0, 0.8),
                    ("Dy-DCA", "torch_batched", clip, 200.0, 5.0, 20.0, 0.2),
                    ("Dy-DCA", "tvm", "540p 960x540->1920x1080", 1000.0, 1.0, 40.0, 0.4),
                    ("Dy-DCA", "onnxruntime", "540p 960x540->1920x1080", 500.0, 2.0, 80.0, 0.8)])
    mem = pd.DataFrame({"method": ["Dy-DCA", "Dy-DCA", "STDO k=2", "STDO k=2"], "runtime": ["torch_ref", "tvm"] * 2,
                        "resolution": clip, "peak_rss_mib": [300.0, 100.0, 330.0, 125.0],
                        "above_runtime_mib": [30.0, 10.0, 33.0, 12.5]})
    sw = pd.DataFrame(columns=["method", "runtime", "resolution", "switching"])
    h = ondevice.headline(lat, mem, sw, {"peak_gflops": 100.0}, {"cpu": "x", "cores": 2, "threads": 2}, clip,
                          stdo="STDO k=2")
    assert h["fps_dydca_tvm"] == 10.0
    assert h["speedup_tvm_vs_torch_ref_dydca"] == 4.0 and h["speedup_tvm_vs_onnxruntime_dydca"] == 0.5
    assert h["speedup_tvm_vs_torch_batched_dydca"] == 2.0
    assert h["fps_dydca_540p"] == {"onnxruntime": 2.0, "tvm": 1.0}
    assert h["speedup_tvm_vs_onnxruntime_dydca_540p"] == 0.5 and "speedup_tvm_vs_torch_ref_dydca_540p" not in h
    assert h["memory_saving_tvm_vs_torch_ref_dydca"] == 3.0
    assert h["memory_ratio_stdo_vs_dydca_torch_ref"] == 1.1 and h["memory_ratio_stdo_vs_dydca_tvm"] == 1.25
    assert h["best_achieved_gflops"] == {"method": "Dy-DCA", "runtime": "onnxruntime", "gflops": 80.0,
                                         "share_of_sgemm_peak": 0.8}
    assert h["paper_claims"]["compiler_speedup"] == 1.7


def test_headline_takes_the_faster_tvm_client_at_each_size():
    clip, hd = "clip 360x198", "540p 960x540->1920x1080"
    lat = _latency([("Dy-DCA", "tvm", clip, 100.0, 10.0, 40.0, 0.4), ("Dy-DCA", "tvm_manual", clip, 40.0, 25.0, 100.0, 1.0),
                    ("Dy-DCA", "tvm_int8", clip, 10.0, 100.0, 400.0, 0.5),  # int8: not the fp32 comparison
                    ("Dy-DCA", "onnxruntime", clip, 50.0, 20.0, 80.0, 0.8),
                    ("Dy-DCA", "tvm_manual", hd, 400.0, 2.5, 100.0, 1.0), ("Dy-DCA", "onnxruntime", hd, 500.0, 2.0, 80.0, 0.8),
                    ("Dy-DCA", "torch_batched", hd, 800.0, 1.25, 50.0, 0.5)])
    sw = pd.DataFrame(columns=["method", "runtime", "resolution", "switching"])
    h = ondevice.headline(lat, pd.DataFrame(), sw, {"peak_gflops": 100.0}, {"cpu": "x", "cores": 2, "threads": 2}, clip)
    assert h["tvm_runtime"] == "tvm_manual" and h["fps_dydca_tvm"] == 25.0
    assert h["speedup_tvm_vs_onnxruntime_dydca"] == 1.25
    assert h["tvm_runtime_540p"] == "tvm_manual"
    assert h["speedup_tvm_vs_onnxruntime_dydca_540p"] == 1.25 and h["speedup_tvm_vs_torch_batched_dydca_540p"] == 2.0
