"""The budget study: held-out full-frame PSNR against training compute, per method and seed.

Every (method, seed, budget) is its own training run — a cosine schedule over that many epochs,
as notebook 04 trains — not a checkpoint of a longer run, so each point is what a user training
with that budget gets. Budgets are in epochs over each method's own training patches (notebook
04's equal-compute rule); the x axis is the LR pixels each run actually processed. Runs share
:func:`~dydca_lib.train.train_or_load`'s cache with notebook 04, so a budget and seed that
notebook 04 already trained cost a file read.

Two readings of the same curves:

* **equal compute** — at each budget, methods ranked by mean PSNR over seeds (:func:`orderings`);
* **own plateau** — each method at the first budget from which every further doubling gains less
  than ``tol_db`` (:func:`plateaus`); a method still gaining at the largest budget has not
  reached its plateau, and its row says so.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import registry
from .cells import run_cell
from .comparison import reading, suite_kwargs
from .methods import Method
from .params import PatchParams
from .scores import full_frame_row

STUDY_METRICS = ["frame_psnr_rgb", "frame_psnr_y", "frame_ssim_y"]


def budget_grid(max_epochs: float, min_epochs: float = 1.0) -> list[float]:
    """Log-spaced budgets: ``min_epochs`` doubled up to ``max_epochs`` (both included)."""
    if not 0 < min_epochs <= max_epochs:
        raise ValueError(f"budgets: need 0 < min_epochs ({min_epochs}) <= max_epochs ({max_epochs})")
    n = int(round(math.log2(max_epochs / min_epochs)))
    if not math.isclose(min_epochs * 2 ** n, max_epochs):
        raise ValueError(f"budgets: max_epochs ({max_epochs}) must be min_epochs ({min_epochs}) times a power of 2")
    return [min_epochs * 2 ** i for i in range(n + 1)]


def check_budgets(budgets) -> list[float]:
    """``budgets`` as sorted floats; an empty, non-positive or repeated list is a ``ValueError``."""
    b = sorted(float(x) for x in budgets)
    if not b or b[0] <= 0 or len(set(b)) != len(b):
        raise ValueError(f"budgets: give distinct positive epoch counts, got {list(budgets)}")
    return b


def study_method(name: str, scale: int, n_chunks: int, epochs: float, seed: int, **suite_kw) -> Method:
    """The trained method ``name`` (a :mod:`~dydca_lib.registry` ref: ``"STDO k=3"``, ``stdo:k=3``,
    ``"one model per video (= size)"`` ...) at ``epochs``."""
    try:
        ref = registry.parse(name)
    except ValueError as e:
        raise ValueError(f"budget study: {e}") from None
    if not ref.entry.trained:
        raise ValueError(f"budget study: {name!r} is not a trained method")
    return registry.make(ref, scale, n_chunks, epochs=epochs, seed=seed, **suite_kw)


def validate_methods(names, scale: int, n_chunks: int, **suite_kw) -> list[str]:
    """``names`` if every one is a trained method of the suite (checked before any training)."""
    if not names:
        raise ValueError("budget study: give at least one method")
    for n in names:
        study_method(n, scale, n_chunks, 1.0, 0, **suite_kw)
    return list(names)


def run_study(specs: list[dict], progress=None) -> pd.DataFrame:
    """One row per run (:func:`budget_specs`): method, seed, epochs, LR megapixels
    processed, the seconds its training took (when it was trained, also for a model loaded from
    the cache) and the full-frame metrics on the held-out frames. Each run is a cached cell, so a
    sweep can compute them elsewhere first. ``progress`` wraps the list (e.g. ``tqdm``)."""
    return pd.DataFrame([budget_cell(s) for s in (progress(specs) if progress else specs)])


def curves(results: pd.DataFrame, metric: str = "frame_psnr_rgb") -> pd.DataFrame:
    """Mean and sample std over seeds of ``metric`` (and of the LR megapixels) per method and budget."""
    g = results.groupby(["method", "epochs"], sort=False)
    out = g.agg(mean=(metric, "mean"), std=(metric, "std"), seeds=("seed", "nunique"),
                lr_megapixels=("train_lr_megapixels", "mean"), train_seconds=("train_seconds", "mean"))
    return out.reset_index().sort_values(["method", "epochs"], kind="stable", key=_method_order(results))


def _method_order(results):
    order = {m: i for i, m in enumerate(dict.fromkeys(results.method))}
    return lambda col: col.map(order) if col.name == "method" else col


def plateaus(curve: pd.DataFrame, tol_db: float = 0.05) -> pd.DataFrame:
    """Per method: the plateau budget — the first budget from which every later step gains less
    than ``tol_db`` per doubling of the budget — its PSNR (mean, std) and LR megapixels, and
    ``reached``. A method whose last step still gains ``tol_db`` or more has not plateaued: its
    row gives the largest budget, ``reached=False``. The largest budget alone cannot show a
    plateau (nothing after it), so it is the plateau only when reached from an earlier budget."""
    rows = []
    for method, g in curve.groupby("method", sort=False):
        g = g.sort_values("epochs").reset_index(drop=True)
        gains = [(g["mean"][i + 1] - g["mean"][i]) / math.log2(g.epochs[i + 1] / g.epochs[i])
                 for i in range(len(g) - 1)]
        at = next((i for i in range(len(gains)) if all(x < tol_db for x in gains[i:])), None)
        reached = at is not None
        i = at if reached else len(g) - 1
        rows.append({"method": method, "plateau_epochs": g.epochs[i], "reached": reached,
                     "psnr": g["mean"][i], "psnr_std": g["std"][i], "lr_megapixels": g.lr_megapixels[i],
                     "last_gain_db_per_doubling": round(gains[-1], 3) if gains else float("nan"),
                     "best_psnr": g["mean"].max(), "best_epochs": g.epochs[int(g["mean"].idxmax())]})
    return pd.DataFrame(rows)


def _ranking(points: pd.DataFrame, ties_within: float = 2.0) -> str:
    """``A > B ≈ C``: methods by mean PSNR, ``≈`` where the gap to the next one is a tie under
    notebook 04's rule (smaller than ``ties_within`` times the spread of the difference)."""
    p = points.sort_values("mean", ascending=False).reset_index(drop=True)
    out = p.method[0]
    for i in range(1, len(p)):
        a, b = p.iloc[i - 1], p.iloc[i]
        spread = math.hypot(a["std"], b["std"]) if min(a.seeds, b.seeds) > 1 else float("nan")
        out += (" ≈ " if reading(a["mean"] - b["mean"], spread, ties_within) == "tie" else " > ") + b.method
    return out


def orderings(curve: pd.DataFrame, plateau: pd.DataFrame) -> pd.DataFrame:
    """The ranking at every budget (equal compute) and at every method's own plateau (or its
    largest budget where it has none); ``≈`` marks a tie under notebook 04's rule."""
    rows = [{"rule": "equal compute", "epochs": epochs, "ranking": _ranking(g)}
            for epochs, g in curve.groupby("epochs")]
    own = plateau.rename(columns={"psnr": "mean", "psnr_std": "std"}).assign(
        seeds=curve.groupby("method", sort=False).seeds.min().reindex(plateau.method).to_numpy())
    rows.append({"rule": "own plateau" if own.reached.all() else "own plateau (or largest budget)",
                 "epochs": float("nan"), "ranking": _ranking(own)})
    return pd.DataFrame(rows)


def settles_from(curve: pd.DataFrame) -> float:
    """The smallest budget from which the equal-compute order by mean PSNR stays the same at every
    larger budget; NaN when the order still changes at the largest budget (or one budget only)."""
    orders = [tuple(g.sort_values("mean", ascending=False).method) for _, g in curve.groupby("epochs")]
    budgets = sorted(curve.epochs.unique())
    if len(orders) < 2 or orders[-1] != orders[-2]:
        return float("nan")
    i = len(orders) - 1
    while i > 0 and orders[i - 1] == orders[-1]:
        i -= 1
    return float(budgets[i])


def summary(curve: pd.DataFrame, plateau: pd.DataFrame) -> dict:
    """Numbers for metrics.json and the report."""
    return {"settles_from_epochs": None if np.isnan(s := settles_from(curve)) else s,
            "plateau": {r.method: {"epochs": float(r.plateau_epochs), "reached": bool(r.reached),
                                   "psnr": round(float(r.psnr), 3)} for r in plateau.itertuples()},
            "largest_budget": {r.method: round(float(r["mean"]), 3)
                               for _, r in curve[curve.epochs == curve.epochs.max()].iterrows()}}


# ---------------------------------------------------------------- the cells: (method, budget, seed)

def budget_specs(params: dict) -> list[dict]:
    """Notebook 04b's runs, in its order: method, then seed, then budget."""
    if not params["seeds"]:
        raise ValueError("seeds: give at least one training seed")
    patch, suite = PatchParams.pick(params).asdict(), suite_kwargs(params, per_run=False)
    return [{"patch": patch, "method": str(name), "epochs": float(epochs), "seed": int(seed), "suite": suite}
            for name in params["methods"] for seed in params["seeds"] for epochs in sorted(params["budgets"])]


def compute_cell(spec: dict) -> dict:
    """Compute one training run of the budget study (what :func:`budget_cell` caches)."""
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
