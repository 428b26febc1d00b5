"""``ofa-platform submit JOB [ARGS...]``: run a ``jobs/`` entrypoint on a Ray cluster.

Everything after JOB goes to the entrypoint unchanged (config paths inside the project are made
relative to it, as it is uploaded as the job's working directory; others travel with the job).
Outputs go to stable places: the project's ``mlflow.db`` and ``runs/ray`` on a local cluster,
``MLFLOW_TRACKING_URI`` / ``OFA_STORAGE_PATH`` on a remote one (a remote training job without
shared storage is refused before submission). The command prints the job id, follows the logs
and exits 0 when the job succeeds, 1 when it fails or is stopped or the cluster is at fault, 2
on bad input, so scripts and CI can chain on it.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["register", "run"]

_EXIT = {"SUCCEEDED": 0, "FAILED": 1, "STOPPED": 1}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "submit", help="submit a job (train, search, compare) to a Ray cluster",
        description="Run a jobs/ entrypoint (train, search, compare) on a Ray cluster "
        "through Ray Jobs; prints the job id, follows its logs, exits with its status.")
    p.add_argument("job", help="entrypoint name in jobs/ (train, search, compare)")
    p.add_argument("job_args", nargs=argparse.REMAINDER,
                   help="arguments for the job (e.g. jobs/train_cifar10_smoke.yaml)")
    add_connection_args(p)
    p.add_argument("--mlflow-uri", default=None,
                   help="MLflow URI as seen from the cluster (default: MLFLOW_TRACKING_URI, "
                        "else the project's SQLite store for a local cluster, else the "
                        "cluster's own)")
    p.add_argument("--num-cpus", type=float, default=None, help="CPUs reserved for the driver")
    p.add_argument("--num-gpus", type=float, default=None, help="GPUs reserved for the driver")
    p.add_argument("--no-follow", action="store_true",
                   help="print the job id and return without waiting")
    p.set_defaults(func=run)


def add_connection_args(p: argparse.ArgumentParser) -> None:
    """``--address`` and ``--token-file``, shared with ``ofa-platform jobs``."""
    p.add_argument("--address", default=None,
                   help="Ray dashboard URL, e.g. http://HEAD:8265 (default: RAY_ADDRESS, "
                        "else http://127.0.0.1:8265)")
    p.add_argument("--token-file", default=None,
                   help="file holding the cluster's auth token (default: RAY_AUTH_TOKEN, "
                        "RAY_AUTH_TOKEN_PATH, then ~/.ray/auth_token)")


def _split_own_options(job_args: list[str]) -> tuple[list[str], dict[str, str | bool]]:
    """Our options may also follow JOB (``submit train --config x --no-follow``)."""
    own: dict[str, str | bool] = {}
    rest: list[str] = []
    valued = {"--address", "--token-file", "--mlflow-uri", "--num-cpus", "--num-gpus"}
    i = 0
    while i < len(job_args):
        arg = job_args[i]
        name = arg.split("=", 1)[0]
        if arg == "--no-follow":
            own["no_follow"] = True
        elif name in valued and "=" in arg:
            own[name[2:].replace("-", "_")] = arg.split("=", 1)[1]
        elif name in valued and i + 1 < len(job_args):
            own[name[2:].replace("-", "_")] = job_args[i + 1]
            i += 1
        else:
            rest.append(arg)
        i += 1
    return rest, own


def run(args: argparse.Namespace) -> int:
    from ofa_platform import cluster

    job_args, own = _split_own_options(list(args.job_args))
    for key, value in own.items():
        setattr(args, key, value)
    for key in ("num_cpus", "num_gpus"):
        value = getattr(args, key)
        if isinstance(value, str):
            from ofa_platform.errors import UserError
            try:
                setattr(args, key, float(value))
            except ValueError:
                raise UserError(f"--{key.replace('_', '-')} must be a number, got {value!r}")\
                    from None
    cluster.job_command(args.job, job_args)  # unknown job / bad config path: fail before Ray
    client = cluster.connect(args.address, args.token_file)
    job_id = cluster.submit_job(client, args.job, job_args, mlflow_uri=args.mlflow_uri,
                                num_cpus=args.num_cpus, num_gpus=args.num_gpus)
    print(f"submitted job {job_id} to {client.get_address()}", flush=True)
    if args.no_follow:
        print(f"follow it with: ofa-platform jobs logs {job_id} --follow", flush=True)
        return 0
    try:
        status = cluster.follow_job(client, job_id, sys.stdout)
    except KeyboardInterrupt:
        print(f"\nstopped following; job {job_id} keeps running (ofa-platform jobs stop "
              f"{job_id} to stop it)", file=sys.stderr, flush=True)
        raise
    print(f"job {job_id} {status}", file=sys.stderr, flush=True)
    return _EXIT.get(status, 1)
