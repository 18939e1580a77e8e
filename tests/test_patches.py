import numpy as np
import pandas as pd
import pytest

from dydca_lib import patches as P


def random_labels(geom, frames=(0, 1), seed=0):
    """A label table over every cell of every level, random but with parents = mean of children."""
    rng = np.random.default_rng(seed)
    rows = []
    for f in frames:
        for level in range(geom.levels):
            cells = geom.cells(level)[["y", "x", "h", "w"]]
            rows.append(cells.assign(frame=f, level=level, label=rng.uniform(20, 45, len(cells))))
    return pd.concat(rows, ignore_index=True)


@pytest.mark.parametrize("policy", P.POLICIES)
def test_geometry_from_grid_and_cells(policy):
    g = P.PatchGeometry.from_grid((198, 360), rows=10, cols=20, levels=2, policy=policy)
    if policy == "pad":
        assert (g.patch_h, g.patch_w) == (20, 18) and g.grid_hw == (200, 360) and g.covered_hw == (198, 360)
    else:
        assert (g.patch_h, g.patch_w) == (19, 18) and g.grid_hw == (190, 360) and g.covered_hw == (190, 360)
    assert (g.coarse_h, g.coarse_w) == (2 * g.patch_h, 2 * g.patch_w)
    fine = g.cells(1)
    assert len(fine) == (len(range(0, g.covered_hw[0], g.patch_h)) * 20)
    assert (fine.y < 198).all()


@pytest.mark.parametrize("kwargs, match", [
    (dict(lr_h=40, lr_w=40, patch_h=24, patch_w=24, levels=2), "larger than"),
    (dict(lr_h=40, lr_w=40, patch_h=2, patch_w=8), "finer than"),
    (dict(lr_h=40, lr_w=40, patch_h=8, patch_w=8, policy="wrap"), "policy"),
])
def test_bad_geometry_is_a_clear_error(kwargs, match):
    with pytest.raises(P.PatchError, match=match):
        P.PatchGeometry(**kwargs)
    with pytest.raises(P.PatchError, match="does not fit"):
        P.PatchGeometry.from_grid((10, 10), rows=20, cols=5)


@pytest.mark.parametrize("policy", P.POLICIES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_split_stitch_round_trip_is_exact_for_any_manifest(policy, seed):
    rng = np.random.default_rng(seed)
    geom = P.PatchGeometry(lr_h=37, lr_w=53, patch_h=6, patch_w=5, levels=3, policy=policy)
    labels = random_labels(geom, frames=(0,), seed=seed)
    manifest = P.coarse_to_fine(labels, sorted(rng.uniform(25, 40, 2)))
    ch, cw = geom.covered_hw
    for scale in (1, 3):
        img = rng.integers(0, 256, (37 * scale, 53 * scale, 3), dtype=np.uint8)
        pieces = P.extract(img, manifest, scale)
        assert {p.shape[:2] for p in pieces} <= {(h * scale, w * scale) for h, w in zip(manifest.h, manifest.w)}
        back = P.stitch(pieces, manifest, (ch * scale, cw * scale), scale)
        assert np.array_equal(back, img[:ch * scale, :cw * scale])


def test_leaves_tile_the_frame_exactly_once():
    geom = P.PatchGeometry(lr_h=37, lr_w=53, patch_h=6, patch_w=5, levels=3)
    manifest = P.coarse_to_fine(random_labels(geom, frames=(0,)), [35.0, 40.0])
    cover = np.zeros((37, 53), int)
    for y, x, h, w in manifest[["y", "x", "h", "w"]].itertuples(index=False):
        cover[y:y + h, x:x + w] += 1
    assert (cover == 1).all()
    assert set(manifest.path) <= {0, 1, 2}
    table = P.routing_table(manifest)
    assert table[(6, 5)] == 0 and table[(24, 20)] == 2  # smallest patches -> path 0


def test_labels_of_a_perfect_and_a_noisy_model():
    geom = P.PatchGeometry(lr_h=24, lr_w=36, patch_h=6, patch_w=6, levels=2)
    sq = np.zeros((48, 72))
    sq[:24, :24] = 3 * 100.0  # MSE 100 in the top-left coarse cell (HR 24x24)
    cells, mse = P.cell_mse(sq, geom, level=0, scale=2)
    assert mse[0] == pytest.approx(100.0) and (mse[1:] == 0).all()
    fine_cells, fine_mse = P.cell_mse(sq, geom, level=1, scale=2)
    assert len(fine_cells) == 24 and fine_mse.max() == pytest.approx(100.0)


def test_quantile_bins_are_equal_count_and_ordered():
    labels = np.random.default_rng(0).normal(35, 3, 1001)
    bins, edges = P.quantile_bins(labels, 4)
    counts = np.bincount(bins)
    assert counts.max() - counts.min() <= 1
    assert all(labels[bins == 0].max() <= labels[bins == 1].min() for _ in [0])
    assert np.all(np.diff(edges) > 0)  # bin 0 = hardest (lowest PSNR)
    with pytest.raises(P.PatchError, match="k=5"):
        P.quantile_bins(labels[:4], 5)


def test_kmeans_bins_are_ordered_by_centroid():
    labels = np.concatenate([np.full(10, 25.0), np.full(10, 35.0), np.full(10, 45.0)])
    bins, _ = P.kmeans_bins(labels, 3)
    assert list(bins[[0, 10, 20]]) == [0, 1, 2]


def test_thresholds_quantile_and_db():
    geom = P.PatchGeometry(lr_h=48, lr_w=48, patch_h=6, patch_w=6, levels=2)
    labels = random_labels(geom, frames=range(4))
    (db,) = P.resolve_thresholds(labels, [0.5], "quantile")
    manifest = P.coarse_to_fine(labels, [db])
    coarse = labels[labels.level == 0]
    n_split = int((coarse.label <= db).sum())
    assert n_split == len(coarse) // 2
    assert (manifest.path == 0).sum() == 4 * n_split
    with pytest.raises(P.PatchError, match="outside the label range"):
        P.resolve_thresholds(labels, [60.0], "db")
    with pytest.raises(P.PatchError, match="need 1 threshold"):
        P.resolve_thresholds(labels, [0.3, 0.6], "quantile")
