"""The TVM compiler layer (dydca_lib.compiler) on tiny WDSR paths: export, naive symbolic build,
static specialisation + fusion + memory planning, tuning database fallback, the runtime wrapper.

Everything here is small (n_feats 4, one block, patches of ~10 px) so the file runs in well under a
minute on 2 cores; no test tunes (a MetaSchedule trial costs seconds to tens of seconds here).
"""

import re
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from dydca_lib import compiler as C
from dydca_lib import evaluate as E
from dydca_lib import patches as P
from dydca_lib.bench.timing import time_torch
from dydca_lib.models import DynamicWDSR, WDSR, fold_weight_norm

from tvm import relax  # noqa: E402  (after dydca_lib.compiler, which sets TVM_NUM_THREADS)

TOL = 1e-4
BOUNDS = {"batch": 4, "h": 16, "w": 16}


def tiny_wdsr(seed=0, **kw):
    torch.manual_seed(seed)
    model = WDSR(scale=2, n_blocks=1, n_feats=4, expansion=2, **kw)
    with torch.no_grad():  # make the residual branch matter (the default init is near-bicubic)
        model.tail.parametrizations.weight.original0.mul_(10.0)  # weight norm's g
    return model.eval()


def torch_ref(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@pytest.fixture(scope="module")
def target():
    return C.cpu_target()


@pytest.fixture(scope="module")
def wdsr():
    return tiny_wdsr()


@pytest.fixture(scope="module")
def symbolic(wdsr):
    """The path exported once with symbolic batch/H/W (bounds BOUNDS)."""
    return C.export_path(wdsr, (8, 10), 2, dynamic=True, bounds=BOUNDS)


@pytest.fixture(scope="module")
def static_build(symbolic, target):
    """Two static functions (8x10 batch 2, 12x6 batch 4): program and a VM."""
    mod, params = symbolic
    shapes = [C.StaticShape(0, 8, 10, 2), C.StaticShape(0, 12, 6, 4)]
    program = C.optimize(C.specialize(mod, shapes), target)
    vm = C.load_vm(C.compile_planned(program.planned, target))
    return program, vm, params


# ---------------------------------------------------------------- pure python: shapes and buckets

def test_batch_buckets_and_split():
    assert C.batch_buckets(16) == [1, 2, 4, 8, 16]
    assert C.batch_buckets(1) == [1]
    with pytest.raises(C.CompileError, match="power of two"):
        C.batch_buckets(12)
    assert C.split_batch(37, [1, 2, 4, 8, 16]) == [(16, 16), (16, 16), (4, 4), (1, 1)]  # no padding
    assert C.split_batch(25, [8, 16]) == [(16, 16), (9, 16)]  # 8 + (1 padded to 8) costs one call more
    assert C.split_batch(7, [1, 2, 4, 8, 16]) == [(7, 8)]  # one padded patch is cheaper than two more calls
    assert C.split_batch(7, [1, 2, 4, 8, 16], call_cost=0.0) == [(4, 4), (2, 2), (1, 1)]
    assert C.split_batch(4, [4, 8]) == [(4, 4)]
    assert C.split_batch(3, [8]) == [(3, 8)]
    assert C.split_batch(0, [8]) == []
    for n in range(40):  # every patch runs exactly once, in calls no larger than their bucket
        plan = C.split_batch(n, [2, 4, 16])
        assert sum(k for k, _ in plan) == n and all(0 < k <= b for k, b in plan)


def test_static_shapes_from_manifest():
    m = pd.DataFrame({"frame": [0] * 5 + [1] * 2 + [1], "h": [8] * 7 + [16], "w": [10] * 7 + [20],
                      "path": [0] * 7 + [1], "y": 0, "x": 0})
    shapes = C.static_shapes(m, max_batch=4)
    # path 0, 8x10: frame 0 has 5 patches (4 + 1 padded to 1), frame 1 has 2 -> buckets {4, 1, 2}
    assert shapes == [C.StaticShape(0, 8, 10, 1), C.StaticShape(0, 8, 10, 2), C.StaticShape(0, 8, 10, 4),
                      C.StaticShape(1, 16, 20, 1)]
    assert {s.h for s in C.static_shapes(m, context=2)} == {12, 20}
    assert C.StaticShape(0, 8, 10, 4).name == "p0_h8_w10_b4"
    # a pixel cap: 8x10 patches (context 2: 12x14 = 168 px) fit 2 in 400 px, 16x20 ones none (1 is the floor)
    capped = C.static_shapes(m, context=2, max_batch=4, max_batch_pixels=400)
    assert capped == [C.StaticShape(0, 12, 14, 1), C.StaticShape(0, 12, 14, 2), C.StaticShape(1, 20, 24, 1)]


def test_batch_cap_by_pixels():
    assert C.batch_cap(58, 52, 16) == 16  # no pixel cap
    assert C.batch_cap(58, 52, 16, 50_000) == 16 and C.batch_cap(112, 100, 16, 50_000) == 4
    assert C.batch_cap(112, 100, 2, 50_000) == 2  # max_batch still caps
    assert C.batch_cap(300, 300, 16, 50_000) == 1  # one patch always runs
    for h, w, px in ((7, 9, 1000), (58, 52, 60_000), (10, 10, 99)):
        b = C.batch_cap(h, w, 64, px)
        assert b & (b - 1) == 0 and (b == 1 or b * h * w <= px < 2 * b * h * w)


# ---------------------------------------------------------------- export

def test_export_static_at_two_sizes_and_symbolic(wdsr, symbolic):
    for hw, b in (((8, 10), 1), ((12, 6), 3)):
        mod, params = C.export_path(wdsr, hw, b, dynamic=False)
        shape = [int(v) for v in mod["main"].params[0].ty.shape.values]
        assert shape == [b, 3, *hw]
        assert C.symbolic_dims(mod["main"]) == {"batch": None, "h": None, "w": None}
        assert len(params) == len(mod["main"].params) - 1
    mod, params = symbolic
    dims = C.symbolic_dims(mod["main"])
    assert all(dims.values())
    upper = mod["main"].attrs["tir_var_upper_bound"]
    assert {int(upper[dims[k]]) for k in ("batch", "h", "w")} == {4, 16}
    # weight norm folded: the exported weights are the effective ones
    folded = fold_weight_norm(wdsr)
    np.testing.assert_allclose(params[0].numpy(), folded.head.weight.detach().numpy(), rtol=0, atol=1e-7)


def test_export_rejects_bad_input(wdsr):
    with pytest.raises(C.CompileError, match="upper bound"):
        C.export_path(wdsr, (8, 10), 2, dynamic=True, bounds={"batch": 4, "h": 16})
    with pytest.raises(C.CompileError, match="outside"):
        C.export_path(wdsr, (8, 20), 2, dynamic=True, bounds=BOUNDS)
    with pytest.raises(C.CompileError, match="one WDSR path"):
        C.export_path(DynamicWDSR(paths=[{"n_blocks": 1}], n_feats=4), (8, 10))
    with pytest.raises(C.CompileError, match="dict"):
        C.compile_dynamic(None, "llvm -num-cores 2")


# ---------------------------------------------------------------- naive symbolic build

def test_dynamic_build_matches_torch_at_two_sizes(wdsr, symbolic, target):
    mod, params = symbolic
    vm = C.load_vm(C.compile_dynamic(mod, target))
    rng = np.random.default_rng(0)
    for shape in ((2, 3, 8, 10), (3, 3, 12, 6)):
        x = rng.random(shape, dtype=np.float32)
        y = C.run_vm(vm, "main", x, params)
        assert y.shape == (shape[0], 3, shape[2] * 2, shape[3] * 2)
        np.testing.assert_allclose(y, torch_ref(wdsr, x), rtol=0, atol=TOL)


# ---------------------------------------------------------------- static: fusion and memory planning

def test_static_fused_matches_torch_with_fewer_kernels(wdsr, static_build):
    program, vm, params = static_build
    report = program.report.set_index("function")
    assert list(report.index) == ["p0_h12_w6_b4", "p0_h8_w10_b2"]
    assert (report.n_kernels <= report.n_kernels_unfused).all()
    assert (report.n_kernels < report.n_kernels_unfused).any()  # conv+bias+relu etc. fuse
    for name, row in report.iterrows():
        assert len(row.kernels) == row.n_kernels
        assert any(k.startswith("fused_conv2d") for k in row.kernels)
        # PixelShuffle's reshape/transpose/reshape fuse with static shapes
        assert any(re.match(r"fused_reshape\d*_transpose", k) for k in row.kernels)
    rng = np.random.default_rng(1)
    for name, shape in (("p0_h8_w10_b2", (2, 3, 8, 10)), ("p0_h12_w6_b4", (4, 3, 12, 6))):
        x = rng.random(shape, dtype=np.float32)
        np.testing.assert_allclose(C.run_vm(vm, name, x, params), torch_ref(wdsr, x), rtol=0, atol=TOL)


def test_memory_after_planning_not_above_before(static_build):
    program, _, _ = static_build
    report = program.report
    assert (report.mem_before_bytes > 0).all()
    assert (report.mem_after_bytes <= report.mem_before_bytes).all()
    assert (report.allocs_after <= report.allocs_before).all()
    # the output tensor alone (batch 2, 3 x 16 x 20 float32) is a lower bound
    row = report.set_index("function").loc["p0_h8_w10_b2"]
    assert row.mem_after_bytes >= 2 * 3 * 16 * 20 * 4
    # agrees with TVM's own (rounded, GB) estimate_memory_usage text
    text = relax.analysis.estimate_memory_usage(program.planned)
    for name, row in report.set_index("function").iterrows():
        block = text.split(f"- Function {name}:")[1].split("- Function")[0]
        before, after = (float(v) * 2**30 for v in re.findall(r"total size ([0-9.e+-]+) GB", block))
        assert before == pytest.approx(row.mem_before_bytes, rel=1e-3)
        assert after == pytest.approx(row.mem_after_bytes, rel=1e-3)


def test_specialize_rejects_shapes_outside_bounds(symbolic):
    mod, _ = symbolic
    with pytest.raises(C.CompileError, match="outside the exported bounds"):
        C.specialize(mod, [C.StaticShape(0, 32, 10, 2)])


def test_identical_kernels_are_one_tuning_task(symbolic, target):
    mod, _ = symbolic
    one = C.fuse(C.specialize(mod, [C.StaticShape(0, 8, 10, 2)]), target)
    two = C.fuse(C.specialize(mod, [C.StaticShape(0, 8, 10, 2), C.StaticShape(1, 8, 10, 2)]), target)
    t1, t2 = C.extract_tasks(one, target), C.extract_tasks(two, target)
    assert len(t1) == len(t2) > 0
    assert sum(int(t.weight) for t in t2) == 2 * sum(int(t.weight) for t in t1)


# ---------------------------------------------------------------- tuning database fallback

def test_missing_database_warns_and_falls_back(symbolic, target, tmp_path, wdsr):
    mod, params = symbolic
    fused = C.fuse(C.specialize(mod, [C.StaticShape(0, 8, 10, 2)]), target)
    assert not C.has_database(tmp_path / "none")
    with pytest.warns(C.UntunedWarning, match="no tuning database"):
        out = C.apply_database(fused, target, tmp_path / "none")
    assert out is fused
    with pytest.warns(C.UntunedWarning):
        program = C.optimize(C.specialize(mod, [C.StaticShape(0, 8, 10, 2)]), target, database=tmp_path / "none")
    assert program.report.n_kernels.tolist() == [len(C.kernel_calls(fused)["p0_h8_w10_b2"])]
    assert C.tuning_dir(target).name == C.target_name(target)
    assert C.tuning_dir(target).parent.name == "tuning"


# ---------------------------------------------------------------- runtime wrapper

class ArrayFrames:
    def __init__(self, lr, scale):
        self._lr, self.scale = lr, scale

    def lr(self, i):
        return self._lr[i]


def small_manifest():
    """One 40x60 LR frame: 10x12 fine and 20x24 coarse patches, on paths 0 and 1."""
    geom = P.PatchGeometry(40, 60, 10, 12, levels=2)
    coarse = geom.cells(0).assign(frame=0, level=0)
    coarse["label"] = np.where(np.arange(len(coarse)) % 2 == 0, 30.0, 40.0)
    fine = geom.cells(1).assign(frame=0, level=1, label=30.0)
    return P.coarse_to_fine(pd.concat([coarse, fine], ignore_index=True), [35.0])


@pytest.fixture(scope="module")
def dynamic_model():
    torch.manual_seed(0)
    model = DynamicWDSR(scale=2, paths=[{"n_blocks": 1}, {"n_blocks": 1}], n_feats=4, expansion=2)
    with torch.no_grad():
        for p in model.paths:
            p.tail.parametrizations.weight.original0.mul_(10.0)
    return model.eval()


@pytest.fixture(scope="module")
def compiled(dynamic_model):
    manifest = small_manifest()
    return C.CompiledDynamicSR.from_manifest(dynamic_model, manifest, context=1, max_batch=4), manifest


def test_wrapper_reproduces_dynamic_wdsr(dynamic_model, compiled):
    sr_model, manifest = compiled
    assert set(manifest.path) == {0, 1}
    assert set(sr_model.report.path) == {0, 1}
    lr = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    ref = E.super_resolve_patches(E.model_upscaler(dynamic_model), lr, manifest, 2, context=1)
    got = E.super_resolve_patches(sr_model.upscale, lr, manifest, 2, context=1)
    assert len(got) == len(ref) == len(manifest)
    for a, b in zip(got, ref):
        assert a.shape == b.shape and a.dtype == np.uint8
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1  # float noise may flip a rounding
    same = np.mean(np.concatenate([(a == b).ravel() for a, b in zip(got, ref)]))
    assert same > 0.999
    # before rounding: float outputs within 1e-4, for a count that needs padding (5 -> 4 + 1)
    for (path, h, w) in sr_model.buckets:
        x = np.random.default_rng(path).random((5, 3, h, w), dtype=np.float32)
        with torch.no_grad():
            want = dynamic_model(torch.from_numpy(x), path).numpy()
        np.testing.assert_allclose(sr_model.forward(x, path), want, rtol=0, atol=TOL)


def test_wrapper_rejects_unknown_shapes_and_bad_input(compiled):
    sr_model, _ = compiled
    with pytest.raises(C.CompileError, match="knows no 7x9 patches on path 0"):
        sr_model.upscale(np.zeros((2, 9, 7, 3), np.uint8), 0)
    with pytest.raises(C.CompileError, match="uint8"):
        sr_model.upscale(np.zeros((2, 12, 14, 3), np.float32), 0)
    with pytest.raises(C.CompileError, match="NHWC"):
        sr_model.upscale(np.zeros((12, 14, 3), np.uint8), 0)
    empty = sr_model.upscale(np.zeros((0, 12, 14, 3), np.uint8), 0)
    assert empty.shape == (0, 24, 28, 3)


def test_symbolic_wrapper_matches_torch(dynamic_model):
    shapes = [C.StaticShape(0, 12, 14, 4), C.StaticShape(1, 22, 26, 2)]
    sr_model = C.CompiledDynamicSR(dynamic_model, shapes, mode="symbolic")
    x = np.random.default_rng(3).random((5, 3, 12, 14), dtype=np.float32)  # 5 > max batch 4: two calls
    with torch.no_grad():
        want = dynamic_model(torch.from_numpy(x), 0).numpy()
    np.testing.assert_allclose(sr_model.forward(x, 0), want, rtol=0, atol=TOL)
    with pytest.raises(C.CompileError, match="exceed the bounds"):
        sr_model.forward(np.zeros((1, 3, 30, 14), np.float32), 0)


# ---------------------------------------------------------------- benchmark helpers

def test_timing_helpers(static_build, wdsr):
    _, vm, params = static_build
    x = np.random.default_rng(0).random((2, 3, 8, 10), dtype=np.float32)
    t = C.time_vm(vm, "p0_h8_w10_b2", [x, *params], number=1, repeat=3)
    assert t["median_ms"] > 0 and t["std_ms"] >= 0 and t["threads"] == C.tvm_threads() >= 1
    t = time_torch(wdsr, torch.from_numpy(x), number=1, repeat=3)
    assert t["median_ms"] > 0 and t["threads"] == torch.get_num_threads()
    info = C.runtime_info()
    assert info["tvm_threads"] >= 1 and '"kind":"llvm"' in info["target"].replace(" ", "")


# ---------------------------------------------------------------- tuning smoke (2 trials, in process)

def test_tune_smoke_then_apply_database(symbolic, target, tmp_path, wdsr):
    mod, params = symbolic
    static = C.specialize(mod, [C.StaticShape(0, 8, 10, 2)])
    fused = C.fuse(static, target)
    summary = C.tune(fused, target, tmp_path / "db", trials=2, trials_per_iter=1, progress=False,
                     log_dir=tmp_path / "logs")
    assert summary["workers"] == "in_process" and summary["trials"] == 2 and len(summary["tasks"]) > 0
    assert C.has_database(tmp_path / "db")
    assert not (tmp_path / "db" / "logs").exists() and summary["logs"] == str(tmp_path / "logs")
    pruned = C.prune_database(tmp_path / "db", tmp_path / "pruned")
    assert pruned["records_after"] <= pruned["records_before"] and C.has_database(tmp_path / "pruned")
    coverage = C.database_coverage(fused, target, tmp_path / "pruned")
    assert coverage.tuned.any() and (coverage.weight >= 1).all()
    assert not C.database_coverage(fused, target, tmp_path / "none").tuned.any()
    with warnings.catch_warnings():
        warnings.simplefilter("error", C.UntunedWarning)
        program = C.optimize(static, target, database=tmp_path / "db")
    vm = C.load_vm(C.compile_planned(program.planned, target))
    x = np.random.default_rng(2).random((2, 3, 8, 10), dtype=np.float32)
    np.testing.assert_allclose(C.run_vm(vm, "p0_h8_w10_b2", x, params), torch_ref(wdsr, x), rtol=0, atol=TOL)


# ---------------------------------------------------------------- the committed tuning database

# notebook 05's smoke (and default-profile) model: cityCC0 x2, paths of 4 and 2 blocks, 32 channels,
# x2 width; 18x20 and 36x40 LR patches plus 2 px of context; the batch buckets frames use
SMOKE_SHAPES = [C.StaticShape(p, h, w, b) for p, h, w in ((0, 24, 22), (1, 44, 40)) for b in (4, 8, 16)]


def test_committed_database_covers_the_smoke_model():
    target = C.cpu_target()
    if not C.has_database(C.tuning_dir(target)):
        pytest.skip(f"no committed tuning database for this CPU's target {C.target_name(target)} "
                    "(tuning/ holds one per target; see notebook 05's tune parameter)")
    torch.manual_seed(0)  # kernels do not depend on the weights (they are inputs), only on shapes and config
    model = DynamicWDSR(scale=2, paths=[{"n_blocks": 4}, {"n_blocks": 2}], n_feats=32, expansion=2).eval()
    untuned = C.CompiledDynamicSR(model, SMOKE_SHAPES, target=target)
    coverage = C.database_coverage(untuned.program.fused, target)
    assert len(coverage) > 0 and coverage.tuned.all(), coverage[~coverage.tuned]
    with warnings.catch_warnings():
        warnings.simplefilter("error", C.UntunedWarning)
        tuned = C.CompiledDynamicSR(model, SMOKE_SHAPES, target=target, tuned=True)
    assert tuned.tuned
    # the schedules really replaced the kernels: every fused conv differs from its untuned loop nest
    convs = [gv for gv, f in untuned.program.fused.functions_items() if gv.name_hint.startswith("fused_conv2d")]
    assert convs and all(untuned.program.fused[gv].script() != tuned.program.fused[gv.name_hint].script()
                         for gv in convs)
    x = np.random.default_rng(0).random((5, 3, 24, 22), dtype=np.float32)  # 4 + 1 padded to 4
    with torch.no_grad():
        want = model(torch.from_numpy(x), 0).numpy()
    np.testing.assert_allclose(tuned.forward(x, 0), want, rtol=0, atol=TOL)
