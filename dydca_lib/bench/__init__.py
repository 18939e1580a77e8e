"""Experiments about the client and the compiler: what notebooks 05 and 06 (and the GPU
companion) measure.

It may import everything to its left (data, learning, ``compiler``, ``client``); only ``report``
and ``reproduce`` come after it. Modules:

* :mod:`.timing` — machine description, the sgemm peak (roofline ceiling), FLOPs per frame,
  latency summaries, PyTorch eager timing;
* :mod:`.variants` — notebook 05: the compiled Dy-DCA's variants (eager, dynamic, static,
  tuned), planned memory, output agreement, the compiler headline;
* :mod:`.attempts` — notebook 05: TVM build variants of one path, each in a fresh process beside
  ONNX Runtime and PyTorch (``python -m dydca_lib.bench.attempts``);
* :mod:`.workloads` — notebook 06's methods and the frames each plays (clip size, 540p, ...);
* :mod:`.ondevice` — notebook 06: bundles per runtime, timing, switching, output checks, headline;
* :mod:`.memory` — peak RSS of a configuration in a fresh process (its child imports no torch);
* :mod:`.figures` — their figures;
* :mod:`.gpu` — notebook 06's pipeline on a CUDA GPU (``python -m dydca_lib.bench.gpu``).

This ``__init__`` imports nothing, so :mod:`.memory`'s child process stays torch-free.
"""
