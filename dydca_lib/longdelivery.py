"""Delivery on long content: the rate and quality of a window of a long clip as a client receives it.

Notebook 08 asks "LR video + models, or the HR stream?" on 1.6 s clips; this module asks it on
windows of a long video (``bbb_full``), where the models' bytes are spread over the window itself,
measured rather than extrapolated. A window is the one notebook 07 trains on (``start_s``,
``length_s``; frames sampled at ``sample_fps`` for training, held-out frames interleaved):

* the **stream** is every native frame of the window (e.g. 45 s x 24 fps), encoded once, frame by
  frame (:func:`dydca_lib.codec.encode_iter`): its bytes are the rate;
* **quality** is scored on the window's held-out sampled frames (the full-frame protocol: shave
  scale + 6 at the border, Y-PSNR, RGB PSNR, SSIM on Y) and VMAF on a run of consecutive native
  frames (``vmaf_run_s`` seconds from the window's middle), decoded from the stream
  (:func:`dydca_lib.codec.decode_some`) — the anchors (:func:`compute_anchor`: the HR window through
  x264/x265) here; the LR points with their models build on the same plan.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd

from .codec import Encoding, decode_some, encode_iter, vmaf


def window_plan(video, start_s: float, length_s: float, sample_fps: float, chunk_seconds: float,
                heldout_every: int, heldout_policy: str = "interleaved", vmaf_run_s: float = 2.0) -> dict:
    """Which native frames of ``video`` a delivery window streams and scores: ``first`` and ``n``
    (the window's native frames, all streamed), ``sampled`` (notebook 07's frames of the window,
    native ids), ``heldout`` (the sampled frames never trained on, native ids) and ``run`` (native
    ids of ``vmaf_run_s`` seconds of consecutive frames around the window's middle), ``fps``."""
    from .video import plan_frames, probe_video, resolve_video
    from .windows import window_frame_ids

    info = probe_video(resolve_video(video))
    sampled = window_frame_ids(info.fps, info.n_frames, start_s, length_s, sample_fps)
    first = int(round(start_s * info.fps))
    n = int(round(length_s * info.fps))
    if first + n > info.n_frames:
        raise ValueError(f"the window {start_s:g}+{length_s:g} s passes the video's end ({info.n_frames} frames)")
    _, table = plan_frames(len(sampled), sample_fps, chunk_seconds, heldout_every, heldout_policy)
    heldout = [sampled[int(i)] for i in table.frame[table.split == "heldout"]]
    n_run = max(1, int(round(vmaf_run_s * info.fps)))
    if n_run > n:
        raise ValueError(f"vmaf_run_s={vmaf_run_s:g} is longer than the window ({length_s:g} s)")
    run_first = first + (n - n_run) // 2
    return {"fps": float(info.fps), "first": first, "n": n, "sampled": sampled, "heldout": heldout,
            "run": list(range(run_first, run_first + n_run))}


def window_frames(video, first: int, n: int, crop_multiple: int = 12):
    """The native frames ``first .. first + n - 1`` of ``video`` (RGB, cropped as notebook 07's
    windows are), one at a time; the frames before the window are grabbed, not converted."""
    import cv2

    from .sources import DataError
    from .video import crop_to_multiple, resolve_video

    path = resolve_video(video)
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise DataError(f"{path} could not be opened as a video")
    try:
        for i in range(first):
            if not cap.grab():
                raise DataError(f"{path} ended at frame {i}, before the window's first frame {first}")
        for i in range(n):
            ok, bgr = cap.read()
            if not ok:
                raise DataError(f"{path} ended at frame {first + i}, inside the window ({first}..{first + n - 1})")
            yield crop_to_multiple(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), crop_multiple)
    finally:
        cap.release()


def compute_anchor(spec: dict) -> dict:
    """One HR anchor of a window: every native frame through ``codec`` at ``crf`` (``codec`` None:
    the YUV 4:2:0 conversion alone, lossless x264), the stream's bytes and rate, the held-out
    frames' full-frame scores and VMAF on the run. ``spec``: ``video``, ``start_s``, ``length_s``,
    ``sample_fps``, ``chunk_seconds``, ``heldout_every``, ``heldout_policy``, ``vmaf_run_s``,
    ``scale`` (the shave of the SR protocol), ``crop_multiple``, ``codec``, ``crf``, ``preset``."""
    from .delivery import kbps, score_frames

    plan = window_plan(spec["video"], spec["start_s"], spec["length_s"], spec["sample_fps"], spec["chunk_seconds"],
                       spec["heldout_every"], spec["heldout_policy"], spec["vmaf_run_s"])
    first, keep = plan["first"], set(plan["heldout"]) | set(plan["run"])
    hr_kept: dict[int, np.ndarray] = {}
    source = window_frames(spec["video"], first, plan["n"], spec["crop_multiple"])
    head = next(source)
    hw = head.shape[:2]

    def frames():  # every frame to the encoder; the scored ones kept
        for k, f in enumerate(itertools.chain([head], source)):
            if first + k in keep:
                hr_kept[first + k] = f
            yield f

    rest = frames()
    # codec None: x264 at CRF 0 is lossless, so only the RGB -> YUV 4:2:0 -> RGB conversion remains
    enc = Encoding(spec["codec"], int(spec["crf"]), spec["preset"]) if spec["codec"] else Encoding("x264", 0, "ultrafast")
    stream = encode_iter(rest, hw, plan["fps"], enc)
    stream_bytes = len(stream) if spec["codec"] else 0
    decoded = decode_some(stream, enc.codec, hw, [i - first for i in keep])
    scores = score_frames({i: decoded[i - first] for i in plan["heldout"]}, lambda i: hr_kept[i], int(spec["scale"]) + 6)
    run = vmaf(np.stack([hr_kept[i] for i in plan["run"]]), np.stack([decoded[i - first] for i in plan["run"]]),
               plan["fps"])
    seconds = plan["n"] / plan["fps"]
    return {"row": {"start_s": spec["start_s"], "length_s": spec["length_s"],
                    "curve": f"HR {spec['codec']}" if spec["codec"] else "HR YUV 4:2:0 only",
                    "codec": spec["codec"] or "none", "crf": spec["crf"], "frames": plan["n"], "seconds": seconds,
                    "hr_size": f"{hw[1]}x{hw[0]}", "stream_bytes": stream_bytes,
                    "stream_kbps": kbps(stream_bytes, seconds), "heldout_frames": len(plan["heldout"]),
                    **scores.drop(columns="frame").mean().to_dict(), "vmaf": run["vmaf"], "vmaf_min": run["vmaf_min"],
                    "vmaf_frames": len(run["vmaf_frames"])}}


# ---------------------------------------------------------------- the LR stream of a window and its decoded frames

ENCODE_VERSION = 1  # bump when the window's LR stream or its decoded frames change


def encoded_window(video, start_s: float, length_s: float, sample_fps: float, chunk_seconds: float,
                   heldout_every: int, heldout_policy: str, vmaf_run_s: float, scale: int, lr_kernel: str,
                   enc: Encoding, crop_multiple: int = 12):
    """The window's LR stream as a client receives it: every native frame downscaled (the
    project's LR kernel) and encoded with ``enc``, then decoded. Returns ``(train_frames,
    run_frames, stream_bytes, plan)``: ``train_frames`` is notebook 07's window (its HR frames,
    sampled at ``sample_fps``) with the decoded LR frames at the same instants, ``run_frames`` the
    VMAF run (HR and decoded LR of consecutive native frames, at the native rate). Cached as PNGs
    under ``data/frames/encoded-windows/``, keyed by the video file, the window, the encoding and
    the FFmpeg version."""
    import hashlib
    import json

    from .codec import ffmpeg_version
    from .io import atomic_write_text, staged_folder
    from .paths import data_dir
    from .video import FrameSet, _video_cache_key, _write_png, make_lr, resolve_video
    from .windows import prepare_window

    plan = window_plan(video, start_s, length_s, sample_fps, chunk_seconds, heldout_every, heldout_policy, vmaf_run_s)
    clean = prepare_window(video, scale, start_s, length_s, sample_fps, lr_kernel, crop_multiple)
    path = resolve_video(video)
    record = {"video": _video_cache_key(path, crop_multiple), "start_s": start_s, "length_s": length_s,
              "sample_fps": sample_fps, "vmaf_run_s": vmaf_run_s, "scale": int(scale), "lr_kernel": lr_kernel,
              "enc": {"codec": enc.codec, "crf": enc.crf, "preset": enc.preset}, "ffmpeg": ffmpeg_version(),
              "v": ENCODE_VERSION}
    key = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:12]
    folder = data_dir() / "frames" / "encoded-windows" / f"{clean.name}-x{scale}-{enc.codec}-crf{enc.crf}-{key}"
    info_path = folder / "stream.json"
    first, sampled, run = plan["first"], plan["sampled"], plan["run"]
    if not info_path.exists():
        hr_run: dict[int, np.ndarray] = {}

        def lr_frames():
            for k, hr in enumerate(window_frames(video, first, plan["n"], crop_multiple)):
                if first + k in run:
                    hr_run[first + k] = hr
                yield make_lr(hr[:hr.shape[0] - hr.shape[0] % scale, :hr.shape[1] - hr.shape[1] % scale], scale, lr_kernel)

        stream = encode_iter(lr_frames(), clean.lr_hw, plan["fps"], enc)
        decoded = decode_some(stream, enc.codec, clean.lr_hw, [i - first for i in set(sampled) | set(run)])
        for name, ids in (("sampled", sampled), ("run-lr", run)):
            with staged_folder(folder / name) as tmp:
                for j, i in enumerate(ids, start=1):
                    _write_png(tmp / f"{j:05d}.png", decoded[i - first])
        with staged_folder(folder / "run-hr") as tmp:
            for j, i in enumerate(run, start=1):
                _write_png(tmp / f"{j:05d}.png", hr_run[i])
        atomic_write_text(info_path, json.dumps({**record, "stream_bytes": len(stream), "plan": plan}, indent=1))
    info = json.loads(info_path.read_text())
    train = FrameSet(clean.name, clean.hr_paths, [folder / "sampled" / f"{j:05d}.png" for j in range(1, len(sampled) + 1)],
                     scale, clean.fps, lr_kernel, clean.source)
    run_fs = FrameSet(f"{clean.name}-run", [folder / "run-hr" / f"{j:05d}.png" for j in range(1, len(run) + 1)],
                      [folder / "run-lr" / f"{j:05d}.png" for j in range(1, len(run) + 1)], scale, plan["fps"],
                      lr_kernel, clean.source)
    return train, run_fs, int(info["stream_bytes"]), plan


# ---------------------------------------------------------------- a method on the window's stream

def run_manifest(method, data, run_labels, run_ids, chunk_of) -> pd.DataFrame:
    """How a method trained on ``data`` cuts and routes frames outside it (the VMAF run, with their
    general-model labels ``run_labels``): its own rules, with the edges and thresholds it learned on
    ``data`` — Dy-DCA's split thresholds, STDO's bin edges from the training frames — and one model
    per chunk (and CaFM) by ``chunk_of(frame)``. (The methods route only the frames of their data;
    this applies the same rules here so that a trained model's cache key, which holds the methods'
    code, is untouched.)"""
    from .methods import STDO, DyDCA, PerChunk, fine_grid, whole_frame_manifest
    from .patches import coarse_to_fine, quantile_bins

    ids = [int(i) for i in run_ids]
    if isinstance(method, DyDCA):
        return coarse_to_fine(run_labels, list(data.thresholds_db))
    if isinstance(method, STDO):  # STDO joint too: the same fine grid (its one model ignores the bin)
        fine = fine_grid(data)
        _, edges = quantile_bins(fine.label[fine.split == "train"].to_numpy(), method.k)
        cells = run_labels[run_labels.level == data.geom.levels - 1]
        return cells.assign(path=np.searchsorted(edges[:-1], cells.label.to_numpy(), side="left")).reset_index(drop=True)
    path_of = chunk_of if isinstance(method, PerChunk) else None
    return whole_frame_manifest(ids, data.frames.lr_hw, path_of)


def compute_point(spec: dict) -> dict:
    """One method on one window's LR stream at one CRF, budget and seed: trained on the decoded
    sampled frames (``spec["epochs"]``; untrained methods: bicubic, general), with what a client
    must receive — the LR stream, the routing maps of every native frame (the sampled frames' mean
    per frame x the window's frames) and the models as shipped (``fp16_xz_bytes``: fp16 weights;
    ``int8_xz_bytes``: the int8 client's; both xz-coded) — and the quality of the client that runs
    those bytes: ``psnr_*``, ``ssim_y`` (held-out frames, full-frame protocol) and ``vmaf`` (the run)
    of the fp16 client (the folded weights rounded to fp16, fp32 arithmetic), and with
    ``int8_runtime`` the same through the int8 client (``int8_*``). ``spec["client"]`` False: only
    what the plateau loop reads (training, the held-out frames through the fp16 client, the LR
    stream and routing bytes); the shipped bytes, VMAF run and int8 client are left out (NaN)."""
    from .bench.precision import calibration_batches
    from .delivery import kbps, shipped_model_bytes
    from .evaluate import evaluate
    from .params import PatchParams
    from .pipeline import cached_labels, patch_data
    from .registry import make, parse
    from .scores import full_frame_row

    w, p = spec["window"], PatchParams.pick(spec["patch"])
    enc = Encoding(spec["codec"], int(spec["crf"]), spec["preset"])
    train_fs, run_fs, stream_bytes, plan = encoded_window(
        p.video, w["start_s"], w["length_s"], w["sample_fps"], p.chunk_seconds, p.heldout_every, p.heldout_policy,
        w["vmaf_run_s"], p.scale, p.lr_kernel, enc, w["crop_multiple"])
    data = patch_data(p, frames=train_fs)
    m = make(parse(spec["method"]), p.scale, len(data.chunks), epochs=spec["epochs"], seed=spec["seed"], **spec["suite"])
    m.prepare(data)
    client = spec.get("client", True)
    ship = {"parameters": int(m.describe()["parameters"]) if m.trained else 0,
            "train_seconds": getattr(m, "train_info", {}).get("train_seconds", 0.0),
            "fp16_xz_bytes": 0 if client or not m.trained else None, "int8_xz_bytes": 0 if client or not m.trained else None}
    int8, run = {}, {"vmaf": None, "vmaf_min": None}
    run_ids = list(range(len(run_fs))) if client else []
    if client:
        run_labels, _ = cached_labels(run_fs, run_ids, data.geom, data.general_net, data.general_info)
        first_chunk_s = (plan["run"][0] - plan["first"]) / plan["fps"]
        chunk_of = lambda f: min(int((first_chunk_s + f / plan["fps"]) // p.chunk_seconds), len(data.chunks) - 1)  # noqa: E731
        man = run_manifest(m, data, run_labels, run_ids, chunk_of)
    if client and m.trained:  # bicubic needs nothing; the general model is installed with the client, not streamed
        cal = calibration_batches(m, data, data.train_ids, m.context, int(spec["calibration_patches"]), spec["seed"])
        ship.update(fp16_xz_bytes=shipped_model_bytes(m, "fp16", "lzma"), int8_xz_bytes=shipped_model_bytes(m, "int8", "lzma", cal))
        if spec.get("int8_runtime"):
            int8 = int8_scores(m, data, run_fs, man, cal, spec["int8_runtime"], plan["fps"])
    if m.trained:
        with_fp16_weights(m)  # from here on the method is the fp16 client: the bytes fp16_xz_bytes counts
    held = full_frame_row(m, data, data.heldout_ids)
    if client:
        _, _, kept = evaluate(m.upscaler(), run_fs, man, run_ids, m.context, desc=f"{m.name}: VMAF run", keep_frames=run_ids)
        run = vmaf(np.stack([run_fs.hr(i) for i in run_ids]), np.stack([kept[i] for i in run_ids]), plan["fps"])
    seconds = plan["n"] / plan["fps"]
    routing = int(round(m.routing_map_bytes() / len(data.frame_table) * plan["n"]))
    row = {"start_s": w["start_s"], "length_s": w["length_s"], "codec": enc.codec, "crf": enc.crf, "method": m.name,
           "epochs": spec["epochs"], "seed": spec["seed"], "frames": plan["n"], "seconds": seconds,
           "lr_size": f"{train_fs.lr_hw[1]}x{train_fs.lr_hw[0]}", "stream_bytes": stream_bytes,
           "stream_kbps": kbps(stream_bytes, seconds), "routing_map_bytes": routing, "heldout_frames": len(data.heldout_ids),
           "psnr_rgb": held["frame_psnr_rgb"], "psnr_y": held["frame_psnr_y"], "ssim_y": held["frame_ssim_y"],
           "vmaf": run["vmaf"], "vmaf_min": run["vmaf_min"], "vmaf_frames": len(run_ids), **ship, **int8}
    return {"row": row}


def with_fp16_weights(method) -> None:
    """Make a prepared method's models what an fp16 client holds: weight norm folded, every weight
    and bias rounded to fp16 (computed in fp32). In place, on the method's loaded copies (the cached
    checkpoints are untouched)."""
    import torch

    from .models import fold_weight_norm

    for k, model in method._models.items():  # the methods' trained networks (Method keeps them here)
        plain = fold_weight_norm(model).eval()
        with torch.no_grad():
            for t in plain.parameters():
                t.copy_(t.half().float())
        method._models[k] = plain


def int8_scores(method, data, run_fs, run_man, calibration: dict, runtime: str, fps: float, threads: int = 2) -> dict:
    """The same held-out frames and VMAF run through the int8 client (``runtime``, e.g. ``tvm_int8``:
    the bundle of :func:`dydca_lib.client.bundle.export_bundle`, the weights whose bytes are
    ``int8_xz_bytes``), so the int8 rows' quality is that of the bytes they count."""
    import tempfile

    from .client.bundle import export_bundle
    from .client.engines import make_engine
    from .client.plan import plans_from_manifest
    from .client.runtimes import precision_of, unsupported_reason
    from .evaluate import evaluate, frame_protocol

    if precision_of(runtime) != "int8":
        raise ValueError(f"int8_runtime {runtime!r} does not compute in int8")
    why = unsupported_reason(runtime)
    if why:
        raise RuntimeError(f"{why}: pick another int8_runtime (e.g. onnxruntime_int8)")
    held_ids, run_ids = [int(i) for i in data.heldout_ids], sorted(int(i) for i in run_man.frame.unique())
    held_man = method.frame_manifest(held_ids)
    plans = {**plans_from_manifest(held_man, held_ids),  # every patch shape the client will see (run ids offset)
             **{10 ** 6 + k: v for k, v in plans_from_manifest(run_man, run_ids).items()}}
    with tempfile.TemporaryDirectory() as tmp:
        bundle = export_bundle(method.units(), runtime, Path(tmp), scale=data.frames.scale, context=method.context,
                               plans=plans, calibration=calibration, tuned=False)
        engine = make_engine(bundle, threads)
        for u in method.units():
            engine.load(u)
        _, per_frame, _ = evaluate(engine.run, data.frames, held_man, held_ids, method.context,
                                   desc=f"{method.name}: {runtime} full-frame")
        _, _, kept = evaluate(engine.run, run_fs, run_man, run_ids, method.context, desc=f"{method.name}: {runtime} run",
                              keep_frames=run_ids)
    f = frame_protocol(per_frame)
    v = vmaf(np.stack([run_fs.hr(i) for i in run_ids]), np.stack([kept[i] for i in run_ids]), fps)
    return {"int8_runtime": runtime, "int8_psnr_rgb": f.psnr_rgb, "int8_psnr_y": f.psnr_y, "int8_ssim_y": f.ssim_y,
            "int8_vmaf": v["vmaf"]}


# ---------------------------------------------------------------- the study: specs, cells, plateau (tables: longcurves)

def _windows(params: dict) -> list[dict]:
    if not params["lengths_s"] or not params["starts_s"]:
        raise ValueError("long delivery: give at least one window length and one window start")
    return [{"start_s": float(s), "length_s": float(n), "sample_fps": float(params["sample_fps"]),
             "vmaf_run_s": float(params["vmaf_run_s"]), "crop_multiple": int(params["crop_multiple"])}
            for n in params["lengths_s"] for s in params["starts_s"]]


def anchor_specs(params: dict) -> list[dict]:
    """The HR anchors of every window: the YUV 4:2:0 conversion alone, then each anchor codec x CRF
    (``anchor_crfs``, else the LR points' ``crfs``: a ladder reaching higher CRFs lets the anchors
    come down to the quality of the upscaled LR streams, where BD-rate has an overlap)."""
    from .params import PatchParams

    p, out = PatchParams.pick(params), []
    for w in _windows(params):
        base = {"video": str(p.video), **{k: w[k] for k in ("start_s", "length_s", "sample_fps", "vmaf_run_s",
                                                             "crop_multiple")},
                "chunk_seconds": float(p.chunk_seconds), "heldout_every": int(p.heldout_every),
                "heldout_policy": p.heldout_policy, "scale": int(p.scale), "preset": params["preset"]}
        out.append({**base, "codec": None, "crf": None})
        out += [{**base, "codec": c, "crf": int(q)} for c in params["anchor_codecs"]
                for q in (params.get("anchor_crfs") or params["crfs"])]
    return out


def point_specs(params: dict) -> list[dict]:
    """Every (window, LR codec, CRF, method, seed) point, without a budget (the plateau loop sets it)."""
    from .comparison import suite_kwargs
    from .params import PatchParams
    from .registry import parse

    patch = PatchParams.pick(params).asdict()
    suite = suite_kwargs(params, per_run=False)
    refs = [parse(m, {"stdo": params["stdo_k"], "stdo_joint": params["joint_k"]}).name for m in params["methods"]]
    return [{"patch": patch, "suite": suite, "window": w, "codec": c, "crf": int(q), "preset": params["preset"],
             "method": ref, "seed": int(seed), "calibration_patches": int(params["calibration_patches"]),
             "int8_runtime": resolve_int8_runtime(params["int8_runtime"])}
            for w in _windows(params) for c in params["lr_codecs"] for q in params["crfs"] for ref in refs
            for seed in params["seeds"]]


def anchor_cell(spec: dict, store=None) -> dict:
    from .cells import run_cell

    return run_cell("longanchor", spec, store=store)["row"]


def point_run(spec: dict, epochs: float, store=None, client: bool = True) -> dict:
    """One point at one budget (cached); ``client`` False: what the plateau loop reads only."""
    from .cells import run_cell

    return run_cell("longpoint", {**spec, "epochs": float(epochs), "client": bool(client)}, store=store)["row"]


def points_to_plateau(specs: list[dict], epochs0: float, cap: float, tol_db: float, store=None, progress=None) -> pd.DataFrame:
    """Every point at each budget until its plateau (notebook 07's rule, on held-out RGB PSNR, mean
    over seeds): per (window, LR codec, CRF, method). The budgets below the last are trained and
    scored on the held-out frames only; the last runs the clients (shipped bytes, VMAF, int8).
    Untrained methods (bicubic, the general model) run once."""
    from .longvideo import to_plateau
    from .registry import parse

    trained = [s for s in specs if parse(s["method"]).entry.trained]
    fixed = [s for s in specs if not parse(s["method"]).entry.trained and s["seed"] == specs[0]["seed"]]
    point = ["start_s", "length_s", "codec", "crf", "method"]
    point_of = lambda s: (s["window"]["start_s"], s["window"]["length_s"], s["codec"], s["crf"], s["method"])  # noqa: E731
    runs = to_plateau(trained, epochs0, cap, tol_db, store, progress, metric="psnr_rgb",
                      run_fn=lambda s, e, st: point_run(s, e, st, client=False), group_of=point_of)
    if len(runs):
        spec_of = {(*point_of(s), s["seed"]): s for s in trained}
        last = runs.epochs == runs.groupby(point, sort=False).epochs.transform("max")
        full = [{**point_run(spec_of[tuple(r[k] for k in point + ["seed"])], r["epochs"], store),
                 "budget_step": r["budget_step"]} for r in runs[last].to_dict("records")]
        runs = pd.concat([runs[~last], pd.DataFrame(full, index=runs.index[last])]).sort_index()
        client_cols = ["fp16_xz_bytes", "int8_xz_bytes", "vmaf", "vmaf_min"]  # None below the last budget
        runs[client_cols] = runs[client_cols].apply(pd.to_numeric)
    once = pd.DataFrame([{**point_run(s, 0.0, store), "budget_step": 0} for s in fixed])
    return pd.concat([once, runs], ignore_index=True) if len(once) else runs


def resolve_int8_runtime(name: str) -> str | None:
    """``auto``: the first int8 client this CPU runs (``tvm_int8``, else ``onnxruntime_int8``; None
    without VNNI/AMX); ``""``: none; else the runtime named (checked)."""
    from .client.runtimes import precision_of, unsupported_reason

    if not name:
        return None
    if name == "auto":
        return next((r for r in ("tvm_int8", "onnxruntime_int8") if unsupported_reason(r) is None), None)
    if precision_of(name) != "int8":
        raise ValueError(f"int8_runtime {name!r} does not compute in int8")
    return name
