"""One rule for export bounds and one function for the static module: every build (notebook 05's
CompiledDynamicSR, notebook 06's client library, the attempts) makes the same functions, so tuned
records match in all of them; and the shape planning a client needs imports without TVM."""

import subprocess
import sys

import pytest
import torch
import tvm

from dydca_lib import compiler as C
from dydca_lib.bench import attempts as A
from dydca_lib.models import DynamicWDSR, WDSR


def test_path_bounds():
    shapes = [C.StaticShape(0, 8, 10, 1), C.StaticShape(0, 12, 6, 4)]
    assert C.path_bounds(shapes) == {"batch": (1, 4), "h": (2, 12), "w": (2, 10)}
    assert C.path_bounds(shapes[:1])["batch"] == (1, 2)  # a dynamic batch needs room for 2
    with pytest.raises(C.CompileError, match="no shapes"):
        C.path_bounds([])


def test_every_build_makes_the_same_static_function():
    torch.manual_seed(0)
    model = DynamicWDSR(scale=2, paths=[{"n_blocks": 1}, {"n_blocks": 0}], n_feats=4, expansion=2).eval()
    shape = C.StaticShape(1, 8, 10, 2)
    build = C.CompiledDynamicSR(model, [shape, C.StaticShape(0, 6, 6, 1)])
    attempt_mod, _ = A._static_module(model.paths[1], shape)
    name = shape.name
    tvm.ir.assert_structural_equal(build.static[name], attempt_mod[name])
    static, params, symbolic = C.static_module(dict(enumerate(model.paths)), [shape])
    assert list(params) == list(symbolic) == [1]
    tvm.ir.assert_structural_equal(static[name], build.static[name])


def test_static_module_needs_a_network_per_path():
    with pytest.raises(C.CompileError, match="no network"):
        C.static_module({0: WDSR(scale=2, n_blocks=0, n_feats=4)}, [C.StaticShape(3, 8, 8, 1)])


def test_shapes_import_without_tvm():
    code = ("import sys\nfrom dydca_lib.compiler.shapes import split_batch, static_shapes\n"
            "assert 'tvm' not in sys.modules, sorted(m for m in sys.modules if m.startswith('tvm'))\n"
            "assert split_batch(19, [1, 2, 4, 8, 16]) == [(16, 16), (2, 2), (1, 1)]\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_unknown_compiler_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'fusee'"):
        C.fusee  # noqa: B018


def test_architectures_take_folded_units_too():
    """CaFM's per-chunk networks come with weight norm folded in; they share one architecture."""
    from dydca_lib.compiler.library import architectures
    from dydca_lib.models import CaFMWDSR

    torch.manual_seed(0)
    cafm = CaFMWDSR(scale=2, n_chunks=2, n_blocks=1, n_feats=4).eval()
    with torch.no_grad():
        cafm.mod_scale.uniform_(0.5, 1.5)
    units = {c: cafm.chunk_network(c) for c in range(2)}
    dyn, arch_of = architectures(units, scale=2)
    assert arch_of == {0: 0, 1: 0}
    x = torch.rand(1, 3, 6, 7)
    with torch.no_grad():
        assert torch.allclose(dyn(x, 0), cafm(x, 0), atol=1e-5)
