import math

import numpy as np
import pandas as pd
import pytest

from dydca_lib import evaluate as E
from dydca_lib import patches as P
from dydca_lib.metrics import psnr


class ArrayFrames:
    """The part of FrameSet that evaluation uses, on in-memory frames."""

    def __init__(self, lr, hr, scale):
        self._lr, self._hr, self.scale = lr, hr, scale

    def lr(self, i):
        return self._lr[i]

    def hr(self, i):
        return self._hr[i]


def nearest_upscaler(scale):
    return lambda patches, path: patches.repeat(scale, axis=1).repeat(scale, axis=2)


def setup(seed=0, scale=2):
    """A 40x60 LR frame whose HR is its nearest-neighbour upscale, and a mixed-size manifest."""
    rng = np.random.default_rng(seed)
    lr = {0: rng.integers(0, 246, (40, 60, 3), dtype=np.uint8)}  # < 246: "+10" below never clips
    hr = {0: lr[0].repeat(scale, 0).repeat(scale, 1)}
    geom = P.PatchGeometry(40, 60, 10, 12, levels=2)
    coarse = geom.cells(0).assign(frame=0, level=0)
    coarse["label"] = np.where(np.arange(len(coarse)) % 2 == 0, 30.0, 40.0)  # every other one splits
    fine = geom.cells(1).assign(frame=0, level=1, label=30.0)
    manifest = P.coarse_to_fine(pd.concat([coarse, fine], ignore_index=True), [35.0])
    assert set(manifest.path) == {0, 1}
    return ArrayFrames(lr, hr, scale), manifest


@pytest.mark.parametrize("context", [0, 3])
def test_a_perfect_upscaler_scores_inf_under_both_protocols(context):
    frames, manifest = setup()
    patches, per_frame, kept = E.evaluate(nearest_upscaler(2), frames, manifest, [0], context, keep_frames=(0,))
    assert (patches.mse_rgb.dropna() == 0).all()
    assert math.isinf(E.patch_protocol(patches).psnr_rgb)
    assert math.isinf(per_frame.psnr_rgb.iloc[0]) and per_frame.ssim_y.iloc[0] == pytest.approx(1.0)
    assert np.array_equal(kept[0], frames.hr(0))


def test_known_error_gives_known_psnr_and_patch_shave_hides_seams():
    frames, manifest = setup()
    up = nearest_upscaler(2)

    def off_by_ten(p, path):
        return np.clip(up(p, path).astype(int) + 10, 0, 255).astype(np.uint8)

    patches, per_frame, _ = E.evaluate(off_by_ten, frames, manifest, [0])
    expected = 10 * math.log10(255**2 / 100)
    assert E.patch_protocol(patches).psnr_rgb == pytest.approx(expected)
    assert per_frame.psnr_rgb.iloc[0] == pytest.approx(expected)

    def bad_borders(p, path):  # wrong only in a 2-px HR ring around each patch: a "seam"
        out = up(p, path).copy()
        out[:, :2], out[:, -2:], out[:, :, :2], out[:, :, -2:] = 0, 0, 0, 0
        return out

    patches, per_frame, _ = E.evaluate(bad_borders, frames, manifest, [0])
    assert math.isinf(E.patch_protocol(patches).psnr_rgb)  # shave scale+4 hides the seams
    assert per_frame.psnr_rgb.iloc[0] < 20  # the full-frame protocol sees them


def test_per_path_pooling_and_protocol_names():
    frames, manifest = setup()
    patches, _, _ = E.evaluate(nearest_upscaler(2), frames, manifest, [0])
    by_path = E.patch_protocol(patches, by="path")
    assert list(by_path.path) == sorted(manifest.path.unique())
    assert set(E.PROTOCOLS) == {"patch", "frame"}


def test_bicubic_upscaler_matches_frame_bicubic_in_the_interior():
    frames, manifest = setup()
    from dydca_lib.video import upscale_bicubic

    patches, per_frame, kept = E.evaluate(E.bicubic_upscaler(2), frames, manifest, [0], context=4, keep_frames=(0,))
    whole = upscale_bicubic(frames.lr(0), 2)
    assert psnr(whole, kept[0], shave=8) > 45  # with 4 px of context, patch-wise bicubic ~ frame bicubic


def test_scoring_on_common_cells_weights_pixels_not_patches():
    frames, manifest = setup()
    rng = np.random.default_rng(1)
    noise = {0: 1, 1: 9}  # path 1 (the coarse patches) is worse

    def noisy(patches, path):
        out = patches.repeat(2, axis=1).repeat(2, axis=2).astype(int)
        return np.clip(out + rng.integers(-noise[path], noise[path] + 1, out.shape), 0, 255).astype(np.uint8)

    geom = P.PatchGeometry(40, 60, 10, 12, levels=2)
    cells = geom.cells(1).assign(frame=0)
    own, _, _ = E.evaluate(noisy, frames, manifest, [0])
    common, _, _ = E.evaluate(noisy, frames, manifest, [0], score_cells=cells)
    assert len(own) == len(manifest) and len(common) == len(cells)
    # the coarse (noisier) patches cover 4 cells each on the common grid: the pooled error rises
    assert E.patch_protocol(common).psnr_rgb < E.patch_protocol(own).psnr_rgb
    # when the inference patches are the cells, both scorings see the same pixels
    def distorted(patches, path):  # deterministic, varies with content and position
        out = patches.repeat(2, axis=1).repeat(2, axis=2)
        return (out + out % 7 + np.arange(out.shape[2], dtype=np.uint8)[None, None, :, None] % 3).astype(np.uint8)

    fine_manifest = cells.assign(path=0)
    a, _, _ = E.evaluate(distorted, frames, fine_manifest, [0], context=2)
    b, _, _ = E.evaluate(distorted, frames, fine_manifest, [0], context=2, score_cells=cells)
    assert a.mse_rgb.min() > 0 and np.array_equal(a.mse_rgb.to_numpy(), b.mse_rgb.to_numpy())


def test_precision_deltas_read_the_largest_change_against_the_reference():
    import pandas as pd

    from dydca_lib.evaluate import precision_deltas

    t = pd.DataFrame({"method": ["fp32", "bf16"], "patch_psnr_rgb": [30.0, 30.01], "frame_psnr_rgb": [31.0, 30.93],
                      "frame_psnr_y": [32.0, 32.02], "frame_ssim_y": [0.9, 0.9]})
    out = precision_deltas(t, "fp32").set_index("method")
    assert out.loc["fp32", "delta_vs_fp32_db"] == 0 and out.loc["fp32", "within_0_05_db"]
    assert out.loc["bf16", "delta_vs_fp32_db"] == -0.07 and not out.loc["bf16", "within_0_05_db"]
    assert out.loc["bf16", "d_patch_psnr_rgb"] == 0.01
    with pytest.raises(ValueError, match="not a row"):
        precision_deltas(t, "int8")
