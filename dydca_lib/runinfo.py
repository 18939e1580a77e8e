"""What every ``metrics.json`` records: parameters, git commit, package versions, seed, machine."""

from __future__ import annotations

import hashlib
import os
import platform
import random
import subprocess
from importlib import metadata

from .paths import PACKAGE_DIR, project_root

TRACKED_PACKAGES = (
    "torch", "apache-tvm", "apache-tvm-ffi", "numpy", "pandas", "opencv-python-headless",
    "scikit-image", "scikit-learn", "matplotlib", "seaborn", "papermill",
)


def code_version() -> str:
    """A hash of the library's code, subpackages included (:func:`dydca_lib.codeversion.code_version`:
    comments and docstrings do not count); any change of code re-runs every notebook."""
    from .codeversion import code_version as package_version

    return package_version()


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and (if imported or installed) torch with one number."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch
    except ImportError:
        return
    torch.manual_seed(seed)


def git_commit() -> str:
    """The checkout's commit, with ``-dirty`` if tracked files differ; ``unknown`` outside git."""
    root = project_root()
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def package_versions(names=TRACKED_PACKAGES) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where unreadable, e.g. not Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def has_amx_int8(flags=None) -> bool:
    """Whether the CPU reports AMX int8 tiles (``amx_tile`` and ``amx_int8``; ``flags``: /proc/cpuinfo's when omitted)."""
    return {"amx_tile", "amx_int8"} <= set(cpu_flags() if flags is None else flags)


_ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA, _SYS_ARCH_PRCTL = 0x1023, 18, 158  # x86-64 Linux


def request_amx_tile_permission() -> None:
    """Ask Linux for this process's AMX tile state (Linux >= 5.16 hands it out only on request;
    without it the first tile instruction is a SIGILL). Idempotent; every thread inherits it.
    Raises ``RuntimeError`` where the CPU has no AMX or the kernel refuses."""
    import ctypes

    if "amx_tile" not in cpu_flags():
        raise RuntimeError("this CPU has no AMX tiles (amx_tile missing in /proc/cpuinfo)")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(_SYS_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA) != 0:
        raise RuntimeError(f"arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA) failed (errno {ctypes.get_errno()}): "
                           "the kernel does not give this process the AMX tile state")


# the reduced-precision features a CPU client or trainer can use (recorded with every run)
PRECISION_FLAGS = ("avx512f", "avx512_bf16", "avx512_vnni", "avx512_fp16", "amx_bf16", "amx_int8")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    return {
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "cpu_precision_flags": [f for f in PRECISION_FLAGS if f in cpu_flags()],
        "platform": platform.platform(),
        "threads_env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "TVM_NUM_THREADS")},
    }


def run_metadata(params: dict, seed: int, **extra) -> dict:
    """The dictionary every notebook writes as ``metrics.json`` (plus its own results in ``extra``)."""
    return {
        "parameters": dict(params),
        "seed": seed,
        "git_commit": git_commit(),
        "versions": package_versions(),
        "machine": machine_info(),
        **extra,
    }
