"""The shared, cached first stages every notebook after 01 needs: frames, chunks, the general
model, patch labels and the Dy-DCA manifest.

Notebooks 02-06 declare the same data/patching parameters (:class:`~dydca_lib.params.PatchParams`;
the profiles set them once in ``common``) and call :func:`patch_data`, so each notebook runs on its own and they
all see identical patches. The expensive parts are cached on disk: frames (``video``), the
general model (``general``) and the labels (``data/cache/labels-<hash>``), keyed by everything
that determines them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import dataclasses
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import general
from . import patches as P
from . import video as videolib
from .codeversion import code_version
from .io import atomic_write_bytes
from .models import super_resolve
from .params import PatchParams
from .paths import data_dir

LABELS_VERSION = 1


@dataclass
class PatchData:
    frames: videolib.FrameSet
    chunks: list
    frame_table: pd.DataFrame
    geom: P.PatchGeometry
    general_net: torch.nn.Module
    general_history: pd.DataFrame
    general_info: dict
    labels: pd.DataFrame  # every cell of every level of every frame
    general_frames: pd.DataFrame  # general model's full-frame PSNR per frame
    thresholds_db: list
    manifest: pd.DataFrame  # Dy-DCA leaves with path, chunk, split

    @property
    def train_ids(self) -> np.ndarray:
        return self.frame_table.frame[self.frame_table.split == "train"].to_numpy()

    @property
    def heldout_ids(self) -> np.ndarray:
        return self.frame_table.frame[self.frame_table.split == "heldout"].to_numpy()

    @property
    def routing(self) -> dict:
        return P.routing_table(self.manifest)

    def path_names(self) -> dict:
        return {p: f"path {p}: {w}x{h} LR patches" for (h, w), p in self.routing.items()}

    def load_frames(self, ids) -> tuple[dict, dict]:
        """LR and HR frames ``ids`` in memory (for training)."""
        ids = [int(i) for i in ids]
        return {i: self.frames.lr(i) for i in ids}, {i: self.frames.hr(i) for i in ids}


def _read_csv_gz(path: Path) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(gzip.decompress(path.read_bytes())))


def _write_csv_gz(path: Path, df: pd.DataFrame) -> None:
    atomic_write_bytes(path, gzip.compress(df.to_csv(index=False).encode(), mtime=0))


def cached_labels(frames: videolib.FrameSet, frame_ids, geom: P.PatchGeometry, net, general_info: dict):
    """:func:`patches.label_frames`, cached under ``data/cache/`` by frames, geometry and model."""
    key_record = {"frames": frames.identity(), "ids": [int(i) for i in frame_ids], "geom": asdict(geom),
                  "model": general_info["cache_file"], "v": LABELS_VERSION, "code": code_version(P.__name__)}
    key = hashlib.sha256(json.dumps(key_record, sort_keys=True).encode()).hexdigest()[:12]
    root = data_dir() / "cache"
    lab, per = root / f"labels-{key}.csv.gz", root / f"general-frames-{key}.csv.gz"
    if lab.exists() and per.exists():
        return _read_csv_gz(lab), _read_csv_gz(per)
    labels, per_frame = P.label_frames(frames, frame_ids, lambda lr: super_resolve(net, lr), geom)
    _write_csv_gz(per, per_frame)
    _write_csv_gz(lab, labels)
    return labels, per_frame


def patch_data(params: PatchParams | None = None, *, frames: videolib.FrameSet | None = None,
               **changes) -> PatchData:
    """Frames, chunks, general model, labels and the Dy-DCA manifest for one set of parameters:
    ``params`` (default :class:`~dydca_lib.params.PatchParams`) with ``changes`` applied, e.g.
    ``patch_data(video="bikes", scale=3)``; an unknown name is a ``TypeError``. ``frames`` replaces
    the clip's own frames (e.g. its LR frames after a codec, :func:`dydca_lib.delivery.encoded_lr_frames`);
    the general model still leaves out ``params.video``."""
    p = dataclasses.replace(params or PatchParams(), **changes)
    if frames is None:
        frames = videolib.prepare_frames(p.video, p.scale, max_frames=p.max_frames or None, lr_kernel=p.lr_kernel,
                                         fps=p.fps or None)
    elif frames.scale != p.scale:
        raise ValueError(f"frames are x{frames.scale}, the parameters say x{p.scale}")
    chunks, frame_table = videolib.plan_frames(len(frames), frames.fps, p.chunk_seconds, p.heldout_every,
                                               p.heldout_policy)
    if p.patch_size:
        geom = P.PatchGeometry(*frames.lr_hw, p.patch_size, p.patch_size, p.levels, p.patch_policy)
    else:
        geom = P.PatchGeometry.from_grid(frames.lr_hw, p.grid_rows, p.grid_cols, p.levels, p.patch_policy)
    spec = general.GeneralSpec(scale=p.scale, n_blocks=p.general_blocks, n_feats=p.general_feats,
                               expansion=p.general_expansion, steps=p.general_steps, batch_size=p.general_batch,
                               patch=p.general_patch, seed=p.seed, lr_kernel=p.lr_kernel, clips=p.general_clips,
                               frames_per_clip=p.general_frames_per_clip)
    net, history, info = general.general_model(spec, p.video)
    labels, general_frames = cached_labels(frames, frame_table.frame, geom, net, info)
    train = frame_table.frame[frame_table.split == "train"]
    thresholds = P.resolve_thresholds(labels[labels.frame.isin(train)], list(p.split_thresholds), p.threshold_mode)
    manifest = P.coarse_to_fine(labels, thresholds).merge(frame_table[["frame", "chunk", "split"]], on="frame")
    return PatchData(frames, chunks, frame_table, geom, net, history, info, labels, general_frames, thresholds, manifest)
