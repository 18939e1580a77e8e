"""The compiled Dy-DCA as an upscaler (:class:`CompiledDynamicSR`) and TVM timing."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import tvm

from . import CompileError, UntunedWarning
from ..models import DynamicWDSR
from ..tensors import to_nchw, to_uint8
from .database import has_database, tuning_dir
from .export import export_paths, path_bounds
from .static import static_module
from .passes import compile_dynamic, compile_planned, load_vm, optimize, run_vm
from .shapes import DEFAULT_MAX_BATCH, StaticShape, function_name, run_split, split_batch, static_shapes
from .target import as_target, target_name, tvm_threads


class CompiledDynamicSR:
    """A :class:`DynamicWDSR` compiled with TVM for a known set of patch shapes; an *upscaler*.

    ``shapes``: the :class:`StaticShape` list (path, h, w, batch) to serve, from
    :func:`static_shapes` (or use :meth:`from_manifest`). ``mode``:

    * ``"static"`` (the compiler on): one static function per shape, fused, memory planned,
      tuned when ``tuned`` (database from ``work_dir``, default :func:`tuning_dir`; missing ->
      :class:`UntunedWarning` and untuned kernels), or, with ``manual``, convolutions in NHWC with
      the hand-written register-blocked schedule (:mod:`.schedules`, no database) — with
      ``winograd`` too, the 3x3 body convolutions by Winograd F(4x4, 3x3) (:mod:`.winograd`) — all in
      one executable. ``kernels`` says which: ``"tuned"``, ``"manual"``, ``"winograd"`` or ``"untuned"``. A request of ``n``
      patches runs as :func:`split_batch` calls (a few smaller ones for the rest, padded only where that is cheaper).
    * ``"symbolic"`` (the naive baseline): one symbolic executable per path, bounds = the largest
      shape and batch of that path, unfused and untuned; any shape within the bounds runs, in
      calls of at most the largest batch.

    ``upscaler(lr_patches_uint8_NHWC, path) -> sr_uint8_NHWC`` (also ``__call__``) matches
    :mod:`dydca_lib.evaluate`; :meth:`forward` is the float version (NCHW in [0, 1]).
    ``report`` (static mode) has one row per function: kernels, kernel counts, memory before/after.
    ``modules`` keeps each path's symbolic module as exported (:func:`~.export.path_bounds`),
    ``params`` its weights, ``static`` (static mode) the unfused static module (what tuning reads).
    """

    def __init__(self, model: DynamicWDSR, shapes: Iterable[StaticShape | tuple], *, mode: str = "static",
                 target=None, tuned: bool = False, work_dir: str | Path | None = None, manual: bool = False,
                 winograd: bool = False):
        if mode not in ("static", "symbolic"):
            raise CompileError(f"mode must be 'static' or 'symbolic', got {mode!r}")
        if not isinstance(model, DynamicWDSR):
            raise CompileError(f"CompiledDynamicSR wraps a DynamicWDSR, got {type(model).__name__}")
        self.mode, self.target = mode, as_target(target)
        self.scale = int(model.config["scale"])
        self.shapes = sorted({s if isinstance(s, StaticShape) else StaticShape(*(int(v) for v in s)) for s in shapes})
        if not self.shapes:
            raise CompileError("no shapes to compile")
        n_paths = len(model.paths)
        for s in self.shapes:
            if not 0 <= s.path < n_paths:
                raise CompileError(f"shape {s} names path {s.path}, but the model has {n_paths} paths")
            if min(s.h, s.w) < 2 or s.batch < 1:
                raise CompileError(f"bad shape {s}: patches must be at least 2x2 and batches at least 1")
        self.buckets: dict[tuple[int, int, int], list[int]] = {}
        for s in self.shapes:
            self.buckets.setdefault((s.path, s.h, s.w), []).append(s.batch)
        self.paths = sorted({s.path for s in self.shapes})
        self.report = pd.DataFrame()
        t0 = time.perf_counter()
        self.max_batch = {p: path_bounds([s for s in self.shapes if s.path == p])["batch"][1] for p in self.paths}
        self.max_hw = {p: (max(s.h for s in self.shapes if s.path == p), max(s.w for s in self.shapes if s.path == p))
                       for p in self.paths}
        paths = dict(enumerate(model.paths))
        database = None
        if mode == "symbolic":
            self.modules, self.params = export_paths(paths, self.shapes)
            self.static = self.program = None
            self.executables = {p: compile_dynamic(m, self.target) for p, m in self.modules.items()}
            self.vms = {p: load_vm(ex) for p, ex in self.executables.items()}
        else:
            self.static, self.params, self.modules = static_module(paths, self.shapes)
            if tuned and manual:
                raise CompileError("tuned=True applies a tuning database, manual=True the hand-written "
                                   "schedules; choose one")
            if tuned:
                database = Path(work_dir) if work_dir is not None else tuning_dir(self.target)
                if not has_database(database):
                    warnings.warn(f"no tuning database for target {target_name(self.target)} in {database}: "
                                  "running untuned kernels (slow)", UntunedWarning, stacklevel=2)
                    database = None
            self.program = optimize(self.static, self.target, database, manual=manual, winograd=winograd)
            self.report = self.program.report
            self.executable = compile_planned(self.program.planned, self.target)
            self.vm = load_vm(self.executable)
        self.tuned = database is not None
        self.manual = bool(manual) and mode == "static"
        self.winograd = self.manual and bool(winograd)
        self.kernels = "winograd" if self.winograd else "manual" if self.manual else "tuned" if self.tuned else "untuned"
        self.build_seconds = time.perf_counter() - t0

    @classmethod
    def from_manifest(cls, model: DynamicWDSR, manifest: pd.DataFrame, context: int = 0,
                      max_batch: int = DEFAULT_MAX_BATCH, **kwargs) -> "CompiledDynamicSR":
        """Compile for every (path, patch shape, batch bucket) of a manifest (:func:`static_shapes`)."""
        return cls(model, static_shapes(manifest, context, max_batch), **kwargs)

    def _check(self, x: np.ndarray, path: int, layout: str) -> tuple[int, int]:
        if not isinstance(x, np.ndarray) or x.ndim != 4:
            raise CompileError(f"expected a 4-d {layout} array of patches, got "
                               f"{getattr(x, 'shape', type(x).__name__)}")
        h, w = (x.shape[1], x.shape[2]) if layout == "NHWC" else (x.shape[2], x.shape[3])
        c = x.shape[3] if layout == "NHWC" else x.shape[1]
        if c != 3:
            raise CompileError(f"expected 3 colour channels ({layout}), got shape {x.shape}")
        path = int(path)
        if self.mode == "static":
            if (path, h, w) not in self.buckets:
                known = sorted(k for k in self.buckets if k[0] == path)
                raise CompileError(f"this compiled model knows no {w}x{h} patches on path {path}; it was "
                                   f"compiled for (path, h, w) {known or sorted(self.buckets)}. Compile it "
                                   "with the manifest (and context) you run.")
        else:
            if path not in self.vms:
                raise CompileError(f"path {path} was not compiled (paths: {sorted(self.vms)})")
            hmax, wmax = self.max_hw[path]
            if not (2 <= h <= hmax and 2 <= w <= wmax):
                raise CompileError(f"{w}x{h} patches exceed the bounds compiled for path {path} "
                                   f"(2..{wmax} x 2..{hmax})")
        return h, w

    def forward(self, x: np.ndarray | torch.Tensor, path: int) -> np.ndarray:
        """Float32 NCHW in [0, 1] -> float32 NCHW SR, like ``model(x, path)``."""
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        x = np.asarray(x, dtype=np.float32)
        h, w = self._check(x, path, "NCHW")
        path, n = int(path), x.shape[0]
        out = np.empty((n, 3, h * self.scale, w * self.scale), dtype=np.float32)
        if self.mode == "static":
            return run_split(x, split_batch(n, self.buckets[(path, h, w)]), lambda chunk, b: run_vm(
                self.vm, function_name(path, h, w, b), chunk, self.params[path]), out)
        plan = [(k, k) for k, _ in split_batch(n, [self.max_batch[path]])]  # symbolic: any batch up to the bound
        return run_split(x, plan, lambda chunk, b: run_vm(self.vms[path], "main", chunk, self.params[path]), out)

    def upscale(self, lr_patches: np.ndarray, path: int) -> np.ndarray:
        """uint8 NHWC LR patches -> uint8 NHWC SR patches (the ``evaluate`` upscaler signature)."""
        if not isinstance(lr_patches, np.ndarray) or lr_patches.dtype != np.uint8:
            raise CompileError(f"upscale takes uint8 NHWC patches, got "
                               f"{getattr(lr_patches, 'dtype', type(lr_patches).__name__)}")
        if lr_patches.ndim != 4 or lr_patches.shape[3] != 3:
            raise CompileError(f"upscale takes uint8 NHWC patches (N, h, w, 3), got shape {lr_patches.shape}")
        return to_uint8(self.forward(to_nchw(lr_patches), path))

    __call__ = upscale

    def function_for(self, path: int, h: int, w: int, batch: int) -> str:
        """The name of the static function serving ``batch`` patches (a compiled bucket) of ``h x w``."""
        key = (int(path), int(h), int(w))
        if self.mode != "static" or key not in self.buckets or int(batch) not in self.buckets[key]:
            raise CompileError(f"no static function for path {path}, {w}x{h}, batch {batch}")
        return function_name(path, h, w, batch)



def time_vm(vm, func_name: str, args: list, number: int = 3, repeat: int = 7, warmup: int = 1) -> dict:
    """Latency of ``vm[func_name](*args)`` with ``vm.time_evaluator``: median and std over
    ``repeat`` runs (each the mean of ``number`` calls), in ms, plus the TVM thread count."""
    dev = tvm.cpu()
    args = [tvm.runtime.tensor(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else a for a in args]
    for _ in range(warmup):
        vm[func_name](*args)
    res = vm.time_evaluator(func_name, dev, number=number, repeat=repeat)(*args)
    return {"median_ms": float(res.median) * 1e3, "std_ms": float(res.std) * 1e3, "repeat": repeat,
            "number": number, "threads": tvm_threads()}
