"""Peak memory of a client configuration, each in a fresh process (notebook 06's memory table).

NumPy only at the top: the child process of an ONNX Runtime or TVM configuration imports
:func:`_child_main` from here and never imports PyTorch (TVM's runtime is loaded with
``TVM_USE_RUNTIME_LIB=1``, the deployment configuration; ``tvm_ffi`` would otherwise import torch).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ..client.bundle import bundle_bytes
from ..client.loop import Client
from ..client.plan import Workload


def memory_table(configs: list, folder: Path, threads: int, machine_info: dict, frames: int = 1,
                 resolutions=None, progress: bool = True):
    """Peak RSS of each configuration (at ``resolutions``, default all) in its own fresh process
    (:func:`measure_memory`), with the RSS after the interpreter, the runtime import and the model
    load, the resident weights and bundle bytes."""
    import pandas as pd
    from tqdm.auto import tqdm

    rows, specs = [], {}
    todo = [c for c in configs if resolutions is None or c.resolution in resolutions]
    for c in tqdm(todo, desc="memory (fresh processes)", disable=not progress):
        key = (c.key, c.resolution)
        if key not in specs:
            specs[key] = c.workload.save(Path(folder) / f"workload-{c.key}-{len(specs):02d}")
        r = measure_memory(c.bundle, specs[key], threads, c.switching, frames)
        units = sorted(c.units)
        resident = (1 if c.switching else len(units)) * float(np.mean([c.bundle["units"][str(u)]["weight_bytes"] for u in units]))
        mib = 2.0 ** 20
        rows.append({"method": c.method, "runtime": c.runtime, "resolution": c.resolution, "frames_run": frames,
                     "peak_rss_mib": r["peak_rss_bytes"] / mib, "rss_start_mib": r["rss_start_bytes"] / mib,
                     "rss_runtime_mib": r["rss_runtime_bytes"] / mib, "rss_loaded_mib": r["rss_loaded_bytes"] / mib,
                     "above_runtime_mib": (r["peak_rss_bytes"] - r["rss_runtime_bytes"]) / mib,
                     "resident_weight_kib": resident / 1024, "bundle_kib": bundle_bytes(c.bundle) / 1024,
                     "torch_in_process": r["torch_imported"], "process_s": r["wall_s"]})
    df = pd.DataFrame(rows)
    return df.assign(cpu=machine_info["cpu"], cores=machine_info["cores"], threads=machine_info["threads"])


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # pragma: no cover - not Linux
        import psutil

        return psutil.Process().memory_info().rss


def _peak_rss_bytes() -> int:
    """This process's peak RSS: ``VmHWM`` of ``/proc/self/status``.

    Not ``getrusage(RUSAGE_SELF).ru_maxrss``: Linux carries the parent's high-water mark into a
    child across fork + exec (a child of a 2 GB Jupyter kernel reports >= 2 GB), while ``VmHWM``
    belongs to the child's own address space. ``ru_maxrss`` is the fallback where /proc is missing.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r) * (1 if sys.platform == "darwin" else 1024)


_PEAK_SNIPPET = """
import json as _j
def _peak():
    try:
        for _l in open('/proc/self/status'):
            if _l.startswith('VmHWM:'):
                return int(_l.split()[1]) * 1024
    except OSError:
        pass
    import resource as _r, sys as _s
    return _r.getrusage(_r.RUSAGE_SELF).ru_maxrss * (1 if _s.platform == 'darwin' else 1024)
print(_j.dumps({'peak_rss_bytes': _peak()}))
"""


def fresh_process(code: str, env: dict | None = None, timeout: float = 900.0) -> dict:
    """Run ``code`` in a fresh ``python -c`` process and return the JSON objects it printed (one
    per stdout line starting with ``{``, merged), plus ``peak_rss_bytes`` (the child's own peak
    RSS, ``VmHWM``; see :func:`_peak_rss_bytes`) measured as its last statement, and ``wall_s``."""
    snippet = code + "\n" + _PEAK_SNIPPET
    full_env = {**os.environ, **(env or {})}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, env=full_env,
                          timeout=timeout, cwd=str(Path(__file__).resolve().parents[2]))
    if proc.returncode != 0:
        raise RuntimeError(f"child process failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    out = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            try:
                out.update(json.loads(line))
            except json.JSONDecodeError:
                pass
    out["wall_s"] = time.perf_counter() - t0
    return out


def runtime_module(runtime: str) -> str:
    """The package a client of ``runtime`` imports: ``torch``, ``onnxruntime`` or ``tvm``
    (``torch_batched_bf16`` -> ``torch``, ``onnxruntime_int8`` -> ``onnxruntime``)."""
    from ..client.runtimes import runtime as runtime_record

    return runtime_record(runtime).package


def _child_main(spec_file: str) -> None:
    """The memory child: import the runtime, load the bundle, run the workload; print RSS figures."""
    spec = json.loads(Path(spec_file).read_text())
    rss = {"rss_start_bytes": _rss_bytes()}
    import importlib

    importlib.import_module(runtime_module(spec["bundle"]["runtime"]))
    rss["rss_runtime_bytes"] = _rss_bytes()
    workload = Workload.load(spec["workload"])
    client = Client(spec["bundle"], workload, spec["threads"], spec["switching"])
    if spec["switching"]:  # the first frame's model(s), as a switching client holds them
        for u in np.unique(workload.plans[workload.order[0]].path):
            client.engine.load(int(u))
    rss["rss_loaded_bytes"] = _rss_bytes()
    for i in workload.order[:max(1, int(spec["frames"]))]:
        client.frame(i)
    rss["peak_rss_bytes"] = _peak_rss_bytes()
    rss["torch_imported"] = bool(sys.modules.get("torch"))
    print(json.dumps(rss))


def measure_memory(bundle: dict, workload_spec: dict, threads: int, switching: bool, frames: int = 1,
                   folder: Path | None = None) -> dict:
    """Peak RSS of one configuration in a fresh process (:func:`fresh_process`): the runtime imported,
    the bundle loaded, the first ``frames`` frames of the workload run (a switching client loads
    the next chunk's model when a frame needs it). Also the RSS after the bare interpreter
    (+NumPy), after importing the runtime and after loading the units. ONNX Runtime and TVM children
    run without PyTorch (TVM: runtime library only)."""
    folder = Path(folder or bundle["dir"])
    spec_file = folder / f"memory-spec-{bundle['runtime']}.json"
    spec_file.write_text(json.dumps({"bundle": bundle, "workload": workload_spec, "threads": int(threads),
                                     "switching": bool(switching), "frames": int(frames)}))
    rt = bundle["runtime"]
    env = {"TVM_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    prelude = ""
    if runtime_module(rt) in ("onnxruntime", "tvm"):
        prelude = "import sys; sys.modules['torch'] = None\n"  # a client without PyTorch
    if runtime_module(rt) == "tvm":
        env["TVM_USE_RUNTIME_LIB"] = "1"
    code = prelude + f"from dydca_lib.bench.memory import _child_main\n_child_main({str(spec_file)!r})"
    return fresh_process(code, env)
