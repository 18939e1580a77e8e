"""Cached cells of work that a notebook's loop and a sweep (:mod:`dydca_lib.sweep`) share: a cache
that knows nothing of what it caches.

A *cell* is one independent piece of a notebook's grid: notebook 04's (clip, scale, seed) —
train every method for that seed and score it under both protocols — or notebook 04b's
(method, budget, seed) run, or notebook 08's rate–quality points ((clip, codec, CRF): encode,
train on the decoded frames, score) and HR anchors. Each *kind* names the function that computes
it (:data:`KINDS`, ``module:function``, imported only when a cell is computed). A cell's result is a
JSON file (plus an ``.npz`` of kept SR frames where asked) under ``data/cells/``, named by a hash of
its *spec* (every parameter that determines it) and of the code that computes it — the import
closure of the kind's module (:func:`dydca_lib.codeversion.code_version`), so an edit elsewhere
(the compiler, a report) keeps hours of cells and an edit to the trainer recomputes them — written
atomically: a notebook finds a cell that a sweep worker computed, a finished cell is never
computed twice, and a killed one leaves nothing behind. A notebook always reads its cells back from
these files, so a table assembled after a sweep is the table a serial run writes.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
from pathlib import Path

import numpy as np

from .codeversion import code_version
from .io import _json_default, atomic_write_bytes, atomic_write_text
from .paths import data_dir

KINDS = {"comparison": "dydca_lib.comparison:compute_cell",  # notebook 04
         "budget": "dydca_lib.budget:compute_cell",  # notebook 04b
         "ratequality": "dydca_lib.delivery:compute_point", "anchor": "dydca_lib.delivery:compute_anchor",  # notebook 08
         "longvideo": "dydca_lib.window_runs:compute_cell",  # notebook 07
         "longanchor": "dydca_lib.longdelivery:compute_anchor", "longpoint": "dydca_lib.longdelivery:compute_point"}  # 08b


def _dumps(obj) -> str:
    return json.dumps(obj, sort_keys=True, default=_json_default)


def cell_code(kind: str) -> str:
    """The version of the code that computes a ``kind`` of cell: its module's import closure."""
    if kind not in KINDS:
        raise ValueError(f"unknown cell kind {kind!r}; known: {', '.join(KINDS)}")
    return code_version(KINDS[kind].split(":")[0])


def cell_key(kind: str, spec: dict) -> str:
    return hashlib.sha256(_dumps({"kind": kind, "spec": spec, "code": cell_code(kind)}).encode()).hexdigest()[:16]


def _compute(kind: str):
    module, name = KINDS[kind].split(":")
    return getattr(importlib.import_module(module), name)


def cell_path(kind: str, spec: dict, store=None) -> Path:
    """Where cell ``spec`` of ``kind`` lives (``.json``; kept frames beside it as ``.npz``): under
    ``data/cells/``, or ``store`` (a folder that is committed, e.g. a long profile's results)."""
    return (Path(store) if store else data_dir() / "cells") / f"{kind}-{cell_key(kind, spec)}.json"


def is_done(kind: str, spec: dict, store=None) -> bool:
    return cell_path(kind, spec, store).exists()


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


def stale_cells(store=None) -> list[Path]:
    """The cells in ``store`` (else ``data/cells/``) that the current code no longer reads: their
    file name is not their kind and spec's key under this code (the code that computes them has
    changed since, so a run computes them afresh beside them), or their kind is unknown."""
    folder = Path(store) if store else data_dir() / "cells"
    stale = []
    for path in sorted(folder.glob("*.json")):
        cell = json.loads(path.read_text())
        kind = cell.get("kind")
        if kind not in KINDS or cell_path(kind, cell["spec"], folder).name != path.name:
            stale.append(path)
    return stale


def remove_cells(paths: list[Path]) -> None:
    """Delete cells (each JSON and its kept frames' ``.npz``, where there is one)."""
    for path in paths:
        path.with_suffix(".npz").unlink(missing_ok=True)
        path.unlink()


def run_cell(kind: str, spec: dict, store=None, compute=None) -> dict:
    """The result of cell ``spec``: read from its file (in ``store``, else ``data/cells/``), or
    computed (by the kind's function, or ``compute(spec)`` when given: tests), written and read back."""
    path = cell_path(kind, spec, store)
    if not path.exists():
        result = (compute or _compute(kind))(spec)
        kept = result.pop("kept", {})
        if kept:
            buf = io.BytesIO()
            np.savez_compressed(buf, **{f"{m}|{f}": a for m, frames in kept.items() for f, a in frames.items()})
            atomic_write_bytes(path.with_suffix(".npz"), buf.getvalue())
        atomic_write_text(path, _dumps({"kind": kind, "spec": spec, **result}))  # last: the cell is done
    return _load(path)
