"""Sweeps on Dask distributed: a notebook's grid as independent jobs on a cluster.

A *job* is one cell of a notebook's grid (:mod:`dydca_lib.cells`): notebook 04's (clip, scale,
seed) — train every method for that seed, score it — notebook 04b's (method, budget, seed)
training run, notebook 08's (clip, codec, CRF) rate-quality point or HR anchor; or a whole notebook run per clip (``reproduce --only NB --video CLIP`` in a fresh
process, so each job has its own papermill kernel). Jobs are idempotent: a cell is keyed by its
parameters and the library's code version, written atomically, and skipped when done, so a
sweep can be stopped and started again, and notebooks 04, 04b and 08 assemble their tables from the
cells a sweep computed exactly as from a serial run (they read the same files).

::

    python -m dydca_lib.sweep --profile default --grid comparison             # LocalCluster on 127.0.0.1
    python -m dydca_lib.sweep --profile default --grid budget --scheduler tcp://HOST:8786
    python -m dydca_lib.sweep --profile full --grid rate_quality             # notebook 08's points
    python -m dydca_lib.sweep --profile default --grid notebooks --notebook 01 --videos cityCC0 bikes
    make reproduce PROFILE=default                                             # assembles the tables

By default a ``LocalCluster`` on the loopback interface: ``cores // threads_per_job`` worker
processes, one job per worker at a time, each setting its own torch thread count. With
``--scheduler`` the jobs go to an existing cluster (``dask scheduler`` on one machine, ``dask
worker tcp://HOST:8786 --nthreads 1`` on others, or dask-jobqueue on SLURM): every worker needs
this project installed and the same ``data/`` (shared storage, or ``DYDCA_ROOT`` pointing at a
copy; each worker can also fetch and sha256-verify the registry clips itself). Workers started
with ``--resources GPU=1`` take the jobs marked ``gpu`` (``--gpu-jobs``).

A failed job is retried ``--retries`` times (a worker process that dies is replaced and its job
rescheduled); a job that still fails is reported with the tail of its log and the sweep finishes
the rest. The exit status is 1 when any job failed.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import cells
from .paths import data_dir

GRIDS = ("comparison", "budget", "rate_quality", "notebooks", "probe")


@dataclass(frozen=True)
class Job:
    name: str  # for people: "comparison cityCC0 x2 seed 1"
    kind: str  # a cell kind (cells.KINDS), "notebook" or "probe"
    spec: dict = field(hash=False)
    gpu: bool = False
    phase: int = 1  # jobs of a phase start when every job of the earlier phases has ended

    @property
    def key(self) -> str:
        if self.kind in cells.KINDS:
            return f"{self.kind}-{cells.cell_key(self.kind, self.spec)}"
        digest = hashlib.sha256(json.dumps({"kind": self.kind, "spec": self.spec}, sort_keys=True).encode())
        return f"{self.kind}-{digest.hexdigest()[:16]}"

    def done(self) -> bool:
        return self.kind in cells.KINDS and cells.is_done(self.kind, self.spec)


# ---------------------------------------------------------------- grids

def _effective(profile: str, stem: str, video=None, overrides: dict | None = None) -> dict:
    """The parameters notebook ``stem`` runs with in ``profile`` (its defaults, the profile, the
    overrides), exactly as ``reproduce`` would run it."""
    from .profiles import notebook_defaults
    from .reproduce import plan

    p = plan(profile, only=[stem], video=video, overrides=overrides)
    nb = next(nb for nb in p.params if nb.stem == stem)
    return {**notebook_defaults(nb), **p.params[nb]}


def prepare_jobs(specs: list[dict]) -> list[Job]:
    """The shared inputs of the cells (frames, the general model, labels, manifests: what
    ``pipeline.patch_data`` caches) for each clip and scale, before any cell needs them, so
    workers do not build the same files at once: the first clip alone (the general model is
    shared by all clips), then the others."""
    patches = list({json.dumps(s["patch"], sort_keys=True): s["patch"] for s in specs}.values())
    return [Job(f"prepare {Path(p['video']).stem} x{p['scale']}", "prepare", p, phase=0 if i == 0 else 1)
            for i, p in enumerate(patches)]


def _with_phases(prepare: list[Job], work: list[Job]) -> list[Job]:
    last = max(j.phase for j in prepare) + 1 if prepare else 0
    return prepare + [Job(j.name, j.kind, j.spec, j.gpu, last) for j in work]


def comparison_jobs(profile: str, video=None, overrides: dict | None = None, gpu: bool = False) -> list[Job]:
    """Notebook 04's (clip, scale, seed) cells, after the clips' shared inputs."""
    from . import comparison

    specs = comparison.comparison_specs(_effective(profile, "04_baseline_comparison", video, overrides))
    work = [Job(f"comparison {Path(s['patch']['video']).stem} x{s['patch']['scale']} seed {s['seed']}", "comparison",
                s, gpu) for s in specs]
    return _with_phases(prepare_jobs(specs), work)


def budget_jobs(profile: str, video=None, overrides: dict | None = None, gpu: bool = False) -> list[Job]:
    """Notebook 04b's (method, budget, seed) training runs, after the clip's shared inputs."""
    from . import budget

    specs = budget.budget_specs(_effective(profile, "04b_budget_study", video, overrides))
    work = [Job(f"budget {s['method']} {s['epochs']:g} epochs seed {s['seed']}", "budget", s, gpu) for s in specs]
    return _with_phases(prepare_jobs(specs), work)


def rate_quality_jobs(profile: str, video=None, overrides: dict | None = None, gpu: bool = False) -> list[Job]:
    """Notebook 08's HR anchor streams and (clip, LR codec, CRF) points, after the clips' shared inputs."""
    from . import delivery

    params = _effective(profile, "08_rate_quality", video, overrides)
    anchors = delivery.anchor_specs(params, params["videos"], params["anchor_codecs"])
    points = delivery.point_specs(params, params["videos"], params["lr_codecs"])
    work = [Job(f"anchor {Path(s['patch']['video']).stem} {s['codec'] or 'yuv420'} crf {s['crf']}", "anchor", s)
            for s in anchors]
    work += [Job(f"rate-quality {Path(s['patch']['video']).stem} {s['codec']} crf {s['crf']}", "ratequality", s, gpu)
             for s in points]
    return _with_phases(prepare_jobs(points), work)


def notebook_jobs(profile: str, notebook: str, videos: list[str], overrides: dict | None = None) -> list[Job]:
    """Whole-notebook runs, one per clip (``reproduce --only NOTEBOOK --video CLIP``; results in
    ``results/<profile>-<clip>/``)."""
    if not videos:
        raise ValueError("--grid notebooks: give the clips with --videos")
    return [Job(f"notebook {notebook} {v}", "notebook",
                {"profile": profile, "notebook": notebook, "video": str(v), "overrides": dict(overrides or {})})
            for v in videos]


def probe_jobs(n: int = 4, failures: dict | None = None) -> list[Job]:
    """``n`` tiny jobs that check a worker (torch imports, threads, host); ``failures`` injects
    faults to see the retry and reporting work: ``{index: "fail_once" | "crash_once" | "fail_always"}``
    (``crash_once`` kills its worker process on the first try)."""
    failures = failures or {}
    return [Job(f"probe {i}", "probe", {"index": i, "fault": failures.get(i, ""), "nonce": time.time_ns()})
            for i in range(n)]


def makespan_s(durations, workers: int) -> float:
    """Wall time of jobs of ``durations`` (s) on ``workers``, longest first, each to the worker that
    frees up first (LPT list scheduling; within 4/3 of the best packing)."""
    import heapq

    free = [0.0] * max(1, int(workers))
    for d in sorted(durations, reverse=True):
        heapq.heapreplace(free, free[0] + d)
    return max(free)


def wall_time_estimate(jobs: dict[str, tuple[int, float]], workers=(1, 8, 64)) -> "pd.DataFrame":
    """On paper: ``{job type: (number of jobs, measured seconds per job)}`` -> hours on each worker
    count (:func:`makespan_s`), per type alone and for all types together (last row); no
    scheduler, storage or start-up overheads."""
    import pandas as pd

    def row(name, durations, n, seconds):
        return {"job type": name, "jobs": n, "seconds per job": seconds,
                **{f"{w} workers (h)": round(makespan_s(durations, w) / 3600, 2) for w in workers}}

    rows = [row(name, [float(sec)] * int(n), int(n), round(float(sec), 1)) for name, (n, sec) in jobs.items()]
    every = [float(sec) for n, sec in jobs.values() for _ in range(int(n))]
    return pd.DataFrame(rows + [row("all", every, len(every), float("nan"))])


# ---------------------------------------------------------------- a job, on a worker

def log_dir() -> Path:
    return data_dir() / "sweeps" / "logs"


def _attempt_marker(job: Job) -> Path:
    return log_dir() / f"{job.key}.attempts"


def _probe(spec: dict, attempt: int) -> dict:
    import socket

    import torch

    fault = spec.get("fault", "")
    if fault == "fail_always" or (fault == "fail_once" and attempt == 1):
        raise RuntimeError(f"probe {spec['index']}: injected failure (attempt {attempt})")
    if fault == "crash_once" and attempt == 1:
        os._exit(17)  # the worker process dies; the nanny replaces it and the scheduler reschedules the job
    return {"host": socket.gethostname(), "pid": os.getpid(), "torch_threads": torch.get_num_threads(),
            "value": spec["index"] ** 2}


def run_job(job: Job, threads: int = 1) -> dict:
    """Run one job here (a Dask worker calls this): skip a done cell, else compute it; output goes
    to ``data/sweeps/logs/<key>.log`` (appended per attempt). Raises when the job fails."""
    import torch

    torch.set_num_threads(max(1, int(threads)))
    log = log_dir() / f"{job.key}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    marker = _attempt_marker(job)
    attempt = (int(marker.read_text()) if marker.exists() else 0) + 1
    marker.write_text(str(attempt))
    start = time.perf_counter()
    if job.done():
        return {"job": job.name, "status": "skipped (done)", "seconds": 0.0, "attempt": attempt}
    with open(log, "a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        print(f"=== {job.name} attempt {attempt} pid {os.getpid()} {time.strftime('%Y-%m-%d %H:%M:%S')}", flush=True)
        info = {}
        if job.kind in cells.KINDS:
            cells.run_cell(job.kind, job.spec)
        elif job.kind == "notebook":
            s = job.spec
            cmd = [sys.executable, "-m", "dydca_lib.reproduce", "--profile", s["profile"], "--only", s["notebook"],
                   "--video", s["video"]] + [a for k, v in s["overrides"].items() for a in ("-p", f"{k}={v}")]
            f.flush()
            subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT,
                           env={**os.environ, "OMP_NUM_THREADS": str(threads)})
        elif job.kind == "prepare":
            from .params import PatchParams
            from .pipeline import patch_data

            data = patch_data(PatchParams.pick(job.spec))
            info = {"frames": len(data.frame_table), "patches": len(data.manifest)}
        elif job.kind == "probe":
            info = _probe(job.spec, attempt)
        else:
            raise ValueError(f"unknown job kind {job.kind!r}")
        print(f"=== done in {time.perf_counter() - start:.1f} s", flush=True)
    return {"job": job.name, "status": "done", "seconds": round(time.perf_counter() - start, 1),
            "attempt": attempt, **info}


def _log_tail(job: Job, lines: int = 15) -> str:
    log = log_dir() / f"{job.key}.log"
    return "\n".join(log.read_text().splitlines()[-lines:]) if log.exists() else "(no log)"


# ---------------------------------------------------------------- the sweep

def local_cluster(workers: int, dashboard: bool = False, gpu: bool = False):
    """A LocalCluster of ``workers`` processes with one job slot each, bound to 127.0.0.1 only."""
    from distributed import LocalCluster

    return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                        dashboard_address="127.0.0.1:8787" if dashboard else None,
                        resources={"GPU": 1} if gpu else None, silence_logs=40)


def run_sweep(jobs: list[Job], client, threads: int = 1, retries: int = 2, echo=print) -> dict:
    """Submit every job not yet done, wait for all, report. Returns ``{"results": [...],
    "failed": [{"job", "error", "log"}], "skipped": n}``; never raises for a failed job."""
    from distributed import as_completed

    for j in jobs:
        _attempt_marker(j).unlink(missing_ok=True)
    todo = [j for j in jobs if not j.done()]
    skipped = len(jobs) - len(todo)
    echo(f"sweep: {len(jobs)} jobs, {skipped} already done, {len(todo)} to run")
    run_id = uuid.uuid4().hex[:8]  # Dask keys are unique per sweep; the job key names the cell and its log
    results, failed = [], []
    for phase in sorted({j.phase for j in todo}):
        futures = {client.submit(run_job, j, threads, key=f"{j.key}-{run_id}", retries=retries, pure=False,
                                 resources={"GPU": 1} if j.gpu else None): j for j in todo if j.phase == phase}
        for fut in as_completed(list(futures)):
            job = futures[fut]
            if fut.status == "finished":
                results.append(fut.result())
            else:
                exc = fut.exception()
                failed.append({"job": job.name, "key": job.key, "error": f"{type(exc).__name__}: {exc}",
                               "log": _log_tail(job)})
            echo(f"  [{len(results)} done, {len(failed)} failed, {len(todo) - len(results) - len(failed)} remaining] "
                 f"{job.name}: {'ok' if fut.status == 'finished' else 'FAILED'}")
    for f in failed:
        echo(f"FAILED {f['job']} ({f['error']}); log tail:\n{f['log']}")
    return {"results": results, "failed": failed, "skipped": skipped}


def _parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m dydca_lib.sweep", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--grid", choices=GRIDS, required=True)
    ap.add_argument("--video", help="your clip (as reproduce --video) for the comparison/budget grids")
    ap.add_argument("-p", dest="overrides", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--notebook", help="--grid notebooks: the notebook (e.g. 01)")
    ap.add_argument("--videos", nargs="*", default=[], help="--grid notebooks: one run per clip")
    ap.add_argument("--scheduler", help="tcp://HOST:8786 of an existing cluster (default: a LocalCluster on 127.0.0.1)")
    ap.add_argument("--workers", type=int, default=0, help="LocalCluster workers (default: cores // threads-per-job)")
    ap.add_argument("--threads-per-job", type=int, default=1)
    ap.add_argument("--retries", type=int, default=2)
    ap.add_argument("--gpu-jobs", action="store_true", help="training jobs ask for a worker resource GPU=1")
    ap.add_argument("--dashboard", action="store_true", help="LocalCluster dashboard on 127.0.0.1:8787")
    ap.add_argument("--dry-run", action="store_true", help="list the jobs and which are done; run nothing")
    return ap.parse_args(argv)


def build_jobs(a) -> list[Job]:
    from .overrides import parse_param
    from .profiles import parameter_types

    overrides = dict(parse_param(p, parameter_types()) for p in a.overrides)
    if a.grid == "comparison":
        return comparison_jobs(a.profile, a.video, overrides, a.gpu_jobs)
    if a.grid == "budget":
        return budget_jobs(a.profile, a.video, overrides, a.gpu_jobs)
    if a.grid == "rate_quality":
        return rate_quality_jobs(a.profile, a.video, overrides, a.gpu_jobs)
    if a.grid == "notebooks":
        if not a.notebook:
            raise SystemExit("--grid notebooks needs --notebook")
        return notebook_jobs(a.profile, a.notebook, a.videos, overrides)
    return probe_jobs()


def main(argv=None) -> int:
    a = _parse_args(argv)
    jobs = build_jobs(a)
    if a.dry_run:
        for j in jobs:
            print(f"{'done' if j.done() else 'todo'}  {j.key}  {j.name}")
        return 0
    from distributed import Client

    cluster = None
    if a.scheduler:
        client = Client(a.scheduler)
    else:
        workers = a.workers or max(1, (os.cpu_count() or 1) // max(1, a.threads_per_job))
        import torch

        cluster = local_cluster(workers, a.dashboard, gpu=torch.cuda.is_available())
        client = Client(cluster)
    try:
        if client.dashboard_link and (a.dashboard or a.scheduler):
            print(f"dashboard: {client.dashboard_link}")
        report = run_sweep(jobs, client, a.threads_per_job, a.retries)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    out = data_dir() / "sweeps" / f"{a.grid}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"args": vars(a), "jobs": [asdict(j) | {"key": j.key} for j in jobs], **report},
                              indent=2, default=str))
    print(f"sweep report: {out}")
    return 1 if report["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
