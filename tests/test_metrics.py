import math

import numpy as np
import pytest

from dydca_lib.metrics import mse, psnr, psnr_from_mse, rgb_to_y


def test_identical_images_have_infinite_psnr():
    img = np.random.default_rng(0).integers(0, 256, (8, 9, 3), dtype=np.uint8)
    assert psnr(img, img) == math.inf
    assert psnr(img, img, y_channel=True) == math.inf


def test_constant_offset_gives_known_psnr():
    a = np.full((10, 10, 3), 100, np.uint8)
    b = np.full((10, 10, 3), 110, np.uint8)
    assert mse(a, b) == 100.0
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 100))  # 28.1308 dB


def test_gaussian_noise_psnr_matches_its_variance():
    rng = np.random.default_rng(1)
    a = np.full((256, 256, 3), 128.0)
    noisy = np.clip(np.round(a + rng.normal(0, 5, a.shape)), 0, 255)
    assert psnr(a, noisy) == pytest.approx(10 * math.log10(255**2 / 25), abs=0.1)


def test_shave_ignores_the_border():
    a = np.zeros((20, 20, 3), np.uint8)
    b = a.copy()
    b[:3] = 255
    assert psnr(a, b, shave=3) == math.inf
    assert psnr(a, b, shave=2) < 30
    with pytest.raises(ValueError, match="shave"):
        psnr(a, b, shave=10)


def test_y_channel_range_and_shape_mismatch():
    assert rgb_to_y(np.zeros((1, 1, 3), np.uint8))[0, 0] == pytest.approx(16)
    assert rgb_to_y(np.full((1, 1, 3), 255, np.uint8))[0, 0] == pytest.approx(235)
    with pytest.raises(ValueError, match="shape"):
        psnr(np.zeros((4, 4, 3)), np.zeros((4, 5, 3)))
    assert psnr_from_mse(0.0) == math.inf
