"""Where the project's own files are: found here once, used by every module.

The package is installed editable from its checkout, so the checkout's root (the folder
holding ``jobs/``, ``runs/`` and the default ``mlflow.db``) is this file's grandparent. A
Ray job runs in Ray's copy of that checkout, where the same holds.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["project_root", "jobs_dir"]


def project_root() -> Path:
    """The checkout's root: the working directory every Ray job is shipped with."""
    return Path(__file__).resolve().parents[1]


def jobs_dir(*parts: str) -> Path:
    """``jobs/`` of the checkout, or a folder below it (``jobs_dir("schedules")``)."""
    return project_root().joinpath("jobs", *parts)
