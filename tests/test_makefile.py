"""The Makefile's commands, read with `make -n` (printed, never run): `make lab` passes
--allow-root exactly when make runs as root, and `make reproduce` passes VIDEO and PARAMS."""

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def make_n(tmp_path, target, *variables, uid=None):
    """The command `make -n target` prints for ``target`` (the install steps of a missing venv
    are printed too and skipped here); ``uid`` fakes what `id -u` answers."""
    env = dict(os.environ)
    if uid is not None:
        fake = tmp_path / f"bin-{uid}"
        fake.mkdir()
        (fake / "id").write_text(f"#!/bin/sh\necho {uid}\n")
        (fake / "id").chmod(0o755)
        env["PATH"] = f"{fake}{os.pathsep}{env['PATH']}"
    out = subprocess.run(["make", "-n", "-C", str(ROOT), target, f"VENV={tmp_path}/venv", *variables],
                         env=env, capture_output=True, text=True, check=True).stdout
    lines = [line for line in out.splitlines() if f"{tmp_path}/venv/bin/" in line and "pip" not in line
             and not line.startswith("test -x")]
    assert len(lines) == 1, out
    return shlex.split(lines[0])


@pytest.mark.parametrize("uid, as_root", [(0, True), (1000, False)])
def test_lab_passes_allow_root_only_as_root(tmp_path, uid, as_root):
    argv = make_n(tmp_path, "lab", uid=uid)
    assert argv[:2] == [f"{tmp_path}/venv/bin/jupyter", "lab"]
    assert ("--allow-root" in argv) is as_root
    assert "--ip=127.0.0.1" in argv  # localhost only, as root too
    assert not any("token" in a.lower() or "password" in a.lower() for a in argv)  # the token stays on
    assert argv[-1] == "notebooks/"


def test_lab_detects_the_user_it_runs_as(tmp_path):
    assert ("--allow-root" in make_n(tmp_path, "lab")) is (os.geteuid() == 0)


def test_reproduce_passes_the_video_and_parameters(tmp_path):
    argv = make_n(tmp_path, "reproduce", "PROFILE=default", "VIDEO=my clips/a b.mp4", "PARAMS=scale=3 epochs=[2]")
    assert argv[1:] == ["-m", "dydca_lib.reproduce", "--profile", "default", "--video", "my clips/a b.mp4",
                        "-p", "scale=3", "-p", "epochs=[2]"]
    assert make_n(tmp_path, "reproduce")[1:] == ["-m", "dydca_lib.reproduce", "--profile", "smoke"]
