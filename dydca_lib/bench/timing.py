"""Timing helpers and the compute roofline: machine description, the measured sgemm peak,
FLOPs of a WDSR path and of a frame, per-frame latency summaries, PyTorch eager timing."""

from __future__ import annotations

import os
import statistics
import time

import numpy as np

from ..models import wdsr_flops  # noqa: F401  (re-exported: the roofline's FLOP count)
from ..tensors import with_context


def machine(threads: int) -> dict:
    """CPU model, cores this process may use and the thread count every runtime was given."""
    from ..runinfo import cpu_model

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return {"cpu": cpu_model(), "cores": cores, "threads": int(threads)}


def sgemm_peak(n: int = 2048, repeats: int = 5, threads: int | None = None) -> dict:
    """This CPU's float32 matrix-multiply throughput: ``torch.mm`` of two ``n x n`` matrices.

    Returns the best (``peak_gflops``) and median GFLOP/s over ``repeats`` timed calls (one
    untimed warm-up), with the thread count: the ceiling of the compute roofline.
    """
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(n, n, generator=g), torch.rand(n, n, generator=g)
    return {"n": n, **throughput(lambda: torch.mm(a, b), 2.0 * n ** 3, repeats),
            "repeats": int(repeats), "threads": torch.get_num_threads()}


def throughput(fn, flop: float, repeats: int = 5) -> dict:
    """``fn`` timed ``repeats`` times after one untimed warm-up: ``peak_gflops`` (best call) and
    ``median_gflops`` for ``flop`` operations per call."""
    fn()
    secs = []
    for _ in range(int(repeats)):
        t0 = time.perf_counter()
        fn()
        secs.append(time.perf_counter() - t0)
    return {"peak_gflops": flop / min(secs) / 1e9, "median_gflops": flop / statistics.median(secs) / 1e9}


def frame_flops(units: dict, plan, context: int) -> float:
    """Useful FLOPs of one frame (a :class:`~dydca_lib.client.plan.FramePlan`): every patch (with
    context) through its unit, no padding."""
    total = 0.0
    for u, h, w in zip(plan.path, plan.h, plan.w):
        total += wdsr_flops(units[int(u)].config, *with_context(h, w, context))
    return total


def latency_summary(rows, flops_per_frame: float, peak_gflops: float | None = None) -> dict:
    """Median/p95/mean per-frame latency, FPS (frames / total time), switch share, achieved GFLOP/s
    (useful FLOPs / median compute time) and its share of the sgemm peak; with ``model_ms`` in the
    rows, the median time inside the runtime's calls, the rest (the client loop: cut, stitch) and
    the calls' share of the compute time."""
    total = np.array([r["total_ms"] for r in rows], dtype=float)
    comp = np.array([r["compute_ms"] for r in rows], dtype=float)
    sw = np.array([r["switch_ms"] for r in rows], dtype=float)
    med_c = float(np.median(comp))
    out = {"frames_timed": len(rows), "median_ms": float(np.median(total)), "p95_ms": float(np.percentile(total, 95)),
           "mean_ms": float(total.mean()), "fps": float(1e3 / total.mean()), "median_compute_ms": med_c,
           "switch_ms_total": float(sw.sum()), "switches": int((sw > 0).sum()),
           "gflop_per_frame": flops_per_frame / 1e9, "achieved_gflops": flops_per_frame / med_c / 1e6}
    out["share_of_sgemm_peak"] = out["achieved_gflops"] / peak_gflops if peak_gflops else float("nan")
    if rows and all("model_ms" in r for r in rows):  # inside the runtime's calls vs the client loop (cut, stitch)
        model = np.array([r["model_ms"] for r in rows], dtype=float)
        out["median_model_ms"] = float(np.median(model))
        out["median_other_ms"] = float(np.median(comp - model))
        out["model_share"] = float(model.sum() / comp.sum()) if comp.sum() > 0 else float("nan")
    return out


def warm_up(fn, *args, calls: int = 1, seconds: float = 0.0) -> None:
    """Call ``fn(*args)`` ``calls`` times and then until ``seconds`` have passed. A CPU's AMX unit
    runs at about half its rate for its first ~25 ms of tile work (measured on a Xeon: the first
    ~11 calls of a 1.2 ms path took 2.4 ms), so a timing that warms up by one call times the cold unit."""
    t0 = time.perf_counter()
    for _ in range(int(calls)):
        fn(*args)
    while time.perf_counter() - t0 < seconds:
        fn(*args)


def time_torch(fn, *args, number: int = 3, repeat: int = 7, warmup: int = 1, warmup_s: float = 0.0) -> dict:
    """Latency of ``fn(*args)`` in PyTorch eager under ``torch.no_grad``: median and std over
    ``repeat`` runs (each the mean of ``number`` calls, ``time.perf_counter``), in ms, after
    ``warmup`` calls and at least ``warmup_s`` seconds of them (:func:`warm_up`)."""
    import torch

    times = []
    with torch.no_grad():
        warm_up(fn, *args, calls=warmup, seconds=warmup_s)
        for _ in range(repeat):
            t0 = time.perf_counter()
            for _ in range(number):
                fn(*args)
            times.append((time.perf_counter() - t0) / number)
    return {"median_ms": statistics.median(times) * 1e3, "std_ms": float(np.std(times)) * 1e3, "repeat": repeat,
            "number": number, "threads": torch.get_num_threads()}
