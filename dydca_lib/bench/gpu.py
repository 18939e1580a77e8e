"""Notebook 06's full-frame pipeline on a CUDA GPU, when one is present: the same methods, frames,
bundles and client code (:mod:`dydca_lib.client`, :mod:`dydca_lib.bench.ondevice`), PyTorch runtimes only (ONNX Runtime's and
TVM's wheels here are CPU builds).

``python -m dydca_lib.bench.gpu --profile default`` reads notebook 06's parameters of the profile,
loads the trained models from the cache (by default it never trains: a missing model is an error, so a GPU
machine without the cache fails fast instead of training on the wrong device), and times each
method on ``torch_ref_cuda`` / ``torch_batched_cuda`` — and on the CPU runtimes of the same
machine, as this run's own baseline — at the clip size and at ``lr_heights``. Results go to
``results/<profile>/06_on_device_gpu/`` (latency table, outputs checked against the CPU
evaluation path, metrics.json with the GPU's name), which the report shows beside notebook 06.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path


from ..client.runtimes import names
from . import ondevice as O
from .timing import machine as machine_info
from .timing import sgemm_peak
from .workloads import client_setup


def gpu_info() -> dict:
    import torch

    if not torch.cuda.is_available():
        return {"gpu": None}
    p = torch.cuda.get_device_properties(0)
    return {"gpu": p.name, "gpu_memory_gib": round(p.total_memory / 2**30, 1), "cuda": torch.version.cuda,
            "torch": torch.__version__}


@contextlib.contextmanager
def training_guard(allow: bool):
    """While active, training (``dydca_lib.train.fit``) either fails — a model missing from the
    cache is an error — or, with ``allow``, runs and is listed in the yielded list (its ``desc``)."""
    from .. import train

    fit, trained = train.fit, []

    def guarded(*args, **kwargs):
        if not allow:
            raise RuntimeError("dydca_lib.bench.gpu only loads cached models: run notebook 04/06 of this profile "
                               "on the CPU machine first and bring data/ along (or pass --allow-training)")
        trained.append(kwargs.get("desc"))
        return fit(*args, **kwargs)

    train.fit = guarded
    try:
        yield trained
    finally:
        train.fit = fit


def run(profile: str, out_dir: Path | None = None, runtimes=("torch_ref", "torch_batched", "torch_ref_cuda",
        "torch_batched_cuda"), passes: int = 2, warmup: int = 2, allow_training: bool = False) -> Path:
    import torch

    from .. import pipeline
    from ..io import ResultDir
    from ..params import PatchParams
    from ..paths import results_dir
    from ..runinfo import run_metadata, seed_everything

    p = notebook06_parameters(profile)
    if not torch.cuda.is_available():
        runtimes = [r for r in runtimes if r not in names(device="cuda")]
    seed_everything(p["seed"])
    threads = int(p["threads"])
    torch.set_num_threads(threads)
    with training_guard(allow_training) as trained_here:
        data = pipeline.patch_data(PatchParams.pick(p))
        suite, frame_ids, clip_res, workloads = client_setup(data, p)
    with tempfile.TemporaryDirectory(prefix="dydca_gpu_") as work:
        configs = O.build_configs(suite, workloads, list(runtimes), list(runtimes), clip_res, Path(work),
                                  scale=p["scale"], max_batch=p["max_batch"])
        per_frame, startup, outputs = O.time_configs(configs, threads, passes, warmup, p["config_budget_s"])
        sgemm = sgemm_peak(p["sgemm_n"], threads=threads)
        machine = {**machine_info(threads), **gpu_info()}
        latency = O.latency_table(configs, per_frame, startup, sgemm, machine)
        correctness = O.check_outputs(configs, suite, outputs)
    out = ResultDir(out_dir or results_dir(profile, "06_on_device_gpu"))
    tag = f"{machine['cpu']} ({machine['cores']} cores, {threads} threads) + {machine.get('gpu')}"
    out.table(latency.assign(gpu=machine.get("gpu")), "latency",
              title=f"per-frame latency (ms) and FPS, PyTorch on CPU and CUDA, same pipeline as notebook 06; {tag}")
    out.table(correctness, "correctness", title="SR of the first frame vs the CPU evaluation path (8-bit levels)",
              floatfmt=".4f")
    out.data(per_frame, "per_frame")
    dydca = suite["dydca"].name if "dydca" in suite else None
    head = {}
    if dydca is not None:
        for res in latency.resolution.unique():
            d = latency[(latency.method == dydca) & (latency.resolution == res)].set_index("runtime")
            head[res] = {rt: round(float(d.loc[rt, "fps"]), 2) for rt in d.index}
    out.json(run_metadata(p, p["seed"], device=machine, sgemm=sgemm, runtimes=list(runtimes),
                          headline={"fps_dydca": head}, models_trained_here=trained_here), "metrics")
    return out.commit()


def notebook06_parameters(profile: str) -> dict:
    """Notebook 06's parameters as ``make reproduce`` passes them: its parameters cell's defaults,
    then what the profile sets for it (:func:`dydca_lib.profiles.notebook_parameters`)."""
    from ..profiles import load_profile, notebook_defaults, notebook_parameters, notebook_path

    nb = notebook_path("06_on_device")
    return {**notebook_defaults(nb), **notebook_parameters(load_profile(profile), nb)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dydca_lib.bench.gpu", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--out", help="result folder (default results/<profile>/06_on_device_gpu)")
    ap.add_argument("--allow-training", action="store_true",
                    help="train models missing from the cache here, on the CPU (latency does not depend on the "
                         "weights; metrics.json lists what was trained here)")
    args = ap.parse_args(argv)
    print(run(args.profile, Path(args.out) if args.out else None, allow_training=args.allow_training))
    return 0


if __name__ == "__main__":
    sys.exit(main())
