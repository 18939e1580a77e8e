"""Scores shared by the studies' cells (kept out of their orchestration modules, so a cell's code
version holds only what computes it)."""

from __future__ import annotations

from .evaluate import evaluate, frame_protocol


def full_frame_row(method, data, heldout_ids) -> dict:
    """The full-frame protocol (held-out frames) for one prepared method."""
    _, per_frame, _ = evaluate(method.upscaler(), data.frames, method.frame_manifest(heldout_ids), heldout_ids,
                               method.context, desc=f"{method.name}: full-frame")
    f = frame_protocol(per_frame)
    return {"frame_psnr_rgb": f.psnr_rgb, "frame_psnr_y": f.psnr_y, "frame_ssim_y": f.ssim_y}
