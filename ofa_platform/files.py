"""Writing files so that a reader never sees half of one, and checking paths before work starts.

Every command checks its output paths (and reads its text inputs) through the helpers below
before it starts Ray or MLflow: a path of the wrong kind (a directory where a file is wanted,
a file where a directory is wanted, a file under a regular file, a binary file where text is
read) is then one :class:`~ofa_platform.errors.UserError` line, not a traceback after the work.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ofa_platform.errors import UserError

__all__ = ["atomic_path", "check_output_file", "check_output_dir", "read_user_text",
           "current_umask"]


def current_umask() -> int:
    """The process umask. Reading it means setting it, so it is set straight back."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; rename it over ``path`` when the block
    succeeds, delete it when the block fails. Parent folders are created.

    ``suffix`` matters to writers that pick a format by extension (``torch.export.save``).
    The file gets the mode any other tool would give it (0666 less the umask), not the 0600
    of ``mkstemp``: an output meant for others to read must be readable by them.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if Path(tmp).exists():  # a writer may have replaced it; chmod what will be published
            os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _blocking_file(path: Path) -> Path | None:
    """The first existing ancestor of ``path`` that is not a directory (so nothing can be
    created under it), or None."""
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def _check_output(path: str | os.PathLike[str], what: str, *, directory: bool) -> Path:
    p = Path(path)
    if not str(path).strip():
        raise UserError(f"{what}: empty path")
    if directory and p.exists() and not p.is_dir():
        raise UserError(f"{what} {path}: is a file, expected a directory")
    if not directory and (p.is_dir() or str(path).endswith(os.sep)):
        raise UserError(f"{what} {path}: is a directory, expected a file path")
    blocker = _blocking_file(p)
    if blocker is not None:
        raise UserError(f"{what} {path}: {blocker} is a file, not a directory")
    existing = p if p.is_dir() else next((q for q in p.parents if q.exists()), None)
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path}: {existing} is not writable")
    return p


def check_output_file(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` can be written as a file: it is not a directory and no ancestor is a file.

    An existing file is fine (outputs are replaced atomically, as other tools do).
    """
    return _check_output(path, what, directory=False)


def check_output_dir(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` is, or can be created as, a directory (not an existing file, nor under one)."""
    return _check_output(path, what, directory=True)


def read_user_text(path: str | os.PathLike[str], what: str) -> str:
    """The UTF-8 text of a file the user named; a missing, non-regular or binary file is a
    :class:`UserError` naming it."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{what} {path}: no such file")
    if not p.is_file():
        raise UserError(f"{what} {path}: is a directory, expected a file")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise UserError(f"{what} {path}: cannot read ({exc.strerror})") from None
    if b"\x00" in data:
        raise UserError(f"{what} {path}: is a binary file, expected text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{what} {path}: not UTF-8 text (byte {exc.start})") from None
