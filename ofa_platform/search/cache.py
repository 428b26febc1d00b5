"""Persistent memos: measured latencies and evaluated accuracies survive between searches.

A memo is a JSON object ``key -> number`` rewritten whole and renamed into place, so a crashed
search never leaves half a file and a second search finds everything the first one paid for.
Accuracy caches are one file per supernet (the hash of its spec and weights, not of its file,
which also records the run that trained it) and evaluation setup, because the same arch has a
different accuracy in other weights.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ofa_platform.errors import UserError
from ofa_platform.files import atomic_path

__all__ = ["JsonMemo", "atomic_write_text", "accuracy_cache_path"]


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temp file beside ``path`` and rename it into place."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


class JsonMemo:
    """A persistent ``str -> float`` store."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._data: dict[str, float] = {}
        if self.path.is_file():
            try:
                raw = json.loads(self.path.read_text())
                self._data = {str(k): float(v) for k, v in raw.items()}
            except (ValueError, AttributeError, TypeError):
                raise UserError(f"memo {self.path} is not a JSON object of numbers") from None

    def get(self, key: str) -> float | None:
        return self._data.get(key)

    def put_many(self, items: Mapping[str, float]) -> None:
        if not items:
            return
        self._data.update({k: float(v) for k, v in items.items()})
        atomic_write_text(self.path, json.dumps(self._data, indent=0, sort_keys=True))

    def __contains__(self, key: str) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)


def accuracy_cache_path(cache_dir: str | Path, supernet: Any, setup: str) -> Path:
    """Where accuracies of ``supernet``'s weights under an evaluation ``setup`` (data,
    subset, batch) are kept."""
    from search_spaces.checkpoints import weights_fingerprint

    tag = hashlib.sha256(setup.encode()).hexdigest()[:8]
    return Path(cache_dir) / f"acc-{weights_fingerprint(supernet)}-{tag}.json"
