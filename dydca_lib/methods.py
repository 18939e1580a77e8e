"""The methods compared in the paper's main table, behind one small interface.

A method differs from the others only in (1) which patches a frame is cut into and which model
or path each patch goes to — its *manifests*, whose ``path`` column names the model/path — and
(2) which models exist and how they are trained. Evaluation (:mod:`dydca_lib.evaluate`), the
TVM compile and the on-device benchmark iterate over the same list of methods.

* ``Bicubic`` — no model;
* ``General`` — the general model (no overfitting);
* ``PerVideo`` — one model overfitted on all training frames (NAS-style);
* ``PerChunk`` — one model per time chunk (CaFM's S{1-n}); the client switches at chunk borders;
* ``CaFM`` — one shared backbone plus a channel-wise scale and bias per chunk after every conv;
* ``STDO`` — k models, one per PSNR-quantile bin of the fine grid (bins from the labels);
* ``STDOJoint`` — one model on all of bin 0, none of the easiest bin, a decreasing share between;
* ``DyDCA`` — the one dynamic model, patches routed by size.

Whole-frame methods (general, per-video, per-chunk) upscale the whole frame at inference; under
the patch-level protocol they are scored on STDO's fine grid, as STDO's re-runs of NAS/CaFM.
Training budgets are equal in *epochs*: every trained method passes over its training patches
the same number of times, so per-video, per-chunk, STDO and Dy-DCA process the same number of
LR pixels (STDO joint, by design, fewer).
"""

from __future__ import annotations

import hashlib
import io
import math

import numpy as np
import pandas as pd
import torch

from .evaluate import bicubic_upscaler, model_upscaler
from .models import WDSR, CaFMWDSR, DynamicWDSR, count_parameters, wdsr_flops
from .patches import quantile_bins
from .pipeline import PatchData
from .tensors import with_context
from .train import BucketedPatchSource, FitConfig, train_or_load, training_speed


def state_bytes(model: torch.nn.Module) -> int:
    """Bytes of the model's weights as shipped (float32 state dict, weight norm folded into g/v)."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


def blocks_for_budget(total_params: int, n_models: int, scale: int, n_feats: int = 32, expansion: int = 2) -> int:
    """WDSR residual blocks per model so that ``n_models`` models total about ``total_params``."""
    base = count_parameters(WDSR(scale=scale, n_blocks=0, n_feats=n_feats, expansion=expansion))
    per_block = count_parameters(WDSR(scale=scale, n_blocks=1, n_feats=n_feats, expansion=expansion)) - base
    return max(0, round((total_params / n_models - base) / per_block))


def whole_frame_manifest(frame_ids, hw: tuple[int, int], path_of=None) -> pd.DataFrame:
    """One patch per frame covering it whole (LR px)."""
    ids = [int(i) for i in frame_ids]
    paths = [int(path_of(i)) if path_of else 0 for i in ids]
    return pd.DataFrame({"frame": ids, "y": 0, "x": 0, "h": hw[0], "w": hw[1], "path": paths})


def fine_grid(data: PatchData) -> pd.DataFrame:
    """STDO's fixed grid: the finest level's cells of every frame, with labels."""
    fine = data.labels[data.labels.level == data.geom.levels - 1]
    return fine.merge(data.frame_table[["frame", "chunk", "split"]], on="frame").reset_index(drop=True)


class Method:
    """Base class: ``prepare`` trains or loads the models; then the manifests and upscaler evaluate it."""

    name = "method"
    context = 0
    trained = False  # whether training (and so the seed) changes the method's output

    def prepare(self, data: PatchData) -> None:
        self.data = data

    def models(self) -> dict[str, torch.nn.Module]:
        return {}

    def units(self) -> dict[int, torch.nn.Module]:
        """The networks a client runs, keyed by the ``path`` its manifests name: Dy-DCA's paths,
        STDO's k bin models, one model per chunk, the one model per video. Trained methods only."""
        raise ValueError(f"{self.name}: not a trained method; it has no units to deploy")

    def dynamic_model(self) -> DynamicWDSR | None:
        """The method's one dynamic model (Dy-DCA), or None."""
        return None

    def patch_manifest(self, frame_ids) -> pd.DataFrame:
        """Patches scored under the patch-level protocol (``path`` = model/path id)."""
        fine = fine_grid(self.data)
        return fine[fine.frame.isin(frame_ids)].assign(path=0)

    def frame_manifest(self, frame_ids) -> pd.DataFrame:
        """How the client cuts a frame at inference (``path`` = model/path id)."""
        return whole_frame_manifest(frame_ids, self.data.frames.lr_hw)

    def upscaler(self):
        raise NotImplementedError

    def routing_map_bytes(self) -> int:
        """Bytes of per-patch side information the client needs besides the models."""
        return 0

    def switch_bytes(self) -> int:
        """Bytes streamed to the client at a chunk border (0: every model stays resident)."""
        return 0

    def networks(self) -> dict[int, torch.nn.Module]:
        """The networks the client runs, keyed by manifest ``path`` (empty for bicubic)."""
        try:
            return self.units()
        except ValueError:
            return dict(enumerate(self.models().values()))

    def gflop_per_frame(self, frame_ids) -> float:
        """The client's compute (GFLOP per frame, mean over ``frame_ids``): every inference patch of
        :meth:`frame_manifest`, with its context, through its network (convolutions only)."""
        nets = self.networks()
        if not nets:
            return 0.0
        manifest = self.frame_manifest(frame_ids)
        total = 0.0
        for path, h, w in zip(manifest.path, manifest.h, manifest.w):
            net = nets[int(path)] if len(nets) > 1 else next(iter(nets.values()))
            total += wdsr_flops(net.config, *with_context(int(h), int(w), self.context))
        return total / manifest.frame.nunique() / 1e9

    def describe(self) -> dict:
        models = self.models()
        params = sum(count_parameters(m) for m in models.values())
        return {"method": self.name, "models": len(models), "parameters": params,
                "model_bytes": sum(state_bytes(m) for m in models.values()),
                "routing_map_bytes": self.routing_map_bytes(), **getattr(self, "train_info", {})}


class Bicubic(Method):
    name = "bicubic"

    def __init__(self, kernel: str = "pil"):
        self.kernel = kernel

    def upscaler(self):
        return bicubic_upscaler(self.data.frames.scale, self.kernel)


class General(Method):
    name = "general"

    def models(self):
        return {"general": self.data.general_net}

    def upscaler(self):
        return model_upscaler(self.data.general_net, routed=False)


class _Trained(Method):
    """Methods made of WDSR models each trained on a subset of the training patches."""

    trained = True

    def __init__(self, n_blocks: int = 4, n_feats: int = 32, expansion: int = 2, epochs: float = 1.0,
                 batch_size: int = 16, context: int = 2, lr: float = 1e-3, seed: int = 0, label: str | None = None,
                 precision: str = "auto"):
        self.size = dict(n_blocks=n_blocks, n_feats=n_feats, expansion=expansion)
        self.epochs, self.batch_size, self.context, self.lr, self.seed = epochs, batch_size, context, lr, seed
        self.precision = precision  # training precision (train.FitConfig): "auto" is bf16 where native
        if label:
            self.name = label

    def training_sets(self) -> dict[int, pd.DataFrame]:
        """Model id -> the training patches it learns from."""
        raise NotImplementedError

    def build(self, model_id: int) -> torch.nn.Module:
        return WDSR(scale=self.data.frames.scale, **self.size)

    def _source(self, model, manifest, lr_frames, hr_frames) -> BucketedPatchSource:
        if not isinstance(model, (DynamicWDSR, CaFMWDSR)):  # routed models learn from the manifest's path
            manifest = manifest.drop(columns=["path"], errors="ignore")
        return BucketedPatchSource(manifest, lr_frames, hr_frames, self.data.frames.scale, self.batch_size,
                                   self.context, self.seed)

    def prepare(self, data: PatchData) -> None:
        super().prepare(data)
        sets = self.training_sets()
        lr_frames, hr_frames = data.load_frames(sorted(set().union(*(set(m.frame) for m in sets.values()))))
        self._models, self.histories, seconds, lr_px = {}, {}, 0.0, 0
        for model_id, manifest in sets.items():
            torch.manual_seed(1_000_003 * self.seed + model_id)  # the initial weights follow the seed, not the call order
            model = self.build(model_id)
            src = self._source(model, manifest, lr_frames, hr_frames)
            steps = max(1, math.ceil(self.epochs * src.steps_per_epoch))
            fit_cfg = FitConfig(steps=steps, lr=self.lr, checkpoint_every=src.steps_per_epoch, seed=self.seed,
                                precision=self.precision)
            cells = manifest[["frame", "y", "x", "h", "w"]].to_numpy(dtype=np.int64)  # not pandas' hash: it varies by version
            key = {"method": type(self).__name__, "model_id": model_id, "frames": data.frames.identity(),
                   "manifest": hashlib.sha256(np.ascontiguousarray(cells).tobytes()).hexdigest()[:16],
                   "batch": self.batch_size, "context": self.context}
            model, history, info = train_or_load(model, src, fit_cfg, key, f"{type(self).__name__.lower()}-{model_id}",
                                                 desc=f"{self.name} model {model_id}", code=(__name__,))
            self._models[model_id], self.histories[model_id] = model, history
            seconds += info["seconds"]
            lr_px += int(history.lr_pixels.sum())
        self.train_info = {"train_seconds": round(seconds, 1), "train_lr_megapixels": round(lr_px / 1e6, 2),
                           "lr_pixels_per_s": round(lr_px / seconds, 1) if seconds else None,
                           "train_precision": info["precision"]}

    def training_speed(self, data: PatchData, steps: int = 10, settings: dict | None = None) -> pd.DataFrame:
        """:func:`~dydca_lib.train.training_speed` of model 0's training step on its own patches
        (fresh, untrained models; nothing is cached)."""
        self.data = data
        manifest = self.training_sets()[0]
        lr_frames, hr_frames = data.load_frames(sorted(set(manifest.frame)))
        src = self._source(self.build(0), manifest, lr_frames, hr_frames)
        return training_speed(lambda: self.build(0), src, steps=steps, settings=settings)

    def models(self):
        return {f"{self.name}[{k}]": m for k, m in self._trained().items()}

    def _trained(self) -> dict[int, torch.nn.Module]:
        if not getattr(self, "_models", None):
            raise ValueError(f"{self.name}: not prepared (call prepare(data) first)")
        return self._models

    def units(self):
        dyn = self.dynamic_model()
        if dyn is not None:
            return dict(enumerate(dyn.paths))
        return {int(k): m for k, m in self._trained().items()}

    def dynamic_model(self):
        models = self._trained()
        m = models.get(0) if len(models) == 1 else None
        return m if isinstance(m, DynamicWDSR) else None

    def upscaler(self):
        ups = {k: model_upscaler(m, routed=isinstance(m, DynamicWDSR)) for k, m in self._models.items()}
        return lambda patches, path: ups[path](patches, path)


class PerVideo(_Trained):
    name = "one model per video"

    def training_sets(self):
        fine = fine_grid(self.data)
        return {0: fine[fine.split == "train"]}

    def upscaler(self):
        up = model_upscaler(self._models[0], routed=False)
        return lambda patches, path: up(patches, 0)


class PerChunk(_Trained):
    name = "one model per chunk"

    def training_sets(self):
        fine = fine_grid(self.data)
        train = fine[fine.split == "train"]
        return {int(c): g for c, g in train.groupby("chunk")}

    def _chunk_of(self, frame: int) -> int:
        ft = self.data.frame_table
        return int(ft.loc[ft.frame == frame, "chunk"].iloc[0])

    def patch_manifest(self, frame_ids):
        return super().patch_manifest(frame_ids).pipe(lambda m: m.assign(path=m.chunk))

    def frame_manifest(self, frame_ids):
        return whole_frame_manifest(frame_ids, self.data.frames.lr_hw, self._chunk_of)

    def upscaler(self):
        ups = {k: model_upscaler(m, routed=False) for k, m in self._models.items()}
        return lambda patches, path: ups[path](patches, path)

    def switch_bytes(self) -> int:
        """The next chunk's whole model (mean over chunks)."""
        models = self._trained()
        return int(round(sum(state_bytes(m) for m in models.values()) / len(models)))


class CaFM(PerChunk):
    """CaFM (ICCV'21): one backbone shared by every chunk plus, per chunk, a channel-wise scale and
    bias after every conv, all trained together on every training frame (a batch holds one
    chunk's patches and trains that chunk's modulation and the backbone). The client runs chunk
    ``c``'s folded network (:meth:`~dydca_lib.models.CaFMWDSR.chunk_network`) and, at a chunk
    border, swaps only the modulation numbers."""

    name = "CaFM"

    def training_sets(self):
        fine = fine_grid(self.data)
        train = fine[fine.split == "train"]
        return {0: train.assign(path=train.chunk)}

    def build(self, model_id):
        return CaFMWDSR(scale=self.data.frames.scale, n_chunks=len(self.data.chunks), **self.size)

    def units(self):
        m = self._trained()[0]
        return {c: m.chunk_network(c) for c in range(m.config["n_chunks"])}

    def switch_bytes(self) -> int:
        """Bytes a client receives at a chunk border (fp32 scales and biases of one chunk)."""
        return 4 * self._trained()[0].modulation_parameters_per_chunk()

    def upscaler(self):
        return model_upscaler(self._trained()[0], routed=True)


class STDO(_Trained):
    """k models, one per equal-count PSNR bin of the fine grid (edges from the training frames)."""

    def __init__(self, k: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.k = k
        self.name = kwargs.get("label") or f"STDO k={k}"

    def binned(self) -> pd.DataFrame:
        fine = fine_grid(self.data)
        train = fine.split == "train"
        _, edges = quantile_bins(fine.label[train].to_numpy(), self.k)
        bins = np.searchsorted(edges[:-1], fine.label.to_numpy(), side="left")  # held-out frames too
        return fine.assign(path=bins)

    def training_sets(self):
        b = self.binned()
        return {j: g for j, g in b[b.split == "train"].groupby("path")}

    def patch_manifest(self, frame_ids):
        b = self.binned()
        return b[b.frame.isin(frame_ids)]

    frame_manifest = patch_manifest

    def routing_map_bytes(self) -> int:
        """One bin id per fine patch per frame, packed in ceil(log2 k) bits."""
        per_frame = len(self.data.geom.cells(self.data.geom.levels - 1))
        return math.ceil(per_frame * max(1, math.ceil(math.log2(self.k))) / 8) * len(self.data.frame_table)


class STDOJoint(STDO):
    """One model on a data-aware sample: all of bin 0, none of the easiest, decreasing shares between."""

    def __init__(self, k: int = 4, shares: list | None = None, **kwargs):
        super().__init__(k=k, **kwargs)
        self.shares = list(shares) if shares is not None else [1.0 - j / (k - 1) for j in range(k)]
        if len(self.shares) != k:
            raise ValueError(f"STDO joint needs {k} shares (one per bin), got {self.shares}")
        self.name = kwargs.get("label") or f"STDO joint (k={k})"

    def training_sets(self):
        b = self.binned()
        train = b[b.split == "train"]
        rng = np.random.default_rng(self.seed)
        parts = [g.iloc[np.sort(rng.permutation(len(g))[:round(len(g) * self.shares[j])])]
                 for j, g in train.groupby("path")]
        return {0: pd.concat(parts).assign(path=0)}

    def patch_manifest(self, frame_ids):
        return super().patch_manifest(frame_ids).assign(path=0)

    frame_manifest = patch_manifest

    def routing_map_bytes(self) -> int:
        return 0

    def upscaler(self):
        up = model_upscaler(self._models[0], routed=False)
        return lambda patches, path: up(patches, 0)


class DyDCA(_Trained):
    """The one dynamic model: paths of ``path_blocks`` blocks, patches routed by their size."""

    name = "Dy-DCA"

    def __init__(self, path_blocks: list | None = None, **kwargs):
        super().__init__(**kwargs)
        self.path_blocks = list(path_blocks or [4, 2])

    def build(self, model_id):
        routing = [(h, w, p) for (h, w), p in self.data.routing.items()]
        if len(self.path_blocks) != len(set(p for *_, p in routing)):
            raise ValueError(f"{len(self.path_blocks)} paths for {len(routing)} patch sizes in the manifest")
        return DynamicWDSR(scale=self.data.frames.scale, paths=[{"n_blocks": b} for b in self.path_blocks],
                           n_feats=self.size["n_feats"], expansion=self.size["expansion"], routing=routing)

    def training_sets(self):
        m = self.data.manifest
        return {0: m[m.split == "train"]}

    def patch_manifest(self, frame_ids):
        return self.data.manifest[self.data.manifest.frame.isin(frame_ids)]

    frame_manifest = patch_manifest

    def routing_map_bytes(self) -> int:
        """The split tree of every frame: one bit (split or not) per node above the finest level."""
        m, geom = self.data.manifest, self.data.geom
        bits = 0
        for level in range(geom.levels - 1):
            ch, cw = geom.cell_size(level)
            above = m[m.level >= level]
            bits += len(set(zip(above.frame, above.y - above.y % ch, above.x - above.x % cw)))
        return math.ceil(bits / 8)

    def upscaler(self):
        return model_upscaler(self._models[0], routed=True)


def evaluate_method(method: Method, data: PatchData, train_ids, heldout_ids, keep_frames=()) -> dict:
    """Both protocols for one prepared method: patch-level on ``train_ids``, full-frame on
    ``heldout_ids``. Returns the summary row, per-frame results and the kept SR frames.

    The patch level scores every method on the same cells, STDO's fine grid: each method upscales
    its own patches (Dy-DCA: its coarse and fine patches), and the stitched result is scored per
    fine cell. Scoring Dy-DCA on its own cuts would weight each of its (mostly fine, hard) patches
    equally with its 4x larger coarse ones — another pixel weighting than every other method's."""
    from .evaluate import evaluate, frame_protocol, patch_protocol

    up = method.upscaler()
    fine = fine_grid(data)
    patches, _, _ = evaluate(up, data.frames, method.patch_manifest(train_ids), train_ids, method.context,
                             desc=f"{method.name}: patch-level", score_cells=fine[fine.frame.isin(train_ids)])
    _, per_frame, kept = evaluate(up, data.frames, method.frame_manifest(heldout_ids), heldout_ids, method.context,
                                  desc=f"{method.name}: full-frame", keep_frames=tuple(keep_frames))
    p, f = patch_protocol(patches), frame_protocol(per_frame)
    row = {**method.describe(), "gflop_per_frame": method.gflop_per_frame(heldout_ids), "patch_psnr_rgb": p.psnr_rgb, "patch_psnr_y": p.psnr_y,
           "frame_psnr_rgb": f.psnr_rgb, "frame_psnr_y": f.psnr_y, "frame_ssim_y": f.ssim_y}
    return {"row": row, "per_frame": per_frame.assign(method=method.name), "kept": kept}


def dynamic_model_size(scale: int, path_blocks: list, n_feats: int = 32, expansion: int = 2) -> int:
    return count_parameters(DynamicWDSR(scale=scale, paths=[{"n_blocks": b} for b in path_blocks],
                                        n_feats=n_feats, expansion=expansion))
