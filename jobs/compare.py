"""Ray Job entrypoint: the method comparison (table + HTML report logged to MLflow).

Usage: ``python jobs/compare.py --experiment NAME [--out report.html] [--json]``, normally via
``ofa-platform submit compare --experiment NAME``. The report lands in the job's working
directory and, more usefully, in MLflow as an artifact of the comparison run.
"""

from __future__ import annotations

import sys

from ofa_platform.cli import main as cli_main

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """``ofa-platform compare`` with ``argv``."""
    return cli_main(["compare", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
