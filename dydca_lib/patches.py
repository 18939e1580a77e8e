"""Patch geometry, per-patch difficulty labels, STDO clustering and Dy-DCA coarse-to-fine patches.

Coordinates are LR pixels; HR coordinates are ``scale`` times larger. A *manifest* is a
DataFrame with one row per patch: ``frame, y, x, h, w`` (+ ``level``, ``label``, ``path`` ...).

**Frames that the grid does not divide** (``policy``):

* ``"pad"`` (default): the grid covers the frame rounded *up* to a multiple of the coarsest
  patch; patches may hang over the bottom/right border. :func:`extract` fills the overhang by
  repeating edge pixels (so every patch of a level has the same shape, as a batched model
  needs) and :func:`stitch` drops it. Cells entirely outside the frame do not exist. Every
  frame pixel is covered once.
* ``"crop"``: the grid covers the frame rounded *down*; the bottom/right remainder is not
  covered by any patch (and not scored).

**Levels**: level 0 is the coarsest patch (``2**(levels-1)`` times the fine patch side); the
last level is the fine patch. Dy-DCA splits a patch 2x2 into the next level when its label is
at or below that level's threshold. Paths are numbered by patch size: path 0 = the smallest
(hardest) patches, which get the deepest network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .tensors import padded_for_patches, with_context

from .metrics import psnr, psnr_from_mse
from .video import FrameSet

POLICIES = ("pad", "crop")
THRESHOLD_MODES = ("quantile", "db")


class PatchError(ValueError):
    """Bad patch geometry, thresholds or cluster counts; the message says what to change."""


@dataclass(frozen=True)
class PatchGeometry:
    """A hierarchy of square-cell grids over an LR frame of ``lr_h x lr_w`` pixels."""

    lr_h: int
    lr_w: int
    patch_h: int  # fine (last-level) patch size in LR pixels
    patch_w: int
    levels: int = 1
    policy: str = "pad"

    def __post_init__(self):
        if self.policy not in POLICIES:
            raise PatchError(f"policy must be one of {POLICIES}, got {self.policy!r}")
        if self.levels < 1:
            raise PatchError(f"levels must be >= 1, got {self.levels}")
        if self.patch_h < 4 or self.patch_w < 4:
            raise PatchError(f"a {self.patch_w}x{self.patch_h} fine patch is finer than 4x4 LR pixels; "
                             "use fewer grid rows/columns or a larger patch size")
        if self.coarse_h > self.lr_h or self.coarse_w > self.lr_w:
            raise PatchError(f"the coarsest patch ({self.coarse_w}x{self.coarse_h} LR px at {self.levels} "
                             f"level(s)) is larger than the {self.lr_w}x{self.lr_h} LR frame; use a smaller "
                             "patch, fewer levels, or a smaller scale")

    @classmethod
    def from_grid(cls, lr_hw: tuple[int, int], rows: int, cols: int, levels: int = 1, policy: str = "pad"):
        """Fine patch size from a fine grid of ``rows x cols`` patches per frame (STDO: 10 x 20)."""
        h, w = lr_hw
        if rows < 1 or cols < 1 or rows > h or cols > w:
            raise PatchError(f"a {cols}x{rows} grid does not fit a {w}x{h} LR frame")
        r = math.ceil if policy == "pad" else math.floor
        return cls(h, w, max(1, r(h / rows)), max(1, r(w / cols)), levels, policy)

    @property
    def coarse_h(self) -> int:
        return self.patch_h * 2 ** (self.levels - 1)

    @property
    def coarse_w(self) -> int:
        return self.patch_w * 2 ** (self.levels - 1)

    def cell_size(self, level: int) -> tuple[int, int]:
        f = 2 ** (self.levels - 1 - level)
        return self.patch_h * f, self.patch_w * f

    @property
    def grid_hw(self) -> tuple[int, int]:
        """The LR area the grid spans (a multiple of the coarsest patch)."""
        r = math.ceil if self.policy == "pad" else math.floor
        return r(self.lr_h / self.coarse_h) * self.coarse_h, r(self.lr_w / self.coarse_w) * self.coarse_w

    @property
    def covered_hw(self) -> tuple[int, int]:
        """The LR area the patches cover (the frame, or less under ``crop``)."""
        gh, gw = self.grid_hw
        return min(gh, self.lr_h), min(gw, self.lr_w)

    def cells(self, level: int) -> pd.DataFrame:
        """All cells of ``level`` that overlap the frame: ``y, x, h, w`` (+ ``row, col``)."""
        ch, cw = self.cell_size(level)
        gh, gw = self.grid_hw
        ys, xs = np.arange(0, gh, ch), np.arange(0, gw, cw)
        ys, xs = ys[ys < self.lr_h], xs[xs < self.lr_w]
        yy, xx = np.meshgrid(ys, xs, indexing="ij")
        return pd.DataFrame({"y": yy.ravel(), "x": xx.ravel(), "h": ch, "w": cw,
                             "row": (yy // ch).ravel(), "col": (xx // cw).ravel()})

    def describe(self) -> dict:
        return {"levels": self.levels, "policy": self.policy, "grid_lr": f"{self.grid_hw[1]}x{self.grid_hw[0]}",
                "patch_sizes_lr": [f"{w}x{h}" for h, w in (self.cell_size(l) for l in range(self.levels))]}


# ---------------------------------------------------------------- split and stitch

def extract(img: np.ndarray, manifest: pd.DataFrame, scale: int = 1, context: int = 0) -> list[np.ndarray]:
    """Cut ``img`` (LR, or HR with ``scale``) into the manifest's patches.

    ``context`` adds that many pixels on every side of each patch (so a patch of ``h x w`` comes
    out as ``h + 2c x w + 2c``); anything outside the frame (context at the border, overhang under
    the ``pad`` policy) repeats the edge pixels.
    """
    hmax, wmax = int((manifest.y + manifest.h).max()) * scale, int((manifest.x + manifest.w).max()) * scale
    padded = padded_for_patches(img, hmax, wmax, context)
    out = []
    for y, x, h, w in manifest[["y", "x", "h", "w"]].itertuples(index=False):
        hc, wc = with_context(h * scale, w * scale, context)
        out.append(padded[y * scale:y * scale + hc, x * scale:x * scale + wc])
    return out


def stitch(patches: list[np.ndarray], manifest: pd.DataFrame, out_hw: tuple[int, int], scale: int = 1) -> np.ndarray:
    """Place patches back into an ``out_hw`` image (overhang dropped). Inverse of :func:`extract`."""
    if len(patches) != len(manifest):
        raise PatchError(f"{len(patches)} patches for a manifest of {len(manifest)} rows")
    H, W = out_hw
    first = patches[0]
    out = np.zeros((H, W) + first.shape[2:], dtype=first.dtype)
    for p, (y, x) in zip(patches, manifest[["y", "x"]].itertuples(index=False)):
        y, x = y * scale, x * scale
        hh, ww = min(p.shape[0], H - y), min(p.shape[1], W - x)
        out[y:y + hh, x:x + ww] = p[:hh, :ww]
    return out


# ---------------------------------------------------------------- labels

def cell_mse(sq_err: np.ndarray, geom: PatchGeometry, level: int, scale: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Mean squared error (over valid pixels and channels) of every cell of ``level``.

    ``sq_err`` is the per-pixel squared error summed over channels, at HR resolution.
    """
    gh, gw = geom.grid_hw
    ch, cw = geom.cell_size(level)
    H, W = gh * scale, gw * scale
    h, w = min(sq_err.shape[0], H), min(sq_err.shape[1], W)
    err = np.zeros((H, W))
    cnt = np.zeros((H, W))
    err[:h, :w], cnt[:h, :w] = sq_err[:h, :w], 1.0
    shape = (gh // ch, ch * scale, gw // cw, cw * scale)
    sums, counts = err.reshape(shape).sum(axis=(1, 3)), cnt.reshape(shape).sum(axis=(1, 3))
    cells = geom.cells(level)
    n = counts[cells.row, cells.col]
    return cells, sums[cells.row, cells.col] / (3.0 * n)


def label_frames(frames: FrameSet, frame_ids, sr_fn, geom: PatchGeometry, desc: str = "label patches"):
    """Score every patch of every level of the given frames with ``sr_fn`` (LR uint8 -> SR uint8).

    The SR frame is computed once per frame (no patch seams), and each cell's label is the PSNR
    of its mean squared error against HR (RGB, 8-bit). Returns ``(labels, per_frame)``:
    ``labels`` has ``frame, level, y, x, h, w, mse, label``; ``per_frame`` has the SR frame's
    full-frame PSNR (RGB and Y, shave scale+6) of each frame.
    """
    s = frames.scale
    ch, cw = geom.covered_hw
    rows, per_frame = [], []
    for i in tqdm(list(frame_ids), desc=desc, leave=False):
        i = int(i)
        lr, hr = frames.lr(i)[:ch, :cw], frames.hr(i)[:ch * s, :cw * s]
        sr = sr_fn(lr)
        if sr.shape != hr.shape:
            raise PatchError(f"sr_fn returned {sr.shape} for HR {hr.shape}")
        d = sr.astype(np.float64) - hr.astype(np.float64)
        sq = (d * d).sum(axis=2)
        for level in range(geom.levels):
            cells, m = cell_mse(sq, geom, level, s)
            cells = cells[["y", "x", "h", "w"]].assign(frame=i, level=level, mse=m)
            rows.append(cells)
        per_frame.append({"frame": i, "psnr_rgb": psnr(hr, sr, shave=s + 6),
                          "psnr_y": psnr(hr, sr, shave=s + 6, y_channel=True)})
    labels = pd.concat(rows, ignore_index=True)
    labels["label"] = [psnr_from_mse(v) for v in labels.mse]
    cols = ["frame", "level", "y", "x", "h", "w", "mse", "label"]
    return labels[cols], pd.DataFrame(per_frame)


# ---------------------------------------------------------------- STDO clustering

def quantile_bins(labels, k: int) -> tuple[np.ndarray, np.ndarray]:
    """STDO: ``k`` equal-count bins by label rank; bin 0 = lowest PSNR (hardest).

    Ties are broken by position, so counts differ by at most one. Returns ``(bins, edges)``:
    ``edges[j]`` is the highest label in bin ``j`` (for plotting).
    """
    labels = np.asarray(labels, dtype=np.float64)
    n = len(labels)
    if k < 1 or k > n:
        raise PatchError(f"k={k} bins for {n} patches: k must be between 1 and the patch count")
    order = np.argsort(labels, kind="stable")
    bins = np.empty(n, dtype=np.int64)
    bins[order] = np.arange(n) * k // n
    edges = np.array([labels[bins == j].max() for j in range(k)])
    return bins, edges


def kmeans_bins(labels, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """k-means on the labels (scikit-learn), renumbered so bin 0 has the lowest centroid."""
    from sklearn.cluster import KMeans

    labels = np.asarray(labels, dtype=np.float64)
    if k < 1 or k > len(np.unique(labels)):
        raise PatchError(f"k={k} clusters for {len(np.unique(labels))} distinct labels")
    km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(labels.reshape(-1, 1))
    rank = np.argsort(np.argsort(km.cluster_centers_.ravel()))
    bins = rank[km.labels_]
    edges = np.array([labels[bins == j].max() for j in range(k)])
    return bins, edges


def cluster_patches(labels: pd.DataFrame, k: int, method: str = "quantile", seed: int = 0):
    """Assign every patch of ``labels`` a bin (``method``: "quantile" as STDO, or "kmeans")."""
    if method == "quantile":
        bins, edges = quantile_bins(labels.label.to_numpy(), k)
    elif method == "kmeans":
        bins, edges = kmeans_bins(labels.label.to_numpy(), k, seed)
    else:
        raise PatchError(f"cluster method must be 'quantile' or 'kmeans', got {method!r}")
    return labels.assign(bin=bins), edges


# ---------------------------------------------------------------- Dy-DCA coarse-to-fine

def resolve_thresholds(labels: pd.DataFrame, thresholds, mode: str = "quantile") -> list[float]:
    """Per-level split thresholds in dB.

    ``mode="db"``: ``thresholds`` are dB values (the released code: one level at 40 dB).
    ``mode="quantile"``: ``thresholds[l]`` is the fraction of the level-``l`` patches that are
    considered for splitting (the parents that reached level ``l``) to split, e.g. ``[0.5]``
    splits the hardest half of the coarse patches. Computed on ``labels`` (the training frames).
    """
    if mode not in THRESHOLD_MODES:
        raise PatchError(f"threshold mode must be one of {THRESHOLD_MODES}, got {mode!r}")
    levels = int(labels.level.max()) + 1
    thresholds = [float(t) for t in thresholds]
    if len(thresholds) != levels - 1:
        raise PatchError(f"{levels} levels need {levels - 1} threshold(s), got {len(thresholds)}")
    out, alive = [], labels[labels.level == 0]
    for level, t in enumerate(thresholds):
        lo, hi = alive.label.min(), alive.label.max()
        if mode == "quantile":
            if not 0 < t < 1:
                raise PatchError(f"quantile threshold {t} must be strictly between 0 and 1")
            db = float(np.quantile(alive.label, t))
        else:
            if not lo <= t <= hi:
                raise PatchError(f"threshold {t} dB at level {level} is outside the label range "
                                 f"[{lo:.2f}, {hi:.2f}] dB: it would split nothing or everything. "
                                 "Use a dB value inside the range or quantile thresholds.")
            db = t
        out.append(db)
        split = alive[alive.label <= db]
        alive = _children(labels, split, level)
    return out


def _children(labels: pd.DataFrame, parents: pd.DataFrame, level: int) -> pd.DataFrame:
    """The level+1 cells lying inside ``parents`` (level-``level`` cells)."""
    nxt = labels[labels.level == level + 1]
    if parents.empty or nxt.empty:
        return nxt.iloc[:0]
    ph, pw = int(parents.h.iloc[0]), int(parents.w.iloc[0])
    key = set(zip(parents.frame, parents.y, parents.x))
    mask = [(f, y - y % ph, x - x % pw) in key for f, y, x in zip(nxt.frame, nxt.y, nxt.x)]
    return nxt[np.array(mask, dtype=bool)]


def coarse_to_fine(labels: pd.DataFrame, thresholds_db: list[float]) -> pd.DataFrame:
    """Dy-DCA patching: the leaves of the split tree, with their ``path`` (0 = smallest patches).

    Start from the level-0 cells of every frame; a cell whose label is ``<=`` its level's
    threshold is replaced by its 2x2 children (those overlapping the frame), recursively.
    """
    levels = int(labels.level.max()) + 1
    if len(thresholds_db) != levels - 1:
        raise PatchError(f"{levels} levels need {levels - 1} threshold(s), got {len(thresholds_db)}")
    leaves, alive = [], labels[labels.level == 0]
    for level in range(levels):
        if level == levels - 1:
            leaves.append(alive)
            break
        split = alive.label <= thresholds_db[level]
        leaves.append(alive[~split])
        alive = _children(labels, alive[split], level)
    out = pd.concat(leaves, ignore_index=True)
    out["path"] = levels - 1 - out.level
    return out.sort_values(["frame", "y", "x"], kind="stable").reset_index(drop=True)


def routing_table(manifest: pd.DataFrame) -> dict[tuple[int, int], int]:
    """``(h, w) -> path`` read from a manifest: the router is a pure patch-size test."""
    table = {}
    for (h, w), g in manifest.groupby(["h", "w"]):
        paths = set(g.path)
        if len(paths) != 1:
            raise PatchError(f"patch size {w}x{h} maps to several paths {sorted(paths)}")
        table[(int(h), int(w))] = int(paths.pop())
    return table


def share_table(manifest: pd.DataFrame, by: str, frame_hw: tuple[int, int] | None = None) -> pd.DataFrame:
    """Count and share of patches and of (covered) area per value of ``by`` (path or bin)."""
    area = manifest.h * manifest.w
    if frame_hw is not None:  # count only the in-frame part of overhanging patches
        H, W = frame_hw
        area = (np.minimum(manifest.y + manifest.h, H) - manifest.y) * (np.minimum(manifest.x + manifest.w, W) - manifest.x)
    g = manifest.assign(area=area).groupby(by)
    out = pd.DataFrame({"patches": g.size(), "area_px": g.area.sum(), "mean_label_db": g.label.mean(),
                        "min_label_db": g.label.min(), "max_label_db": g.label.max()}).reset_index()
    out["patch_share"] = out.patches / out.patches.sum()
    out["area_share"] = out.area_px / out.area_px.sum()
    return out
