"""Winograd F(4x4, 3x3) for the 3x3 body convolutions, with a hand-written schedule.

A 3x3 convolution computes each 4x4 output tile from a 6x6 input tile. Winograd's minimal
filtering (Lavin & Gray 2016) transforms the input tile (``B^T d B``) and the filter (``G g G^T``)
into 6x6 "frequency" tiles, multiplies them element-wise — for C input and F output channels that is
36 independent (tiles x C) @ (C x F) matrix products — and transforms back (``A^T m A``): 36 x C x F
multiply-adds per tile instead of 16 x 9 x C x F, 4x fewer, plus transforms whose cost grows with
C + F rather than C x F. MLAS (ONNX Runtime) and the direct schedule of :mod:`.schedules` compute
the convolution directly, so this is the one lever here that does fewer operations than they do.
The price is rounding: the transforms' coefficients (up to 8 and 1/24) cost a few ULPs more than a
direct sum (outputs agree to ~1e-5 here; the PSNR change is measured in notebook 05).

:func:`winograd_conv` is the computation (NHWC data, HWIO weights, zero border of 1; bias,
activation and residual are fused in by the graph), :func:`legalize` swaps it in for every relax
``conv2d`` that qualifies (:func:`eligible`), and :func:`schedule_winograd` schedules a fused
function holding it:

    parallel for (n, tile row):                # batch x rows of 4x4 output tiles
      pad the 6 input rows of the band
      for tile, 16 input channels:             # input transform, in registers
        V[6][6][tile][c] = B^T d B
      for (eps, nu) of 36, tile group:         # 36 matrix products, register-blocked like the direct
        acc[tiles][F/16] = sum_c V * U         #   conv: tiles x output-channel vectors in zmm
      for tile, 16 output channels:            # output transform, bias/ReLU/residual in the store
        out[4 rows][4 cols] = epilogue(A^T M A)

The weight transform ``U = G g G^T`` runs once per call (36 x C x F values: microseconds).
"""

from __future__ import annotations

import tvm
from tvm import relax, te, tirx

from .microkernel import ACCUMULATORS, inline_epilogue, vector_loop, vector_shape, width_tile
from .target import as_target

TILE = 4  # output tile side (m); the input tile is TILE + 2
BT = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
      [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]
G = [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
     [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]]
AT = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]
BLOCKS = ("wino_pad", "wino_rows", "wino_pack", "wino_weight", "wino_gemm", "wino_cols", "wino_inverse", "wino_out")


def _combo(row, term):
    """``sum_i row[i] * term(i)`` over the non-zero coefficients (1 and -1 without a multiply)."""
    out = None
    for i, c in enumerate(row):
        if c == 0:
            continue
        t = term(i)
        t = t if c == 1 else -t if c == -1 else t * tirx.const(float(c), "float32")
        out = t if out is None else out + t
    return out


def _apply(mat, idx, term):
    """``sum_i mat[idx][i] * term(i)`` for a loop variable ``idx``: a chain of selects on ``idx`` that
    folds to one row's sum once the loop over ``idx`` is unrolled (the schedule unrolls it)."""
    expr = _combo(mat[-1], term)
    for r in range(len(mat) - 2, -1, -1):
        expr = tirx.Select(idx == r, _combo(mat[r], term), expr)
    return expr


def winograd_conv(x, w):
    """Same-padded 3x3 stride-1 convolution of NHWC ``x`` with HWIO ``w`` by Winograd F(4x4, 3x3);
    the output has ``x``'s height and width (the last tile row/column may overhang and is not stored)."""
    n, h, wd, c = (int(v) for v in x.shape)
    kh, kw, wc, f = (int(v) for v in w.shape)
    if (kh, kw) != (3, 3) or wc != c:
        raise ValueError(f"Winograd F(4x4, 3x3) needs 3x3 weights over {c} channels, got {tuple(w.shape)}")
    nh, nw, a = -(-h // TILE), -(-wd // TILE), TILE + 2
    zero = tirx.const(0.0, "float32")
    pad = te.compute((n, TILE * nh + 2, TILE * nw + 2, c), lambda i, y, xx, ch: tirx.if_then_else(
        tirx.all(y >= 1, y <= h, xx >= 1, xx <= wd), x[i, y - 1, xx - 1, ch], zero), name="wino_pad")
    rows = te.compute((n, nh, nw, a, a, c), lambda i, th, tw, e, j, ch: _apply(
        BT, e, lambda k: pad[i, TILE * th + k, TILE * tw + j, ch]), name="wino_rows")
    v = te.compute((n, a, a, nh, nw, c), lambda i, e, u, th, tw, ch: _apply(
        BT, u, lambda k: rows[i, th, tw, e, k, ch]), name="wino_pack")
    uw = te.compute((a, a, c, f), lambda e, u, ch, o: _apply(
        G, e, lambda r1: _apply(G, u, lambda r2: w[r1, r2, ch, o])), name="wino_weight")
    rc = te.reduce_axis((0, c), "rc")
    m = te.compute((n, a, a, nh, nw, f), lambda i, e, u, th, tw, o: te.sum(
        v[i, e, u, th, tw, rc] * uw[e, u, rc, o], axis=rc), name="wino_gemm")
    cols = te.compute((n, a, nh, nw, TILE, f), lambda i, e, th, tw, a2, o: _apply(
        AT, a2, lambda u: m[i, e, u, th, tw, o]), name="wino_cols")
    z = te.compute((n, nh, nw, TILE, TILE, f), lambda i, th, tw, a1, a2, o: _apply(
        AT, a1, lambda e: cols[i, e, th, tw, a2, o]), name="wino_inverse")
    return te.compute((n, h, wd, f), lambda i, y, xx, o: z[i, y // TILE, xx // TILE, y % TILE, xx % TILE, o],
                      name="wino_out")


def eligible(call, lanes: int = 16) -> bool:
    """A relax ``conv2d`` call Winograd F(4x4, 3x3) replaces: NHWC/HWIO, 3x3 weights, stride 1,
    dilation 1, padding 1, one group, fp32, input and output channels whole vectors of ``lanes``
    (the body convs; head, tail and skip keep the direct schedule)."""
    attrs = call.attrs
    if (attrs.data_layout, attrs.kernel_layout, attrs.out_layout) != ("NHWC", "HWIO", "NHWC"):
        return False
    if [int(v) for v in attrs.strides] != [1, 1] or [int(v) for v in attrs.dilation] != [1, 1]:
        return False
    if [int(v) for v in attrs.padding] != [1, 1, 1, 1] or int(attrs.groups) != 1:
        return False
    data, weight = call.args
    shapes = [getattr(getattr(a.ty, "shape", None), "values", None) for a in (data, weight)]
    if any(s is None or not all(isinstance(d, tirx.IntImm) for d in s) for s in shapes):
        return False
    (_, _, _, c), (kh, kw, _, f) = ([int(d) for d in s] for s in shapes)
    dtypes = {str(a.ty.dtype) for a in (data, weight)}
    return (kh, kw) == (3, 3) and dtypes == {"float32"} and c % lanes == 0 and f % lanes == 0


def legalize(mod: "tvm.IRModule", target=None) -> "tvm.IRModule":
    """``LegalizeOps`` with every :func:`eligible` conv2d (channels in whole vectors of the target)
    as :func:`winograd_conv` (PrimFuncs named ``conv2d_winograd``); everything else legalized as usual."""
    default = tvm.ir.Op.get("relax.nn.conv2d").get_attr("FLegalize")
    lanes, _ = vector_shape(target)

    def conv2d(bb, call):
        if eligible(call, lanes):
            return bb.call_te(winograd_conv, call.args[0], call.args[1], primfunc_name_hint="conv2d_winograd")
        return default(bb, call)

    with as_target(target):
        return relax.transform.LegalizeOps({"relax.nn.conv2d": conv2d})(mod)


def has_winograd(sch) -> bool:
    return any(sch.get(b).name_hint == "wino_gemm" for b in sch.get_child_blocks(sch.get_sblock("root")))


def _below(sch, block, loop) -> list:
    """The loops of ``block`` inside ``loop`` (after ``compute_at`` there; loops of extent 1 vanish,
    so a picture one tile wide has no tile loop)."""
    loops = sch.get_loops(block)
    at = [sch.get(v).same_as(sch.get(loop)) for v in loops].index(True)
    return list(loops[at + 1:])


def schedule_winograd(sch, lanes: int = 16, accumulators: int = ACCUMULATORS) -> None:
    """The schedule of the module docstring on a function holding :func:`winograd_conv`'s blocks
    (element-wise consumers of ``wino_out`` are fused into its store)."""
    blocks = {name: sch.get_sblock(name) for name in BLOCKS}
    out = blocks["wino_out"]
    inline_epilogue(sch, out)
    n, y, x, f = sch.get_loops(out)
    th, _ = sch.split(y, [None, TILE])
    band = sch.fuse(n, th)
    sch.parallel(band)
    vector_loop(sch, f, lanes)
    for name in ("wino_inverse", "wino_cols", "wino_gemm", "wino_pack", "wino_rows", "wino_pad"):
        sch.compute_at(blocks[name], band)
    # output transform: per tile and output-channel vector, the column pass kept in registers
    *tw, a1, a2, o = _below(sch, blocks["wino_inverse"], band)
    oo, oi = sch.split(o, [None, lanes])
    sch.reorder(*tw, oo, a1, a2, oi)
    sch.compute_at(blocks["wino_cols"], oo)
    for loop in (a1, a2):
        sch.unroll(loop)
    sch.vectorize(oi)
    e, ca2, co = _below(sch, blocks["wino_cols"], oo)
    sch.unroll(e)
    sch.unroll(ca2)
    sch.vectorize(co)
    # the 36 products: tiles x output-channel vectors in registers over the whole reduction
    gemm = blocks["wino_gemm"]
    e, u, *tw, fo, rc = _below(sch, gemm, band)
    channels = int(sch.get(fo).extent)
    fo, fi = sch.split(fo, [None, lanes])
    if tw:
        two, twi = sch.split(tw[0], [None, width_tile(int(sch.get(tw[0]).extent), channels // lanes, accumulators)])
        sch.reorder(e, u, two, rc, twi, fo, fi)
    else:  # one tile per band row
        two, twi = u, None
        sch.reorder(e, u, rc, fo, fi)
    acc = sch.cache_write(gemm, 0, "local")
    sch.reverse_compute_at(acc, two)
    sch.vectorize(fi)  # before decompose_reduction, as in schedules.schedule_conv_nhwc
    sch.unroll(fo)
    if twi is not None:
        sch.unroll(twi)
    sch.decompose_reduction(gemm, rc)
    vector_loop(sch, sch.get_loops(acc)[-1], lanes)
    # input transform: per tile and input-channel vector, the row pass kept in registers
    e, u, *tw, c = _below(sch, blocks["wino_pack"], band)
    cv, ci = sch.split(c, [None, lanes])
    sch.reorder(*tw, cv, e, u, ci)
    sch.compute_at(blocks["wino_rows"], cv)
    sch.unroll(e)
    sch.unroll(u)
    sch.vectorize(ci)
    re_, rj, rc_ = _below(sch, blocks["wino_rows"], cv)
    sch.unroll(re_)
    sch.unroll(rj)
    sch.vectorize(rc_)
    vector_loop(sch, sch.get_loops(blocks["wino_pad"])[-1], lanes)
    # weight transform, once per call
    e, u, _, o = sch.get_loops(blocks["wino_weight"])
    sch.unroll(e)
    sch.unroll(u)
    vector_loop(sch, o, lanes)
