"""3x3 convolutions on Intel AMX tiles, hand-written TensorIR: int8 (``tdpbusd``, every conv of the
trunk in :mod:`.int8`'s ``amx`` build) and bf16 (``tdpbf16ps``, :mod:`.bf16`; the same structure with 32 bf16
values per 64-byte K chunk, fp32 accumulators and no quantization). Below, the int8 kernel.

TVM 0.27 has no AMX schedule, but its LLVM knows the tile instructions; the kernel calls them with
``T.call_llvm_intrin`` on fixed tile registers (tile ids are immediates, so the accumulators stay in
``tmm0-3`` across the whole reduction):

    parallel for (n, row pair):               # a task = 2 output rows of one patch
      ldtilecfg (all 8 tiles 16 rows x 64 bytes; the configuration is per thread)
      for x block of m <= 16 pixels, for output-channel pair (32 channels; one block of 16 where F = 16):
        tmm0..3 = 0                           # 2 rows x 2 x 16 channels, i32
        for ry < 3, K chunk of 64 bytes:      # K = (kernel column, input channel), contiguous in NHWC
          tmm4, tmm5 = m pixels x 64 bytes of rows y+ry, y+1+ry    (stride: C bytes per pixel)
          tmm6, tmm7 = 64 x 16 weights of the two channel blocks  (k-quads x 16 x 4)
          tdpbusd tmm0..3
        tilestored -> 4 KiB of i32 on the stack; AVX-512 epilogue: (acc - comp) * scale + bias,
        ReLU (and requantize to the next conv's uint8) or residual + res_scale * that (fp32)
      tilerelease

In the int8 trunk every conv stores the next one's input as that one reads it (:func:`padded_layout`:
uint8, bordered with its zero point; a residual conv writes it beside its fp32 output), so only the
head pads its own input: the padding passes were a fifth of a path's time.

For one output pixel and one kernel row the K of a ``tdpbusd`` is the pixel's ``3 x C`` padded-input
bytes, which NHWC stores contiguously: an A tile is 16 overlapping rows (stride C) of the quantized,
zero-bordered input, no im2col copy. ``3 x C`` is padded up to whole 64-byte chunks with zero
weights (C = 32: 96 -> 128, so those convs run at 3/4 of the tile rate; C = 64: exact). A row of
``w`` pixels is cut into ``ceil(w / 16)`` blocks of ``m = ceil(w / blocks)`` pixels (the A and
accumulator tiles have ``m`` rows: a tile instruction's cost follows its rows, so a 20-pixel row costs
2 x 10 rows, not 2 x 16); heights run over row pairs; the overhang reads zero-point padding and only
real pixels are stored.

Linux hands a process the tile state only after ``arch_prctl(ARCH_REQ_XCOMP_PERM,
XFEATURE_XTILEDATA)`` (:func:`request_tile_permission`); without it the first tile instruction is
a SIGILL. Weights: :func:`pack_weights` (from :func:`.int8.quantize_unit`'s VNNI packing) and
:func:`pack_bf16_weights`.
"""

from __future__ import annotations

import numpy as np

from . import CompileError
from .. import runinfo
from ..runinfo import has_amx_int8  # noqa: F401  (re-exported: the compiler's tests and notebooks ask here)

TILE_ROWS, TILE_BYTES = 16, 64  # every tile here: 16 rows x 64 bytes
AMX_MATTR = ["+avx512vnni", "+amx-tile", "+amx-int8", "+amx-bf16"]


def request_tile_permission() -> None:
    """Ask Linux for the AMX tile state of this process (:func:`dydca_lib.runinfo.request_amx_tile_permission`);
    :class:`CompileError` where the CPU or kernel refuses."""
    try:
        runinfo.request_amx_tile_permission()
    except RuntimeError as e:
        raise CompileError(str(e)) from None


def amx_target(num_cores: int | None = None) -> "tvm.target.Target":
    """This CPU's target (AVX-512, as the VNNI int8 build) with VNNI and the AMX tile, int8 and bf16
    instructions."""
    import tvm

    from .target import cpu_target

    cfg = {k: v for k, v in cpu_target(num_cores).export().items() if k in ("kind", "mcpu", "num-cores", "mtriple")}
    return tvm.target.Target({**cfg, "mcpu": cfg.get("mcpu") or "skylake-avx512", "mattr": AMX_MATTR})


PRECISIONS = {"int8": ("uint8", "int8", "llvm.x86.tdpbusd"), "bf16": ("uint16", "uint16", "llvm.x86.tdpbf16ps")}
"""Per precision: the stored activation type, the weight type (bf16 as its bits, uint16, so TVM's bf16
legalization never sees it) and the tile instruction (int32 += u8 x s8 / fp32 += bf16 x bf16)."""


def k_chunks(c: int, kw: int = 3, element_bytes: int = 1) -> int:
    """64-byte K chunks of one kernel row: ``kw x c`` input elements rounded up."""
    return -(-kw * c * element_bytes // TILE_BYTES)


def pack_weights(vnni: np.ndarray) -> np.ndarray:
    """VNNI-packed int8 weights ``(kh, kw, C/4, F/16, 16, 4)`` -> the AMX B tiles ``(kh, R, F/16, 16, 4)``:
    per kernel row the k-quads of (kernel column, input channel) in NHWC order, padded with zero rows
    up to ``R = 16 x`` :func:`k_chunks` (a tile row = 4 k values of 16 output channels)."""
    kh, kw, c4, f16, n16, four = vnni.shape
    if (n16, four) != (16, 4) or vnni.dtype != np.int8:
        raise CompileError(f"expected VNNI-packed int8 weights (kh, kw, C/4, F/16, 16, 4), got {vnni.dtype} {vnni.shape}")
    rows = k_chunks(4 * c4, kw) * TILE_ROWS
    out = np.zeros((kh, rows, f16, 16, 4), np.int8)
    out[:, :kw * c4] = vnni.reshape(kh, kw * c4, f16, 16, 4)
    return out


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """fp32 -> bf16 bits (uint16), rounded to nearest even as ``torch.Tensor.bfloat16`` does."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def pack_bf16_weights(hwio: np.ndarray, c_pad: int | None = None) -> np.ndarray:
    """fp32 HWIO weights -> bf16 B tiles ``(kh, R, F/16, 16, 2)`` (uint16): per kernel row the pairs of
    (kernel column, input channel) in NHWC order; input channels padded to ``c_pad``, outputs to a
    multiple of 16 and the pairs to ``R = 16 x`` :func:`k_chunks` rows, all with zeros."""
    kh, kw, c, f = hwio.shape
    c_pad, fp = int(c_pad or c), -(-f // 16) * 16
    if c_pad < c or c_pad % 2:
        raise CompileError(f"bf16 tiles pair input channels: c_pad must be even and >= {c}, got {c_pad}")
    rows = k_chunks(c_pad, kw, 2) * TILE_ROWS
    w = np.zeros((kh, kw, c_pad, fp), np.float32)
    w[:, :, :c, :f] = hwio
    k = np.zeros((kh, 2 * rows, fp), np.float32)
    k[:, :kw * c_pad] = w.reshape(kh, kw * c_pad, fp)
    return np.ascontiguousarray(bf16_bits(k).reshape(kh, rows, 2, fp // 16, 16).transpose(0, 1, 3, 4, 2))


def padded_layout(n: int, h: int, w: int, c: int, precision: str = "int8") -> dict:
    """Where a conv of :func:`conv_primfunc` reads its input: the NHWC input with a border of one
    pixel (zero point / zero), its rows rounded up to pairs, its width to whole pixel blocks plus the
    slack the last A tile reads past its pixel; flat, ``size`` elements. ``xb`` blocks of ``m``
    pixels per row; element ``(i, y, x, ch)`` of the input sits at ``((i * ph + y + 1) * pw + x + 1) * c + ch``."""
    eb = 2 if precision == "bf16" else 1
    chunks = k_chunks(c, 3, eb)
    xb = -(-w // TILE_ROWS)  # pixel blocks per row, as even as they come (a tile's cost follows its rows)
    m = -(-w // xb)
    h2 = h + h % 2
    slack = -(-(chunks * TILE_BYTES // eb - 3 * c) // c)
    pw, ph = xb * m + 2 + slack, h2 + 2
    return {"chunks": chunks, "xb": xb, "m": m, "h2": h2, "ph": ph, "pw": pw, "size": n * ph * pw * c}


def conv_primfunc(n: int, h: int, w: int, c: int, f: int, *, relu: bool = False, residual: bool = False,
                  res_scale: float = 1.0, narrow_input: bool = False, narrow_output: bool = False,
                  precision: str = "int8", c_in: int | None = None, padded_input: bool = False,
                  padded_output: bool = False, also_padded: bool = False):
    """The AMX 3x3 same-padded NHWC conv of the module docstring for one static shape, as a TIR
    PrimFunc. int8 (``tdpbusd``): over ``(x, wq, comp, scale, b, aq[, residual][, out_aq], out)``;
    ``x`` fp32 (quantized with ``aq = [1/scale, zero point]`` while padding) or, ``narrow_input``,
    uint8 already quantized; ``wq`` :func:`pack_weights`'s tiles; the output ``(acc - comp) x scale + b``
    then ReLU, or ``residual + res_scale x that``; with ``narrow_output`` (a ReLU conv) uint8
    requantized with ``out_aq``. bf16 (``tdpbf16ps``): over ``(x, wq, b[, residual], out)``; ``x`` fp32
    (rounded to bf16 while padding) or bf16 bits (uint16); ``wq`` :func:`pack_bf16_weights`'s tiles;
    the output ``acc + b``, ReLU or residual as in int8, bf16 bits with ``narrow_output``. ``c_in``:
    ``x``'s channels when fewer than ``c`` (the rest padded: zero point / zero).

    Fused padding (each conv writes the next one's input as that one reads it, so no conv pads its
    input: 20 % of a path's time at 58x52): ``padded_input``: ``x`` is already the narrow,
    bordered input (:func:`padded_layout`, flat; :func:`pad_primfunc` or the previous conv wrote it).
    ``padded_output`` (a ReLU conv with ``narrow_output``): ``out`` is the next conv's input in that
    layout, border included. ``also_padded`` (a conv without ReLU: the head, a residual conv): besides
    the fp32 ``out``, ``outp`` holds it narrowed (``out_aq``) in the next conv's layout."""
    import tvm
    from tvm.script import tirx as T

    if precision not in PRECISIONS:
        raise CompileError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    act, wdt, dot = PRECISIONS[precision]
    eb = 2 if precision == "bf16" else 1  # bytes per element
    if c % (4 // eb) or f % 16 or c < 4 // eb:
        raise CompileError(f"the AMX conv needs input channels in multiples of {4 // eb} and outputs in "
                           f"multiples of 16, got {c} -> {f}")
    c_in = int(c_in or c)
    if not 0 < c_in <= c:
        raise CompileError(f"c_in must be in 1..{c}, got {c_in}")
    if relu and residual:
        raise CompileError("ReLU or residual, not both")
    if narrow_output and not relu:
        raise CompileError("only a ReLU conv stores the next conv's narrow input")
    if padded_output and not narrow_output:
        raise CompileError("padded_output stores the next conv's narrow input: it needs narrow_output")
    if also_padded and relu:
        raise CompileError("also_padded is a second output of a conv without ReLU (a ReLU conv: padded_output)")
    if padded_input and c_in != c:
        raise CompileError("a padded input already has every channel")
    kh = kw = 3
    per_chunk = TILE_BYTES // eb  # K elements per tile row
    lay = padded_layout(n, h, w, c, precision)
    chunks, xb, m, h2, ph, pw, pad_size = (lay[k] for k in ("chunks", "xb", "m", "h2", "ph", "pw", "size"))
    rows_w = chunks * TILE_ROWS
    nxt = padded_layout(n, h, w, f, precision)  # the next conv's input (padded_output, also_padded)
    nph, npw = nxt["ph"], nxt["pw"]
    fb_n = 2 if f % 32 == 0 else 1  # output-channel blocks of 16 per tile group (2 x fb_n accumulator tiles)
    fpairs = f // (16 * fb_n)
    in_dtype = act if narrow_input or padded_input else "float32"
    out_dtype = act if narrow_output else "float32"
    x_shape = (pad_size,) if padded_input else (n, h, w, c_in)
    out_shape = (nxt["size"],) if padded_output else (n, h, w, f)
    outp_size = nxt["size"] if also_padded else 1
    acc_dtype = "int32" if precision == "int8" else "float32"
    f16 = f // 16
    rs = float(res_scale)
    row_bytes = T.int64(c * eb)  # A tile row stride: one pixel
    w_stride = T.int64(f * 4)  # B tile row stride: 4 bytes (a k-quad / a bf16 pair) of every output channel

    def quant(v, aq):
        return T.Cast("uint8", T.max(T.min(T.round(v * aq[0]) + aq[1], T.float32(255)), T.float32(0)))

    def to_bf16(v):  # round to nearest even, as torch's .bfloat16()
        u = T.reinterpret("uint32", v)
        return T.Cast("uint16", (u + T.uint32(0x7FFF) + ((u >> T.uint32(16)) & T.uint32(1))) >> T.uint32(16))

    def narrow(v, aq):
        return quant(v, aq) if precision == "int8" else to_bf16(v)

    def value(a, fo, comp, scale, b):
        return (T.Cast("float32", a - comp[fo]) * scale[fo] if precision == "int8" else a) + b[fo]

    @T.prim_func(s_tir=False)
    def conv(x: T.Buffer(x_shape, in_dtype), wq: T.Buffer((kh * rows_w * f16 * 64 // eb,), wdt),
             comp: T.Buffer((f,), "int32"), scale: T.Buffer((f,), "float32"), b: T.Buffer((f,), "float32"),
             aq: T.Buffer((2,), "float32"), res: T.Buffer((n, h, w, f), "float32"),
             out_aq: T.Buffer((2,), "float32"), out: T.Buffer(out_shape, out_dtype),
             outp: T.Buffer((outp_size,), act)):
        T.func_attr({"tirx.noalias": True})
        qpad = T.alloc_buffer((1 if padded_input else pad_size,), act)
        src_pad = T.meta_var(x if padded_input else qpad)
        if not padded_input:
            border = T.meta_var(T.Cast("uint8", aq[1]) if precision == "int8" else T.uint16(0))
            for iy in T.parallel(n * ph):
                for xx in range(pw):
                    for ch in T.vectorized(c):
                        i = T.meta_var(iy // ph)
                        yy = T.meta_var(iy % ph)
                        src = T.meta_var(x[i, T.min(T.max(yy - 1, 0), h - 1), T.min(T.max(xx - 1, 0), w - 1), T.min(ch, c_in - 1)])
                        if narrow_input:
                            qpad[(iy * pw + xx) * c + ch] = T.if_then_else(
                                1 <= yy and yy <= h and 1 <= xx and xx <= w and ch < c_in, src, border)
                        else:
                            qpad[(iy * pw + xx) * c + ch] = T.if_then_else(
                                1 <= yy and yy <= h and 1 <= xx and xx <= w and ch < c_in, narrow(src, aq), border)
        if padded_output or also_padded:  # the next conv's border (zero point / zero); the epilogue writes the rest
            nborder = T.meta_var(T.Cast("uint8", out_aq[1]) if precision == "int8" else T.uint16(0))
            for iy in T.parallel(n * nph):
                for xx in range(npw):
                    yy = T.meta_var(iy % nph)
                    if yy < 1 or yy > h or xx < 1 or xx > w:
                        for ch in T.vectorized(f):
                            if padded_output:
                                out[(iy * npw + xx) * f + ch] = nborder
                            else:
                                outp[(iy * npw + xx) * f + ch] = nborder
        for task in T.parallel(n * (h2 // 2)):
            cfg = T.alloc_buffer((64,), "uint8", scope="local")
            acc = T.alloc_buffer((4 * 256,), acc_dtype, scope="local")
            for k in range(64):
                cfg[k] = T.uint8(0)
            cfg[0] = T.uint8(1)
            for t in T.unroll(8):
                cfg[16 + 2 * t] = T.uint8(TILE_BYTES)
                cfg[48 + t] = T.uint8(T.if_then_else(t < 6, m, TILE_ROWS))  # B tiles (6, 7): 16 rows of K
            T.evaluate(T.call_llvm_intrin("void", "llvm.x86.ldtilecfg", T.address_of(cfg[0])))
            i = T.meta_var(task // (h2 // 2))
            y0 = T.meta_var(task % (h2 // 2) * 2)
            for xo in range(xb):
                for fp in range(fpairs):
                    for t in T.unroll(2 * fb_n):
                        T.evaluate(T.call_llvm_intrin("void", "llvm.x86.tilezero", T.Cast("int8", t)))
                    for ry in range(kh):
                        for kc in range(chunks):
                            for r in T.unroll(2):
                                T.evaluate(T.call_llvm_intrin(
                                    "void", "llvm.x86.tileloadd64", T.Cast("int8", 4 + r),
                                    T.address_of(src_pad[((i * ph + y0 + r + ry) * pw + xo * m) * c + kc * per_chunk]),
                                    row_bytes))
                            for fb in T.unroll(fb_n):
                                T.evaluate(T.call_llvm_intrin(
                                    "void", "llvm.x86.tileloadd64", T.Cast("int8", 6 + fb),
                                    T.address_of(wq[((ry * rows_w + kc * 16) * f16 + fp * fb_n + fb) * per_chunk]), w_stride))
                            for r in T.unroll(2):
                                for fb in T.unroll(fb_n):
                                    T.evaluate(T.call_llvm_intrin("void", dot, T.Cast("int8", r * fb_n + fb),
                                                                  T.Cast("int8", 4 + r), T.Cast("int8", 6 + fb)))
                    for t in T.unroll(2 * fb_n):
                        T.evaluate(T.call_llvm_intrin("void", "llvm.x86.tilestored64", T.Cast("int8", t),
                                                      T.address_of(acc[t * 256]), T.int64(64)))
                    for r in range(2):
                        for px in range(m):
                            for fb in T.unroll(fb_n):
                                for o in T.vectorized(16):
                                    if y0 + r < h and xo * m + px < w:
                                        fo = T.meta_var((fp * fb_n + fb) * 16 + o)
                                        v = T.meta_var(value(acc[(r * fb_n + fb) * 256 + px * 16 + o], fo, comp, scale, b))
                                        at_next = T.meta_var(((i * nph + y0 + r + 1) * npw + xo * m + px + 1) * f + fo)
                                        if relu:
                                            if padded_output:
                                                out[at_next] = narrow(T.max(v, T.float32(0)), out_aq)
                                            elif narrow_output:
                                                out[i, y0 + r, xo * m + px, fo] = narrow(T.max(v, T.float32(0)), out_aq)
                                            else:
                                                out[i, y0 + r, xo * m + px, fo] = T.max(v, T.float32(0))
                                        elif residual:
                                            rv = T.meta_var(res[i, y0 + r, xo * m + px, fo] + v * T.float32(rs))
                                            out[i, y0 + r, xo * m + px, fo] = rv
                                            if also_padded:
                                                outp[at_next] = narrow(rv, out_aq)
                                        else:
                                            out[i, y0 + r, xo * m + px, fo] = v
                                            if also_padded:
                                                outp[at_next] = narrow(v, out_aq)
            T.evaluate(T.call_llvm_intrin("void", "llvm.x86.tilerelease"))

    # drop the buffers this variant does not use (the script declares every one)
    names = ["x", "wq", "comp", "scale", "b", "aq", "res", "out_aq", "out", "outp"]
    unused = set() if residual else {"res"}
    unused |= set() if narrow_output or also_padded else {"out_aq"}
    unused |= set() if also_padded else {"outp"}
    unused |= {"aq"} if padded_input else set()
    if precision == "bf16":
        unused |= {"comp", "scale", "aq", "out_aq"}
    keep = [p for p, name in zip(conv.params, names) if name not in unused]
    func = tvm.tirx.PrimFunc(keep, conv.body, conv.ret_type, conv.attrs)
    # the multiply-adds (real channels, 3x3 taps) for the benchmarks: the buffers may be flat
    return func.with_attrs({"tirx.is_scheduled": True, "dydca.macs": n * h * w * c_in * f * kh * kw,
                            "dydca.precision": precision})


def tile_instruction_mix(func, target=None) -> dict:
    """The tile instructions LLVM makes of an AMX conv ``func`` (:func:`conv_primfunc`), in the keys
    of :func:`.schedules.hot_loop` so the two sit in one table: ``fma`` = ``tdpbusd`` (each
    ``TILE_ROWS x 16 x 64`` multiply-adds), ``loads`` = ``tileloadd`` (activation and weight tiles),
    ``accumulators`` = distinct accumulator tiles, ``fma_per_load``; ``other``: ``tilezero``,
    ``tilestored``, ``ldtilecfg`` and ``tilerelease``. The kernel rows are unrolled whole, so this is
    the whole function's tile code, not one self-looping block."""
    import re

    import tvm

    target = target or amx_target()
    with tvm.target.Target(target) if not isinstance(target, tvm.target.Target) else target:
        ex = tvm.compile(tvm.IRModule({"kernel": func.with_attr("global_symbol", "kernel")}), target=target)
    asm = ex.mod.inspect_source("asm")
    ins = [ln.split("#")[0].strip() for ln in asm.splitlines() if ln.startswith("\t") and not ln.startswith("\t.")]
    tiles = [i for i in ins if re.match(r"(tdp|tile|ldtilecfg|sttilecfg)", i)]
    dots = [i for i in tiles if i.startswith("tdpbusd")]
    loads = [i for i in tiles if i.startswith("tileloadd")]
    return {"label": "tile code (whole kernel)", "instructions": len(tiles), "fma": len(dots), "fma_zmm": 0,
            "broadcasts": 0, "loads": len(loads), "other": len(tiles) - len(dots) - len(loads),
            "accumulators": len({re.findall(r"%(tmm\d)", i)[-1] for i in dots}),
            "fma_per_load": round(len(dots) / max(1, len(loads)), 2), "text": "\n".join(tiles)}
