"""Errors of the model layer, in a module that imports nothing heavy.

The CLI catches these on every failure to print them as one line; keeping them here means
that catching one never imports torch (``checkpoints.py`` does), so a bad argument is
reported in the time Python takes to start, not after a 2-3 s torch import.
"""

from __future__ import annotations

__all__ = ["CheckpointError"]


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used (missing, unreadable, another space or layout).

    The model layer names its own error instead of the platform's ``UserError`` so that it
    imports nothing from ``ofa_platform`` (as timm's layers import nothing from its models);
    the CLI prints it as one line with exit status 2, like every user error.
    """
