"""Reduced precision on the client (notebook 06): which (runtime, precision) this CPU runs, the
peak of each precision measured in the run, int8 calibration data, what each precision costs in
PSNR through the client pipeline, and the fastest client within a PSNR tolerance of fp32; and one
path at one patch shape per (runtime, precision) for notebook 05 (:func:`path_table`).

Precisions are runtimes of their own (``Runtime.precision``, :mod:`dydca_lib.client.runtimes`):
``torch_batched_bf16`` (bf16 weights and activations, channels-last, oneDNN's AVX512-BF16/AMX
kernels) and ``onnxruntime_int8`` (static QDQ int8, per-channel weights, calibrated on the
server's training frames). :func:`support_table` lists the (runtime, precision) pairs that are not
built, and why.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..client.bundle import export_bundle
from ..client.runtimes import PRECISION_CPU_FLAGS, RUNTIMES, names, precision_of, runtime, unsupported_reason
from ..evaluate import PRECISION_TOLERANCE_DB, evaluate
from .timing import throughput, warm_up

WARMUP_S = 0.3  # seconds of calls before a timing (the AMX unit runs at half rate for its first ~25 ms)

# (runtime family, precision) pairs with no runtime here, and why (the rest are RUNTIMES)
NOT_BUILT = {
    ("onnxruntime", "bf16"): "ONNX Runtime's CPU provider has no bf16 Conv kernel (it would insert casts and run fp32)",
    ("onnxruntime", "fp16"): "MLAS has fp16 convolutions on ARM64 only; on x86 the CPU provider runs fp16 graphs in fp32",
    ("tvm", "bf16"): "not built without AMX: TVM 0.27 ships no x86 bf16 dot-product intrinsic, LLVM does not "
                     "form vdpbf16ps (AVX512-BF16: 2x the fp32 FMA rate) from TIR loops, and the default TIR "
                     "pipeline legalizes every bf16 value to fp32 before codegen; there int8 vpdpbusd (4x) is the "
                     "faster reduced precision (tvm_int8). With AMX: tvm_amx_bf16 (tdpbf16ps on bf16 bits "
                     "stored as uint16, so the legalization never sees them)",
}


def support_table(runtimes, flags=None) -> pd.DataFrame:
    """One row per (runtime, precision) pair: built here or not, runs on this CPU or not, and why."""
    rows = []
    for rt in runtimes:
        why = unsupported_reason(rt, flags)
        rows.append({"runtime": rt, "precision": precision_of(rt), "built": True, "runs_here": why is None,
                     "note": why or RUNTIMES[rt]})
    runs = {(runtime(rt).package, precision_of(rt)) for r, rt in zip(rows, runtimes) if r["runs_here"]}
    for (family, prec), why in NOT_BUILT.items():
        if (family, prec) in runs:  # e.g. TVM bf16: built for AMX (tvm_amx_bf16), and this CPU has it
            continue
        rows.append({"runtime": family, "precision": prec, "built": False, "runs_here": False, "note": why})
    return pd.DataFrame(rows)


def runnable(runtimes, flags=None) -> list[str]:
    """The runtimes this CPU runs (reduced precisions need their CPU features)."""
    return [rt for rt in runtimes if unsupported_reason(rt, flags) is None]


def matmul_peaks(n: int = 2048, repeats: int = 5, threads: int = 1, flags=None) -> dict:
    """This CPU's matrix-multiply peak per precision, measured now: fp32 and bf16 ``torch.mm`` of
    ``n x n`` matrices, int8 as ONNX Runtime's ``MatMulInteger`` (uint8 x int8 -> int32, the MLAS
    kernel its int8 convolutions use). A precision the CPU lacks (:data:`PRECISION_CPU_FLAGS`) is
    left out. ``{precision: {"peak_gflops" (or GOP/s), "median_gflops"}}``."""
    import torch

    from ..runinfo import cpu_flags

    flags = cpu_flags() if flags is None else set(flags)
    torch.set_num_threads(int(threads))
    g = torch.Generator().manual_seed(0)
    work = 2.0 * n ** 3

    def timed(fn):
        return throughput(fn, work, repeats)

    out = {}
    a, b = torch.rand(n, n, generator=g), torch.rand(n, n, generator=g)
    out["fp32"] = timed(lambda: torch.mm(a, b))
    if set(PRECISION_CPU_FLAGS["bf16"]) & flags:
        a16, b16 = a.bfloat16(), b.bfloat16()
        out["bf16"] = timed(lambda: torch.mm(a16, b16))
    if set(PRECISION_CPU_FLAGS["int8"]) & flags:
        sess, feed = _int8_matmul_session(n, threads)
        out["int8"] = timed(lambda: sess.run(None, feed))
    return {k: {**v, "n": n, "threads": int(threads)} for k, v in out.items()}


def _int8_matmul_session(n: int, threads: int):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.integers(-128, 128, size=(n, n), dtype=np.int8), "b")
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "int8_peak",
                              [helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, [n, n])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = int(threads), 1
    sess = ort.InferenceSession(model.SerializeToString(),
                                opts, providers=["CPUExecutionProvider"])
    return sess, {"a": rng.integers(0, 256, size=(n, n), dtype=np.uint8)}


def calibration_batches(method, data, frame_ids, context: int, per_unit: int = 64, seed: int = 0) -> dict:
    """int8 calibration data of a prepared method: LR patches (with ``context``) of ``frame_ids``
    (training frames: the server has them) cut by the method's own manifest, grouped by the unit
    that serves them, at most ``per_unit`` patches per unit drawn evenly, batched by size.
    ``{unit: [uint8 NHWC batches]}``."""
    from ..patches import extract

    man = method.frame_manifest([int(i) for i in frame_ids])
    man = man if "path" in man else man.assign(path=0)
    rng = np.random.default_rng(seed)
    out = {}
    for unit, g in man.groupby("path"):
        pick = g.iloc[np.sort(rng.choice(len(g), size=min(per_unit, len(g)), replace=False))]
        batches = []
        for (_, _), s in pick.groupby(["h", "w"], sort=False):
            pieces = []
            for frame, f in s.groupby("frame", sort=False):
                pieces += extract(data.frames.lr(int(frame)), f.reset_index(drop=True), context=context)
            batches += [np.stack(pieces[i:i + 16]) for i in range(0, len(pieces), 16)]
        out[int(unit)] = batches
    return out


def path_table(path_model, shape, lr: np.ndarray, calibration: list, runtimes, threads: int, work_dir,
               context: int, peaks: dict | None = None, number: int = 3, repeat: int = 7) -> pd.DataFrame:
    """One WDSR path (notebook 05: path 0) on one batch of LR patches ``lr`` (uint8 NHWC, context
    included, ``shape``'s :class:`~dydca_lib.compiler.StaticShape`) through each runtime's client
    engine (the bundle notebook 06 ships: weights as stored, the runtime's input/output conversion),
    for every runtime of ``runtimes`` this CPU runs: latency (median and std of ``repeat`` x
    ``number`` calls), GFLOP/s (the path's direct-convolution FLOPs over the latency; GOP/s in
    int8) and its share of ``peaks`` (:func:`matmul_peaks`), and the output's difference from the
    fp32 ``torch_batched`` engine in 8-bit levels. ``calibration``: uint8 NHWC batches (training
    frames) for the int8 runtimes."""
    from ..client.engines import make_engine
    from ..client.plan import FramePlan
    from ..models import wdsr_flops
    from .timing import time_torch

    lr = np.ascontiguousarray(lr)
    if lr.dtype != np.uint8 or lr.shape != (shape.batch, shape.h, shape.w, 3):
        raise ValueError(f"expected uint8 patches of shape {(shape.batch, shape.h, shape.w, 3)}, got {lr.dtype} {lr.shape}")
    n = shape.batch
    plan = FramePlan(np.zeros(n, np.int64), np.zeros(n, np.int64), np.full(n, shape.h - 2 * context, np.int64),
                     np.full(n, shape.w - 2 * context, np.int64), np.zeros(n, np.int64))
    scale = int(path_model.config["scale"])
    flop = wdsr_flops(path_model.config, shape.h, shape.w) * n
    todo = ["torch_batched", *[r for r in runnable(runtimes) if r != "torch_batched"]]
    rows, want = [], None
    for rt in todo:
        bundle = export_bundle({0: path_model}, rt, Path(work_dir) / rt, scale=scale, context=context,
                               plans={0: plan}, max_batch=n, calibration={0: list(calibration)})
        engine = make_engine(bundle, threads)
        engine.load(0)
        out = engine.run(lr, 0)
        want = out if want is None else want
        if rt not in runtimes:  # the fp32 reference, timed only when asked for
            continue
        t = time_torch(engine.run, lr, 0, number=number, repeat=repeat, warmup_s=WARMUP_S)  # AMX warms up in ~25 ms
        d = np.abs(out.astype(np.int16) - want.astype(np.int16))
        prec = precision_of(rt)
        peak = (peaks or {}).get(prec, {}).get("peak_gflops")
        gflops = flop / t["median_ms"] / 1e6
        rows.append({"runtime": rt, "precision": prec, "median_ms": t["median_ms"], "std_ms": t["std_ms"],
                     "gflops": gflops, "precision_peak_gflops": peak,
                     "share_of_precision_peak": gflops / peak if peak else np.nan,
                     "max_diff_levels": int(d.max()), "mean_diff_levels": float(d.mean())})
    return pd.DataFrame(rows)


def quality_table(configs: list, methods: dict, data, heldout_ids, threads: int, resolution: str,
                  progress: bool = True) -> pd.DataFrame:
    """Every configuration at ``resolution`` (the clip's) upscales the held-out frames through its
    own engine (the bundle it ships: same patches, same context, the runtime's arithmetic), scored
    with notebook 04's full-frame protocol (:func:`dydca_lib.evaluate.evaluate`). Adds each row's
    change against the same method's fp32 ``torch_batched`` row (else its first fp32 row)."""
    from tqdm.auto import tqdm

    from ..client.engines import make_engine

    ids = [int(i) for i in heldout_ids]
    rows = []
    todo = [c for c in configs if c.resolution == resolution]
    for c in tqdm(todo, desc="quality per runtime (held-out frames)", disable=not progress):
        eng = make_engine(c.bundle, threads)
        for u in sorted(c.units):
            eng.load(u)
        manifest = methods[c.key].frame_manifest(ids)
        row = {"method": c.method, "runtime": c.runtime, "precision": precision_of(c.runtime), "frames": 0,
               "frame_psnr_rgb": np.nan, "frame_psnr_y": np.nan, "frame_ssim_y": np.nan, "note": ""}
        try:
            _, frames_df, _ = evaluate(eng.run, data.frames, manifest, ids, c.context, desc=f"{c.method} {c.runtime}")
            row.update(frames=len(frames_df), frame_psnr_rgb=float(frames_df.psnr_rgb.mean()),
                       frame_psnr_y=float(frames_df.psnr_y.mean()), frame_ssim_y=float(frames_df.ssim_y.mean()))
        except KeyError as e:  # a TVM library holds the timed frames' patch shapes only
            row["note"] = f"not scored: {e}"
        rows.append(row)
        del eng
    out = pd.DataFrame(rows)
    return with_fp32_deltas(out)


def with_fp32_deltas(quality: pd.DataFrame, tolerance_db: float = PRECISION_TOLERANCE_DB) -> pd.DataFrame:
    """``d_psnr_rgb_db`` / ``d_psnr_y_db`` / ``d_ssim_y`` against the method's fp32 reference row
    (``torch_batched`` when present, else its first fp32 row) and ``within_tolerance`` (both PSNR
    changes within ``tolerance_db``)."""
    out = quality.copy()
    for col in ("reference", "d_psnr_rgb_db", "d_psnr_y_db", "d_ssim_y"):
        out[col] = np.nan if col != "reference" else ""
    for method, g in quality.groupby("method", sort=False):
        fp32 = g[g.precision == "fp32"]
        if not len(fp32):
            continue
        ref = fp32[fp32.runtime == "torch_batched"].iloc[0] if (fp32.runtime == "torch_batched").any() else fp32.iloc[0]
        idx = g.index
        out.loc[idx, "reference"] = ref.runtime
        out.loc[idx, "d_psnr_rgb_db"] = (g.frame_psnr_rgb - ref.frame_psnr_rgb).round(4)
        out.loc[idx, "d_psnr_y_db"] = (g.frame_psnr_y - ref.frame_psnr_y).round(4)
        out.loc[idx, "d_ssim_y"] = (g.frame_ssim_y - ref.frame_ssim_y).round(5)
    out["within_tolerance"] = (out.d_psnr_rgb_db.abs() <= tolerance_db) & (out.d_psnr_y_db.abs() <= tolerance_db)
    return out


def precision_table(latency: pd.DataFrame, quality: pd.DataFrame, peaks: dict, bundle_rows: pd.DataFrame | None = None,
                    methods=None) -> pd.DataFrame:
    """Precision x runtime rows per method and resolution: FPS, median latency, PSNR change vs fp32
    (measured at the clip's size; the arithmetic is the same at every size), achieved GFLOP/s (the
    useful conv FLOPs) and its share of the *precision's* measured peak, model weight bytes."""
    lat = latency if methods is None else latency[latency.method.isin(list(methods))]
    q = quality.set_index(["method", "runtime"])
    rows = []
    for r in lat.itertuples():
        prec = precision_of(r.runtime)
        peak = peaks.get(prec, {}).get("peak_gflops")
        key = (r.method, r.runtime)
        row = {"method": r.method, "runtime": r.runtime, "precision": prec, "resolution": r.resolution,
               "fps": r.fps, "median_ms": r.median_ms,
               "d_psnr_rgb_db": float(q.loc[key, "d_psnr_rgb_db"]) if key in q.index else np.nan,
               "d_psnr_y_db": float(q.loc[key, "d_psnr_y_db"]) if key in q.index else np.nan,
               "within_tolerance": bool(q.loc[key, "within_tolerance"]) if key in q.index else False,
               "achieved_gflops": r.achieved_gflops, "precision_peak_gflops": peak,
               "share_of_precision_peak": r.achieved_gflops / peak if peak else np.nan}
        if bundle_rows is not None:
            b = bundle_rows[(bundle_rows.method == r.method) & (bundle_rows.runtime == r.runtime) &
                            (bundle_rows.resolution == r.resolution)]
            row["weight_bytes"] = int(b.weight_bytes.iloc[0]) if len(b) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def fastest_within_tolerance(table: pd.DataFrame, method: str) -> dict:
    """Per resolution: the fastest fp32 client, the fastest client of any precision whose PSNR
    stays within tolerance of fp32, and the speed-up of the second over the first; the same
    against the fastest fp32 *peer* client (PyTorch, ONNX Runtime: the fastest fp32 client before
    this project's own TVM kernels) and against the fastest peer client of any precision within
    tolerance (oneDNN bf16, ONNX Runtime int8); and every runtime's FPS."""
    out = {}
    for res, g in table[table.method == method].groupby("resolution", sort=False):
        fp32 = g[g.precision == "fp32"]
        ok = g[g.within_tolerance | (g.precision == "fp32")]
        if not len(fp32) or not len(ok):
            continue
        a, b = fp32.loc[fp32.fps.idxmax()], ok.loc[ok.fps.idxmax()]
        peers = fp32[~fp32.runtime.isin(names(package="tvm"))]
        p = peers.loc[peers.fps.idxmax()] if len(peers) else None
        ok_peers = ok[~ok.runtime.isin(names(package="tvm"))]  # PyTorch / ONNX Runtime in any precision (bf16, int8)
        q = ok_peers.loc[ok_peers.fps.idxmax()] if len(ok_peers) else None
        reduced = g[g.precision != "fp32"]
        c = reduced.loc[reduced.fps.idxmax()] if len(reduced) else None
        out[res.split()[0]] = {
            "fastest_fp32": {"runtime": a.runtime, "fps": round(float(a.fps), 3)},
            "fastest_within_tolerance": {"runtime": b.runtime, "precision": b.precision, "fps": round(float(b.fps), 3),
                                         "d_psnr_rgb_db": _num(b.d_psnr_rgb_db)},
            "speedup_vs_fastest_fp32": round(float(b.fps / a.fps), 3),
            "fastest_fp32_peer": None if p is None else {"runtime": p.runtime, "fps": round(float(p.fps), 3)},
            "speedup_vs_fastest_fp32_peer": None if p is None else round(float(b.fps / p.fps), 3),
            "fastest_peer_within_tolerance": None if q is None else {
                "runtime": q.runtime, "precision": q.precision, "fps": round(float(q.fps), 3)},
            "speedup_vs_fastest_peer_within_tolerance": None if q is None else round(float(b.fps / q.fps), 3),
            "fps_by_runtime": {str(r.runtime): round(float(r.fps), 3) for r in g.itertuples()},
            "fastest_reduced_any_quality": None if c is None else {
                "runtime": c.runtime, "precision": c.precision, "fps": round(float(c.fps), 3),
                "d_psnr_rgb_db": _num(c.d_psnr_rgb_db), "speedup_vs_fastest_fp32": round(float(c.fps / a.fps), 3)}}
    return out


def _num(v):
    return None if v is None or not np.isfinite(float(v)) else round(float(v), 4)



def _kernel_work(func) -> tuple[str, float]:
    """(precision, multiply-add ops x 2) of one kernel of the reduced-precision builds, from its
    buffers: a conv's input (n, h, w, c) and output (n, h, w, f) with 3x3 taps (5x5 for the skip
    conv), output channels as stored (the tail's padding included); element-wise kernels: no work."""
    name = str(func.attrs["global_symbol"]) if func.attrs and "global_symbol" in func.attrs else ""
    if func.attrs and "dydca.macs" in func.attrs:  # the AMX kernels say (their buffers may be flat)
        return str(func.attrs["dydca.precision"]), 2.0 * int(func.attrs["dydca.macs"])
    shapes = [[int(s) for s in p.ty.shape] for p in func.params]
    if "conv" not in name and not name.startswith("amx"):
        return "fp32", 0.0
    (n, h, w, c), f = shapes[0], shapes[-1][-1]
    taps = 25 if "skip" in name else 9
    precision = "fp32" if "skip" in name else "bf16" if "bf16" in name else "int8"
    return precision, 2.0 * n * h * w * c * f * taps


def kernel_table(mod, target, peaks: dict | None = None, number: int = 5, repeat: int = 5, seed: int = 0) -> pd.DataFrame:
    """Every kernel (PrimFunc) of one static function of a hand-scheduled reduced-precision module
    (``mod``: e.g. :func:`dydca_lib.compiler.int8.int8_module` scheduled, or the AMX builds), timed
    alone on random inputs: calls per path, ms per call (median of ``repeat`` x ``number``), ms per
    path, its share of the path's kernel time, GOP/s of its convolution work and the share of that
    precision's measured peak (``peaks``: :func:`matmul_peaks`)."""
    import tvm

    from ..compiler.passes import kernel_calls

    (fn, calls), = kernel_calls(mod).items()
    rng = np.random.default_rng(seed)
    rows = []
    for name in dict.fromkeys(calls):
        func = mod[name].with_attr("global_symbol", name)
        args = []
        for p in func.params:
            shape, dtype = [int(s) for s in p.ty.shape], str(p.ty.dtype)
            a = ((rng.random(shape) * 0.1).astype(dtype) if "float" in dtype
                 else rng.integers(0, 4, shape).astype(dtype))  # small values: no fp32 denormals from bf16 bits
            args.append(tvm.runtime.tensor(a))
        lib = tvm.compile(tvm.IRModule({name: func}), target=target)
        warm_up(lib[name], *args, seconds=WARMUP_S)
        ms = lib.mod.time_evaluator(name, tvm.cpu(), number=number, repeat=repeat)(*args).median * 1e3
        precision, ops = _kernel_work(func)
        peak = (peaks or {}).get(precision, {}).get("peak_gflops", np.nan)
        gops = ops / ms / 1e6 if ops else np.nan
        rows.append({"function": fn, "kernel": name, "calls": calls.count(name), "ms_per_call": ms,
                     "ms_per_path": ms * calls.count(name), "precision": precision, "gop_per_call": ops / 1e9,
                     "gops": gops, "share_of_precision_peak": gops / peak if ops else np.nan})
    out = pd.DataFrame(rows)
    out["share_of_path"] = out.ms_per_path / out.ms_per_path.sum()
    return out
