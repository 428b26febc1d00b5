"""Ray Job launcher behind ``ofa-platform submit``: ``python jobs/_launch.py JOB [ARGS...]``.

Runs ``jobs/JOB.py`` of this uploaded copy with ARGS (its ``main(argv)``), after

- writing the configs ``submit`` shipped from outside the project (``OFA_JOB_FILES``: JSON
  list of ``{"index", "prefix", "name", "shown", "text"}``) into ``.ofa_job/`` of the copy
  and pointing their arguments there;
- moving to the project directory when it exists on this machine (``OFA_PROJECT_DIR``: a
  local cluster), so relative paths in configs (``../shared/data``, ``runs/...``) mean what
  they mean on the user's machine.

Errors from the job then name the user's config files (``main(argv, names=...)``), not the
copies. The arguments arrive as one argument list, quoted once by ``submit``; this file does
no shell work and imports nothing but the standard library before the job does.
"""

from __future__ import annotations

import inspect
import json
import os
import runpy
import sys
from pathlib import Path

__all__ = ["FILES_ENV", "PROJECT_ENV", "materialise", "main"]

FILES_ENV = "OFA_JOB_FILES"
PROJECT_ENV = "OFA_PROJECT_DIR"


def materialise(args: list[str], copy: Path) -> tuple[list[str], dict[str, str]]:
    """``args`` with shipped configs written under ``copy/.ofa_job/`` and their arguments
    pointing there; and the map from those paths to the user's names for them."""
    out, names = list(args), {}
    for f in json.loads(os.environ.get(FILES_ENV) or "[]"):
        target = copy / ".ofa_job" / f["name"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f["text"])
        out[f["index"]] = f["prefix"] + str(target)
        names[str(target)] = f["shown"]
    return out, names


def main(argv: list[str]) -> int:
    """Run ``jobs/<argv[0]>.py`` with the rest of ``argv``; its return value is the status."""
    if not argv:
        print("jobs/_launch.py: error: name a job (train, search, compare)", file=sys.stderr)
        return 2
    job, args = argv[0], argv[1:]
    copy = Path(__file__).resolve().parents[1]
    script = copy / "jobs" / f"{job}.py"
    if job.startswith("_") or not script.is_file():
        print(f"jobs/_launch.py: error: unknown job {job!r}", file=sys.stderr)
        return 2
    args, names = materialise(args, copy)
    project = os.environ.get(PROJECT_ENV)
    if project and (Path(project) / "jobs").is_dir():
        os.chdir(project)
    sys.argv = [str(script), *args]
    entry = runpy.run_path(str(script), run_name="ofa_job")["main"]
    kwargs = {"names": names} if "names" in inspect.signature(entry).parameters else {}
    return int(entry(args, **kwargs) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
