"""The ``ofa-platform`` command. Each subcommand is a module of this package exposing
``register(subparsers)``; heavy imports (torch, ray, mlflow) happen inside the commands, so
``ofa-platform --help`` and bad arguments answer fast."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from ofa_platform.errors import ClusterError, UserError

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and status 2, as for every user error
        self.exit(2, f"{self.prog}: error: {message}\n")


_VERBOSE_HELP = "show Ray's and Tune's own output (worker logs, reports, tables)"


def build_parser() -> argparse.ArgumentParser:
    """Every subcommand, each also taking ``--verbose`` (before or after its name)."""
    parser = _Parser(prog="ofa-platform", description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", "-v", action="store_true", help=_VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(sub)
    for command in sub.choices.values():  # SUPPRESS: `--verbose train` is not undone
        taken = command._option_string_actions
        names = [n for n in ("--verbose", "-v") if n not in taken]
        if "--verbose" in names:
            command.add_argument(*names, action="store_true", default=argparse.SUPPRESS,
                                 help=_VERBOSE_HELP)
    return parser


def _user_error_types() -> tuple[type[BaseException], ...]:
    from search_spaces.arch import ArchError
    from search_spaces.errors import CheckpointError
    from search_spaces.spaces import UnknownSpaceError

    return (UserError, ArchError, CheckpointError, UnknownSpaceError)


def _quiet_libraries(verbose: bool) -> None:
    """MLflow's INFO lines ("Creating initial MLflow database tables...") only with
    ``--verbose``; warnings and errors always."""
    import logging
    import os

    if not verbose:
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow loads
        logging.getLogger("mlflow").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit status (2 for bad input, argparse's included, so
    in-process callers and ``sys.exit(main())`` see the same number)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse printed its one line (or --help) already
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    _quiet_libraries(getattr(args, "verbose", False))
    try:
        return int(args.func(args) or 0)
    except _user_error_types() as exc:
        print(f"ofa-platform {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ClusterError as exc:
        print(f"ofa-platform {args.command}: cluster error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"ofa-platform {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
