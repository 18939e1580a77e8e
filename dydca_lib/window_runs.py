"""One run of notebook 07 — one method trained on one window of a long video at one budget and
seed, scored on the window's held-out frames: what its cells (kind ``longvideo``) cache.

Kept apart from :mod:`dydca_lib.longvideo` (the plateau loop, the tables, the verdict): a cell's key
holds the import closure of this module (:func:`dydca_lib.codeversion.code_version`), which is the
code that trains and scores — methods, models, trainer, windows, labels — and nothing that only
reads the runs, so hours of committed runs survive edits to the notebook's analysis.
"""

from __future__ import annotations

import functools
import json

from .params import PatchParams


def window_data(patch: dict, window: dict):
    """The PatchData of one window (``window``: start_s, length_s, sample_fps); the last few are kept
    in memory, as every run of a window needs the same."""
    return _window_data(json.dumps(patch, sort_keys=True), json.dumps(window, sort_keys=True))


@functools.lru_cache(maxsize=4)
def _window_data(patch_json: str, window_json: str):
    from .pipeline import patch_data
    from .windows import prepare_window

    p, window = PatchParams.pick(json.loads(patch_json)), json.loads(window_json)
    frames = prepare_window(p.video, p.scale, window["start_s"], window["length_s"], window["sample_fps"], p.lr_kernel)
    data = patch_data(p, frames=frames)
    if not len(data.heldout_ids):
        raise ValueError(f"a {p.chunk_seconds:g} s chunk at {window['sample_fps']:g} fps holds fewer than heldout_every="
                         f"{p.heldout_every} frames: no frame is held out. Raise sample_fps or chunk_seconds.")
    return data


def compute_cell(spec: dict) -> dict:
    """Train and score one run (what :func:`dydca_lib.longvideo.run` caches)."""
    from .registry import make, parse
    from .scores import full_frame_row

    data = window_data(spec["patch"], spec["window"])
    ref, n_chunks = parse(spec["method"]), len(data.chunks)
    factor = ref.separate_models(n_chunks) if spec["rule"] == "paper" else 1
    m = make(ref, data.frames.scale, n_chunks, epochs=spec["epochs"] * factor, seed=spec["seed"], **spec["suite"])
    m.prepare(data)
    info = m.describe()
    row = {"method": m.name, "rule": spec["rule"], "seed": spec["seed"], "epochs": spec["epochs"],
           "model_epochs": spec["epochs"] * factor, **{k: spec["window"][k] for k in ("start_s", "length_s")},
           "chunks": n_chunks, "train_frames": len(data.train_ids), "heldout_frames": len(data.heldout_ids),
           "models": info["models"], "parameters": info["parameters"], "model_bytes": info["model_bytes"],
           "routing_map_bytes": info["routing_map_bytes"], "gflop_per_frame": m.gflop_per_frame(data.heldout_ids),
           "train_seconds": info.get("train_seconds"), "train_lr_megapixels": info.get("train_lr_megapixels"),
           **full_frame_row(m, data, data.heldout_ids)}
    return {"row": row}
