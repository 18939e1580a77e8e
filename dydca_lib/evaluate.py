"""Evaluation protocols, shared by every method: patch-level (STDO/Dy-DCA) and full-frame (CaFM).

An *upscaler* is any callable ``(lr_patches, path) -> sr_patches`` on uint8 NHWC batches of
same-size patches; ``path`` is the manifest's path id (ignored by single-model methods).

* **patch-level** (STDO/Dy-DCA): every patch upscaled on its own, MSE per patch over its in-frame
  pixels minus a shave of ``scale + 4`` px on each side, PSNR of the mean MSE over patches, RGB
  (and Y), on training frames — hides patch seams;
* **full-frame** (CaFM): patches stitched into the frame, shave ``scale + 6`` px at the frame
  border, mean of per-frame PSNR, RGB (and Y, and SSIM on Y), on held-out frames.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .metrics import psnr, psnr_from_mse, rgb_to_y
from .models import to_tensor, to_uint8
from .patches import extract, stitch
from .tensors import drop_context
from .video import FrameSet, bicubic_resize

PROTOCOLS = {
    "patch": ("patch-level (STDO/Dy-DCA): per-patch MSE with a shave of scale+4 px inside every scored patch, PSNR of "
              "the mean MSE, training frames"),
    "frame": "full-frame (CaFM): stitched frames, shave scale+6 px at the border, mean per-frame PSNR, held-out frames",
}


def bicubic_upscaler(scale: int, kernel: str = "pil"):
    def up(lr_patches: np.ndarray, path: int) -> np.ndarray:
        h, w = lr_patches.shape[1:3]
        return np.stack([bicubic_resize(p, (h * scale, w * scale), kernel) for p in lr_patches])

    return up


def model_upscaler(model: torch.nn.Module, batch_size: int = 64, routed: bool | None = None):
    """Wrap a torch SR model; ``routed`` models are called as ``model(x, path)``."""
    routed = hasattr(model, "route") if routed is None else routed
    model.eval()

    @torch.no_grad()
    def up(lr_patches: np.ndarray, path: int) -> np.ndarray:
        outs = []
        for i in range(0, len(lr_patches), batch_size):
            x = to_tensor(np.ascontiguousarray(lr_patches[i:i + batch_size]))
            outs.append(to_uint8(model(x, path) if routed else model(x)))
        return np.concatenate(outs)

    return up


def super_resolve_patches(upscaler, lr: np.ndarray, manifest: pd.DataFrame, scale: int, context: int = 0) -> list:
    """SR of every manifest patch of one frame (in manifest order), each ``h*s x w*s``.

    Patches are batched by (size, path); with ``context`` they are cut with that many extra LR
    pixels on every side and the matching HR margin is dropped from the output.
    """
    manifest = manifest.reset_index(drop=True)
    if "path" not in manifest:
        manifest = manifest.assign(path=0)
    pieces = extract(lr, manifest, context=context)
    out = [None] * len(manifest)
    for (_, _, path), g in manifest.groupby(["h", "w", "path"], sort=False):
        idx = g.index.to_numpy()
        sr = drop_context(upscaler(np.stack([pieces[i] for i in idx]), int(path)), context, scale)
        for i, p in zip(idx, sr):
            out[i] = p
    return out


def _patch_errors(sr_patches, hr: np.ndarray, manifest: pd.DataFrame, scale: int) -> pd.DataFrame:
    shave = scale + 4
    H, W = hr.shape[:2]
    rows = []
    for sr, (y, x, h, w) in zip(sr_patches, manifest[["y", "x", "h", "w"]].itertuples(index=False)):
        y0, x0 = y * scale, x * scale
        hh, ww = min(h * scale, H - y0), min(w * scale, W - x0)  # in-frame part
        a = sr[shave:hh - shave, shave:ww - shave].astype(np.float64)
        b = hr[y0 + shave:y0 + hh - shave, x0 + shave:x0 + ww - shave].astype(np.float64)
        if a.size == 0:
            rows.append((np.nan, np.nan))
            continue
        d = a - b
        dy = rgb_to_y(sr[shave:hh - shave, shave:ww - shave]) - rgb_to_y(hr[y0 + shave:y0 + hh - shave, x0 + shave:x0 + ww - shave])
        rows.append((float(np.mean(d * d)), float(np.mean(dy * dy))))
    return pd.DataFrame(rows, columns=["mse_rgb", "mse_y"])


def ssim_y(a: np.ndarray, b: np.ndarray, shave: int) -> float:
    """SSIM on the BT.601 Y channel (Wang et al. settings: Gaussian window sigma 1.5), scikit-image."""
    from skimage.metrics import structural_similarity

    ya, yb = rgb_to_y(a)[shave:-shave, shave:-shave], rgb_to_y(b)[shave:-shave, shave:-shave]
    return float(structural_similarity(ya, yb, data_range=255.0, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False))


def evaluate(upscaler, frames: FrameSet, manifest: pd.DataFrame, frame_ids, context: int = 0,
             desc: str = "evaluate", keep_frames: tuple = (),
             score_cells: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Run ``upscaler`` over the manifest patches of ``frame_ids``.

    Returns ``(patches, frames_df, kept)``: per-patch MSE (RGB, Y) under the patch-level shave,
    per-frame PSNR/SSIM of the stitched frame under the full-frame shave, and the SR frames whose
    ids are in ``keep_frames`` (for figures). ``score_cells`` (frame, y, x, h, w in LR px): score
    the patch level on these cells of the stitched SR frame instead of on the inference patches,
    so methods that cut frames differently are scored on the same pixels with the same weights
    (a cell that is an inference patch gets exactly the pixels it would get on its own).
    """
    s = frames.scale
    by_frame = dict(tuple(manifest.groupby("frame")))
    cells_by_frame = dict(tuple(score_cells.groupby("frame"))) if score_cells is not None else {}
    patch_rows, frame_rows, kept = [], [], {}
    for i in tqdm(list(frame_ids), desc=desc, leave=False):
        i = int(i)
        m = by_frame[i].reset_index(drop=True)
        lr, hr = frames.lr(i), frames.hr(i)
        sr_patches = super_resolve_patches(upscaler, lr, m, s, context)
        covered = (min(hr.shape[0], int((m.y + m.h).max()) * s), min(hr.shape[1], int((m.x + m.w).max()) * s))
        sr = stitch(sr_patches, m, covered, s)
        if score_cells is not None:
            m = cells_by_frame[i].reset_index(drop=True)
            sr_patches = [sr[y * s:(y + h) * s, x * s:(x + w) * s] for y, x, h, w in m[["y", "x", "h", "w"]].itertuples(index=False)]
        errs = _patch_errors(sr_patches, hr, m, s)
        cols = [c for c in ("frame", "y", "x", "h", "w", "path", "level", "label") if c in m]
        patch_rows.append(pd.concat([m[cols], errs], axis=1))
        ref = hr[:covered[0], :covered[1]]
        frame_rows.append({"frame": i, "psnr_rgb": psnr(ref, sr, s + 6), "psnr_y": psnr(ref, sr, s + 6, y_channel=True),
                           "ssim_y": ssim_y(ref, sr, s + 6)})
        if i in keep_frames:
            kept[i] = sr
    return pd.concat(patch_rows, ignore_index=True), pd.DataFrame(frame_rows), kept


def patch_protocol(patches: pd.DataFrame, by: str | None = None):
    """PSNR of the mean per-patch MSE (RGB and Y), overall or per value of ``by``."""
    def pooled(g):
        return pd.Series({"patches": len(g), "psnr_rgb": psnr_from_mse(g.mse_rgb.mean()),
                          "psnr_y": psnr_from_mse(g.mse_y.mean())})

    valid = patches.dropna(subset=["mse_rgb"])
    if by is None:
        return pooled(valid)
    return valid.groupby(by).apply(pooled, include_groups=False).reset_index()


def frame_protocol(frames_df: pd.DataFrame) -> pd.Series:
    """Mean of per-frame PSNR (RGB, Y) and SSIM (Y)."""
    return pd.Series({"frames": len(frames_df), "psnr_rgb": frames_df.psnr_rgb.mean(),
                      "psnr_y": frames_df.psnr_y.mean(), "ssim_y": frames_df.ssim_y.mean()})


def compare_upscalers(upscalers: dict, frames: FrameSet, manifest: pd.DataFrame, train_ids, heldout_ids,
                      keep_frames: tuple = ()) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Every upscaler on the same patches (``manifest``, e.g. Dy-DCA's), under both protocols.

    ``upscalers``: ``{name: (upscaler, context, parameters)}``. Returns ``(table, per_path, kept)``:
    one row per upscaler (patch level on ``train_ids``, full frame on ``heldout_ids``), the
    patch-level PSNR (RGB) per path with one column per upscaler, and each one's SR frames of
    ``keep_frames``.
    """
    rows, per_path, kept = [], [], {}
    for name, (up, ctx, n_params) in upscalers.items():
        patch_res, _, _ = evaluate(up, frames, manifest, train_ids, ctx, desc=f"{name}: training frames")
        _, frame_res, kept[name] = evaluate(up, frames, manifest, heldout_ids, ctx, desc=f"{name}: held-out frames",
                                            keep_frames=tuple(int(f) for f in keep_frames))
        p, f = patch_protocol(patch_res), frame_protocol(frame_res)
        rows.append({"method": name, "models": 0 if n_params == 0 else 1, "parameters": n_params, "context_lr_px": ctx,
                     "patch_psnr_rgb": p.psnr_rgb, "patch_psnr_y": p.psnr_y, "frame_psnr_rgb": f.psnr_rgb,
                     "frame_psnr_y": f.psnr_y, "frame_ssim_y": f.ssim_y})
        per_path.append(patch_protocol(patch_res, by="path").assign(method=name))
    path_table = pd.concat(per_path).pivot(index="path", columns="method", values="psnr_rgb").reset_index()
    return pd.DataFrame(rows), path_table, kept


PRECISION_TOLERANCE_DB = 0.05


def precision_deltas(table: pd.DataFrame, reference: str, tolerance_db: float = PRECISION_TOLERANCE_DB) -> pd.DataFrame:
    """:func:`compare_upscalers`' table with each PSNR's change against the ``reference`` row
    (``d_<metric>``, dB), the largest of them in magnitude (``delta_vs_fp32_db``, signed) and
    whether it stays within ``tolerance_db``."""
    if reference not in set(table.method):
        raise ValueError(f"reference {reference!r} is not a row of the table ({list(table.method)})")
    metrics = ["patch_psnr_rgb", "frame_psnr_rgb", "frame_psnr_y"]
    ref = table.set_index("method").loc[reference, metrics]
    out = table[["method", *metrics, "frame_ssim_y"]].copy()
    deltas = out[metrics] - ref
    for m in metrics:
        out[f"d_{m}"] = deltas[m].round(3)
    worst = deltas.abs().to_numpy().argmax(axis=1)
    out["delta_vs_fp32_db"] = [round(float(deltas.iloc[i, j]), 3) for i, j in enumerate(worst)]
    out["within_0_05_db"] = out.delta_vs_fp32_db.abs() <= tolerance_db
    return out
