"""bf16 WDSR paths compiled by TVM on AMX tiles (``tdpbf16ps``): the trunk's convolutions (head,
residual body, tail) in bf16 with fp32 accumulation, the 5x5 skip conv, the sum and the pixel
shuffle fp32 — the split of PyTorch's bf16 client (:class:`dydca_lib.models.ReducedTrunk`).

Every trunk conv is :func:`.amx.conv_primfunc` with ``precision="bf16"``: activations are rounded to
bf16 (nearest even, as ``torch.Tensor.bfloat16``) while the zero border is padded, or stored as bf16
by the ReLU conv that feeds the next conv; the residual stream stays fp32 (PyTorch's bf16 trunk
rounds it after every block). bf16 values travel as their bits in uint16, so TVM's bf16
legalization (which would turn them into fp32 compute before codegen) never sees them. A kernel row
of C bf16 channels is ``3 x C x 2`` bytes: whole 64-byte K chunks for C = 32 and 64 (no padding, but
half the int8 tile rate); the head's 3 channels are padded to 4, the tail's 12 outputs and the skip's
to 16, with zeros. No calibration: the weights are rounded, nothing is quantized.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from .amx import amx_target, conv_primfunc, k_chunks, pack_bf16_weights, request_tile_permission
from .int8 import _input_from_uint8, _shuffle_to_uint8, conv_fp32, int8_convs, schedule_int8_module
from .shapes import StaticShape


def _padded_channels(name: str, colors: int, feats: int, wide: int, out_ch: int) -> tuple[int, int, int]:
    """(input channels as stored, padded input channels, padded output channels) of trunk conv ``name``."""
    if name == "head":
        return colors, colors + colors % 2, feats
    if name == "tail":
        return feats, feats, -(-out_ch // 16) * 16
    return (feats, feats, wide) if name.endswith(".0") else (wide, wide, feats)


def param_names(n_blocks: int) -> list[str]:
    return [f"{name}.{k}" for name in int8_convs(n_blocks) for k in ("w", "b")] + ["skip.w", "skip.b"]


def pack_unit(wdsr) -> list[np.ndarray]:
    """The parameters the bf16 functions take for one WDSR path, in :func:`param_names` order: per trunk
    conv its bf16 weight tiles (uint16 bits, flat) and fp32 bias padded to whole 16-channel tiles; then
    the fp32 skip weights (HWIO) and bias, padded to 16 outputs."""
    from ..models import fold_weight_norm

    plain = fold_weight_norm(wdsr).eval()
    cfg = plain.config
    sd = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in plain.state_dict().items()}
    hwio = lambda w: np.ascontiguousarray(w.transpose(2, 3, 1, 0))  # noqa: E731  OIHW -> HWIO
    colors, feats = int(cfg.get("n_colors", 3)), int(cfg["n_feats"])
    wide, out_ch = feats * int(cfg["expansion"]), colors * int(cfg["scale"]) ** 2
    out = []
    for name in int8_convs(int(cfg["n_blocks"])):
        _, c_pad, f_pad = _padded_channels(name, colors, feats, wide, out_ch)
        w = hwio(sd[f"{name}.weight"])
        out += [pack_bf16_weights(w, c_pad).ravel(), np.pad(sd[f"{name}.bias"], (0, f_pad - w.shape[-1]))]
    skip_w, skip_b = hwio(sd["skip.weight"]), sd["skip.bias"]
    pad = -(-out_ch // 16) * 16 - out_ch
    return out + [np.pad(skip_w, ((0, 0), (0, 0), (0, 0), (0, pad))), np.pad(skip_b, (0, pad))]


def _relax_function(bb, config: dict, shape: StaticShape) -> None:
    n_blocks, feats, exp = int(config["n_blocks"]), int(config["n_feats"]), int(config["expansion"])
    scale, colors, mean = int(config["scale"]), int(config.get("n_colors", 3)), float(config.get("input_mean", 0.5))
    res_scale = float(config.get("res_scale", 1.0))
    wide, out_ch = feats * exp, colors * scale * scale
    out16 = -(-out_ch // 16) * 16
    n, h, w = shape.batch, shape.h, shape.w
    sinfo = {"skip.w": relax.TensorType((5, 5, colors, out16), "float32"), "skip.b": relax.TensorType((out16,), "float32")}
    for name in int8_convs(n_blocks):
        _, c_pad, f_pad = _padded_channels(name, colors, feats, wide, out_ch)
        sinfo[f"{name}.w"] = relax.TensorType((3 * k_chunks(c_pad, 3, 2) * 16 * f_pad * 2,), "uint16")
        sinfo[f"{name}.b"] = relax.TensorType((f_pad,), "float32")
    x = relax.Var("x", relax.TensorType((n, h, w, colors), "uint8"))
    params = {k: relax.Var(k.replace(".", "_"), sinfo[k]) for k in param_names(n_blocks)}
    f32 = lambda c: relax.TensorType((n, h, w, c), "float32")  # noqa: E731
    kernels = {  # one per role; every block's convs share them
        "head": bb.add_func(conv_primfunc(n, h, w, colors + colors % 2, feats, precision="bf16", c_in=colors), "amx_bf16_head"),
        "relu": bb.add_func(conv_primfunc(n, h, w, feats, wide, relu=True, narrow_output=True, precision="bf16"),
                            "amx_bf16_relu"),
        "residual": bb.add_func(conv_primfunc(n, h, w, wide, feats, residual=True, res_scale=res_scale,
                                              narrow_input=True, precision="bf16"), "amx_bf16_residual"),
        "tail": bb.add_func(conv_primfunc(n, h, w, feats, out16, residual=True, precision="bf16"), "amx_bf16_tail")}
    p = lambda name: [params[f"{name}.w"], params[f"{name}.b"]]  # noqa: E731
    with bb.function(shape.name, [x, *params.values()], attrs={"num_input": 1}):
        with bb.dataflow():
            xin = bb.emit_te(_input_from_uint8, x, mean, primfunc_name_hint="from_uint8")
            y = bb.emit(relax.call_tir(kernels["head"], [xin, *p("head")], f32(feats)))
            for i in range(n_blocks):
                a, b = (f"body.{i}.body.{j}" for j in (0, 2))
                t = bb.emit(relax.call_tir(kernels["relu"], [y, *p(a)], relax.TensorType((n, h, w, wide), "uint16")))
                y = bb.emit(relax.call_tir(kernels["residual"], [t, *p(b), y], f32(feats)))
            skip = bb.emit_te(conv_fp32, xin, params["skip.w"], params["skip.b"], primfunc_name_hint="conv_skip")
            y = bb.emit(relax.call_tir(kernels["tail"], [y, *p("tail"), skip], f32(out16)))
            out = bb.emit_output(bb.emit_te(_shuffle_to_uint8, y, scale, mean, colors, primfunc_name_hint="to_uint8"))
        bb.emit_func_output(out)


def bf16_module(config: dict, shapes, more: list[tuple[dict, list]] | None = None) -> "tvm.IRModule":
    """One relax function per static shape (as :func:`.int8.int8_module`), taking ``x`` (uint8 NHWC LR
    patches) and :func:`pack_unit`'s parameters, returning uint8 NHWC SR patches; the AMX kernels come
    scheduled, the rest (input conversion, skip conv, pixel shuffle) is scheduled by
    :func:`.int8.schedule_int8_module`."""
    bb = relax.BlockBuilder()
    for cfg, shp in [(config, shapes), *(more or [])]:
        for s in sorted(set(shp)):
            _relax_function(bb, cfg, s)
    return schedule_int8_module(bb.get())


def build_bf16(config: dict, shapes, target=None):
    """Compile :func:`bf16_module` for ``shapes`` (memory planned like the other builds); returns the executable."""
    from .passes import compile_planned, plan_memory
    from .target import as_target

    request_tile_permission()
    target = as_target(target) if target is not None else amx_target()
    return compile_planned(plan_memory(bf16_module(config, shapes), target), target)
