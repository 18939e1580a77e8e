"""The static module every fp32 build starts from: each path exported once with symbolic shapes
(:func:`~.export.export_paths`) and specialised to every static (path, patch shape, batch)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import tvm

from . import CompileError
from ..models import WDSR
from .export import export_paths
from .passes import specialize
from .shapes import StaticShape


def static_module(paths: Mapping[int, WDSR], shapes: Iterable[StaticShape]):
    """One static function per shape, each from its path's symbolic export, in one IRModule.

    ``paths``: ``{path index: WDSR}`` (weight norm folded on export). Returns ``(module, params,
    symbolic)``: the unfused static IRModule (functions named :func:`~.shapes.function_name`), each
    path's weights in the order its functions take them, and each path's symbolic module as exported
    (:func:`~.export.export_paths`).
    """
    shapes = sorted(shapes)
    if not shapes:
        raise CompileError("no shapes to compile")
    symbolic, params = export_paths(paths, shapes)
    static = tvm.IRModule({})
    for p, mod in symbolic.items():
        for gv, f in specialize(mod, [s for s in shapes if s.path == p]).functions_items():
            static[gv] = f
    return static, params, symbolic
