"""Where a job's outputs go when Ray runs it in a copy of the working directory."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ofa_platform.errors import UserError
from ofa_platform.jobenv import (
    as_user_names,
    check_not_in_package,
    enter_job,
    ray_package_root,
)

REPO = Path(__file__).resolve().parents[1]


def test_a_job_in_rays_copy_runs_in_the_project(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain ``ray job submit --working-dir .`` on a local cluster: the shipped YAML's
    ``../shared/data`` path, MLflow store and checkpoints mean the project's, not the copy's."""
    copy = tmp_path / "session" / "runtime_resources" / "_ray_pkg_0a1b2c"
    shutil.copytree(REPO / "jobs", copy / "jobs",
                    ignore=shutil.ignore_patterns("schedules", "datasets"))
    monkeypatch.chdir(copy)
    for var in ("MLFLOW_TRACKING_URI", "OFA_STORAGE_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OFA_PROJECT_DIR", str(REPO))
    place = enter_job("jobs/train_cifar10_smoke.yaml")
    assert place.config == copy / "jobs" / "train_cifar10_smoke.yaml"
    assert Path.cwd() == REPO and place.project == REPO
    assert place.tracking_uri == f"sqlite:///{REPO / 'mlflow.db'}"
    assert place.storage_path == str(REPO / "runs" / "ray")
    assert (Path("..") / "shared").resolve() == (REPO.parent / "shared").resolve()
    check_not_in_package(place.tracking_uri, place.storage_path)  # nothing to refuse


def test_no_project_here_keeps_the_copy_and_refuses_stores_in_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "_ray_pkg_ffff"
    (copy / "jobs").mkdir(parents=True)
    (copy / "jobs" / "x.yaml").write_text("schedule: ofa\n")
    monkeypatch.chdir(copy)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("OFA_PROJECT_DIR", str(tmp_path / "absent"))
    place = enter_job("jobs/x.yaml")
    assert Path.cwd() == copy and place.project is None and place.tracking_uri is None
    assert ray_package_root(copy / "a" / "b") == copy and ray_package_root(tmp_path) is None
    with pytest.raises(UserError, match="set MLFLOW_TRACKING_URI"):
        check_not_in_package(f"sqlite:///{copy}/mlflow.db")
    with pytest.raises(UserError, match="set OFA_STORAGE_PATH"):
        check_not_in_package("http://head:5000", str(copy / "runs" / "ray"))
    check_not_in_package("http://head:5000", "s3://bucket/ofa")
    assert as_user_names(f"job config {copy}/.ofa_job/0_a.yaml: bad",
                         {f"{copy}/.ofa_job/0_a.yaml": "/home/me/a.yaml"}) == \
        "job config /home/me/a.yaml: bad"
