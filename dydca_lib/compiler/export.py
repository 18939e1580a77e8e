"""One WDSR path -> ``torch.export`` -> Relax IRModule + weights, and the export bounds.

The bounds matter beyond export: MetaSchedule matches tuning records by the structure of each
kernel, which the symbolic bounds shape. :func:`path_bounds` is the one rule every build uses
(notebooks 05 and 06, the attempts), so the committed records keep matching.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping

import numpy as np
import torch
import tvm
from tvm import relax

from . import CompileError
from ..models import WDSR, fold_weight_norm
from .shapes import StaticShape


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



def path_bounds(shapes: Iterable[StaticShape]) -> dict:
    """The export bounds of one path serving ``shapes``: batch up to the largest bucket (at least
    2: a dynamic batch needs it), H and W from 2 up to the largest patch (context included).

    Every build exports with these bounds (:func:`dydca_lib.compiler.static.static_module`): the
    tuned kernels in ``tuning/`` were recorded under them and would stop matching under others.
    """
    shapes = list(shapes)
    if not shapes:
        raise CompileError("no shapes to bound")
    return {"batch": (1, max(2, max(s.batch for s in shapes))), "h": (2, max(s.h for s in shapes)),
            "w": (2, max(s.w for s in shapes))}


def export_paths(paths: Mapping[int, WDSR], shapes: Iterable[StaticShape]) -> tuple[dict, dict]:
    """Each path that ``shapes`` name, exported symbolic with :func:`path_bounds` of its shapes:
    ``({path: IRModule}, {path: weights})``."""
    shapes = sorted(shapes)
    modules, params = {}, {}
    for p in sorted({s.path for s in shapes}):
        if p not in paths:
            raise CompileError(f"shape path {p} has no network (paths: {sorted(paths)})")
        mine = [s for s in shapes if s.path == p]
        modules[p], params[p] = export_path(paths[p], (mine[0].h, mine[0].w), mine[0].batch, True, path_bounds(mine))
    return modules, params
