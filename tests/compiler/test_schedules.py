"""The hand-written NHWC convolution schedules (dydca_lib.compiler.schedules) on tiny WDSR paths:
tile choice, numerics against PyTorch at awkward shapes, the structure of the scheduled kernels."""

import numpy as np
import pytest
import torch

from dydca_lib import compiler as C
from dydca_lib.compiler import schedules as S
from dydca_lib.models import DynamicWDSR

import tvm  # noqa: E402  (after dydca_lib.compiler, which sets TVM_NUM_THREADS)

TOL = 1e-4


@pytest.mark.parametrize("width, lanes_per_pixel, want", [
    (24, 4, 6),    # 64 channels: 4 zmm per pixel, 6 pixels = 24 accumulators
    (24, 2, 12),   # 32 channels
    (44, 4, 4),    # 44 = 4 x 11: the largest divisor that fits
    (44, 2, 11),
    (7, 4, 6),     # no divisor >= 4 fits: a masked last tile instead of 1-pixel tiles
    (5, 1, 5),
    (3, 8, 3),
])
def test_width_tile(width, lanes_per_pixel, want):
    assert S.width_tile(width, lanes_per_pixel) == want


def test_vector_shape_follows_the_target():
    assert S.vector_shape(C.cpu_target(mcpu="skylake-avx512")) == (16, S.ACCUMULATORS)
    assert S.vector_shape(C.cpu_target(mcpu=None)) == (8, 12)
    assert S.vector_shape(C.cpu_target(mcpu="icelake-server")) == (16, S.ACCUMULATORS)  # AVX-512 without the name
    assert S.vector_shape(C.cpu_target(mcpu="haswell")) == (8, 12)


def dynamic_model(n_feats):
    torch.manual_seed(0)
    model = DynamicWDSR(scale=2, paths=[{"n_blocks": 2}, {"n_blocks": 1}], n_feats=n_feats, expansion=2)
    with torch.no_grad():  # make the residual branch matter (the default init is near-bicubic)
        for p in model.paths:
            p.tail.parametrizations.weight.original0.mul_(10.0)
    return model.eval()


def assert_matches_torch(build, model, shapes, seed=0):
    """The build's float output on random patches of every shape equals the model's in PyTorch."""
    rng = np.random.default_rng(seed)
    for s in shapes:
        x = rng.random((s.batch, 3, s.h, s.w), dtype=np.float32)
        with torch.no_grad():
            want = model(torch.from_numpy(x), s.path).numpy()
        np.testing.assert_allclose(build.forward(x, s.path), want, atol=TOL)


@pytest.mark.parametrize("n_feats", [4, 16])  # channels not a multiple of the vector width / 16 and 32
def test_manual_build_matches_torch(n_feats):
    model = dynamic_model(n_feats)
    shapes = [C.StaticShape(0, 6, 7, 2), C.StaticShape(1, 9, 12, 3)]  # a width with no tile >= 4 (7)
    build = C.CompiledDynamicSR(model, shapes, manual=True)
    assert build.kernels == "manual" and not build.tuned
    assert_matches_torch(build, model, shapes)


def test_every_kernel_is_scheduled_and_convs_keep_accumulators_local():
    model = dynamic_model(16)
    shape = C.StaticShape(0, 6, 8, 2)
    mod, _, _ = C.static_module({0: model.paths[0]}, [shape])
    target = C.cpu_target()
    fused = S.schedule_module(C.fuse(S.to_nhwc(mod, target), target), target)
    prims = {gv.name_hint: f for gv, f in fused.functions_items() if isinstance(f, tvm.tirx.PrimFunc)}
    assert prims and all(bool(f.attrs["tirx.is_scheduled"]) for f in prims.values())
    convs = [name for name in prims if "conv2d" in name]
    assert len(convs) >= 4  # head, body, tail, skip
    for name in convs:
        text = prims[name].script()
        assert 'scope="local"' in text, name  # the accumulator tile
        assert "T.parallel" in text and "T.vectorized" in text and "T.unroll" in text, name


def test_manual_and_tuned_are_exclusive():
    with pytest.raises(C.CompileError, match="choose one"):
        C.CompiledDynamicSR(dynamic_model(4), [C.StaticShape(0, 6, 7, 2)], manual=True, tuned=True)


def test_manual_build_for_a_cpu_without_avx512_matches_torch():
    model = dynamic_model(16)
    shape = C.StaticShape(0, 6, 9, 2)
    build = C.CompiledDynamicSR(model, [shape], manual=True, target=C.cpu_target(mcpu=None))  # 8-lane vectors
    assert_matches_torch(build, model, [shape], seed=1)
