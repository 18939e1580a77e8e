"""The frames each benchmarked method plays: the clip's own LR frames with the method's routing
maps, and the same content at larger LR sizes (540p, ...) with the maps carried over."""

from __future__ import annotations

import numpy as np

from ..client.plan import Workload, plans_from_manifest

METHOD_KEYS = ("dydca", "stdo", "per_chunk", "cafm", "per_video")


def resolution_hw(lr_height: int) -> tuple[int, int]:
    """A 16:9 LR frame of ``lr_height`` rows (width even): 540 -> (540, 960)."""
    h = int(lr_height)
    return h, int(round(h * 16 / 9 / 2)) * 2


def upscaled_frames(frames: dict[int, np.ndarray], hw: tuple[int, int], kernel: str = "pil") -> dict[int, np.ndarray]:
    """Real LR frames resized (bicubic) to ``hw``: stand-ins for a larger LR video of the same content."""
    from ..video import bicubic_resize

    return {i: bicubic_resize(f, hw, kernel) for i, f in frames.items()}


def scaled_geometry(geom, hw: tuple[int, int], patch_size: int = 0, grid_rows: int = 10, grid_cols: int = 20):
    """The patch geometry of an ``hw`` LR frame under the same rules as ``geom``: the same fixed
    patch side when ``patch_size`` is set, else the same ``grid_rows x grid_cols`` fine grid; same
    levels and border policy."""
    from ..patches import PatchGeometry

    if patch_size:
        return PatchGeometry(hw[0], hw[1], patch_size, patch_size, geom.levels, geom.policy)
    return PatchGeometry.from_grid(hw, grid_rows, grid_cols, geom.levels, geom.policy)


def transfer_manifest(manifest, src_geom, dst_geom):
    """A method's per-frame manifest carried to another frame size (``dst_geom``).

    Top-down over ``dst_geom``'s levels: a destination cell is a leaf when the source leaf that
    contains the cell's centre (in relative frame coordinates) is at the same or a coarser level,
    else it is split into its 2x2 children. With the same grid on both sizes (``grid_rows`` x
    ``grid_cols``) this copies every split decision and STDO bin exactly. The ``path`` of a leaf
    is the source leaf's path at the same level; where a coarser source leaf is met (only with
    non-aligned grids) it is ``levels - 1 - level``, Dy-DCA's size routing. Returns
    ``frame, y, x, h, w, level, path``.
    """
    import pandas as pd

    L = dst_geom.levels
    if src_geom.levels != L:
        raise ValueError(f"source has {src_geom.levels} levels, destination {L}")
    m = manifest if "level" in manifest else manifest.assign(level=L - 1)
    m = m if "path" in m else m.assign(path=0)
    sh, sw = src_geom.lr_h, src_geom.lr_w
    cells = [dst_geom.cells(level) for level in range(L)]
    rows = []
    for frame, g in m.groupby("frame", sort=True):
        leaf = np.full((sh, sw), -1, dtype=np.int64)
        for k, (y, x, h, w) in enumerate(g[["y", "x", "h", "w"]].itertuples(index=False)):
            leaf[y:y + h, x:x + w] = k
        if (leaf < 0).any():
            raise ValueError(f"frame {frame}: the source manifest does not cover the frame")
        lv, pa = g.level.to_numpy(), g.path.to_numpy()

        def src_leaf(c):
            cy = np.clip(((c.y + c.h / 2) * sh / dst_geom.lr_h).astype(int), 0, sh - 1)
            cx = np.clip(((c.x + c.w / 2) * sw / dst_geom.lr_w).astype(int), 0, sw - 1)
            return leaf[cy.to_numpy(), cx.to_numpy()]

        alive = cells[0]
        for level in range(L):
            k = src_leaf(alive)
            stop = (lv[k] <= level) | (level == L - 1)
            here = alive[stop]
            kk = k[stop]
            path = np.where(lv[kk] == level, pa[kk], L - 1 - level)
            rows.append(pd.DataFrame({"frame": int(frame), "y": here.y.to_numpy(), "x": here.x.to_numpy(),
                                      "h": here.h.to_numpy(), "w": here.w.to_numpy(), "level": level, "path": path}))
            if level == L - 1:
                break
            split = alive[~stop]
            ch, cw = dst_geom.cell_size(level + 1)
            nxt = cells[level + 1]
            key = set(zip(split.y, split.x))
            ph, pw = dst_geom.cell_size(level)
            alive = nxt[[(y - y % ph, x - x % pw) in key for y, x in zip(nxt.y, nxt.x)]]
    out = pd.concat(rows, ignore_index=True)
    return out.sort_values(["frame", "y", "x"], kind="stable").reset_index(drop=True)


def clip_label(lr_hw: tuple[int, int]) -> str:
    return f"clip {lr_hw[1]}x{lr_hw[0]}"


def resolution_label(lr_hw: tuple[int, int], scale: int) -> str:
    h, w = lr_hw
    return f"{h}p {w}x{h}->{w * scale}x{h * scale}"


def method_workloads(method, data, frame_ids, lr_heights=(), patch_size: int = 0, grid_rows: int = 10,
                     grid_cols: int = 20, kernel: str = "pil") -> list[Workload]:
    """The frames a prepared method runs: the clip's own LR frames with the method's frame
    manifests (:meth:`~dydca_lib.methods.Method.frame_manifest`), then one workload per LR height
    in ``lr_heights`` (16:9): the same frames resized (bicubic) to that size, with the manifests
    carried over by :func:`transfer_manifest` onto the geometry the same rules give there
    (:func:`scaled_geometry`); whole-frame methods get one whole-frame patch per frame."""
    from ..methods import whole_frame_manifest

    ids = [int(i) for i in frame_ids]
    ft = data.frame_table.set_index("frame")
    chunk_of = {i: int(ft.loc[i, "chunk"]) for i in ids}
    frames = {i: data.frames.lr(i) for i in ids}
    manifest = method.frame_manifest(ids)
    out = [Workload(clip_label(data.frames.lr_hw), frames, plans_from_manifest(manifest, ids), chunk_of, ids)]
    lr_h, lr_w = data.frames.lr_hw
    whole = bool(((manifest.h == lr_h) & (manifest.w == lr_w) & (manifest.y == 0) & (manifest.x == 0)).all())
    for height in lr_heights:
        hw = resolution_hw(height)
        if whole:
            paths = dict(zip(manifest.frame, manifest.path)) if "path" in manifest else {}
            m = whole_frame_manifest(ids, hw, lambda i: paths.get(i, 0))
        else:
            m = transfer_manifest(manifest, data.geom, scaled_geometry(data.geom, hw, patch_size, grid_rows, grid_cols))
        out.append(Workload(resolution_label(hw, data.frames.scale), upscaled_frames(frames, hw, kernel),
                            plans_from_manifest(m, ids), chunk_of, ids))
    return out


def make_methods(keys, *, stdo_k: int = 2, model_blocks: int = 4, path_blocks=(4, 2), **kw) -> dict:
    """The benchmarked methods by key (:data:`METHOD_KEYS`, :mod:`dydca_lib.registry` ids; STDO with
    ``stdo_k`` bins), built as notebook 04 builds them (``kw``: n_feats, expansion, epochs, batch_size,
    context, lr, seed), not yet prepared."""
    from ..registry import Ref, make

    unknown = [k for k in keys if k not in METHOD_KEYS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {list(METHOD_KEYS)}")
    # n_chunks only sizes the equal-size variants, which the bench does not run
    return {k: make(Ref(k, stdo_k if k == "stdo" else None), 2, 1, model_blocks=model_blocks, path_blocks=path_blocks,
                    **kw) for k in keys}


def client_setup(data, p: dict) -> tuple[dict, np.ndarray, str, dict]:
    """Notebook 06's set-up from its parameters ``p`` (the GPU companion runs the same): the
    methods built as notebook 04 builds them and prepared on ``data`` (their models load from
    notebook 04's cache, or train when absent), the frames to time (``bench_frames`` spread over
    the clip, so every chunk appears), the clip's resolution label and every workload
    ``{(method key, resolution): Workload}`` (``lr_heights`` for ``hd_methods``).
    Returns ``(suite, frame_ids, clip_resolution, workloads)``."""
    suite = make_methods(p["methods"], stdo_k=p["stdo_k"], model_blocks=p["model_blocks"], path_blocks=p["path_blocks"],
                         n_feats=p["model_feats"], expansion=p["model_expansion"], epochs=p["epochs"],
                         batch_size=p["batch_size"], context=p["context"], lr=p["learning_rate"], seed=p["seed"])
    for m in suite.values():
        m.prepare(data)
    frame_ids = np.unique(np.linspace(0, len(data.frames) - 1, p["bench_frames"]).round().astype(int))
    workloads = {(k, wl.name): wl for k, m in suite.items()
                 for wl in method_workloads(m, data, frame_ids, p["lr_heights"] if k in p["hd_methods"] else [],
                                            p["patch_size"], p["grid_rows"], p["grid_cols"], p["lr_kernel"])}
    return suite, frame_ids, clip_label(data.frames.lr_hw), workloads
