"""The on-device benchmark layer (dydca_lib.ondevice) on tiny shapes: ONNX export, the full-frame
pipeline of every runtime against evaluate.super_resolve_patches + stitch, model switching,
manifests carried to another resolution, FLOP counts, and the fresh-process / sgemm helpers.
No timing is asserted anywhere."""

import os

os.environ.setdefault("TVM_NUM_THREADS", "2")

import numpy as np
import pandas as pd
import pytest
import torch

from dydca_lib import evaluate as E
from dydca_lib import ondevice as O
from dydca_lib import patches as P
from dydca_lib.models import DynamicWDSR, WDSR, fold_weight_norm

SCALE, CONTEXT = 2, 2


def tiny_dynamic(seed=0):
    torch.manual_seed(seed)
    m = DynamicWDSR(scale=SCALE, paths=[{"n_blocks": 1}, {"n_blocks": 0}], n_feats=4, expansion=2,
                    routing=[(4, 4, 0), (8, 8, 1)])
    with torch.no_grad():  # make the residual branch matter (the default init is near-bicubic)
        for p in m.paths:
            p.tail.parametrizations.weight.original0.mul_(10.0)
    return m.eval()


def tiny_manifest(frames=(0,)):
    """A 14x18 LR frame under a pad-policy grid of 8x8 coarse / 4x4 fine cells: every other coarse
    cell split, border cells hanging over the frame."""
    geom = P.PatchGeometry(14, 18, 4, 4, levels=2)
    rows = []
    for f in frames:
        for k, c in enumerate(geom.cells(0).itertuples()):
            if (k + f) % 2:
                rows.append({"frame": f, "y": c.y, "x": c.x, "h": 8, "w": 8, "level": 0, "path": 1})
            else:
                fine = geom.cells(1)
                fine = fine[(fine.y // 8 == c.y // 8) & (fine.x // 8 == c.x // 8)]
                rows += [{"frame": f, "y": r.y, "x": r.x, "h": 4, "w": 4, "level": 1, "path": 0} for r in fine.itertuples()]
    return geom, pd.DataFrame(rows).sort_values(["frame", "y", "x"]).reset_index(drop=True)


def reference_frame(model, lr, manifest):
    """What notebook 03/04's evaluation produces: super_resolve_patches + stitch, PyTorch."""
    sr = E.super_resolve_patches(E.model_upscaler(model, routed=True), lr, manifest, SCALE, CONTEXT)
    covered = (min(lr.shape[0], int((manifest.y + manifest.h).max())) * SCALE,
               min(lr.shape[1], int((manifest.x + manifest.w).max())) * SCALE)
    return P.stitch(sr, manifest, covered, SCALE)


@pytest.fixture(scope="module")
def setup():
    model = tiny_dynamic()
    geom, manifest = tiny_manifest()
    lr = np.random.default_rng(0).integers(0, 256, size=(14, 18, 3), dtype=np.uint8)
    wl = O.Workload("tiny", {0: lr}, O.plans_from_manifest(manifest, [0]), {0: 0})
    return model, manifest, lr, wl


def test_onnx_export_matches_pytorch(tmp_path):
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    torch.manual_seed(1)
    wdsr = WDSR(scale=2, n_blocks=1, n_feats=4, expansion=2).eval()
    f = tmp_path / "p.onnx"
    assert O.export_onnx(wdsr, f) > 0
    sess = ort.InferenceSession(str(f), providers=["CPUExecutionProvider"])
    for shape in [(1, 3, 8, 8), (3, 3, 12, 10)]:  # dynamic batch, H and W
        x = torch.rand(*shape)
        with torch.no_grad():
            want = wdsr(x).numpy()
        got = sess.run(None, {"x": x.numpy()})[0]
        assert got.shape == want.shape
        assert np.abs(got - want).max() < 1e-4


@pytest.mark.parametrize("runtime", list(O.RUNTIMES))
def test_full_frame_pipeline_matches_evaluate(setup, runtime, tmp_path):
    if runtime in O.CUDA_RUNTIMES and not torch.cuda.is_available():
        pytest.skip("no CUDA GPU here")
    model, manifest, lr, wl = setup
    want = reference_frame(model, lr, manifest)
    units = {p: m for p, m in enumerate(model.paths)}
    bundle = O.export_bundle(units, runtime, tmp_path / runtime, scale=SCALE, context=CONTEXT, plans=wl.plans,
                             dynamic=model, routing=O.size_routing(wl), tuned=False, cache_dir=tmp_path / "cache")
    client = O.Client(bundle, wl, threads=2)
    sr, switch_ms, compute_ms = client.frame(0)
    assert sr.shape == want.shape == (28, 36, 3) and sr.dtype == np.uint8
    assert switch_ms == 0 and compute_ms > 0
    diff = np.abs(sr.astype(int) - want.astype(int))
    if runtime in ("torch_ref", "torch_batched"):
        assert diff.max() == 0  # same arithmetic as the evaluation path
    else:  # float noise (~1e-6) may flip a rounding to the next 8-bit level
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01
    rows = client.run(passes=1, warmup=1)
    assert len(rows) == 1 and rows[0]["total_ms"] > 0


def test_cuda_runtime_without_a_gpu_is_a_clear_error(setup, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    model, manifest, lr, wl = setup
    bundle = O.export_bundle({p: m for p, m in enumerate(model.paths)}, "torch_batched_cuda", tmp_path, scale=SCALE,
                             context=CONTEXT, plans=wl.plans)
    assert bundle["runtime"] == "torch_batched_cuda" and bundle["device"] == "cuda"
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        O.Client(bundle, wl, threads=1)


def test_gpu_companion_reads_notebook_06_parameters_of_a_profile():
    from dydca_lib import gpu

    smoke, default = gpu.notebook06_parameters("smoke"), gpu.notebook06_parameters("default")
    assert smoke["max_frames"] == 50 and smoke["bench_frames"] == 2  # the notebook's own defaults
    assert default["max_frames"] == 40 and default["video"] == "cityCC0" and default["bench_frames"] == 6


def test_reference_routes_by_size_one_patch_at_a_time(setup, tmp_path):
    model, manifest, lr, wl = setup
    bundle = O.export_bundle({p: m for p, m in enumerate(model.paths)}, "torch_ref", tmp_path, scale=SCALE,
                             context=CONTEXT, dynamic=model, routing=O.size_routing(wl))
    client = O.Client(bundle, wl, threads=1)
    assert client.one_at_a_time and client.engine.routes_by_size
    assert client.engine.route(4, 4) == 0 and client.engine.route(8, 8) == 1


def test_switching_client_loads_each_chunk_model(tmp_path):
    torch.manual_seed(0)
    units = {0: WDSR(scale=2, n_blocks=1, n_feats=4).eval(), 1: WDSR(scale=2, n_blocks=1, n_feats=4).eval()}
    lr = {i: np.random.default_rng(i).integers(0, 256, size=(10, 12, 3), dtype=np.uint8) for i in range(3)}
    man = pd.DataFrame({"frame": [0, 1, 2], "y": 0, "x": 0, "h": 10, "w": 12, "path": [0, 0, 1]})
    wl = O.Workload("chunks", lr, O.plans_from_manifest(man, [0, 1, 2]), {0: 0, 1: 0, 2: 1})
    assert O.switches(units, wl)
    bundle = O.export_bundle(units, "torch_batched", tmp_path, scale=2, context=0)
    client = O.Client(bundle, wl, threads=1, switching=True)
    assert client.engine.loaded == set()
    rows = client.run(passes=2, warmup=0)
    sw = [r["switch_ms"] > 0 for r in rows]
    assert sw == [True, False, True, True, False, True]  # chunk 0 -> 0 -> 1, then back to 0 ...
    assert client.engine.loaded == {1}
    for i, u in zip(range(3), [0, 0, 1]):  # each frame through its chunk's model
        with torch.no_grad():
            from dydca_lib.models import super_resolve
            assert np.array_equal(client.frame(i)[0], super_resolve(fold_weight_norm(units[u]), lr[i]))
    cost = O.switch_cost(bundle, [0, 1], threads=1, repeats=1)
    assert cost["load_ms_median"] > 0 and cost["unit_weight_bytes"] > 0


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
    out = O.transfer_manifest(src_m, src, dst)
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
    assert O.wdsr_flops(m.config, 10, 12) == fc.get_total_flops()


def test_split_batch_matches_compile():
    from dydca_lib import compile as C

    for n in range(1, 40):
        assert O.split_batch(n, [1, 2, 4, 8, 16]) == C.split_batch(n, [1, 2, 4, 8, 16])


def test_fresh_process_peak_rss_is_positive():
    small = O.fresh_process("pass")
    big = O.fresh_process("buf = b'x' * 60_000_000")
    assert small["peak_rss_bytes"] > 0 and small["wall_s"] > 0
    # the child's own peak, not the parent's high-water mark (which Linux carries into ru_maxrss)
    assert 40_000_000 < big["peak_rss_bytes"] - small["peak_rss_bytes"] < 120_000_000


def test_sgemm_peak_is_positive():
    out = O.sgemm_peak(n=128, repeats=2, threads=1)
    assert out["peak_gflops"] > 0 and out["median_gflops"] > 0 and out["threads"] == 1


@pytest.mark.parametrize("runtime", ["onnxruntime", "tvm"])
def test_memory_child_runs_without_torch(setup, runtime, tmp_path):
    model, manifest, lr, wl = setup
    units = {p: m for p, m in enumerate(model.paths)}
    bundle = O.export_bundle(units, runtime, tmp_path / runtime, scale=SCALE, context=CONTEXT, plans=wl.plans,
                             tuned=False, cache_dir=tmp_path / "cache")
    out = O.measure_memory(bundle, wl.save(tmp_path / "wl"), threads=1, switching=False, frames=1)
    assert out["torch_imported"] is False
    assert out["peak_rss_bytes"] >= out["rss_loaded_bytes"] >= out["rss_runtime_bytes"] > out["rss_start_bytes"] > 0


def test_gpu_training_guard_refuses_or_records_and_restores():
    from dydca_lib import gpu, train

    original = train.fit
    with gpu.training_guard(False):
        with pytest.raises(RuntimeError, match="only loads cached models"):
            train.fit(None, None, None, desc="x")
    assert train.fit is original
    with gpu.training_guard(True) as trained:
        with pytest.raises(Exception):
            train.fit(None, None, None, desc="m0")  # the real fit, on nonsense input
    assert trained == ["m0"] and train.fit is original
