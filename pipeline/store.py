"""Per-stage HDF5 artifact store: one file per stage/dataset/method, one dataset per image.

Writers work on ``NAME.partial`` and atomically rename it to ``NAME`` on success, so
Snakemake never sees a half-written output. A killed stage resumes from the partial
file: only keys carrying the completion marker (written after the data, followed by a
flush) count as done; anything else is deleted and rewritten.

No pickle is used: arrays are plain HDF5 datasets, metadata are JSON strings/attributes.
"""

from __future__ import annotations

import json
import os
import re
import time
import warnings

import h5py
import numpy as np

# Written last on each dataset; its presence proves data and attrs reached the file.
_COMPLETE = "_complete"
# Root attribute holding the stage parameters as JSON.
_META = "meta"
# Keys become HDF5 names: no '/' (would create groups), no '.'/'..' (path components).
_KEY_RE = re.compile(r"[A-Za-z0-9_.-]+")


def _check_key(key) -> str:
    if not isinstance(key, str):
        raise TypeError(f"artifact key must be a str, got {type(key).__name__}: {key!r}")
    if not _KEY_RE.fullmatch(key) or key in (".", ".."):
        raise ValueError(f"invalid artifact key {key!r}: only [A-Za-z0-9_.-] allowed")
    return key


def _canonical_json(meta: dict) -> str:
    # sort_keys makes the comparison of old/new parameters independent of dict order.
    return json.dumps(meta, sort_keys=True)


def _convert(key: str, array) -> np.ndarray:
    """Float maps -> float16, bool/integer label maps -> uint8 (range-checked)."""
    arr = np.asarray(array)
    if arr.dtype.kind == "f":
        out = arr.astype(np.float16)
        # Silent overflow to inf would corrupt a map without anyone noticing.
        if np.any(np.isfinite(arr) & ~np.isfinite(out)):
            raise ValueError(f"key {key!r}: float values exceed the float16 range")
        return out
    if arr.dtype.kind == "b":
        return arr.astype(np.uint8)
    if arr.dtype.kind in "iu":
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise ValueError(
                f"key {key!r}: integer values must lie in 0..255 to be stored as uint8, "
                f"got range {arr.min()}..{arr.max()}"
            )
        return arr.astype(np.uint8)
    raise TypeError(f"key {key!r}: unsupported array dtype {arr.dtype}")


def _check_attr(key: str, name: str, value):
    if name == _COMPLETE:
        raise ValueError(f"key {key!r}: attribute name {_COMPLETE!r} is reserved")
    if isinstance(value, (bool, int, float, str, np.generic)):
        return value
    if isinstance(value, (np.ndarray, list, tuple)):
        arr = np.asarray(value)
        if arr.dtype.kind in "biuf":
            return arr
    raise TypeError(
        f"key {key!r}: attribute {name!r} must be a number, string or numeric array, "
        f"got {type(value).__name__}"
    )


class ArtifactWriter:
    """Writes one artifact file, resuming from ``path + '.partial'`` if present."""

    def __init__(self, path, meta: dict | None = None):
        self.path = os.fspath(path)
        self.partial = self.path + ".partial"
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._f = None
        self._done: set[str] = set()

        if os.path.exists(self.partial):
            self._resume()
        if self._f is not None and meta is not None:
            stored = self._f.attrs.get(_META)
            if stored is None or _canonical_json(json.loads(stored)) != _canonical_json(meta):
                # Keys computed with other parameters are useless for this run.
                warnings.warn(
                    f"parameters of {self.partial} changed; discarding "
                    f"{len(self._done)} partial keys and starting fresh",
                    stacklevel=2,
                )
                self._f.close()
                os.remove(self.partial)
                self._f = None
                self._done = set()
        if self._f is None:
            self._f = h5py.File(self.partial, "w")
        if meta is not None:
            self.set_meta(meta)

    def _resume(self):
        try:
            f = h5py.File(self.partial, "a")
        except BlockingIOError:
            raise  # locked by a live writer: not corruption, never move it aside
        except OSError as exc:
            self._move_aside(exc)
            return
        try:
            for name in list(f.keys()):
                obj = f.get(name)
                if isinstance(obj, h5py.Dataset) and obj.attrs.get(_COMPLETE, 0) == 1:
                    self._done.add(name)
                else:
                    # Interrupted mid-write (or foreign object): drop it so it is redone.
                    del f[name]
            f.flush()
        except Exception as exc:  # damaged internals that only show up when walking the file
            f.close()
            self._done = set()
            self._move_aside(exc)
            return
        self._f = f

    def _move_aside(self, exc):
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = f"{self.partial}.corrupt-{stamp}"
        n = 1
        while os.path.exists(target):  # two failures within the same second
            target = f"{self.partial}.corrupt-{stamp}-{n}"
            n += 1
        os.replace(self.partial, target)
        warnings.warn(
            f"cannot open partial artifact {self.partial} ({exc}); moved it to {target} "
            f"and starting fresh",
            stacklevel=3,
        )

    def _require_open(self):
        if self._f is None:
            raise RuntimeError(f"writer for {self.path} is closed")

    def done_keys(self) -> set[str]:
        return set(self._done)

    def set_meta(self, meta: dict):
        self._require_open()
        self._f.attrs[_META] = _canonical_json(meta)
        self._f.flush()

    def write(self, key: str, array: np.ndarray, **attrs):
        self._require_open()
        _check_key(key)
        data = _convert(key, array)
        attrs = {name: _check_attr(key, name, value) for name, value in attrs.items()}

        if key in self._f:  # rewriting a key replaces it
            del self._f[key]
        self._done.discard(key)
        try:
            if data.ndim and data.size:
                ds = self._f.create_dataset(
                    key, data=data, chunks=data.shape,
                    compression="gzip", compression_opts=4, shuffle=True,
                )
            else:  # HDF5 cannot chunk scalars or empty shapes
                ds = self._f.create_dataset(key, data=data)
            for name, value in attrs.items():
                ds.attrs[name] = value
            ds.attrs[_COMPLETE] = 1  # last: marks data + attrs as fully written
            self._f.flush()  # so a later kill cannot lose this key
        except BaseException:
            # Don't leave a half-written dataset that a successful finish() would publish.
            if self._f is not None and key in self._f:
                del self._f[key]
            raise
        self._done.add(key)

    def close(self):
        """Close, keeping the .partial file for a later resume."""
        if self._f is not None:
            self._f.close()
            self._f = None

    def finish(self):
        """Close and atomically publish the artifact under its final name."""
        self._require_open()
        self.close()
        with open(self.partial, "rb") as fh:
            os.fsync(fh.fileno())  # data on disk before the rename makes it visible
        os.replace(self.partial, self.path)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.finish()
        else:
            self.close()
        return False


class ArtifactReader:
    """Read-only view of a finished artifact; safe to share with forked workers."""

    def __init__(self, path):
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"artifact not found: {self.path}")
        self._f = None
        self._pid = None
        self._keys = None
        self._keyset = None

    def _file(self) -> h5py.File:
        # HDF5 handles must not be shared across fork: reopen in each process.
        if self._f is None or self._pid != os.getpid():
            self._f = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._f

    def keys(self) -> list[str]:
        if self._keys is None:  # finished artifacts are immutable
            self._keys = sorted(self._file().keys())
        return list(self._keys)

    def __len__(self) -> int:
        return len(self.keys())

    def __contains__(self, key) -> bool:
        if self._keyset is None:  # stages test membership once per image: keep it O(1)
            self._keyset = set(self.keys())
        return key in self._keyset

    def _dataset(self, key) -> h5py.Dataset:
        if not isinstance(key, str) or key not in self._file():
            raise KeyError(f"key {key!r} not in artifact {self.path} (written for another split or image list?)")
        return self._file()[key]

    def __getitem__(self, key) -> np.ndarray:
        return self._dataset(key)[()]

    def attrs(self, key) -> dict:
        return {k: v for k, v in self._dataset(key).attrs.items() if k != _COMPLETE}

    @property
    def meta(self) -> dict:
        raw = self._file().attrs.get(_META)
        return json.loads(raw) if raw is not None else {}

    def close(self):
        # Only close a handle this process opened; a forked copy is just dropped.
        if self._f is not None and self._pid == os.getpid():
            self._f.close()
        self._f = None

    def __getstate__(self):
        # Lets spawn-based DataLoader workers receive the reader; they reopen lazily.
        return {**self.__dict__, "_f": None, "_pid": None}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def merge_artifacts(paths, out) -> int:
    """Copy every dataset of the finished artifacts `paths` into one artifact `out` (published
    atomically like a writer's). The datasets are copied as stored, attributes included, so the
    result holds exactly what a single run over all their images writes. The files must have been
    written with the same parameters (root `meta`) and hold disjoint keys. Returns the key count."""
    out = os.fspath(out)
    partial = out + ".partial"
    paths = [os.fspath(p) for p in paths]
    seen: dict[str, str] = {}
    try:
        with h5py.File(partial, "w") as dst:
            for path in paths:
                _copy_shard(path, dst, seen, first=paths[0])
    except BaseException:
        os.remove(partial)   # a merge is cheap to redo; half of one is of no use
        raise
    with open(partial, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(partial, out)
    return len(seen)


def _copy_shard(path: str, dst: h5py.File, seen: dict[str, str], first: str) -> None:
    with h5py.File(path, "r") as src:
        stored = src.attrs.get(_META)
        if path == first and stored is not None:
            dst.attrs[_META] = stored
        elif stored != dst.attrs.get(_META):
            raise ValueError(f"{path} was written with other parameters than {first}: "
                             f"{stored} vs {dst.attrs.get(_META)}")
        for key in src:
            if key in seen:
                raise ValueError(f"key {key!r} is in both {seen[key]} and {path}")
            if src[key].attrs.get(_COMPLETE, 0) != 1:
                raise ValueError(f"key {key!r} of {path} is incomplete (not a finished artifact?)")
            src.copy(src[key], dst, name=key)
            seen[key] = path
