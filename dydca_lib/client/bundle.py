"""Deployment bundles: what the server sends a client of each runtime, and how big it is.

:data:`RUNTIMES` names the client runtimes. :func:`export_bundle` (server side: imports
PyTorch, and the compiler for ``tvm``, inside the function) writes a bundle's files and returns
its JSON-able description, which :func:`dydca_lib.client.engines.make_engine` loads.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np

RUNTIMES = {
    "torch_ref": "PyTorch eager, reference (1 patch per call)",
    "torch_batched": "PyTorch eager, batched by shape",
    "onnxruntime": "ONNX Runtime",
    "tvm": "TVM static (tuned)",
    "torch_ref_cuda": "PyTorch eager on CUDA, reference (1 patch per call)",
    "torch_batched_cuda": "PyTorch eager on CUDA, batched by shape",
}
CUDA_RUNTIMES = ("torch_ref_cuda", "torch_batched_cuda")  # need a GPU; frames stay in host memory, copies are timed


def _state_file(path: Path, model) -> int:
    import torch

    from ..models import model_record

    torch.save({"record": model_record(model), "state": model.state_dict()}, path)
    return path.stat().st_size



def export_onnx(wdsr, path: Path, example_hw: tuple[int, int] = (16, 16)) -> int:
    """One WDSR path (weight norm folded) to ONNX with dynamic batch, H and W (opset 17).

    Uses the TorchScript exporter (``dynamo=False``): the torch.export-based default needs
    ``onnxscript``, which this project does not install. Returns the file's bytes.
    """
    import torch

    from ..models import fold_weight_norm

    plain = fold_weight_norm(wdsr).eval()
    x = torch.rand(1, 3, *example_hw)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notices
        torch.onnx.export(plain, (x,), str(path), dynamo=False, input_names=["x"], output_names=["y"],
                          opset_version=17, dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}, "y": {0: "n", 2: "H", 3: "W"}})
    return Path(path).stat().st_size


def export_bundle(units: dict, runtime: str, out_dir: Path, *, scale: int, context: int, plans: dict | None = None,
                  dynamic=None, routing: dict | None = None, max_batch: int = 16, tuned: bool = True,
                  cache_dir: Path | None = None, target=None, tune_trials_per_task: int = 0) -> dict:
    """Write what a client of ``runtime`` receives for these units into ``out_dir``; returns the
    bundle description (JSON-able, absolute paths) that :func:`make_engine` loads.

    ``torch_ref``: each unit as trained (weight norm live) in a ``.pt`` (record + state dict); with
    ``dynamic`` (Dy-DCA), the whole dynamic model in one file, routing by patch size (``routing``:
    ``{(h, w): path}`` of the frames it will see). ``torch_batched``: each unit folded, ``.pt``.
    ``onnxruntime``: one ``.onnx`` per unit. ``tvm``: one compiled library for the units'
    architectures and the patch shapes of ``plans`` (cached in ``cache_dir``; kernels the committed
    database lacks are tuned first when ``tune_trials_per_task`` > 0) + one ``.npz`` of weights per unit.
    """
    from ..models import build_model, fold_weight_norm, model_record, unit_params

    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {list(RUNTIMES)}, got {runtime!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bundle = {"runtime": runtime, "scale": int(scale), "context": int(context), "units": {}, "dir": str(out_dir)}
    if runtime in CUDA_RUNTIMES:  # the CPU bundle, run on the GPU
        bundle = export_bundle(units, runtime.removesuffix("_cuda"), out_dir, scale=scale, context=context,
                               plans=plans, dynamic=dynamic, routing=routing, max_batch=max_batch)
        return {**bundle, "runtime": runtime, "device": "cuda"}
    if runtime == "torch_ref" and dynamic is not None:
        rec = model_record(dynamic)
        if routing is not None:
            rec["routing"] = [[int(h), int(w), int(p)] for (h, w), p in sorted(routing.items())]
        m = build_model(rec)
        m.load_state_dict(dynamic.state_dict())
        f = out_dir / "dynamic.pt"
        size = _state_file(f, m)
        bundle["dynamic"] = {"file": str(f), "bytes": size}
        for u, unit in units.items():
            bundle["units"][str(u)] = {"file": str(f), "bytes": size, "weight_bytes": _weight_bytes(unit)}
        return bundle
    if runtime == "tvm":
        from ..compiler.library import tvm_library

        so, meta = tvm_library(units, plans or {}, scale, context, max_batch, tuned,
                               Path(cache_dir) if cache_dir else _default_cache(), target, tune_trials_per_task)
        lib = out_dir / "model.so"
        shutil.copyfile(so, lib)
        bundle["tvm"] = {**meta, "lib": str(lib), "lib_bytes": lib.stat().st_size}
    for u, unit in sorted(units.items()):
        if runtime == "torch_ref":
            f = out_dir / f"unit{u}.pt"
            size = _state_file(f, unit)
        elif runtime == "torch_batched":
            f = out_dir / f"unit{u}.pt"
            size = _state_file(f, fold_weight_norm(unit).eval())
        elif runtime == "onnxruntime":
            f = out_dir / f"unit{u}.onnx"
            size = export_onnx(unit, f)
        else:
            f = out_dir / f"unit{u}.npz"
            np.savez(f, *unit_params(unit))
            size = f.stat().st_size
        bundle["units"][str(u)] = {"file": str(f), "bytes": size, "weight_bytes": _weight_bytes(unit)}
    return bundle


def _weight_bytes(wdsr) -> int:
    from ..models import unit_params

    return int(sum(a.nbytes for a in unit_params(wdsr)))


def _default_cache() -> Path:
    from ..paths import data_dir

    return data_dir() / "cache" / "tvm-ondevice"


def bundle_bytes(bundle: dict) -> int:
    """Bytes on disk of everything in a bundle (models + compiled library)."""
    files = {u["file"] for u in bundle["units"].values()}
    if "tvm" in bundle:
        files.add(bundle["tvm"]["lib"])
    return int(sum(Path(f).stat().st_size for f in files))

