"""MetaSchedule tuning of a fused module's kernels into a database (:func:`tune`), and adding
new kernels to a committed database (:func:`extend_database`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import tvm

from . import CompileError
from .database import (DB_FILES, compress_database, database_coverage, extract_tasks, has_database,
                       prune_database, readable_database, tuning_dir)
from .target import as_target, target_name, tvm_threads


def _progress_callback(total: int, desc: str):
    from tqdm.auto import tqdm
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback

    @derived_object
    class Progress(PyMeasureCallback):
        def __init__(self):
            super().__init__()
            self.bar = tqdm(total=total, desc=desc, unit="trial")
            self.errors = 0

        def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results):
            failed = [r for r in list(runner_results) + list(builder_results) if r.error_msg]
            self.errors += len(failed)
            self.bar.update(len(measure_candidates))
            self.bar.set_postfix(task=int(task_id), errors=self.errors, refresh=False)

    return Progress()


def _tensor_intrin_importer():
    """A function that imports ``tvm.s_tir.tensor_intrin`` in seconds instead of a minute or more.

    MetaSchedule's CPU schedule rules and its ``default_build`` import ``tvm.s_tir.tensor_intrin``,
    which parses ~500 TVMScript PrimFuncs; each ``@T.prim_func`` calls ``inspect.stack()``, and
    during an import the stack holds ``<frozen importlib...>`` frames for which
    ``inspect.getmodule`` scans all of ``sys.modules``: 50-80 s on a busy 2-core machine, paid
    again by every popen builder worker (LocalBuilder starts a fresh pool per batch, so builds hit
    its 30 s timeout). While importing, this swaps ``inspect.stack`` for an equivalent that reads
    source lines with ``linecache`` and skips the module lookup (~3 s). Defined as a closure so
    that cloudpickle ships it by value to popen workers (as their ``initializer``) without
    importing this module there.
    """

    def import_tensor_intrin() -> None:
        import inspect
        import linecache
        import sys

        if "tvm.s_tir.tensor_intrin" in sys.modules:
            return

        def fast_stack(context: int = 1):
            frame, out = sys._getframe(1), []
            while frame is not None:
                fn, ln = frame.f_code.co_filename, frame.f_lineno
                line = linecache.getline(fn, ln) if context > 0 and not fn.startswith("<") else ""
                out.append(inspect.FrameInfo(frame, fn, ln, frame.f_code.co_name, [line] if line else None,
                                             0 if line else None))
                frame = frame.f_back
            return out

        original, inspect.stack = inspect.stack, fast_stack
        try:
            import tvm.s_tir.tensor_intrin  # noqa: F401
        finally:
            inspect.stack = original

    return import_tensor_intrin


_IN_PROCESS_MODULES: dict[str, object] = {}


def _in_process_builder_runner():
    """A MetaSchedule builder and runner that work in this process (no popen workers).

    The builder compiles each candidate with MetaSchedule's own ``default_build`` and keeps the
    runtime module in memory (no export to a tarball, no re-link at load); the runner times it
    with MetaSchedule's own evaluator. Faster on a busy 2-core machine, but a crashing candidate
    takes the tuning process down with it, and a hanging one has no timeout.
    """
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
    from tvm.s_tir.meta_schedule.builder.local_builder import default_build
    from tvm.s_tir.meta_schedule.runner import EvaluatorConfig, PyRunner
    from tvm.s_tir.meta_schedule.runner.local_runner import LocalRunnerFuture
    from tvm.s_tir.meta_schedule.runner.utils import alloc_argument_common, run_evaluator_common
    import tvm.contrib.random  # noqa: F401  (registers random_fill_for_measure)

    @derived_object
    class InProcessBuilder(PyBuilder):
        def build(self, build_inputs):
            results = []
            for inp in build_inputs:
                try:
                    with warnings.catch_warnings():  # MetaSchedule's own build calls the deprecated tvm.build
                        warnings.filterwarnings("ignore", message="build is deprecated", category=DeprecationWarning)
                        rt_mod = default_build(inp.mod, inp.target, None)
                except Exception as e:  # noqa: BLE001 - reported to MetaSchedule as a failed build
                    results.append(BuilderResult(None, f"InProcessBuilder: {e}"))
                    continue
                path = os.path.join(tempfile.mkdtemp(prefix="dydca_ms_"), "in_process")  # removed by MetaSchedule
                _IN_PROCESS_MODULES[path] = rt_mod
                results.append(BuilderResult(path, None))
            return results

    @derived_object
    class InProcessRunner(PyRunner):
        def __init__(self, evaluator_config=None):
            super().__init__()
            self.config = EvaluatorConfig._normalized(evaluator_config)
            self.fill = tvm.get_global_func("tvm.contrib.random.random_fill_for_measure")

        def run(self, runner_inputs):
            futures = []
            for inp in runner_inputs:
                try:
                    rt_mod = _IN_PROCESS_MODULES.pop(str(inp.artifact_path))
                    dev = tvm.runtime.device(str(inp.device_type), 0)
                    args = alloc_argument_common(self.fill, dev, [a.as_json() for a in inp.args_info], 1)
                    futures.append(LocalRunnerFuture(res=run_evaluator_common(rt_mod, dev, self.config, args)))
                except Exception as e:  # noqa: BLE001
                    futures.append(LocalRunnerFuture(error_message=f"InProcessRunner: {e}"))
            return futures

    return InProcessBuilder(), InProcessRunner()


@contextlib.contextmanager
def _nameable_ms_handlers():
    """MetaSchedule's logger set-up lists the meta_schedule logger's handlers by name and fails
    on an unnamed one (pytest's log capture adds such handlers from the second tuning run of a
    process on); they are detached while MetaSchedule configures its loggers, then put back."""
    import logging

    logger = logging.getLogger("tvm.s_tir.meta_schedule")
    unnamed = [h for h in logger.handlers if h.get_name() is None]
    for h in unnamed:
        logger.removeHandler(h)
    try:
        yield
    finally:
        for h in unnamed:
            logger.addHandler(h)


def tune(fused_mod: "tvm.IRModule", target=None, work_dir: str | Path | None = None, trials: int = 64,
         trials_per_task: int | None = None, trials_per_iter: int = 16, workers: str = "in_process",
         cost_model: str = "auto", strategy: str = "auto", seed: int = 0, progress: bool = True,
         log_dir: str | Path | None = None, only_missing: bool = False) -> dict:
    """MetaSchedule over the distinct kernels of a fused module (:func:`fuse`/:func:`optimize`).

    ``trials``: the global budget (measured candidates over all tasks); ``trials_per_task``
    caps one task (default: an even share). ``workers``: ``"in_process"`` (default; see
    :func:`_in_process_builder_runner`) or ``"popen"`` (MetaSchedule's LocalBuilder and
    LocalRunner: child processes, with timeouts, crash-safe). Measured on the busy 2-core machine
    (load ~5), 20 trials over 10 tasks of a tiny path, replay-trace: 0.5 s/trial in process vs
    6.4 s/trial with popen workers (which only work at all thanks to
    :func:`_tensor_intrin_importer`). ``cost_model``: ``"auto"`` = XGBoost when installed (it is
    not a dependency of this project), else ``"random"``. ``strategy``: ``"auto"`` =
    ``"evolutionary"`` with XGBoost, else ``"replay-trace"`` (random sampling of the design space):
    evolutionary search ranks thousands of candidates per round with the cost model, which cost
    ~18 s per task on the busy 2-core machine and buys nothing with a random model. Records go
    to the JSON database in ``work_dir`` (default :func:`tuning_dir`; appended to if it exists;
    :func:`prune_database` then keeps the best per kernel). MetaSchedule's per-task logs (MBs) go
    to ``log_dir`` (default: a new temporary folder, so a committed database folder stays clean).
    A tqdm bar counts trials (and failed builds/runs). ``only_missing``: tune only the kernels
    ``work_dir`` has no record for (what :func:`extend_database` uses for new shapes).

    Returns a summary: tasks (name, weight), trials, seconds, work_dir, logs, cost model, workers.
    """
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.relax_integration import extracted_tasks_to_tune_contexts

    if trials < 1:
        raise CompileError(f"trials must be >= 1, got {trials}")
    if workers not in ("in_process", "popen"):
        raise CompileError(f"workers must be 'popen' or 'in_process', got {workers!r}")
    target = as_target(target)
    work_dir = Path(work_dir) if work_dir is not None else tuning_dir(target)
    work_dir.mkdir(parents=True, exist_ok=True)
    _tensor_intrin_importer()()  # before the schedule rules import it the slow way
    tasks = extract_tasks(fused_mod, target)
    if not tasks:
        raise CompileError("no kernels to tune in this module (fuse it first)")
    if only_missing and has_database(work_dir):
        covered = database_coverage(fused_mod, target, work_dir).tuned.to_numpy()
        tasks = [t for t, done in zip(tasks, covered) if not done]
        if not tasks:
            return {"work_dir": str(work_dir), "target": str(target), "tasks": [], "trials": 0, "seconds": 0.0}
    per_task = trials_per_task or max(1, -(-trials // len(tasks)))
    if cost_model == "auto":
        try:
            import xgboost  # noqa: F401
            cost_model = "xgb"
        except ImportError:
            cost_model = "random"
    if strategy == "auto":
        strategy = "evolutionary" if cost_model == "xgb" else "replay-trace"
    cores = int(target.attrs["num-cores"])
    log_dir = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="dydca_tune_logs_"))
    log_dir.mkdir(parents=True, exist_ok=True)
    with _nameable_ms_handlers():
        contexts, weights = extracted_tasks_to_tune_contexts(tasks, str(log_dir), strategy=strategy, seed=seed,
                                                             num_threads=cores)
    if workers == "popen":
        builder = ms.builder.LocalBuilder(max_workers=cores, initializer=_tensor_intrin_importer())
        runner = ms.runner.LocalRunner()
    else:
        builder, runner = _in_process_builder_runner()
    callbacks = list(ms.MeasureCallback.create("default"))
    bar = _progress_callback(min(trials, per_task * len(tasks)), f"tune {target_name(target)}") if progress else None
    if bar is not None:
        callbacks.append(bar)
    t0 = time.perf_counter()
    try:
        ms.tune_tasks(tasks=contexts, task_weights=weights, work_dir=str(log_dir), max_trials_global=int(trials),
                      max_trials_per_task=int(per_task), num_trials_per_iter=int(trials_per_iter),
                      builder=builder, runner=runner, database=ms.database.JSONDatabase(work_dir=str(work_dir)),
                      cost_model=cost_model if cost_model == "xgb" else ms.CostModel.create(cost_model),
                      measure_callbacks=callbacks)
    finally:
        if bar is not None:
            bar.bar.close()
        if workers == "in_process":
            clear_in_process_modules()
    return {"work_dir": str(work_dir), "logs": str(log_dir), "target": str(target), "tasks": [(t.task_name, int(t.weight)) for t in tasks],
            "trials": int(trials), "trials_per_task": int(per_task), "seconds": time.perf_counter() - t0,
            "cost_model": cost_model, "strategy": strategy, "workers": workers, "tvm_threads": tvm_threads()}


def extend_database(fused_mod: "tvm.IRModule", target=None, work_dir: str | Path | None = None,
                    trials_per_task: int = 32, trials: int | None = None, only_missing: bool = True,
                    **tune_kwargs) -> dict:
    """Tune a fused module's kernels into a committed (gzipped) database and keep it committable.

    The records of ``work_dir`` (default :func:`tuning_dir`) are copied to a scratch folder,
    :func:`tune` adds up to ``trials_per_task`` trials per kernel there (``trials`` in all, default
    enough for every kernel; by default only for kernels without a record: new shapes), :func:`prune_database` keeps the best record per kernel, and the
    result replaces ``work_dir``'s files gzipped (:func:`compress_database`). Returns the tuning
    summary plus the record counts.
    """
    target = as_target(target)
    work_dir = Path(work_dir) if work_dir is not None else tuning_dir(target)
    with tempfile.TemporaryDirectory(prefix="dydca_extend_db_") as tmp:
        scratch = Path(tmp) / "db"
        scratch.mkdir()
        if has_database(work_dir):
            src = readable_database(work_dir)
            for f in DB_FILES:
                shutil.copyfile(src / f, scratch / f)
        budget = trials or max(1, trials_per_task * len(extract_tasks(fused_mod, target)))
        summary = tune(fused_mod, target, work_dir=scratch, trials=budget,
                       trials_per_task=trials_per_task, only_missing=only_missing, **tune_kwargs)
        if not summary["tasks"]:
            return {**summary, "work_dir": str(work_dir)}
        summary["pruned"] = prune_database(scratch)
        work_dir.mkdir(parents=True, exist_ok=True)
        compress_database(scratch)
        for f in DB_FILES:
            shutil.copyfile(scratch / f"{f}.gz", work_dir / f".{f}.gz.tmp")
            os.replace(work_dir / f".{f}.gz.tmp", work_dir / f"{f}.gz")
            (work_dir / f).unlink(missing_ok=True)  # a plain copy would shadow the new gzipped records
    readable_database(work_dir)  # unpack the new records now
    return {**summary, "work_dir": str(work_dir)}



def clear_in_process_modules() -> None:
    """Drop runtime modules an interrupted in-process tuning left behind (and their temp folders)."""
    for path in list(_IN_PROCESS_MODULES):
        _IN_PROCESS_MODULES.pop(path, None)
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)

