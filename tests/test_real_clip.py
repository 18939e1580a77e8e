"""The data module on a real clip (cityCC0, CC0, fetched by `make data`)."""

import numpy as np
import pytest

from dydca_lib import metrics, video
from dydca_lib.sources import CLIPS, fetch_clip

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def city():
    return fetch_clip("cityCC0", verbose=False)


def test_real_clip_probe_and_full_stream_decode(city):
    info = video.probe_video(city)
    assert (info.width, info.height, info.fps) == (720, 405, 25.0)
    n = sum(1 for _ in video.iter_video_frames(city))
    assert n == 190  # as OpenCV and PyAV both count (shared/data-sources.md)
    assert CLIPS["cityCC0"].sha256.startswith("fe129d34")


@pytest.mark.parametrize("scale, lr_size", [(2, (198, 360)), (3, (132, 240)), (4, (99, 180))])
def test_real_clip_lr_frames_and_bicubic_reference(tmp_path, city, scale, lr_size):
    fs = video.prepare_frames(city, scale, max_frames=6, cache_root=tmp_path)
    assert fs.hr_hw == (396, 720) and fs.lr_hw == lr_size and len(fs) == 6
    q = metrics.bicubic_quality(fs, range(len(fs)))
    # bicubic on this crisp night clip is poor and gets worse with the scale
    assert q.bicubic_psnr_rgb.between(18, 32).all()
    assert (q.bicubic_psnr_y > q.bicubic_psnr_rgb - 3).all()
    assert np.isfinite(q.bicubic_psnr_rgb).all()
