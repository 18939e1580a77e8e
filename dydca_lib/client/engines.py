"""One engine per runtime: loads a bundle's units and upscales batches of same-size patches.

Each engine imports its runtime when it is made (PyTorch, ONNX Runtime, or TVM's runtime
library), so a client of one runtime never loads the others.
"""

from __future__ import annotations

import time

import numpy as np

from ..compiler.shapes import function_name, run_split, split_batch
from ..tensors import to_nchw, to_uint8


class Engine:
    """Loads a bundle's units and upscales batches of same-size patches of one unit.

    ``load(unit)`` / ``unload(unit)`` make a unit resident or drop it; ``run(lr_uint8_NHWC, unit)``
    returns uint8 NHWC SR patches; ``route(h, w)`` is the reference's Python router (Dy-DCA only).
    """

    routes_by_size = False

    def __init__(self, bundle: dict, threads: int):
        self.bundle, self.threads, self.models = bundle, int(threads), {}

    @property
    def loaded(self) -> set:
        return set(self.models)

    def load(self, unit: int) -> float:
        t0 = time.perf_counter()
        self.models[int(unit)] = self._load(int(unit))
        return time.perf_counter() - t0

    def unload(self, unit: int) -> None:
        self.models.pop(int(unit), None)

    def route(self, h: int, w: int) -> int:
        raise NotImplementedError


class TorchEngine(Engine):
    def __init__(self, bundle, threads):
        import torch

        super().__init__(bundle, threads)
        torch.set_num_threads(self.threads)
        self.torch = torch
        self.device = torch.device(bundle.get("device", "cpu"))
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"runtime {bundle['runtime']} needs a CUDA GPU; torch sees none")
        self.dynamic = None
        self.routes_by_size = "dynamic" in bundle
        self.bf16 = bundle.get("precision") == "bf16"  # bf16 trunk, fp32 skip and output (models.ReducedTrunk)

    def _load_file(self, f):
        from ..models import build_model

        stored = self.torch.load(f, map_location="cpu", weights_only=False)
        m = build_model(stored["record"])
        m.load_state_dict(stored["state"])
        m = m.eval().to(self.device)
        if self.bf16:
            from ..models import ReducedTrunk

            m = ReducedTrunk(m, self.torch.bfloat16)
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()  # a switch is done when the weights are on the GPU
        return m

    def _load(self, unit):
        if self.routes_by_size:  # the one dynamic model serves every path
            if self.dynamic is None:
                self.dynamic = self._load_file(self.bundle["dynamic"]["file"])
            return self.dynamic
        return self._load_file(self.bundle["units"][str(unit)]["file"])

    def unload(self, unit):
        super().unload(unit)
        if self.routes_by_size and not self.models:
            self.dynamic = None

    def route(self, h, w):
        return self.dynamic.route(h, w)

    def run(self, x, unit):
        from ..models import to_tensor
        from ..models import to_uint8 as tensor_to_uint8

        m = self.models[int(unit)]
        with self.torch.no_grad():
            t = to_tensor(np.ascontiguousarray(x)).to(self.device)
            return tensor_to_uint8(m(t, int(unit)) if self.routes_by_size else m(t))  # .cpu() waits for the GPU


class CompiledTorchEngine(TorchEngine):
    """PyTorch compiled (:mod:`.compiled_torch`): bf16 — the stored bf16 trunk compiled;
    int8 — PT2E-quantized at load with the calibration patches the bundle carries, then compiled.
    Every load compiles (seconds)."""

    def __init__(self, bundle, threads):
        super().__init__(bundle, threads)
        self.bf16 = False  # compile_bf16 makes the bf16 trunk itself

    def _load(self, unit):
        from . import compiled_torch

        record = self.bundle["units"][str(unit)]
        plain = self._load_file(record["file"])
        if self.bundle["precision"] == "bf16":
            return compiled_torch.compile_bf16(plain)
        with np.load(record["calibration"]) as z:
            batches = [self.torch.from_numpy(to_nchw(z[k])) for k in sorted(z.files)]
        return compiled_torch.quantize_compile_int8(plain, batches)


class OrtEngine(Engine):
    def __init__(self, bundle, threads):
        import onnxruntime as ort

        super().__init__(bundle, threads)
        self.ort = ort
        self.options = ort.SessionOptions()
        self.options.intra_op_num_threads = self.threads
        self.options.inter_op_num_threads = 1
        self.options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL

    def _load(self, unit):
        return self.ort.InferenceSession(self.bundle["units"][str(unit)]["file"], self.options,
                                         providers=["CPUExecutionProvider"])

    def run(self, x, unit):
        return to_uint8(self.models[int(unit)].run(None, {"x": to_nchw(x)})[0])


class TvmEngine(Engine):
    """The compiled library is loaded once (``load_seconds``); a unit's load is its weights."""

    def __init__(self, bundle, threads):
        import tvm

        super().__init__(bundle, threads)
        try:
            from tvm.runtime.vm import VirtualMachine
        except ImportError:  # pragma: no cover - older layouts
            from tvm.relax import VirtualMachine
        self.tvm = tvm
        meta = bundle["tvm"]
        if str(meta.get("kernels_from")).startswith("amx"):  # the tile state must be granted before the first tile instruction
            from ..runinfo import request_amx_tile_permission

            request_amx_tile_permission()
        t0 = time.perf_counter()
        self.vm = VirtualMachine(tvm.runtime.load_module(meta["lib"]), tvm.cpu())
        self.load_seconds = time.perf_counter() - t0
        self.arch_of = {int(u): int(a) for u, a in meta["arch_of"].items()}
        self.buckets = {tuple(int(v) for v in k.split(",")): list(b) for k, b in meta["buckets"].items()}
        self.scale = int(bundle["scale"])
        self.uint8_io = meta.get("io") == "uint8_nhwc"  # the library takes and returns uint8 NHWC patches

    def _load(self, unit):
        with np.load(self.bundle["units"][str(unit)]["file"]) as z:
            return [self.tvm.runtime.tensor(z[f"arr_{i}"]) for i in range(len(z.files))]

    def run(self, x, unit):
        unit = int(unit)
        a, n, h, w = self.arch_of[unit], x.shape[0], x.shape[1], x.shape[2]
        key = (a, h, w)
        if key not in self.buckets:
            raise KeyError(f"the TVM library has no {w}x{h} function for unit {unit} (compiled: {sorted(self.buckets)})")
        xf, params = (np.ascontiguousarray(x) if self.uint8_io else to_nchw(x)), self.models[unit]
        out = np.empty((n, h * self.scale, w * self.scale, 3), dtype=np.uint8)

        def call(chunk, b):
            y = self.vm[function_name(a, h, w, b)](self.tvm.runtime.tensor(chunk), *params)
            return np.from_dlpack(y if hasattr(y, "numpy") else y[0])  # a view of the runtime's output: one copy, into out

        return run_split(xf, split_batch(n, self.buckets[key]), call, out, None if self.uint8_io else to_uint8)


# Runtime.engine -> the class that loads and runs a bundle of that runtime
ENGINES = {"torch": TorchEngine, "compiled_torch": CompiledTorchEngine, "ort": OrtEngine, "tvm": TvmEngine}


def make_engine(bundle: dict, threads: int) -> Engine:
    from .runtimes import runtime

    return ENGINES[runtime(bundle["runtime"]).engine](bundle, threads)

