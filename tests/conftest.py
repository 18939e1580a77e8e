import os

import cv2
import numpy as np
import pytest


@pytest.fixture
def tmp_root(tmp_path, monkeypatch):
    """An empty project root for data/ and results/ (DYDCA_ROOT), so tests never touch the real ones."""
    monkeypatch.setenv("DYDCA_ROOT", str(tmp_path))
    return tmp_path


def synthetic_frames(n=6, h=50, w=74, seed=0):
    """Smooth moving gradients plus texture: compressible, but not constant."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.integers(0, 255, size=(h // 5 + 1, w // 5 + 1, 3)).astype(np.float32)
    tex = cv2.resize(base, (w, h), interpolation=cv2.INTER_LINEAR)
    out = []
    for t in range(n):
        ramp = (xx * 2 + yy + 7 * t) % 255
        img = 0.5 * tex + 0.5 * ramp[..., None]
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


@pytest.fixture
def synthetic_video(tmp_path):
    """A small MJPG .avi with 30 frames of 74x50 at 10 fps."""
    path = tmp_path / "tiny.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (74, 50))
    assert writer.isOpened()
    for f in synthetic_frames(30):
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def listing(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def tiny_wdsr(n_feats=16, n_blocks=2, seed=0):
    """A small WDSR path (x2, expansion 2) whose residual branch matters (the default init is near-bicubic)."""
    import torch

    from dydca_lib.models import WDSR

    torch.manual_seed(seed)
    w = WDSR(scale=2, n_blocks=n_blocks, n_feats=n_feats, expansion=2)
    with torch.no_grad():
        w.tail.parametrizations.weight.original0.mul_(10.0)
    return w.eval()


def smooth_patches(n, h, w, seed=0):
    """uint8 NHWC patches of blocky noise (something like an image)."""
    base = np.random.default_rng(seed).integers(0, 256, (n, h // 2 + 1, w // 2 + 1, 3))
    return base.repeat(2, 1).repeat(2, 2)[:, :h, :w].astype(np.uint8)
