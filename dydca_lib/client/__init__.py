"""What a device ships and runs: the client of "LR video + models".

Importable without PyTorch (a device has none): NumPy at the top of every module; each runtime
is imported by the engine that needs it (TVM's *runtime* only, never the compiler). It may import
``tensors`` and ``compiler.shapes`` (both TVM- and torch-free); the server-side
:func:`~.bundle.export_bundle` imports ``models`` and ``compiler`` inside the function.

* :mod:`.plan` — a frame's routing map (:class:`~.plan.FramePlan`), the frames a client plays
  (:class:`~.plan.Workload`), size routing and whether a method switches models;
* :mod:`.runtimes` — one record per runtime (engine, unit format, TVM library, precision, CPU
  features it needs, batch policy): a new runtime is one record plus its engine or unit writer;
* :mod:`.bundle` — the deployment bundle per runtime (what the server sends, what a client loads);
* :mod:`.engines` — one engine class per kind of runtime: load/unload a unit, run a batch of patches;
* :mod:`.loop` — the full-frame pipeline (:func:`~.loop.sr_frame`) and the client loop
  (:class:`~.loop.Client`) with model switching.
"""
