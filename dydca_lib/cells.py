"""Cached cells of work that a notebook's loop and a sweep (:mod:`dydca_lib.sweep`) share.

A *cell* is one independent piece of a notebook's grid: notebook 04's (clip, scale, seed) —
train every method for that seed and score it under both protocols — or notebook 04b's
(method, budget, seed) run, or notebook 08's rate–quality points ((clip, codec, CRF): encode,
train on the decoded frames, score) and HR anchors. Its result is a JSON file (plus an ``.npz`` of kept SR frames where
asked) under ``data/cells/``, named by a hash of its *spec* (every parameter that determines it)
and the library's code version, written atomically: a notebook finds a cell that a sweep worker
computed, a finished cell is never computed twice, and a killed one leaves nothing behind. A
notebook always reads its cells back from these files, so a table assembled after a sweep is the
table a serial run writes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from . import delivery
from .io import _json_default, atomic_write_bytes, atomic_write_text
from .params import PatchParams
from .paths import data_dir
from .runinfo import code_version

KINDS = ("comparison", "budget", "ratequality", "anchor")


def _dumps(obj) -> str:
    return json.dumps(obj, sort_keys=True, default=_json_default)


def cell_key(kind: str, spec: dict) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown cell kind {kind!r}; known: {', '.join(KINDS)}")
    return hashlib.sha256(_dumps({"kind": kind, "spec": spec, "code": code_version()}).encode()).hexdigest()[:16]


def cell_path(kind: str, spec: dict) -> Path:
    """Where cell ``spec`` of ``kind`` lives (``.json``; kept frames beside it as ``.npz``)."""
    return data_dir() / "cells" / f"{kind}-{cell_key(kind, spec)}.json"


def is_done(kind: str, spec: dict) -> bool:
    return cell_path(kind, spec).exists()


def _load(path: Path) -> dict:
    out = json.loads(path.read_text())
    npz = path.with_suffix(".npz")
    kept = {}
    if npz.exists():
        with np.load(npz) as z:
            for name in z.files:
                method, frame = name.rsplit("|", 1)
                kept.setdefault(method, {})[int(frame)] = z[name]
    out["kept"] = kept
    return out


def run_cell(kind: str, spec: dict) -> dict:
    """The result of cell ``spec``: read from its file, or computed, written and read back."""
    path = cell_path(kind, spec)
    if not path.exists():
        result = COMPUTE[kind](spec)
        kept = result.pop("kept", {})
        if kept:
            buf = io.BytesIO()
            np.savez_compressed(buf, **{f"{m}|{f}": a for m, frames in kept.items() for f, a in frames.items()})
            atomic_write_bytes(path.with_suffix(".npz"), buf.getvalue())
        atomic_write_text(path, _dumps({"kind": kind, "spec": spec, **result}))  # last: the cell is done
    return _load(path)


# ---------------------------------------------------------------- notebook 04: (clip, scale, seed)

def suite_kwargs(params: dict) -> dict:
    """:func:`~dydca_lib.methods.method_suite`'s keywords from notebook 04's parameters."""
    return dict(kernel=params["lr_kernel"], stdo_ks=list(params["stdo_ks"]), joint_k=params["joint_k"],
                joint_shares=list(params["joint_shares"]), model_blocks=params["model_blocks"],
                path_blocks=list(params["path_blocks"]), n_feats=params["model_feats"],
                expansion=params["model_expansion"], epochs=params["epochs"], batch_size=params["batch_size"],
                context=params["context"], lr=params["learning_rate"], equal_size=params["equal_size"])


def comparison_specs(params: dict, keep_hardest: int = 3) -> list[dict]:
    """Notebook 04's cells, in its table order (clip, scale, seed): the first seed of each clip and
    scale also scores bicubic and the general model (they do not depend on the seed), and the very
    first cell keeps the SR frames of the ``keep_hardest`` hardest held-out patches for the crops."""
    if not params["seeds"]:
        raise ValueError("seeds: give at least one training seed")
    base = PatchParams.pick(params)
    specs = []
    for i, video in enumerate(params["videos"]):
        for j, scale in enumerate(params["scales"]):
            for k, seed in enumerate(params["seeds"]):
                patch = dataclasses.replace(base, video=str(video), scale=int(scale)).asdict()
                specs.append({"patch": patch, "seed": int(seed), "suite": suite_kwargs(params),
                              "eval_train_every": int(params["eval_train_every"]), "untrained": k == 0,
                              "keep_hardest": keep_hardest if (i, j, k) == (0, 0, 0) else 0})
    return specs


def hardest_heldout_patches(data, n: int = 3) -> pd.DataFrame:
    """The ``n`` held-out patches the general model finds hardest (lowest label PSNR)."""
    return data.manifest[data.manifest.frame.isin(data.heldout_ids)].nsmallest(n, "label")


def _comparison(spec: dict) -> dict:
    from .methods import evaluate_method, method_suite
    from .pipeline import patch_data

    data = patch_data(PatchParams.pick(spec["patch"]))
    scale, seed = data.frames.scale, spec["seed"]
    keep = hardest_heldout_patches(data, spec["keep_hardest"]).frame.unique() if spec["keep_hardest"] else ()
    rows, per_frame, kept = [], [], {}
    for m in method_suite(scale, len(data.chunks), seed=seed, **spec["suite"]):
        if not (m.trained or spec["untrained"]):
            continue
        m.prepare(data)
        res = evaluate_method(m, data, data.train_ids[::spec["eval_train_every"]], data.heldout_ids, keep_frames=keep)
        rows.append({"video": data.frames.name, "scale": scale, "seed": seed, **res["row"]})
        per_frame += (res["per_frame"].merge(data.frame_table[["frame", "chunk"]], on="frame")
                      .assign(video=data.frames.name, scale=scale, seed=seed).to_dict("records"))
        if len(keep):
            kept[m.name] = res["kept"]
    return {"rows": rows, "per_frame": per_frame, "kept": kept}


def comparison_cell(spec: dict) -> dict:
    """One cell of notebook 04: ``rows`` (one per method), ``per_frame`` (a DataFrame) and ``kept``
    ({method: {frame: SR frame}})."""
    out = run_cell("comparison", spec)
    out["per_frame"] = pd.DataFrame(out["per_frame"])
    return out


# ---------------------------------------------------------------- notebook 04b: (method, budget, seed)

def budget_suite_kwargs(params: dict) -> dict:
    """:func:`~dydca_lib.methods.method_suite`'s keywords from notebook 04b's parameters (the
    budget, STDO's k and the equal-size switch come from each run's method and budget)."""
    return dict(kernel=params["lr_kernel"], joint_k=params["joint_k"], joint_shares=list(params["joint_shares"]),
                model_blocks=params["model_blocks"], path_blocks=list(params["path_blocks"]),
                n_feats=params["model_feats"], expansion=params["model_expansion"], batch_size=params["batch_size"],
                context=params["context"], lr=params["learning_rate"])


def budget_specs(params: dict) -> list[dict]:
    """Notebook 04b's runs, in its order: method, then seed, then budget."""
    if not params["seeds"]:
        raise ValueError("seeds: give at least one training seed")
    patch, suite = PatchParams.pick(params).asdict(), budget_suite_kwargs(params)
    return [{"patch": patch, "method": str(name), "epochs": float(epochs), "seed": int(seed), "suite": suite}
            for name in params["methods"] for seed in params["seeds"] for epochs in sorted(params["budgets"])]


def _budget(spec: dict) -> dict:
    from .budget import full_frame_row, study_method
    from .pipeline import patch_data

    data = patch_data(PatchParams.pick(spec["patch"]))
    m = study_method(spec["method"], data.frames.scale, len(data.chunks), spec["epochs"], spec["seed"], **spec["suite"])
    m.prepare(data)
    return {"row": {"method": spec["method"], "seed": spec["seed"], "epochs": spec["epochs"],
                    "train_lr_megapixels": m.train_info["train_lr_megapixels"],
                    "train_seconds": m.train_info["train_seconds"], "train_precision": m.train_info["train_precision"],
                    "parameters": m.describe()["parameters"], **full_frame_row(m, data, data.heldout_ids)}}


def budget_cell(spec: dict) -> dict:
    """One training run of the budget study: its row (method, seed, epochs, compute, PSNR)."""
    return run_cell("budget", spec)["row"]


COMPUTE = {"comparison": _comparison, "budget": _budget,
           "ratequality": delivery.compute_point, "anchor": delivery.compute_anchor}  # notebook 08
