"""Winograd F(4x4, 3x3) body convolutions (dydca_lib.compiler.winograd): the transform against
PyTorch at awkward sizes, which convs it replaces, and whole builds against PyTorch."""

import numpy as np
import pytest
import torch

from dydca_lib import compiler as C
from dydca_lib.compiler import schedules as S
from dydca_lib.compiler import winograd as W

import tvm  # noqa: E402  (after dydca_lib.compiler, which sets TVM_NUM_THREADS)
from tvm import te  # noqa: E402

from .test_schedules import assert_matches_torch, dynamic_model

TOL = 1e-4


def torch_conv(x, w):
    """NHWC x HWIO, zero border 1, in PyTorch."""
    y = torch.nn.functional.conv2d(torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(w).permute(3, 2, 0, 1), padding=1)
    return y.permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("n, h, w, c, f", [(2, 4, 4, 16, 32), (1, 9, 6, 32, 16), (3, 5, 11, 16, 16)])
def test_transform_matches_a_direct_convolution(n, h, w, c, f):
    """One exact tile, and sizes whose last tile row/column overhangs the picture."""
    x = te.placeholder((n, h, w, c), name="x")
    wt = te.placeholder((3, 3, c, f), name="w")
    func = te.create_prim_func([x, wt, W.winograd_conv(x, wt)])
    sch = tvm.s_tir.Schedule(func)
    W.schedule_winograd(sch)
    target = C.cpu_target()
    ex = tvm.compile(tvm.IRModule({"main": sch.mod["main"]}), target=target)
    rng = np.random.default_rng(0)
    xn = rng.standard_normal((n, h, w, c)).astype(np.float32)
    wn = (0.1 * rng.standard_normal((3, 3, c, f))).astype(np.float32)
    out = tvm.runtime.tensor(np.zeros((n, h, w, f), np.float32))
    ex["main"](tvm.runtime.tensor(xn), tvm.runtime.tensor(wn), out)
    np.testing.assert_allclose(out.numpy(), torch_conv(xn, wn), atol=TOL)


def test_only_whole_vector_3x3_convs_are_replaced():
    model = dynamic_model(16)  # head 3->16, body 16<->32, tail 16->12, skip 5x5 3->12
    shape = C.StaticShape(0, 6, 8, 2)
    mod, _, _ = C.static_module({0: model.paths[0]}, [shape])
    target = C.cpu_target()
    legal = W.legalize(S.to_nhwc(mod, target), target)
    calls = C.kernel_calls(legal)[shape.name]
    assert sum(n.startswith("conv2d_winograd") for n in calls) == 4  # 2 blocks x 2 body convs
    assert sum(n.startswith("conv2d") and "winograd" not in n for n in calls) == 3  # head, tail, skip direct


def test_winograd_build_matches_torch_and_fuses_the_epilogue():
    model = dynamic_model(16)
    shapes = [C.StaticShape(0, 6, 7, 2), C.StaticShape(1, 9, 12, 3)]
    build = C.CompiledDynamicSR(model, shapes, manual=True, winograd=True)
    assert build.kernels == "winograd" and build.winograd
    kernels = [k for ks in build.report.kernels for k in ks]
    assert any("winograd" in k and "relu" in k for k in kernels)  # bias + ReLU in the Winograd store
    assert any("winograd" in k and "multiply" in k for k in kernels)  # the residual too
    assert_matches_torch(build, model, shapes)


def test_winograd_build_for_a_cpu_without_avx512_matches_torch():
    model = dynamic_model(8)  # 8-lane vectors: body convs 8 <-> 16 qualify
    shape = C.StaticShape(0, 6, 9, 2)
    build = C.CompiledDynamicSR(model, [shape], manual=True, winograd=True, target=C.cpu_target(mcpu=None))
    assert any("winograd" in k for k in build.report.kernels.iloc[0])
    assert_matches_torch(build, model, [shape], seed=1)


def test_winograd_needs_the_hand_written_schedules():
    with pytest.raises(C.CompileError, match="manual=True"):
        C.CompiledDynamicSR(dynamic_model(16), [C.StaticShape(0, 6, 7, 2)], winograd=True)


def test_weights_of_other_shapes_are_refused():
    x = te.placeholder((1, 4, 4, 16), name="x")
    with pytest.raises(ValueError, match="3x3"):
        W.winograd_conv(x, te.placeholder((5, 5, 16, 16), name="w"))
