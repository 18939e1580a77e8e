"""int8 WDSR paths compiled by TVM: the trunk's convolutions (head, residual body, tail) on AVX-512
VNNI, the 5x5 skip conv fp32.

A WDSR path spends ~97 % of its multiply-adds in the body (2 x ``n_blocks`` 3x3 convs, ``n_feats``
<-> ``n_feats x expansion`` channels) and most of the rest in the head and tail 3x3 convs. All of
them run as u8 x i8 -> i32 dot products with ``vpdpbusd`` (64 multiply-adds per instruction, 4x an
fp32 FMA) inside the same register-blocked NHWC schedule as the fp32 kernels (:mod:`.schedules`):
the activation is quantized while the zero border is padded (each input row once, in parallel; a
ReLU conv stores its output as the next conv's uint8 input), the i32 tile stays in zmm accumulators, and the store dequantizes (per-output-channel scale), adds the
bias, and applies ReLU or adds the residual (the body) or the skip branch (the tail). Channel
counts the tile does not divide are padded with zero weights: the head's 3 input channels to 4, the
tail's ``3 x scale^2`` outputs to 16 (only the real ones are stored). The 5x5 skip conv (~1 % of
the multiply-adds; it carries the picture) and the pixel shuffle stay fp32 — the same split as the
ONNX Runtime int8 client (:func:`dydca_lib.client.bundle.export_onnx_int8`) and PyTorch's bf16
trunk (:class:`dydca_lib.models.ReducedTrunk`).

Quantization (static, computed on the server, shipped with the weights): weights symmetric int8
per output channel; each quantized conv's input asymmetric uint8 per tensor (scale and zero point)
from the min/max over calibration patches cut from the training frames (the same MinMax
calibration as the ONNX Runtime client). ``vpdpbusd`` needs unsigned activations, so the zero
point's share of every sum is subtracted once per output channel (``comp``).

The relax functions are built directly from the WDSR structure (:func:`int8_module`), one per
static shape, taking the quantized parameters of :func:`quantize_unit` as inputs (so the units of
one architecture share one library, as in the fp32 build).
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax, te, tirx
from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T

from . import CompileError
from .amx import amx_target, conv_primfunc, k_chunks, pack_weights, padded_layout, request_tile_permission
from .microkernel import ACCUMULATORS, vector_loop, width_tile
from .schedules import schedule_primfunc
from .shapes import StaticShape
from .target import as_target, cpu_target

VNNI_INTRIN = "dydca_vnni_u8i8i32_16x4_local"


@T.prim_func(s_tir=True)
def _vnni_desc(a: T.Buffer((4,), "uint8", offset_factor=1), b: T.Buffer((16, 4), "int8", offset_factor=1),
               c: T.Buffer((16,), "int32", offset_factor=1, scope="local")) -> None:
    with T.sblock("root"):
        T.reads(c[0:16], a[0:4], b[0:16, 0:4])
        T.writes(c[0:16])
        for i in T.serial(0, 16):
            for k in T.serial(0, 4):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    c[vi] = c[vi] + T.cast(a[vk], "int32") * T.cast(b[vi, vk], "int32")


@T.prim_func(s_tir=True)
def _vnni_impl(a: T.Buffer((4,), "uint8", offset_factor=1), b: T.Buffer((16, 4), "int8", offset_factor=1),
               c: T.Buffer((16,), "int32", offset_factor=1, scope="local")) -> None:
    # TVM's own dot_16x4_vnni passes i32 vectors, which this wheel's LLVM rejects (it wants <64 x i8>);
    # the accumulator lives in a register tile ("local"), not in global memory
    with T.sblock("root"):
        T.reads(c[0:16], a[0:4], b[0:16, 0:4])
        T.writes(c[0:16])
        c[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"), c.vload([0], "int32x16"),
            T.reinterpret(T.broadcast(T.reinterpret(a.vload([0], "uint8x4"), dtype="int32"), 16), dtype="int8x64"),
            b.vload([0, 0], "int8x64"), dtype="int32x16")


TensorIntrin.register(VNNI_INTRIN, _vnni_desc, _vnni_impl, override=True)


def int8_target(num_cores: int | None = None) -> "tvm.target.Target":
    """This CPU's target with AVX-512 VNNI enabled (``vpdpbusd``)."""
    t = cpu_target(num_cores)
    cfg = {k: v for k, v in t.export().items() if k in ("kind", "mcpu", "num-cores", "mtriple")}
    cfg["mcpu"] = cfg.get("mcpu") or "skylake-avx512"
    return tvm.target.Target({**cfg, "mattr": ["+avx512vnni"]})


# ---------------------------------------------------------------- quantization (host side, numpy)

def body_convs(n_blocks: int) -> list[str]:
    """State-dict prefixes of the body convs, in order (2 per block)."""
    return [f"body.{i}.body.{j}" for i in range(n_blocks) for j in (0, 2)]


def int8_convs(n_blocks: int) -> list[str]:
    """State-dict prefixes of every int8 conv, in order: the head, the body convs, the tail."""
    return ["head", *body_convs(n_blocks), "tail"]


def activation_ranges(wdsr, batches) -> dict[str, tuple[float, float]]:
    """Min and max of every int8 conv's input over ``batches`` (uint8 NHWC LR patches), fp32 model."""
    from ..models import fold_weight_norm

    return _ranges(fold_weight_norm(wdsr).eval(), batches)


def _ranges(plain, batches) -> dict[str, tuple[float, float]]:
    """:func:`activation_ranges` of a plain (weight norm folded) WDSR."""
    import torch

    from ..tensors import to_nchw

    ranges: dict[str, list[float]] = {}
    hooks = []
    for name in int8_convs(plain.config["n_blocks"]):
        def hook(_, inputs, output, name=name):
            x = inputs[0]
            lo, hi = float(x.min()), float(x.max())
            r = ranges.setdefault(name, [lo, hi])
            r[0], r[1] = min(r[0], lo), max(r[1], hi)
        hooks.append(plain.get_submodule(name).register_forward_hook(hook))
    try:
        with torch.no_grad():
            for b in batches:
                if not isinstance(b, np.ndarray) or b.dtype != np.uint8 or b.ndim != 4 or b.shape[-1] != 3:
                    raise CompileError("calibration batches must be uint8 NHWC LR patches (N, h, w, 3)")
                plain(torch.from_numpy(to_nchw(b)))
    finally:
        for h in hooks:
            h.remove()
    if len(ranges) != len(int8_convs(plain.config["n_blocks"])):
        raise CompileError("no calibration batches: the activation ranges need at least one")
    return {k: (v[0], v[1]) for k, v in ranges.items()}


def _activation_qparams(lo: float, hi: float) -> tuple[float, int]:
    lo, hi = min(lo, 0.0), max(hi, 0.0)  # zero must be exact (the border padding)
    scale = max(hi - lo, 1e-8) / 255.0
    return scale, int(np.clip(round(-lo / scale), 0, 255))


def quantize_unit(wdsr, batches, amx: bool = False) -> list[np.ndarray]:
    """The parameters the int8 functions take for one WDSR path, in their order (:func:`param_names`):
    per int8 conv (:func:`int8_convs`) the packed int8 weights ``(kh, kw, C/4, F/16, 16, 4)`` (C and F
    padded up with zero weights), the zero-point compensation (i32, per real output channel), the
    dequantization scale (f32, per output channel), the bias and ``[1/input scale, zero point]``;
    then the fp32 skip weights (HWIO) and bias. With ``amx`` (:func:`int8_module`'s ``amx`` build)
    every conv's weights are the AMX tiles of :func:`.amx.pack_weights` (flat), and
    the tail's and the skip's outputs are padded to 16 channels (zero weights)."""
    from ..models import fold_weight_norm

    plain = fold_weight_norm(wdsr).eval()
    check_architecture(plain.config)
    sd = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in plain.state_dict().items()}
    ranges = _ranges(plain, batches)
    hwio = lambda w: np.ascontiguousarray(w.transpose(2, 3, 1, 0))  # noqa: E731  OIHW -> HWIO
    out = []
    for name in int8_convs(plain.config["n_blocks"]):
        w = hwio(sd[f"{name}.weight"])  # (kh, kw, C, F)
        kh, kw, c, f = w.shape
        w_scale = np.maximum(np.abs(w).reshape(-1, f).max(0), 1e-12) / 127.0
        wq = np.clip(np.round(w / w_scale), -127, 127).astype(np.int8)
        s_in, zp = _activation_qparams(*ranges[name])
        cp, fp = -(-c // 4) * 4, -(-f // 16) * 16
        padded = np.zeros((kh, kw, cp, fp), np.int8)
        padded[:, :, :c, :f] = wq
        packed = np.ascontiguousarray(padded.reshape(kh, kw, cp // 4, 4, fp // 16, 16).transpose(0, 1, 2, 4, 5, 3))
        comp = (zp * wq.astype(np.int64).reshape(-1, f).sum(0)).astype(np.int32)
        deq, bias = (s_in * w_scale).astype(np.float32), sd[f"{name}.bias"]
        if amx:
            packed = pack_weights(packed).ravel()
            comp, deq, bias = (np.pad(v, (0, fp - f)) for v in (comp, deq, bias))  # whole 16-channel tiles
        out += [packed, comp, deq, bias, np.array([1.0 / s_in, zp], dtype=np.float32)]
    skip_w, skip_b = hwio(sd["skip.weight"]), sd["skip.bias"]
    if amx:  # the AMX tail adds all 16 channels of its tile: the skip conv computes them too (zero weights)
        pad = -(-skip_b.shape[0] // 16) * 16 - skip_b.shape[0]
        skip_w, skip_b = np.pad(skip_w, ((0, 0), (0, 0), (0, 0), (0, pad))), np.pad(skip_b, (0, pad))
    return out + [skip_w, skip_b]


def check_architecture(config: dict) -> None:
    """int8 body convs need channel counts the VNNI tile divides: ``n_feats`` and ``n_feats x
    expansion`` multiples of 16."""
    f, e = int(config["n_feats"]), int(config["n_feats"]) * int(config["expansion"])
    if f % 16 or e % 16:
        raise CompileError(f"the int8 build needs n_feats and n_feats x expansion in multiples of 16, got {f} and {e}")


def param_names(n_blocks: int) -> list[str]:
    names = []
    for name in int8_convs(n_blocks):
        names += [f"{name}.wq", f"{name}.comp", f"{name}.scale", f"{name}.b", f"{name}.aq"]
    return names + ["skip.w", "skip.b"]


# ---------------------------------------------------------------- TE computations (NHWC)

def _pad(x, k):
    """``x`` (NHWC) with a zero border of ``k // 2`` pixels."""
    n, h, w, c = (int(v) for v in x.shape)
    p = k // 2
    return te.compute((n, h + k - 1, w + k - 1, c), lambda b, y, xx, ch: tirx.if_then_else(
        tirx.all(y >= p, y < h + p, xx >= p, xx < w + p), x[b, y - p, xx - p, ch], tirx.const(0.0, x.dtype)), name="pad")


def conv_fp32(x, w, b):
    """Same-padded NHWC conv, HWIO weights, + bias (the skip conv)."""
    kh, kw, c, f = (int(v) for v in w.shape)
    n, h, wd, _ = (int(v) for v in x.shape)
    pad = _pad(x, kh)
    ry, rx, rc = te.reduce_axis((0, kh), "ry"), te.reduce_axis((0, kw), "rx"), te.reduce_axis((0, c), "rc")
    acc = te.compute((n, h, wd, f), lambda i, y, xx, o: te.sum(pad[i, y + ry, xx + rx, rc] * w[ry, rx, rc, o],
                                                               axis=[ry, rx, rc]), name="conv")
    return te.compute(acc.shape, lambda i, y, xx, o: acc[i, y, xx, o] + b[o], name="bias")


def _quantize(v, aq):
    """fp32 ``v`` -> uint8 with ``aq = [1/scale, zero point]`` (round half to even, clamped)."""
    q = te.round(v * aq[0]) + aq[1]
    return te.max(te.min(q, tirx.const(255.0, "float32")), tirx.const(0.0, "float32")).astype("uint8")


def conv_int8(x, wq, comp, scale, b, aq, relu=False, residual=None, res_scale=1.0, out_aq=None):
    """Same-padded NHWC conv of ``x`` — fp32, quantized to uint8 with ``aq = [1/scale, zero point]``,
    or uint8 already quantized with ``aq`` — with packed int8 weights ``(kh, kw, C/4, F/16, 16, 4)``
    (``x``'s channels and ``b``'s outputs padded up to them), i32 accumulation, fp32 output
    ``(acc - comp) * scale + b`` then ReLU, or ``residual + res_scale * that``; the output has
    ``b``'s channel count, and with ``out_aq`` it is quantized to uint8 for the next conv (whose
    input ``aq`` it is) as it is stored."""
    kh, kw, c4, f16, _, _ = (int(v) for v in wq.shape)
    n, h, wd, c = (int(v) for v in x.shape)
    f = int(b.shape[0])
    if not 4 * (c4 - 1) < c <= 4 * c4:
        raise CompileError(f"input has {c} channels, the packed weights {4 * c4}")
    if not 16 * (f16 - 1) < f <= 16 * f16:
        raise CompileError(f"{f} output channels, the packed weights {16 * f16}")
    quant = (lambda v: v) if x.dtype == "uint8" else (lambda v: _quantize(v, aq))  # noqa: E731

    # the i32 tile must not be cut by a predicate (tensorize refuses it): the accumulation runs over
    # a width rounded up to whole tiles, on zero-point padding, and the store keeps the real width;
    # padded input channels read the last real one (a vector never reads past the row) and are
    # replaced by the zero point, against zero weights
    tile = width_tile(wd, f16)
    wide = -(-wd // tile) * tile
    def padded(i, y, xx, ch):
        inside = [y >= kh // 2, y < h + kh // 2, xx >= kw // 2, xx < wd + kw // 2]
        if c < 4 * c4:
            inside, ch = inside + [ch < c], te.min(ch, c - 1)
        return tirx.if_then_else(tirx.all(*inside), quant(x[i, y - kh // 2, xx - kw // 2, ch]), aq[1].astype("uint8"))

    pad = te.compute((n, h + kh - 1, wide + kw - 1, 4 * c4), padded, name="qpad")
    ry, rx, rc = te.reduce_axis((0, kh), "ry"), te.reduce_axis((0, kw), "rx"), te.reduce_axis((0, 4 * c4), "rc")
    acc = te.compute((n, h, wide, f16 * 16), lambda i, y, xx, o: te.sum(
        pad[i, y + ry, xx + rx, rc].astype("int32") * wq[ry, rx, rc // 4, o // 16, o % 16, rc % 4].astype("int32"),
        axis=[ry, rx, rc]), name="qconv")

    def deq(i, y, xx, o):
        v = (acc[i, y, xx, o] - comp[o]).astype("float32") * scale[o] + b[o]
        if relu:
            v = te.max(v, tirx.const(0.0, "float32"))
        elif residual is not None:
            v = residual[i, y, xx, o] + v * tirx.const(res_scale, "float32")
        return v if out_aq is None else _quantize(v, out_aq)

    return te.compute((n, h, wd, f), deq, name="dequant")


def _input_from_uint8(x, mean):
    """uint8 NHWC patches -> fp32 in [0, 1] minus the model's input mean (``to_nchw``'s arithmetic)."""
    return te.compute(x.shape, lambda i, y, xx, ch: x[i, y, xx, ch].astype("float32") / tirx.const(255.0, "float32")
                      - tirx.const(mean, "float32"), name="from_uint8")


def _shuffle_to_uint8(y, scale, mean, colors=None):
    """Pixel shuffle + the input mean + ``to_uint8`` (clamp to [0, 1], x 255, round half to even):
    uint8 NHWC SR patches, what the client stitches (``colors``: fewer than ``y``'s channels allow,
    when they are padded)."""
    n, h, w, c = (int(v) for v in y.shape)
    colors = colors or c // (scale * scale)

    def value(i, yy, xx, ch):
        v = y[i, yy // scale, xx // scale, ch * scale * scale + (yy % scale) * scale + xx % scale] + tirx.const(mean, "float32")
        v = te.min(te.max(v, tirx.const(0.0, "float32")), tirx.const(1.0, "float32")) * tirx.const(255.0, "float32")
        return tirx.nearbyint(v).astype("uint8")

    return te.compute((n, h * scale, w * scale, colors), value, name="to_uint8")


def _relax_function(bb, config: dict, shape: StaticShape, amx: bool = False):
    n_blocks, feats, exp = int(config["n_blocks"]), int(config["n_feats"]), int(config["expansion"])
    scale, colors, mean = int(config["scale"]), int(config.get("n_colors", 3)), float(config.get("input_mean", 0.5))
    res_scale = float(config.get("res_scale", 1.0))
    out_ch = colors * scale * scale
    skip_ch = -(-out_ch // 16) * 16 if amx else out_ch  # the AMX tail's tile: all 16 channels
    f32 = lambda *s: relax.TensorType(s, "float32")  # noqa: E731
    sinfo = {"skip.w": f32(5, 5, colors, skip_ch), "skip.b": f32(skip_ch)}
    for i, name in enumerate(int8_convs(n_blocks)):
        c, f = ((colors, feats) if name == "head" else (feats, out_ch) if name == "tail"
                else (feats, feats * exp) if i % 2 == 1 else (feats * exp, feats))
        f = -(-f // 16) * 16 if amx else f
        wq = (3 * k_chunks(c) * 16 * f * 4,) if amx else (3, 3, -(-c // 4), -(-f // 16), 16, 4)
        sinfo.update({f"{name}.wq": relax.TensorType(wq, "int8"),
                      f"{name}.comp": relax.TensorType((f,), "int32"), f"{name}.scale": f32(f),
                      f"{name}.b": f32(f), f"{name}.aq": f32(2)})
    x = relax.Var("x", relax.TensorType((shape.batch, shape.h, shape.w, colors), "uint8"))
    params = {k: relax.Var(k.replace(".", "_"), sinfo[k]) for k in param_names(n_blocks)}
    q = lambda name: [params[f"{name}.{k}"] for k in ("wq", "comp", "scale", "b", "aq")]  # noqa: E731
    with bb.function(shape.name, [x, *params.values()], attrs={"num_input": 1}):
        with bb.dataflow():
            xin = bb.emit_te(_input_from_uint8, x, mean, primfunc_name_hint="from_uint8")
            n, hh, ww, wide = shape.batch, shape.h, shape.w, feats * exp
            if amx:  # hand-written TIR on AMX tiles, called as is (already scheduled)
                # every conv writes the next one's bordered uint8 input (amx.padded_layout): only the head pads its own
                narrow = lambda c: relax.TensorType((padded_layout(n, hh, ww, c)["size"],), "uint8")  # noqa: E731
                plain = relax.TensorType((n, hh, ww, feats), "float32")
                nxt = [f"body.{i}.body.0" for i in range(n_blocks)] + ["tail"]  # who reads the head's, each block's output
                head = bb.add_func(conv_primfunc(n, hh, ww, colors + (-colors) % 4, feats, c_in=colors, also_padded=True),
                                   "amx_conv_head")
                pair = bb.emit(relax.call_tir(head, [xin, *q("head"), params[f"{nxt[0]}.aq"]], [plain, narrow(feats)]))
                h, hq = bb.emit(relax.TupleGetItem(pair, 0)), bb.emit(relax.TupleGetItem(pair, 1))
                relu_conv = bb.add_func(conv_primfunc(n, hh, ww, feats, wide, relu=True, narrow_output=True,
                                                      padded_input=True, padded_output=True), "amx_conv_relu")
                res_conv = bb.add_func(conv_primfunc(n, hh, ww, wide, feats, residual=True, res_scale=res_scale,
                                                     padded_input=True, also_padded=True), "amx_conv_residual")
                for i in range(n_blocks):
                    a, b = (f"body.{i}.body.{j}" for j in (0, 2))
                    t = bb.emit(relax.call_tir(relu_conv, [hq, *q(a)[:4], params[f"{b}.aq"]], narrow(wide)))
                    pair = bb.emit(relax.call_tir(res_conv, [t, *q(b)[:4], h, params[f"{nxt[i + 1]}.aq"]], [plain, narrow(feats)]))
                    h, hq = bb.emit(relax.TupleGetItem(pair, 0)), bb.emit(relax.TupleGetItem(pair, 1))
            else:
                h = bb.emit_te(conv_int8, xin, *q("head"), primfunc_name_hint="qconv_head")
                for i in range(n_blocks):
                    a, b = (f"body.{i}.body.{j}" for j in (0, 2))
                    # the ReLU output feeds only the next conv: stored as its uint8 input
                    t = bb.emit_te(conv_int8, h, *q(a), relu=True, out_aq=params[f"{b}.aq"], primfunc_name_hint="qconv_relu")
                    h = bb.emit_te(conv_int8, t, *q(b), residual=h, res_scale=res_scale, primfunc_name_hint="qconv_residual")
            skip = bb.emit_te(conv_fp32, xin, params["skip.w"], params["skip.b"], primfunc_name_hint="conv_skip")
            if amx:
                tail = bb.add_func(conv_primfunc(n, hh, ww, feats, skip_ch, residual=True, padded_input=True), "amx_conv_tail")
                y = bb.emit(relax.call_tir(tail, [hq, *q("tail")[:4], skip], relax.TensorType((n, hh, ww, skip_ch), "float32")))
            else:
                y = bb.emit_te(conv_int8, h, *q("tail"), residual=skip, primfunc_name_hint="qconv_tail")
            out = bb.emit_output(bb.emit_te(_shuffle_to_uint8, y, scale, mean, colors, primfunc_name_hint="to_uint8"))
        bb.emit_func_output(out)


def int8_module(config: dict, shapes, more: list[tuple[dict, list]] | None = None, amx: bool = False) -> "tvm.IRModule":
    """One relax function per static shape of a WDSR path architecture (``config``: the path's
    ``model.config``), named :attr:`StaticShape.name`, taking ``x`` (uint8 NHWC LR patches, with
    context) and :func:`quantize_unit`'s parameters and returning uint8 NHWC SR patches (the
    client's own format: the byte <-> float conversions run compiled, not in NumPy); ``more``: further ``(config, shapes)`` in the same module
    (each architecture's shapes carry its index as ``path``). ``amx``: every int8 conv (head, body,
    tail) on AMX tiles (:mod:`.amx`; weights from ``quantize_unit(..., amx=True)``), each writing the
    next one's bordered uint8 input itself (only the head pads and quantizes its own); the skip conv,
    the byte conversions and the shuffle as without."""
    bb = relax.BlockBuilder()
    for cfg, shp in [(config, shapes), *(more or [])]:
        check_architecture(cfg)
        for s in sorted(set(shp)):
            _relax_function(bb, cfg, s, amx)
    return bb.get()


# ---------------------------------------------------------------- schedules

def schedule_conv_int8(sch, block, accumulators: int = ACCUMULATORS) -> None:
    """:func:`.schedules.schedule_conv_nhwc`'s structure for the u8 x i8 -> i32 conv block: the
    innermost (16 output channels x 4 input channels) tensorized to ``vpdpbusd``; the quantizing pad
    is its own parallel loop over input rows, written once as uint8 (~1/4 of the fp32 bytes)
    rather than recomputed per output row."""
    n, y, x, f, ry, rx, rc = sch.get_loops(block)
    width, channels = int(sch.get(x).extent), int(sch.get(f).extent)
    tw = width_tile(width, channels // 16, accumulators)
    xo, xi = sch.split(x, [None, tw])
    fo, fi = sch.split(f, [None, 16])
    co, ci = sch.split(rc, [None, 4])
    sch.reorder(n, y, xo, ry, rx, co, xi, fo, fi, ci)
    ny = sch.fuse(n, y)
    sch.parallel(ny)
    pads = list(sch.get_producers(block))
    acc = sch.cache_write(block, 0, "local")
    store = sch.get_consumers(acc)  # the dequantizing store, over the real width (the tile may overhang it)
    sch.reverse_compute_at(acc, xo)
    for c in store:
        sch.reverse_compute_at(c, xo)  # its own loop over the tile, predicated at the right edge
    sch.compute_inline(acc)  # the store reads the register tile directly
    for p in pads:  # quantized once per input row (a row band per output row would quantize each row 3x)
        pn, py, *_ = sch.get_loops(p)
        sch.parallel(sch.fuse(pn, py))
        vector_loop(sch, sch.get_loops(p)[-1])
    sch.unroll(fo)
    sch.unroll(xi)
    init = sch.decompose_reduction(block, ry)
    sch.tensorize(fi, VNNI_INTRIN)
    *_, _, ifi = sch.get_loops(init)
    sch.vectorize(ifi)
    for c in store:
        vector_loop(sch, sch.get_loops(c)[-1])


def schedule_shuffle(sch, block) -> None:
    """The pixel shuffle to uint8 (:func:`_shuffle_to_uint8`): one SR row per parallel task, the
    ``scale x colors`` bytes of each LR column unrolled (no index division per byte)."""
    i, yy, xx, ch = sch.get_loops(block)
    stmt = sch.get(block)
    scale = int(stmt.writes[0].source.shape[2]) // int(stmt.reads[0].source.shape[2])
    sch.parallel(sch.fuse(i, yy))
    _, dx = sch.split(xx, [None, scale])
    sch.unroll(dx)
    sch.unroll(ch)


def schedule_int8_module(mod: "tvm.IRModule") -> "tvm.IRModule":
    """int8 convs by :func:`schedule_conv_int8`, the pixel shuffle by :func:`schedule_shuffle`, every
    other kernel by :func:`.schedules.schedule_primfunc`."""
    own = {"qconv": schedule_conv_int8, "to_uint8": schedule_shuffle}  # function name prefix = block name
    out = tvm.IRModule(dict(mod.functions_items()), attrs=mod.attrs)
    for gv, func in mod.functions_items():
        if not isinstance(func, tvm.tirx.PrimFunc) or (func.attrs and func.attrs.get("tirx.is_scheduled")):
            continue  # hand-written (the AMX convs) or not a kernel
        block = next((b for b in own if gv.name_hint.startswith(b)), None)
        if block is None:
            out[gv] = schedule_primfunc(func)
            continue
        sch = tvm.s_tir.Schedule(func)
        own[block](sch, sch.get_sblock(block))
        out[gv] = sch.mod["main"].with_attr("tirx.is_scheduled", True)
    return out


def build_int8(config: dict, shapes, target=None, amx: bool = False):
    """Compile :func:`int8_module` for ``shapes`` (memory planned like the fp32 builds); returns the executable."""
    from .passes import compile_planned, plan_memory

    if amx:
        request_tile_permission()
    target = as_target(target) if target is not None else (amx_target() if amx else int8_target())
    mod = schedule_int8_module(int8_module(config, shapes, amx=amx))
    return compile_planned(plan_memory(mod, target), target)
