import json

import cv2
import numpy as np
import pytest

from dydca_lib import video
from dydca_lib.sources import DataError
from tests.conftest import listing, synthetic_frames


# ---------------------------------------------------------------- geometry and resampling

def test_crop_to_multiple_crops_bottom_right():
    img = np.arange(50 * 74 * 3, dtype=np.uint32).reshape(50, 74, 3)
    out = video.crop_to_multiple(img, 12)
    assert out.shape == (48, 72, 3)
    assert np.array_equal(out, img[:48, :72])


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("kernel", video.LR_KERNELS)
def test_lr_and_bicubic_upscale_shapes(scale, kernel):
    hr = video.crop_to_multiple(synthetic_frames(1, 50, 74)[0], 12)
    lr = video.make_lr(hr, scale, kernel)
    assert lr.dtype == np.uint8 and lr.shape == (48 // scale, 72 // scale, 3)
    up = video.upscale_bicubic(lr, scale, kernel)
    assert up.shape == hr.shape


def test_kernels_differ_and_bad_kernel_or_scale_is_rejected():
    hr = video.crop_to_multiple(synthetic_frames(1, 50, 74)[0], 12)
    assert not np.array_equal(video.make_lr(hr, 2, "pil"), video.make_lr(hr, 2, "opencv"))
    with pytest.raises(ValueError, match="scale must be one of"):
        video.make_lr(hr, 5)
    with pytest.raises(ValueError, match="lr_kernel"):
        video.make_lr(hr, 2, "lanczos")
    with pytest.raises(ValueError, match="multiple of scale"):
        video.make_lr(hr[:47], 2)


def test_patch_must_fit_the_lr_frame():
    video.check_patch_fits((48, 54), 48)
    with pytest.raises(DataError, match="smaller than one 48x48 patch"):
        video.check_patch_fits((40, 100), 48)


# ---------------------------------------------------------------- chunks and held-out frames

def test_split_chunks_covers_every_frame_once():
    chunks = video.split_chunks(190, 25.0, 2.0)  # cityCC0 in the default profile
    assert [c.n_frames for c in chunks] == [50, 50, 50, 40]
    assert chunks[0].start == 0 and chunks[-1].stop == 190
    assert all(a.stop == b.start for a, b in zip(chunks, chunks[1:]))
    assert [c.n_frames for c in video.split_chunks(120, 25.0, 2.0)] == [50, 70]  # short tail joins


def test_video_shorter_than_one_chunk_is_a_clear_error():
    with pytest.raises(DataError, match="shorter than one 5 s chunk"):
        video.split_chunks(100, 30.0, 5.0)


def test_interleaved_heldout_is_one_in_n_per_chunk():
    chunks, table = video.plan_frames(100, 25.0, 2.0, heldout_every=10)
    assert len(chunks) == 2
    held = table[table.split == "heldout"]
    assert list(held.frame) == [5, 15, 25, 35, 45, 55, 65, 75, 85, 95]
    assert held.groupby("chunk").size().tolist() == [5, 5]
    assert set(table.split) == {"train", "heldout"}


def test_tail_heldout_lies_after_the_training_range():
    chunks, table = video.plan_frames(100, 25.0, 1.0, heldout_every=10, heldout_policy="tail",
                                      tail_fraction=0.2)
    assert chunks[-1].stop == 80
    assert (table.loc[table.frame < 80, "split"] == "train").all()
    assert list(table.loc[table.split == "heldout", "frame"]) == [80, 90]
    with pytest.raises(ValueError, match="heldout_policy"):
        video.plan_frames(100, 25.0, 1.0, heldout_policy="random")


# ---------------------------------------------------------------- frame cache and folders

def test_prepare_frames_decodes_caches_and_reuses(tmp_root, synthetic_video):
    fs = video.prepare_frames(synthetic_video, 2, max_frames=12)
    assert len(fs) == 12 and fs.hr_hw == (48, 72) and fs.lr_hw == (24, 36) and fs.fps == pytest.approx(10)
    assert not any("/." in p for p in listing(tmp_root / "data"))  # no temp folders left
    cache = next((tmp_root / "data" / "frames").iterdir())
    assert json.loads((cache / "frames.json").read_text())["frames"] == 12
    stamp = (cache / "DIV2K_train_HR" / "00001.png").stat().st_mtime_ns
    fs3 = video.prepare_frames(synthetic_video, 3, max_frames=8)  # fewer frames, another scale: reuse HR
    assert len(fs3) == 8 and fs3.lr_hw == (16, 24)
    assert (cache / "DIV2K_train_HR" / "00001.png").stat().st_mtime_ns == stamp
    full = video.prepare_frames(synthetic_video, 4)  # the whole clip: decoded again
    assert len(full) == 30 and full.lr_hw == (12, 18)
    lr = video.make_lr(full.hr(3), 4, "pil")
    assert np.array_equal(lr, full.lr(3))


def test_vsd4k_folder_both_lr_namings_and_missing_lr(tmp_root, tmp_path):
    folder = tmp_path / "game15"
    (folder / "DIV2K_train_HR").mkdir(parents=True)
    (folder / "DIV2K_train_LR_bicubic" / "X2").mkdir(parents=True)
    frames = [video.crop_to_multiple(f, 12) for f in synthetic_frames(3)]
    for i, f in enumerate(frames, start=1):
        cv2.imwrite(str(folder / "DIV2K_train_HR" / f"{i:05d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        name = f"{i:05d}x2.png" if i < 3 else f"{i:05d}_x2.png"  # both conventions
        lr = video.make_lr(f, 2, "opencv")
        cv2.imwrite(str(folder / "DIV2K_train_LR_bicubic" / "X2" / name), cv2.cvtColor(lr, cv2.COLOR_RGB2BGR))
    fs = video.prepare_frames(folder, 2)
    assert len(fs) == 3 and fs.lr_kernel == "given" and fs.fps == 30.0
    assert np.array_equal(fs.lr(2), video.make_lr(frames[2], 2, "opencv"))
    before = listing(folder)
    fs4 = video.prepare_frames(folder, 4, fps=25)  # no X4 given: made into the cache, folder untouched
    assert fs4.lr_kernel == "pil" and fs4.lr_hw == (12, 18) and fs4.fps == 25
    assert listing(folder) == before


@pytest.mark.parametrize("bad, match", [
    ("no/such/video.mp4", "neither a known clip"),
    ("not_a_video.mp4", "could not be decoded"),
    ("empty_dir", "not a VSD4K-style folder"),
])
def test_bad_inputs_are_clear_and_write_nothing(tmp_root, tmp_path, bad, match):
    (tmp_path / "not_a_video.mp4").write_bytes(b"\x00" * 1000)
    (tmp_path / "empty_dir").mkdir()
    target = tmp_path / bad if not bad.startswith("no/") else bad
    with pytest.raises(DataError, match=match):
        video.prepare_frames(target, 2, max_frames=4)
    assert not (tmp_root / "data" / "frames").exists() or listing(tmp_root / "data" / "frames") == []


def test_bad_parameters_are_rejected_before_any_work(tmp_root, synthetic_video):
    for kwargs, match in [({"scale": 5}, "scale"), ({"scale": 2, "lr_kernel": "x"}, "lr_kernel"),
                          ({"scale": 2, "max_frames": 0}, "max_frames"),
                          ({"scale": 3, "crop_multiple": 8}, "crop_multiple")]:
        with pytest.raises(ValueError, match=match):
            video.prepare_frames(synthetic_video, **kwargs)
    assert not (tmp_root / "data").exists()


def test_statistics_and_chunk_summary(tmp_root, synthetic_video):
    fs = video.prepare_frames(synthetic_video, 2, max_frames=20)
    chunks, table = video.plan_frames(len(fs), fs.fps, 1.0, heldout_every=5)
    stats = video.frame_statistics(fs, table.frame)
    summary = video.summarize_chunks(fs, table, stats)
    assert list(summary.chunk) == [0, 1] and summary.frames.sum() == 20
    assert summary.heldout_frames.tolist() == [2, 2]
    assert (summary.texture > 0).all() and summary.mean_luminance.between(0, 255).all()
    flat = np.full((8, 8, 3), 77, np.uint8)
    assert video.texture(flat) == 0


def test_frame_identity_is_portable_across_project_locations(tmp_path, monkeypatch):
    from dydca_lib import video

    root = tmp_path / "a"
    monkeypatch.setenv("DYDCA_ROOT", str(root))
    (root / "data" / "frames").mkdir(parents=True)
    fs = object.__new__(video.FrameSet)  # identity() reads only these fields and describe()'s
    fs.source, fs.lr_paths = str(root / "data" / "clips" / "x.mp4"), [root / "data" / "frames" / "x" / "1.png"]
    monkeypatch.setattr(video.FrameSet, "describe", lambda self: {"source": self.source, "name": "x"})
    ident = fs.identity()
    assert ident["source"] == "clips/x.mp4" and ident["first_lr"] == "frames/x/1.png"
    fs.source = "/elsewhere/y.mp4"  # outside the data folder: kept as given
    assert fs.identity()["source"] == "/elsewhere/y.mp4"
