"""Hand-written CPU schedules: a register-blocked direct convolution in NHWC, no tuning.

MetaSchedule's random search rarely lands on the structure that makes vendor convolutions fast
(ONNX Runtime's MLAS, oneDNN): a micro-kernel that keeps a tile of output pixels x output-channel
vectors in registers, broadcasts one input value at a time and multiplies it into every
accumulator with a fused multiply-add, walks the whole reduction (kernel rows, kernel columns,
input channels) before writing the tile once, and applies bias, activation and residual on that
single store. In NHWC activations with HWIO weights that structure needs no packing at all: the
output channels of one pixel are contiguous (32 or 64 here: 2 or 4 AVX-512 vectors), and so are
the weights of one (row, column, input channel). :func:`schedule_conv_nhwc` writes it as a
TensorIR schedule with two knobs chosen from the shape (output-width tile, vector width):

    parallel for (n, y):                     # batch x output rows, split over the threads
      pad rows y .. y+kh-1 of image n        # the zero border, for this row band only
      for x_tile:                            # output-width tiles
        acc[tw][F/16] = 0                    # tw x F/16 zmm accumulators
        for ry, rx, c:                       # the whole reduction
          for xi < tw (unrolled), fo < F/16 (unrolled):
            acc[xi][fo] += broadcast(in[y+ry, x+xi+rx, c]) * w[ry, rx, c, fo*16:(fo+1)*16]
        out[y, x .. x+tw, :] = epilogue(acc)  # bias, ReLU, residual fused into the store

:func:`schedule_module` applies it to every convolution of a fused module (after
``ConvertLayout`` to NHWC/HWIO, :func:`to_nhwc`) and gives every other kernel (layout
transposes, pixel shuffle, element-wise) a parallel, vectorised loop nest. The result is marked
scheduled, so a tuning database is not applied on top.
"""

from __future__ import annotations

import tvm
from tvm import relax

from .microkernel import ACCUMULATORS, PARALLEL_MIN, extent, inline_epilogue, vector_loop, vector_shape, width_tile
from .target import as_target
from .winograd import has_winograd, schedule_winograd

CONV_LAYOUT = {"relax.nn.conv2d": ["NHWC", "HWIO"]}
__all__ = ["ACCUMULATORS", "vector_loop", "vector_shape", "width_tile", "hot_loop", "schedule_conv_nhwc",
           "schedule_elementwise", "schedule_module", "schedule_primfunc", "to_nhwc"]


def to_nhwc(mod: "tvm.IRModule", target=None) -> "tvm.IRModule":
    """Every conv2d in NHWC with HWIO weights (``relax.transform.ConvertLayout``); layout
    transposes are inserted at the input, around the pixel shuffle and on the weights."""
    with as_target(target):
        return relax.transform.ConvertLayout(CONV_LAYOUT)(mod)


def _is_reduction(sch, block) -> bool:
    return any(iv.iter_type == tvm.tirx.IterVar.CommReduce for iv in sch.get(block).iter_vars)


def _conv_blocks(sch) -> list:
    return [b for b in sch.get_child_blocks(sch.get_sblock("root")) if _is_reduction(sch, b)]


def schedule_conv_nhwc(sch, block, lanes: int = 16, accumulators: int = ACCUMULATORS) -> None:
    """The register-blocked direct convolution of the module docstring, on the reduction block
    ``block`` of a ``topi.nn.conv`` in NHWC/HWIO (loops ``n, y, x, f, ry, rx, rc``; its pad block,
    if any, is its producer; element-wise consumers are fused into the store)."""
    loops = sch.get_loops(block)
    if len(loops) != 7:
        raise ValueError(f"expected the 7 loops of an NHWC conv2d, got {len(loops)}")
    n, y, x, f, ry, rx, rc = loops
    width, channels = extent(sch, x), extent(sch, f)
    fv = lanes if channels % lanes == 0 else channels
    tw = width_tile(width, channels // fv, accumulators)
    xo, xi = sch.split(x, [None, tw])
    fo, fi = sch.split(f, [None, fv])
    sch.reorder(n, y, xo, ry, rx, rc, xi, fo, fi)
    ny = sch.fuse(n, y)
    sch.parallel(ny)
    pads = [p for p in sch.get_producers(block) if not _is_reduction(sch, p)]
    acc = sch.cache_write(block, 0, "local")
    inline_epilogue(sch, acc)
    sch.reverse_compute_at(acc, xo)
    for p in pads:
        sch.compute_at(p, ny)
        vector_loop(sch, sch.get_loops(p)[-1], lanes)
    # annotate before decompose_reduction: the update block alone is not a reduction block
    # (no init), and vectorize refuses it; the init block's loops are copies with the annotations
    sch.vectorize(fi)
    sch.unroll(fo)
    sch.unroll(xi)
    sch.decompose_reduction(block, ry)
    *_, wx, wf = sch.get_loops(acc)
    vector_loop(sch, wf, lanes)


def schedule_elementwise(sch, block, lanes: int = 16) -> None:
    """One fused loop nest: parallel outer part, vectorised inner part (when large enough)."""
    loops = sch.get_loops(block)
    if not loops:
        return
    fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
    n = extent(sch, fused)
    if n >= PARALLEL_MIN and n % lanes == 0:
        outer, inner = sch.split(fused, [None, lanes])
        sch.parallel(outer)
        sch.vectorize(inner)
    elif n >= PARALLEL_MIN:
        sch.parallel(fused)


def schedule_primfunc(func: "tvm.tirx.PrimFunc", lanes: int = 16,
                      accumulators: int = ACCUMULATORS) -> "tvm.tirx.PrimFunc":
    """:func:`schedule_conv_nhwc` on each convolution of ``func`` (NHWC), element-wise chains
    inlined into their last block, everything else :func:`schedule_elementwise`; a function holding
    a Winograd convolution (:mod:`.winograd`) gets :func:`.winograd.schedule_winograd`."""
    sch = tvm.s_tir.Schedule(func)
    if has_winograd(sch):
        schedule_winograd(sch, lanes, accumulators)
        return sch.mod["main"].with_attr("tirx.is_scheduled", True)
    convs = _conv_blocks(sch)
    for block in convs:
        schedule_conv_nhwc(sch, block, lanes, accumulators)
    if not convs:
        blocks = sch.get_child_blocks(sch.get_sblock("root"))
        for b in blocks[:-1]:
            try:
                sch.compute_inline(b)
            except tvm.s_tir.ScheduleError:
                pass
        for b in sch.get_child_blocks(sch.get_sblock("root")):
            schedule_elementwise(sch, b, lanes)
    return sch.mod["main"].with_attr("tirx.is_scheduled", True)


def schedule_module(mod: "tvm.IRModule", target=None) -> "tvm.IRModule":
    """Every PrimFunc of a fused module scheduled by :func:`schedule_primfunc` for the target's
    vector width (convolutions must be NHWC/HWIO: :func:`to_nhwc` before fusion)."""
    lanes, accumulators = vector_shape(target)
    out = tvm.IRModule(dict(mod.functions_items()), attrs=mod.attrs)
    for gv, func in mod.functions_items():
        if isinstance(func, tvm.tirx.PrimFunc):
            out[gv] = schedule_primfunc(func, lanes, accumulators)
    return out


def hot_loop(func: "tvm.tirx.PrimFunc", target=None, op: str = "vfmadd") -> dict:
    """The innermost loop made most densely of ``op`` instructions (``vfmadd``: fp32 FMAs, ``vpdpbusd``:
    int8 VNNI dot products; at least 4 of them) in the machine code LLVM makes of ``func`` — the
    micro-kernel, not an unrolled transform around it: its instruction mix
    (``fma``: ``op`` instructions, ``fma_zmm``: those on 512-bit registers, ``broadcasts``,
    ``loads``: vector moves from memory, ``other``), ``op`` per load, the distinct accumulator
    registers, and the loop's assembly (``text``)."""
    import re

    target = as_target(target)
    with target:
        ex = tvm.compile(tvm.IRModule({"kernel": func.with_attr("global_symbol", "kernel")}), target=target)
    asm = (ex.mod if hasattr(ex, "mod") else ex).inspect_source("asm")
    blocks, label, lines = {}, None, []
    for line in asm.splitlines():
        m = re.match(r"^(\.LBB\d+_\d+):", line)
        if m:
            if label:
                blocks[label] = lines
            label, lines = m[1], []
        elif label and line.startswith("\t") and not line.startswith("\t."):
            lines.append(line.split("#")[0].strip())
    if label:
        blocks[label] = lines
    loops = {}  # a label's instructions up to its jump back to itself (unlabelled fall-through after)
    for k, v in blocks.items():
        back = [i for i, ins in enumerate(v) if re.fullmatch(r"j\w+\s+" + re.escape(k), ins)]
        if back:
            loops[k] = v[:back[0] + 1]
    if not loops:
        raise ValueError("no self-looping basic block in the generated code")
    def density(body):  # a fully unrolled transform can hold more FMAs among many more other instructions
        n = sum(i.startswith(op) for i in body)
        return (n >= 4, n / len(body), n)

    name, body = max(loops.items(), key=lambda kv: density(kv[1]))
    fma = [i for i in body if i.startswith(op)]
    loads = [i for i in body if re.match(r"vmov(u|a)ps\s+-?\w*\(|vmovdq(u|a)(8|16|32|64)?\s+-?\w*\(", i)]  # fp32 / integer
    bcast = [i for i in body if i.startswith(("vbroadcastss", "vpbroadcastd"))]
    acc = {re.findall(r"%([xyz]mm\d+)", i)[-1] for i in fma}
    return {"label": name, "instructions": len(body), "fma": len(fma),
            "fma_zmm": sum("zmm" in i for i in fma), "broadcasts": len(bcast), "loads": len(loads),
            "other": len(body) - len(fma) - len(bcast) - len(loads), "accumulators": len(acc),
            "fma_per_load": round(len(fma) / max(1, len(loads) + len(bcast)), 2), "text": "\n".join(body)}
