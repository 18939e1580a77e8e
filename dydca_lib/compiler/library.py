"""The deployable shared library a client loads (notebook 06): one ``.so`` per (architectures,
shapes, target, kernels), cached by everything that determines its code. Every fp32 build starts
from :func:`.static.static_module`, as :class:`~dydca_lib.compiler.runtime.CompiledDynamicSR`
(notebooks 05/06) and the attempts (:mod:`dydca_lib.bench.attempts`) do, so a kernel tuned in one is
found by the others.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import tvm

from . import CompileError
from ..codeversion import code_version
from ..models import DynamicWDSR, WDSR, fold_weight_norm, unit_params
from .database import database_coverage, has_database, tuning_dir
from .passes import fuse
from .shapes import static_shapes
from .static import static_module
from .target import as_target, cpu_target
from .tuning import extend_database


# ---------------------------------------------------------------- the client's library (notebook 06)

def _arch_key(config: dict) -> str:
    return json.dumps({k: v for k, v in config.items() if k not in ("use_weight_norm",)}, sort_keys=True)


def _file_digest(paths) -> str:
    h = hashlib.sha256()
    for p in paths:
        p = Path(p)
        if p.is_file():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()[:16]


def _weight_norm_state(src: WDSR, dst: WDSR) -> dict:
    """``src``'s state for ``dst`` (both WDSR; weight norm on either side folded as needed)."""
    if dst.config.get("use_weight_norm", True) == src.config.get("use_weight_norm", True):
        return src.state_dict()
    return fold_weight_norm(src).state_dict()


def architectures(units: Mapping[int, WDSR], scale: int) -> tuple[DynamicWDSR, dict[int, int]]:
    """Units of the same architecture share compiled functions and differ only in the weights
    passed in: one DynamicWDSR whose path ``a`` is the first unit of architecture ``a`` (its
    weights, to check the parameter order of a build), and ``{unit: architecture}``."""
    archs, arch_of = [], {}
    for u, m in sorted(units.items()):
        k = _arch_key(m.config)
        if k not in archs:
            archs.append(k)
        arch_of[int(u)] = archs.index(k)
    first = {a: next(u for u in sorted(units) if arch_of[u] == a) for a in range(len(archs))}
    cfgs = [dict(units[first[a]].config) for a in range(len(first))]
    shared = {k: cfgs[0][k] for k in ("n_feats", "expansion")}
    if any(c["n_feats"] != shared["n_feats"] or c["expansion"] != shared["expansion"] for c in cfgs):
        raise CompileError("units of different widths cannot share one TVM build here")
    paths = [{k: v for k, v in c.items() if k not in ("scale", "use_weight_norm", "n_feats", "expansion")} for c in cfgs]
    # weight norm only if every unit has it (CaFM's per-chunk networks come folded); else plain, weights folded
    wn = all(units[u].config.get("use_weight_norm", True) for u in units)
    dyn = DynamicWDSR(scale=scale, paths=paths, use_weight_norm=wn, **shared).eval()
    for a, u in first.items():
        dyn.paths[a].load_state_dict(_weight_norm_state(units[u], dyn.paths[a]))
    return dyn, arch_of


def _library_shapes(units: Mapping[int, WDSR], plans: Mapping, scale: int, context: int, max_batch: int,
                    max_batch_pixels: int = 0):
    """``(dynamic model of the architectures, {unit: architecture}, architecture keys, static shapes)``
    of a library: one function per (architecture, patch shape with context, batch bucket) ``plans`` needs."""
    dyn, arch_of = architectures(units, scale)
    archs = [_arch_key(p.config) for p in dyn.paths]
    rows = [pd.DataFrame({"frame": f, "h": p.h, "w": p.w, "path": [arch_of[int(u)] for u in p.path]})
            for f, p in plans.items()]
    return dyn, arch_of, archs, static_shapes(pd.concat(rows, ignore_index=True), context, max_batch,
                                               max_batch_pixels)


def _shape_key(shapes) -> list[list[int]]:
    """The static shapes as they enter a library's cache key."""
    return [list(map(int, (s.path, s.h, s.w, s.batch))) for s in shapes]


def _cached(key_record: dict, cache_dir: Path, prefix: str) -> tuple[Path, Path, dict | None]:
    """The library and description files of ``key_record`` in ``cache_dir``, and the description
    when both exist (``cached`` set), else ``None``."""
    key = hashlib.sha256(json.dumps(key_record, sort_keys=True).encode()).hexdigest()[:16]
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    so, meta_file = cache_dir / f"{prefix}-{key}.so", cache_dir / f"{prefix}-{key}.json"
    if so.exists() and meta_file.exists():
        return so, meta_file, {**json.loads(meta_file.read_text()), "cached": True}
    return so, meta_file, None


def tvm_library(units: Mapping[int, WDSR], plans: Mapping, scale: int, context: int, max_batch: int, tuned: bool,
                cache_dir: Path, target=None, tune_trials_per_task: int = 0, manual: bool = False,
                winograd: bool = False, max_batch_pixels: int = 0) -> tuple[Path, dict]:
    """Compile (or reuse from ``cache_dir``) the static TVM library for these units' architectures
    and the patch shapes of ``plans`` (``{frame: FramePlan}``); returns the ``.so`` and its
    description (architectures, buckets, tuning coverage, ``arch_of``). The cache key is everything
    that determines the code: architectures, shapes, target, TVM version, tuning database and the
    source of every library module the build runs (:func:`dydca_lib.codeversion.code_version` of this
    module's import closure); never the weights (they are function inputs). ``tune_trials_per_task`` > 0 (with ``tuned``): first
    tune the kernels the committed database lacks (:func:`~.tuning.extend_database`, which
    rewrites ``tuning/<target>/``). ``manual``: the hand-written NHWC convolution schedules of
    :mod:`.schedules` instead of a database (``tuned`` is then ignored); ``winograd`` (implies
    ``manual``): the 3x3 body convolutions by Winograd F(4x4, 3x3) (:mod:`.winograd`).
    ``max_batch_pixels``: the batch cap per shape (:func:`~.shapes.batch_cap`)."""
    from .runtime import CompiledDynamicSR

    target = target or cpu_target()
    dyn, arch_of, archs, shapes = _library_shapes(units, plans, scale, context, max_batch, max_batch_pixels)
    paths = dict(enumerate(dyn.paths))
    manual = manual or winograd
    tuned = tuned and not manual
    if tuned and tune_trials_per_task > 0:
        extend_database(fuse(static_module(paths, shapes)[0], target), target, trials_per_task=tune_trials_per_task)
    db = tuning_dir(target)  # plain or gzipped JSON files; no database = untuned kernels
    db_hash = (_file_digest(sorted(db.glob("database_*.json*"))) if has_database(db) else "no-database") if tuned else "untuned"
    if manual:
        db_hash = "manual"
    key_record = {"archs": archs, "shapes": _shape_key(shapes), "target": str(target), "tvm": tvm.__version__,
                  "db": db_hash, "tuned": bool(tuned), "code": code_version(__name__), "v": 2}
    if manual:
        key_record["kernels"] = "winograd" if winograd else "manual"
    so, meta_file, meta = _cached(key_record, cache_dir, "tvm")
    if meta is None:
        t0 = time.perf_counter()
        build = CompiledDynamicSR(dyn, shapes, target=target, tuned=tuned, manual=manual, winograd=winograd)
        seconds = time.perf_counter() - t0
        for a, p in paths.items():
            if a not in build.params:
                continue
            got = [t.numpy() for t in build.params[a]]
            want = unit_params(p)
            if len(got) != len(want) or any(g.shape != w.shape or not np.allclose(g, w, atol=1e-6) for g, w in zip(got, want)):
                raise RuntimeError("TVM parameter order differs from the state-dict order; update models.unit_params")
        coverage = None
        if build.tuned:  # coverage is read on the untuned fused module (tuned kernels no longer match)
            coverage = database_coverage(fuse(build.static, target), target)
        tmp = so.with_name(f".{so.name}.{os.getpid()}.tmp.so")
        build.executable.export_library(str(tmp))
        os.replace(tmp, so)
        meta = {"archs": archs, "buckets": {f"{a},{h},{w}": b for (a, h, w), b in build.buckets.items()},
                "tuned": bool(build.tuned), "kernels_from": build.kernels, "target": str(target),
                "kernels": int(len(coverage)) if coverage is not None else None,
                "kernels_tuned": int(coverage.tuned.sum()) if coverage is not None else 0,
                "build_seconds": round(seconds, 1), "functions": [s.name for s in shapes]}
        meta_file.write_text(json.dumps(meta, indent=1))
        meta["cached"] = False
    meta["arch_of"] = {str(u): a for u, a in arch_of.items()}
    return so, meta


LOW_PRECISION_KERNELS = ("int8", "amx_int8", "amx_bf16")  # int8 VNNI, int8 on AMX tiles, bf16 on AMX tiles


def int8_library(units: Mapping[int, WDSR], plans: Mapping, scale: int, context: int, max_batch: int,
                 cache_dir: Path, target=None, kernels: str = "int8", max_batch_pixels: int = 0) -> tuple[Path, dict]:
    """:func:`tvm_library` for the reduced-precision builds, hand-written schedules, no tuning: the same
    architectures, shapes, buckets and cache rules. ``kernels``: ``int8`` (:mod:`.int8`, trunk convs u8 x i8
    on AVX-512 VNNI; functions take :func:`.int8.quantize_unit`'s parameters), ``amx_int8`` (the body and
    tail convs on AMX tiles, :mod:`.amx`; ``quantize_unit(..., amx=True)``) or ``amx_bf16`` (the trunk in
    bf16 on AMX tiles, :mod:`.bf16`; :func:`.bf16.pack_unit`)."""
    from . import amx, bf16, int8

    if kernels not in LOW_PRECISION_KERNELS:
        raise CompileError(f"kernels must be one of {LOW_PRECISION_KERNELS}, got {kernels!r}")
    on_amx = kernels.startswith("amx")
    if on_amx:
        amx.request_tile_permission()
    target = as_target(target) if target is not None else (amx.amx_target() if on_amx else int8.int8_target())
    dyn, arch_of, archs, shapes = _library_shapes(units, plans, scale, context, max_batch, max_batch_pixels)
    key_record = {"archs": archs, "shapes": _shape_key(shapes), "target": str(target), "tvm": tvm.__version__,
                  "kernels": kernels, "code": code_version(__name__), "v": 3}
    so, meta_file, meta = _cached(key_record, cache_dir, f"tvm-{kernels.replace('_', '-')}")
    if meta is None:
        t0 = time.perf_counter()
        per_arch = [(path.config, [s for s in shapes if s.path == a]) for a, path in enumerate(dyn.paths)]
        per_arch = [(c, s) for c, s in per_arch if s]
        if kernels == "amx_bf16":
            mod = bf16.bf16_module(*per_arch[0], more=per_arch[1:])
        else:
            mod = int8.schedule_int8_module(int8.int8_module(*per_arch[0], more=per_arch[1:], amx=on_amx))
        from .passes import compile_planned, plan_memory

        executable = compile_planned(plan_memory(mod, target), target)
        tmp = so.with_name(f".{so.name}.{os.getpid()}.tmp.so")
        executable.export_library(str(tmp))
        os.replace(tmp, so)
        buckets: dict[str, list[int]] = {}
        for s in shapes:
            buckets.setdefault(f"{s.path},{s.h},{s.w}", []).append(int(s.batch))
        meta = {"archs": archs, "buckets": buckets, "tuned": False, "kernels_from": kernels, "io": "uint8_nhwc",
                "target": str(target),
                "kernels": None, "kernels_tuned": 0, "build_seconds": round(time.perf_counter() - t0, 1),
                "functions": [s.name for s in shapes]}
        meta_file.write_text(json.dumps(meta, indent=1))
        meta["cached"] = False
    meta["arch_of"] = {str(u): a for u, a in arch_of.items()}
    return so, meta
