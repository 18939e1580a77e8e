"""The compiler half of Dy-DCA on a CPU, with Apache TVM 0.27 (Relax): export, specialise, fuse,
plan memory, tune, run and time the paths of a :class:`~dydca_lib.models.DynamicWDSR`.

The only module of ``dydca_lib`` that imports TVM. The pipeline, one function per idea:

1. :func:`export_path` - one WDSR path (weight norm folded) -> ``torch.export`` (static, or with
   symbolic batch/H/W and explicit upper bounds) -> Relax IRModule + its weights.
2. **naive baseline** (Dy-DCA's "compiler off"): :func:`compile_dynamic` compiles the symbolic
   module once with ``tvm.compile``; on ``llvm`` that pipeline has no FuseOps/FuseTIR, so every
   op is its own kernel and buffers are sized at the symbolic upper bounds.
3. **static specialisation** ("compiler on"): the manifest lists every patch shape of every path
   (:func:`static_shapes`); batch sizes are bucketed to powers of two (:func:`batch_buckets`).
   :func:`specialize` makes one static Relax function per ``(path, h, w, batch bucket)`` by
   binding the symbolic vars (``relax.transform.BindSymbolicVars``), :func:`fuse` applies
   ``relax.get_pipeline("zero")`` (LegalizeOps, FoldConstant, FuseOps, FuseTIR) and
   :func:`plan_memory` lowers to explicit allocations and runs ``StaticPlanBlockMemory``.
   :func:`kernel_calls` and :func:`memory_estimate` report, per function, the kernels (PrimFunc
   calls) after fusion and the planned memory in bytes before/after planning;
   :func:`optimize` does all of this and returns the per-function report.
4. **tuning**: :func:`tune` runs MetaSchedule over the distinct kernels of all static functions
   (identical workloads deduplicated by structural hash) into a JSON database under
   ``tuning/<target-name>/`` (:func:`tuning_dir`); :func:`apply_database` applies it with
   ``relax.transform.MetaScheduleApplyDatabase`` and falls back to untuned kernels with an
   :class:`UntunedWarning` when the target has no database; :func:`database_coverage` says which
   kernels it covers and :func:`prune_database` keeps the best record per kernel (what is committed).
5. **runtime**: :class:`CompiledDynamicSR` builds all of that for a model and a manifest and is
   an *upscaler* with the signature of :mod:`dydca_lib.evaluate` (``(lr_patches_uint8_NHWC,
   path) -> sr_uint8_NHWC``); ``mode="symbolic"`` gives the naive baseline behind the same API.
6. **benchmarks**: :func:`time_vm` (``vm.time_evaluator``), :func:`time_torch` (PyTorch eager)
   and :func:`runtime_info` (thread counts, target string, CPU model) to record beside numbers.

Threads: TVM's runtime thread pool reads ``TVM_NUM_THREADS`` once, when tvm is imported; without
it TVM runs on half the logical CPUs (1 thread on a 2-core machine). **Set ``TVM_NUM_THREADS``
before anything imports tvm**; if it is unset when this module is imported first, it is set to
the number of CPUs this process may use. Always record :func:`runtime_info` with a timing.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch


def _affinity_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# Read once, before TVM runs anything: TVM's thread pool pins the calling thread to one core, so a
# later sched_getaffinity would say 1 and cpu_target() would name another target (and database).
_CPUS_AT_IMPORT = _affinity_cpus()


def _available_cpus() -> int:
    return _CPUS_AT_IMPORT


if "tvm" not in sys.modules:
    os.environ.setdefault("TVM_NUM_THREADS", str(_available_cpus()))

import tvm  # noqa: E402
from tvm import relax  # noqa: E402

from .models import DynamicWDSR, WDSR, fold_weight_norm  # noqa: E402
from .paths import PACKAGE_DIR  # noqa: E402
from .runinfo import cpu_model  # noqa: E402

DEFAULT_MAX_BATCH = 16
TUNING_ROOT = PACKAGE_DIR.parent / "tuning"  # committed with the code (not under DYDCA_ROOT), one folder per target


class CompileError(ValueError):
    """Bad input to the compiler layer (shapes, bounds, paths); the message says what to change."""


class UntunedWarning(UserWarning):
    """A static build runs untuned kernels because the target has no tuning database."""


# ---------------------------------------------------------------- target

def has_avx512() -> bool:
    """Whether this CPU reports the ``avx512f`` flag in /proc/cpuinfo (False where unreadable)."""
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and " avx512f" in line for line in f)
    except OSError:
        return False


def cpu_target(num_cores: int | None = None, mcpu: str | None = "auto") -> "tvm.target.Target":
    """An ``llvm`` target built from a dict (TVM 0.27 rejects CLI strings).

    ``num_cores`` (required by MetaSchedule) defaults to the CPUs this process may use;
    ``mcpu="auto"`` picks ``skylake-avx512`` when the CPU has AVX-512F and leaves it out otherwise.
    """
    spec = {"kind": "llvm", "num-cores": int(num_cores or _available_cpus())}
    if mcpu == "auto":
        mcpu = "skylake-avx512" if has_avx512() else None
    if mcpu:
        spec["mcpu"] = mcpu
    return tvm.target.Target(spec)


def _as_target(target) -> "tvm.target.Target":
    if target is None:
        return cpu_target()
    if isinstance(target, tvm.target.Target):
        return target
    if isinstance(target, str):
        raise CompileError(f"target {target!r}: TVM 0.27 wants a dict such as "
                           "{'kind': 'llvm', 'num-cores': 2}, or use cpu_target()")
    return tvm.target.Target(dict(target))


def target_name(target=None) -> str:
    """A folder-safe name for a target: kind, mcpu (or 'generic') and cores, e.g. ``llvm-skylake-avx512-2c``."""
    t = _as_target(target)
    attrs = t.attrs
    mcpu = str(attrs["mcpu"]) if "mcpu" in attrs and str(attrs["mcpu"]) else "generic"
    cores = int(attrs["num-cores"]) if "num-cores" in attrs else 0
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{t.kind.name}-{mcpu}-{cores}c")


# ---------------------------------------------------------------- export

def _bound(bounds: Mapping, key: str, lo_default: int) -> tuple[int, int]:
    if key not in bounds:
        raise CompileError(f"dynamic export needs an upper bound for {key!r} (bounds={dict(bounds)}); "
                           "StaticPlanBlockMemory and estimate_memory_usage need one")
    b = bounds[key]
    lo, hi = (lo_default, b) if isinstance(b, (int, np.integer)) else b
    lo, hi = int(lo), int(hi)
    if not 1 <= lo <= hi:
        raise CompileError(f"bad bounds for {key!r}: {b} (need 1 <= min <= max)")
    return lo, hi


def export_path(wdsr_module: WDSR, example_hw: tuple[int, int], batch: int = 1, dynamic: bool = True,
                bounds: Mapping | None = None):
    """Export one WDSR path to Relax: ``(IRModule, params)``.

    ``wdsr_module``: a :class:`WDSR` (weight norm is folded here via :func:`fold_weight_norm`; an
    already plain WDSR is used as is). ``example_hw``/``batch``: the example input (LR patch
    height, width). ``dynamic=True`` marks batch, H and W symbolic with ``bounds`` =
    ``{"batch": max or (min, max), "h": ..., "w": ...}`` (mins default to 1, 2, 2); explicit
    upper bounds are required (memory planning sizes symbolic buffers at them). With
    ``dynamic=False`` the module is static at the example shape.

    The IRModule has one function ``main(x, *weights)`` returning a 1-tuple ``(sr,)``, float32
    NCHW in [0, 1] in and out; ``params`` is the list of TVM tensors for ``*weights`` in order
    (``keep_params_as_input=True`` then ``relax.frontend.detach_params``).
    """
    from torch.export import Dim
    from tvm.relax.frontend.torch import from_exported_program

    if not isinstance(wdsr_module, WDSR):
        raise CompileError(f"export_path exports one WDSR path, got {type(wdsr_module).__name__}; "
                           "for a DynamicWDSR pass model.paths[i]")
    h, w = (int(v) for v in example_hw)
    batch = int(batch)
    if min(h, w, batch) < 1:
        raise CompileError(f"bad example shape: batch={batch}, hw={example_hw}")
    model = fold_weight_norm(wdsr_module) if wdsr_module.config.get("use_weight_norm", True) else wdsr_module
    model = model.eval()
    dynamic_shapes = None
    if dynamic:
        bounds = bounds or {}
        bmin, bmax = _bound(bounds, "batch", 1)
        hmin, hmax = _bound(bounds, "h", 2)
        wmin, wmax = _bound(bounds, "w", 2)
        # torch.export specialises sizes 0 and 1, and a dim whose min == max is constant: trace at
        # a value that is neither, inside the bounds (the traced value does not matter after export).
        if bmax < 2:
            raise CompileError(f"a dynamic batch needs a max >= 2 (bounds batch={bounds['batch']}); "
                               "use dynamic=False for batch 1 only")
        for name, v, lo, hi in (("batch", batch, bmin, bmax), ("h", h, hmin, hmax), ("w", w, wmin, wmax)):
            if not lo <= v <= hi:
                raise CompileError(f"example {name}={v} is outside its bounds [{lo}, {hi}]")
        batch, h, w = max(batch, 2), max(h, 2), max(w, 2)
        dynamic_shapes = {"x": {0: Dim("batch", min=bmin, max=bmax), 2: Dim("h", min=hmin, max=max(hmax, hmin + 1)),
                                3: Dim("w", min=wmin, max=max(wmax, wmin + 1))}}
    x = torch.rand(batch, model.config["n_colors"], h, w)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)  # torch-internal
        ep = torch.export.export(model, (x,), dynamic_shapes=dynamic_shapes)
        mod = from_exported_program(ep, keep_params_as_input=True)
    mod, params = relax.frontend.detach_params(mod)
    return mod, list(params["main"])


def symbolic_dims(func: "relax.Function") -> dict[str, str | None]:
    """Names of the symbolic vars of the input ``x`` (NCHW) of an exported function:
    ``{"batch": "s77", "h": "s53", "w": "s0"}`` (torch picks the names; ``None`` where static)."""
    shape = func.params[0].ty.shape.values
    out = {}
    for key, axis in (("batch", 0), ("h", 2), ("w", 3)):
        v = shape[axis]
        out[key] = None if isinstance(v, tvm.tirx.IntImm) else v.name
    return out


# ---------------------------------------------------------------- dynamic (naive) build

def compile_dynamic(mod: "tvm.IRModule", target=None):
    """The naive baseline: ``tvm.compile`` of a (symbolic-shape) module as is.

    TVM's default build pipeline for ``llvm`` legalises ops but does not fuse them and plans
    symbolic buffers at their upper bounds; kernels are untuned (plain loop nests).
    """
    return tvm.compile(mod, target=_as_target(target))


def load_vm(executable) -> "relax.VirtualMachine":
    """A Relax VM for an executable on ``tvm.cpu()``."""
    return relax.VirtualMachine(executable, tvm.cpu())


def run_vm(vm, func_name: str, x: np.ndarray, params) -> np.ndarray:
    """Call ``vm[func_name](x, *params)`` on float32 NCHW ``x``; returns the float32 NCHW output."""
    out = vm[func_name](tvm.runtime.tensor(np.ascontiguousarray(x, dtype=np.float32)), *params)
    if not isinstance(out, tvm.runtime.Tensor):  # exported functions return a 1-tuple
        out = out[0]
    return out.numpy()


# ---------------------------------------------------------------- shapes and batch buckets

@dataclass(frozen=True, order=True)
class StaticShape:
    """One static function: a path run on ``batch`` patches of ``h x w`` LR pixels (context included)."""

    path: int
    h: int
    w: int
    batch: int

    @property
    def name(self) -> str:
        return function_name(self.path, self.h, self.w, self.batch)


def function_name(path: int, h: int, w: int, batch: int) -> str:
    """The Relax function name of one static shape, e.g. ``p0_h24_w27_b8``."""
    return f"p{int(path)}_h{int(h)}_w{int(w)}_b{int(batch)}"


def batch_buckets(max_batch: int = DEFAULT_MAX_BATCH) -> list[int]:
    """The batch sizes we compile: powers of two up to ``max_batch`` (which must be one).

    Our choice: a request of ``n`` patches runs as ``n // max_batch`` calls of ``max_batch`` plus
    one call for the rest padded up to the next power of two, so padding wastes under 2x on the
    last call only, and a shape needs at most ``log2(max_batch) + 1`` functions (each one more
    set of kernels to compile and tune).
    """
    max_batch = int(max_batch)
    if max_batch < 1 or max_batch & (max_batch - 1):
        raise CompileError(f"max_batch must be a power of two >= 1, got {max_batch}")
    return [1 << i for i in range(max_batch.bit_length())]


def split_batch(n: int, buckets: Iterable[int]) -> list[tuple[int, int]]:
    """How to run ``n`` patches on compiled batch sizes: ``[(patches, bucket), ...]``.

    Full calls of the largest bucket, then the rest in the smallest bucket that holds it (padded).
    """
    buckets = sorted(set(int(b) for b in buckets))
    if not buckets:
        raise CompileError("no compiled batch sizes")
    n, top = int(n), buckets[-1]
    out = [(top, top)] * (n // top)
    rest = n % top
    if rest:
        out.append((rest, next(b for b in buckets if b >= rest)))
    return out


def static_shapes(manifest: pd.DataFrame, context: int = 0, max_batch: int = DEFAULT_MAX_BATCH) -> list[StaticShape]:
    """Every static function a manifest needs: one per (path, patch shape, batch bucket).

    ``manifest`` rows are patches (``frame, h, w`` and ``path``, LR pixels; no ``path`` column =
    path 0). Patches are batched per (frame, shape, path) as
    :func:`dydca_lib.evaluate.super_resolve_patches` does, and each group size is split with
    :func:`split_batch` over ``batch_buckets(max_batch)`` capped at the largest group, so only the
    buckets some frame uses are compiled; the largest kept bucket serves any other count.
    ``context`` adds ``2 * context`` to each side as the patches are cut with context.
    """
    if manifest.empty:
        raise CompileError("empty manifest: no patch shapes to compile")
    m = manifest if "path" in manifest else manifest.assign(path=0)
    keys = ["frame", "h", "w", "path"] if "frame" in m else ["h", "w", "path"]
    sizes = m.groupby(keys).size().reset_index(name="n")
    out = set()
    for (h, w, p), g in sizes.groupby(["h", "w", "path"]):
        cap = min(int(max_batch), 1 << (int(g.n.max()) - 1).bit_length())
        buckets = batch_buckets(cap)
        used = {cap}
        for n in g.n:
            used.update(b for _, b in split_batch(int(n), buckets))
        out.update(StaticShape(int(p), int(h) + 2 * context, int(w) + 2 * context, b) for b in used)
    return sorted(out)


# ---------------------------------------------------------------- static specialisation

def specialize(mod: "tvm.IRModule", shapes: Iterable[StaticShape]) -> "tvm.IRModule":
    """One static copy of ``mod["main"]`` per shape, named :func:`function_name`.

    Each copy gets fresh variables (``relax.utils.copy_with_new_vars``: several copies may live in
    one module) and its symbolic batch/H/W bound to constants with
    ``relax.transform.BindSymbolicVars``. The symbolic module must admit every shape (bounds).
    """
    main = mod["main"]
    dims = symbolic_dims(main)
    attrs = main.attrs or {}
    lower = dict(attrs.get("tir_var_lower_bound", {}) or {})
    upper = dict(attrs.get("tir_var_upper_bound", {}) or {})
    out = {}
    for s in shapes:
        name = s.name
        binding = {}
        for key, value in (("batch", s.batch), ("h", s.h), ("w", s.w)):
            var = dims[key]
            if var is None:
                static = int(main.params[0].ty.shape.values[{"batch": 0, "h": 2, "w": 3}[key]])
                if static != value:
                    raise CompileError(f"{name}: the exported module has a static {key}={static}")
                continue
            lo, hi = int(lower.get(var, 1)), int(upper.get(var, value))
            if not lo <= value <= hi:
                raise CompileError(f"{name}: {key}={value} is outside the exported bounds [{lo}, {hi}]; "
                                   "export the path with larger bounds")
            binding[var] = value
        func = relax.utils.copy_with_new_vars(main)
        tmp = tvm.IRModule({name: func.with_attr("global_symbol", name)})
        tmp = relax.transform.BindSymbolicVars(binding, func_name=name)(tmp)
        func = tmp[name]
        for attr in ("tir_var_lower_bound", "tir_var_upper_bound"):
            if func.attrs is not None and attr in func.attrs:
                func = func.without_attr(attr)
        out[name] = func
    if not out:
        raise CompileError("no shapes to specialise")
    return tvm.IRModule(out)


def legalize(mod: "tvm.IRModule", target=None) -> "tvm.IRModule":
    """Ops lowered to one PrimFunc each, no fusion (the kernel count to compare fusion against)."""
    with _as_target(target):
        return relax.transform.LegalizeOps()(mod)


def fuse(mod: "tvm.IRModule", target=None) -> "tvm.IRModule":
    """``relax.get_pipeline("zero")`` inside ``with target``: LegalizeOps, AnnotateTIROpPattern,
    FoldConstant, FuseOps, FuseTIR. Static shapes let PixelShuffle's reshape/transpose fuse."""
    with _as_target(target):
        return relax.get_pipeline("zero")(mod)


def plan_memory(mod: "tvm.IRModule", target=None) -> "tvm.IRModule":
    """Lower dataflow to explicit allocations and plan them with ``StaticPlanBlockMemory``.

    Runs the passes of TVM's default build pipeline up to and including memory planning
    (RewriteDataflowReshape, ToNonDataflow, RemovePurityChecking, CallTIRRewrite,
    StaticPlanBlockMemory); :func:`compile_planned` runs the rest.
    """
    seq = tvm.transform.Sequential([
        relax.transform.RewriteDataflowReshape(),
        relax.transform.ToNonDataflow(),
        relax.transform.RemovePurityChecking(),
        relax.transform.CallTIRRewrite(),
        relax.transform.StaticPlanBlockMemory(),
    ])
    with _as_target(target):
        return seq(mod)


def compile_planned(mod: "tvm.IRModule", target=None):
    """Compile a module from :func:`plan_memory` with the rest of TVM's default build pipeline."""
    rest = tvm.transform.Sequential([
        relax.transform.LowerAllocTensor(),
        relax.transform.KillAfterLastUse(),
        relax.transform.LowerRuntimeBuiltin(),
        relax.transform.ComputePrimValue(),
        relax.transform.VMShapeLower(),
        relax.transform.AttachGlobalSymbol(),
    ])
    target = _as_target(target)
    with target:
        return tvm.compile(mod, target=target, relax_pipeline=rest)


def _relax_functions(mod: "tvm.IRModule"):
    return sorted(((gv.name_hint, f) for gv, f in mod.functions_items() if isinstance(f, relax.Function)),
                  key=lambda kv: kv[0])


def kernel_calls(mod: "tvm.IRModule") -> dict[str, list[str]]:
    """Per Relax function, the PrimFuncs it calls (``R.call_tir``), in call order: its kernels."""
    call_tir = tvm.ir.Op.get("relax.call_tir")
    out = {}
    for name, func in _relax_functions(mod):
        calls = []

        def visit(e, calls=calls):
            if isinstance(e, relax.Call) and e.op.same_as(call_tir):
                calls.append(e.args[0].name_hint)

        relax.analysis.post_order_visit(func.body, visit)
        out[name] = calls
    return out


def memory_estimate(mod: "tvm.IRModule") -> dict[str, dict]:
    """Per Relax function, the bytes it allocates before and after memory planning.

    The accounting of ``relax.analysis.estimate_memory_usage`` (which only returns a text with GB
    rounded to 4 digits), in exact bytes: ``before_bytes`` sums every tensor allocation,
    ``after_bytes`` sums the planned storages plus the allocations planning left alone (the
    outputs). Run it on a module from :func:`plan_memory` (on a merely lowered one, before ==
    after). Symbolic-size allocations are counted in ``dynamic_allocs`` and not in the bytes.
    """
    ops = {k: tvm.ir.Op.get(k) for k in ("relax.builtin.alloc_tensor", "relax.memory.alloc_tensor",
                                          "relax.memory.alloc_storage")}

    def nbytes(shape, dtype) -> int | None:
        size = 1
        for v in shape.values:
            if not isinstance(v, tvm.tirx.IntImm):
                return None
            size *= int(v.value)
        dt = tvm.DataType(dtype)
        return size * ((dt.bits + 7) // 8) * dt.lanes

    out = {}
    for name, func in _relax_functions(mod):
        acc = dict(before_bytes=0, after_bytes=0, allocs_before=0, allocs_after=0, dynamic_allocs=0)

        def visit(e, acc=acc):
            if not isinstance(e, relax.Call):
                return
            if e.op.same_as(ops["relax.builtin.alloc_tensor"]) or e.op.same_as(ops["relax.memory.alloc_tensor"]):
                builtin = e.op.same_as(ops["relax.builtin.alloc_tensor"])
                shape, dtype = (e.args[0], e.args[1].value) if builtin else (e.args[2], e.args[3].value)
                size = nbytes(shape, dtype) if isinstance(shape, relax.ShapeExpr) else None
                if size is None:
                    acc["dynamic_allocs"] += 1
                    return
                acc["before_bytes"] += size
                acc["allocs_before"] += 1
                if builtin:  # not planned: allocated as is
                    acc["after_bytes"] += size
                    acc["allocs_after"] += 1
            elif e.op.same_as(ops["relax.memory.alloc_storage"]):
                acc["after_bytes"] += int(e.args[0].values[0].value)
                acc["allocs_after"] += 1

        relax.analysis.post_order_visit(func.body, visit)
        out[name] = acc
    return out


@dataclass
class StaticProgram:
    """The static functions of a model at each stage: ``fused`` (after the zero pipeline, optionally
    tuned; what :func:`tune` reads), ``planned`` (memory planned; what :func:`compile_planned`
    compiles) and ``report`` (one row per function, see :func:`optimize`)."""

    fused: "tvm.IRModule"
    planned: "tvm.IRModule"
    report: pd.DataFrame


def optimize(static_mod: "tvm.IRModule", target=None, database: str | Path | None = None) -> StaticProgram:
    """Fuse, optionally apply a tuning database, and plan memory; report per function.

    ``database``: a tuning ``work_dir`` to apply with :func:`apply_database` (``None``: untuned).
    ``report`` columns: ``function, kernels`` (PrimFunc names after fusion, in call order),
    ``n_kernels``, ``n_kernels_unfused`` (after LegalizeOps alone), ``mem_before_bytes``,
    ``mem_after_bytes`` (planned memory before/after ``StaticPlanBlockMemory``), ``allocs_before``,
    ``allocs_after``, and ``path, h, w, batch`` parsed from the function name where it is one of ours.
    """
    target = _as_target(target)
    unfused = kernel_calls(legalize(static_mod, target))
    fused = fuse(static_mod, target)
    if database is not None:
        fused = apply_database(fused, target, database)
    planned = plan_memory(fused, target)
    kernels, memory = kernel_calls(fused), memory_estimate(planned)
    rows = []
    for name in kernels:
        row = {"function": name}
        m = re.fullmatch(r"p(\d+)_h(\d+)_w(\d+)_b(\d+)", name)
        if m:
            row.update(path=int(m[1]), h=int(m[2]), w=int(m[3]), batch=int(m[4]))
        mem = memory[name]
        row.update(kernels=kernels[name], n_kernels=len(kernels[name]), n_kernels_unfused=len(unfused[name]),
                   mem_before_bytes=mem["before_bytes"], mem_after_bytes=mem["after_bytes"],
                   allocs_before=mem["allocs_before"], allocs_after=mem["allocs_after"])
        rows.append(row)
    return StaticProgram(fused, planned, pd.DataFrame(rows))


# ---------------------------------------------------------------- tuning (MetaSchedule)

def tuning_dir(target=None) -> Path:
    """``tuning/<target-name>/`` at the project root: the database for this target (committed)."""
    return TUNING_ROOT / target_name(target)


DB_FILES = ("database_workload.json", "database_tuning_record.json")


def readable_database(work_dir: str | Path) -> Path:
    """The folder MetaSchedule can read for ``work_dir``.

    The committed databases are gzipped (``*.json.gz``, ~10x smaller in git); they are unpacked
    once into ``data/tuning/<name>/`` (refreshed when the committed files are newer). A folder
    with plain JSON files (what :func:`tune` writes) is used as it is.
    """
    import gzip

    from .io import atomic_write_bytes
    from .paths import data_dir

    d = Path(work_dir)
    if all((d / f).is_file() for f in DB_FILES) or not all((d / f"{f}.gz").is_file() for f in DB_FILES):
        return d
    try:  # tuning/<target>/[attempts/<name>/] -> data/tuning/<same>/; elsewhere by folder name
        rel = d.resolve().relative_to(TUNING_ROOT.resolve())
    except ValueError:
        rel = Path(d.name)
    out = data_dir() / "tuning" / rel
    for f in DB_FILES:
        src, dst = d / f"{f}.gz", out / f
        if not dst.exists() or dst.stat().st_mtime < src.stat().st_mtime:
            atomic_write_bytes(dst, gzip.decompress(src.read_bytes()))
    return out


def compress_database(work_dir: str | Path) -> list[Path]:
    """Gzip a database folder's JSON files in place (``*.json`` -> ``*.json.gz``) for committing."""
    import gzip

    from .io import atomic_write_bytes

    d, written = Path(work_dir), []
    for f in DB_FILES:
        written.append(atomic_write_bytes(d / f"{f}.gz", gzip.compress((d / f).read_bytes(), mtime=0)))
        (d / f).unlink()
    return written


def has_database(work_dir: str | Path) -> bool:
    """Whether ``work_dir`` holds a MetaSchedule JSON database (plain or gzipped) with a record."""
    d = readable_database(work_dir)
    wl, rec = d / DB_FILES[0], d / DB_FILES[1]
    return wl.is_file() and rec.is_file() and rec.stat().st_size > 0


def apply_database(mod: "tvm.IRModule", target=None, work_dir: str | Path | None = None) -> "tvm.IRModule":
    """Replace the kernels of a fused module by their tuned schedules from ``work_dir``.

    ``work_dir`` defaults to :func:`tuning_dir` of the target. Uses
    ``relax.transform.MetaScheduleApplyDatabase``; kernels missing from the database stay
    untuned. Without a database at all, warns (:class:`UntunedWarning`) and returns ``mod``.
    """
    target = _as_target(target)
    work_dir = Path(work_dir) if work_dir is not None else tuning_dir(target)
    if not has_database(work_dir):
        warnings.warn(f"no tuning database for target {target_name(target)} in {work_dir}: running untuned "
                      "kernels (slow); run compile.tune(...) to make one", UntunedWarning, stacklevel=2)
        return mod
    with target, tvm.transform.PassContext(opt_level=3):
        return relax.transform.MetaScheduleApplyDatabase(str(readable_database(work_dir)))(mod)


def database_coverage(fused_mod: "tvm.IRModule", target=None, work_dir: str | Path | None = None) -> pd.DataFrame:
    """Which kernels of a fused module the tuning database in ``work_dir`` has a schedule for.

    One row per MetaSchedule task (:func:`extract_tasks`, identical kernels once): ``task``,
    ``weight`` (calls), ``tuned`` (a record matches the kernel's structural hash and the target)
    and ``best_ms`` (the record's measured run time, NaN when untuned). The workloads are matched
    exactly as :func:`apply_database` matches them, so ``tuned.all()`` means no kernel falls back.
    Without a database every row is untuned (no warning).
    """
    from tvm.s_tir import meta_schedule as ms

    target = _as_target(target)
    work_dir = Path(work_dir) if work_dir is not None else tuning_dir(target)
    tasks = extract_tasks(fused_mod, target)
    db = (ms.database.JSONDatabase(work_dir=str(readable_database(work_dir)), allow_missing=False)
          if has_database(work_dir) else None)
    rows = []
    for t in tasks:
        rec = db.query_tuning_record(t.mod, target, t.task_name) if db is not None else None
        secs = [float(v) for v in rec.run_secs] if rec is not None and rec.run_secs else []
        rows.append({"task": t.task_name, "weight": int(t.weight), "tuned": rec is not None,
                     "best_ms": 1e3 * statistics.median(secs) if secs else float("nan")})
    return pd.DataFrame(rows, columns=["task", "weight", "tuned", "best_ms"])


def prune_database(work_dir: str | Path, dst: str | Path | None = None) -> dict:
    """Keep only the best record per workload (``JSONDatabase.dump_pruned``), by default in place.

    A tuning run stores every measured candidate (a few KB each); applying needs the best one.
    Returns the record counts before and after.
    """
    from tvm.s_tir import meta_schedule as ms

    src = Path(work_dir)
    if not has_database(src):
        raise CompileError(f"no tuning database in {src}")
    dst = Path(dst) if dst is not None else src
    before = sum(1 for line in (src / "database_tuning_record.json").open() if line.strip())
    with tempfile.TemporaryDirectory(prefix="dydca_prune_") as tmp:
        ms.database.JSONDatabase(work_dir=str(src), allow_missing=False).dump_pruned(
            ms.database.JSONDatabase(work_dir=tmp, allow_missing=True))
        dst.mkdir(parents=True, exist_ok=True)
        for name in ("database_workload.json", "database_tuning_record.json"):
            text = (Path(tmp) / name).read_text()
            fd, tmp_path = tempfile.mkstemp(dir=dst, prefix=f".{name}.")  # atomic replace
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.chmod(tmp_path, 0o644)
            os.replace(tmp_path, dst / name)
    after = sum(1 for line in (dst / "database_tuning_record.json").open() if line.strip())
    return {"records_before": before, "records_after": after, "work_dir": str(dst)}


def extract_tasks(fused_mod: "tvm.IRModule", target=None) -> list:
    """The distinct kernels (MetaSchedule tasks) of all functions of a fused module.

    Identical workloads (structurally equal PrimFuncs, e.g. the same conv in two functions of one
    path and shape) are one task whose ``weight`` counts its calls.
    """
    from tvm.s_tir.meta_schedule.relax_integration import extract_tasks as ms_extract

    return list(ms_extract(fused_mod, _as_target(target), module_equality="structural"))


def _progress_callback(total: int, desc: str):
    from tqdm.auto import tqdm
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback

    @derived_object
    class Progress(PyMeasureCallback):
        def __init__(self):
            super().__init__()
            self.bar = tqdm(total=total, desc=desc, unit="trial")
            self.errors = 0

        def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results):
            failed = [r for r in list(runner_results) + list(builder_results) if r.error_msg]
            self.errors += len(failed)
            self.bar.update(len(measure_candidates))
            self.bar.set_postfix(task=int(task_id), errors=self.errors, refresh=False)

    return Progress()


def _tensor_intrin_importer():
    """A function that imports ``tvm.s_tir.tensor_intrin`` in seconds instead of a minute or more.

    MetaSchedule's CPU schedule rules and its ``default_build`` import ``tvm.s_tir.tensor_intrin``,
    which parses ~500 TVMScript PrimFuncs; each ``@T.prim_func`` calls ``inspect.stack()``, and
    during an import the stack holds ``<frozen importlib...>`` frames for which
    ``inspect.getmodule`` scans all of ``sys.modules``: 50-80 s on a busy 2-core machine, paid
    again by every popen builder worker (LocalBuilder starts a fresh pool per batch, so builds hit
    its 30 s timeout). While importing, this swaps ``inspect.stack`` for an equivalent that reads
    source lines with ``linecache`` and skips the module lookup (~3 s). Defined as a closure so
    that cloudpickle ships it by value to popen workers (as their ``initializer``) without
    importing this module there.
    """

    def import_tensor_intrin() -> None:
        import inspect
        import linecache
        import sys

        if "tvm.s_tir.tensor_intrin" in sys.modules:
            return

        def fast_stack(context: int = 1):
            frame, out = sys._getframe(1), []
            while frame is not None:
                fn, ln = frame.f_code.co_filename, frame.f_lineno
                line = linecache.getline(fn, ln) if context > 0 and not fn.startswith("<") else ""
                out.append(inspect.FrameInfo(frame, fn, ln, frame.f_code.co_name, [line] if line else None,
                                             0 if line else None))
                frame = frame.f_back
            return out

        original, inspect.stack = inspect.stack, fast_stack
        try:
            import tvm.s_tir.tensor_intrin  # noqa: F401
        finally:
            inspect.stack = original

    return import_tensor_intrin


_IN_PROCESS_MODULES: dict[str, object] = {}


def _in_process_builder_runner():
    """A MetaSchedule builder and runner that work in this process (no popen workers).

    The builder compiles each candidate with MetaSchedule's own ``default_build`` and keeps the
    runtime module in memory (no export to a tarball, no re-link at load); the runner times it
    with MetaSchedule's own evaluator. Faster on a busy 2-core machine, but a crashing candidate
    takes the tuning process down with it, and a hanging one has no timeout.
    """
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
    from tvm.s_tir.meta_schedule.builder.local_builder import default_build
    from tvm.s_tir.meta_schedule.runner import EvaluatorConfig, PyRunner
    from tvm.s_tir.meta_schedule.runner.local_runner import LocalRunnerFuture
    from tvm.s_tir.meta_schedule.runner.utils import alloc_argument_common, run_evaluator_common
    import tvm.contrib.random  # noqa: F401  (registers random_fill_for_measure)

    @derived_object
    class InProcessBuilder(PyBuilder):
        def build(self, build_inputs):
            results = []
            for inp in build_inputs:
                try:
                    with warnings.catch_warnings():  # MetaSchedule's own build calls the deprecated tvm.build
                        warnings.filterwarnings("ignore", message="build is deprecated", category=DeprecationWarning)
                        rt_mod = default_build(inp.mod, inp.target, None)
                except Exception as e:  # noqa: BLE001 - reported to MetaSchedule as a failed build
                    results.append(BuilderResult(None, f"InProcessBuilder: {e}"))
                    continue
                path = os.path.join(tempfile.mkdtemp(prefix="dydca_ms_"), "in_process")  # removed by MetaSchedule
                _IN_PROCESS_MODULES[path] = rt_mod
                results.append(BuilderResult(path, None))
            return results

    @derived_object
    class InProcessRunner(PyRunner):
        def __init__(self, evaluator_config=None):
            super().__init__()
            self.config = EvaluatorConfig._normalized(evaluator_config)
            self.fill = tvm.get_global_func("tvm.contrib.random.random_fill_for_measure")

        def run(self, runner_inputs):
            futures = []
            for inp in runner_inputs:
                try:
                    rt_mod = _IN_PROCESS_MODULES.pop(str(inp.artifact_path))
                    dev = tvm.runtime.device(str(inp.device_type), 0)
                    args = alloc_argument_common(self.fill, dev, [a.as_json() for a in inp.args_info], 1)
                    futures.append(LocalRunnerFuture(res=run_evaluator_common(rt_mod, dev, self.config, args)))
                except Exception as e:  # noqa: BLE001
                    futures.append(LocalRunnerFuture(error_message=f"InProcessRunner: {e}"))
            return futures

    return InProcessBuilder(), InProcessRunner()


@contextlib.contextmanager
def _nameable_ms_handlers():
    """MetaSchedule's logger set-up lists the meta_schedule logger's handlers by name and fails
    on an unnamed one (pytest's log capture adds such handlers from the second tuning run of a
    process on); they are detached while MetaSchedule configures its loggers, then put back."""
    import logging

    logger = logging.getLogger("tvm.s_tir.meta_schedule")
    unnamed = [h for h in logger.handlers if h.get_name() is None]
    for h in unnamed:
        logger.removeHandler(h)
    try:
        yield
    finally:
        for h in unnamed:
            logger.addHandler(h)


def tune(fused_mod: "tvm.IRModule", target=None, work_dir: str | Path | None = None, trials: int = 64,
         trials_per_task: int | None = None, trials_per_iter: int = 16, workers: str = "in_process",
         cost_model: str = "auto", strategy: str = "auto", seed: int = 0, progress: bool = True,
         log_dir: str | Path | None = None, only_missing: bool = False) -> dict:
    """MetaSchedule over the distinct kernels of a fused module (:func:`fuse`/:func:`optimize`).

    ``trials``: the global budget (measured candidates over all tasks); ``trials_per_task``
    caps one task (default: an even share). ``workers``: ``"in_process"`` (default; see
    :func:`_in_process_builder_runner`) or ``"popen"`` (MetaSchedule's LocalBuilder and
    LocalRunner: child processes, with timeouts, crash-safe). Measured on the busy 2-core machine
    (load ~5), 20 trials over 10 tasks of a tiny path, replay-trace: 0.5 s/trial in process vs
    6.4 s/trial with popen workers (which only work at all thanks to
    :func:`_tensor_intrin_importer`). ``cost_model``: ``"auto"`` = XGBoost when installed (it is
    not a dependency of this project), else ``"random"``. ``strategy``: ``"auto"`` =
    ``"evolutionary"`` with XGBoost, else ``"replay-trace"`` (random sampling of the design space):
    evolutionary search ranks thousands of candidates per round with the cost model, which cost
    ~18 s per task on the busy 2-core machine and buys nothing with a random model. Records go
    to the JSON database in ``work_dir`` (default :func:`tuning_dir`; appended to if it exists;
    :func:`prune_database` then keeps the best per kernel). MetaSchedule's per-task logs (MBs) go
    to ``log_dir`` (default: a new temporary folder, so a committed database folder stays clean).
    A tqdm bar counts trials (and failed builds/runs). ``only_missing``: tune only the kernels
    ``work_dir`` has no record for (what :func:`extend_database` uses for new shapes).

    Returns a summary: tasks (name, weight), trials, seconds, work_dir, logs, cost model, workers.
    """
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.relax_integration import extracted_tasks_to_tune_contexts

    if trials < 1:
        raise CompileError(f"trials must be >= 1, got {trials}")
    if workers not in ("in_process", "popen"):
        raise CompileError(f"workers must be 'popen' or 'in_process', got {workers!r}")
    target = _as_target(target)
    work_dir = Path(work_dir) if work_dir is not None else tuning_dir(target)
    work_dir.mkdir(parents=True, exist_ok=True)
    _tensor_intrin_importer()()  # before the schedule rules import it the slow way
    tasks = extract_tasks(fused_mod, target)
    if not tasks:
        raise CompileError("no kernels to tune in this module (fuse it first)")
    if only_missing and has_database(work_dir):
        covered = database_coverage(fused_mod, target, work_dir).tuned.to_numpy()
        tasks = [t for t, done in zip(tasks, covered) if not done]
        if not tasks:
            return {"work_dir": str(work_dir), "target": str(target), "tasks": [], "trials": 0, "seconds": 0.0}
    per_task = trials_per_task or max(1, -(-trials // len(tasks)))
    if cost_model == "auto":
        try:
            import xgboost  # noqa: F401
            cost_model = "xgb"
        except ImportError:
            cost_model = "random"
    if strategy == "auto":
        strategy = "evolutionary" if cost_model == "xgb" else "replay-trace"
    cores = int(target.attrs["num-cores"])
    log_dir = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="dydca_tune_logs_"))
    log_dir.mkdir(parents=True, exist_ok=True)
    with _nameable_ms_handlers():
        contexts, weights = extracted_tasks_to_tune_contexts(tasks, str(log_dir), strategy=strategy, seed=seed,
                                                             num_threads=cores)
    if workers == "popen":
        builder = ms.builder.LocalBuilder(max_workers=cores, initializer=_tensor_intrin_importer())
        runner = ms.runner.LocalRunner()
    else:
        builder, runner = _in_process_builder_runner()
    callbacks = list(ms.MeasureCallback.create("default"))
    bar = _progress_callback(min(trials, per_task * len(tasks)), f"tune {target_name(target)}") if progress else None
    if bar is not None:
        callbacks.append(bar)
    t0 = time.perf_counter()
    try:
        ms.tune_tasks(tasks=contexts, task_weights=weights, work_dir=str(log_dir), max_trials_global=int(trials),
                      max_trials_per_task=int(per_task), num_trials_per_iter=int(trials_per_iter),
                      builder=builder, runner=runner, database=ms.database.JSONDatabase(work_dir=str(work_dir)),
                      cost_model=cost_model if cost_model == "xgb" else ms.CostModel.create(cost_model),
                      measure_callbacks=callbacks)
    finally:
        if bar is not None:
            bar.bar.close()
        if workers == "in_process":
            clear_in_process_modules()
    return {"work_dir": str(work_dir), "logs": str(log_dir), "target": str(target), "tasks": [(t.task_name, int(t.weight)) for t in tasks],
            "trials": int(trials), "trials_per_task": int(per_task), "seconds": time.perf_counter() - t0,
            "cost_model": cost_model, "strategy": strategy, "workers": workers, "tvm_threads": tvm_threads()}


def extend_database(fused_mod: "tvm.IRModule", target=None, work_dir: str | Path | None = None,
                    trials_per_task: int = 32, trials: int | None = None, only_missing: bool = True,
                    **tune_kwargs) -> dict:
    """Tune a fused module's kernels into a committed (gzipped) database and keep it committable.

    The records of ``work_dir`` (default :func:`tuning_dir`) are copied to a scratch folder,
    :func:`tune` adds up to ``trials_per_task`` trials per kernel there (``trials`` in all, default
    enough for every kernel; by default only for kernels without a record: new shapes), :func:`prune_database` keeps the best record per kernel, and the
    result replaces ``work_dir``'s files gzipped (:func:`compress_database`). Returns the tuning
    summary plus the record counts.
    """
    target = _as_target(target)
    work_dir = Path(work_dir) if work_dir is not None else tuning_dir(target)
    with tempfile.TemporaryDirectory(prefix="dydca_extend_db_") as tmp:
        scratch = Path(tmp) / "db"
        scratch.mkdir()
        if has_database(work_dir):
            src = readable_database(work_dir)
            for f in DB_FILES:
                shutil.copyfile(src / f, scratch / f)
        budget = trials or max(1, trials_per_task * len(extract_tasks(fused_mod, target)))
        summary = tune(fused_mod, target, work_dir=scratch, trials=budget,
                       trials_per_task=trials_per_task, only_missing=only_missing, **tune_kwargs)
        if not summary["tasks"]:
            return {**summary, "work_dir": str(work_dir)}
        summary["pruned"] = prune_database(scratch)
        work_dir.mkdir(parents=True, exist_ok=True)
        compress_database(scratch)
        for f in DB_FILES:
            shutil.copyfile(scratch / f"{f}.gz", work_dir / f".{f}.gz.tmp")
            os.replace(work_dir / f".{f}.gz.tmp", work_dir / f"{f}.gz")
            (work_dir / f).unlink(missing_ok=True)  # a plain copy would shadow the new gzipped records
    readable_database(work_dir)  # unpack the new records now
    return {**summary, "work_dir": str(work_dir)}


# ---------------------------------------------------------------- runtime wrapper

def _to_nchw(lr_patches: np.ndarray) -> np.ndarray:
    """uint8 NHWC -> float32 NCHW in [0, 1], as :func:`dydca_lib.models.to_tensor`."""
    return np.ascontiguousarray((lr_patches.astype(np.float32) / np.float32(255.0)).transpose(0, 3, 1, 2))


def _to_uint8(y: np.ndarray) -> np.ndarray:
    """float NCHW -> uint8 NHWC, as :func:`dydca_lib.models.to_uint8` (clamp, *255, round half even)."""
    y = np.clip(y, 0.0, 1.0).astype(np.float32) * np.float32(255.0)
    return np.round(y).astype(np.uint8).transpose(0, 2, 3, 1)


class CompiledDynamicSR:
    """A :class:`DynamicWDSR` compiled with TVM for a known set of patch shapes; an *upscaler*.

    ``shapes``: the :class:`StaticShape` list (path, h, w, batch) to serve, from
    :func:`static_shapes` (or use :meth:`from_manifest`). ``mode``:

    * ``"static"`` (the compiler on): one static function per shape, fused, memory planned,
      tuned when ``tuned`` (database from ``work_dir``, default :func:`tuning_dir`; missing ->
      :class:`UntunedWarning` and untuned kernels), all in one executable. A request of ``n``
      patches runs as :func:`split_batch` calls, the last one padded up to its bucket.
    * ``"symbolic"`` (the naive baseline): one symbolic executable per path, bounds = the largest
      shape and batch of that path, unfused and untuned; any shape within the bounds runs, in
      calls of at most the largest batch.

    ``upscaler(lr_patches_uint8_NHWC, path) -> sr_uint8_NHWC`` (also ``__call__``) matches
    :mod:`dydca_lib.evaluate`; :meth:`forward` is the float version (NCHW in [0, 1]).
    ``report`` (static mode) has one row per function: kernels, kernel counts, memory before/after.
    ``modules`` keeps each path's symbolic module as exported (bounds as above), ``params`` its weights.
    """

    def __init__(self, model: DynamicWDSR, shapes: Iterable[StaticShape | tuple], *, mode: str = "static",
                 target=None, tuned: bool = False, work_dir: str | Path | None = None):
        if mode not in ("static", "symbolic"):
            raise CompileError(f"mode must be 'static' or 'symbolic', got {mode!r}")
        if not isinstance(model, DynamicWDSR):
            raise CompileError(f"CompiledDynamicSR wraps a DynamicWDSR, got {type(model).__name__}")
        self.mode, self.target = mode, _as_target(target)
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
        self.report = pd.DataFrame()
        t0 = time.perf_counter()
        self.params: dict[int, list] = {}
        modules: dict[int, tvm.IRModule] = {}
        self.max_batch: dict[int, int] = {}
        self.max_hw: dict[int, tuple[int, int]] = {}
        database = None
        for p in sorted({s.path for s in self.shapes}):
            mine = [s for s in self.shapes if s.path == p]
            hs, ws, bs = [s.h for s in mine], [s.w for s in mine], [s.batch for s in mine]
            self.max_batch[p], self.max_hw[p] = max(2, max(bs)), (max(hs), max(ws))
            bounds = {"batch": (1, self.max_batch[p]), "h": (2, max(hs)), "w": (2, max(ws))}
            modules[p], self.params[p] = export_path(model.paths[p], (hs[0], ws[0]), bs[0], True, bounds)
        self.modules = modules  # the symbolic (exported) module of each path, for reports
        if mode == "symbolic":
            self.executables = {p: compile_dynamic(m, self.target) for p, m in modules.items()}
            self.vms = {p: load_vm(ex) for p, ex in self.executables.items()}
            self.program = None
        else:
            static = tvm.IRModule({})
            for p, m in modules.items():
                for gv, f in specialize(m, [s for s in self.shapes if s.path == p]).functions_items():
                    static[gv] = f
            if tuned:
                database = Path(work_dir) if work_dir is not None else tuning_dir(self.target)
                if not has_database(database):
                    warnings.warn(f"no tuning database for target {target_name(self.target)} in {database}: "
                                  "running untuned kernels (slow)", UntunedWarning, stacklevel=2)
                    database = None
            self.program = optimize(static, self.target, database)
            self.report = self.program.report
            self.executable = compile_planned(self.program.planned, self.target)
            self.vm = load_vm(self.executable)
        self.tuned = database is not None
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
            plan = split_batch(n, self.buckets[(path, h, w)])
        else:
            plan = [(k, k) for k, _ in split_batch(n, [self.max_batch[path]])]
        i = 0
        for k, b in plan:
            chunk = x[i:i + k]
            if b > k:
                chunk = np.concatenate([chunk, np.zeros((b - k,) + chunk.shape[1:], np.float32)])
            if self.mode == "static":
                y = run_vm(self.vm, function_name(path, h, w, b), chunk, self.params[path])
            else:
                y = run_vm(self.vms[path], "main", chunk, self.params[path])
            out[i:i + k] = y[:k]
            i += k
        return out

    def upscale(self, lr_patches: np.ndarray, path: int) -> np.ndarray:
        """uint8 NHWC LR patches -> uint8 NHWC SR patches (the ``evaluate`` upscaler signature)."""
        if not isinstance(lr_patches, np.ndarray) or lr_patches.dtype != np.uint8:
            raise CompileError(f"upscale takes uint8 NHWC patches, got "
                               f"{getattr(lr_patches, 'dtype', type(lr_patches).__name__)}")
        if lr_patches.ndim != 4 or lr_patches.shape[3] != 3:
            raise CompileError(f"upscale takes uint8 NHWC patches (N, h, w, 3), got shape {lr_patches.shape}")
        return _to_uint8(self.forward(_to_nchw(lr_patches), path))

    __call__ = upscale

    def function_for(self, path: int, h: int, w: int, batch: int) -> str:
        """The name of the static function serving ``batch`` patches (a compiled bucket) of ``h x w``."""
        key = (int(path), int(h), int(w))
        if self.mode != "static" or key not in self.buckets or int(batch) not in self.buckets[key]:
            raise CompileError(f"no static function for path {path}, {w}x{h}, batch {batch}")
        return function_name(path, h, w, batch)


# ---------------------------------------------------------------- benchmarks

def tvm_threads() -> int:
    """Threads in TVM's runtime pool (``runtime.NumThreads``; fixed when tvm was imported)."""
    return int(tvm.get_global_func("runtime.NumThreads")())


def runtime_info(target=None) -> dict:
    """What to record beside a timing: thread counts, target string, CPU, versions."""
    return {"tvm_threads": tvm_threads(), "TVM_NUM_THREADS": os.environ.get("TVM_NUM_THREADS"),
            "torch_threads": torch.get_num_threads(), "target": str(_as_target(target)),
            "cpu": cpu_model(), "cpus_available": _available_cpus(), "tvm": tvm.__version__,
            "torch": torch.__version__}


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


def time_torch(fn, *args, number: int = 3, repeat: int = 7, warmup: int = 1) -> dict:
    """Latency of ``fn(*args)`` in PyTorch eager under ``torch.no_grad``: median and std over
    ``repeat`` runs (each the mean of ``number`` calls, ``time.perf_counter``), in ms."""
    times = []
    with torch.no_grad():
        for _ in range(warmup):
            fn(*args)
        for _ in range(repeat):
            t0 = time.perf_counter()
            for _ in range(number):
                fn(*args)
            times.append((time.perf_counter() - t0) / number)
    return {"median_ms": statistics.median(times) * 1e3, "std_ms": float(np.std(times)) * 1e3, "repeat": repeat,
            "number": number, "threads": torch.get_num_threads()}


def clear_in_process_modules() -> None:
    """Drop runtime modules an interrupted in-process tuning left behind (and their temp folders)."""
    for path in list(_IN_PROCESS_MODULES):
        _IN_PROCESS_MODULES.pop(path, None)
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)


__all__ = [
    "CompileError", "UntunedWarning", "StaticShape", "StaticProgram", "CompiledDynamicSR",
    "has_avx512", "cpu_target", "target_name", "export_path", "symbolic_dims", "compile_dynamic", "load_vm",
    "run_vm", "function_name", "batch_buckets", "split_batch", "static_shapes", "specialize", "legalize", "fuse",
    "plan_memory", "compile_planned", "kernel_calls", "memory_estimate", "optimize", "tuning_dir", "has_database",
    "apply_database", "database_coverage", "prune_database", "extract_tasks", "tune", "extend_database", "tvm_threads", "cpu_model",
    "runtime_info", "time_vm", "time_torch", "clear_in_process_modules",
]
