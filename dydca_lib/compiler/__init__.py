"""The compiler half of Dy-DCA on a CPU, with Apache TVM 0.27 (Relax): the only package of
``dydca_lib`` that builds with TVM.

It may import the data and learning layers (``models``, ``paths``, ``runinfo``, ``io``,
``tensors``); nothing there imports it. Its modules, in pipeline order:

* :mod:`.target` — the ``llvm`` target of this CPU, its folder-safe name, thread counts;
* :mod:`.export` — one WDSR path -> ``torch.export`` -> Relax, and :func:`~.export.path_bounds`,
  the one rule for the symbolic bounds that tuning records depend on;
* :mod:`.shapes` — (TVM-free) every ``(path, h, w, batch bucket)`` a manifest needs, batch splits;
* :mod:`.passes` — the naive dynamic build ("compiler off"), static specialisation, fusion
  (``relax.get_pipeline("zero")``), ``StaticPlanBlockMemory``, kernel and memory reports;
* :mod:`.database` — MetaSchedule databases under ``tuning/<target-name>/``: apply, coverage, prune;
* :mod:`.tuning` — MetaSchedule tuning into a database, extending a committed one;
* :mod:`.microkernel` — the primitives the hand-written schedules share (accumulator tile, width
  tile, vectorising, epilogue fusion, the target's vector shape);
* :mod:`.schedules` — the hand-written register-blocked NHWC convolution schedule (``manual=True``
  builds: no database), the one dispatch over the hand-written schedules
  (:func:`~.schedules.schedule_primfunc`), and :func:`~.schedules.hot_loop`, the instruction mix of
  generated code;
* :mod:`.winograd` — the 3x3 body convolutions by Winograd F(4x4, 3x3) with their own hand-written
  schedule (``winograd=True``, with ``manual``);
* :mod:`.int8` — int8 WDSR paths: body convs u8 x i8 on AVX-512 VNNI in the same schedule,
  quantized parameters from calibration patches;
* :mod:`.amx` — the 3x3 convs on Intel AMX tiles (``tdpbusd`` int8, ``tdpbf16ps`` bf16), hand-written
  TensorIR calling the tile instructions; the int8 build's ``amx=True`` (every trunk conv);
* :mod:`.bf16` — bf16 WDSR paths on AMX tiles (the trunk in bf16, the skip conv fp32);
* :mod:`.static` — :func:`~.static.static_module`, the one function that builds the static
  module for (paths, shapes);
* :mod:`.library` — the deployable shared library of notebook 06's client (cached by everything
  that determines its code, the compiler's own source included);
* :mod:`.runtime` — :class:`~.runtime.CompiledDynamicSR` (an upscaler) and TVM timing.

Every public name is also reachable here (``from dydca_lib import compiler as C; C.fuse``),
imported on first use, so ``dydca_lib.compiler.shapes`` stays importable without TVM.

Threads: TVM's runtime thread pool reads ``TVM_NUM_THREADS`` once, when tvm is imported; without
it TVM runs on half the logical CPUs (1 thread on a 2-core machine). **Set ``TVM_NUM_THREADS``
before anything imports tvm**; if it is unset when this package is imported first, it is set to
the number of CPUs this process may use. Record :func:`~.target.runtime_info` with every timing.
"""

from __future__ import annotations

import importlib
import os
import sys


def _affinity_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# Read once, before TVM runs anything: TVM's thread pool pins the calling thread to one core, so a
# later sched_getaffinity would say 1 and cpu_target() would name another target (and database).
_CPUS_AT_IMPORT = _affinity_cpus()


def available_cpus() -> int:
    """The CPUs this process could use when the compiler was first imported."""
    return _CPUS_AT_IMPORT


if "tvm" not in sys.modules:
    os.environ.setdefault("TVM_NUM_THREADS", str(available_cpus()))


class CompileError(ValueError):
    """Bad input to the compiler layer (shapes, bounds, paths); the message says what to change."""


class UntunedWarning(UserWarning):
    """A static build runs untuned kernels because the target has no tuning database."""


_EXPORTS = {
    "target": ("has_avx512", "target_features", "cpu_target", "as_target", "target_name", "tvm_threads", "runtime_info"),
    "export": ("export_path", "symbolic_dims", "path_bounds"),
    "shapes": ("DEFAULT_MAX_BATCH", "StaticShape", "function_name", "batch_buckets", "batch_cap", "split_batch",
               "static_shapes"),
    "passes": ("compile_dynamic", "load_vm", "run_vm", "specialize", "legalize", "fuse", "plan_memory",
               "compile_planned", "kernel_calls", "memory_estimate", "StaticProgram", "optimize"),
    "database": ("TUNING_ROOT", "DB_FILES", "tuning_dir", "readable_database", "compress_database", "has_database",
                 "apply_database", "database_coverage", "prune_database", "extract_tasks"),
    "tuning": ("tune", "extend_database", "clear_in_process_modules"),
    "static": ("static_module",),
    "library": ("tvm_library",),
    "runtime": ("CompiledDynamicSR", "time_vm"),
}
_MODULE_OF = {name: mod for mod, names in _EXPORTS.items() for name in names}


def __getattr__(name: str):
    if name in _MODULE_OF:
        return getattr(importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_MODULE_OF))


__all__ = ["CompileError", "UntunedWarning", "available_cpus", *_MODULE_OF]
