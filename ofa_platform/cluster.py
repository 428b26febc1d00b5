"""Ray Jobs client logic behind ``ofa-platform submit`` and ``ofa-platform jobs``.

Jobs go through Ray's Jobs API (``JobSubmissionClient``) rather than a hand-made scheduler, so
the same command targets a laptop's local Ray and a cloud cluster. Ray 2.60 clusters may enforce
token authentication; the Jobs client only attaches the token itself when the *client* process
runs with ``RAY_AUTH_MODE=token``, so we load the token the way Ray does (``RAY_AUTH_TOKEN``,
then ``RAY_AUTH_TOKEN_PATH``, then ``~/.ray/auth_token``) and always send it as a bearer header.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ofa_platform.errors import ClusterError, UserError
from ofa_platform.paths import project_root

__all__ = [
    "DEFAULT_ADDRESS",
    "JOB_EXCLUDES",
    "JobCommand",
    "JobSummary",
    "auth_headers",
    "connect",
    "ensure_sqlite_store",
    "follow_job",
    "init_ray",
    "job_command",
    "job_entrypoint",
    "job_logs",
    "job_status",
    "known_jobs",
    "list_jobs",
    "load_token",
    "project_root",
    "resolve_address",
    "stop_job",
    "submit_job",
    "wait_for_job",
]

DEFAULT_ADDRESS = "http://127.0.0.1:8265"

# gitignore syntax, relative to the project root: what never travels with a job.
JOB_EXCLUDES: tuple[str, ...] = (
    "*.db", "*.db-journal", "mlruns/", "/results/", "/runs/", "/data/", ".venv/", "venv/",
    ".git/", "__pycache__/", "*.pyc", ".pytest_cache/", ".ruff_cache/", ".ofa_cache/",
    ".cache/", "quickstart_out/", ".gl/", ".whl/", "/ref/", "benchmarks/.ref/", "*.egg-info/",
    "*.html", "*.pth", "*.pt", "*.ckpt", ".ofa_job/",
)

_TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def known_jobs(root: Path | None = None) -> list[str]:
    """Entrypoint names in ``jobs/`` (``train``, ``search``, ``compare``...)."""
    jobs_dir = (root or project_root()) / "jobs"
    return sorted(p.stem for p in jobs_dir.glob("*.py") if not p.stem.startswith("_"))


def resolve_address(address: str | None) -> str:
    """The dashboard URL to talk to: ``--address``, else ``RAY_ADDRESS``, else the local one.

    ``RAY_ADDRESS`` may name the GCS (``host:6379``) for ``ray.init``; the Jobs API needs the
    dashboard, so a bare ``host:port`` that is not an http URL is only accepted from --address.
    """
    chosen = address or os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS")
    if not chosen or chosen == "auto":
        return DEFAULT_ADDRESS
    if chosen.startswith(("http://", "https://")):
        return chosen.rstrip("/")
    if chosen.startswith("ray://"):
        raise UserError(f"address {chosen!r} is a Ray Client address; give the dashboard URL "
                        "(http://HEAD:8265)")
    return f"http://{chosen.rstrip('/')}"


def load_token(token_file: str | Path | None = None) -> str | None:
    """The cluster's auth token, looked up in Ray's own order; None when there is none.

    An explicit ``token_file`` wins. A named file that is missing or empty is an error, as it is
    for Ray itself: silently sending no token would only turn into a confusing 401 later.
    """
    if token_file is None:
        env_token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
        if env_token:
            return env_token
        token_file = os.environ.get("RAY_AUTH_TOKEN_PATH") or None
        if token_file is None:
            default = Path.home() / ".ray" / "auth_token"
            return default.read_text().strip() or None if default.is_file() else None
    path = Path(token_file).expanduser()
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise UserError(f"cannot read the Ray auth token file {path}: {exc.strerror}") from None
    if not token:
        raise UserError(f"the Ray auth token file {path} is empty")
    return token


def auth_headers(token: str | None) -> dict[str, str]:
    """The HTTP header Ray's dashboard checks (``Authorization: Bearer <token>``)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def connect(address: str | None = None, token_file: str | Path | None = None) -> Any:
    """A ``JobSubmissionClient`` for the cluster, authenticated when a token is known.

    Authentication failures are one-line ``UserError``s naming the address; a dashboard that
    does not answer is a ``ClusterError`` (the cluster's fault: exit 1).
    """
    from ray.job_submission import JobSubmissionClient

    url = resolve_address(address)
    token = load_token(token_file)
    try:
        return JobSubmissionClient(url, headers=auth_headers(token))
    except _auth_error_type() as exc:
        raise UserError(_auth_message(url, token, exc)) from None
    except ConnectionError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = " (start one with `ray start --head` or pass --address)" if _is_local(url) else ""
        raise ClusterError(f"cannot reach the Ray dashboard at {url}{hint}: {first}") from None
    except RuntimeError as exc:
        raise _submission_error(exc, f"the Ray dashboard at {url} refused the request") \
            from None


def init_ray(address: str | None = None, *, num_cpus: int | None = None,
             verbose: bool = False) -> None:
    """Start or join Ray for a driver command, quietly unless ``verbose``.

    Without an address (``--address`` / ``RAY_ADDRESS``) the command starts its own local Ray
    (``address="local"``): a bare ``ray.init()`` joins whatever cluster it finds on the
    machine, or fails with "Found multiple active Ray instances". With one, when the cluster
    asks for an auth token, it is found the way ``submit`` finds it (``RAY_AUTH_TOKEN``,
    ``RAY_AUTH_TOKEN_PATH``, ``~/.ray/auth_token``) and handed to Ray. Quiet means
    no worker logs on the driver (Ray Train's per-report ``TrainingReport(...)`` lines) and
    no Ray INFO logging; errors still reach the command, which says them in one line.
    """
    import logging

    if not verbose:
        # Tune's default console engine prints an experiment banner, its storage path and a
        # TensorBoard hint on stdout even at verbose=0; the legacy engine at 0 prints nothing
        # (the command's own progress display says what runs). Read when a Tuner fits.
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    address = address or os.environ.get("RAY_ADDRESS") or None
    import ray

    if ray.is_initialized():
        return
    quiet: dict[str, Any] = {"log_to_driver": verbose, "configure_logging": verbose,
                             "logging_level": logging.INFO if verbose else logging.WARNING}
    if address in (None, "local"):
        if not verbose:  # Ray 2.60 says on stderr, on every new local cluster, that it turned
            # token auth on (its default; the dashboard listens on 127.0.0.1 only)
            logging.getLogger("ray._private.authentication.authentication_token_setup"
                              ).setLevel(logging.ERROR)
        _start_local_ray(num_cpus, quiet)
        return
    assert address is not None
    if address.startswith(("http://", "https://")):
        raise UserError(f"RAY_ADDRESS {address!r} is a dashboard URL (for submit and jobs); "
                        "a driver command needs the cluster's GCS address, HEAD:6379")
    if not verbose:  # the driver's Ray core logs each failed retry of a join on stderr
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")
    token = load_token()
    # Token mode only for a cluster that asks for it (one RPC, not Ray's 20 s of retries): a
    # token in ~/.ray/auth_token meant for another cluster would put this driver in token
    # mode, and a cluster without tokens could not call back into it (its actors would be
    # cancelled as soon as they are created).
    if _gcs_wants_token(address):
        if not token:
            raise UserError(_auth_message(address, None, "the cluster requires an auth token",
                                          token_flag=False))
        _use_token(token)
    try:
        ray.init(address=address, **quiet)
    except _auth_error_type() as exc:
        raise UserError(_auth_message(address, token, exc, token_flag=False)) from None
    except (ConnectionError, TimeoutError) as exc:
        raise ClusterError(f"cannot join the Ray cluster at {address}: {_one_line(exc)}") \
            from None
    except RuntimeError as exc:
        if "auth" in str(exc).lower() or "token" in str(exc).lower():
            raise UserError(_auth_message(address, token, exc, token_flag=False)) from None
        raise ClusterError(f"cannot join the Ray cluster at {address}: {_one_line(exc)}") \
            from None


def _gcs_wants_token(address: str, timeout_s: float = 5.0) -> bool:
    """Whether the GCS at ``HEAD:PORT`` refuses an unauthenticated call (a token-mode
    cluster). Any other outcome (it answers, it cannot be reached) is False: joining then
    says what happened."""
    import grpc

    channel = grpc.insecure_channel(address)
    try:
        call = channel.unary_unary("/ray.rpc.NodeInfoGcsService/GetClusterId",
                                   request_serializer=lambda b: b,
                                   response_deserializer=lambda b: b)
        call(b"", timeout=timeout_s)
    except grpc.RpcError as exc:
        return exc.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        channel.close()
    return False


def _use_token(token: str) -> None:
    """Token mode for this driver process's Ray. Ray's core reads ``RAY_AUTH_MODE`` and the
    token when its native module loads, and caches them: a command that imported Ray before
    joining (``train`` imports Ray Train to define its callback) has them read again, else
    its first call to the cluster fails unauthenticated."""
    import sys

    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = token
    if "ray._raylet" in sys.modules:
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")  # as Ray's own authentication test utilities reset it
        AuthenticationTokenLoader.instance().reset_cache()


def _start_local_ray(num_cpus: int | None, quiet: dict[str, Any]) -> None:
    """A local Ray of this command's own, whose workers know its dashboard.

    Ray Train's controller asks the state API about its actors; without an address in its
    environment that client scans the machine for GCS processes and, when another Ray runs
    there (another user's, a test's), fails with "Found multiple active Ray instances". So
    the dashboard gets a known free port and every worker of this job gets
    ``RAY_API_SERVER_ADDRESS`` pointing at it.
    """
    import socket

    import ray

    for attempt in (1, 2):  # Ray gives its raylet 30 s to register: a busy machine needs two
        with socket.socket() as sock:  # a fresh port: a failed start may still hold the last
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env = {"RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{port}"}
        try:
            ray.init(address="local", num_cpus=num_cpus, dashboard_host="127.0.0.1",
                     dashboard_port=port, runtime_env={"env_vars": env}, **quiet)
            break
        except Exception as exc:  # noqa: BLE001 - Ray raises a bare Exception on a slow start
            ray.shutdown()
            if attempt == 2 or "timed out during startup" not in str(exc):
                raise ClusterError(f"could not start a local Ray: {_one_line(exc)}") from None
    os.environ.update(env)  # the driver's own state-API calls (Ray Train's) ask it too


def _auth_error_type() -> type[BaseException]:
    try:
        from ray.exceptions import AuthenticationError
    except ImportError:  # older Ray: no token auth, nothing to catch
        return _NeverRaised
    return AuthenticationError


class _NeverRaised(Exception):
    pass


def _auth_message(url: str, token: str | None, exc: BaseException | str, *,
                  token_flag: bool = True) -> str:
    """One line for a refused token; ``token_flag``: the command takes ``--token-file``
    (``submit`` and ``jobs`` do, driver commands joining through ``RAY_ADDRESS`` do not)."""
    if token is None or "Missing" in str(exc):
        return (f"the Ray cluster at {url} requires its auth token: put it in ~/.ray/auth_token"
                + (", set RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH, or pass --token-file"
                   if token_flag else " or set RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH"))
    return f"the Ray cluster at {url} rejected the auth token (not this cluster's token?)"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__


_CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
_MAX_INLINE_CONFIG = 64 * 1024


def _config_slots(args: Sequence[str]) -> list[tuple[int, str, str]]:
    """Where configs sit in the job's arguments: ``(index, prefix, path)``.

    ``--config PATH``, ``--config=PATH`` and positional ``*.yaml/*.yml/*.json`` arguments (the
    entrypoints take their recipe either way).
    """
    slots = []
    for i, arg in enumerate(args):
        if arg == "--config" and i + 1 < len(args):
            slots.append((i + 1, "", args[i + 1]))
        elif arg.startswith("--config="):
            slots.append((i, "--config=", arg.split("=", 1)[1]))
        elif (not arg.startswith("-") and arg.lower().endswith(_CONFIG_SUFFIXES)
              and (i == 0 or args[i - 1] != "--config")):
            slots.append((i, "", arg))
    return slots


_LAUNCHER = "jobs/_launch.py"


@dataclass(frozen=True)
class JobCommand:
    """What a Ray Job runs, as one argument list (quoted once, by :attr:`entrypoint`).

    ``argv`` runs ``jobs/_launch.py JOB ARGS...`` in the uploaded copy; ``files`` are the
    configs from outside the project, shipped in the job's environment (``OFA_JOB_FILES``)
    instead of the command line; ``shown`` is the user's command (``train jobs/x.yaml``), the
    one ``ofa-platform jobs`` lists.
    """

    job: str
    argv: tuple[str, ...]
    files: tuple[dict[str, Any], ...]
    shown: str

    @property
    def entrypoint(self) -> str:
        """The shell command Ray Jobs wants: ``argv`` quoted once, nothing else."""
        import shlex

        return shlex.join(self.argv)


def _ship_configs(args: Sequence[str], root: Path,
                  cwd: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """Job arguments with config paths that work inside the job, and the configs to ship.

    A config inside the project is passed by its path relative to the root (the same file in
    the project and in its uploaded copy); one outside it travels in the job's environment
    and the launcher writes it into ``.ofa_job/`` of the copy. A missing config fails here,
    before anything is submitted.
    """
    out = list(args)
    files: list[dict[str, Any]] = []
    for n, (j, prefix, value) in enumerate(_config_slots(out)):
        path = Path(value)
        path = path if path.is_absolute() else cwd / path
        if not path.is_file():
            raise UserError(f"config file not found: {value}")
        try:
            out[j] = prefix + path.resolve().relative_to(root).as_posix()
            continue
        except ValueError:
            pass
        data = path.read_bytes()
        if len(data) > _MAX_INLINE_CONFIG:
            raise UserError(f"config {value} is over {_MAX_INLINE_CONFIG // 1024} KiB and outside "
                            f"the project {root}; move it under jobs/")
        try:
            text = data.decode()
        except UnicodeDecodeError:
            raise UserError(f"config {value} is not UTF-8 text") from None
        files.append({"index": j, "prefix": prefix, "name": f"{n}_{path.name}",
                      "shown": value, "text": text})
    return out, files


def job_command(job: str, args: Sequence[str], root: Path | None = None,
                cwd: Path | None = None) -> JobCommand:
    """The :class:`JobCommand` for ``jobs/<job>.py`` with the user's ``args``.

    The code always comes from the uploaded copy of the project; where the project also
    exists at the same path on the cluster machine (a local cluster), the launcher runs the
    job in the project directory (``OFA_PROJECT_DIR``), so relative paths in configs mean
    what they mean on the user's machine.
    """
    import shlex

    root = root or project_root()
    names = known_jobs(root)
    if job not in names:
        raise UserError(f"unknown job {job!r}; choose from {', '.join(names) or '(none)'}")
    rewritten, files = _ship_configs(args, root, cwd or Path.cwd())
    return JobCommand(job=job, argv=("python", _LAUNCHER, job, *rewritten),
                      files=tuple(files), shown=shlex.join([job, *rewritten]))


def job_entrypoint(job: str, args: Sequence[str], root: Path | None = None,
                   cwd: Path | None = None) -> str:
    """The shell command a Ray Job runs for ``jobs/<job>.py``: one argument list, quoted once
    (see :func:`job_command`)."""
    return job_command(job, args, root, cwd).entrypoint


def _is_local(url: str) -> bool:
    host = url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
    return host in {"127.0.0.1", "localhost", "::1", "[::1]"}


JOB_STOP_WAIT_S = 60


def _job_env(url: str, command: JobCommand, root: Path,
             mlflow_uri: str | None) -> dict[str, str]:
    """Environment for the job: where its outputs go, and the configs it was given.

    MLflow: ``--mlflow-uri``, else ``MLFLOW_TRACKING_URI``, else on a local cluster the
    project's SQLite store; a remote job keeps the cluster's own ``MLFLOW_TRACKING_URI`` (set
    on the head by ray_cluster.yaml). Checkpoints: ``OFA_STORAGE_PATH``, else on a local
    cluster the project's ``runs/ray`` (never Ray's temporary copy of the project); a remote
    training job without it, and without ``storage_path`` in its config, is refused here,
    before anything is submitted.
    """
    import json

    from ofa_platform.jobenv import PROJECT_ENV, STORAGE_ENV

    local = _is_local(url)
    env = {"PYTHONUNBUFFERED": "1", PROJECT_ENV: str(root),
           # `ray job stop` sends SIGTERM, then SIGKILL after this many seconds (Ray's
           # default 3 s, read by the job's supervisor from the job's env_vars): a training
           # driver needs longer to stop Ray Train, log the cost and end its MLflow run.
           "RAY_JOB_STOP_WAIT_TIME_S": os.environ.get("RAY_JOB_STOP_WAIT_TIME_S",
                                                      str(JOB_STOP_WAIT_S))}
    uri = mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri and local:
        uri = f"sqlite:///{root / 'mlflow.db'}"
    if uri:
        env["MLFLOW_TRACKING_URI"] = uri
    if local:  # the job's `python` is this interpreter (its venv), not the first on the
        # cluster's PATH: a cluster started from an unactivated venv finds no torch otherwise
        env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable),
                                       os.environ.get("PATH", "")])
    storage = os.environ.get(STORAGE_ENV) or (str(root / "runs" / "ray") if local else None)
    if storage:
        env[STORAGE_ENV] = storage
    elif command.job == "train" and not _configs_set(command, root, "storage_path"):
        raise UserError(f"a training job on the remote cluster {url} needs shared checkpoint "
                        f"storage: set {STORAGE_ENV} (e.g. s3://bucket/ofa) or storage_path in "
                        "its config")
    if command.files:
        env["OFA_JOB_FILES"] = json.dumps(list(command.files))
    return env


def _configs_set(command: JobCommand, root: Path, key: str) -> bool:
    """Whether one of the job's YAML configs sets ``key``."""
    import yaml

    texts = [f["text"] for f in command.files]
    texts += [(root / p).read_text() for _, _, p in _config_slots(list(command.argv[3:]))
              if (root / p).is_file()]
    for text in texts:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError:
            continue  # the job reports its own config's syntax error
        if isinstance(data, dict) and data.get(key):
            return True
    return False


def ensure_sqlite_store(uri: str) -> None:
    """Create a SQLite MLflow store's tables before any job touches it.

    Two jobs that open a fresh SQLite store at the same moment both run MLflow's schema
    migration and one fails (``table _alembic_tmp_experiments already exists``); creating it
    once here, in the submitting process, removes the race.
    """
    if not uri.startswith("sqlite:///"):
        return
    path = Path(uri.removeprefix("sqlite:///"))
    if path.is_file():
        return
    import logging

    from mlflow.tracking import MlflowClient

    path.parent.mkdir(parents=True, exist_ok=True)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    MlflowClient(tracking_uri=uri).search_experiments(max_results=1)


def submit_job(client: Any, job: str, args: Sequence[str], *, mlflow_uri: str | None = None,
               num_cpus: float | None = None, num_gpus: float | None = None,
               root: Path | None = None, cwd: Path | None = None) -> str:
    """Submit ``jobs/<job>.py`` with the project as working_dir; returns the job id."""
    root = root or project_root()
    cwd = cwd or Path.cwd()
    command = job_command(job, args, root, cwd)
    env = _job_env(client.get_address(), command, root, mlflow_uri)
    if "MLFLOW_TRACKING_URI" in env:
        ensure_sqlite_store(env["MLFLOW_TRACKING_URI"])
    runtime_env = {"working_dir": str(root), "excludes": list(JOB_EXCLUDES), "env_vars": env}
    kwargs: dict[str, Any] = {}
    if num_cpus is not None:
        kwargs["entrypoint_num_cpus"] = num_cpus
    if num_gpus is not None:
        kwargs["entrypoint_num_gpus"] = num_gpus
    try:
        return client.submit_job(entrypoint=command.entrypoint, runtime_env=runtime_env,
                                 metadata={"ofa.job": job, "ofa.command": command.shown},
                                 **kwargs)
    except RuntimeError as exc:
        raise _submission_error(exc) from None


def _submission_error(exc: BaseException, what: str = "job submission refused") -> Exception:
    """Ray's refusal as one line: the cluster's fault (no agent, a port in use, the runtime
    environment failing) is a ``ClusterError`` (exit 1); anything else is the request's."""
    import re

    text = _one_line(exc)
    fault = re.compile(r"agent|already in use|connection|timed out|timeout|unavailable|"
                       r"\b50[0-9]\b", re.IGNORECASE)
    if fault.search(text):
        return ClusterError(f"the cluster could not take the job: {text}")
    return UserError(f"{what}: {text}")


@dataclass(frozen=True)
class JobSummary:
    """One row of ``ofa-platform jobs list``: ``command`` is what the user asked for
    (``train jobs/x.yaml``; Ray's entrypoint for jobs not submitted by ``submit``)."""

    job_id: str
    status: str
    entrypoint: str
    start_time: float | None
    end_time: float | None
    command: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dict(self.__dict__)


def list_jobs(client: Any) -> list[JobSummary]:
    """Every job the cluster knows, newest first."""
    rows = []
    for info in client.list_jobs():
        job_id = info.submission_id or info.job_id or "?"
        shown = (info.metadata or {}).get("ofa.command") or info.entrypoint
        rows.append(JobSummary(job_id, str(getattr(info.status, "value", info.status)),
                               info.entrypoint, _seconds(info.start_time),
                               _seconds(info.end_time), shown))
    return sorted(rows, key=lambda r: r.start_time or 0.0, reverse=True)


def _seconds(ms: int | None) -> float | None:
    return ms / 1000.0 if ms else None


def _checked(call: Callable[[], Any], job_id: str) -> Any:
    try:
        return call()
    except RuntimeError as exc:
        text = _one_line(exc)
        if "404" in text or "does not exist" in text:
            raise UserError(f"no such job: {job_id}") from None
        raise UserError(f"Ray refused the request for job {job_id}: {text}") from None


def job_status(client: Any, job_id: str) -> str:
    """The job's status name (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED)."""
    status = _checked(lambda: client.get_job_status(job_id), job_id)
    return str(getattr(status, "value", status))


def job_logs(client: Any, job_id: str) -> str:
    """Everything the job's driver has printed so far."""
    return _checked(lambda: client.get_job_logs(job_id), job_id)


def stop_job(client: Any, job_id: str) -> bool:
    """Ask Ray to stop the job; False when it had already ended."""
    return bool(_checked(lambda: client.stop_job(job_id), job_id))


def wait_for_job(client: Any, job_id: str, timeout_s: float | None = None,
                 poll_s: float = 1.0) -> str:
    """Block until the job reaches a terminal status and return it (no log streaming)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        status = job_status(client, job_id)
        if status in _TERMINAL:
            return status
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {status} after {timeout_s:.0f} s")
        time.sleep(poll_s)


def follow_job(client: Any, job_id: str, out: TextIO | None = None) -> str:
    """Stream the job's logs to ``out`` until it ends; returns the terminal status.

    Ray's log tail is a websocket that carries our auth headers; if it drops (head restart,
    proxy timeout) we fall back to polling the full log and printing what is new.
    """
    out = out or sys.stdout
    printed = 0

    async def _tail() -> None:
        nonlocal printed
        async for chunk in client.tail_job_logs(job_id):
            out.write(chunk)
            out.flush()
            printed += len(chunk)

    try:
        asyncio.run(_tail())
    except Exception:  # noqa: BLE001 - any stream failure falls back to polling
        pass
    while True:
        status = job_status(client, job_id)
        logs = job_logs(client, job_id)
        if len(logs) > printed:
            out.write(logs[printed:])
            out.flush()
            printed = len(logs)
        if status in _TERMINAL:
            return status
        time.sleep(1.0)
