"""``ofa-platform jobs [list | logs ID [--follow] | stop ID]``: the cluster's Ray Jobs."""

from __future__ import annotations

import argparse
import json
import sys
import time

from ofa_platform.cli.submit import add_connection_args

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("jobs", help="list, tail or stop jobs on a Ray cluster",
                              description="List, tail or stop the Ray Jobs of a cluster.")
    p.add_argument("action", nargs="?", default="list", choices=["list", "logs", "stop"])
    p.add_argument("job_id", nargs="?", default=None, help="job id (for logs and stop)")
    p.add_argument("--follow", "-f", action="store_true", help="logs: stream until the job ends")
    p.add_argument("--json", action="store_true", help="list: print JSON")
    add_connection_args(p)
    p.set_defaults(func=run)


def _fmt_time(seconds: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds)) if seconds else "-"


def run(args: argparse.Namespace) -> int:
    from ofa_platform import cluster
    from ofa_platform.errors import UserError

    if args.action != "list" and not args.job_id:
        raise UserError(f"'jobs {args.action}' needs a job id")
    client = cluster.connect(args.address, args.token_file)
    if args.action == "list":
        rows = cluster.list_jobs(client)
        if args.json:
            print(json.dumps([r.as_dict() for r in rows], indent=2))
            return 0
        if not rows:
            print("no jobs")
            return 0
        width = max(len(r.job_id) for r in rows)
        print(f"{'JOB ID':<{width}}  {'STATUS':<9}  {'STARTED':<19}  COMMAND")
        for r in rows:
            print(f"{r.job_id:<{width}}  {r.status:<9}  {_fmt_time(r.start_time):<19}  "
                  f"{r.command or r.entrypoint}")
        return 0
    if args.action == "logs":
        if args.follow:
            status = cluster.follow_job(client, args.job_id, sys.stdout)
            return 0 if status == "SUCCEEDED" else 1
        sys.stdout.write(cluster.job_logs(client, args.job_id))
        return 0
    stopped = cluster.stop_job(client, args.job_id)
    print(f"job {args.job_id}: {'stop requested' if stopped else 'already finished'}")
    return 0
