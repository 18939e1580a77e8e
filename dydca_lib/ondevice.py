"""On-device benchmark of every method on every runtime: the full-frame pipeline, per frame.

What a client does with one LR frame, timed end to end: cut it into the method's patches
(its routing map), run each patch through its model or path, stitch the SR frame. The methods
are the objects of :mod:`dydca_lib.methods`; each is reduced to *units* — the networks a
manifest's ``path`` names: Dy-DCA's paths, STDO's k bin models, one model per chunk, one model
per video (:func:`method_units`). Runtimes (:data:`RUNTIMES`):

* ``torch_ref`` — PyTorch eager the way the paper's code runs: the model as trained (weight norm
  live), ``torch.no_grad``, one patch per call, Python routing (Dy-DCA: ``model.route(h, w)``);
* ``torch_batched`` — PyTorch eager, weight norm folded, one call per (patch shape, path);
* ``onnxruntime`` — each unit exported with ``torch.onnx.export`` (dynamic batch/H/W), one
  ``InferenceSession`` per unit, ``threads`` intra-op threads, one call per (shape, path);
* ``torch_ref_cuda`` / ``torch_batched_cuda`` — the same two on a CUDA GPU when one is present:
  the same bundle files, models moved to the GPU at load; frames and SR frames stay in host memory,
  so every call's copies to and from the GPU are part of the frame's latency;
* ``tvm`` — the static build of :class:`dydca_lib.compile.CompiledDynamicSR` (one static, fused,
  memory-planned function per (architecture, patch shape, batch bucket); ``tuned=True`` applies
  the committed database under ``tuning/`` and warns without one), exported as a shared library
  and run by the TVM *runtime* (no compiler); units of the same architecture share its functions
  and differ only in the weights passed in.

Every runtime loads its units from a **deployment bundle** on disk (:func:`export_bundle`), as a
client would receive them; the same engine code (:func:`make_engine`) runs in this process for
timing and in a fresh process for memory (:func:`measure_memory`). Multi-model methods either
keep all units resident (STDO: every frame needs all of them) or *switch* (one model per chunk:
at a chunk boundary the client drops the old model and loads the next; the load is part of
that frame's latency and is reported apart as ``switch_ms``).

This module imports only NumPy at the top: the memory child process of the ONNX Runtime and TVM
configurations never imports PyTorch (TVM's runtime is loaded with ``TVM_USE_RUNTIME_LIB=1``,
the deployment configuration; ``tvm_ffi`` would otherwise import torch if installed).
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
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
PAPER = {"speedup": 1.7, "memory_saving": 1.61, "fps_1080p_phone": 33.0}


# ---------------------------------------------------------------- machine

def machine(threads: int) -> dict:
    """CPU model, cores this process may use and the thread count every runtime was given."""
    from .runinfo import cpu_model

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return {"cpu": cpu_model(), "cores": cores, "threads": int(threads)}


def sgemm_peak(n: int = 2048, repeats: int = 5, threads: int | None = None) -> dict:
    """This CPU's float32 matrix-multiply throughput: ``torch.mm`` of two ``n x n`` matrices.

    Returns the best (``peak_gflops``) and median GFLOP/s over ``repeats`` timed calls (one
    untimed warm-up), with the thread count: the ceiling of the compute roofline.
    """
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(n, n, generator=g), torch.rand(n, n, generator=g)
    torch.mm(a, b)
    secs = []
    for _ in range(int(repeats)):
        t0 = time.perf_counter()
        torch.mm(a, b)
        secs.append(time.perf_counter() - t0)
    flop = 2.0 * n ** 3
    return {"n": n, "peak_gflops": flop / min(secs) / 1e9, "median_gflops": flop / statistics.median(secs) / 1e9,
            "repeats": int(repeats), "threads": torch.get_num_threads()}


def wdsr_flops(config: dict, h: int, w: int) -> float:
    """FLOPs (2 x multiply-adds) of one WDSR path on one ``h x w`` LR input: its convolutions
    (head, blocks, tail, 5x5 skip); biases, ReLU, additions and PixelShuffle are left out."""
    c, f, e = config.get("n_colors", 3), config["n_feats"], config["expansion"]
    s, b = config["scale"], config["n_blocks"]
    out = c * s * s
    macs_per_px = 9 * c * f + b * (9 * f * f * e * 2) + 9 * f * out + 25 * c * out
    return 2.0 * macs_per_px * h * w


# ---------------------------------------------------------------- frames and routing maps

@dataclass
class FramePlan:
    """One frame's routing map: patch boxes (LR px) and the unit (``path``) each goes to."""

    y: np.ndarray
    x: np.ndarray
    h: np.ndarray
    w: np.ndarray
    path: np.ndarray

    @classmethod
    def from_manifest(cls, m) -> "FramePlan":
        path = m["path"].to_numpy() if "path" in m else np.zeros(len(m), dtype=np.int64)
        return cls(*(m[k].to_numpy().astype(np.int64) for k in ("y", "x", "h", "w")), path.astype(np.int64))

    def __len__(self) -> int:
        return len(self.y)

    def arrays(self, prefix: str) -> dict:
        return {f"{prefix}_{k}": getattr(self, k) for k in ("y", "x", "h", "w", "path")}

    @classmethod
    def from_arrays(cls, arrays, prefix: str) -> "FramePlan":
        return cls(*(np.asarray(arrays[f"{prefix}_{k}"]) for k in ("y", "x", "h", "w", "path")))


def plans_from_manifest(manifest, frame_ids) -> dict[int, FramePlan]:
    """One :class:`FramePlan` per frame id, in the manifest's row order."""
    by = dict(tuple(manifest.groupby("frame")))
    return {int(i): FramePlan.from_manifest(by[int(i)]) for i in frame_ids}


def resolution_hw(lr_height: int) -> tuple[int, int]:
    """A 16:9 LR frame of ``lr_height`` rows (width even): 540 -> (540, 960)."""
    h = int(lr_height)
    return h, int(round(h * 16 / 9 / 2)) * 2


def upscaled_frames(frames: dict[int, np.ndarray], hw: tuple[int, int], kernel: str = "pil") -> dict[int, np.ndarray]:
    """Real LR frames resized (bicubic) to ``hw``: stand-ins for a larger LR video of the same content."""
    from .video import bicubic_resize

    return {i: bicubic_resize(f, hw, kernel) for i, f in frames.items()}


def scaled_geometry(geom, hw: tuple[int, int], patch_size: int = 0, grid_rows: int = 10, grid_cols: int = 20):
    """The patch geometry of an ``hw`` LR frame under the same rules as ``geom``: the same fixed
    patch side when ``patch_size`` is set, else the same ``grid_rows x grid_cols`` fine grid; same
    levels and border policy."""
    from .patches import PatchGeometry

    if patch_size:
        return PatchGeometry(hw[0], hw[1], patch_size, patch_size, geom.levels, geom.policy)
    return PatchGeometry.from_grid(hw, grid_rows, grid_cols, geom.levels, geom.policy)


def transfer_manifest(manifest, src_geom, dst_geom):
    """A method's per-frame manifest carried to another frame size (``dst_geom``).

    Top-down over ``dst_geom``'s levels: a destination cell is a leaf when the source leaf that
    contains the cell's centre (in relative frame coordinates) is at the same or a coarser level,
    else it is split into its 2x2 children. With the same grid on both sizes (``grid_rows`` x
    ``grid_cols``) this copies every split decision and STDO bin exactly. The ``path`` of a leaf
    is the source leaf's path at the same level; where a coarser source leaf is met (only with
    non-aligned grids) it is ``levels - 1 - level``, Dy-DCA's size routing. Returns
    ``frame, y, x, h, w, level, path``.
    """
    import pandas as pd

    L = dst_geom.levels
    if src_geom.levels != L:
        raise ValueError(f"source has {src_geom.levels} levels, destination {L}")
    m = manifest if "level" in manifest else manifest.assign(level=L - 1)
    m = m if "path" in m else m.assign(path=0)
    sh, sw = src_geom.lr_h, src_geom.lr_w
    cells = [dst_geom.cells(level) for level in range(L)]
    rows = []
    for frame, g in m.groupby("frame", sort=True):
        leaf = np.full((sh, sw), -1, dtype=np.int64)
        for k, (y, x, h, w) in enumerate(g[["y", "x", "h", "w"]].itertuples(index=False)):
            leaf[y:y + h, x:x + w] = k
        if (leaf < 0).any():
            raise ValueError(f"frame {frame}: the source manifest does not cover the frame")
        lv, pa = g.level.to_numpy(), g.path.to_numpy()

        def src_leaf(c):
            cy = np.clip(((c.y + c.h / 2) * sh / dst_geom.lr_h).astype(int), 0, sh - 1)
            cx = np.clip(((c.x + c.w / 2) * sw / dst_geom.lr_w).astype(int), 0, sw - 1)
            return leaf[cy.to_numpy(), cx.to_numpy()]

        alive = cells[0]
        for level in range(L):
            k = src_leaf(alive)
            stop = (lv[k] <= level) | (level == L - 1)
            here = alive[stop]
            kk = k[stop]
            path = np.where(lv[kk] == level, pa[kk], L - 1 - level)
            rows.append(pd.DataFrame({"frame": int(frame), "y": here.y.to_numpy(), "x": here.x.to_numpy(),
                                      "h": here.h.to_numpy(), "w": here.w.to_numpy(), "level": level, "path": path}))
            if level == L - 1:
                break
            split = alive[~stop]
            ch, cw = dst_geom.cell_size(level + 1)
            nxt = cells[level + 1]
            key = set(zip(split.y, split.x))
            ph, pw = dst_geom.cell_size(level)
            alive = nxt[[(y - y % ph, x - x % pw) in key for y, x in zip(nxt.y, nxt.x)]]
    out = pd.concat(rows, ignore_index=True)
    return out.sort_values(["frame", "y", "x"], kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------- methods -> units

def method_units(method) -> dict:
    """The networks a prepared method's manifests name by ``path``: ``{path: WDSR}``.

    Dy-DCA: its dynamic model's paths; STDO: one model per bin; per-chunk: one per chunk;
    per-video: its one model. Trained methods only (bicubic and the general model have no units here).
    """
    from .models import DynamicWDSR

    models = getattr(method, "_models", None)
    if not models:
        raise ValueError(f"{method.name}: not a trained method (or not prepared)")
    if len(models) == 1 and isinstance(models[0], DynamicWDSR):
        return {p: m for p, m in enumerate(models[0].paths)}
    return {int(k): m for k, m in models.items()}


def dynamic_model(method):
    """The method's DynamicWDSR (Dy-DCA), or None."""
    from .models import DynamicWDSR

    models = getattr(method, "_models", {})
    m = models.get(0) if len(models) == 1 else None
    return m if isinstance(m, DynamicWDSR) else None


def _arch_key(config: dict) -> str:
    return json.dumps({k: v for k, v in config.items() if k not in ("use_weight_norm",)}, sort_keys=True)


# ---------------------------------------------------------------- deployment bundles

def _state_file(path: Path, model) -> int:
    import torch

    from .models import model_record

    torch.save({"record": model_record(model), "state": model.state_dict()}, path)
    return path.stat().st_size


def _file_digest(paths) -> str:
    h = hashlib.sha256()
    for p in paths:
        p = Path(p)
        if p.is_file():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()[:16]


def export_onnx(wdsr, path: Path, example_hw: tuple[int, int] = (16, 16)) -> int:
    """One WDSR path (weight norm folded) to ONNX with dynamic batch, H and W (opset 17).

    Uses the TorchScript exporter (``dynamo=False``): the torch.export-based default needs
    ``onnxscript``, which this project does not install. Returns the file's bytes.
    """
    import torch

    from .models import fold_weight_norm

    plain = fold_weight_norm(wdsr).eval()
    x = torch.rand(1, 3, *example_hw)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notices
        torch.onnx.export(plain, (x,), str(path), dynamo=False, input_names=["x"], output_names=["y"],
                          opset_version=17, dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}, "y": {0: "n", 2: "H", 3: "W"}})
    return Path(path).stat().st_size


def unit_params(wdsr) -> list[np.ndarray]:
    """A path's weights (weight norm folded) in the order its TVM function takes them."""
    from .models import fold_weight_norm

    return [t.detach().cpu().numpy().astype(np.float32) for t in fold_weight_norm(wdsr).state_dict().values()]


def _tvm_library(units: dict, plans: dict, scale: int, context: int, max_batch: int, tuned: bool,
                 cache_dir: Path, target=None, tune_trials_per_task: int = 0) -> tuple[Path, dict]:
    """Compile (or reuse from ``cache_dir``) the static TVM library for these units' architectures
    and the patch shapes of ``plans``; returns the ``.so`` and its description (architectures,
    buckets, tuning coverage). The cache key is everything that determines the code: architectures,
    shapes, target, TVM version, tuning database; never the weights (they are function inputs).
    ``tune_trials_per_task`` > 0 (with ``tuned``): first tune the kernels the committed database
    lacks (:func:`dydca_lib.compile.extend_database`, which rewrites ``tuning/<target>/``)."""
    import pandas as pd

    from . import compile as C

    target = target or C.cpu_target()
    archs, arch_of = [], {}
    for u, m in sorted(units.items()):
        k = _arch_key(m.config)
        if k not in archs:
            archs.append(k)
        arch_of[u] = archs.index(k)
    rows = [pd.DataFrame({"frame": f, "h": p.h, "w": p.w, "path": [arch_of[int(u)] for u in p.path]})
            for f, p in plans.items()]
    shapes = C.static_shapes(pd.concat(rows, ignore_index=True), context, max_batch)
    first = {a: next(u for u in sorted(units) if arch_of[u] == a) for a in range(len(archs))}
    if tuned and tune_trials_per_task > 0:
        fused = C.fuse(_static_module(units, first, shapes, scale, C), target)
        C.extend_database(fused, target, trials_per_task=tune_trials_per_task)
    db = C.tuning_dir(target)  # plain or gzipped JSON files; no database = untuned kernels
    db_hash = (_file_digest(sorted(db.glob("database_*.json*"))) if C.has_database(db) else "no-database") if tuned else "untuned"
    import tvm

    key_record = {"archs": archs, "shapes": [list(map(int, (s.path, s.h, s.w, s.batch))) for s in shapes],
                  "target": str(target), "tvm": tvm.__version__, "db": db_hash, "tuned": bool(tuned), "v": 1}
    key = hashlib.sha256(json.dumps(key_record, sort_keys=True).encode()).hexdigest()[:16]
    cache_dir.mkdir(parents=True, exist_ok=True)
    so, meta_file = cache_dir / f"tvm-{key}.so", cache_dir / f"tvm-{key}.json"
    if so.exists() and meta_file.exists():
        meta = json.loads(meta_file.read_text())
        meta["cached"] = True
    else:
        dyn = _architectures(units, first, scale)
        t0 = time.perf_counter()
        build = C.CompiledDynamicSR(dyn, shapes, target=target, tuned=tuned)
        seconds = time.perf_counter() - t0
        for a, u in first.items():
            got = [p.numpy() for p in build.params[a]]
            want = unit_params(units[u])
            if len(got) != len(want) or any(g.shape != w.shape or not np.allclose(g, w, atol=1e-6) for g, w in zip(got, want)):
                raise RuntimeError("TVM parameter order differs from the state-dict order; update unit_params")
        coverage = None
        if build.tuned:  # coverage is read on the untuned fused module (tuned kernels no longer match)
            coverage = C.database_coverage(C.fuse(_specialized(build.modules, shapes, C), target), target)
        tmp = so.with_name(f".{so.name}.{os.getpid()}.tmp.so")
        build.executable.export_library(str(tmp))
        os.replace(tmp, so)
        meta = {"archs": archs, "buckets": {f"{a},{h},{w}": b for (a, h, w), b in build.buckets.items()},
                "tuned": bool(build.tuned), "target": str(target),
                "kernels": int(len(coverage)) if coverage is not None else None,
                "kernels_tuned": int(coverage.tuned.sum()) if coverage is not None else 0,
                "build_seconds": round(seconds, 1), "functions": [s.name for s in shapes]}
        meta_file.write_text(json.dumps(meta, indent=1))
        meta["cached"] = False
    meta["arch_of"] = {str(u): a for u, a in arch_of.items()}
    return so, meta


def _architectures(units: dict, first: dict, scale: int):
    """One DynamicWDSR whose path ``a`` has the architecture (and weights) of unit ``first[a]``."""
    from .models import DynamicWDSR

    cfgs = [dict(units[first[a]].config) for a in range(len(first))]
    shared = {k: cfgs[0][k] for k in ("n_feats", "expansion")}
    paths = [{k: v for k, v in c.items() if k not in ("scale", "use_weight_norm", "n_feats", "expansion")} for c in cfgs]
    if any(c["n_feats"] != shared["n_feats"] or c["expansion"] != shared["expansion"] for c in cfgs):
        raise ValueError("units of different widths cannot share one TVM build here")
    dyn = DynamicWDSR(scale=scale, paths=paths, **shared).eval()
    for a, u in first.items():  # the real weights, to check the parameter order of the build
        dyn.paths[a].load_state_dict(_weight_norm_state(units[u], dyn.paths[a]))
    return dyn


def _specialized(modules: dict, shapes, C):
    """All static functions of ``shapes`` from each path's symbolic module, in one IRModule."""
    import tvm

    static = tvm.IRModule({})
    for a, mod in modules.items():
        for gv, f in C.specialize(mod, [s for s in shapes if s.path == a]).functions_items():
            static[gv] = f
    return static


def _static_module(units: dict, first: dict, shapes, scale: int, C):
    """The unfused static module a :class:`CompiledDynamicSR` of these shapes compiles (for tuning)."""
    dyn, modules = _architectures(units, first, scale), {}
    for a in sorted({s.path for s in shapes}):
        mine = [s for s in shapes if s.path == a]
        bounds = {"batch": (1, max(2, max(s.batch for s in mine))), "h": (2, max(s.h for s in mine)),
                  "w": (2, max(s.w for s in mine))}
        modules[a], _ = C.export_path(dyn.paths[a], (mine[0].h, mine[0].w), mine[0].batch, True, bounds)
    return _specialized(modules, shapes, C)


def _weight_norm_state(src, dst) -> dict:
    """``src``'s state for ``dst`` (both WDSR; weight norm on either side folded as needed)."""
    from .models import fold_weight_norm

    if dst.config.get("use_weight_norm", True) == src.config.get("use_weight_norm", True):
        return src.state_dict()
    return fold_weight_norm(src).state_dict()


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
    from .models import build_model, fold_weight_norm, model_record

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
        so, meta = _tvm_library(units, plans or {}, scale, context, max_batch, tuned,
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
    return int(sum(a.nbytes for a in unit_params(wdsr)))


def _default_cache() -> Path:
    from .paths import data_dir

    return data_dir() / "cache" / "tvm-ondevice"


def bundle_bytes(bundle: dict) -> int:
    """Bytes on disk of everything in a bundle (models + compiled library)."""
    files = {u["file"] for u in bundle["units"].values()}
    if "tvm" in bundle:
        files.add(bundle["tvm"]["lib"])
    return int(sum(Path(f).stat().st_size for f in files))


# ---------------------------------------------------------------- engines (one per runtime)

def _to_nchw(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray((x.astype(np.float32) / np.float32(255.0)).transpose(0, 3, 1, 2))


def _to_uint8(y: np.ndarray) -> np.ndarray:
    y = np.clip(y, 0.0, 1.0).astype(np.float32) * np.float32(255.0)
    return np.round(y).astype(np.uint8).transpose(0, 2, 3, 1)


def split_batch(n: int, buckets) -> list[tuple[int, int]]:
    """As :func:`dydca_lib.compile.split_batch` (kept here so the TVM runtime process needs no torch)."""
    buckets = sorted(set(int(b) for b in buckets))
    top = buckets[-1]
    out = [(top, top)] * (n // top)
    if n % top:
        out.append((n % top, next(b for b in buckets if b >= n % top)))
    return out


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

    def _load_file(self, f):
        from .models import build_model

        stored = self.torch.load(f, map_location="cpu", weights_only=False)
        m = build_model(stored["record"])
        m.load_state_dict(stored["state"])
        m = m.eval().to(self.device)
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
        from .models import to_tensor, to_uint8

        m = self.models[int(unit)]
        with self.torch.no_grad():
            t = to_tensor(np.ascontiguousarray(x)).to(self.device)
            return to_uint8(m(t, int(unit)) if self.routes_by_size else m(t))  # .cpu() waits for the GPU


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
        return _to_uint8(self.models[int(unit)].run(None, {"x": _to_nchw(x)})[0])


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
        t0 = time.perf_counter()
        self.vm = VirtualMachine(tvm.runtime.load_module(meta["lib"]), tvm.cpu())
        self.load_seconds = time.perf_counter() - t0
        self.arch_of = {int(u): int(a) for u, a in meta["arch_of"].items()}
        self.buckets = {tuple(int(v) for v in k.split(",")): list(b) for k, b in meta["buckets"].items()}
        self.scale = int(bundle["scale"])

    def _load(self, unit):
        with np.load(self.bundle["units"][str(unit)]["file"]) as z:
            return [self.tvm.runtime.tensor(z[f"arr_{i}"]) for i in range(len(z.files))]

    def run(self, x, unit):
        unit = int(unit)
        a, n, h, w = self.arch_of[unit], x.shape[0], x.shape[1], x.shape[2]
        key = (a, h, w)
        if key not in self.buckets:
            raise KeyError(f"the TVM library has no {w}x{h} function for unit {unit} (compiled: {sorted(self.buckets)})")
        xf, params = _to_nchw(x), self.models[unit]
        out = np.empty((n, h * self.scale, w * self.scale, 3), dtype=np.uint8)
        i = 0
        for k, b in split_batch(n, self.buckets[key]):
            chunk = xf[i:i + k]
            if b > k:
                chunk = np.concatenate([chunk, np.zeros((b - k,) + chunk.shape[1:], np.float32)])
            y = self.vm[f"p{a}_h{h}_w{w}_b{b}"](self.tvm.runtime.tensor(chunk), *params)
            if not hasattr(y, "numpy"):
                y = y[0]
            out[i:i + k] = _to_uint8(y.numpy()[:k])
            i += k
        return out


ENGINES = {"torch_ref": TorchEngine, "torch_batched": TorchEngine, "onnxruntime": OrtEngine, "tvm": TvmEngine,
           "torch_ref_cuda": TorchEngine, "torch_batched_cuda": TorchEngine}


def make_engine(bundle: dict, threads: int) -> Engine:
    return ENGINES[bundle["runtime"]](bundle, threads)


# ---------------------------------------------------------------- the full-frame pipeline

def sr_frame(engine: Engine, lr: np.ndarray, plan: FramePlan, scale: int, context: int = 0,
             one_at_a_time: bool = False) -> np.ndarray:
    """LR frame -> patches (with ``context`` LR px around each) -> units -> stitched SR frame.

    Batched: one call per (patch h, w, path), patches in plan order. ``one_at_a_time`` (the
    reference): one call per patch, in plan order, routed in Python (``engine.route`` by size for
    the dynamic model, else the plan's path). The frame covered by the plan is returned (the
    overhang of border patches dropped), as :func:`dydca_lib.patches.stitch` does.
    """
    H, W = lr.shape[:2]
    c, s = int(context), int(scale)
    hmax, wmax = int((plan.y + plan.h).max()), int((plan.x + plan.w).max())
    pad = ((c, max(0, hmax - H) + c), (c, max(0, wmax - W) + c), (0, 0))
    padded = np.pad(lr, pad, mode="edge") if any(p for pair in pad[:2] for p in pair) else lr
    out_h, out_w = min(H, hmax) * s, min(W, wmax) * s
    canvas = np.empty((hmax * s, wmax * s, lr.shape[2]), dtype=np.uint8)
    cs = c * s

    def put(sr, y, x, h, w):
        canvas[y * s:(y + h) * s, x * s:(x + w) * s] = sr[cs:cs + h * s, cs:cs + w * s]

    if one_at_a_time:
        for y, x, h, w, p in zip(plan.y, plan.x, plan.h, plan.w, plan.path):
            unit = engine.route(h, w) if engine.routes_by_size else p
            put(engine.run(padded[None, y:y + h + 2 * c, x:x + w + 2 * c], unit)[0], y, x, h, w)
    else:
        keys = np.stack([plan.h, plan.w, plan.path], axis=1)
        uniq, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        for g in np.argsort(first):
            idx = np.flatnonzero(inverse.ravel() == g)
            h, w, p = (int(v) for v in uniq[g])
            batch = np.stack([padded[plan.y[i]:plan.y[i] + h + 2 * c, plan.x[i]:plan.x[i] + w + 2 * c] for i in idx])
            sr = engine.run(batch, p)
            for i, o in zip(idx, sr):
                put(o, plan.y[i], plan.x[i], h, w)
    return canvas[:out_h, :out_w]


@dataclass
class Workload:
    """The frames a configuration runs, in order: LR frames, their plans, and each frame's chunk."""

    name: str  # e.g. "clip 360x198" or "540p"
    frames: dict
    plans: dict
    chunk_of: dict
    order: list = field(default_factory=list)

    def __post_init__(self):
        self.order = [int(i) for i in (self.order or sorted(self.frames))]

    @property
    def lr_hw(self) -> tuple[int, int]:
        return tuple(self.frames[self.order[0]].shape[:2])

    def save(self, folder: Path) -> dict:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / "frames.npz", **{f"f{i}": self.frames[i] for i in self.order})
        arrays = {}
        for i in self.order:
            arrays.update(self.plans[i].arrays(f"p{i}"))
        np.savez(folder / "plans.npz", **arrays)
        return {"name": self.name, "frames": str(folder / "frames.npz"), "plans": str(folder / "plans.npz"),
                "order": self.order, "chunk_of": {str(i): int(self.chunk_of[i]) for i in self.order}}

    @classmethod
    def load(cls, spec: dict) -> "Workload":
        order = [int(i) for i in spec["order"]]
        with np.load(spec["frames"]) as f, np.load(spec["plans"]) as p:
            frames = {i: f[f"f{i}"] for i in order}
            plans = {i: FramePlan.from_arrays(p, f"p{i}") for i in order}
        return cls(spec["name"], frames, plans, {int(k): v for k, v in spec["chunk_of"].items()}, order)


def clip_label(lr_hw: tuple[int, int]) -> str:
    return f"clip {lr_hw[1]}x{lr_hw[0]}"


def resolution_label(lr_hw: tuple[int, int], scale: int) -> str:
    h, w = lr_hw
    return f"{h}p {w}x{h}->{w * scale}x{h * scale}"


def method_workloads(method, data, frame_ids, lr_heights=(), patch_size: int = 0, grid_rows: int = 10,
                     grid_cols: int = 20, kernel: str = "pil") -> list[Workload]:
    """The frames a prepared method runs: the clip's own LR frames with the method's frame
    manifests (:meth:`~dydca_lib.methods.Method.frame_manifest`), then one workload per LR height
    in ``lr_heights`` (16:9): the same frames resized (bicubic) to that size, with the manifests
    carried over by :func:`transfer_manifest` onto the geometry the same rules give there
    (:func:`scaled_geometry`); whole-frame methods get one whole-frame patch per frame."""
    from .methods import whole_frame_manifest

    ids = [int(i) for i in frame_ids]
    ft = data.frame_table.set_index("frame")
    chunk_of = {i: int(ft.loc[i, "chunk"]) for i in ids}
    frames = {i: data.frames.lr(i) for i in ids}
    manifest = method.frame_manifest(ids)
    out = [Workload(clip_label(data.frames.lr_hw), frames, plans_from_manifest(manifest, ids), chunk_of, ids)]
    lr_h, lr_w = data.frames.lr_hw
    whole = bool(((manifest.h == lr_h) & (manifest.w == lr_w) & (manifest.y == 0) & (manifest.x == 0)).all())
    for height in lr_heights:
        hw = resolution_hw(height)
        if whole:
            paths = dict(zip(manifest.frame, manifest.path)) if "path" in manifest else {}
            m = whole_frame_manifest(ids, hw, lambda i: paths.get(i, 0))
        else:
            m = transfer_manifest(manifest, data.geom, scaled_geometry(data.geom, hw, patch_size, grid_rows, grid_cols))
        out.append(Workload(resolution_label(hw, data.frames.scale), upscaled_frames(frames, hw, kernel),
                            plans_from_manifest(m, ids), chunk_of, ids))
    return out


def size_routing(workload: Workload) -> dict:
    """``{(h, w): path}`` of a workload whose paths are routed by patch size (Dy-DCA)."""
    table = {}
    for p in workload.plans.values():
        for h, w, u in zip(p.h, p.w, p.path):
            if table.setdefault((int(h), int(w)), int(u)) != int(u):
                raise ValueError(f"{w}x{h} patches go to several paths: not routed by size")
    return table


def switches(units: dict, workload: Workload) -> bool:
    """Whether a client of this method switches models: it has several and each frame needs only one
    (one model per chunk). STDO's frames need all k models at once: they stay resident."""
    return len(units) > 1 and all(len(np.unique(p.path)) == 1 for p in workload.plans.values())


class Client:
    """One configuration (method x runtime x workload) as a client runs it, frame after frame.

    ``switching=False``: every unit the workload uses is loaded up front (``startup_s``).
    ``switching=True`` (one model per chunk): only the units of the current frame are resident;
    when a frame needs others, the old ones are dropped and the new ones loaded, inside that
    frame's latency (``switch_ms``).
    """

    def __init__(self, bundle: dict, workload: Workload, threads: int, switching: bool = False,
                 one_at_a_time: bool = False):
        self.workload, self.switching = workload, switching
        self.one_at_a_time = one_at_a_time or bundle["runtime"] in ("torch_ref", "torch_ref_cuda")
        t0 = time.perf_counter()
        self.engine = make_engine(bundle, threads)
        self.scale, self.context = int(bundle["scale"]), int(bundle["context"])
        self.units = sorted({int(u) for p in workload.plans.values() for u in np.unique(p.path)})
        if not switching:
            for u in self.units:
                self.engine.load(u)
        self.startup_s = time.perf_counter() - t0

    def frame(self, i: int) -> tuple[np.ndarray, float, float]:
        """SR frame ``i``: ``(sr, switch_ms, compute_ms)``."""
        plan = self.workload.plans[i]
        switch_ms = 0.0
        if self.switching:
            t0 = time.perf_counter()
            need = {int(u) for u in np.unique(plan.path)}
            if need != self.engine.loaded:
                for u in self.engine.loaded - need:
                    self.engine.unload(u)
                for u in sorted(need - self.engine.loaded):
                    self.engine.load(u)
                switch_ms = (time.perf_counter() - t0) * 1e3
        t1 = time.perf_counter()
        sr = sr_frame(self.engine, self.workload.frames[i], plan, self.scale, self.context, self.one_at_a_time)
        return sr, switch_ms, (time.perf_counter() - t1) * 1e3

    def run(self, passes: int = 1, warmup: int = 1, budget_s: float | None = None) -> list[dict]:
        """``warmup`` untimed frames (the first frames of the order), then ``passes`` timed passes over
        the frames in order. With ``budget_s``, timing stops once the timed frames have taken that
        long (at least one frame is always timed); ``frames_timed`` in the summary says how many ran."""
        order = self.workload.order
        self.first_output = None  # (frame id, SR) of the first frame run, for output checks
        for k in range(int(warmup)):
            sr, _, _ = self.frame(order[k % len(order)])
            if self.first_output is None:
                self.first_output = (order[0], sr)
        rows, spent = [], 0.0
        for k in range(int(passes)):
            for pos, i in enumerate(order):
                if budget_s is not None and rows and spent > budget_s:
                    return rows
                sr, sw, comp = self.frame(i)
                if self.first_output is None:
                    self.first_output = (i, sr)
                spent += (sw + comp) / 1e3
                rows.append({"pass": k, "position": pos, "frame": i, "chunk": self.workload.chunk_of[i],
                             "switch_ms": sw, "compute_ms": comp, "total_ms": sw + comp})
        return rows


# ---------------------------------------------------------------- timing, switching, memory

def frame_flops(units: dict, plan: FramePlan, context: int) -> float:
    """Useful FLOPs of one frame: every patch (with context) through its unit, no padding."""
    total = 0.0
    for u, h, w in zip(plan.path, plan.h, plan.w):
        total += wdsr_flops(units[int(u)].config, int(h) + 2 * context, int(w) + 2 * context)
    return total


def latency_summary(rows, flops_per_frame: float, peak_gflops: float | None = None) -> dict:
    """Median/p95/mean per-frame latency, FPS (frames / total time), switch share, achieved GFLOP/s
    (useful FLOPs / median compute time) and its share of the sgemm peak."""
    total = np.array([r["total_ms"] for r in rows], dtype=float)
    comp = np.array([r["compute_ms"] for r in rows], dtype=float)
    sw = np.array([r["switch_ms"] for r in rows], dtype=float)
    med_c = float(np.median(comp))
    out = {"frames_timed": len(rows), "median_ms": float(np.median(total)), "p95_ms": float(np.percentile(total, 95)),
           "mean_ms": float(total.mean()), "fps": float(1e3 / total.mean()), "median_compute_ms": med_c,
           "switch_ms_total": float(sw.sum()), "switches": int((sw > 0).sum()),
           "gflop_per_frame": flops_per_frame / 1e9, "achieved_gflops": flops_per_frame / med_c / 1e6}
    out["share_of_sgemm_peak"] = out["achieved_gflops"] / peak_gflops if peak_gflops else float("nan")
    return out


def switch_cost(bundle: dict, units, threads: int, repeats: int = 3) -> dict:
    """Model load cost from the bundle's files: one unit (median over ``repeats`` loads of each,
    what a switch at a chunk border costs) and all units into an empty engine (median over
    ``repeats``: a resident method's start-up), plus the runtime's own start-up (TVM: loading the
    compiled library) and bytes per unit. Dy-DCA's reference loads its one dynamic model for any unit."""
    units = [int(u) for u in units]
    eng = make_engine(bundle, threads)
    one, every = [], []
    for _ in range(int(repeats)):
        for u in units:
            one.append(eng.load(u))
            eng.unload(u)
        every.append(sum(eng.load(u) for u in units))
        for u in units:
            eng.unload(u)
    per = [bundle["units"][str(u)] for u in units]
    return {"load_ms_median": 1e3 * statistics.median(one), "load_ms_max": 1e3 * max(one),
            "load_all_ms": 1e3 * statistics.median(every), "runtime_init_ms": 1e3 * getattr(eng, "load_seconds", 0.0),
            "unit_file_bytes": int(np.mean([p["bytes"] for p in per])),
            "unit_weight_bytes": int(np.mean([p["weight_bytes"] for p in per]))}


# ---------------------------------------------------------------- configurations and their tables

METHOD_KEYS = ("dydca", "stdo", "per_chunk", "per_video")


def make_methods(keys, *, stdo_k: int = 2, model_blocks: int = 4, path_blocks=(4, 2), **kw) -> dict:
    """The benchmarked methods by key (:data:`METHOD_KEYS`), built as notebook 04 builds them
    (``kw``: n_feats, expansion, epochs, batch_size, context, lr, seed), not yet prepared."""
    from . import methods as M

    make = {"dydca": lambda: M.DyDCA(path_blocks=list(path_blocks), n_blocks=model_blocks, **kw),
            "stdo": lambda: M.STDO(k=stdo_k, n_blocks=model_blocks, **kw),
            "per_chunk": lambda: M.PerChunk(n_blocks=model_blocks, **kw),
            "per_video": lambda: M.PerVideo(n_blocks=model_blocks, **kw)}
    unknown = [k for k in keys if k not in make]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {list(make)}")
    return {k: make[k]() for k in keys}


@dataclass
class Config:
    """One benchmarked configuration: a method's units and workload on one runtime."""

    key: str
    method: str
    runtime: str
    resolution: str
    bundle: dict
    workload: Workload
    units: dict
    switching: bool
    context: int


def build_configs(methods: dict, workloads: dict, runtimes, hd_runtimes, clip_resolution: str, folder: Path, *,
                  scale: int, max_batch: int = 16, tuned: bool = True, tune_trials_per_task: int = 0) -> list[Config]:
    """Export a bundle for every (method, workload, runtime): every runtime at the clip's size,
    ``hd_runtimes`` (among ``runtimes``) at the other sizes. ``workloads``: ``{(key, resolution): Workload}``.
    ``tune_trials_per_task`` > 0 tunes the TVM kernels the committed database lacks (see :func:`export_bundle`)."""
    out = []
    for (key, res), wl in workloads.items():
        m = methods[key]
        units, dyn = method_units(m), dynamic_model(m)
        for rt in runtimes:
            if res != clip_resolution and rt not in hd_runtimes:
                continue
            b = export_bundle(units, rt, Path(folder) / f"{key}-{len(out):02d}-{rt}", scale=scale, context=m.context,
                              plans=wl.plans, dynamic=dyn, routing=size_routing(wl) if dyn is not None else None,
                              max_batch=max_batch, tuned=tuned, tune_trials_per_task=tune_trials_per_task)
            out.append(Config(key, m.name, rt, res, b, wl, units, switches(units, wl), m.context))
    return out


def _with_machine(df, machine_info: dict):
    return df.assign(cpu=machine_info["cpu"], cores=machine_info["cores"], threads=machine_info["threads"])


def workload_table(configs: list[Config]):
    """One row per (method, resolution): LR size, patches per frame, patch shapes, units, GFLOP per frame."""
    import pandas as pd

    rows, seen = [], set()
    for c in configs:
        if (c.key, c.resolution) in seen:
            continue
        seen.add((c.key, c.resolution))
        wl = c.workload
        shapes = sorted({(int(h), int(w)) for p in wl.plans.values() for h, w in zip(p.h, p.w)})
        rows.append({"method": c.method, "resolution": c.resolution, "lr": f"{wl.lr_hw[1]}x{wl.lr_hw[0]}",
                     "frames": len(wl.order), "networks": len(c.units), "switches_models": c.switching,
                     "patches_per_frame": float(np.mean([len(p) for p in wl.plans.values()])),
                     "patch_shapes_lr": " ".join(f"{w}x{h}" for h, w in shapes),
                     "gflop_per_frame": float(np.mean([frame_flops(c.units, p, c.context) for p in wl.plans.values()])) / 1e9})
    return pd.DataFrame(rows)


def artifact_table(configs: list[Config]):
    """What each client receives and how the TVM library was built (tuned kernels, build seconds)."""
    import pandas as pd

    rows = []
    for c in configs:
        t = c.bundle.get("tvm", {})
        rows.append({"method": c.method, "runtime": c.runtime, "resolution": c.resolution, "files": len(
            {u["file"] for u in c.bundle["units"].values()}) + (1 if t else 0), "bundle_bytes": bundle_bytes(c.bundle),
            "weight_bytes": int(sum(u["weight_bytes"] for u in c.bundle["units"].values())),
            "tvm_functions": str(len(t["functions"])) if t else "",
            "tvm_tuned": str(t["tuned"]) if t else "",
            "tvm_kernels_tuned": (f"{t['kernels_tuned']}/{t['kernels']}" if t.get("kernels") else "0") if t else "",
            "tvm_build_s": str(t["build_seconds"]) if t else "", "tvm_cached": str(t["cached"]) if t else ""})
    return pd.DataFrame(rows)


def check_outputs(configs: list[Config], methods: dict, outputs: list):
    """Each configuration's SR of its first frame (``outputs``: ``(frame id, SR)`` per configuration,
    from :func:`time_configs`) against the evaluation path of notebooks 03/04
    (:func:`dydca_lib.evaluate.super_resolve_patches` + :func:`dydca_lib.patches.stitch` with the
    method's PyTorch upscaler): max abs difference and share of differing values (8-bit)."""
    import pandas as pd

    from .evaluate import super_resolve_patches
    from .patches import stitch

    refs, rows = {}, []
    for c, (i, got) in zip(configs, outputs):
        wl = c.workload
        p = wl.plans[i]
        if (c.key, c.resolution, i) not in refs:
            man = pd.DataFrame({"y": p.y, "x": p.x, "h": p.h, "w": p.w, "path": p.path})
            lr, s = wl.frames[i], int(c.bundle["scale"])
            sr = super_resolve_patches(methods[c.key].upscaler(), lr, man, s, c.context)
            covered = (min(lr.shape[0], int((p.y + p.h).max())) * s, min(lr.shape[1], int((p.x + p.w).max())) * s)
            refs[(c.key, c.resolution, i)] = stitch(sr, man, covered, s)
        want = refs[(c.key, c.resolution, i)]
        d = np.abs(got.astype(int) - want.astype(int))
        rows.append({"method": c.method, "runtime": c.runtime, "resolution": c.resolution, "frame": i,
                     "max_abs_diff": int(d.max()), "share_differing": float((d > 0).mean())})
    return pd.DataFrame(rows)


def time_configs(configs: list[Config], threads: int, passes: int = 1, warmup: int = 1,
                 budget_s: float | None = None, progress: bool = True):
    """Time every configuration, one after another in this process (:meth:`Client.run`).

    Returns ``(per_frame, startup, outputs)``: per-frame rows (method, runtime, resolution, pass,
    frame, chunk, switch/compute/total ms), the start-up seconds of each client (making its
    resident models ready) and each client's first SR frame ``(frame id, SR)`` (the warm-up frame;
    for :func:`check_outputs`)."""
    import pandas as pd
    from tqdm.auto import tqdm

    frames, startup, outputs = [], [], []
    for c in tqdm(configs, desc="time configurations", disable=not progress):
        client = Client(c.bundle, c.workload, threads, c.switching)
        rows = client.run(passes, warmup, budget_s)
        frames.append(pd.DataFrame(rows).assign(method=c.method, runtime=c.runtime, resolution=c.resolution))
        startup.append(client.startup_s)
        outputs.append(client.first_output)
        del client
    cols = ["method", "runtime", "resolution", "pass", "position", "frame", "chunk", "switch_ms", "compute_ms", "total_ms"]
    return pd.concat(frames, ignore_index=True)[cols], startup, outputs


def latency_table(configs: list[Config], per_frame, startup, sgemm: dict, machine_info: dict):
    """One row per configuration: latency (median, p95, mean), FPS, switches, GFLOP per frame,
    achieved GFLOP/s and its share of the sgemm peak, client start-up, and the machine."""
    import pandas as pd

    rows = []
    for c, st in zip(configs, startup):
        d = per_frame[(per_frame.method == c.method) & (per_frame.runtime == c.runtime) & (per_frame.resolution == c.resolution)]
        flops = float(np.mean([frame_flops(c.units, c.workload.plans[int(i)], c.context) for i in d.frame]))
        lr_h, lr_w = c.workload.lr_hw
        rows.append({"method": c.method, "runtime": c.runtime, "resolution": c.resolution,
                     "lr_megapixels": lr_h * lr_w / 1e6,
                     **latency_summary(d.to_dict("records"), flops, sgemm["peak_gflops"]),
                     "startup_ms": st * 1e3, "sgemm_peak_gflops": sgemm["peak_gflops"]})
    return _with_machine(pd.DataFrame(rows), machine_info)


def switching_table(configs: list[Config], per_frame, threads: int, repeats: int = 3, resolution: str | None = None):
    """Model load/switch cost and resident model bytes of every configuration (at ``resolution``):
    per-unit load (a switch), all units (a resident method's start-up), the runtime's own start-up,
    the switches seen in the timed frames and their mean cost."""
    import pandas as pd

    rows = []
    for c in configs:
        if resolution is not None and c.resolution != resolution:
            continue
        units = sorted(c.units)
        cost = switch_cost(c.bundle, units, threads, repeats)
        d = per_frame[(per_frame.method == c.method) & (per_frame.runtime == c.runtime) & (per_frame.resolution == c.resolution)]
        seen = d[d.switch_ms > 0]
        resident = cost["unit_weight_bytes"] * (1 if c.switching else len(units))
        rows.append({"method": c.method, "runtime": c.runtime, "resolution": c.resolution, "networks": len(units),
                     "switching": c.switching, **cost, "resident_weight_bytes": int(resident),
                     "switches_timed": len(seen), "switch_ms_in_sequence": float(seen.switch_ms.mean()) if len(seen) else np.nan})
    return pd.DataFrame(rows)


def memory_table(configs: list[Config], folder: Path, threads: int, machine_info: dict, frames: int = 1,
                 resolutions=None, progress: bool = True):
    """Peak RSS of each configuration (at ``resolutions``, default all) in its own fresh process
    (:func:`measure_memory`), with the RSS after the interpreter, the runtime import and the model
    load, the resident weights and bundle bytes."""
    import pandas as pd
    from tqdm.auto import tqdm

    rows, specs = [], {}
    todo = [c for c in configs if resolutions is None or c.resolution in resolutions]
    for c in tqdm(todo, desc="memory (fresh processes)", disable=not progress):
        key = (c.key, c.resolution)
        if key not in specs:
            specs[key] = c.workload.save(Path(folder) / f"workload-{c.key}-{len(specs):02d}")
        r = measure_memory(c.bundle, specs[key], threads, c.switching, frames)
        units = sorted(c.units)
        resident = (1 if c.switching else len(units)) * float(np.mean([c.bundle["units"][str(u)]["weight_bytes"] for u in units]))
        mib = 2.0 ** 20
        rows.append({"method": c.method, "runtime": c.runtime, "resolution": c.resolution, "frames_run": frames,
                     "peak_rss_mib": r["peak_rss_bytes"] / mib, "rss_start_mib": r["rss_start_bytes"] / mib,
                     "rss_runtime_mib": r["rss_runtime_bytes"] / mib, "rss_loaded_mib": r["rss_loaded_bytes"] / mib,
                     "above_runtime_mib": (r["peak_rss_bytes"] - r["rss_runtime_bytes"]) / mib,
                     "resident_weight_kib": resident / 1024, "bundle_kib": bundle_bytes(c.bundle) / 1024,
                     "torch_in_process": r["torch_imported"], "process_s": r["wall_s"]})
    df = pd.DataFrame(rows)
    return _with_machine(df, machine_info)


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # pragma: no cover - not Linux
        import psutil

        return psutil.Process().memory_info().rss


def _peak_rss_bytes() -> int:
    """This process's peak RSS: ``VmHWM`` of ``/proc/self/status``.

    Not ``getrusage(RUSAGE_SELF).ru_maxrss``: Linux carries the parent's high-water mark into a
    child across fork + exec (a child of a 2 GB Jupyter kernel reports >= 2 GB), while ``VmHWM``
    belongs to the child's own address space. ``ru_maxrss`` is the fallback where /proc is missing.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r) * (1 if sys.platform == "darwin" else 1024)


_PEAK_SNIPPET = """
import json as _j
def _peak():
    try:
        for _l in open('/proc/self/status'):
            if _l.startswith('VmHWM:'):
                return int(_l.split()[1]) * 1024
    except OSError:
        pass
    import resource as _r, sys as _s
    return _r.getrusage(_r.RUSAGE_SELF).ru_maxrss * (1 if _s.platform == 'darwin' else 1024)
print(_j.dumps({'peak_rss_bytes': _peak()}))
"""


def fresh_process(code: str, env: dict | None = None, timeout: float = 900.0) -> dict:
    """Run ``code`` in a fresh ``python -c`` process and return the JSON objects it printed (one
    per stdout line starting with ``{``, merged), plus ``peak_rss_bytes`` (the child's own peak
    RSS, ``VmHWM``; see :func:`_peak_rss_bytes`) measured as its last statement, and ``wall_s``."""
    snippet = code + "\n" + _PEAK_SNIPPET
    full_env = {**os.environ, **(env or {})}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, env=full_env,
                          timeout=timeout, cwd=str(Path(__file__).resolve().parents[1]))
    if proc.returncode != 0:
        raise RuntimeError(f"child process failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    out = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            try:
                out.update(json.loads(line))
            except json.JSONDecodeError:
                pass
    out["wall_s"] = time.perf_counter() - t0
    return out


def _child_main(spec_file: str) -> None:
    """The memory child: import the runtime, load the bundle, run the workload; print RSS figures."""
    spec = json.loads(Path(spec_file).read_text())
    rss = {"rss_start_bytes": _rss_bytes()}
    import importlib

    runtime = spec["bundle"]["runtime"]
    importlib.import_module("torch" if runtime.startswith("torch") else runtime)
    rss["rss_runtime_bytes"] = _rss_bytes()
    workload = Workload.load(spec["workload"])
    client = Client(spec["bundle"], workload, spec["threads"], spec["switching"])
    if spec["switching"]:  # the first frame's model(s), as a switching client holds them
        for u in np.unique(workload.plans[workload.order[0]].path):
            client.engine.load(int(u))
    rss["rss_loaded_bytes"] = _rss_bytes()
    for i in workload.order[:max(1, int(spec["frames"]))]:
        client.frame(i)
    rss["peak_rss_bytes"] = _peak_rss_bytes()
    rss["torch_imported"] = bool(sys.modules.get("torch"))
    print(json.dumps(rss))


def measure_memory(bundle: dict, workload_spec: dict, threads: int, switching: bool, frames: int = 1,
                   folder: Path | None = None) -> dict:
    """Peak RSS of one configuration in a fresh process (:func:`fresh_process`): the runtime imported,
    the bundle loaded, the first ``frames`` frames of the workload run (a switching client loads
    the next chunk's model when a frame needs it). Also the RSS after the bare interpreter
    (+NumPy), after importing the runtime and after loading the units. ONNX Runtime and TVM children
    run without PyTorch (TVM: runtime library only)."""
    folder = Path(folder or bundle["dir"])
    spec_file = folder / f"memory-spec-{bundle['runtime']}.json"
    spec_file.write_text(json.dumps({"bundle": bundle, "workload": workload_spec, "threads": int(threads),
                                     "switching": bool(switching), "frames": int(frames)}))
    rt = bundle["runtime"]
    env = {"TVM_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    prelude = ""
    if rt in ("onnxruntime", "tvm"):
        prelude = "import sys; sys.modules['torch'] = None\n"  # a client without PyTorch
    if rt == "tvm":
        env["TVM_USE_RUNTIME_LIB"] = "1"
    code = prelude + f"from dydca_lib.ondevice import _child_main\n_child_main({str(spec_file)!r})"
    return fresh_process(code, env)


# ---------------------------------------------------------------- figures

def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def latency_bars(table, resolution: str, title: str = ""):
    """Per-frame latency (median, p95 whisker; log scale) and achieved GFLOP/s per method x runtime
    at one resolution, with the sgemm peak as the roofline ceiling."""
    plt = _plt()
    t = table[table.resolution == resolution]
    methods = list(dict.fromkeys(t.method))
    runtimes = list(dict.fromkeys(t.runtime))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    width = 0.8 / max(1, len(runtimes))
    for k, rt in enumerate(runtimes):
        g = t[t.runtime == rt].set_index("method").reindex(methods)
        xs = np.arange(len(methods)) + (k - (len(runtimes) - 1) / 2) * width
        med, p95 = g.median_ms.to_numpy(float), g.p95_ms.to_numpy(float)
        axes[0].bar(xs, med, width, yerr=[np.zeros_like(med), np.nan_to_num(p95 - med)], capsize=2, label=rt)
        axes[1].bar(xs, g.achieved_gflops.to_numpy(float), width, label=rt)
    if "sgemm_peak_gflops" in t and len(t):
        axes[1].axhline(float(t.sgemm_peak_gflops.iloc[0]), color="k", ls="--", lw=1, label="sgemm peak")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("ms per frame (median, whisker p95; log)")
    axes[1].set_ylabel("achieved GFLOP/s (useful FLOPs / median compute)")
    for ax in axes:
        ax.set_xticks(np.arange(len(methods)), methods, fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.suptitle(title or f"full-frame pipeline, {resolution}", fontsize=10)
    fig.tight_layout()
    return fig


def memory_bars(mem, title: str = ""):
    """Peak RSS per method x runtime, split into interpreter, runtime import, loaded models and the
    rest of the peak (working memory while running)."""
    plt = _plt()
    labels = [f"{r.method}\n{r.runtime}\n{r.resolution.split()[0]}" for r in mem.itertuples()]
    parts = [("interpreter + NumPy", mem.rss_start_mib), ("runtime import", mem.rss_runtime_mib - mem.rss_start_mib),
             ("models loaded", mem.rss_loaded_mib - mem.rss_runtime_mib),
             ("running (to peak)", mem.peak_rss_mib - mem.rss_loaded_mib)]
    fig, ax = plt.subplots(figsize=(max(7, 0.7 * len(mem)), 4.5))
    bottom = np.zeros(len(mem))
    for name, v in parts:
        v = np.clip(v.to_numpy(float), 0, None)
        ax.bar(np.arange(len(mem)), v, bottom=bottom, label=name)
        bottom += v
    ax.set_xticks(np.arange(len(mem)), labels, fontsize=6, rotation=90)
    ax.set_ylabel("RSS (MiB), fresh process")
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title or "peak memory per configuration", fontsize=10)
    fig.tight_layout()
    return fig


def switch_timeline(per_frame, method: str, title: str = ""):
    """Per-frame latency over the frame sequence of a switching method, one line per runtime; the
    model-load share of each frame stacked in red, chunk boundaries dashed."""
    plt = _plt()
    d = per_frame[per_frame.method == method]
    runtimes = list(dict.fromkeys(d.runtime))
    fig, axes = plt.subplots(len(runtimes), 1, figsize=(9, 1.9 * len(runtimes) + 0.6), squeeze=False)
    for ax, rt in zip(axes[:, 0], runtimes):
        g = d[d.runtime == rt].sort_values(["resolution", "pass", "position"])
        g = g[g.resolution == g.resolution.iloc[0]]
        x = np.arange(len(g))
        ax.bar(x, g.compute_ms, color="tab:blue", label="compute")
        ax.bar(x, g.switch_ms, bottom=g.compute_ms, color="tab:red", label="model switch")
        ch = g.chunk.to_numpy()
        for b in np.flatnonzero(np.diff(ch)) + 0.5:
            ax.axvline(b, color="k", ls="--", lw=0.8)
        ax.set_ylabel(f"{rt}\nms", fontsize=8)
        ax.set_xticks(x, [f"f{f}" for f in g.frame], fontsize=7)
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("frame in playback order (timed passes; dashed: chunk boundary)")
    fig.suptitle(title or f"{method}: model switches at chunk boundaries", fontsize=10)
    fig.tight_layout()
    return fig


def fps_vs_resolution(table, title: str = ""):
    """FPS (log) against LR megapixels: colour = runtime, marker and line style = method."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.8))
    colors = dict(zip(RUNTIMES, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    methods = list(dict.fromkeys(table.method))
    styles = dict(zip(methods, [("o", "-"), ("s", "--"), ("^", ":"), ("D", "-."), ("v", "-"), ("P", "--")] * 3))
    for (m, rt), g in table.groupby(["method", "runtime"], sort=False):
        g = g.sort_values("lr_megapixels")
        marker, ls = styles[m]
        ax.plot(g.lr_megapixels, g.fps, marker=marker, ls=ls, color=colors.get(rt, "k"), label=f"{m} / {rt}")
    ax.set_yscale("log")
    for res, g in table.groupby("resolution"):
        ax.annotate(res, (float(g.lr_megapixels.iloc[0]), 0.02), xycoords=("data", "axes fraction"), fontsize=7,
                    rotation=90, va="bottom", ha="right")
    ax.set_xlabel("LR frame (megapixels)")
    ax.set_ylabel("frames per second (log)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6, ncol=2)
    ax.set_title(title or "FPS vs resolution", fontsize=10)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- headline

def headline(latency, memory, switching, sgemm: dict, machine_info: dict, clip_resolution: str,
             dydca: str = "Dy-DCA", stdo: str | None = None) -> dict:
    """The ratios of this run (> 1 favours the first-named side), all from the same process and
    machine: TVM vs the PyTorch-eager reference and vs ONNX Runtime for Dy-DCA (latency and peak
    RSS), Dy-DCA vs STDO (memory, load cost), and Dy-DCA's FPS on TVM at the clip's size."""
    def get(df, method, runtime, col, res=clip_resolution):
        r = df[(df.method == method) & (df.runtime == runtime) & (df.resolution == res)] if len(df) else df
        return float(r[col].iloc[0]) if len(r) and np.isfinite(float(r[col].iloc[0])) else None

    def ratio(a, b):
        return round(a / b, 3) if a is not None and b not in (None, 0) else None

    out = {"fps_dydca_tvm": get(latency, dydca, "tvm", "fps"), "resolution": clip_resolution,
           "speedup_tvm_vs_torch_ref_dydca": ratio(get(latency, dydca, "torch_ref", "median_ms"),
                                                   get(latency, dydca, "tvm", "median_ms")),
           "speedup_tvm_vs_torch_batched_dydca": ratio(get(latency, dydca, "torch_batched", "median_ms"),
                                                       get(latency, dydca, "tvm", "median_ms")),
           "speedup_tvm_vs_onnxruntime_dydca": ratio(get(latency, dydca, "onnxruntime", "median_ms"),
                                                     get(latency, dydca, "tvm", "median_ms"))}
    out["fps_dydca"] = {rt: round(v, 3) for rt in RUNTIMES if (v := get(latency, dydca, rt, "fps")) is not None}
    for res in sorted(set(latency.resolution) - {clip_resolution}):
        tag = res.split()[0]
        out[f"fps_dydca_{tag}"] = {rt: round(v, 3) for rt in RUNTIMES if (v := get(latency, dydca, rt, "fps", res)) is not None}
        for other in ("torch_ref", "onnxruntime"):
            r = ratio(get(latency, dydca, other, "median_ms", res), get(latency, dydca, "tvm", "median_ms", res))
            if r is not None:
                out[f"speedup_tvm_vs_{other}_dydca_{tag}"] = r
    if len(memory):
        out["memory_saving_tvm_vs_torch_ref_dydca"] = ratio(get(memory, dydca, "torch_ref", "peak_rss_mib"),
                                                            get(memory, dydca, "tvm", "peak_rss_mib"))
        out["memory_saving_tvm_vs_torch_ref_dydca_above_runtime"] = ratio(
            get(memory, dydca, "torch_ref", "above_runtime_mib"), get(memory, dydca, "tvm", "above_runtime_mib"))
        out["memory_ratio_onnxruntime_vs_tvm_dydca"] = ratio(get(memory, dydca, "onnxruntime", "peak_rss_mib"),
                                                             get(memory, dydca, "tvm", "peak_rss_mib"))
        out["peak_rss_mib_dydca"] = {rt: round(v, 1) for rt in RUNTIMES
                                     if (v := get(memory, dydca, rt, "peak_rss_mib")) is not None}
        if stdo:
            for rt in sorted(set(memory.runtime), key=list(RUNTIMES).index):  # the runtimes measured
                out[f"memory_ratio_stdo_vs_dydca_{rt}"] = ratio(get(memory, stdo, rt, "peak_rss_mib"),
                                                                get(memory, dydca, rt, "peak_rss_mib"))
    if stdo and len(switching):
        sw = switching[switching.resolution == clip_resolution]
        for rt in RUNTIMES:
            a = sw[(sw.method == stdo) & (sw.runtime == rt)]
            b = sw[(sw.method == dydca) & (sw.runtime == rt)]
            if len(a) and len(b):
                out[f"load_all_models_ms_stdo_vs_dydca_{rt}"] = [round(float(a.load_all_ms.iloc[0]), 2),
                                                                  round(float(b.load_all_ms.iloc[0]), 2)]
                out[f"resident_weight_ratio_stdo_vs_dydca_{rt}"] = ratio(float(a.resident_weight_bytes.iloc[0]),
                                                                         float(b.resident_weight_bytes.iloc[0]))
    per_chunk = switching[switching.switching] if len(switching) else switching
    if len(per_chunk):
        out["switch_ms_per_chunk_model"] = {r.runtime: round(float(r.load_ms_median), 2)
                                            for r in per_chunk[per_chunk.resolution == clip_resolution].itertuples()}
    lat = latency[latency.resolution == clip_resolution]
    if len(lat):
        best = lat.loc[lat.achieved_gflops.idxmax()]
        out["best_achieved_gflops"] = {"method": best.method, "runtime": best.runtime,
                                       "gflops": round(float(best.achieved_gflops), 1),
                                       "share_of_sgemm_peak": round(float(best.share_of_sgemm_peak), 3)}
    out["sgemm_peak_gflops"] = round(float(sgemm["peak_gflops"]), 1)
    out["paper_claims"] = dict(PAPER)
    out["machine"] = dict(machine_info)
    return out


__all__ = ["RUNTIMES", "PAPER", "machine", "sgemm_peak", "wdsr_flops", "FramePlan", "plans_from_manifest",
           "resolution_hw", "upscaled_frames", "scaled_geometry", "transfer_manifest", "method_units", "dynamic_model",
           "export_onnx", "unit_params", "export_bundle", "bundle_bytes", "Engine", "make_engine", "split_batch",
           "sr_frame", "Workload", "Client", "frame_flops", "latency_summary", "switch_cost", "fresh_process",
           "measure_memory", "latency_bars", "memory_bars", "switch_timeline", "fps_vs_resolution", "headline"]
