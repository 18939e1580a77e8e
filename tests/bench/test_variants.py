"""dydca_lib.bench on a tiny two-path model: shape table, real patches, memory of the symbolic build,
the variant table, output agreement, per-frame estimate and headline ratios. No timing is checked."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from dydca_lib import compiler as C
from dydca_lib.bench import figures as F
from dydca_lib.bench import variants as B
from dydca_lib.models import DynamicWDSR, wdsr_flops

CONTEXT = 1


class ArrayFrames:
    def __init__(self, lr):
        self._lr = lr

    def lr(self, i):
        return self._lr[i]


def manifest():
    """Two 20x30 LR frames: frame 0 has 5 fine 4x6 patches (path 0) and 2 coarse 8x12 (path 1),
    frame 1 has 3 fine ones and 1 coarse."""
    rows = []
    for frame, n_fine, n_coarse in ((0, 5, 2), (1, 3, 1)):
        rows += [(frame, 0, 6 * k, 4, 6, 0) for k in range(n_fine)]
        rows += [(frame, 8, 12 * k, 8, 12, 1) for k in range(n_coarse)]
    return pd.DataFrame(rows, columns=["frame", "y", "x", "h", "w", "path"])


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = DynamicWDSR(scale=2, paths=[{"n_blocks": 1}, {"n_blocks": 1}], n_feats=4, expansion=2)
    with torch.no_grad():
        for p in m.paths:
            p.tail.parametrizations.weight.original0.mul_(10.0)
    return m.eval()


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    return ArrayFrames({i: rng.integers(0, 256, (20, 30, 3), dtype=np.uint8) for i in (0, 1)})


@pytest.fixture(scope="module")
def shapes():
    return C.static_shapes(manifest(), CONTEXT, max_batch=4)


@pytest.fixture(scope="module")
def builds(model, shapes):
    return {"dynamic": C.CompiledDynamicSR(model, shapes, mode="symbolic"),
            "static": C.CompiledDynamicSR(model, shapes), "tuned": None,
            "manual": C.CompiledDynamicSR(model, shapes, manual=True)}


def test_shape_table_counts_calls_and_padding(shapes):
    # path 0 (6x8 inputs): frame 0 has 5 patches -> 4 + 1, frame 1 has 3 -> 2 + 1 (cheaper than 4 with one padded)
    # path 1 (10x14 inputs): 2 and 1 patches -> buckets 2 and 1
    assert shapes == [C.StaticShape(0, 6, 8, 1), C.StaticShape(0, 6, 8, 2), C.StaticShape(0, 6, 8, 4),
                      C.StaticShape(1, 10, 14, 1), C.StaticShape(1, 10, 14, 2)]
    t = B.shape_table(shapes, manifest(), CONTEXT).set_index("function")
    assert t.loc["p0_h6_w8_b4", ["calls", "patches"]].tolist() == [1, 4]
    assert t.loc["p0_h6_w8_b2", ["calls", "patches"]].tolist() == [1, 2]
    assert t.loc["p0_h6_w8_b1", ["calls", "patches"]].tolist() == [2, 2]
    assert t.loc["p1_h10_w14_b2", ["calls", "patches"]].tolist() == [1, 2]
    assert (t.padding_share == 0).all()
    only_top = B.shape_table([C.StaticShape(0, 6, 8, 4), C.StaticShape(1, 10, 14, 2)], manifest(), CONTEXT)
    only_top = only_top.set_index("function")  # 5 -> 4 + (1 padded to 4), 3 -> 4; 2 -> 2, 1 -> 2
    assert only_top.loc["p0_h6_w8_b4", ["calls", "patches"]].tolist() == [3, 8]
    assert only_top.loc["p0_h6_w8_b4", "padding_share"] == pytest.approx(1 / 3)
    assert only_top.loc["p1_h10_w14_b2", "padding_share"] == pytest.approx(1 / 4)
    assert t.loc["p0_h6_w8_b4", "patch_lr"] == "6x4" and t.loc["p0_h6_w8_b4", "input_lr"] == "8x6"
    assert t.patches.sum() == len(manifest())
    with pytest.raises(C.CompileError, match="not among the compiled shapes"):
        B.shape_table(shapes, manifest(), 0)


def test_representative_shapes_and_real_patches(shapes, frames):
    rep = B.representative_shapes(shapes)
    assert rep == [C.StaticShape(0, 6, 8, 4), C.StaticShape(1, 10, 14, 2)]
    x = B.real_patches(frames, manifest(), rep[0], CONTEXT)
    assert x.shape == (4, 3, 6, 8) and x.dtype == np.float32
    # the first patch is frame 0's top-left 4x6 patch with one pixel of edge-repeated context
    lr = np.pad(frames.lr(0), ((1, 1), (1, 1), (0, 0)), mode="edge")
    np.testing.assert_array_equal(x[0], lr[0:6, 0:8].transpose(2, 0, 1).astype(np.float32) / 255)
    held = B.real_patches(frames, manifest(), C.StaticShape(1, 10, 14, 1), CONTEXT, frame_ids=[1])
    np.testing.assert_array_equal(held[0], np.pad(frames.lr(1), ((1, 1), (1, 1), (0, 0)), mode="edge")[8:18, 0:14]
                                  .transpose(2, 0, 1).astype(np.float32) / 255)
    with pytest.raises(C.CompileError, match="only 1 real patches"):
        B.real_patches(frames, manifest(), C.StaticShape(1, 10, 14, 2), CONTEXT, frame_ids=[1])


def test_dynamic_memory_is_planned_at_the_upper_bound(model):
    shape = C.StaticShape(0, 6, 8, 2)
    tight, _ = C.export_path(model.paths[0], (6, 8), 2, True, {"batch": 2, "h": 6, "w": 8})
    loose, _ = C.export_path(model.paths[0], (6, 8), 2, True, {"batch": 4, "h": 12, "w": 16})
    a, b = B.dynamic_memory(tight, shape), B.dynamic_memory(loose, shape)
    out_bytes = 2 * 3 * 12 * 16 * 4
    assert a["mem_planned_bytes"] > out_bytes
    assert a["mem_planned_bytes"] <= a["mem_unplanned_bytes"] == b["mem_unplanned_bytes"]
    # the same shape reserves more when the symbolic bounds are larger: 8x the intermediates
    assert b["mem_planned_bytes"] - out_bytes == pytest.approx(8 * (a["mem_planned_bytes"] - out_bytes), rel=0.01)
    assert a["n_kernels"] == len(C.kernel_calls(C.legalize(tight))["main"]) > 5


def test_bench_variants_and_outputs(model, builds, shapes, frames):
    inputs = {s: B.real_patches(frames, manifest(), s, CONTEXT) for s in B.representative_shapes(shapes)}
    t = B.bench_variants(model, builds, inputs, number=1, repeat=2, peak_gflops=100.0)
    assert len(t) == 2 * len(B.VARIANTS)
    timed = t[t.median_ms.notna()]
    s0 = next(s for s in inputs if s.path == 0)
    want = wdsr_flops(model.paths[0].config, s0.h, s0.w) * s0.batch / timed[timed.path == 0].median_ms / 1e6
    np.testing.assert_allclose(timed[timed.path == 0].gflops, want)
    np.testing.assert_allclose(timed.share_of_sgemm_peak, timed.gflops / 100.0)
    assert list(t.variant[:len(B.VARIANTS)]) == list(B.VARIANTS.values())
    tuned = t[t.variant == B.VARIANTS["tuned"]]
    assert tuned.median_ms.isna().all() and tuned.mem_planned_bytes.isna().all()
    assert (tuned.note == "no tuning database for this target").all()
    absent = t[t.variant == B.VARIANTS["winograd"]]  # no build given: a row that says so
    assert absent.median_ms.isna().all() and (absent.note == "not built").all()
    ran = t[~t.variant.isin([B.VARIANTS["tuned"], B.VARIANTS["winograd"]])]
    assert (ran.median_ms > 0).all() and (ran.std_ms >= 0).all()
    static = t[t.variant == B.VARIANTS["static"]].set_index("path")
    report = builds["static"].report.set_index("function")
    assert static.loc[0, "mem_planned_bytes"] == report.loc["p0_h6_w8_b4", "mem_after_bytes"]
    assert static.loc[0, "n_kernels"] == report.loc["p0_h6_w8_b4", "n_kernels"]
    dyn = t[t.variant == B.VARIANTS["dynamic"]].set_index("path")
    assert (dyn.n_kernels > static.n_kernels).all()  # unfused
    assert (dyn.mem_unplanned_bytes >= static.mem_unplanned_bytes).all()
    diffs = B.compare_outputs(builds, model, inputs)
    assert len(diffs) == 6 and diffs.max_abs_diff.max() < 1e-4  # 3 builds x 2 shapes
    manual = t[t.variant == B.VARIANTS["manual"]].set_index("path")
    assert (manual.median_ms > 0).all() and (manual.n_kernels > 0).all()
    fig = F.variant_bars(t, "tiny")
    latency_ax, memory_ax = fig.axes
    assert latency_ax.get_yscale() == "log" and len(latency_ax.patches) == len(t)  # one bar per row


def table(dyn_ms, static_ms, tuned_ms, torch_ms, dyn_mem, static_mem, manual_ms=math.nan, winograd_ms=math.nan):
    rows = []
    for path, shape, batch in ((0, "8x6", 4), (1, "14x10", 2)):
        for v, ms, mem in ((B.VARIANTS["torch"], torch_ms, math.nan), (B.VARIANTS["dynamic"], dyn_ms, dyn_mem),
                           (B.VARIANTS["static"], static_ms, static_mem), (B.VARIANTS["tuned"], tuned_ms, static_mem),
                           (B.VARIANTS["manual"], manual_ms, static_mem), (B.VARIANTS["winograd"], winograd_ms, static_mem)):
            rows.append({"path": path, "input_lr": shape, "batch": batch, "variant": v, "median_ms": ms,
                         "std_ms": 0.0, "mem_planned_bytes": mem if np.isfinite(ms) else math.nan})
    return pd.DataFrame(rows)


def test_per_frame_estimate_and_headline():
    m = manifest()  # per frame on average: 4 path-0 patches (batch 4) and 1.5 path-1 patches (batch 2)
    t = table(dyn_ms=10.0, static_ms=8.0, tuned_ms=2.0, torch_ms=4.0, dyn_mem=300.0, static_mem=200.0)
    pf = B.per_frame_estimate(t, m, CONTEXT).set_index("variant")
    assert pf.loc[B.VARIANTS["dynamic"], "ms_per_frame"] == pytest.approx(4 / 4 * 10 + 1.5 / 2 * 10)
    assert pf.loc[B.VARIANTS["dynamic"], "peak_planned_bytes"] == 300
    h = B.headline(t, pf.reset_index())
    assert h["tuned"] and h["static_variant"] == B.VARIANTS["tuned"]
    assert h["speedup_static_vs_dynamic"] == pytest.approx(5.0)
    assert h["speedup_untuned_static_vs_dynamic"] == pytest.approx(10 / 8)
    assert h["speedup_tvm_static_vs_torch_eager"] == pytest.approx(2.0)
    assert h["memory_ratio_dynamic_vs_static"] == pytest.approx(1.5)
    assert h["paper_claims"] == {"compiler_speedup": 1.7, "compiler_memory_saving": 1.61}
    assert [r["speedup_vs_dynamic"] for r in h["per_shape"]] == pytest.approx([5.0, 5.0])
    # no tuned numbers: the untuned static build is the headline, the tuned ratio is missing
    t = table(dyn_ms=10.0, static_ms=8.0, tuned_ms=math.nan, torch_ms=4.0, dyn_mem=300.0, static_mem=200.0)
    pf = B.per_frame_estimate(t, m, CONTEXT)
    assert pf.set_index("variant").loc[B.VARIANTS["tuned"]].isna().all()
    h = B.headline(t, pf)
    assert not h["tuned"] and h["static_variant"] == B.VARIANTS["static"]
    assert h["speedup_static_vs_dynamic"] == pytest.approx(10 / 8)
    assert h["speedup_tuned_vs_untuned_static"] is None
    assert h["ms_per_frame"][B.VARIANTS["tuned"]] is None
    # the fastest static build is the headline, whichever it is
    t = table(dyn_ms=10.0, static_ms=8.0, tuned_ms=2.0, torch_ms=4.0, dyn_mem=300.0, static_mem=200.0, manual_ms=1.0)
    h = B.headline(t, B.per_frame_estimate(t, m, CONTEXT))
    assert h["tuned"] and h["static_variant"] == B.VARIANTS["manual"]
    assert h["speedup_static_vs_dynamic"] == pytest.approx(10.0)
    assert h["speedup_tuned_vs_untuned_static"] == pytest.approx(4.0)
    assert h["speedup_manual_vs_tuned"] == pytest.approx(2.0)
    assert h["speedup_winograd_vs_manual"] is None  # not built
    t = table(dyn_ms=10.0, static_ms=8.0, tuned_ms=2.0, torch_ms=4.0, dyn_mem=300.0, static_mem=200.0, manual_ms=1.0,
              winograd_ms=0.5)
    h = B.headline(t, B.per_frame_estimate(t, m, CONTEXT))
    assert h["static_variant"] == B.VARIANTS["winograd"] and h["speedup_winograd_vs_manual"] == pytest.approx(2.0)
