"""The client runtimes: one record per runtime.

A runtime is what a client runs a bundle with. Its record says which engine loads it
(:data:`dydca_lib.client.engines.ENGINES`), how the server writes each unit for it
(:data:`dydca_lib.client.bundle.UNIT_WRITERS`), which compiled TVM library it needs, the arithmetic it
computes in, the CPU features that make that arithmetic worth running, and how the client calls it.
Adding a runtime is one :class:`Runtime` here plus its engine or unit writer where it has new code.
"""

from __future__ import annotations

from dataclasses import dataclass

# the CPU features that make a precision worth running (without them oneDNN emulates bf16 and MLAS
# runs int8 without VNNI dot products: slower than fp32, so those rows are skipped, not timed)
PRECISION_CPU_FLAGS = {"bf16": ("avx512_bf16", "amx_bf16"), "int8": ("avx512_vnni", "avx_vnni", "amx_int8")}


@dataclass(frozen=True)
class Runtime:
    """``engine``: the engine class's key; ``units``: how each unit is written (a unit writer's key);
    ``package``: what a client imports (``torch``, ``onnxruntime``, ``tvm``); ``library``: the TVM
    kernels compiled into the bundle's one library (``tuned``, ``manual``, ``winograd``, ``int8``,
    ``amx_int8``, ``amx_bf16``; ``None``: no library); ``needs_any``: CPU flags of which it needs
    one (empty: its precision's, :data:`PRECISION_CPU_FLAGS`); ``one_patch_per_call``: the reference
    client's loop; ``compiles_at_load``: every model load compiles (seconds: not for clients that
    switch models); ``dynamic_file``: Dy-DCA ships as its one dynamic model (routing inside);
    ``device``/``cpu_twin``: a GPU runtime runs the bundle of its CPU twin."""

    name: str
    description: str
    engine: str
    units: str
    package: str
    precision: str = "fp32"
    library: str | None = None
    needs_any: tuple[str, ...] = ()
    one_patch_per_call: bool = False
    compiles_at_load: bool = False
    dynamic_file: bool = False
    device: str = "cpu"
    cpu_twin: str | None = None

    @property
    def cpu_flags_needed(self) -> tuple[str, ...]:
        return self.needs_any or PRECISION_CPU_FLAGS.get(self.precision, ())

    def unsupported_reason(self, flags) -> str | None:
        """Why a CPU with ``flags`` should not run this runtime (``None``: it can)."""
        need = self.cpu_flags_needed
        if not need or set(need) & set(flags):
            return None
        return f"{self.name} ({self.precision}) needs a CPU with {' or '.join(need)}; this one has none"


_RECORDS = [
    Runtime("torch_ref", "PyTorch eager, reference (1 patch per call)", "torch", "as_trained", "torch",
            one_patch_per_call=True, dynamic_file=True),
    Runtime("torch_batched", "PyTorch eager, batched by shape", "torch", "folded", "torch"),
    Runtime("torch_compiled_bf16", "PyTorch, torch.compile (Inductor, frozen weights, one dynamic-shape graph) of the "
            "bf16 channels-last trunk (oneDNN; AVX512-BF16/AMX), skip conv fp32", "compiled_torch", "folded", "torch",
            precision="bf16", compiles_at_load=True),
    Runtime("torch_compiled_int8", "PyTorch int8: PT2E static quantization (torchao's x86 Inductor quantizer: "
            "per-channel weights, uint8 activations) of the trunk, calibrated on training frames, torch.compile "
            "(oneDNN int8 convs; AMX where present); quantized and compiled at load", "compiled_torch",
            "folded_with_calibration", "torch", precision="int8", compiles_at_load=True),
    Runtime("onnxruntime", "ONNX Runtime", "ort", "onnx", "onnxruntime"),
    Runtime("tvm", "TVM static (tuned)", "tvm", "weights", "tvm", library="tuned"),
    Runtime("tvm_manual", "TVM static, convolutions in NHWC with a hand-written register-blocked schedule (no tuning)",
            "tvm", "weights", "tvm", library="manual"),
    Runtime("tvm_winograd", "TVM static, tvm_manual with the 3x3 body convolutions by Winograd F(4x4, 3x3) "
            "(hand-written schedule)", "tvm", "weights", "tvm", library="winograd"),
    Runtime("torch_batched_bf16", "PyTorch eager, batched by shape, bf16 weights and activations, channels-last (oneDNN)",
            "torch", "folded", "torch", precision="bf16"),
    Runtime("onnxruntime_int8", "ONNX Runtime, int8 QDQ (static, per-channel weights, calibrated on training frames)",
            "ort", "onnx_int8", "onnxruntime", precision="int8"),
    # tvm_int8's kernels use the 512-bit vpdpbusd only; the AMX builds need the tiles (amx_int8/amx_bf16 imply amx_tile)
    Runtime("tvm_int8", "TVM static, trunk convs (head, body, tail) int8 on AVX-512 VNNI (static activations calibrated "
            "on training frames, per-channel weights), skip conv fp32; hand-written schedules", "tvm", "int8_weights",
            "tvm", precision="int8", library="int8", needs_any=("avx512_vnni",)),
    Runtime("tvm_amx_int8", "TVM static, tvm_int8 with the body and tail convs on AMX tiles (tdpbusd, hand-written "
            "TensorIR); head on VNNI, skip conv fp32", "tvm", "amx_int8_weights", "tvm", precision="int8",
            library="amx_int8", needs_any=("amx_int8",)),
    Runtime("tvm_amx_bf16", "TVM static, the trunk's convs (head, body, tail) in bf16 on AMX tiles (tdpbf16ps, fp32 "
            "accumulation, hand-written TensorIR), skip conv fp32: PyTorch bf16's split, no calibration", "tvm",
            "bf16_weights", "tvm", precision="bf16", library="amx_bf16", needs_any=("amx_bf16",)),
    # need a GPU; frames stay in host memory, copies are timed
    Runtime("torch_ref_cuda", "PyTorch eager on CUDA, reference (1 patch per call)", "torch", "as_trained", "torch",
            one_patch_per_call=True, dynamic_file=True, device="cuda", cpu_twin="torch_ref"),
    Runtime("torch_batched_cuda", "PyTorch eager on CUDA, batched by shape", "torch", "folded", "torch",
            device="cuda", cpu_twin="torch_batched"),
]
REGISTRY: dict[str, Runtime] = {r.name: r for r in _RECORDS}
RUNTIMES = {r.name: r.description for r in _RECORDS}  # name -> description, in the tables' order


def runtime(name: str) -> Runtime:
    """The record of runtime ``name``."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"runtime must be one of {list(REGISTRY)}, got {name!r}") from None


def names(**where) -> tuple[str, ...]:
    """The runtimes whose record fields equal ``where`` (e.g. ``package="tvm"``, ``device="cuda"``)."""
    return tuple(r.name for r in _RECORDS if all(getattr(r, k) == v for k, v in where.items()))


def precision_of(name: str) -> str:
    """The arithmetic a runtime's client computes in: ``fp32``, ``bf16`` or ``int8``."""
    return runtime(name).precision


def unsupported_reason(name: str, flags=None) -> str | None:
    """Why this CPU should not run runtime ``name`` (``None`` when it can): a reduced precision needs
    its CPU features (``flags``: the CPU's, read from /proc/cpuinfo when omitted)."""
    record = runtime(name)
    if not record.cpu_flags_needed:
        return None
    if flags is None:
        from ..runinfo import cpu_flags

        flags = cpu_flags()
    return record.unsupported_reason(flags)
