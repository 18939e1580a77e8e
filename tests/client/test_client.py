"""The client (dydca_lib.client) on tiny shapes: ONNX export, the full-frame pipeline of every
runtime against evaluate.super_resolve_patches + stitch, size routing, model switching, and that
a device without PyTorch can import it. No timing is asserted anywhere."""

import os

os.environ.setdefault("TVM_NUM_THREADS", "2")

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from dydca_lib.client import runtimes
from dydca_lib.client.bundle import UNIT_WRITERS, export_bundle, export_onnx
from dydca_lib.client.engines import ENGINES
from dydca_lib.client.runtimes import RUNTIMES, Runtime, names, precision_of, runtime, unsupported_reason
from dydca_lib.client.loop import Client
from dydca_lib.client.plan import Workload, plans_from_manifest, size_routing, switches
from dydca_lib.models import WDSR, fold_weight_norm, super_resolve

from .helpers import CONTEXT, SCALE, reference_frame, tiny_dynamic, tiny_workload


@pytest.fixture(scope="module")
def setup():
    return tiny_workload()


def test_onnx_export_matches_pytorch(tmp_path):
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    torch.manual_seed(1)
    wdsr = WDSR(scale=2, n_blocks=1, n_feats=4, expansion=2).eval()
    f = tmp_path / "p.onnx"
    assert export_onnx(wdsr, f) > 0
    sess = ort.InferenceSession(str(f), providers=["CPUExecutionProvider"])
    for shape in [(1, 3, 8, 8), (3, 3, 12, 10)]:  # dynamic batch, H and W
        x = torch.rand(*shape)
        with torch.no_grad():
            want = wdsr(x).numpy()
        got = sess.run(None, {"x": x.numpy()})[0]
        assert got.shape == want.shape
        assert np.abs(got - want).max() < 1e-4


LOW_PRECISION_TVM = [r for r in names(package="tvm") if precision_of(r) != "fp32"]


@pytest.mark.parametrize("runtime", list(RUNTIMES))
def test_full_frame_pipeline_matches_evaluate(setup, runtime, tmp_path):
    if runtime in names(device="cuda") and not torch.cuda.is_available():
        pytest.skip("no CUDA GPU here")
    if runtime in LOW_PRECISION_TVM and unsupported_reason(runtime) is not None:  # its code would not run here
        pytest.skip(unsupported_reason(runtime))
    model, manifest, lr, wl = setup
    if runtime in LOW_PRECISION_TVM:  # VNNI / AMX tiles need channel counts in multiples of 16
        model = tiny_dynamic(n_feats=16)
    want = reference_frame(model, lr, manifest)
    units = {p: m for p, m in enumerate(model.paths)}
    calibration = {p: [calibration_patches(h)] for p, h in enumerate((4, 8))}  # path 0 serves 4x4, path 1 8x8
    bundle = export_bundle(units, runtime, tmp_path / runtime, scale=SCALE, context=CONTEXT, plans=wl.plans,
                             dynamic=model, routing=size_routing(wl), tuned=False, cache_dir=tmp_path / "cache",
                             calibration=calibration)
    assert bundle["precision"] == precision_of(runtime)
    client = Client(bundle, wl, threads=2)
    sr, switch_ms, compute_ms = client.frame(0)
    assert sr.shape == want.shape == (28, 36, 3) and sr.dtype == np.uint8
    assert switch_ms == 0 and compute_ms > 0
    assert 0 < client.last_model_ms <= compute_ms  # inside the runtime's calls, part of the frame
    diff = np.abs(sr.astype(int) - want.astype(int))
    if runtime in ("torch_ref", "torch_batched"):
        assert diff.max() == 0  # same arithmetic as the evaluation path
    elif precision_of(runtime) != "fp32":  # rounding error of bf16 (8-bit mantissa) or int8, not a wrong pixel
        assert np.abs(sr.astype(float) - want).mean() < 3 and diff.max() < 40
    else:  # float noise (~1e-6) may flip a rounding to the next 8-bit level
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01
    rows = client.run(passes=1, warmup=1)
    assert len(rows) == 1 and rows[0]["total_ms"] > 0 and 0 < rows[0]["model_ms"] <= rows[0]["compute_ms"]


def calibration_patches(side, n=6, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, side + 2 * CONTEXT, side + 2 * CONTEXT, 3), dtype=np.uint8)


def test_reduced_precision_bundles_are_smaller_and_int8_needs_calibration(setup, tmp_path):
    model, manifest, lr, wl = setup
    units = {p: m for p, m in enumerate(model.paths)}
    fp32 = export_bundle(units, "torch_batched", tmp_path / "fp32", scale=SCALE, context=CONTEXT)
    bf16 = export_bundle(units, "torch_batched_bf16", tmp_path / "bf16", scale=SCALE, context=CONTEXT)
    for u in fp32["units"]:  # the trunk in bf16, the small skip conv in fp32
        assert fp32["units"][u]["weight_bytes"] / 2 < bf16["units"][u]["weight_bytes"] < fp32["units"][u]["weight_bytes"]
        assert bf16["units"][u]["bytes"] < fp32["units"][u]["bytes"]
    with pytest.raises(ValueError, match="calibration patches for units"):
        export_bundle(units, "onnxruntime_int8", tmp_path / "int8", scale=SCALE, context=CONTEXT, calibration={0: []})
    with pytest.raises(ValueError, match="uint8 NHWC"):
        export_bundle(units, "onnxruntime_int8", tmp_path / "int8", scale=SCALE, context=CONTEXT,
                      calibration={0: [np.zeros((2, 8, 8, 3), np.float32)], 1: [calibration_patches(8)]})


def test_reduced_precision_runs_only_where_the_cpu_computes_it():
    assert unsupported_reason("onnxruntime", flags=set()) is None  # fp32 runs anywhere
    assert "avx512_bf16" in unsupported_reason("torch_batched_bf16", flags={"avx512f"})
    assert unsupported_reason("torch_batched_bf16", flags={"avx512f", "amx_bf16"}) is None
    assert "avx512_vnni" in unsupported_reason("onnxruntime_int8", flags={"avx2"})
    assert unsupported_reason("onnxruntime_int8", flags={"avx_vnni"}) is None
    assert "avx512_vnni" in unsupported_reason("tvm_int8", flags={"avx_vnni"})  # 512-bit vpdpbusd only
    assert unsupported_reason("tvm_int8", flags={"avx512f", "avx512_vnni"}) is None


def test_every_runtime_record_names_an_engine_a_unit_writer_and_a_cpu_twin_that_exist():
    for r in runtimes.REGISTRY.values():
        assert r.engine in ENGINES and r.units in UNIT_WRITERS and r.package in ("torch", "onnxruntime", "tvm")
        assert r.precision in ("fp32", "bf16", "int8")
        assert (r.library is not None) == (r.package == "tvm")
        assert r.cpu_twin is None or (r.device != "cpu" and runtime(r.cpu_twin).device == "cpu")
    assert names(device="cuda") == ("torch_ref_cuda", "torch_batched_cuda")
    with pytest.raises(ValueError, match="runtime must be one of"):
        runtime("coreml")


def test_a_new_runtime_is_one_record(setup, tmp_path, monkeypatch):
    """A runtime made of an existing engine and unit writer needs its record and nothing else:
    exported, loaded and run through the client like the others."""
    model, manifest, lr, wl = setup
    record = Runtime("torch_batched_again", "PyTorch eager, batched, a second name", "torch", "folded", "torch")
    monkeypatch.setitem(runtimes.REGISTRY, record.name, record)
    units = {p: m for p, m in enumerate(model.paths)}
    bundle = export_bundle(units, record.name, tmp_path, scale=SCALE, context=CONTEXT, plans=wl.plans)
    assert bundle["runtime"] == record.name and bundle["precision"] == "fp32"
    client = Client(bundle, wl, threads=1)
    sr, _, _ = client.frame(0)
    assert not client.one_at_a_time
    assert np.array_equal(sr, reference_frame(model, lr, manifest))  # torch_batched's arithmetic


def test_cuda_runtime_without_a_gpu_is_a_clear_error(setup, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    model, manifest, lr, wl = setup
    bundle = export_bundle({p: m for p, m in enumerate(model.paths)}, "torch_batched_cuda", tmp_path, scale=SCALE,
                             context=CONTEXT, plans=wl.plans)
    assert bundle["runtime"] == "torch_batched_cuda" and bundle["device"] == "cuda"
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        Client(bundle, wl, threads=1)


def test_reference_routes_by_size_one_patch_at_a_time(setup, tmp_path):
    model, manifest, lr, wl = setup
    bundle = export_bundle({p: m for p, m in enumerate(model.paths)}, "torch_ref", tmp_path, scale=SCALE,
                             context=CONTEXT, dynamic=model, routing=size_routing(wl))
    client = Client(bundle, wl, threads=1)
    assert client.one_at_a_time and client.engine.routes_by_size
    assert client.engine.route(4, 4) == 0 and client.engine.route(8, 8) == 1


def test_pixel_cap_splits_calls_and_keeps_the_frame(setup, tmp_path):
    """``max_batch_pixels``: the client calls the runtime with at most that many LR pixels (one patch
    at least), for every runtime, and the stitched frame is the uncapped one."""
    model, manifest, lr, wl = setup
    units = {p: m for p, m in enumerate(model.paths)}
    frames = {}
    for cap in (0, 1):
        bundle = export_bundle(units, "torch_batched", tmp_path / str(cap), scale=SCALE, context=CONTEXT,
                               max_batch_pixels=cap)
        client = Client(bundle, wl, threads=1)
        batches = []
        run = client.engine.run
        client.engine.run = lambda x, unit, run=run: batches.append(len(x)) or run(x, unit)
        frames[cap] = client.frame(wl.order[0])[0]
        assert (max(batches) > 1) if cap == 0 else (set(batches) == {1})
    assert np.array_equal(frames[0], frames[1])


def test_switching_client_loads_each_chunk_model(tmp_path):
    torch.manual_seed(0)
    units = {0: WDSR(scale=2, n_blocks=1, n_feats=4).eval(), 1: WDSR(scale=2, n_blocks=1, n_feats=4).eval()}
    lr = {i: np.random.default_rng(i).integers(0, 256, size=(10, 12, 3), dtype=np.uint8) for i in range(3)}
    man = pd.DataFrame({"frame": [0, 1, 2], "y": 0, "x": 0, "h": 10, "w": 12, "path": [0, 0, 1]})
    wl = Workload("chunks", lr, plans_from_manifest(man, [0, 1, 2]), {0: 0, 1: 0, 2: 1})
    assert switches(units, wl)
    bundle = export_bundle(units, "torch_batched", tmp_path, scale=2, context=0)
    client = Client(bundle, wl, threads=1, switching=True)
    assert client.engine.loaded == set()
    rows = client.run(passes=2, warmup=0)
    sw = [r["switch_ms"] > 0 for r in rows]
    assert sw == [True, False, True, True, False, True]  # chunk 0 -> 0 -> 1, then back to 0 ...
    assert client.engine.loaded == {1}
    for i, u in zip(range(3), [0, 0, 1]):  # each frame through its chunk's model
        with torch.no_grad():
            assert np.array_equal(client.frame(i)[0], super_resolve(fold_weight_norm(units[u]), lr[i]))


def test_client_imports_without_torch():
    """A device has no PyTorch: every client module imports with torch made unimportable."""
    code = ("import sys; sys.modules['torch'] = None\n"
            "import dydca_lib.client.bundle, dydca_lib.client.engines, dydca_lib.client.loop, dydca_lib.client.plan\n"
            "assert 'tvm' not in sys.modules and 'pandas' not in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
