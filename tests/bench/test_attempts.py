"""TVM build variants of notebook 05's attempts table, on a tiny path."""

import json

import numpy as np
import pytest
import torch

from dydca_lib import compiler as C
from dydca_lib.bench import attempts as A
from dydca_lib.bench import figures as F
from dydca_lib.compiler import database
from dydca_lib.models import WDSR, fold_weight_norm

SHAPE = C.StaticShape(0, 8, 10, 2)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return WDSR(scale=2, n_blocks=1, n_feats=8, expansion=2).eval()


def _max_diff(att, wdsr):
    vm, fname, params, info = A.build(att, wdsr, SHAPE)
    x = np.random.default_rng(0).random((SHAPE.batch, 3, SHAPE.h, SHAPE.w), dtype=np.float32)
    with torch.no_grad():
        ref = fold_weight_norm(wdsr)(torch.from_numpy(x)).numpy()
    return float(np.abs(C.run_vm(vm, fname, x, params) - ref).max()), info


@pytest.mark.parametrize("name", ["untuned", "generic_target_untuned", "nhwc", "prepack", "manual", "winograd"])
def test_every_variant_computes_the_same_path(tiny, name, tmp_path, monkeypatch):
    monkeypatch.setattr(database, "TUNING_ROOT", tmp_path)  # no database anywhere: every variant runs untuned
    diff, info = _max_diff(A.ATTEMPTS[name], tiny)
    assert diff < 1e-4
    assert info["kernels_tuned"] == 0
    wants_mcpu = A.ATTEMPTS[name].mcpu is not None and C.has_avx512()  # "auto" names -mcpu only on AVX-512 CPUs
    assert ("mcpu" in info["target"]) == wants_mcpu


@pytest.mark.parametrize("name", ["prepack", "nhwc"])
def test_tuned_attempt_database_is_written_and_applied(tiny, name, tmp_path, monkeypatch):
    monkeypatch.setattr(database, "TUNING_ROOT", tmp_path / "tuning")
    monkeypatch.setenv("DYDCA_ROOT", str(tmp_path))
    record = A.tune_attempt(A.ATTEMPTS[name], tiny, SHAPE, trials_per_task=1, progress=False)
    folder = A.attempt_dir(name)
    assert folder.is_relative_to(tmp_path / "tuning")
    assert sorted(p.name for p in folder.iterdir()) == ["attempt.json", "database_tuning_record.json.gz",
                                                        "database_workload.json.gz"]
    assert json.loads((folder / "attempt.json").read_text())["trials_per_task"] == 1 == record["trials_per_task"]
    diff, info = _max_diff(A.ATTEMPTS[name], tiny)
    assert diff < 1e-4
    assert 0 < info["kernels_tuned"] <= info["kernels"]  # one random trial per kernel may fail to build


def test_attempts_without_their_own_database_are_not_tuned(tiny):
    with pytest.raises(ValueError, match="committed"):
        A.tune_attempt(A.ATTEMPTS["committed"], tiny, SHAPE)


def test_run_attempts_times_tvm_beside_the_peers_in_a_fresh_process(tiny):
    table = A.run_attempts(["untuned", "committed_1_thread"], tiny, SHAPE, threads=2, number=1, repeat=2, progress=False)
    assert table.tvm_threads.tolist() == [2, 1]
    row = table.iloc[0]
    assert "error" not in table or not isinstance(row.get("error"), str), row.get("error")
    assert row.peer_threads == 2
    for col in ("tvm_ms", "ort_ms", "eager_ms"):
        assert row[col] > 0
    assert row.tvm_vs_ort == pytest.approx(row.ort_ms / row.tvm_ms)
    assert row.tvm_vs_ort_all == pytest.approx(table.ort_ms.median() / row.tvm_ms)  # the peer over every process
    assert row.max_abs_diff_vs_torch < 1e-4
    fig = F.attempt_bars(table, "t")
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["untuned", "committed_1_thread"]
    assert len(ax.patches) == 2 * len(table)  # a bar vs ONNX Runtime and one vs eager per attempt


def test_unknown_attempt_is_an_error(tiny):
    with pytest.raises(ValueError, match="unknown attempt"):
        A.run_attempts(["turbo"], tiny, SHAPE, threads=1)
