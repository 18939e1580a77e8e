"""The TVM target of this CPU: ``llvm`` with its ``-mcpu`` and core count, its folder-safe name
(the tuning database is keyed by it) and what to record beside a timing."""

from __future__ import annotations

import os
import re

import tvm

from . import CompileError, available_cpus
from ..runinfo import cpu_flags, cpu_model


def has_avx512() -> bool:
    """Whether this CPU reports the ``avx512f`` flag in /proc/cpuinfo (False where unreadable)."""
    return "avx512f" in cpu_flags()


def target_features(target=None) -> frozenset:
    """The CPU features LLVM compiles a target for (from its mcpu and mattr: ``avx512f``,
    ``avx512vnni``, ``amx-int8`` ...): what generated code may use, whatever the CPU's name."""
    from tvm.target import codegen

    return frozenset(str(f) for f in codegen.llvm_get_cpu_features(as_target(target)))


def cpu_target(num_cores: int | None = None, mcpu: str | None = "auto") -> "tvm.target.Target":
    """An ``llvm`` target built from a dict (TVM 0.27 rejects CLI strings).

    ``num_cores`` (required by MetaSchedule) defaults to the CPUs this process may use;
    ``mcpu="auto"`` picks ``skylake-avx512`` when the CPU has AVX-512F and leaves it out otherwise.
    """
    spec = {"kind": "llvm", "num-cores": int(num_cores or available_cpus())}
    if mcpu == "auto":
        mcpu = "skylake-avx512" if has_avx512() else None
    if mcpu:
        spec["mcpu"] = mcpu
    return tvm.target.Target(spec)


def as_target(target) -> "tvm.target.Target":
    if target is None:
        return cpu_target()
    if isinstance(target, tvm.target.Target):
        return target
    if isinstance(target, str):
        raise CompileError(f"target {target!r}: TVM 0.27 wants a dict such as "
                           "{'kind': 'llvm', 'num-cores': 2}, or use cpu_target()")
    return tvm.target.Target(dict(target))


def target_name(target=None) -> str:
    """A folder-safe name for a target: kind, mcpu (or 'generic') and cores, e.g. ``llvm-skylake-avx512-2c``."""
    t = as_target(target)
    attrs = t.attrs
    mcpu = str(attrs["mcpu"]) if "mcpu" in attrs and str(attrs["mcpu"]) else "generic"
    cores = int(attrs["num-cores"]) if "num-cores" in attrs else 0
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{t.kind.name}-{mcpu}-{cores}c")


def tvm_threads() -> int:
    """Threads in TVM's runtime pool (``runtime.NumThreads``; fixed when tvm was imported)."""
    return int(tvm.get_global_func("runtime.NumThreads")())


def runtime_info(target=None) -> dict:
    """What to record beside a timing: thread counts, target string, CPU, versions."""
    import torch

    return {"tvm_threads": tvm_threads(), "TVM_NUM_THREADS": os.environ.get("TVM_NUM_THREADS"),
            "torch_threads": torch.get_num_threads(), "target": str(as_target(target)),
            "cpu": cpu_model(), "cpus_available": available_cpus(), "tvm": tvm.__version__,
            "torch": torch.__version__}

