"""Where the project keeps data, caches and results.

The project root is the folder holding ``pyproject.toml`` above this package; set
``DYDCA_ROOT`` to put ``data/`` and ``results/`` somewhere else.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def project_root() -> Path:
    env = os.environ.get("DYDCA_ROOT")
    return Path(env).resolve() if env else PACKAGE_DIR.parent


def data_dir() -> Path:
    """Downloaded clips and frame caches (git-ignored, made by ``make data``)."""
    return project_root() / "data"


def results_dir(profile: str, notebook: str | None = None) -> Path:
    """``results/<profile>/[<notebook>/]``."""
    if not profile or "/" in profile or profile.startswith("."):
        raise ValueError(f"profile {profile!r} is not a plain name such as 'smoke' or 'default'")
    root = project_root() / "results" / profile
    return root / notebook if notebook else root


def params_file(profile: str) -> Path:
    return project_root() / "params" / f"{profile}.yaml"
