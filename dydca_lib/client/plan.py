"""A frame's routing map and the frames a client plays."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class FramePlan:
    """One frame's routing map: patch boxes (LR px) and the unit (``path``) each goes to."""

    y: np.ndarray
    x: np.ndarray
    h: np.ndarray
    w: np.ndarray
    path: np.ndarray

    @classmethod
    def from_manifest(cls, m) -> "FramePlan":
        path = m["path"].to_numpy() if "path" in m else np.zeros(len(m), dtype=np.int64)
        return cls(*(m[k].to_numpy().astype(np.int64) for k in ("y", "x", "h", "w")), path.astype(np.int64))

    def __len__(self) -> int:
        return len(self.y)

    def arrays(self, prefix: str) -> dict:
        return {f"{prefix}_{k}": getattr(self, k) for k in ("y", "x", "h", "w", "path")}

    @classmethod
    def from_arrays(cls, arrays, prefix: str) -> "FramePlan":
        return cls(*(np.asarray(arrays[f"{prefix}_{k}"]) for k in ("y", "x", "h", "w", "path")))


def plans_from_manifest(manifest, frame_ids) -> dict[int, FramePlan]:
    """One :class:`FramePlan` per frame id, in the manifest's row order."""
    by = dict(tuple(manifest.groupby("frame")))
    return {int(i): FramePlan.from_manifest(by[int(i)]) for i in frame_ids}


@dataclass
class Workload:
    """The frames a configuration runs, in order: LR frames, their plans, and each frame's chunk."""

    name: str  # e.g. "clip 360x198" or "540p"
    frames: dict
    plans: dict
    chunk_of: dict
    order: list = field(default_factory=list)

    def __post_init__(self):
        self.order = [int(i) for i in (self.order or sorted(self.frames))]

    @property
    def lr_hw(self) -> tuple[int, int]:
        return tuple(self.frames[self.order[0]].shape[:2])

    def save(self, folder: Path) -> dict:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / "frames.npz", **{f"f{i}": self.frames[i] for i in self.order})
        arrays = {}
        for i in self.order:
            arrays.update(self.plans[i].arrays(f"p{i}"))
        np.savez(folder / "plans.npz", **arrays)
        return {"name": self.name, "frames": str(folder / "frames.npz"), "plans": str(folder / "plans.npz"),
                "order": self.order, "chunk_of": {str(i): int(self.chunk_of[i]) for i in self.order}}

    @classmethod
    def load(cls, spec: dict) -> "Workload":
        order = [int(i) for i in spec["order"]]
        with np.load(spec["frames"]) as f, np.load(spec["plans"]) as p:
            frames = {i: f[f"f{i}"] for i in order}
            plans = {i: FramePlan.from_arrays(p, f"p{i}") for i in order}
        return cls(spec["name"], frames, plans, {int(k): v for k, v in spec["chunk_of"].items()}, order)


def size_routing(workload: Workload) -> dict:
    """``{(h, w): path}`` of a workload whose paths are routed by patch size (Dy-DCA)."""
    table = {}
    for p in workload.plans.values():
        for h, w, u in zip(p.h, p.w, p.path):
            if table.setdefault((int(h), int(w)), int(u)) != int(u):
                raise ValueError(f"{w}x{h} patches go to several paths: not routed by size")
    return table


def switches(units: dict, workload: Workload) -> bool:
    """Whether a client of this method switches models: it has several and each frame needs only one
    (one model per chunk). STDO's frames need all k models at once: they stay resident."""
    return len(units) > 1 and all(len(np.unique(p.path)) == 1 for p in workload.plans.values())

