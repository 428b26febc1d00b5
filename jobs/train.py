"""Ray Job entrypoint: ``ofa-platform submit train jobs/train_cifar10_smoke.yaml``, or plain
``ray job submit --working-dir . -- python jobs/train.py jobs/train_cifar10_smoke.yaml``.

The YAML holds the same fields as ``ofa-platform train`` flags (underscored names, e.g.
``epoch_scale``); it is parsed once into a typed ``TrainRequest`` and handed to the library, so
a job and the CLI run exactly the same code. Inside Ray's copy of the working directory the
job runs in the project checkout when this machine has one, and refuses an MLflow store or
checkpoint storage inside the copy (:mod:`ofa_platform.jobenv`). Bad configs exit 2 with one
line naming the user's file; a cluster fault exits 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Mapping
from pathlib import Path

from ofa_platform.errors import ClusterError, UserError
from ofa_platform.jobconfig import load_job_config
from ofa_platform.jobenv import as_user_names, check_not_in_package, enter_job
from ofa_platform.train.runner import TrainRequest, default_storage_path, prepare, run_training

__all__ = ["load_request", "main"]


def load_request(path: str | Path) -> TrainRequest:
    """Parse a job YAML into a ``TrainRequest``; unknown keys and wrong types are errors."""
    return load_job_config(path, TrainRequest, required=("schedule", "data"))


def main(argv: list[str] | None = None, names: Mapping[str, str] | None = None) -> int:
    """Run the job; ``names`` maps config paths to the names the user knows them by (the
    launcher's copies of configs from outside the project)."""
    from ofa_platform.tracking import resolve_tracking_uri

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="job YAML (see jobs/train_cifar10_smoke.yaml)")
    args = parser.parse_args(argv)
    names = dict(names or {})
    try:
        place = enter_job(args.config)
        names.setdefault(str(place.config), args.config)
        request = load_request(place.config)
        request = dataclasses.replace(
            request, tracking_uri=request.tracking_uri or place.tracking_uri,
            storage_path=request.storage_path or place.storage_path)
        check_not_in_package(resolve_tracking_uri(request.tracking_uri),
                             request.storage_path or default_storage_path())
        outcome = run_training(prepare(request))
    except UserError as exc:
        print(f"jobs/train.py: error: {as_user_names(str(exc), names)}", file=sys.stderr)
        return 2
    except ClusterError as exc:
        print(f"jobs/train.py: cluster error: {exc}", file=sys.stderr)
        return 1
    print(f"{outcome.status} run {outcome.run_id} checkpoint {outcome.checkpoint_dir}")
    return 0 if outcome.status == "FINISHED" else 1


if __name__ == "__main__":
    sys.exit(main())
