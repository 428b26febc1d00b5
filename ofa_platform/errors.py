"""Errors a user can fix. The CLI prints them as one line and exits with status 2."""

__all__ = ["UserError", "ClusterError"]


class UserError(Exception):
    """Bad input (a config, a path, an argument): one line, no traceback, exit status 2."""


class ClusterError(Exception):
    """The cluster, not the input, is at fault (no dashboard agent, a port in use, a head that
    does not answer): one line naming the cause, exit status 1, as for a failed job."""
