"""Deployment bundles: what the server sends a client of each runtime, and how big it is.

:mod:`.runtimes` names the client runtimes. :func:`export_bundle` (server side: imports
PyTorch, and the compiler for ``tvm``, inside the function) writes a bundle's files with the
runtime's unit writer (:data:`UNIT_WRITERS`) and returns its JSON-able description, which
:func:`dydca_lib.client.engines.make_engine` loads.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np

from .runtimes import runtime


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


def export_onnx_int8(wdsr, path: Path, calibration: list) -> int:
    """One WDSR path as an int8 ONNX model: :func:`export_onnx`, then ONNX Runtime's static QDQ
    quantization of the trunk's convolutions — int8 per-channel weights (symmetric), uint8
    activations (the U8S8 kernels VNNI and AMX run), ranges from min/max over ``calibration``
    (batches of uint8 NHWC LR patches, the server's training frames; batches may differ in size).
    The 5x5 skip conv (about 1 % of the FLOPs; it carries the picture), the sum and the pixel shuffle
    stay fp32, as in :class:`dydca_lib.models.ReducedTrunk`. Returns the file's bytes."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from ..models import TRUNK
    from ..tensors import to_nchw

    batches = [np.asarray(b) for b in calibration]
    if not batches or any(b.ndim != 4 or b.shape[-1] != 3 or b.dtype != np.uint8 for b in batches):
        raise ValueError("int8 calibration needs batches of uint8 NHWC RGB patches")
    path = Path(path)
    fp32 = path.with_name(path.stem + ".fp32.onnx")

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.it = iter(batches)

        def get_next(self):
            b = next(self.it, None)
            return None if b is None else {"x": to_nchw(b)}

    export_onnx(wdsr, fp32)
    prepared = path.with_name(path.stem + ".prep.onnx")
    try:
        quant_pre_process(str(fp32), str(prepared), auto_merge=True)  # shapes + graph folding, as ORT advises
        nodes = [n.name for n in onnx.load(str(prepared)).graph.node]
        trunk = tuple(f"/{name}/" for name in TRUNK)  # the exporter names nodes by module path
        outside = [n for n in nodes if not n.startswith(trunk)]
        if len(outside) == len(nodes) or not any("/skip/" in n for n in outside):
            raise RuntimeError(f"cannot tell the trunk from the skip in the exported graph: {nodes}")
        quantize_static(str(prepared), str(path), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=["Conv", "Relu", "Add"],
                        nodes_to_exclude=outside)
    finally:
        fp32.unlink(missing_ok=True)
        prepared.unlink(missing_ok=True)
    return path.stat().st_size


def export_bundle(units: dict, runtime_name: str, out_dir: Path, *, scale: int, context: int, plans: dict | None = None,
                  dynamic=None, routing: dict | None = None, max_batch: int = 16, tuned: bool = True,
                  cache_dir: Path | None = None, target=None, tune_trials_per_task: int = 0,
                  calibration: dict | None = None, max_batch_pixels: int = 0) -> dict:
    """Write what a client of ``runtime_name`` (:mod:`.runtimes`) receives for these units into
    ``out_dir``; returns the bundle description (JSON-able, absolute paths) that :func:`make_engine` loads.

    Each unit is written by its runtime's unit writer (:data:`UNIT_WRITERS`): ``as_trained`` — as
    trained (weight norm live) in a ``.pt`` (record + state dict); with ``dynamic`` (Dy-DCA) and a
    runtime that ships it whole, the one dynamic model in one file, routing by patch size
    (``routing``: ``{(h, w): path}`` of the frames it will see); ``folded`` — weight norm folded,
    ``.pt`` (bf16 runtimes: trunk weights stored in bf16); ``onnx`` / ``onnx_int8`` — one ``.onnx``
    per unit (:func:`export_onnx_int8`, ``calibration`` ``{unit: [uint8 NHWC batches]}``); TVM —
    one ``.npz`` of weights per unit (int8: quantized with the calibration; bf16: rounded), plus one
    compiled library for the units' architectures and the patch shapes of ``plans`` (cached in
    ``cache_dir``; kernels the committed database lacks are tuned first when
    ``tune_trials_per_task`` > 0; batches up to ``max_batch`` patches). ``max_batch_pixels`` (every
    runtime): the client calls a runtime with at most that many LR pixels
    (:func:`~dydca_lib.compiler.shapes.batch_cap`), and TVM compiles no larger batch.
    """
    from ..models import build_model, model_record

    rt = runtime(runtime_name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if rt.cpu_twin:  # the CPU twin's bundle, run on the device
        bundle = export_bundle(units, rt.cpu_twin, out_dir, scale=scale, context=context, plans=plans, dynamic=dynamic,
                               routing=routing, max_batch=max_batch, max_batch_pixels=max_batch_pixels)
        return {**bundle, "runtime": rt.name, "device": rt.device}
    calibration = {int(u): v for u, v in (calibration or {}).items()}
    if rt.precision == "int8" and not set(map(int, units)) <= set(calibration):
        raise ValueError(f"runtime {rt.name} quantizes every unit: give calibration patches for units {sorted(units)}")
    bundle = {"runtime": rt.name, "scale": int(scale), "context": int(context), "units": {}, "dir": str(out_dir),
              "precision": rt.precision, "max_batch_pixels": int(max_batch_pixels)}
    if rt.dynamic_file and dynamic is not None:
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
    if rt.library is not None:
        bundle["tvm"] = _tvm_library(rt, units, out_dir, plans, scale, context, max_batch, tuned, cache_dir, target,
                                     tune_trials_per_task, max_batch_pixels)
    for u, unit in sorted(units.items()):
        # the parameters as shipped: fp32; bf16 trunk + fp32 skip; int8 weights + int32 biases + scales + fp32 skip
        bundle["units"][str(u)] = UNIT_WRITERS[rt.units](unit, out_dir / f"unit{u}", rt, calibration.get(int(u)))
    return bundle


def _tvm_library(rt, units, out_dir, plans, scale, context, max_batch, tuned, cache_dir, target, tune_trials_per_task,
                 max_batch_pixels) -> dict:
    cache = Path(cache_dir) if cache_dir else _default_cache()
    if rt.precision != "fp32":
        from ..compiler.library import int8_library

        so, meta = int8_library(units, plans or {}, scale, context, max_batch, cache, kernels=rt.library,
                                max_batch_pixels=max_batch_pixels)
    else:
        from ..compiler.library import tvm_library

        so, meta = tvm_library(units, plans or {}, scale, context, max_batch, tuned, cache, target, tune_trials_per_task,
                               manual=rt.library in ("manual", "winograd"), winograd=rt.library == "winograd",
                               max_batch_pixels=max_batch_pixels)
    lib = out_dir / "model.so"
    shutil.copyfile(so, lib)
    return {**meta, "lib": str(lib), "lib_bytes": lib.stat().st_size}


def _write_as_trained(unit, stem: Path, rt, calibration) -> dict:
    f = stem.with_suffix(".pt")
    return {"file": str(f), "bytes": _state_file(f, unit), "weight_bytes": _weight_bytes(unit)}


def _write_folded(unit, stem: Path, rt, calibration) -> dict:
    import torch

    from ..models import TRUNK, fold_weight_norm

    f = stem.with_suffix(".pt")
    plain = fold_weight_norm(unit).eval()
    if rt.precision == "bf16":  # the trunk's weights in bf16, as the client computes with them
        for name in TRUNK:
            getattr(plain, name).to(torch.bfloat16)
    return {"file": str(f), "bytes": _state_file(f, plain),
            "weight_bytes": int(sum(t.numel() * t.element_size() for t in plain.state_dict().values()))}


def _write_folded_with_calibration(unit, stem: Path, rt, calibration) -> dict:
    """The client quantizes at load: it gets the calibration patches too."""
    record = _write_folded(unit, stem, rt, calibration)
    cal = stem.with_suffix(".calibration.npz")
    np.savez(cal, *calibration)
    return {**record, "calibration": str(cal), "bytes": record["bytes"] + cal.stat().st_size}


def _write_onnx(unit, stem: Path, rt, calibration) -> dict:
    f = stem.with_suffix(".onnx")
    return {"file": str(f), "bytes": export_onnx(unit, f), "weight_bytes": _weight_bytes(unit)}


def _write_onnx_int8(unit, stem: Path, rt, calibration) -> dict:
    import onnx
    from onnx import numpy_helper

    f = stem.with_suffix(".onnx")
    size = export_onnx_int8(unit, f, calibration)
    return {"file": str(f), "bytes": size,
            "weight_bytes": int(sum(numpy_helper.to_array(t).nbytes for t in onnx.load(str(f)).graph.initializer))}


def _write_arrays(arrays, stem: Path) -> dict:
    f = stem.with_suffix(".npz")
    np.savez(f, *arrays)
    return {"file": str(f), "bytes": f.stat().st_size, "weight_bytes": int(sum(a.nbytes for a in arrays))}


def _write_weights(unit, stem, rt, calibration) -> dict:
    from ..models import unit_params

    return {**_write_arrays(unit_params(unit), stem), "weight_bytes": _weight_bytes(unit)}


def _write_int8_weights(unit, stem, rt, calibration, amx: bool = False) -> dict:
    from ..compiler.int8 import quantize_unit

    return _write_arrays(quantize_unit(unit, calibration, amx=amx), stem)


def _write_bf16_weights(unit, stem, rt, calibration) -> dict:
    from ..compiler.bf16 import pack_unit

    return _write_arrays(pack_unit(unit), stem)


# how the server writes one unit for a runtime (Runtime.units) -> {"file", "bytes", "weight_bytes", ...}
UNIT_WRITERS = {
    "as_trained": _write_as_trained,
    "folded": _write_folded,
    "folded_with_calibration": _write_folded_with_calibration,
    "onnx": _write_onnx,
    "onnx_int8": _write_onnx_int8,
    "weights": _write_weights,
    "int8_weights": _write_int8_weights,
    "amx_int8_weights": lambda unit, stem, rt, calibration: _write_int8_weights(unit, stem, rt, calibration, amx=True),
    "bf16_weights": _write_bf16_weights,
}


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

