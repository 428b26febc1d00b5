"""``ofa-platform train``: run a whole schedule on a supernet as one Ray Train job.

Everything a user can get wrong is checked before Ray or MLflow start, so a typo costs one
line and exit status 2, never a half-started cluster job or a RUNNING MLflow run.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from ofa_platform.checks import (
    non_empty_text,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    seed_int,
)
from ofa_platform.cli._requests import defaults
from ofa_platform.cli._requests import request_from_args as build_request

if TYPE_CHECKING:
    from ofa_platform.train.request import TrainRequest

__all__ = ["register", "run", "request_from_args"]


def register(sub: argparse._SubParsersAction) -> None:
    """The ``train`` options, defaults read from the request dataclass. Long on purpose: one
    ``add_argument`` per flag, in the order ``--help`` shows them, reads as the command's
    manual; split up, a flag's help would be hunted across functions."""
    from ofa_platform.train.request import (
        AMP_MODES,
        DATA_LOADERS,
        EVAL_SPLITS,
        PLACEMENT_STRATEGIES,
        TrainRequest,
    )

    d = defaults(TrainRequest)
    p = sub.add_parser("train", help="train a supernet with a schedule (one Ray Train job)")
    p.add_argument("--schedule", required=True, help="schedule name (jobs/schedules) or YAML path")
    p.add_argument("--space", help="search space (default: the schedule's)")
    p.add_argument("--data", required=True,
                   help="parquet:DIR, imagefolder:DIR or synthetic[:N]")
    p.add_argument("--workers", type=positive_int, default=d["workers"],
                   help=f"Ray Train workers (default {d['workers']})")
    p.add_argument("--gpus-per-worker", type=non_negative_float, default=d["gpus_per_worker"],
                   help="GPUs per worker (0: train on CPUs)")
    p.add_argument("--cpus-per-worker", type=positive_float, default=d["cpus_per_worker"])
    p.add_argument("--epoch-scale", type=positive_float, default=d["epoch_scale"],
                   help="fraction of each phase's epochs to run (smoke runs)")
    p.add_argument("--subset", type=positive_int, help="use the first N training images")
    p.add_argument("--experiment", type=non_empty_text, default=d["experiment"],
                   help="MLflow experiment")
    p.add_argument("--seed", type=seed_int, default=d["seed"])
    p.add_argument("--batch-size", type=positive_int, default=d["batch_size"],
                   help="images per worker per step")
    p.add_argument("--width-mult", type=positive_float, default=d["width_mult"])
    p.add_argument("--small-input", action=argparse.BooleanOptionalAction,
                   default=d["small_input"],
                   help="stem keeps small images' size (default: the dataset recipe's)")
    p.add_argument("--hardware", help="price-table entry (default: cpu, or the GPU kind)")
    p.add_argument("--max-failures", type=non_negative_int, default=d["max_failures"],
                   help="worker-group restarts from the last checkpoint")
    p.add_argument("--storage-path", help="Ray Train storage (default: runs/ray)")
    p.add_argument("--init-checkpoint", help="supernet file to start the first phase from")
    p.add_argument("--init-from", metavar="RUN_ID:PHASE",
                   help="start after PHASE from its finished weights: a training run's MLflow "
                        "id (or a supernet file of that phase) and the phase name, e.g. a "
                        "shared teacher (tags ofa.init_from_run_id, ofa.init_from_phase)")
    p.add_argument("--resume", metavar="RUN_ID", dest="resume_run_id",
                   help="continue an interrupted training run (its MLflow id) from the last "
                        "checkpoint Ray Train kept: same MLflow run, costs added up")
    p.add_argument("--amp", default=d["amp"], choices=AMP_MODES)
    p.add_argument("--val-limit", type=positive_int, help="evaluate on at most N validation images")
    p.add_argument("--eval-split", default=d["eval_split"], choices=EVAL_SPLITS,
                   help="per-epoch accuracies on the validation split held out of the training "
                        "rows (default) or on the dataset's test split")
    p.add_argument("--loader-workers", type=non_negative_int, default=d["loader_workers"],
                   help="DataLoader processes per worker for on-disk images")
    p.add_argument("--data-loader", default=d["data_loader"], choices=DATA_LOADERS,
                   help="Parquet through Ray Data (streamed) or decoded in every worker "
                        "(default auto: by size; shards and s3:// are streamed)")
    p.add_argument("--data-cpus", type=positive_float, default=d["data_cpus"],
                   help=f"logical CPUs per Ray Data decode task (default {d['data_cpus']})")
    p.add_argument("--placement-strategy", default=d["placement_strategy"],
                   choices=PLACEMENT_STRATEGIES,
                   help="Ray Train worker placement across nodes (default PACK)")
    p.add_argument("--json", action="store_true", help="print the outcome as JSON")
    p.set_defaults(func=run)


def request_from_args(args: argparse.Namespace) -> TrainRequest:
    """The :class:`~ofa_platform.train.request.TrainRequest` the flags describe."""
    from ofa_platform.train.request import TrainRequest

    return build_request(TrainRequest, args)


def preflight(args: argparse.Namespace) -> None:
    """The checks that need no data and no Ray: resources of this machine, paths, the
    tracking store (each a UserError before anything starts or is written)."""
    from ofa_platform.checks import check_local_resources, check_tracking_uri
    from ofa_platform.files import check_output_dir
    from ofa_platform.tracking import resolve_tracking_uri

    check_local_resources(args.workers, args.cpus_per_worker, args.gpus_per_worker)
    if args.storage_path and "://" not in args.storage_path:
        check_output_dir(args.storage_path, "--storage-path")
    check_tracking_uri(resolve_tracking_uri(None))


def run(args: argparse.Namespace) -> int:
    import sys
    from contextlib import nullcontext, redirect_stdout

    from ofa_platform.cluster import init_ray
    from ofa_platform.progress import console
    from ofa_platform.train.runner import prepare, run_training

    preflight(args)
    prepared = prepare(request_from_args(args))  # UserError -> one line, exit 2
    init_ray(verbose=getattr(args, "verbose", False))
    # --json: stdout is the JSON alone; anything else printed meanwhile (Ray's worker logs
    # with --verbose) goes to stderr with the progress
    quiet_stdout = redirect_stdout(sys.stderr) if args.json else nullcontext()
    with console(sys.stderr if args.json else sys.stdout) as progress, quiet_stdout:
        outcome = run_training(prepared, progress)
    if args.json:
        print(json.dumps({"run_id": outcome.run_id, "run_name": outcome.run_name,
                          "status": outcome.status, "checkpoint": outcome.checkpoint_dir,
                          "cost": outcome.cost, "metrics": outcome.final_metrics,
                          "error": outcome.error}, indent=2))
    else:
        print(f"{outcome.status} run {outcome.run_id} checkpoint {outcome.checkpoint_dir}")
    return 0 if outcome.status == "FINISHED" else 1
