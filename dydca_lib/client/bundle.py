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
    "torch_compiled_bf16": "PyTorch, torch.compile (Inductor, frozen weights, one dynamic-shape graph) of the bf16 "
                           "channels-last trunk (oneDNN; AVX512-BF16/AMX), skip conv fp32",
    "torch_compiled_int8": "PyTorch int8: PT2E static quantization (torchao's x86 Inductor quantizer: per-channel "
                           "weights, uint8 activations) of the trunk, calibrated on training frames, torch.compile "
                           "(oneDNN int8 convs; AMX where present); quantized and compiled at load",
    "onnxruntime": "ONNX Runtime",
    "tvm": "TVM static (tuned)",
    "tvm_manual": "TVM static, convolutions in NHWC with a hand-written register-blocked schedule (no tuning)",
    "tvm_winograd": "TVM static, tvm_manual with the 3x3 body convolutions by Winograd F(4x4, 3x3) (hand-written schedule)",
    "torch_batched_bf16": "PyTorch eager, batched by shape, bf16 weights and activations, channels-last (oneDNN)",
    "onnxruntime_int8": "ONNX Runtime, int8 QDQ (static, per-channel weights, calibrated on training frames)",
    "tvm_int8": "TVM static, trunk convs (head, body, tail) int8 on AVX-512 VNNI (static activations calibrated on "
                "training frames, per-channel weights), skip conv fp32; hand-written schedules",
    "tvm_amx_int8": "TVM static, tvm_int8 with the body and tail convs on AMX tiles (tdpbusd, hand-written TensorIR); "
                    "head on VNNI, skip conv fp32",
    "tvm_amx_bf16": "TVM static, the trunk's convs (head, body, tail) in bf16 on AMX tiles (tdpbf16ps, fp32 "
                    "accumulation, hand-written TensorIR), skip conv fp32: PyTorch bf16's split, no calibration",
    "torch_ref_cuda": "PyTorch eager on CUDA, reference (1 patch per call)",
    "torch_batched_cuda": "PyTorch eager on CUDA, batched by shape",
}
# one library + weights: tuning database / hand-written direct / Winograd / int8 VNNI / int8 AMX / bf16 AMX
TVM_RUNTIMES = ("tvm", "tvm_manual", "tvm_winograd", "tvm_int8", "tvm_amx_int8", "tvm_amx_bf16")
LOW_PRECISION_TVM = {"tvm_int8": "int8", "tvm_amx_int8": "amx_int8", "tvm_amx_bf16": "amx_bf16"}  # runtime -> library kernels
CUDA_RUNTIMES = ("torch_ref_cuda", "torch_batched_cuda")  # need a GPU; frames stay in host memory, copies are timed
PRECISION = {"torch_batched_bf16": "bf16", "torch_compiled_bf16": "bf16", "torch_compiled_int8": "int8", "onnxruntime_int8": "int8", "tvm_int8": "int8", "tvm_amx_int8": "int8",
             "tvm_amx_bf16": "bf16"}  # the rest compute in fp32
# runtimes whose client compiles every model it loads (seconds): not run for clients that switch models per chunk
COMPILES_AT_LOAD = ("torch_compiled_bf16", "torch_compiled_int8")
# the CPU features that make a precision worth running (without them oneDNN emulates bf16 and MLAS
# runs int8 without VNNI dot products: slower than fp32, so those rows are skipped, not timed)
PRECISION_CPU_FLAGS = {"bf16": ("avx512_bf16", "amx_bf16"), "int8": ("avx512_vnni", "avx_vnni", "amx_int8")}
# tvm_int8's kernels use the 512-bit vpdpbusd only; the AMX builds need the tiles (amx_int8/amx_bf16 imply amx_tile)
RUNTIME_CPU_FLAGS = {"tvm_int8": ("avx512_vnni",), "tvm_amx_int8": ("amx_int8",), "tvm_amx_bf16": ("amx_bf16",)}


def precision_of(runtime: str) -> str:
    """The arithmetic a runtime's client computes in: ``fp32``, ``bf16`` or ``int8``."""
    return PRECISION.get(runtime, "fp32")


def unsupported_reason(runtime: str, flags=None) -> str | None:
    """Why this CPU should not run ``runtime`` (``None`` when it can): a reduced precision needs
    one of :data:`PRECISION_CPU_FLAGS` (``flags``: the CPU's, read from /proc/cpuinfo when omitted)."""
    need = RUNTIME_CPU_FLAGS.get(runtime) or PRECISION_CPU_FLAGS.get(precision_of(runtime))
    if need is None:
        return None
    if flags is None:
        from ..runinfo import cpu_flags

        flags = cpu_flags()
    if set(need) & set(flags):
        return None
    return f"{runtime} ({precision_of(runtime)}) needs a CPU with {' or '.join(need)}; this one has none"


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


def export_bundle(units: dict, runtime: str, out_dir: Path, *, scale: int, context: int, plans: dict | None = None,
                  dynamic=None, routing: dict | None = None, max_batch: int = 16, tuned: bool = True,
                  cache_dir: Path | None = None, target=None, tune_trials_per_task: int = 0,
                  calibration: dict | None = None, max_batch_pixels: int = 0) -> dict:
    """Write what a client of ``runtime`` receives for these units into ``out_dir``; returns the
    bundle description (JSON-able, absolute paths) that :func:`make_engine` loads.

    ``torch_ref``: each unit as trained (weight norm live) in a ``.pt`` (record + state dict); with
    ``dynamic`` (Dy-DCA), the whole dynamic model in one file, routing by patch size (``routing``:
    ``{(h, w): path}`` of the frames it will see). ``torch_batched``: each unit folded, ``.pt``.
    ``onnxruntime``: one ``.onnx`` per unit. ``tvm``: one compiled library for the units'
    architectures and the patch shapes of ``plans`` (cached in ``cache_dir``; kernels the committed
    database lacks are tuned first when ``tune_trials_per_task`` > 0; batches up to ``max_batch``
    patches) + one ``.npz`` of weights per unit. ``max_batch_pixels`` (every runtime): the client
    calls a runtime with at most that many LR pixels (:func:`~dydca_lib.compiler.shapes.batch_cap`),
    and TVM compiles no larger batch.
    ``torch_batched_bf16``: each unit folded, weights stored in bf16. ``onnxruntime_int8``: one int8
    ``.onnx`` per unit (:func:`export_onnx_int8`), ``calibration`` ``{unit: [uint8 NHWC batches]}``.
    """
    from ..models import TRUNK, build_model, fold_weight_norm, model_record, unit_params

    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {list(RUNTIMES)}, got {runtime!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    precision = precision_of(runtime)
    if precision == "int8" and (not calibration or set(map(int, calibration)) < set(map(int, units))):
        raise ValueError(f"runtime {runtime} quantizes every unit: give calibration patches for units {sorted(units)}")
    bundle = {"runtime": runtime, "scale": int(scale), "context": int(context), "units": {}, "dir": str(out_dir),
              "precision": precision, "max_batch_pixels": int(max_batch_pixels)}
    if runtime in CUDA_RUNTIMES:  # the CPU bundle, run on the GPU
        bundle = export_bundle(units, runtime.removesuffix("_cuda"), out_dir, scale=scale, context=context,
                               plans=plans, dynamic=dynamic, routing=routing, max_batch=max_batch,
                               max_batch_pixels=max_batch_pixels)
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
    if runtime in LOW_PRECISION_TVM:
        from ..compiler.library import int8_library

        so, meta = int8_library(units, plans or {}, scale, context, max_batch,
                                Path(cache_dir) if cache_dir else _default_cache(), kernels=LOW_PRECISION_TVM[runtime],
                                max_batch_pixels=max_batch_pixels)
    elif runtime in TVM_RUNTIMES:
        from ..compiler.library import tvm_library

        so, meta = tvm_library(units, plans or {}, scale, context, max_batch, tuned,
                               Path(cache_dir) if cache_dir else _default_cache(), target, tune_trials_per_task,
                               manual=runtime == "tvm_manual", winograd=runtime == "tvm_winograd",
                               max_batch_pixels=max_batch_pixels)
    if runtime in TVM_RUNTIMES:
        lib = out_dir / "model.so"
        shutil.copyfile(so, lib)
        bundle["tvm"] = {**meta, "lib": str(lib), "lib_bytes": lib.stat().st_size}
    for u, unit in sorted(units.items()):
        weights = _weight_bytes(unit)
        if runtime == "torch_ref":
            f = out_dir / f"unit{u}.pt"
            size = _state_file(f, unit)
        elif runtime in ("torch_batched", "torch_batched_bf16", "torch_compiled_bf16", "torch_compiled_int8"):
            import torch

            f = out_dir / f"unit{u}.pt"
            plain = fold_weight_norm(unit).eval()
            if precision == "bf16":  # the trunk's weights in bf16, as the client computes with them
                for name in TRUNK:
                    getattr(plain, name).to(torch.bfloat16)
            size = _state_file(f, plain)
            weights = int(sum(t.numel() * t.element_size() for t in plain.state_dict().values()))
            if runtime == "torch_compiled_int8":  # the client quantizes at load: it gets the patches too
                cal = out_dir / f"unit{u}.calibration.npz"
                np.savez(cal, *(calibration[u] if u in calibration else calibration[str(u)]))
                bundle["units"][str(u)] = {"calibration": str(cal)}
                size += cal.stat().st_size
        elif runtime == "onnxruntime":
            f = out_dir / f"unit{u}.onnx"
            size = export_onnx(unit, f)
        elif runtime == "onnxruntime_int8":
            import onnx
            from onnx import numpy_helper

            f = out_dir / f"unit{u}.onnx"
            size = export_onnx_int8(unit, f, calibration[u] if u in calibration else calibration[str(u)])
            weights = int(sum(numpy_helper.to_array(t).nbytes for t in onnx.load(str(f)).graph.initializer))
        elif runtime in LOW_PRECISION_TVM:  # int8: quantized with the calibration patches; bf16: rounded
            from ..compiler.bf16 import pack_unit
            from ..compiler.int8 import quantize_unit

            f = out_dir / f"unit{u}.npz"
            arrays = (pack_unit(unit) if precision == "bf16" else
                      quantize_unit(unit, calibration[u] if u in calibration else calibration[str(u)],
                                    amx=runtime == "tvm_amx_int8"))
            np.savez(f, *arrays)
            size, weights = f.stat().st_size, int(sum(a.nbytes for a in arrays))
        else:
            f = out_dir / f"unit{u}.npz"
            np.savez(f, *unit_params(unit))
            size = f.stat().st_size
        # the parameters as shipped: fp32; bf16 trunk + fp32 skip; int8 weights + int32 biases + scales + fp32 skip
        bundle["units"][str(u)] = {**bundle["units"].get(str(u), {}), "file": str(f), "bytes": size, "weight_bytes": weights}
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

