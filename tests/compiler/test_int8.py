"""The int8 WDSR build (dydca_lib.compiler.int8) on tiny paths: quantized parameters, numerics
against the fp32 model, VNNI in the generated code. Needs a CPU with AVX-512 VNNI to run the code."""

import numpy as np
import pytest
import torch

from dydca_lib import compiler as C
from dydca_lib.compiler import int8 as Q
from dydca_lib.compiler import schedules as S
from dydca_lib.models import fold_weight_norm
from dydca_lib.runinfo import cpu_flags
from dydca_lib.tensors import to_nchw, to_uint8
from tests.conftest import smooth_patches as smooth, tiny_wdsr as tiny

import tvm  # noqa: E402  (after dydca_lib.compiler, which sets TVM_NUM_THREADS)

needs_vnni = pytest.mark.skipif("avx512_vnni" not in cpu_flags(), reason="the int8 kernels use AVX-512 VNNI")


def test_quantized_parameters_in_order_and_unpack_to_the_weights():
    w = tiny()
    params = Q.quantize_unit(w, [smooth(4, 10, 12)])
    names = Q.param_names(2)
    assert len(params) == len(names)
    by_name = dict(zip(names, params))
    assert by_name["body.0.body.0.wq"].dtype == np.int8 and by_name["body.0.body.0.wq"].shape == (3, 3, 4, 2, 16, 4)
    assert by_name["body.0.body.2.wq"].shape == (3, 3, 8, 1, 16, 4)
    assert by_name["body.1.body.0.comp"].dtype == np.int32 and by_name["skip.w"].shape == (5, 5, 3, 12)
    # the head's 3 input channels and the tail's 12 outputs are padded to whole VNNI groups with zero weights
    assert by_name["head.wq"].shape == (3, 3, 1, 1, 16, 4) and not by_name["head.wq"][:, :, :, :, :, 3].any()
    assert by_name["tail.wq"].shape == (3, 3, 4, 1, 16, 4) and not by_name["tail.wq"][:, :, :, :, 12:].any()
    assert by_name["tail.comp"].shape == by_name["tail.scale"].shape == by_name["tail.b"].shape == (12,)
    inv_scale, zp = by_name["body.0.body.2.aq"]
    assert zp == 0 and inv_scale > 0  # the second conv of a block reads a ReLU output: no negative range
    # unpack: (kh, kw, C/4, F/16, 16, 4) -> HWIO; dequantized it is the folded weight within half a step
    wq = by_name["body.0.body.0.wq"].transpose(0, 1, 2, 5, 3, 4).reshape(3, 3, 16, 32).astype(np.float32)
    w_scale = by_name["body.0.body.0.scale"] * by_name["body.0.body.0.aq"][0]  # (s_in * s_w) / s_in
    want = fold_weight_norm(w).body[0].body[0].weight.detach().numpy().transpose(2, 3, 1, 0)
    assert np.abs(wq * w_scale - want).max() <= 0.5 * w_scale.max() + 1e-7
    tq = by_name["tail.wq"].transpose(0, 1, 2, 5, 3, 4).reshape(3, 3, 16, 16)[..., :12].astype(np.float32)
    t_scale = by_name["tail.scale"] * by_name["tail.aq"][0]
    want = fold_weight_norm(w).tail.weight.detach().numpy().transpose(2, 3, 1, 0)
    assert np.abs(tq * t_scale - want).max() <= 0.5 * t_scale.max() + 1e-7


def test_architecture_and_calibration_errors():
    with pytest.raises(C.CompileError, match="multiples of 16"):
        Q.quantize_unit(tiny(n_feats=4), [smooth(2, 8, 8)])
    with pytest.raises(C.CompileError, match="uint8 NHWC"):
        Q.quantize_unit(tiny(), [np.zeros((2, 8, 8, 3), np.float32)])
    with pytest.raises(C.CompileError, match="at least one"):
        Q.quantize_unit(tiny(), [])


@needs_vnni
def test_int8_build_is_within_quantization_error_of_fp32():
    w = tiny()
    shape = C.StaticShape(0, 10, 12, 3)
    params = [tvm.runtime.tensor(p) for p in Q.quantize_unit(w, [smooth(8, 10, 12, seed=1)])]
    vm = C.load_vm(Q.build_int8(w.config, [shape]))
    lr = smooth(3, 10, 12, seed=2)
    got = vm[shape.name](tvm.runtime.tensor(lr), *params)
    got = (got if hasattr(got, "numpy") else got[0]).numpy()  # uint8 NHWC, as the client stitches it
    with torch.no_grad():
        want = to_uint8(fold_weight_norm(w)(torch.from_numpy(to_nchw(lr))).numpy())
    d = np.abs(got.astype(int) - want.astype(int))  # in 8-bit levels
    assert got.dtype == np.uint8 and got.shape == want.shape == (3, 20, 24, 3)
    assert d.mean() < 0.5 and d.max() <= 4


def test_int8_kernels_are_vnni_dot_products_on_register_tiles():
    w = tiny(n_feats=32)
    mod = Q.schedule_int8_module(Q.int8_module(w.config, [C.StaticShape(0, 12, 24, 2)]))
    name = next(gv.name_hint for gv, _ in mod.functions_items() if gv.name_hint.startswith("qconv_relu"))
    hot = S.hot_loop(mod[name], Q.int8_target(), op="vpdpbusd")
    assert hot["fma"] == hot["fma_zmm"] > 0 and hot["accumulators"] >= 16  # a tile of zmm accumulators
    assert hot["fma_per_load"] >= 2 and hot["loads"] >= hot["fma"] // 16  # the weight vectors are loads too
    for conv in ("qconv_head", "qconv_tail"):  # padded channels, still whole VNNI tiles
        name = next(gv.name_hint for gv, _ in mod.functions_items() if gv.name_hint.startswith(conv))
        hot = S.hot_loop(mod[name], Q.int8_target(), op="vpdpbusd")
        assert hot["fma"] == hot["fma_zmm"] >= 4 and hot["accumulators"] >= 8, (conv, hot)
