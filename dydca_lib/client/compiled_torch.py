"""PyTorch's own compiled clients, the strongest PyTorch peers of the TVM builds: ``torch.compile``
(Inductor, weights frozen into oneDNN's prepacked kernels) of the bf16 trunk, and PyTorch int8 —
PT2E static quantization with torchao's x86 Inductor quantizer (per-channel int8 weights, uint8
activations, oneDNN's int8 convolutions: AMX tiles where the CPU has them), trunk only as every
int8 client here quantizes (head, body, tail; the 5x5 skip conv, the sum and the pixel shuffle fp32).

One compiled graph serves every batch size and patch size: the batch dimension is marked
*unbacked* (with a backed batch ATen's conv-backend choice guards on ``N >= 16`` and on ``N == 1``,
and each guard failure is a recompile of seconds), duck sizing is off while tracing (else a first
``H == W`` call recompiles at the first ``H != W``) and inputs are made contiguous. A cold compile
takes seconds (bf16 ~12 s, int8 ~7 s on a 2-core Xeon; a second process reuses the bf16 graph from
Inductor's disk cache, not the int8 one), so these runtimes suit clients that keep their models:
every load compiles. Freezing is read from the *global* Inductor config while tracing, so each call
runs under ``config.patch(freezing=True)``. Static shapes would be faster for bf16 (a 16 x 52 x 56
call: ~8 ms against ~11–14 ms dynamic) at ~3 s of compilation per (batch, h, w).

Importing this module needs nothing; the functions import torch (and torchao for int8).
"""

from __future__ import annotations

MAX_BATCH, MIN_HW, MAX_HW = 64, 8, 1024  # the exported range (larger batches run in chunks)
_GRAPH_LIMIT = 64  # dynamo's per-code-object graph cache: every instance of a model class shares one


def _compile(module):
    import torch
    import torch._dynamo.config as dynamo_config
    import torch.fx.experimental._config as fx_config

    for name in ("cache_size_limit", "recompile_limit"):  # past the limit dynamo silently runs eager
        if hasattr(dynamo_config, name):
            setattr(dynamo_config, name, max(getattr(dynamo_config, name), _GRAPH_LIMIT))

    def forward(x):
        n = x.size(0)
        torch._check(n >= 1)  # the unbacked batch's range, for the exported module's input check
        torch._check(n <= MAX_BATCH)
        return module(x)

    compiled = torch.compile(forward, dynamic=True, options={"freezing": True})

    def run(x):
        if x.dim() != 4 or not (MIN_HW <= x.shape[2] <= MAX_HW and MIN_HW <= x.shape[3] <= MAX_HW):
            raise ValueError(f"expected an NCHW batch with {MIN_HW} <= H, W <= {MAX_HW}, got {tuple(x.shape)}")
        if x.shape[0] > MAX_BATCH:
            return torch.cat([run(c) for c in x.split(MAX_BATCH)])
        x = x.contiguous()
        torch._dynamo.decorators.mark_unbacked(x, 0)
        with torch._inductor.config.patch(freezing=True), fx_config.patch(use_duck_shape=False), torch.no_grad():
            return compiled(x)

    return run


def compile_bf16(plain):
    """``ReducedTrunk(bf16)`` of a copy of the plain (weight norm folded) WDSR ``plain``, compiled;
    float32 NCHW in and out."""
    import torch

    from ..models import ReducedTrunk, fold_weight_norm

    return _compile(ReducedTrunk(fold_weight_norm(plain).eval(), torch.bfloat16).eval())


def _torchao_pt2e():
    """torchao's PT2E pieces, its import-time noise muted (on a CPU build of torch it logs that its
    CUDA kernels failed to load, and torch's pytree warns about one of its enums)."""
    import logging
    import warnings

    loggers = [logging.getLogger(n) for n in ("torchao", "torch.utils._pytree")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq  # also registers the lowering
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
    return xiq, prepare_pt2e, convert_pt2e


def quantize_compile_int8(plain, calibration):
    """PT2E static int8 of a copy of ``plain``, the trunk only, calibrated on ``calibration`` (float32
    NCHW batches, any size in range), compiled; float32 NCHW in and out."""
    import warnings

    import torch
    from torch.export import Dim

    from ..models import TRUNK, fold_weight_norm

    if not calibration:
        raise ValueError("int8 needs at least one calibration batch")
    xiq, prepare_pt2e, convert_pt2e = _torchao_pt2e()
    quantizer = xiq.X86InductorQuantizer()
    config = xiq.get_default_x86_inductor_quantization_config()  # static, per-channel weights
    for name in TRUNK:  # no global config: a pattern with a node outside the trunk stays fp32
        quantizer.set_module_name_qconfig(name, config)
    quantizer.set_module_name_qconfig("skip", None)
    model = fold_weight_norm(plain).eval()
    dims = {0: Dim("batch", min=1, max=MAX_BATCH), 2: Dim("h", min=MIN_HW, max=MAX_HW),
            3: Dim("w", min=MIN_HW, max=MAX_HW)}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exported = torch.export.export(model, (calibration[0],), dynamic_shapes=(dims,)).module()
        prepared = prepare_pt2e(exported, quantizer)
        for batch in calibration:
            prepared(batch)
        converted = convert_pt2e(prepared)
    return _compile(converted)
