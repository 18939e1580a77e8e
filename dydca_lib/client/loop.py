"""The client loop: one LR frame -> patches -> units -> stitched SR frame, frame after frame,
with model switching at chunk boundaries for methods that switch."""

from __future__ import annotations

import time

import numpy as np

from ..compiler.shapes import batch_cap
from ..tensors import drop_context, padded_for_patches, with_context
from .engines import Engine, make_engine
from .plan import FramePlan, Workload
from .runtimes import runtime


def sr_frame(engine: Engine, lr: np.ndarray, plan: FramePlan, scale: int, context: int = 0,
             one_at_a_time: bool = False, model_ms: list | None = None, max_batch_pixels: int = 0) -> np.ndarray:
    """LR frame -> patches (with ``context`` LR px around each) -> units -> stitched SR frame.

    Batched: one call per (patch h, w, path), patches in plan order, or several where a call would
    hold more than ``max_batch_pixels`` LR pixels (:func:`~dydca_lib.compiler.shapes.batch_cap`;
    every runtime alike: past the caches a big batch streams each layer through memory). ``one_at_a_time`` (the
    reference): one call per patch, in plan order, routed in Python (``engine.route`` by size for
    the dynamic model, else the plan's path). The frame covered by the plan is returned (the
    overhang of border patches dropped), as :func:`dydca_lib.patches.stitch` does. ``model_ms``
    (a list): the milliseconds spent inside ``engine.run`` (the runtime's calls, with their input and
    output conversion) are appended to it; the rest of the frame is the client loop (cut, stitch).
    """
    def run(batch, unit):
        if model_ms is None:
            return engine.run(batch, unit)
        t0 = time.perf_counter()
        out = engine.run(batch, unit)
        model_ms.append((time.perf_counter() - t0) * 1e3)
        return out

    H, W = lr.shape[:2]
    s = int(scale)
    hmax, wmax = int((plan.y + plan.h).max()), int((plan.x + plan.w).max())
    padded = padded_for_patches(lr, hmax, wmax, context)
    out_h, out_w = min(H, hmax) * s, min(W, wmax) * s
    canvas = np.empty((hmax * s, wmax * s, lr.shape[2]), dtype=np.uint8)

    def cut(y, x, h, w):
        hc, wc = with_context(h, w, context)
        return padded[y:y + hc, x:x + wc]

    def put(sr, y, x, h, w):
        canvas[y * s:(y + h) * s, x * s:(x + w) * s] = drop_context(sr, context, s)

    if one_at_a_time:
        for y, x, h, w, p in zip(plan.y, plan.x, plan.h, plan.w, plan.path):
            unit = engine.route(h, w) if engine.routes_by_size else p
            put(run(cut(y, x, h, w)[None], unit)[0], y, x, h, w)
    else:
        keys = np.stack([plan.h, plan.w, plan.path], axis=1)
        uniq, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        for g in np.argsort(first):
            idx = np.flatnonzero(inverse.ravel() == g)
            h, w, p = (int(v) for v in uniq[g])
            step = batch_cap(*with_context(h, w, context), len(idx), max_batch_pixels)
            for part in (idx[k:k + step] for k in range(0, len(idx), step)):
                sr = run(np.stack([cut(plan.y[i], plan.x[i], h, w) for i in part]), p)
                for i, o in zip(part, sr):
                    put(o, plan.y[i], plan.x[i], h, w)
    return canvas[:out_h, :out_w]


class Client:
    """One configuration (method x runtime x workload) as a client runs it, frame after frame.

    ``switching=False``: every unit the workload uses is loaded up front (``startup_s``).
    ``switching=True`` (one model per chunk): only the units of the current frame are resident;
    when a frame needs others, the old ones are dropped and the new ones loaded, inside that
    frame's latency (``switch_ms``).
    """

    def __init__(self, bundle: dict, workload: Workload, threads: int, switching: bool = False,
                 one_at_a_time: bool = False):
        self.workload, self.switching = workload, switching
        self.one_at_a_time = one_at_a_time or runtime(bundle["runtime"]).one_patch_per_call
        t0 = time.perf_counter()
        self.engine = make_engine(bundle, threads)
        self.scale, self.context = int(bundle["scale"]), int(bundle["context"])
        self.max_batch_pixels = int(bundle.get("max_batch_pixels", 0))
        self.units = sorted({int(u) for p in workload.plans.values() for u in np.unique(p.path)})
        if not switching:
            for u in self.units:
                self.engine.load(u)
        self.startup_s = time.perf_counter() - t0

    def frame(self, i: int) -> tuple[np.ndarray, float, float]:
        """SR frame ``i``: ``(sr, switch_ms, compute_ms)``; ``last_model_ms``: the part of
        ``compute_ms`` spent inside the runtime's calls."""
        plan = self.workload.plans[i]
        switch_ms = 0.0
        if self.switching:
            t0 = time.perf_counter()
            need = {int(u) for u in np.unique(plan.path)}
            if need != self.engine.loaded:
                for u in self.engine.loaded - need:
                    self.engine.unload(u)
                for u in sorted(need - self.engine.loaded):
                    self.engine.load(u)
                switch_ms = (time.perf_counter() - t0) * 1e3
        t1 = time.perf_counter()
        calls: list[float] = []
        sr = sr_frame(self.engine, self.workload.frames[i], plan, self.scale, self.context, self.one_at_a_time, calls,
                      self.max_batch_pixels)
        compute_ms = (time.perf_counter() - t1) * 1e3
        self.last_model_ms = float(sum(calls))
        return sr, switch_ms, compute_ms

    def run(self, passes: int = 1, warmup: int = 1, budget_s: float | None = None) -> list[dict]:
        """``warmup`` untimed frames (the first frames of the order), then ``passes`` timed passes over
        the frames in order. With ``budget_s``, timing stops once the timed frames have taken that
        long (at least one frame is always timed); ``frames_timed`` in the summary says how many ran."""
        order = self.workload.order
        self.first_output = None  # (frame id, SR) of the first frame run, for output checks
        for k in range(int(warmup)):
            sr, _, _ = self.frame(order[k % len(order)])
            if self.first_output is None:
                self.first_output = (order[0], sr)
        rows, spent = [], 0.0
        for k in range(int(passes)):
            for pos, i in enumerate(order):
                if budget_s is not None and rows and spent > budget_s:
                    return rows
                sr, sw, comp = self.frame(i)
                if self.first_output is None:
                    self.first_output = (i, sr)
                spent += (sw + comp) / 1e3
                rows.append({"pass": k, "position": pos, "frame": i, "chunk": self.workload.chunk_of[i],
                             "switch_ms": sw, "compute_ms": comp, "model_ms": self.last_model_ms,
                             "total_ms": sw + comp})
        return rows


