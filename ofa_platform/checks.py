"""Checks of user input that every command runs before anything starts or is written.

The house rule (DEVELOPERS.md) is one line, exit status 2, nothing started and nothing left
behind for any bad input. Each helper here answers one *class* of bad input, so a command
checks a flag by its kind rather than by a hand-written condition:

- numbers that are not numbers: argparse types (:func:`positive_int`, :func:`positive_float`,
  ...) that reject NaN, infinities, zero or negatives where they make no sense, and
  :func:`strict_json` for JSON text (no ``NaN``/``Infinity``, no float that overflows);
- text that is empty: :func:`non_empty_text`;
- resources that this machine does not have: :func:`check_local_resources`, before Ray starts
  (Ray itself would only say so after starting, or wait forever for a GPU);
- a tracking store that is not one: :func:`check_tracking_uri` (a ``sqlite:`` URI naming a
  file that is not a database, a directory, or a server that does not answer within seconds).

Only the standard library is imported at module level: the CLI imports this module to build its
parser, and ``ofa-platform --help`` must stay fast.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ofa_platform.errors import UserError

__all__ = ["positive_int", "non_negative_int", "positive_float", "non_negative_float",
           "finite_float", "seed_int", "non_empty_text", "strict_json", "local_cpus", "local_gpus",
           "check_local_resources", "check_tracking_uri", "SQLITE_MAGIC"]

#: The first 16 bytes of every SQLite 3 database file (sqlite.org/fileformat.html, 1.3.1).
SQLITE_MAGIC = b"SQLite format 3\x00"


# --------------------------------------------------------------------------- argparse types
def _number(text: str, kind: type) -> float:
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (workers, sizes, counts)."""
    value = int(_number(text, int))
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive integer")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (restarts, loader processes)."""
    value = int(_number(text, int))
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a non-negative integer")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (width multipliers, scales, hours, prices)."""
    value = _number(text, float)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive number")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (GPUs per worker: 0 means CPUs)."""
    value = _number(text, float)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a non-negative number")
    return value


def finite_float(text: str) -> float:
    """Any finite number."""
    return _number(text, float)


def seed_int(text: str) -> int:
    """A seed numpy and torch both take: 0 <= seed < 2**32 (numpy refuses the rest, after
    the job started)."""
    value = int(_number(text, int))
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an integer in [0, 2**32)")
    return value


def non_empty_text(text: str) -> str:
    """Text with something in it (experiment names, run names): an empty MLflow experiment
    name is rejected by MLflow only after the run was set up."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    if any(ord(c) < 32 for c in text):
        raise argparse.ArgumentTypeError(f"{text!r}: contains control characters")
    return text


# --------------------------------------------------------------------------- JSON
def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} overflows a float")
    return value


def strict_json(text: str, what: str) -> Any:
    """``json.loads`` that refuses what Python's parser lets through: ``NaN``, ``Infinity``
    and floats that overflow to infinity (``1e999``); the error is a :class:`UserError`."""
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite)
    except json.JSONDecodeError as exc:
        raise UserError(f"{what}: not valid JSON ({exc.msg} at line {exc.lineno} column "
                        f"{exc.colno})") from None
    except ValueError as exc:
        raise UserError(f"{what}: {exc}") from None
    except RecursionError:
        raise UserError(f"{what}: JSON nested too deeply") from None


# --------------------------------------------------------------------------- resources
def local_cpus() -> int:
    """CPUs this process may use (the affinity mask where the platform has one): what a local
    ``ray.init()`` gives the cluster."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def local_gpus() -> int:
    """CUDA devices torch sees (0 without torch's CUDA build or without a device)."""
    import torch

    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def check_local_resources(workers: int, cpus_per_worker: float = 1.0,
                          gpus_per_worker: float = 0.0) -> None:
    """Refuse a request this machine cannot run, before Ray starts.

    Only for a local cluster: with ``RAY_ADDRESS`` set (a cluster, or a Ray Job's driver) the
    cluster's autoscaler may add nodes, and the driver checks against the cluster once
    connected. When Ray is already initialised in this process, its resources decide.
    """
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        have = ray.cluster_resources()
        cpus, gpus, where = float(have.get("CPU", 0)), float(have.get("GPU", 0)), "the Ray cluster"
    elif os.environ.get("RAY_ADDRESS"):
        return
    else:
        cpus, where = float(local_cpus()), "this machine"
        gpus = float(local_gpus()) if gpus_per_worker > 0 else 0.0
    need_gpu = workers * gpus_per_worker
    if need_gpu > 0 and gpus < need_gpu:
        raise UserError(f"--gpus-per-worker {gpus_per_worker:g} x {workers} workers needs "
                        f"{need_gpu:g} GPUs; {where} has {gpus:g}")
    need_cpu = workers * cpus_per_worker
    if need_cpu > cpus:
        raise UserError(f"--workers {workers} x {cpus_per_worker:g} CPUs needs {need_cpu:g} "
                        f"CPUs; {where} has {cpus:g}")


# --------------------------------------------------------------------------- tracking store
def _sqlite_path(uri: str) -> Path | None:
    rest = uri[len("sqlite:"):]
    if rest.startswith("///"):  # sqlite:///relative, sqlite:////absolute (SQLAlchemy's forms)
        rest = rest[3:]
    elif rest.startswith("//"):
        rest = rest[2:]
    rest = rest.split("?", 1)[0]
    if not rest or rest == ":memory:":
        return None
    return Path(rest).expanduser()


def _probe_server(uri: str, attempts: int, timeout_s: float) -> None:
    parsed = urlparse(uri)
    host = parsed.hostname
    if not host:
        raise UserError(f"tracking URI {uri!r}: no host in it")
    try:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
    except ValueError:
        raise UserError(f"tracking URI {uri!r}: bad port") from None
    reason = ""
    for attempt in range(attempts):
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                return
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            if attempt + 1 < attempts:
                time.sleep(0.5)
    raise UserError(f"tracking server {uri} is unreachable ({reason}; tried {attempts} times)")


def check_tracking_uri(uri: str, *, attempts: int = 3, timeout_s: float = 2.0) -> str:
    """``uri`` if it can hold MLflow runs, else a :class:`UserError` naming it.

    A ``sqlite:`` URI must name a SQLite database or a file that does not exist yet in an
    existing directory; an ``http(s)`` server must accept a connection within ``attempts``
    tries of ``timeout_s`` seconds (MLflow itself retries for minutes, then prints a
    100-line traceback).
    """
    if uri.startswith("sqlite:"):
        path = _sqlite_path(uri)
        if path is None:
            return uri
        if path.is_dir():
            raise UserError(f"tracking URI {uri}: {path} is a directory, not a database")
        if path.exists():
            try:
                with path.open("rb") as f:
                    head = f.read(16)
            except OSError as exc:
                raise UserError(f"tracking URI {uri}: cannot read {path} "
                                f"({exc.strerror})") from None
            if head and head != SQLITE_MAGIC:
                raise UserError(f"tracking URI {uri}: {path} is not a SQLite database")
        else:
            blocker = next((p for p in path.parents if p.exists()), None)
            if blocker is not None and not blocker.is_dir():
                raise UserError(f"tracking URI {uri}: {blocker} is a file, not a directory")
            if not path.parent.is_dir():
                raise UserError(f"tracking URI {uri}: directory {path.parent} does not exist")
        return uri
    if uri.startswith(("http://", "https://")):
        _probe_server(uri, attempts, timeout_s)
    return uri
