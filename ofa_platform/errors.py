"""Errors a user can fix. The CLI prints them as one line and exits with status 2."""

__all__ = ["UserError"]


class UserError(Exception):
    """Bad input (a config, a path, an argument): one line, no traceback, exit status 2."""
