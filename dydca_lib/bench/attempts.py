"""Closing the gap to the best CPU runtime: TVM build variants of one Dy-DCA path, each timed
beside ONNX Runtime and PyTorch eager in the same fresh process (notebook 05's attempts table).

An :class:`Attempt` is one thing the TVM community does on x86 — more threads, more tuning
trials, weight prepacking, an NHWC layout, an AVX-512-aware target — applied to the same
workload: one WDSR path on a batch of patches of one shape. Each attempt runs in its own
process (``python -m dydca_lib.bench.attempts``) because TVM fixes its thread pool when it is
imported; that process also times the peers (ONNX Runtime with ``peer_threads`` intra-op threads,
PyTorch eager batched with ``peer_threads`` threads) on the same input, so each row's ratios come
from one process at one moment.

Attempts that need their own schedules read them from ``tuning/<target>/attempts/<name>/``
(committed, gzipped, made by :func:`tune_attempt`; ``attempt.json`` beside it records the trials
and seconds spent). Without that database such an attempt runs untuned and says so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..compiler.shapes import StaticShape  # TVM-free: measure() times the peers before tvm is imported


@dataclass(frozen=True)
class Attempt:
    """One TVM build variant. ``threads``: TVM_NUM_THREADS (``None``: the caller's threads);
    ``database``: ``"committed"`` (``tuning/<target>/``), ``None`` (untuned) or the name of a folder
    under ``tuning/<target>/attempts/``; ``layout``: ``"NHWC"`` converts every conv2d (weights
    OHWI) before fusion; ``prepack``: marks the weights layout-free for tuning (MetaSchedule may
    rewrite their layout) and lifts that rewrite out of the function (run once at load, as
    ``relax.pipeline.static_shape_tuning_pipeline(cpu_weight_prepack=True)`` does); ``mcpu``:
    ``"auto"`` (the CPU's own, e.g. skylake-avx512) or ``None`` (generic x86-64, no AVX-512)."""

    name: str
    what: str
    threads: int | None = None
    database: str | None = "committed"
    layout: str = "NCHW"
    prepack: bool = False
    mcpu: str | None = "auto"
    seed_committed: bool = False  # tune_attempt starts from the committed records (more trials on top)
    trials_scale: float = 1.0  # tune_attempt spends this many times the trials per kernel it is given
    manual: bool = False  # NHWC/HWIO convs with the hand-written schedule of compiler.schedules (no database)
    winograd: bool = False  # with manual: the 3x3 body convs by Winograd F(4x4, 3x3) (compiler.winograd)


ATTEMPTS: dict[str, Attempt] = {a.name: a for a in (
    Attempt("generic_target_untuned", "untuned, target without -mcpu (generic x86-64)", database=None, mcpu=None),
    Attempt("untuned", "untuned, -mcpu of this CPU", database=None),
    Attempt("committed_1_thread", "committed database, TVM's default thread count here (1)", threads=1),
    Attempt("committed", "committed database (the default build of notebooks 05/06)"),
    Attempt("more_trials", "committed records + 3x the trials per kernel on top", database="more_trials",
            seed_committed=True, trials_scale=3.0),
    Attempt("nhwc", "conv2d in NHWC/OHWI (ConvertLayout), tuned on its own", database="nhwc", layout="NHWC"),
    Attempt("prepack", "cpu_weight_prepack: layout-free weights, tuned on its own", database="prepack", prepack=True),
    Attempt("manual", "conv2d in NHWC/HWIO with a hand-written register-blocked schedule, no tuning",
            database=None, layout="NHWC", manual=True),
    Attempt("winograd", "manual, with the 3x3 body convs by Winograd F(4x4,3x3) (hand-written schedule), no tuning",
            database=None, layout="NHWC", manual=True, winograd=True),
)}


def attempt_dir(name: str, target=None) -> Path:
    from .. import compiler as C

    return C.tuning_dir(target) / "attempts" / name


def _target(att: Attempt):
    from .. import compiler as C

    return C.cpu_target(mcpu=att.mcpu)


def _static_module(wdsr, shape):
    """The static function of ``shape`` exactly as every build makes it
    (:func:`dydca_lib.compiler.static.static_module`), so the committed records match."""
    from .. import compiler as C

    shape = C.StaticShape(int(shape.path), int(shape.h), int(shape.w), int(shape.batch))
    mod, params, _ = C.static_module({shape.path: wdsr}, [shape])
    return mod, params[shape.path]


def lowered(att: Attempt, wdsr, shape, target=None):
    """The fused module of an attempt (what MetaSchedule tunes and the database is applied to)."""
    from tvm import relax

    from .. import compiler as C

    target = target or _target(att)
    mod, params = _static_module(wdsr, shape)
    if att.manual:
        from ..compiler.passes import hand_scheduled
        from ..compiler.schedules import to_nhwc

        return hand_scheduled(to_nhwc(mod, target), target, att.winograd), params
    if att.layout == "NHWC":
        with target:
            mod = relax.transform.ConvertLayout({"relax.nn.conv2d": ["NHWC", "OHWI"]})(mod)
    mod = C.fuse(mod, target)
    if att.prepack:
        fname = C.function_name(shape.path, shape.h, shape.w, shape.batch)
        mod[fname] = mod[fname].with_attr("num_input", 1)  # x is the input, the rest are weights
        with target:
            mod = relax.transform.AttachAttrLayoutFreeBuffers()(mod)
    return mod, params


def database_for(att: Attempt, target=None) -> Path | None:
    from .. import compiler as C

    if att.database is None:
        return None
    return C.tuning_dir(target) if att.database == "committed" else attempt_dir(att.database, target)


def build(att: Attempt, wdsr, shape):
    """Compile an attempt: ``(vm, function name, params ready to pass, info)``."""
    import tvm
    from tvm import relax

    from .. import compiler as C

    target = _target(att)
    mod, params = lowered(att, wdsr, shape, target)
    db = database_for(att, target)
    coverage = None
    if db is not None and C.has_database(db):
        coverage = C.database_coverage(mod, target, db)
        mod = C.apply_database(mod, target, db)
    fname = C.function_name(shape.path, shape.h, shape.w, shape.batch)
    if att.prepack:
        with target:
            mod = tvm.transform.Sequential([relax.transform.SplitLayoutRewritePreproc(),
                                            relax.transform.LiftTransformParams(),
                                            relax.transform.FoldConstant()])(mod)
    vm = C.load_vm(C.compile_planned(C.plan_memory(mod, target), target))
    if att.prepack:
        params = list(vm[f"{fname}_transform_params"](params))
    info = {"target": str(target), "kernels": None if coverage is None else len(coverage),
            "kernels_tuned": 0 if coverage is None else int(coverage.tuned.sum())}
    return vm, fname, params, info


def tune_attempt(att: Attempt, wdsr, shape, trials_per_task: int = 64, **tune_kwargs) -> dict:
    """Tune an attempt's kernels into ``tuning/<target>/attempts/<name>/`` (gzipped, committable)
    and record what it cost in ``attempt.json`` there."""
    import shutil

    from .. import compiler as C

    if att.database in (None, "committed"):
        raise ValueError(f"attempt {att.name!r} uses {'no' if att.database is None else 'the committed'} "
                         "database; only attempts with their own database are tuned here")
    target = _target(att)
    work = attempt_dir(att.database, target)
    work.mkdir(parents=True, exist_ok=True)
    if att.seed_committed and not C.has_database(work):
        for f in C.DB_FILES:
            shutil.copyfile(C.tuning_dir(target) / f"{f}.gz", work / f"{f}.gz")
    mod, _ = lowered(att, wdsr, shape, target)
    trials_per_task = max(1, round(trials_per_task * att.trials_scale))
    t0 = time.perf_counter()
    summary = C.extend_database(mod, target, work_dir=work, trials_per_task=trials_per_task,
                                only_missing=False, **tune_kwargs)
    record = {"attempt": att.name, "shape": list(map(int, (shape.path, shape.h, shape.w, shape.batch))),
              "trials_per_task": int(trials_per_task), "tasks": len(summary["tasks"]), "trials": summary["trials"],
              "seconds": round(time.perf_counter() - t0, 1), "strategy": summary.get("strategy"),
              "cost_model": summary.get("cost_model"), "target": str(target),
              "seeded_from_committed": att.seed_committed, "tuned_on": time.strftime("%Y-%m-%d")}
    (work / "attempt.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def _median_ms(fn, number: int, repeat: int, warmup: int = 2) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        runs.append((time.perf_counter() - t0) / number * 1e3)
    return float(np.median(runs)), float(np.std(runs))


def measure(att: Attempt, model_file: str, shape, peer_threads: int, number: int = 3, repeat: int = 7,
            seed: int = 0) -> dict:
    """One row: the attempt's TVM latency and the peers' on the same input, in this process
    (which must have imported tvm with the attempt's TVM_NUM_THREADS)."""
    import torch

    from ..models import build_model, fold_weight_norm
    from ..client.bundle import export_onnx

    saved = torch.load(model_file, weights_only=False)
    wdsr = build_model(saved["record"])
    wdsr.load_state_dict(saved["state"])
    wdsr.eval()
    rng = np.random.default_rng(seed)
    x = rng.random((shape.batch, 3, shape.h, shape.w), dtype=np.float32)
    row = {"attempt": att.name, "what": att.what, "peer_threads": peer_threads,
           "layout": att.layout, "prepack": att.prepack, "database": att.database or "none"}
    # The peers first, before tvm is even imported: with one TVM thread, TVM pins the calling
    # thread to a core, and the peers' thread pools would inherit the pin.
    assert "tvm" not in sys.modules, "measure() must run in a process that has not imported tvm"
    torch.set_num_threads(peer_threads)
    plain = fold_weight_norm(wdsr).eval()
    xt = torch.from_numpy(x)
    with torch.no_grad():
        ref = plain(xt).numpy()
        row["eager_ms"], row["eager_std_ms"] = _median_ms(lambda: plain(xt), number, repeat)

    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="dydca_attempt_") as tmp:
        onnx_file = Path(tmp) / "path.onnx"
        export_onnx(wdsr, onnx_file)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = peer_threads, 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(str(onnx_file), opts, providers=["CPUExecutionProvider"])
        row["ort_ms"], row["ort_std_ms"] = _median_ms(lambda: sess.run(None, {"x": x}), number, repeat)

    from .. import compiler as C

    row["tvm_threads"] = C.tvm_threads()
    t0 = time.perf_counter()
    vm, fname, params, info = build(att, wdsr, shape)
    row.update(info, build_s=round(time.perf_counter() - t0, 1))
    row["max_abs_diff_vs_torch"] = float(np.abs(C.run_vm(vm, fname, x, params) - ref).max())
    timing = C.time_vm(vm, fname, [x, *params], number=number, repeat=repeat, warmup=2)
    row.update(tvm_ms=timing["median_ms"], tvm_std_ms=timing["std_ms"])
    row["tvm_vs_ort"] = row["ort_ms"] / row["tvm_ms"]      # > 1: TVM faster
    row["tvm_vs_eager"] = row["eager_ms"] / row["tvm_ms"]
    return row


def run_attempts(names, wdsr, shape, threads: int, number: int = 3, repeat: int = 7, seed: int = 0,
                 progress: bool = True):
    """Each attempt in a fresh process; one row per attempt (:func:`measure`). An attempt that
    fails (e.g. a pass that rejects the module) gets a row with its error instead of numbers.
    ``tvm_vs_ort_all`` compares each row's TVM latency with the median ONNX Runtime latency over
    every process (one slow peer sample cannot flatter a row; ``tvm_vs_ort`` is the same-process ratio)."""
    import pandas as pd
    import torch
    from tqdm.auto import tqdm

    from ..models import model_record

    unknown = [n for n in names if n not in ATTEMPTS]
    if unknown:
        raise ValueError(f"unknown attempt(s) {unknown}; known: {list(ATTEMPTS)}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="dydca_attempts_") as tmp:
        model_file = Path(tmp) / "path.pt"
        torch.save({"record": model_record(wdsr), "state": wdsr.state_dict()}, model_file)
        for name in tqdm(names, desc="TVM attempts", disable=not progress):
            att = ATTEMPTS[name]
            env = {**os.environ, "TVM_NUM_THREADS": str(att.threads or threads)}
            spec = {"attempt": name, "model_file": str(model_file), "shape": [shape.path, shape.h, shape.w, shape.batch],
                    "peer_threads": threads, "number": number, "repeat": repeat, "seed": seed}
            proc = subprocess.run([sys.executable, "-m", "dydca_lib.bench.attempts", json.dumps(spec)], env=env,
                                  capture_output=True, text=True)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if proc.returncode == 0 and lines:
                rows.append(json.loads(lines[-1]))
            else:
                err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                rows.append({"attempt": name, "what": att.what, "error": err[:300]})
    table = pd.DataFrame(rows)
    if "ort_ms" in table and table.ort_ms.notna().any():
        table["tvm_vs_ort_all"] = float(table.ort_ms.median()) / table.tvm_ms
    return table


def main(argv=None) -> int:
    spec = json.loads((argv or sys.argv[1:])[0])
    shape = StaticShape(*spec["shape"])
    row = measure(ATTEMPTS[spec["attempt"]], spec["model_file"], shape, spec["peer_threads"],
                  spec["number"], spec["repeat"], spec["seed"])
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

__all__ = ["Attempt", "ATTEMPTS", "attempt_dir", "lowered", "database_for", "build", "tune_attempt", "measure",
           "run_attempts"]
