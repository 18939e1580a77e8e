"""How patches become network inputs and come back, in NumPy alone (no torch, no pandas): the
compiler, the client and the learning code share it.

*Context* is the margin of extra LR pixels cut around every patch so that its border pixels see
real neighbours; the network's output then carries ``context * scale`` HR pixels on every side
that are dropped. This arithmetic lives here once: :func:`with_context` (input size),
:func:`padded_for_patches` (a frame edge-padded so every patch + context can be sliced),
:func:`hr_margin` and :func:`drop_context` (the HR margin and its removal).
"""

from __future__ import annotations

import numpy as np


def with_context(h: int, w: int, context: int) -> tuple[int, int]:
    """The network input of an ``h x w`` patch cut with ``context`` pixels on every side."""
    return int(h) + 2 * int(context), int(w) + 2 * int(context)


def hr_margin(context: int, scale: int) -> int:
    """HR pixels on every side of an output that come from the LR context."""
    return int(context) * int(scale)


def padded_for_patches(img: np.ndarray, hmax: int, wmax: int, context: int) -> np.ndarray:
    """``img`` edge-padded by ``context`` on every side and out to ``hmax x wmax`` (the patches'
    extent, which overhangs the frame under the ``pad`` policy), so that patch ``(y, x, h, w)``
    with context is ``padded[y:y + h + 2c, x:x + w + 2c]``. Returns ``img`` itself when no pad is needed."""
    H, W = img.shape[:2]
    c = int(context)
    pad = ((c, max(0, int(hmax) - H) + c), (c, max(0, int(wmax) - W) + c)) + ((0, 0),) * (img.ndim - 2)
    return np.pad(img, pad, mode="edge") if any(p for pair in pad for p in pair) else img


def drop_context(sr: np.ndarray, context: int, scale: int) -> np.ndarray:
    """Crop the :func:`hr_margin` from SR output: a batch ``(N, H, W, C)`` or one patch ``(H, W, C)``."""
    m = hr_margin(context, scale)
    if not m:
        return sr
    if sr.ndim == 4:
        return sr[:, m:sr.shape[1] - m, m:sr.shape[2] - m]
    return sr[m:sr.shape[0] - m, m:sr.shape[1] - m]


def to_nchw(patches: np.ndarray) -> np.ndarray:
    """uint8 NHWC -> float32 NCHW in [0, 1] (as :func:`dydca_lib.models.to_tensor`)."""
    return np.ascontiguousarray((patches.astype(np.float32) / np.float32(255.0)).transpose(0, 3, 1, 2))


def to_uint8(y: np.ndarray) -> np.ndarray:
    """float NCHW -> uint8 NHWC (as :func:`dydca_lib.models.to_uint8`: clamp, * 255, round half even)."""
    y = np.clip(y, 0.0, 1.0).astype(np.float32) * np.float32(255.0)
    return np.round(y).astype(np.uint8).transpose(0, 2, 3, 1)
