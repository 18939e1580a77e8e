"""Notebook 05's benchmarks of the compiled Dy-DCA model: latency, planned memory and kernels per variant,
output agreement with PyTorch, a per-frame estimate, and the paper's headline ratios.

The variants (:data:`VARIANTS`) are the same model run six ways, at one representative batch per
(path, patch shape) — the largest batch bucket a frame uses:

* ``torch`` — PyTorch eager on the path with weight norm folded, under ``torch.no_grad``;
* ``dynamic`` — the naive TVM build (Dy-DCA's "compiler off"): one symbolic-shape executable per
  path, unfused, untuned, buffers planned at the symbolic upper bounds
  (:class:`~dydca_lib.compiler.CompiledDynamicSR` with ``mode="symbolic"``);
* ``static`` — one static function per shape, fused and memory planned, untuned kernels;
* ``tuned`` — the same with the MetaSchedule database applied (missing when this CPU's target has
  none: the row says so and carries no number);
* ``manual`` — the same model with every conv in NHWC under the hand-written register-blocked
  schedule of :mod:`dydca_lib.compiler.schedules` (no tuning, any CPU);
* ``winograd`` — ``manual`` with the 3x3 body convs by Winograd F(4x4, 3x3)
  (:mod:`dydca_lib.compiler.winograd`, hand-written schedule).

Memory is the *planned* footprint of the compiled code (inputs and weights excluded), in bytes:
for static functions, every allocation before ``StaticPlanBlockMemory`` and the storages after it
(:func:`dydca_lib.compiler.memory_estimate`); for the symbolic build, :func:`dynamic_memory`.
Timings come from :func:`dydca_lib.compiler.runtime.time_vm` / :func:`~dydca_lib.bench.timing.time_torch`
(median and std); record :func:`dydca_lib.compiler.runtime_info` beside them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
import torch

from .. import compiler as C
from ..evaluate import evaluate, frame_protocol
from ..models import DynamicWDSR, fold_weight_norm, wdsr_flops
from ..patches import extract
from ..published import PAPER_CLAIMS
from .timing import time_torch

VARIANTS = {
    "torch": "PyTorch eager",
    "dynamic": "TVM dynamic (symbolic, untuned)",
    "static": "TVM static fused (untuned)",
    "tuned": "TVM static fused (tuned)",
    "manual": "TVM static fused (hand-written NHWC schedules)",
    "winograd": "TVM static fused (hand-written, Winograd F(4x4,3x3) body convs)",
}


# ---------------------------------------------------------------- shapes and inputs

def _patch_groups(manifest: pd.DataFrame, context: int) -> pd.DataFrame:
    """Patches per (frame, path, input h, input w): the batches a frame's inference runs."""
    m = manifest if "path" in manifest else manifest.assign(path=0)
    g = m.groupby(["frame", "path", "h", "w"]).size().reset_index(name="n")
    return g.assign(h=g.h + 2 * context, w=g.w + 2 * context)


def shape_table(shapes: Iterable[C.StaticShape], manifest: pd.DataFrame, context: int = 0) -> pd.DataFrame:
    """One row per compiled (path, patch shape, batch bucket): the function, and how often frames
    call it (``calls``, over all frames of the manifest, as :func:`dydca_lib.compiler.split_batch`
    runs each frame's patches) and how many real patches those calls carry (the rest is padding)."""
    shapes = sorted(shapes)
    buckets: dict[tuple, list[int]] = {}
    for s in shapes:
        buckets.setdefault((s.path, s.h, s.w), []).append(s.batch)
    calls: dict[C.StaticShape, list[int]] = {s: [0, 0] for s in shapes}
    for r in _patch_groups(manifest, context).itertuples(index=False):
        key = (int(r.path), int(r.h), int(r.w))
        if key not in buckets:
            raise C.CompileError(f"the manifest has {r.w}x{r.h} inputs on path {r.path}, not among the compiled shapes")
        for k, b in C.split_batch(int(r.n), buckets[key]):
            c = calls[C.StaticShape(*key, b)]
            c[0] += 1
            c[1] += k
    rows = [{"path": s.path, "patch_lr": f"{s.w - 2 * context}x{s.h - 2 * context}", "input_lr": f"{s.w}x{s.h}",
             "batch": s.batch, "function": s.name, "calls": calls[s][0], "patches": calls[s][1],
             "padding_share": 1 - calls[s][1] / (calls[s][0] * s.batch) if calls[s][0] else float("nan")}
            for s in shapes]
    return pd.DataFrame(rows)


def representative_shapes(shapes: Iterable[C.StaticShape]) -> list[C.StaticShape]:
    """The largest batch bucket of every (path, patch shape): what the benchmarks time."""
    best: dict[tuple, C.StaticShape] = {}
    for s in shapes:
        key = (s.path, s.h, s.w)
        if key not in best or s.batch > best[key].batch:
            best[key] = s
    return [best[k] for k in sorted(best)]


def real_patches(frames, manifest: pd.DataFrame, shape: C.StaticShape, context: int = 0,
                 frame_ids: Iterable[int] | None = None) -> np.ndarray:
    """``shape.batch`` real LR patches of ``shape`` (context included), float32 NCHW in [0, 1].

    Taken in manifest order from ``frame_ids`` (default: every frame of the manifest) among the
    patches routed to ``shape.path`` whose size plus ``2 * context`` is ``shape.h x shape.w``.
    """
    m = manifest if "path" in manifest else manifest.assign(path=0)
    m = m[(m.path == shape.path) & (m.h + 2 * context == shape.h) & (m.w + 2 * context == shape.w)]
    if frame_ids is not None:
        m = m[m.frame.isin([int(i) for i in frame_ids])]
    out: list[np.ndarray] = []
    for f, g in m.groupby("frame", sort=True):
        out += extract(frames.lr(int(f)), g, context=context)
        if len(out) >= shape.batch:
            break
    if len(out) < shape.batch:
        raise C.CompileError(f"only {len(out)} real patches for {shape} in these frames; need {shape.batch}")
    x = np.stack(out[:shape.batch]).astype(np.float32) / np.float32(255.0)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


# ---------------------------------------------------------------- memory of the symbolic build

def dynamic_memory(sym_mod, shape: C.StaticShape, target=None) -> dict:
    """Memory and kernels of the naive symbolic build (:func:`dydca_lib.compiler.compile_dynamic`)
    when it runs ``shape``.

    * ``mem_unplanned_bytes``: every tensor allocation of the unfused build at this shape
      (the module specialised to it, legalised, no planning) — what runs without a planner;
    * ``mem_planned_bytes``: what the symbolic build reserves: the storages
      ``StaticPlanBlockMemory`` plans at the symbolic upper bounds (whatever shape then runs),
      plus the allocations it leaves unplanned (the output), evaluated at this shape;
    * ``n_kernels``: PrimFunc calls of the legalised symbolic function (no fusion).
    """
    from tvm import relax

    legal = C.legalize(sym_mod, target)
    n_kernels = len(C.kernel_calls(legal)["main"])
    unplanned = C.memory_estimate(C.plan_memory(C.legalize(C.specialize(sym_mod, [shape]), target), target))
    planned = C.plan_memory(legal, target)
    dims = C.symbolic_dims(planned["main"])
    binding = {name: value for key, value in (("batch", shape.batch), ("h", shape.h), ("w", shape.w))
               if (name := dims[key]) is not None}
    at_shape = relax.transform.BindSymbolicVars(binding, func_name="main")(planned)
    est = C.memory_estimate(at_shape)["main"]
    if est["dynamic_allocs"]:
        raise C.CompileError(f"{est['dynamic_allocs']} allocations of the symbolic build stay symbolic at {shape}")
    return {"mem_unplanned_bytes": unplanned[shape.name]["before_bytes"], "mem_planned_bytes": est["after_bytes"],
            "n_kernels": n_kernels}


# ---------------------------------------------------------------- latency and memory per variant

def bench_variants(model: DynamicWDSR, builds: Mapping[str, C.CompiledDynamicSR | None],
                   inputs: Mapping[C.StaticShape, np.ndarray], number: int = 1, repeat: int = 5,
                   target=None, missing_note: str = "no tuning database for this target",
                   peak_gflops: float | None = None) -> pd.DataFrame:
    """Latency, planned memory, kernel count and GFLOP/s of every variant at every shape of ``inputs``.

    ``gflops``: the path's convolution FLOPs on the batch (:func:`~dydca_lib.models.wdsr_flops`, as a
    direct convolution computes them) over the median latency — for the Winograd build an
    effective rate (it does ~4x fewer body multiply-adds); ``share_of_sgemm_peak``: that over
    ``peak_gflops`` (the run's :func:`~dydca_lib.bench.timing.sgemm_peak`), when given.

    ``builds``: ``{"dynamic": symbolic build, "static": untuned static build, "tuned": tuned
    static build or None}`` (keys of :data:`VARIANTS`; PyTorch eager is always timed). A ``None``
    build gives a row with ``missing_note`` and no numbers. ``inputs``: float32 NCHW arrays per
    :class:`~dydca_lib.compiler.StaticShape` (e.g. :func:`real_patches`).
    """
    rows = []
    folded = {}
    for shape, x in inputs.items():
        if x.shape != (shape.batch, 3, shape.h, shape.w):
            raise C.CompileError(f"input of shape {x.shape} for {shape}")
        base = {"path": shape.path, "input_lr": f"{shape.w}x{shape.h}", "batch": shape.batch}
        for key, label in VARIANTS.items():
            row = {**base, "variant": label, "median_ms": np.nan, "std_ms": np.nan, "threads": np.nan,
                   "mem_unplanned_bytes": np.nan, "mem_planned_bytes": np.nan, "n_kernels": np.nan, "note": ""}
            if key == "torch":
                if shape.path not in folded:
                    folded[shape.path] = fold_weight_norm(model.paths[shape.path]).eval()
                t = time_torch(folded[shape.path], torch.from_numpy(x), number=number, repeat=repeat)
                row["note"] = "memory not planned (allocator)"
            elif builds.get(key) is None:
                row["note"] = missing_note if key == "tuned" else "not built"
                rows.append(row)
                continue
            elif key == "dynamic":
                b = builds[key]
                t = C.time_vm(b.vms[shape.path], "main", [x, *b.params[shape.path]], number=number, repeat=repeat)
                row.update(dynamic_memory(b.modules[shape.path], shape, b.target))
                hmax, wmax = b.max_hw[shape.path]
                row["note"] = f"planned at bounds batch {b.max_batch[shape.path]}, {wmax}x{hmax}"
            else:
                b = builds[key]
                t = C.time_vm(b.vm, shape.name, [x, *b.params[shape.path]], number=number, repeat=repeat)
                rep = b.report.set_index("function").loc[shape.name]
                row.update(mem_unplanned_bytes=int(rep.mem_before_bytes), mem_planned_bytes=int(rep.mem_after_bytes),
                           n_kernels=int(rep.n_kernels))
            row.update(median_ms=t["median_ms"], std_ms=t["std_ms"], threads=t["threads"])
            flop = wdsr_flops(model.paths[shape.path].config, shape.h, shape.w) * shape.batch
            row["gflops"] = flop / t["median_ms"] / 1e6
            if peak_gflops:
                row["share_of_sgemm_peak"] = row["gflops"] / float(peak_gflops)
            rows.append(row)
    out = pd.DataFrame(rows)
    ints = ["threads", "mem_unplanned_bytes", "mem_planned_bytes", "n_kernels"]
    return out.astype({c: "Int64" for c in ints})  # counts stay integers next to missing values


def compare_outputs(builds: Mapping[str, C.CompiledDynamicSR], model: DynamicWDSR,
                    inputs: Mapping[C.StaticShape, np.ndarray]) -> pd.DataFrame:
    """Max and mean absolute difference (float, before rounding) of each build's output vs
    ``model(x, path)`` in PyTorch, per build and shape."""
    rows = []
    for shape, x in inputs.items():
        with torch.no_grad():
            want = model(torch.from_numpy(x), shape.path).numpy()
        for key, b in builds.items():
            if b is None:
                continue
            d = np.abs(b.forward(x, shape.path) - want)
            rows.append({"variant": VARIANTS.get(key, key), "path": shape.path, "input_lr": f"{shape.w}x{shape.h}",
                         "batch": shape.batch, "max_abs_diff": float(d.max()), "mean_abs_diff": float(d.mean())})
    return pd.DataFrame(rows)


def frame_psnr(upscalers: Mapping[str, object], frames, manifest: pd.DataFrame, frame_ids, context: int = 0) -> pd.DataFrame:
    """Full-frame protocol (:func:`dydca_lib.evaluate.frame_protocol`) of each upscaler on the same
    frames and patches: one row per upscaler (frames, PSNR RGB/Y, SSIM Y)."""
    rows = []
    for name, up in upscalers.items():
        _, per_frame, _ = evaluate(up, frames, manifest, frame_ids, context, desc=f"{name}: full-frame")
        rows.append({"upscaler": name, **frame_protocol(per_frame).to_dict()})
    return pd.DataFrame(rows).astype({"frames": int})


# ---------------------------------------------------------------- per frame and headline

def per_frame_estimate(table: pd.DataFrame, manifest: pd.DataFrame, context: int = 0) -> pd.DataFrame:
    """Latency per frame of each variant, estimated from the timed batches: for every (path,
    shape), the mean number of patches per frame over the manifest divided by the timed batch,
    times its median latency, summed over shapes (assumes time linear in the batch). Memory per
    frame is the largest planned footprint over the shapes (functions run one after another)."""
    groups = _patch_groups(manifest, context)
    n_frames = groups.frame.nunique()
    per = groups.groupby(["path", "h", "w"]).n.sum() / n_frames
    rows = []
    for variant, g in table.groupby("variant", sort=False):
        ms, missing = 0.0, False
        for r in g.itertuples(index=False):
            w, h = (int(v) for v in r.input_lr.split("x"))
            if not np.isfinite(r.median_ms):
                missing = True
                break
            ms += per.get((r.path, h, w), 0.0) / r.batch * r.median_ms
        rows.append({"variant": variant, "ms_per_frame": np.nan if missing else ms,
                     "fps": np.nan if missing or ms == 0 else 1e3 / ms,
                     "peak_planned_bytes": float(g.mem_planned_bytes.max()) if g.mem_planned_bytes.notna().all() else np.nan})
    return pd.DataFrame(rows)


def headline(table: pd.DataFrame, per_frame: pd.DataFrame) -> dict:
    """Dy-DCA's compiler on vs off, measured: the fastest static build per frame (tuned, hand-written
    direct or Winograd, or untuned, whichever has numbers and the lowest :func:`per_frame_estimate`) against the symbolic
    build, per frame and per shape, plus TVM against PyTorch eager. Ratios > 1 favour the static build."""
    pf = per_frame.set_index("variant")

    def has(key):
        return VARIANTS[key] in pf.index and np.isfinite(pf.loc[VARIANTS[key], "ms_per_frame"])

    tuned_ok = has("tuned")
    static_builds = [VARIANTS[k] for k in ("tuned", "manual", "winograd", "static") if has(k)]
    best = min(static_builds, key=lambda v: pf.loc[v, "ms_per_frame"]) if static_builds else VARIANTS["static"]
    dyn, torch_ = VARIANTS["dynamic"], VARIANTS["torch"]

    def ratio(a, b):
        a, b = (np.nan if v is None or v is pd.NA else float(v) for v in (a, b))
        return a / b if b and np.isfinite(a) and np.isfinite(b) else None

    per_shape = []
    t = table.set_index(["path", "input_lr", "batch", "variant"])
    for (p, s, b), _ in table.groupby(["path", "input_lr", "batch"], sort=True):
        per_shape.append({"path": int(p), "input_lr": s, "batch": int(b),
                          "speedup_vs_dynamic": ratio(t.loc[(p, s, b, dyn), "median_ms"], t.loc[(p, s, b, best), "median_ms"]),
                          "memory_ratio_vs_dynamic": ratio(t.loc[(p, s, b, dyn), "mem_planned_bytes"],
                                                           t.loc[(p, s, b, best), "mem_planned_bytes"]),
                          "speedup_vs_torch": ratio(t.loc[(p, s, b, torch_), "median_ms"], t.loc[(p, s, b, best), "median_ms"])})
    return {
        "static_variant": best,
        "tuned": bool(tuned_ok),
        "speedup_static_vs_dynamic": ratio(pf.loc[dyn, "ms_per_frame"], pf.loc[best, "ms_per_frame"]),
        "memory_ratio_dynamic_vs_static": ratio(pf.loc[dyn, "peak_planned_bytes"], pf.loc[best, "peak_planned_bytes"]),
        "speedup_tvm_static_vs_torch_eager": ratio(pf.loc[torch_, "ms_per_frame"], pf.loc[best, "ms_per_frame"]),
        "speedup_untuned_static_vs_dynamic": ratio(pf.loc[dyn, "ms_per_frame"], pf.loc[VARIANTS["static"], "ms_per_frame"]),
        "speedup_tuned_vs_untuned_static": (ratio(pf.loc[VARIANTS["static"], "ms_per_frame"],
                                                  pf.loc[VARIANTS["tuned"], "ms_per_frame"]) if tuned_ok else None),
        "speedup_manual_vs_tuned": (ratio(pf.loc[VARIANTS["tuned"], "ms_per_frame"], pf.loc[VARIANTS["manual"], "ms_per_frame"])
                                    if tuned_ok and has("manual") else None),
        "speedup_winograd_vs_manual": (ratio(pf.loc[VARIANTS["manual"], "ms_per_frame"], pf.loc[VARIANTS["winograd"], "ms_per_frame"])
                                       if has("manual") and has("winograd") else None),
        "ms_per_frame": {v: (None if not np.isfinite(x) else round(float(x), 2)) for v, x in pf.ms_per_frame.items()},
        "share_of_sgemm_peak_by_path": ({int(p): round(float(g.share_of_sgemm_peak.max()), 3)
                                         for p, g in table[table.variant == best].groupby("path")}
                                        if "share_of_sgemm_peak" in table else None),
        "per_shape": per_shape,
        "paper_claims": {k: PAPER_CLAIMS[k] for k in ("compiler_speedup", "compiler_memory_saving")},
    }


__all__ = ["VARIANTS", "shape_table", "representative_shapes", "real_patches", "dynamic_memory",
           "bench_variants", "compare_outputs", "frame_psnr", "per_frame_estimate", "headline"]
