"""Where a Ray Job's outputs go: the job side of ``ofa-platform submit`` and plain
``ray job submit --working-dir . -- python jobs/train.py jobs/x.yaml``.

Ray runs a job in a throwaway copy of the working directory (``.../_ray_pkg_<hash>/`` under
the session directory), so anything a job writes relative to its code (the default SQLite
MLflow store, ``runs/ray`` checkpoints) is lost with that copy. An entrypoint in ``jobs/``
therefore calls :func:`enter_job` first: inside a copy it moves to the project checkout when
this machine has one (a local cluster: ``OFA_PROJECT_DIR`` from ``submit``, else the checkout
the package is installed from), so relative data paths (``../shared/data``) and outputs mean
what they mean in the project; and it refuses, in one line, a tracking store or checkpoint
storage that would still land inside the copy (a remote cluster without
``MLFLOW_TRACKING_URI`` / ``OFA_STORAGE_PATH``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ofa_platform.errors import UserError

__all__ = ["JobPlace", "ray_package_root", "installed_checkout", "enter_job",
           "check_not_in_package", "as_user_names", "PROJECT_ENV", "STORAGE_ENV"]

#: Set by ``submit``: the project directory on the submitting machine.
PROJECT_ENV = "OFA_PROJECT_DIR"
#: Checkpoint storage for jobs (``runs/ray`` of the project on a local cluster).
STORAGE_ENV = "OFA_STORAGE_PATH"
_PACKAGE_PREFIX = "_ray_pkg_"  # Ray's name for an unpacked working_dir / py_modules package


def ray_package_root(path: str | os.PathLike[str]) -> Path | None:
    """The Ray working-directory copy that ``path`` lies in, or None."""
    p = Path(path).resolve()
    return next((a for a in (p, *p.parents) if a.name.startswith(_PACKAGE_PREFIX)), None)


def installed_checkout() -> Path | None:
    """The project checkout this machine runs jobs from: ``OFA_PROJECT_DIR`` when it exists
    here, else the directory the ``ofa-platform`` distribution is installed from in editable
    mode (PEP 610 ``direct_url.json``); None when neither is a project (a remote node)."""
    candidates = []
    if os.environ.get(PROJECT_ENV):
        candidates.append(Path(os.environ[PROJECT_ENV]))
    else:
        try:
            from importlib.metadata import distribution

            info = json.loads(distribution("ofa-platform").read_text("direct_url.json") or "{}")
        except Exception:  # noqa: BLE001 - not installed, or not from a directory
            info = {}
        if info.get("dir_info", {}).get("editable") and info.get("url", "").startswith("file://"):
            candidates.append(Path(info["url"].removeprefix("file://")))
    for c in candidates:
        if (c / "jobs").is_dir() and ray_package_root(c) is None:
            return c.resolve()
    return None


def as_user_names(text: str, names: Mapping[str, str]) -> str:
    """``text`` (an error message) with each path in ``names`` replaced by the name the user
    gave it, so errors name the user's config file, not Ray's copy of it."""
    for path, name in names.items():
        text = text.replace(path, name)
    return text


@dataclass(frozen=True)
class JobPlace:
    """Where a job entrypoint reads and writes: its config (absolute), the project it runs in
    (None: where Ray put it), and default tracking URI and checkpoint storage (None: the
    library's own defaults)."""

    config: Path
    project: Path | None
    tracking_uri: str | None
    storage_path: str | None


def enter_job(config: str | os.PathLike[str]) -> JobPlace:
    """Resolve ``config``, then, inside a Ray working-directory copy, move to the project
    checkout if this machine has one (see the module docstring)."""
    path = Path(config).resolve()
    uri = os.environ.get("MLFLOW_TRACKING_URI") or None
    storage = os.environ.get(STORAGE_ENV) or None
    copy = ray_package_root(Path.cwd())
    project = installed_checkout() if copy is not None else None
    if project is not None:
        os.chdir(project)
        uri = uri or f"sqlite:///{project / 'mlflow.db'}"
        storage = storage or str(project / "runs" / "ray")
    return JobPlace(path, project, uri, storage)


def check_not_in_package(tracking_uri: str, storage_path: str | None = None) -> None:
    """Refuse, in one line, an MLflow store or checkpoint storage inside a Ray
    working-directory copy: Ray deletes the copy, and the runs with it."""
    if tracking_uri.startswith(("sqlite:///", "file://")) or "://" not in tracking_uri:
        where = tracking_uri.removeprefix("sqlite:///").removeprefix("file://")
        if ray_package_root(where) is not None:
            raise UserError(f"the MLflow store {tracking_uri} is inside Ray's temporary copy of "
                            "the working directory and would be lost: set MLFLOW_TRACKING_URI "
                            "(e.g. http://HEAD:5000 or sqlite:////shared/mlflow.db)")
    if storage_path and "://" not in storage_path and ray_package_root(storage_path):
        raise UserError(f"checkpoint storage {storage_path} is inside Ray's temporary copy of "
                        f"the working directory and would be lost: set {STORAGE_ENV} "
                        "(shared storage, e.g. s3://bucket/ofa) or storage_path")
