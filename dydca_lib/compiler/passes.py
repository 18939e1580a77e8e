"""Relax passes: the naive dynamic build, static specialisation, fusion, memory planning, and the
kernel and memory reports of each static function."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import tvm
from tvm import relax

from . import CompileError
from .database import apply_database
from .export import symbolic_dims
from .schedules import schedule_module, to_nhwc
from .shapes import StaticShape
from .target import as_target
from .winograd import legalize as winograd_legalize


def compile_dynamic(mod: "tvm.IRModule", target=None):
    """The naive baseline: ``tvm.compile`` of a (symbolic-shape) module as is.

    TVM's default build pipeline for ``llvm`` legalises ops but does not fuse them and plans
    symbolic buffers at their upper bounds; kernels are untuned (plain loop nests).
    """
    return tvm.compile(mod, target=as_target(target))


def load_vm(executable) -> "relax.VirtualMachine":
    """A Relax VM for an executable on ``tvm.cpu()``."""
    return relax.VirtualMachine(executable, tvm.cpu())


def run_vm(vm, func_name: str, x: np.ndarray, params) -> np.ndarray:
    """Call ``vm[func_name](x, *params)`` on float32 NCHW ``x``; returns the float32 NCHW output."""
    out = vm[func_name](tvm.runtime.tensor(np.ascontiguousarray(x, dtype=np.float32)), *params)
    if not isinstance(out, tvm.runtime.Tensor):  # exported functions return a 1-tuple
        out = out[0]
    return out.numpy()



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
    with as_target(target):
        return relax.transform.LegalizeOps()(mod)


def fuse(mod: "tvm.IRModule", target=None) -> "tvm.IRModule":
    """``relax.get_pipeline("zero")`` inside ``with target``: LegalizeOps, AnnotateTIROpPattern,
    FoldConstant, FuseOps, FuseTIR. Static shapes let PixelShuffle's reshape/transpose fuse."""
    with as_target(target):
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
    with as_target(target):
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
    target = as_target(target)
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


def hand_scheduled(nhwc_mod: "tvm.IRModule", target=None, winograd: bool = False) -> "tvm.IRModule":
    """A module after :func:`~.schedules.to_nhwc`, fused with every kernel under the hand-written
    schedules of :mod:`.schedules` (``winograd``: the 3x3 body convolutions by :mod:`.winograd`)."""
    mod = winograd_legalize(nhwc_mod, target) if winograd else nhwc_mod
    return schedule_module(fuse(mod, target), target)


def optimize(static_mod: "tvm.IRModule", target=None, database: str | Path | None = None,
             manual: bool = False, winograd: bool = False) -> StaticProgram:
    """Fuse, optionally apply a tuning database, and plan memory; report per function.

    ``database``: a tuning ``work_dir`` to apply with :func:`apply_database` (``None``: untuned).
    ``manual``: convolutions in NHWC/HWIO with the hand-written register-blocked schedule of
    :mod:`.schedules` (every kernel scheduled, no database; ``database`` must be ``None``).
    ``winograd`` (with ``manual``): the 3x3 body convolutions by Winograd F(4x4, 3x3) (:mod:`.winograd`).
    ``report`` columns: ``function, kernels`` (PrimFunc names after fusion, in call order),
    ``n_kernels``, ``n_kernels_unfused`` (after LegalizeOps alone), ``mem_before_bytes``,
    ``mem_after_bytes`` (planned memory before/after ``StaticPlanBlockMemory``), ``allocs_before``,
    ``allocs_after``, and ``path, h, w, batch`` parsed from the function name where it is one of ours.
    """
    target = as_target(target)
    if manual and database is not None:
        raise CompileError("a build uses either the hand-written schedules or a tuning database, not both")
    if winograd and not manual:
        raise CompileError("winograd=True is a choice inside the hand-written schedules: pass manual=True too")
    if manual:
        static_mod = to_nhwc(static_mod, target)
    unfused = kernel_calls(legalize(static_mod, target))
    fused = hand_scheduled(static_mod, target, winograd) if manual else fuse(static_mod, target)
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

