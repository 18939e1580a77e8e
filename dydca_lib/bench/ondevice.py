"""On-device benchmark of every method on every runtime (notebook 06): the full-frame client
pipeline, per frame, timed end to end; model switching; output checks; the headline ratios.

What a client does with one LR frame: cut it into the method's patches (its routing map), run
each patch through its model or path, stitch the SR frame (:mod:`dydca_lib.client`). Each method
is reduced to *units*, the networks its manifests name by ``path``
(:meth:`dydca_lib.methods.Method.units`). Runtimes (:mod:`dydca_lib.client.runtimes`):

* ``torch_ref`` — PyTorch eager the way the paper's code runs: the model as trained (weight norm
  live), ``torch.no_grad``, one patch per call, Python routing (Dy-DCA: ``model.route(h, w)``);
* ``torch_batched`` — PyTorch eager, weight norm folded, one call per (patch shape, path);
* ``onnxruntime`` — each unit exported with ``torch.onnx.export`` (dynamic batch/H/W), one
  ``InferenceSession`` per unit, ``threads`` intra-op threads, one call per (shape, path);
* ``torch_ref_cuda`` / ``torch_batched_cuda`` — the same two on a CUDA GPU when one is present:
  the same bundle files, models moved to the GPU at load; frames and SR frames stay in host memory,
  so every call's copies to and from the GPU are part of the frame's latency;
* ``tvm`` — the static build of :func:`dydca_lib.compiler.library.tvm_library` (one static,
  fused, memory-planned function per (architecture, patch shape, batch bucket), tuned with the
  committed database), exported as a shared library and run by the TVM *runtime*; units of the
  same architecture share its functions and differ only in the weights passed in.

Every runtime loads its units from a deployment bundle on disk, as a client would receive them;
the same engine code runs here for timing and in a fresh process for memory
(:mod:`dydca_lib.bench.memory`). Multi-model methods either keep all units resident (STDO: every
frame needs all of them) or *switch* (one model per chunk: at a chunk boundary the client drops
the old model and loads the next; the load is part of that frame's latency, ``switch_ms``).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..client.bundle import bundle_bytes, export_bundle
from ..client.runtimes import RUNTIMES, names, precision_of
from ..client.runtimes import runtime as runtime_record
from ..client.engines import make_engine
from ..client.loop import Client
from ..client.plan import Workload, size_routing, switches
from ..evaluate import super_resolve_patches
from ..patches import stitch
from ..published import PAPER_CLAIMS
from .timing import frame_flops, latency_summary


@dataclass
class Config:
    """One benchmarked configuration: a method's units and workload on one runtime."""

    key: str
    method: str
    runtime: str
    resolution: str
    bundle: dict
    workload: Workload
    units: dict
    switching: bool
    context: int


def build_configs(methods: dict, workloads: dict, runtimes, hd_runtimes, clip_resolution: str, folder: Path, *,
                  scale: int, max_batch: int = 16, tuned: bool = True, tune_trials_per_task: int = 0,
                  calibration: dict | None = None, max_batch_pixels: int = 0) -> list[Config]:
    """Export a bundle for every (method, workload, runtime): every runtime at the clip's size,
    ``hd_runtimes`` (among ``runtimes``) at the other sizes; a runtime that compiles at load
    (``Runtime.compiles_at_load``) not for a method that switches models. ``workloads``: ``{(key, resolution): Workload}``.
    ``tune_trials_per_task`` > 0 tunes the TVM kernels the committed database lacks (see :func:`export_bundle`).
    ``calibration``: ``{method key: {unit: batches}}`` for int8 runtimes
    (:func:`dydca_lib.bench.precision.calibration_batches`). ``max_batch_pixels``: the compiled
    (TVM) clients' batch cap per patch shape (:func:`~dydca_lib.compiler.shapes.batch_cap`)."""
    out = []
    for (key, res), wl in workloads.items():
        m = methods[key]
        units, dyn = m.units(), m.dynamic_model()
        for rt in runtimes:
            if res != clip_resolution and rt not in hd_runtimes:
                continue
            if runtime_record(rt).compiles_at_load and switches(units, wl):  # it would compile a model at every chunk border
                continue
            cal = (calibration or {}).get(key) if precision_of(rt) == "int8" else None
            b = export_bundle(units, rt, Path(folder) / f"{key}-{len(out):02d}-{rt}", scale=scale, context=m.context,
                              plans=wl.plans, dynamic=dyn, routing=size_routing(wl) if dyn is not None else None,
                              max_batch=max_batch, tuned=tuned, tune_trials_per_task=tune_trials_per_task,
                              calibration=cal, max_batch_pixels=max_batch_pixels)
            out.append(Config(key, m.name, rt, res, b, wl, units, switches(units, wl), m.context))
    return out


def _with_machine(df, machine_info: dict):
    return df.assign(cpu=machine_info["cpu"], cores=machine_info["cores"], threads=machine_info["threads"])


def workload_table(configs: list[Config]):
    """One row per (method, resolution): LR size, patches per frame, patch shapes, units, GFLOP per frame."""
    rows, seen = [], set()
    for c in configs:
        if (c.key, c.resolution) in seen:
            continue
        seen.add((c.key, c.resolution))
        wl = c.workload
        shapes = sorted({(int(h), int(w)) for p in wl.plans.values() for h, w in zip(p.h, p.w)})
        rows.append({"method": c.method, "resolution": c.resolution, "lr": f"{wl.lr_hw[1]}x{wl.lr_hw[0]}",
                     "frames": len(wl.order), "networks": len(c.units), "switches_models": c.switching,
                     "patches_per_frame": float(np.mean([len(p) for p in wl.plans.values()])),
                     "patch_shapes_lr": " ".join(f"{w}x{h}" for h, w in shapes),
                     "gflop_per_frame": float(np.mean([frame_flops(c.units, p, c.context) for p in wl.plans.values()])) / 1e9})
    return pd.DataFrame(rows)


def artifact_table(configs: list[Config]):
    """What each client receives and how the TVM library was built (tuned kernels, build seconds)."""
    rows = []
    for c in configs:
        t = c.bundle.get("tvm", {})
        rows.append({"method": c.method, "runtime": c.runtime, "resolution": c.resolution, "files": len(
            {u["file"] for u in c.bundle["units"].values()}) + (1 if t else 0), "bundle_bytes": bundle_bytes(c.bundle),
            "weight_bytes": int(sum(u["weight_bytes"] for u in c.bundle["units"].values())),
            "tvm_functions": str(len(t["functions"])) if t else "",
            "tvm_tuned": str(t["tuned"]) if t else "",
            "tvm_kernels_tuned": (f"{t['kernels_tuned']}/{t['kernels']}" if t.get("kernels") else "0") if t else "",
            "tvm_build_s": str(t["build_seconds"]) if t else "", "tvm_cached": str(t["cached"]) if t else ""})
    return pd.DataFrame(rows)


def check_outputs(configs: list[Config], methods: dict, outputs: list):
    """Each configuration's SR of its first frame (``outputs``: ``(frame id, SR)`` per configuration,
    from :func:`time_configs`) against the evaluation path of notebooks 03/04
    (:func:`dydca_lib.evaluate.super_resolve_patches` + :func:`dydca_lib.patches.stitch` with the
    method's PyTorch upscaler): max abs difference and share of differing values (8-bit)."""
    refs, rows = {}, []
    for c, (i, got) in zip(configs, outputs):
        wl = c.workload
        p = wl.plans[i]
        if (c.key, c.resolution, i) not in refs:
            man = pd.DataFrame({"y": p.y, "x": p.x, "h": p.h, "w": p.w, "path": p.path})
            lr, s = wl.frames[i], int(c.bundle["scale"])
            sr = super_resolve_patches(methods[c.key].upscaler(), lr, man, s, c.context)
            covered = (min(lr.shape[0], int((p.y + p.h).max())) * s, min(lr.shape[1], int((p.x + p.w).max())) * s)
            refs[(c.key, c.resolution, i)] = stitch(sr, man, covered, s)
        want = refs[(c.key, c.resolution, i)]
        d = np.abs(got.astype(int) - want.astype(int))
        rows.append({"method": c.method, "runtime": c.runtime, "precision": precision_of(c.runtime),
                     "resolution": c.resolution, "frame": i, "max_abs_diff": int(d.max()),
                     "mean_abs_diff": float(d.mean()), "share_differing": float((d > 0).mean())})
    return pd.DataFrame(rows)


def time_configs(configs: list[Config], threads: int, passes: int = 1, warmup: int = 1,
                 budget_s: float | None = None, progress: bool = True):
    """Time every configuration, one after another in this process (:meth:`Client.run`).

    Returns ``(per_frame, startup, outputs)``: per-frame rows (method, runtime, resolution, pass,
    frame, chunk, switch/compute/total ms, and ``model_ms``: the part of compute inside the runtime's
    calls), the start-up seconds of each client (making its
    resident models ready) and each client's first SR frame ``(frame id, SR)`` (the warm-up frame;
    for :func:`check_outputs`)."""
    frames, startup, outputs = [], [], []
    for c in tqdm(configs, desc="time configurations", disable=not progress):
        client = Client(c.bundle, c.workload, threads, c.switching)
        rows = client.run(passes, warmup, budget_s)
        frames.append(pd.DataFrame(rows).assign(method=c.method, runtime=c.runtime, resolution=c.resolution))
        startup.append(client.startup_s)
        outputs.append(client.first_output)
        del client
    cols = ["method", "runtime", "resolution", "pass", "position", "frame", "chunk", "switch_ms", "compute_ms", "model_ms",
            "total_ms"]
    return pd.concat(frames, ignore_index=True)[cols], startup, outputs


def latency_table(configs: list[Config], per_frame, startup, sgemm: dict, machine_info: dict):
    """One row per configuration: latency (median, p95, mean), FPS, switches, GFLOP per frame,
    achieved GFLOP/s and its share of the sgemm peak, client start-up, and the machine."""
    rows = []
    for c, st in zip(configs, startup):
        d = per_frame[(per_frame.method == c.method) & (per_frame.runtime == c.runtime) & (per_frame.resolution == c.resolution)]
        flops = float(np.mean([frame_flops(c.units, c.workload.plans[int(i)], c.context) for i in d.frame]))
        lr_h, lr_w = c.workload.lr_hw
        rows.append({"method": c.method, "runtime": c.runtime, "precision": precision_of(c.runtime),
                     "resolution": c.resolution, "lr_megapixels": lr_h * lr_w / 1e6,
                     **latency_summary(d.to_dict("records"), flops, sgemm["peak_gflops"]),
                     "startup_ms": st * 1e3, "sgemm_peak_gflops": sgemm["peak_gflops"]})
    return _with_machine(pd.DataFrame(rows), machine_info)


def switching_table(configs: list[Config], per_frame, threads: int, repeats: int = 3, resolution: str | None = None):
    """Model load/switch cost and resident model bytes of every configuration (at ``resolution``):
    per-unit load (a switch), all units (a resident method's start-up), the runtime's own start-up,
    the switches seen in the timed frames and their mean cost."""
    rows = []
    for c in configs:
        if resolution is not None and c.resolution != resolution:
            continue
        units = sorted(c.units)
        cost = switch_cost(c.bundle, units, threads, repeats)
        d = per_frame[(per_frame.method == c.method) & (per_frame.runtime == c.runtime) & (per_frame.resolution == c.resolution)]
        seen = d[d.switch_ms > 0]
        resident = cost["unit_weight_bytes"] * (1 if c.switching else len(units))
        rows.append({"method": c.method, "runtime": c.runtime, "resolution": c.resolution, "networks": len(units),
                     "switching": c.switching, **cost, "resident_weight_bytes": int(resident),
                     "switches_timed": len(seen), "switch_ms_in_sequence": float(seen.switch_ms.mean()) if len(seen) else np.nan})
    return pd.DataFrame(rows)


def switch_cost(bundle: dict, units, threads: int, repeats: int = 3) -> dict:
    """Model load cost from the bundle's files: one unit (median over ``repeats`` loads of each,
    what a switch at a chunk border costs) and all units into an empty engine (median over
    ``repeats``: a resident method's start-up), plus the runtime's own start-up (TVM: loading the
    compiled library) and bytes per unit. Dy-DCA's reference loads its one dynamic model for any unit."""
    units = [int(u) for u in units]
    eng = make_engine(bundle, threads)
    one, every = [], []
    for _ in range(int(repeats)):
        for u in units:
            one.append(eng.load(u))
            eng.unload(u)
        every.append(sum(eng.load(u) for u in units))
        for u in units:
            eng.unload(u)
    per = [bundle["units"][str(u)] for u in units]
    return {"load_ms_median": 1e3 * statistics.median(one), "load_ms_max": 1e3 * max(one),
            "load_all_ms": 1e3 * statistics.median(every), "runtime_init_ms": 1e3 * getattr(eng, "load_seconds", 0.0),
            "unit_file_bytes": int(np.mean([p["bytes"] for p in per])),
            "unit_weight_bytes": int(np.mean([p["weight_bytes"] for p in per]))}




def headline(latency, memory, switching, sgemm: dict, machine_info: dict, clip_resolution: str,
             dydca: str = "Dy-DCA", stdo: str | None = None) -> dict:
    """The ratios of this run (> 1 favours the first-named side), all from the same process and
    machine: TVM vs the PyTorch-eager reference and vs ONNX Runtime for Dy-DCA (latency and peak
    RSS), Dy-DCA vs STDO (memory, load cost), and Dy-DCA's FPS on TVM at the clip's size."""
    def get(df, method, runtime, col, res=clip_resolution):
        r = df[(df.method == method) & (df.runtime == runtime) & (df.resolution == res)] if len(df) else df
        return float(r[col].iloc[0]) if len(r) and np.isfinite(float(r[col].iloc[0])) else None

    def ratio(a, b):
        return round(a / b, 3) if a is not None and b not in (None, 0) else None

    def fastest_tvm(res=clip_resolution):  # fp32: reduced precisions have their own headline (fastest within tolerance)
        ms = {rt: v for rt in names(package="tvm") if precision_of(rt) == "fp32"
              and (v := get(latency, dydca, rt, "median_ms", res)) is not None}
        return min(ms, key=ms.get) if ms else "tvm"

    tvm = fastest_tvm()  # the faster fp32 TVM client (tuned database or hand-written schedules) stands for TVM
    out = {"tvm_runtime": tvm, "fps_dydca_tvm": get(latency, dydca, tvm, "fps"), "resolution": clip_resolution,
           "speedup_tvm_vs_torch_ref_dydca": ratio(get(latency, dydca, "torch_ref", "median_ms"),
                                                   get(latency, dydca, tvm, "median_ms")),
           "speedup_tvm_vs_torch_batched_dydca": ratio(get(latency, dydca, "torch_batched", "median_ms"),
                                                       get(latency, dydca, tvm, "median_ms")),
           "speedup_tvm_vs_onnxruntime_dydca": ratio(get(latency, dydca, "onnxruntime", "median_ms"),
                                                     get(latency, dydca, tvm, "median_ms"))}
    out["fps_dydca"] = {rt: round(v, 3) for rt in RUNTIMES if (v := get(latency, dydca, rt, "fps")) is not None}
    for res in sorted(set(latency.resolution) - {clip_resolution}):
        tag = res.split()[0]
        out[f"fps_dydca_{tag}"] = {rt: round(v, 3) for rt in RUNTIMES if (v := get(latency, dydca, rt, "fps", res)) is not None}
        out[f"tvm_runtime_{tag}"] = tvm_res = fastest_tvm(res)
        for other in ("torch_ref", "torch_batched", "onnxruntime"):
            r = ratio(get(latency, dydca, other, "median_ms", res), get(latency, dydca, tvm_res, "median_ms", res))
            if r is not None:
                out[f"speedup_tvm_vs_{other}_dydca_{tag}"] = r
    if len(memory):
        out["memory_saving_tvm_vs_torch_ref_dydca"] = ratio(get(memory, dydca, "torch_ref", "peak_rss_mib"),
                                                            get(memory, dydca, tvm, "peak_rss_mib"))
        out["memory_saving_tvm_vs_torch_ref_dydca_above_runtime"] = ratio(
            get(memory, dydca, "torch_ref", "above_runtime_mib"), get(memory, dydca, tvm, "above_runtime_mib"))
        out["memory_ratio_onnxruntime_vs_tvm_dydca"] = ratio(get(memory, dydca, "onnxruntime", "peak_rss_mib"),
                                                             get(memory, dydca, tvm, "peak_rss_mib"))
        out["peak_rss_mib_dydca"] = {rt: round(v, 1) for rt in RUNTIMES
                                     if (v := get(memory, dydca, rt, "peak_rss_mib")) is not None}
        if stdo:
            for rt in sorted(set(memory.runtime), key=list(RUNTIMES).index):  # the runtimes measured
                out[f"memory_ratio_stdo_vs_dydca_{rt}"] = ratio(get(memory, stdo, rt, "peak_rss_mib"),
                                                                get(memory, dydca, rt, "peak_rss_mib"))
    if stdo and len(switching):
        sw = switching[switching.resolution == clip_resolution]
        for rt in RUNTIMES:
            a = sw[(sw.method == stdo) & (sw.runtime == rt)]
            b = sw[(sw.method == dydca) & (sw.runtime == rt)]
            if len(a) and len(b):
                out[f"load_all_models_ms_stdo_vs_dydca_{rt}"] = [round(float(a.load_all_ms.iloc[0]), 2),
                                                                  round(float(b.load_all_ms.iloc[0]), 2)]
                out[f"resident_weight_ratio_stdo_vs_dydca_{rt}"] = ratio(float(a.resident_weight_bytes.iloc[0]),
                                                                         float(b.resident_weight_bytes.iloc[0]))
    switchers = switching[switching.switching] if len(switching) else switching
    for method, g in switchers[switchers.resolution == clip_resolution].groupby("method", sort=False):
        key = "switch_ms_per_chunk_model" if method == "one model per chunk" else f"switch_ms_{method}"
        out[key] = {r.runtime: round(float(r.load_ms_median), 2) for r in g.itertuples()}
    lat = latency[latency.resolution == clip_resolution]
    if len(lat):
        best = lat.loc[lat.achieved_gflops.idxmax()]
        out["best_achieved_gflops"] = {"method": best.method, "runtime": best.runtime,
                                       "gflops": round(float(best.achieved_gflops), 1),
                                       "share_of_sgemm_peak": round(float(best.share_of_sgemm_peak), 3)}
    out["sgemm_peak_gflops"] = round(float(sgemm["peak_gflops"]), 1)
    out["paper_claims"] = dict(PAPER_CLAIMS)
    out["machine"] = dict(machine_info)
    return out
