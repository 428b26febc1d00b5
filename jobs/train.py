"""Ray Job entrypoint: ``ray job submit -- python jobs/train.py jobs/train_cifar10_smoke.yaml``.

The YAML holds the same fields as ``ofa-platform train`` flags (underscored names, e.g.
``epoch_scale``); it is parsed once into a typed ``TrainRequest`` and handed to the library, so
a job and the CLI run exactly the same code. Bad configs exit 2 with one line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ofa_platform.errors import UserError
from ofa_platform.jobconfig import load_job_config
from ofa_platform.train.runner import TrainRequest, prepare, run_training

__all__ = ["load_request", "main"]


def load_request(path: str | Path) -> TrainRequest:
    """Parse a job YAML into a ``TrainRequest``; unknown keys and wrong types are errors."""
    return load_job_config(path, TrainRequest, required=("schedule", "data"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="job YAML (see jobs/train_cifar10_smoke.yaml)")
    args = parser.parse_args(argv)
    try:
        outcome = run_training(prepare(load_request(args.config)))
    except UserError as exc:
        print(f"jobs/train.py: error: {exc}", file=sys.stderr)
        return 2
    print(f"{outcome.status} run {outcome.run_id} checkpoint {outcome.checkpoint_dir}")
    return 0 if outcome.status == "FINISHED" else 1


if __name__ == "__main__":
    sys.exit(main())
