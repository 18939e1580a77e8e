"""The AMX int8 body convs (dydca_lib.compiler.amx): weight packing and runtime support everywhere;
numerics, tile instructions, the tile-state permission and per-thread configuration on a CPU with AMX."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from dydca_lib import compiler as C
from dydca_lib.client.runtimes import unsupported_reason
from dydca_lib.compiler import amx as A
from dydca_lib.compiler import int8 as Q
from dydca_lib.models import fold_weight_norm
from dydca_lib.tensors import to_nchw, to_uint8
from tests.conftest import smooth_patches, tiny_wdsr

import tvm  # noqa: E402  (after dydca_lib.compiler, which sets TVM_NUM_THREADS)

needs_amx = pytest.mark.skipif(not A.has_amx_int8(), reason="needs a CPU with AMX int8 tiles")


def reference_conv(x, vnni, comp, scale, b, aq, *, relu=False, res=None, res_scale=1.0, out_aq=None):
    """NumPy: the same-padded 3x3 int8 conv the kernels compute (quantize, pad with the zero point,
    i32 sums, dequantize, bias, ReLU [requantize] or residual)."""
    n, h, w, c = x.shape
    q = x if x.dtype == np.uint8 else np.clip(np.round(x * aq[0]) + aq[1], 0, 255).astype(np.uint8)
    padded = np.full((n, h + 2, w + 2, c), int(aq[1]), np.int64)
    padded[:, 1:-1, 1:-1] = q
    kh, kw, c4, f16, _, _ = vnni.shape
    hwio = vnni.transpose(0, 1, 2, 5, 3, 4).reshape(kh, kw, 4 * c4, 16 * f16)[:, :, :c].astype(np.int64)
    acc = sum(padded[:, ry:ry + h, rx:rx + w] @ hwio[ry, rx] for ry in range(3) for rx in range(3))
    v = (acc - comp).astype(np.float32) * scale + b
    if relu:
        v = np.maximum(v, 0)
        return v if out_aq is None else np.clip(np.round(v * out_aq[0]) + out_aq[1], 0, 255).astype(np.uint8)
    return res + v * np.float32(res_scale)


def test_weights_pack_into_zero_padded_64_byte_k_chunks():
    rng = np.random.default_rng(0)
    for c, f in ((32, 64), (64, 32)):
        vnni = rng.integers(-127, 128, (3, 3, c // 4, f // 16, 16, 4)).astype(np.int8)
        tiles = A.pack_weights(vnni)
        assert tiles.shape == (3, A.k_chunks(c) * 16, f // 16, 16, 4)
        assert A.k_chunks(c) == {32: 2, 64: 3}[c]  # 3 x 32 = 96 bytes -> 2 chunks; 3 x 64 = 192 -> 3
        # row r of kernel row ry = k-quad r of (kernel column, channel), NHWC order; the rest zero
        assert np.array_equal(tiles[1, (2 * c) // 4 + 3], vnni[1, 2, 3])
        assert not tiles[:, 3 * c // 4:].any()
    with pytest.raises(C.CompileError, match="VNNI-packed"):
        A.pack_weights(np.zeros((3, 3, 8, 2, 16, 4), np.int32))


def test_amx_runtime_needs_amx_and_leaves_the_vnni_runtime_alone():
    epyc = {"avx512f", "avx512_vnni", "avx512_bf16"}
    assert "amx_int8" in unsupported_reason("tvm_amx_int8", epyc)
    assert unsupported_reason("tvm_int8", epyc) is None
    assert "amx_bf16" in unsupported_reason("tvm_amx_bf16", epyc)
    assert unsupported_reason("tvm_amx_int8", epyc | {"amx_tile", "amx_int8", "amx_bf16"}) is None
    assert not A.has_amx_int8(epyc) and A.has_amx_int8(epyc | {"amx_tile", "amx_int8"})
    with pytest.raises(C.CompileError, match="multiples of 16"):
        A.conv_primfunc(1, 4, 4, 32, 40)
    if not A.has_amx_int8():
        with pytest.raises(C.CompileError, match="no AMX tiles"):
            A.request_tile_permission()


@needs_amx
@pytest.mark.parametrize("n,h,w,c,f,kind", [(2, 7, 19, 32, 64, "relu_u8"), (2, 8, 16, 64, 32, "residual"),
                                            (1, 5, 33, 32, 64, "relu"), (1, 4, 16, 32, 16, "residual")])
def test_amx_conv_matches_numpy(n, h, w, c, f, kind):
    """Odd heights (a half-used row pair) and widths that are not whole 16-pixel tiles included."""
    A.request_tile_permission()
    rng = np.random.default_rng(1)
    x = (rng.integers(0, 256, (n, h, w, c)).astype(np.uint8) if kind == "residual"
         else (rng.random((n, h, w, c)) * 2 - 1).astype(np.float32))
    vnni = rng.integers(-127, 128, (3, 3, c // 4, f // 16, 16, 4)).astype(np.int8)
    comp = rng.integers(-1000, 1000, f).astype(np.int32)
    scale, b = (rng.random(f) * 1e-3).astype(np.float32), rng.random(f).astype(np.float32)
    aq, out_aq = np.array([100.0, 120.0], np.float32), np.array([2.0, 10.0], np.float32)
    res = rng.random((n, h, w, f)).astype(np.float32)
    func = A.conv_primfunc(n, h, w, c, f, relu=kind != "residual", residual=kind == "residual", res_scale=0.5,
                           narrow_input=kind == "residual", narrow_output=kind == "relu_u8")
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=A.amx_target())
    args = [x, A.pack_weights(vnni).ravel(), comp, scale, b, aq]
    args += [res] if kind == "residual" else [out_aq] if kind == "relu_u8" else []
    out = np.zeros((n, h, w, f), np.uint8 if kind == "relu_u8" else np.float32)
    tensors = [tvm.runtime.tensor(a) for a in [*args, out]]
    lib["main"](*tensors)
    want = reference_conv(x, vnni, comp, scale, b, aq, relu=kind != "residual", res=res if kind == "residual" else None,
                          res_scale=0.5, out_aq=out_aq if kind == "relu_u8" else None)
    got = tensors[-1].numpy()
    if kind == "relu_u8":
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1  # a rounding tie at most
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    asm = lib.mod.inspect_source("asm")
    assert asm.count("tdpbusd") >= 4 and "ldtilecfg" in asm and "tilerelease" in asm


def unpad(flat, n, h, w, c):
    """The interior of :func:`amx.padded_layout`'s flat buffer, NHWC, and its border values."""
    lay = A.padded_layout(n, h, w, c)
    full = flat.reshape(n, lay["ph"], lay["pw"], c)
    inside = np.zeros(full.shape[:3], bool)
    inside[:, 1:h + 1, 1:w + 1] = True
    return full[:, 1:h + 1, 1:w + 1], full[~inside]


@needs_amx
@pytest.mark.parametrize("n,h,w", [(2, 7, 19), (1, 8, 16)])
def test_fused_padding_chain_matches_numpy(n, h, w):
    """A ReLU conv that pads its own fp32 input and stores its uint8 output in the next conv's
    bordered layout, a residual conv that reads that layout and also stores its output narrowed for
    the conv after it, which reads it padded: the same numbers as the unfused reference, the border
    (and the slack the tiles read past it) at the zero point."""
    A.request_tile_permission()
    rng = np.random.default_rng(2)
    c, f = 32, 64
    x = (rng.random((n, h, w, c)) * 2 - 1).astype(np.float32)
    conv = {}
    for name, (ci, fo) in {"relu": (c, f), "res": (f, c), "next": (c, c)}.items():
        conv[name] = (rng.integers(-127, 128, (3, 3, ci // 4, fo // 16, 16, 4)).astype(np.int8),
                      rng.integers(-1000, 1000, fo).astype(np.int32), (rng.random(fo) * 1e-3).astype(np.float32),
                      rng.random(fo).astype(np.float32))
    aq, mid_aq, next_aq = (np.array(v, np.float32) for v in ([100.0, 120.0], [2.0, 10.0], [50.0, 130.0]))
    target = A.amx_target()

    def run(func, *args):
        lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=target)
        tensors = [tvm.runtime.tensor(a) for a in args]
        lib["main"](*tensors)
        return [t.numpy() for t in tensors]

    packed = lambda k: [A.pack_weights(conv[k][0]).ravel(), *conv[k][1:]]  # noqa: E731
    size = lambda ch: A.padded_layout(n, h, w, ch)["size"]  # noqa: E731
    t = run(A.conv_primfunc(n, h, w, c, f, relu=True, narrow_output=True, padded_output=True),
            x, *packed("relu"), aq, mid_aq, np.full(size(f), 7, np.uint8))[-1]
    t_in, t_border = unpad(t, n, h, w, f)
    want_t = reference_conv(x, *conv["relu"], aq, relu=True, out_aq=mid_aq)
    assert np.abs(t_in.astype(int) - want_t.astype(int)).max() <= 1 and (t_border == 10).all()
    res = rng.random((n, h, w, c)).astype(np.float32)
    *_, out, outp = run(A.conv_primfunc(n, h, w, f, c, residual=True, res_scale=0.5, padded_input=True, also_padded=True),
                        t, *packed("res"), res, next_aq, np.zeros((n, h, w, c), np.float32), np.full(size(c), 7, np.uint8))
    want = reference_conv(t_in, *conv["res"], mid_aq, res=res, res_scale=0.5)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-4)
    q_in, q_border = unpad(outp, n, h, w, c)
    assert np.abs(q_in.astype(int) - np.clip(np.round(out * 50.0) + 130.0, 0, 255)).max() <= 1 and (q_border == 130).all()
    *_, last = run(A.conv_primfunc(n, h, w, c, c, residual=True, padded_input=True),
                   outp, *packed("next"), res, np.zeros((n, h, w, c), np.float32))
    np.testing.assert_allclose(last, reference_conv(q_in, *conv["next"], next_aq, res=res), rtol=1e-5, atol=1e-4)
    with pytest.raises(C.CompileError, match="narrow_output"):
        A.conv_primfunc(n, h, w, c, f, relu=True, padded_output=True)


@needs_amx
def test_amx_path_matches_the_vnni_build_and_pytorch():
    w = tiny_wdsr(n_feats=32)
    shape = C.StaticShape(0, 10, 21, 3)
    calib = [smooth_patches(8, 10, 21, seed=1)]
    lr = smooth_patches(3, 10, 21, seed=2)
    outs = {}
    for amx in (False, True):
        params = [tvm.runtime.tensor(p) for p in Q.quantize_unit(w, calib, amx=amx)]
        vm = C.load_vm(Q.build_int8(w.config, [shape], amx=amx))
        got = vm[shape.name](tvm.runtime.tensor(lr), *params)
        outs[amx] = (got if hasattr(got, "numpy") else got[0]).numpy()
    with torch.no_grad():
        want = to_uint8(fold_weight_norm(w)(torch.from_numpy(to_nchw(lr))).numpy())
    assert np.abs(outs[True].astype(int) - outs[False].astype(int)).max() <= 1  # same arithmetic, other order
    assert np.abs(outs[True].astype(int) - want.astype(int)).max() <= 4  # int8 within quantization error
    assert np.abs(outs[True].astype(int) - want.astype(int)).mean() < 0.5


_CHILD = """
import os, sys
os.environ["TVM_NUM_THREADS"] = "2"
import numpy as np, tvm
from dydca_lib.compiler import amx as A
if sys.argv[1] == "ask":
    A.request_tile_permission()
n, h, w = 4, 16, 32
lib = tvm.compile(tvm.IRModule({"main": A.conv_primfunc(n, h, w, 64, 32, residual=True, narrow_input=True)
                                .with_attr("global_symbol", "main")}), target=A.amx_target(2))
x = np.ones((n, h, w, 64), np.uint8)
wq = np.ones(3 * A.k_chunks(64) * 16 * 32 * 4, np.int8)
args = [x, wq, np.zeros(32, np.int32), np.ones(32, np.float32), np.zeros(32, np.float32),
        np.array([1.0, 0.0], np.float32), np.zeros((n, h, w, 32), np.float32), np.zeros((n, h, w, 32), np.float32)]
t = [tvm.runtime.tensor(a) for a in args]
lib["main"](*t)
got = t[-1].numpy()
# interior pixels sum 9 taps x 64 channels of 1 x 1; a border pixel fewer (zero point 0): every row pair of
# every patch, on both threads, had its tile configuration
print("interior", int(got[:, 1:-1, 1:-1].min()), int(got[:, 1:-1, 1:-1].max()), "corner", int(got[0, 0, 0, 0]))
"""


@needs_amx
def test_tile_permission_and_per_thread_configuration_in_a_child_process():
    code = textwrap.dedent(_CHILD)
    ok = subprocess.run([sys.executable, "-c", code, "ask"], capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert ok.stdout.split() == ["interior", "576", "576", "corner", "256"]
    refused = subprocess.run([sys.executable, "-c", code, "skip"], capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0  # the first tile instruction without the permission: SIGILL


def test_bf16_bits_round_like_torch_and_pack_into_pairs():
    x = np.random.default_rng(3).standard_normal(1000).astype(np.float32)
    want = torch.from_numpy(x).bfloat16().view(torch.int16).numpy().view(np.uint16)
    assert np.array_equal(A.bf16_bits(x), want)
    w = np.random.default_rng(4).standard_normal((3, 3, 3, 12)).astype(np.float32)
    tiles = A.pack_bf16_weights(w, c_pad=4)
    assert tiles.shape == (3, 16, 1, 16, 2) and tiles.dtype == np.uint16  # 3 x 4 channels = 12 of 32 K values
    # pair r of kernel row ry = (column, channel) elements 2r, 2r+1 in NHWC order; padding is zero
    assert np.array_equal(tiles[2, 2, 0, :12, 1], A.bf16_bits(w[2, 1, 1]))  # k = 5 = column 1, channel 1
    assert not tiles[:, :, :, 12:].any() and not tiles[:, 6:].any() and not tiles[:, 1, :, :, 1].any()
    with pytest.raises(C.CompileError, match="even"):
        A.pack_bf16_weights(w, c_pad=3)


@needs_amx
@pytest.mark.parametrize("n,h,w,c,f,c_in,kind", [(2, 7, 19, 32, 64, 32, "relu_narrow"), (2, 8, 16, 64, 32, 64, "residual"),
                                                 (1, 5, 20, 4, 32, 3, "plain")])
def test_amx_bf16_conv_matches_numpy(n, h, w, c, f, c_in, kind):
    A.request_tile_permission()
    rng = np.random.default_rng(5)
    bf = lambda a: torch.from_numpy(np.ascontiguousarray(a, np.float32)).bfloat16().float().numpy()  # noqa: E731
    x = (rng.random((n, h, w, c_in)) * 2 - 1).astype(np.float32)
    wt = (rng.random((3, 3, c_in, f)) * 0.2 - 0.1).astype(np.float32)
    b, res = rng.random(f).astype(np.float32), rng.random((n, h, w, f)).astype(np.float32)
    func = A.conv_primfunc(n, h, w, c, f, relu=kind == "relu_narrow", residual=kind == "residual", res_scale=0.5,
                           narrow_input=kind == "residual", narrow_output=kind == "relu_narrow", precision="bf16",
                           c_in=c_in)
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=A.amx_target())
    args = [A.bf16_bits(x) if kind == "residual" else x, A.pack_bf16_weights(wt, c).ravel(), b]
    args += [res] if kind == "residual" else []
    out = np.zeros((n, h, w, f), np.uint16 if kind == "relu_narrow" else np.float32)
    tensors = [tvm.runtime.tensor(a) for a in [*args, out]]
    lib["main"](*tensors)
    got = tensors[-1].numpy()
    padded = np.zeros((n, h + 2, w + 2, c_in), np.float32)
    padded[:, 1:-1, 1:-1] = bf(x)
    acc = sum(padded[:, ry:ry + h, rx:rx + w] @ bf(wt)[ry, rx] for ry in range(3) for rx in range(3)) + b
    if kind == "relu_narrow":  # stored as the next conv's bf16 input
        np.testing.assert_array_equal(got, A.bf16_bits(np.maximum(acc, 0)))
    else:
        np.testing.assert_allclose(got, res + 0.5 * acc if kind == "residual" else acc, rtol=1e-5, atol=1e-5)
    assert "tdpbf16ps" in lib.mod.inspect_source("asm")


@needs_amx
def test_amx_bf16_path_is_closer_to_fp32_than_one_level():
    from dydca_lib.compiler import bf16

    w = tiny_wdsr(n_feats=32)
    shape = C.StaticShape(0, 10, 21, 3)
    lr = smooth_patches(3, 10, 21, seed=2)
    vm = C.load_vm(bf16.build_bf16(w.config, [shape]))
    got = vm[shape.name](tvm.runtime.tensor(lr), *[tvm.runtime.tensor(p) for p in bf16.pack_unit(w)])
    got = (got if hasattr(got, "numpy") else got[0]).numpy()
    with torch.no_grad():
        want = to_uint8(fold_weight_norm(w)(torch.from_numpy(to_nchw(lr))).numpy())
    d = np.abs(got.astype(int) - want.astype(int))
    assert got.shape == want.shape and d.max() <= 1 and d.mean() < 0.2
