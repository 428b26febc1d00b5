"""Read a small PyTorch-saved file of tensors into numpy arrays, without importing torch.

The search with a published predictor needs its four weight matrices and nothing else from
torch, yet importing torch costs seconds of a sub-second search process (issue 17). This reader
understands both of torch's formats: the legacy one (OFA's published ``acc_predictor.pth``:
pickles followed by raw storages) and the zip one (``torch.save`` since 1.6, e.g. our own
predictor files). Like ``torch.load(weights_only=True)`` it only rebuilds containers and
tensors: the unpickler refuses every other global, so reading a file cannot run its code.
Anything it does not understand raises :class:`UnsupportedFile`, and the caller falls back to
``torch.load``.
"""

from __future__ import annotations

import collections
import pickle
import zipfile
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = ["UnsupportedFile", "read_tensor_file"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class UnsupportedFile(Exception):
    """The file is not a plain container of tensors this reader knows."""


class _StorageType:
    def __init__(self, name: str) -> None:
        self.dtype = np.dtype(_DTYPES[name])


def _rebuild_tensor(storage: np.ndarray, offset: int, size: tuple[int, ...],
                    stride: tuple[int, ...], *_: Any) -> np.ndarray:
    """torch's ``_rebuild_tensor_v2`` on a numpy storage: a strided *view* (a legacy file's
    storages are filled after the object is unpickled; :func:`_materialise` copies)."""
    item = storage.dtype.itemsize
    base = storage[offset:]
    if not size:
        return base[:1].reshape(())
    return np.lib.stride_tricks.as_strided(base, shape=tuple(size),
                                           strides=tuple(s * item for s in stride))


class _Unpickler(pickle.Unpickler):
    """Only containers, tensors and storages; storages come from ``load_storage``."""

    def __init__(self, fh: IO[bytes], load_storage: Any) -> None:
        super().__init__(fh)
        self._load_storage = load_storage

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch" and name in _DTYPES:
            return _StorageType(name)
        raise UnsupportedFile(f"refuses global {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise UnsupportedFile(f"unknown persistent id {pid!r:.60}")
        _, stype, key, _location, numel = pid[:5]
        if not isinstance(stype, _StorageType):
            raise UnsupportedFile("untyped storage")
        return self._load_storage(str(key), stype.dtype, int(numel))


def _read_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise UnsupportedFile("zip without data.pkl")
        prefix = pkl[: -len("data.pkl")]

        def storage(key: str, dtype: np.dtype, numel: int) -> np.ndarray:
            raw = zf.read(f"{prefix}data/{key}")
            return np.frombuffer(raw, dtype=dtype, count=numel)

        with zf.open(pkl) as fh:
            return _Unpickler(fh, storage).load()


def _read_legacy(path: Path) -> Any:
    """Pickled magic, protocol and system info, the object (storages by key), the list of
    storage keys, then each storage as an int64 element count and its raw bytes."""
    with path.open("rb") as fh:
        plain = _Unpickler(fh, None)
        if plain.load() != _LEGACY_MAGIC:
            raise UnsupportedFile("not a torch file")
        plain.load()  # protocol version
        info = plain.load()
        if not (isinstance(info, dict) and info.get("little_endian", True)):
            raise UnsupportedFile("big-endian file")
        wanted: dict[str, tuple[np.dtype, int]] = {}
        arrays: dict[str, np.ndarray] = {}

        def storage(key: str, dtype: np.dtype, numel: int) -> np.ndarray:
            if key not in arrays:
                wanted[key] = (dtype, numel)
                arrays[key] = np.empty(numel, dtype=dtype)
            return arrays[key]

        obj = _Unpickler(fh, storage).load()
        for key in _Unpickler(fh, None).load():
            dtype, _ = wanted[str(key)]
            count = int(np.frombuffer(fh.read(8), dtype="<i8")[0])
            data = np.frombuffer(fh.read(count * dtype.itemsize), dtype=dtype, count=count)
            arrays[str(key)][:count] = data
    return obj


def _materialise(obj: Any) -> Any:
    """Every array view replaced by its own contiguous, writable copy."""
    if isinstance(obj, np.ndarray):
        return np.array(obj, copy=True, order="C")
    if isinstance(obj, dict):
        out = {k: _materialise(v) for k, v in obj.items()}
        return collections.OrderedDict(out) if isinstance(obj, collections.OrderedDict) else out
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise(v) for v in obj)
    return obj


def read_tensor_file(path: str | Path) -> Any:
    """The object saved in ``path`` with every tensor as a numpy array."""
    path = Path(path)
    try:
        return _materialise(_read_zip(path) if zipfile.is_zipfile(path) else _read_legacy(path))
    except UnsupportedFile:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, KeyError, IndexError, TypeError,
            AttributeError, zipfile.BadZipFile, OSError) as exc:
        raise UnsupportedFile(f"{type(exc).__name__}: {exc}") from None
