"""Tiny client inputs shared by the client and on-device tests: a two-path dynamic model, a
14x18 frame cut coarse-to-fine, and what the evaluation path makes of it."""

import numpy as np
import pandas as pd
import torch

from dydca_lib import evaluate as E
from dydca_lib import patches as P
from dydca_lib.client.plan import Workload, plans_from_manifest
from dydca_lib.models import DynamicWDSR

SCALE, CONTEXT = 2, 2


def tiny_dynamic(seed=0, n_feats=4):
    torch.manual_seed(seed)
    m = DynamicWDSR(scale=SCALE, paths=[{"n_blocks": 1}, {"n_blocks": 0}], n_feats=n_feats, expansion=2,
                    routing=[(4, 4, 0), (8, 8, 1)])
    with torch.no_grad():  # make the residual branch matter (the default init is near-bicubic)
        for p in m.paths:
            p.tail.parametrizations.weight.original0.mul_(10.0)
    return m.eval()


def tiny_manifest(frames=(0,)):
    """A 14x18 LR frame under a pad-policy grid of 8x8 coarse / 4x4 fine cells: every other coarse
    cell split, border cells hanging over the frame."""
    geom = P.PatchGeometry(14, 18, 4, 4, levels=2)
    rows = []
    for f in frames:
        for k, c in enumerate(geom.cells(0).itertuples()):
            if (k + f) % 2:
                rows.append({"frame": f, "y": c.y, "x": c.x, "h": 8, "w": 8, "level": 0, "path": 1})
            else:
                fine = geom.cells(1)
                fine = fine[(fine.y // 8 == c.y // 8) & (fine.x // 8 == c.x // 8)]
                rows += [{"frame": f, "y": r.y, "x": r.x, "h": 4, "w": 4, "level": 1, "path": 0} for r in fine.itertuples()]
    return geom, pd.DataFrame(rows).sort_values(["frame", "y", "x"]).reset_index(drop=True)


def reference_frame(model, lr, manifest):
    """What notebook 03/04's evaluation produces: super_resolve_patches + stitch, PyTorch."""
    sr = E.super_resolve_patches(E.model_upscaler(model, routed=True), lr, manifest, SCALE, CONTEXT)
    covered = (min(lr.shape[0], int((manifest.y + manifest.h).max())) * SCALE,
               min(lr.shape[1], int((manifest.x + manifest.w).max())) * SCALE)
    return P.stitch(sr, manifest, covered, SCALE)


def tiny_workload():
    """(model, manifest, LR frame, Workload) of one tiny frame."""
    model = tiny_dynamic()
    geom, manifest = tiny_manifest()
    lr = np.random.default_rng(0).integers(0, 256, size=(14, 18, 3), dtype=np.uint8)
    return model, manifest, lr, Workload("tiny", {0: lr}, plans_from_manifest(manifest, [0]), {0: 0})
