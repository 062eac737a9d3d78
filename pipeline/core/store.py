"""Per-stage HDF5 artifact store: one file per stage/dataset/method, one dataset per image.

Writers work on ``NAME.partial`` and atomically rename it to ``NAME`` on success, so
Snakemake never sees a half-written output. A killed stage resumes from the partial
file: only keys carrying the completion marker count as done; anything else is deleted
and rewritten. Per key, the data and a checksum of data + attributes are flushed first and
the marker after them, so a failed write (disk full, I/O error) leaves no marker.

Provenance: a partial records what it was computed from (the stage's parameters in `meta`,
and in `provenance` the identity of its inputs: checkpoint hashes, input artifacts' digests,
the split list). It is resumed only when both match exactly; otherwise it is moved aside
with one log line that says why. On resume every done key is checked against its checksum.
A finished artifact carries a `digest` of its keys' checksums and its meta: the content
identity later stages record as their input's provenance, and the name of the stage that wrote it.

Every read of a finished artifact is verified: the first read of a key in a process checks it
against the file's table of checksums (written by finish(): per key a hash of its compressed chunk
as stored, and of its attributes), or against the checksum stored with the key (a file without the
table, or a chunk the table does not match: the key's own checksum decides); a mismatch stops the
reader with an ArtifactCorrupt naming the file, the key and the stage to rerun.

Publishing: inside a stage run (`hold_receipts`), finish() publishes the artifact as a hard link
and keeps the `.partial` as its receipt until the stage ends well (`release_receipts`). A stage
killed after publishing but before its end has its output deleted by Snakemake as a failed job's;
the receipt is then the partial of a run with every key done, and the rerun resumes all of them.

No pickle is used: arrays are plain HDF5 datasets, metadata are JSON strings/attributes.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path

import h5py
import numpy as np

# Written last on each dataset; its presence proves data and attrs reached the file.
_COMPLETE = "_complete"
# Written before the marker: blake2b of the stored data, its shape/dtype and attributes.
_CHECKSUM = "_checksum"
_RESERVED = (_COMPLETE, _CHECKSUM)
# Root attribute holding the stage parameters as JSON.
_META = "meta"
# Root attribute of a partial: identity of the inputs it was computed from (JSON).
_PROVENANCE = "provenance"
# Root attribute of a finished artifact: content identity (keys' checksums + meta).
_DIGEST = "digest"
# What new checksums are computed with (see checksum()).
CHECKSUM_ALGORITHM = "sha256"
# Free bytes a write needs beyond twice its data (HDF5 metadata, the flush of the cache).
SPACE_MARGIN = 1 << 20
# Seconds to wait for the lock of a partial (see ArtifactWriter._open_locked).
LOCK_WAIT = 30
# Files whose write failed: never touched again in this process (see ArtifactWriter.write).
_ABANDONED: list = []
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


class ArtifactWriteError(OSError):
    """Writing an artifact failed (disk full, I/O error); no key it holds is marked complete unless
    its data reached the file."""


class ArtifactCorrupt(ValueError):
    """A finished artifact's key no longer matches the checksum its writer stored (or cannot be read)."""


class _TableCorrupt(ArtifactCorrupt):
    """The table of a finished artifact's checksums cannot be read."""


# Publish receipts (see the module's docstring): held only inside a stage run.
_RECEIPTS: dict = {"hold": False, "paths": []}
# Seconds spent verifying reads in this process (benchmarks/bench_verify.py reports the share).
VERIFY_TIME = {"seconds": 0.0, "keys": 0}
# Root attribute: the stage module that wrote the artifact (named in a corrupt read's message).
_STAGE = "stage"
# Root attribute of a finished artifact: {key: checksum} as JSON bytes, so a reader verifies a key
# without reading its reserved attributes (HDF5 attribute reads cost more than hashing a map).
_TABLE = "checksums"
# HDF5 file format of new files: 1.8's, whose dense attribute storage holds a table of any size.
_LIBVER = ("v108", "v108")


def running_stage() -> str | None:
    """The stage module this process runs (`python -m stages.NAME`), or None outside a stage."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    name = getattr(spec, "name", None) or ""
    return name.split(".", 1)[1] if name.startswith("stages.") else None


def hold_receipts(hold: bool = True) -> None:
    """From now on (until called with False), keep each published artifact's `.partial` (a hard link
    to it) until release_receipts()."""
    _RECEIPTS["hold"] = hold


def release_receipts() -> None:
    """The stage ended well: drop the receipts of what it published."""
    for partial, path in _RECEIPTS["paths"]:
        try:
            if path is None or os.path.samefile(partial, path):
                os.unlink(partial)
        except OSError:   # already gone (or the output moved): nothing to drop
            pass
    _RECEIPTS["paths"].clear()


def drop_when_done(partial) -> None:
    """A resumable state whose output is published (a training's `.partial`): removed now, or inside a
    stage run when the stage ends well, so a kill before then resumes from it instead of starting over."""
    if _RECEIPTS["hold"]:
        _RECEIPTS["paths"].append((os.fspath(partial), None))
    else:
        Path(partial).unlink(missing_ok=True)


def log(message: str) -> None:
    """One line on stderr (the stage's log): resume decisions that change what gets computed."""
    print(f"store: {message}", file=sys.stderr, flush=True)


def _attr_value(value):
    # Attributes come back from HDF5 as numpy types: compare them as plain JSON values.
    return value if isinstance(value, str) else np.asarray(value).tolist()


def checksum(data: np.ndarray, attrs: dict, algorithm: str = CHECKSUM_ALGORITHM) -> str:
    """Hash of an array as stored (dtype, shape, bytes) and its attributes: "sha256:" and 128 bits of
    SHA-256 (hardware-accelerated on current CPUs, which makes verifying every read cheap), or the
    bare hex of blake2b-128 that artifacts written before the prefix carry."""
    h = hashlib.sha256() if algorithm == "sha256" else hashlib.blake2b(digest_size=16)
    h.update(f"{data.dtype.str}{data.shape}".encode())
    flat = np.ascontiguousarray(data).reshape(-1)
    h.update(flat.view(np.uint8) if flat.size else b"")   # the bytes, without copying them
    h.update(json.dumps({k: _attr_value(v) for k, v in attrs.items()}, sort_keys=True).encode())
    return f"sha256:{h.hexdigest()[:32]}" if algorithm == "sha256" else h.hexdigest()


def _algorithm(stored: str) -> str:
    return "sha256" if stored.startswith("sha256:") else "blake2b"


def _digest(meta_json, sums: dict[str, str]) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps({"meta": meta_json, "keys": sorted(sums.items())}).encode())
    return h.hexdigest()


def _aside_name(path: str, why: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = f"{path}.{why}-{stamp}"
    n = 1
    while os.path.exists(target):  # two in the same second
        target = f"{path}.{why}-{stamp}-{n}"
        n += 1
    return target


def move_aside(path: str, why: str) -> str:
    """Rename `path` to `path.<why>-<time>` (kept for inspection, never reused); returns the name."""
    target = _aside_name(path, why)
    os.replace(path, target)
    return target


def differences(stored: dict, wanted: dict, prefix: str = "") -> list[str]:
    """The top-level keys whose values differ, as 'key (old -> new)' for the log line."""
    out = []
    for k in sorted(set(stored) | set(wanted)):
        if stored.get(k) != wanted.get(k):
            old, new = (json.dumps(d.get(k, "absent"), sort_keys=True)[:60] for d in (stored, wanted))
            out.append(f"{prefix}{k} ({old} -> {new})")
    return out


def _check_attr(key: str, name: str, value):
    if name in _RESERVED:
        raise ValueError(f"key {key!r}: attribute name {name!r} is reserved")
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
    """Writes one artifact file, resuming from ``path + '.partial'`` if it was computed from the
    same `meta` (the stage's parameters) and `provenance` (its inputs' identities)."""

    def __init__(self, path, meta: dict | None = None, provenance: dict | None = None):
        self.path = os.fspath(path)
        self.partial = self.path + ".partial"
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._f = None
        self._failed = False
        self._done: set[str] = set()
        self._sums: dict[str, str] = {}

        if os.path.exists(self.partial) and os.path.exists(self.path) and os.path.samefile(self.partial, self.path):
            os.unlink(self.partial)   # the receipt of the published file, which this run replaces
        if os.path.exists(self.partial):
            self._resume(meta, provenance)
        if self._f is None:
            self._f = self._create(meta, provenance)

    def _create(self, meta, provenance) -> h5py.File:
        """A fresh partial holding the parameters and provenance; a failure (disk full) removes it,
        so no empty partial is left for a rerun to misread."""
        f = None
        try:
            f = h5py.File(self.partial, "w", libver=_LIBVER)
            if meta is not None:
                f.attrs[_META] = _canonical_json(meta)
            f.attrs[_PROVENANCE] = _canonical_json(provenance or {})
            stage = running_stage()
            if stage:
                f.attrs[_STAGE] = stage
            f.flush()
            return f
        except OSError as exc:
            if f is not None:
                try:
                    f.close()
                except Exception:  # noqa: BLE001  the file is removed in any case
                    pass
            try:
                os.remove(self.partial)
            except OSError:
                pass
            full = exc.errno == errno.ENOSPC or "No space left" in str(exc) or "errno = 28" in str(exc)
            what = "disk full" if full else "I/O error"
            raise ArtifactWriteError(exc.errno or errno.EIO,
                                     f"{what}: cannot create {self.partial} ({exc}); nothing was computed yet: "
                                     f"free space or fix the disk, then rerun") from exc

    def _open_locked(self) -> h5py.File:
        """Open the partial for appending. Its lock may still be held for a few seconds by the
        loader workers of a killed run (they inherit the handle, and notice their parent's death
        within 5 s): wait for them; a lock held longer belongs to a live writer."""
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                return h5py.File(self.partial, "a", libver=_LIBVER)
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise BlockingIOError(errno.EAGAIN, f"{self.partial} is locked by another process (is the "
                                          f"stage still running elsewhere?); waited {LOCK_WAIT} s") from None
                time.sleep(0.5)

    def _resume(self, meta, provenance):
        if os.path.getsize(self.partial) == 0:
            self._set_aside("corrupt", "is empty (its creation was cut short: a full disk or a kill)")
            return
        try:
            f = self._open_locked()
        except BlockingIOError:
            raise  # locked by a live writer: not corruption, never move it aside
        except OSError as exc:
            self._salvage(meta, provenance, f"cannot be opened ({exc})")
            return
        try:
            stale = self._stale_reason(f, meta, provenance)
            if stale:
                f.close()
                self._set_aside("stale", stale)
                return
            bad = self._load_done_keys(f)
            f.flush()
        except Exception as exc:  # damaged internals (a disk that filled up, say) show up when walking the file
            try:
                f.close()
            except Exception:  # noqa: BLE001  it is moved aside in any case
                pass
            self._done, self._sums = set(), {}
            self._salvage(meta, provenance, f"cannot be read ({exc})")
            return
        if bad:
            log(f"{self.partial}: {len(bad)} completed keys failed their checksum and are recomputed, "
                f"e.g. {bad[0]!r}")
        self._f = f

    def _salvage(self, meta, provenance, reason: str):
        """Move a damaged partial aside and copy the keys that still verify into a fresh one
        (read-only: writing into a damaged HDF5 file can crash the library)."""
        target = move_aside(self.partial, "corrupt")
        try:
            with h5py.File(target, "r") as old:
                if self._stale_reason(old, meta, provenance) is None:
                    self._f = self._create(meta, provenance)
                    for name in old:
                        try:
                            total = check_dataset(old[name], name, target)
                        except Exception:  # noqa: BLE001  incomplete, damaged or foreign: recomputed
                            continue
                        old.copy(old[name], self._f, name=name)
                        self._done.add(name)
                        self._sums[name] = total
                    self._f.flush()
        except Exception:  # noqa: BLE001  unreadable as a whole: everything is recomputed
            pass
        log(f"partial artifact {self.partial} {reason}; moved it to {target}; recovered the {len(self._done)} "
            "keys that verify, computing the rest afresh")

    @staticmethod
    def _stale_reason(f: h5py.File, meta, provenance) -> str | None:
        stored_meta = f.attrs.get(_META)
        stored_prov = f.attrs.get(_PROVENANCE)
        if stored_prov is None:
            if stored_meta is None and not len(f.keys()):
                return "holds nothing (its creation was cut short: a full disk or a kill)"
            return "it records no provenance (written by an older version)"
        old_meta = json.loads(stored_meta) if stored_meta is not None else {}
        old_prov = json.loads(stored_prov)
        changed = differences(old_meta, meta or {}, "parameter ") + \
            differences(old_prov, provenance or {}, "input ")
        return f"changed since it was written: {'; '.join(changed)}" if changed else None

    def _load_done_keys(self, f: h5py.File) -> list[str]:
        """Collect the complete keys whose data match their checksum; delete everything else."""
        bad = []
        for name in list(f.keys()):
            obj = f.get(name)
            if isinstance(obj, h5py.Dataset):
                try:
                    self._sums[name] = check_dataset(obj, name, self.partial)
                    self._done.add(name)
                    continue
                except ValueError:
                    if obj.attrs.get(_COMPLETE, 0) == 1:
                        bad.append(name)   # marked complete, but its data do not verify
            # interrupted mid-write, bad data or a foreign object: drop it so it is redone
            del f[name]
        return bad

    def _set_aside(self, why: str, reason: str):
        target = move_aside(self.partial, why)
        log(f"partial artifact {self.partial} {reason}; moved it to {target} and starting fresh")

    def _require_open(self):
        if self._failed:
            raise RuntimeError(f"writer for {self.path} had a failed write; rerun the stage to resume")
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
        self._sums.pop(key, None)
        self._require_space(key, data)
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
            ds.attrs[_CHECKSUM] = total = checksum(data, attrs)
            self._f.flush()  # data and checksum on disk before the marker that vouches for them
            ds.attrs[_COMPLETE] = 1
            self._f.flush()  # so a later kill cannot lose this key
        except Exception as exc:
            # After a failed write HDF5's state is undefined (deleting the key or closing the file
            # can crash it): leave the file alone; the next run verifies and recovers its keys.
            ds = None  # noqa: F841  (no handle into the damaged file outlives this frame)
            self._failed = True
            raise ArtifactWriteError(
                f"writing key {key!r} to {self.partial} failed ({exc}); the key is not marked complete. "
                f"The {len(self._done)} keys done are kept: free space or fix the disk, then rerun") from exc
        except BaseException:  # interrupted: don't leave a half-written dataset for finish() to publish
            self._discard(key)
            raise
        self._done.add(key)
        self._sums[key] = total

    def _require_space(self, key: str, data: np.ndarray):
        """Refuse a write the disk cannot hold before HDF5 starts it: a write that fails inside
        HDF5 leaves the file damaged (the next run recovers what verifies, but not more)."""
        stat = os.statvfs(os.path.dirname(os.path.abspath(self.partial)))
        free, needed = stat.f_bavail * stat.f_frsize, 2 * data.nbytes + SPACE_MARGIN
        if free < needed:
            raise ArtifactWriteError(errno.ENOSPC, f"disk full: {free} bytes free for {self.partial}, key {key!r} "
                                     f"needs up to {needed}; the {len(self._done)} keys done are kept: free space, "
                                     "then rerun")

    def _discard(self, key: str):
        try:
            if self._f is not None and key in self._f:
                del self._f[key]
        except Exception:  # noqa: BLE001  the file may be unwritable now; resume re-checks the key
            pass

    def close(self):
        """Close, keeping the .partial file for a later resume."""
        if self._failed:   # see write(): the handle is left to the process's end
            _ABANDONED.append(self._f)
            self._f = None
        if self._f is not None:
            f, self._f = self._f, None
            try:
                f.close()
            except Exception as exc:  # noqa: BLE001  e.g. disk full: resume re-checks every key
                log(f"closing {self.partial} failed ({exc}); the next run re-checks its keys")

    def finish(self):
        """Record the content digest, close and atomically publish the artifact."""
        self._require_open()
        _write_table(self._f, self._sums)
        self._f.attrs[_DIGEST] = _digest(self._f.attrs.get(_META), self._sums)
        self._f.flush()
        self._f.close()
        self._f = None
        with open(self.partial, "rb") as fh:
            os.fsync(fh.fileno())  # data on disk before the rename makes it visible
        if _RECEIPTS["hold"] and self._publish_linked():
            return
        os.replace(self.partial, self.path)

    def _publish_linked(self) -> bool:
        """Publish as a hard link (atomic: linked to a temporary name, renamed), keeping the partial
        as the receipt; False where the file system has no hard links."""
        tmp = _aside_name(self.path, "publishing")
        try:
            os.link(self.partial, tmp)
        except OSError:
            return False
        os.replace(tmp, self.path)
        _RECEIPTS["paths"].append((self.partial, self.path))
        return True

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
        self._verified: set[str] = set()
        self._attrs: dict[str, dict] = {}   # of the verified keys
        self._table = None   # {key: checksum} of a finished artifact (None: not read yet)

    def _file(self) -> h5py.File:
        # HDF5 handles must not be shared across fork: reopen in each process.
        if self._f is None or self._pid != os.getpid():
            self._f = open_h5(self.path)
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
        ds = self._dataset(key)
        data = ds[()]
        if key not in self._verified:
            self._verify_read(ds, key, data)
        return data

    def attrs(self, key) -> dict:
        if key in self._attrs:   # read when the key was verified
            return dict(self._attrs[key])
        ds = self._dataset(key)
        if key not in self._verified:
            self._verify_read(ds, key, None)
        return {k: v for k, v in ds.attrs.items() if k not in _RESERVED}

    def _checksums(self) -> dict:
        if self._table is None:
            self._table = _read_table(self._file(), self.path)
        return self._table

    def _verify_read(self, ds: h5py.Dataset, key: str, data) -> None:
        """Check a key's data and attributes against its stored checksum, once per process: the one
        in the file's table (written when it was finished), else the one stored with the key."""
        start = time.perf_counter()
        try:
            stored = self._checksums().get(key)
            if stored is None:   # no table (a file written before it, or merged by another tool)
                attrs = dict(ds.attrs.items())
                check_dataset(ds, key, self.path, data=data, attrs=attrs)
                attrs = {k: v for k, v in attrs.items() if k not in _RESERVED}
            else:
                attrs = _user_attrs(ds)
                _check_against(ds, key, self.path, stored, data, attrs)
        except ArtifactCorrupt as exc:
            if isinstance(exc, _TableCorrupt):
                raise ArtifactCorrupt(f"{exc}: the file is corrupt; {_rerun(self.path, self._stage())}") from exc
            # the key's own checksum decides (its chunk may have been rewritten with the same data, by a
            # repack say); failing, the message names the stage that wrote the file
            attrs = dict(ds.attrs.items())
            check_dataset(ds, key, self.path, data=data, attrs=attrs, stage=self._stage())
            attrs = {k: v for k, v in attrs.items() if k not in _RESERVED}
        finally:
            VERIFY_TIME["seconds"] += time.perf_counter() - start
            VERIFY_TIME["keys"] += 1
        if self._pid == os.getpid():
            self._verified.add(key)
            self._attrs[key] = attrs

    def _stage(self) -> str | None:
        stage = self._file().attrs.get(_STAGE)
        return str(stage) if stage is not None else None

    @property
    def meta(self) -> dict:
        raw = self._file().attrs.get(_META)
        return json.loads(raw) if raw is not None else {}

    @property
    def digest(self) -> str:
        """Content identity: the writer's digest of keys' checksums and meta; for a file written
        without one (an older version, another tool), a hash of the file's bytes."""
        stored = self._file().attrs.get(_DIGEST)
        return str(stored) if stored is not None else file_digest(self.path)

    def verify(self) -> None:
        """Raise naming the first key whose data no longer match the checksum stored with it."""
        for key in self.keys():
            check_dataset(self._dataset(key), key, self.path)

    def close(self):
        # Only close a handle this process opened; a forked copy is just dropped.
        if self._f is not None and self._pid == os.getpid():
            self._f.close()
        self._f = None

    def __getstate__(self):
        # Lets spawn-based DataLoader workers receive the reader; they reopen lazily (and verify).
        return {**self.__dict__, "_f": None, "_pid": None, "_verified": set(), "_attrs": {}, "_table": None}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def open_h5(path) -> h5py.File:
    """Open a finished artifact read-only; a damaged one is an error that names it."""
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise OSError(f"cannot open HDF5 artifact {path} ({exc}): truncated or corrupt? delete it "
                      "and rerun the stage that wrote it") from exc


def file_digest(path) -> str:
    """blake2b of a file's bytes: the content identity of a checkpoint."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _rerun(path: str, stage: str | None) -> str:
    who = f"stage {stage}" if stage else "the stage that wrote it"
    hint = f" (snakemake --forcerun {stage} ...)" if stage else ""
    return f"delete {path} and rerun {who}{hint}"


def check_dataset(ds: h5py.Dataset, key: str, path: str, data=None, stage: str | None = None,
                  attrs: dict | None = None) -> str:
    """The dataset's checksum, after checking it is complete and its data (`data`, `attrs`: all its
    attributes, when already read) match the stored one. `stage` (the writer) is named in the error."""
    attrs = dict(ds.attrs.items()) if attrs is None else attrs
    if attrs.get(_COMPLETE, 0) != 1:
        raise ArtifactCorrupt(f"key {key!r} of {path} is incomplete (not a finished artifact?): {_rerun(path, stage)}")
    stored = attrs.get(_CHECKSUM)
    if stored is None:
        raise ArtifactCorrupt(f"key {key!r} of {path} has no checksum (written by an older version): "
                              f"{_rerun(path, stage)}")
    try:
        if data is None:
            data = ds[()]
        actual = checksum(data, {k: v for k, v in attrs.items() if k not in _RESERVED}, _algorithm(str(stored)))
    except Exception as exc:  # a damaged chunk may fail to decompress at all
        raise ArtifactCorrupt(f"key {key!r} of {path} cannot be read ({exc}): the file is corrupt; "
                              f"{_rerun(path, stage)}") from exc
    if actual != stored:
        raise ArtifactCorrupt(f"key {key!r} of {path} fails its checksum (stored {stored}, data give {actual}): "
                              f"the file is corrupt; {_rerun(path, stage)}")
    return str(stored)


def _chunk_checksum(ds: h5py.Dataset, attrs: dict) -> str | None:
    """Hash of a key as stored on disk: its one compressed chunk (a fraction of the data's bytes),
    its shape and dtype and its attributes; None for a dataset that is not one chunk."""
    if ds.chunks is None or tuple(ds.chunks) != ds.shape:
        return None
    mask, raw = ds.id.read_direct_chunk((0,) * ds.ndim)
    h = hashlib.sha256()
    h.update(f"{ds.dtype.str}{ds.shape}{mask}".encode())
    h.update(raw)
    h.update(json.dumps({k: _attr_value(v) for k, v in attrs.items()}, sort_keys=True).encode())
    return f"chunk-sha256:{h.hexdigest()[:32]}"


def _write_table(f: h5py.File, sums: dict[str, str]) -> None:
    """The table a reader verifies against: per key the checksum of its stored chunk (the key's own
    checksum for a key that is not one chunk)."""
    try:
        table = {}
        for key, total in sums.items():
            ds = f[key]
            table[key] = _chunk_checksum(ds, _user_attrs(ds)) or total
        f.attrs[_TABLE] = np.frombuffer(json.dumps(table, sort_keys=True).encode(), np.uint8)
    except Exception:  # noqa: BLE001  a file of the 'earliest' format (a partial resumed) cannot hold a
        pass           # large attribute: its readers verify against each key's own checksum instead


def _read_table(f: h5py.File, path: str) -> dict[str, str]:
    """The finished artifact's {key: checksum}; {} when it has none."""
    raw = f.attrs.get(_TABLE)
    if raw is None:
        return {}
    try:
        return json.loads(np.asarray(raw, np.uint8).tobytes().decode())
    except Exception as exc:  # noqa: BLE001  a damaged table is a damaged file
        raise _TableCorrupt(f"the checksum table of {path} cannot be read ({exc})") from exc


def _user_attrs(ds: h5py.Dataset) -> dict:
    """A dataset's attributes but the reserved ones, found by index (iterating the names through
    h5py costs more than reading the values)."""
    oid = ds.id
    count = h5py.h5a.get_num_attrs(oid)
    if count <= len(_RESERVED):   # a key of the table carries both reserved attributes: no other
        return {}
    names = [h5py.h5a.open(oid, index=i).name for i in range(count)]
    names = [n.decode() if isinstance(n, bytes) else n for n in names]
    return {n: ds.attrs[n] for n in sorted(names) if n not in _RESERVED}


def _check_against(ds: h5py.Dataset, key: str, path: str, stored: str, data, attrs: dict) -> None:
    try:
        if stored.startswith("chunk-"):
            actual = _chunk_checksum(ds, attrs)
        else:
            actual = checksum(ds[()] if data is None else data, attrs, _algorithm(stored))
    except Exception as exc:  # a damaged chunk may fail to decompress at all
        raise ArtifactCorrupt(f"key {key!r} of {path} cannot be read ({exc})") from exc
    if actual != stored:
        raise ArtifactCorrupt(f"key {key!r} of {path} fails its checksum (its table gives {stored}, "
                              f"the file {actual})")


def merge_artifacts(paths, out) -> int:
    """Copy every dataset of the finished artifacts `paths` into one artifact `out` (published
    atomically like a writer's). The datasets are copied as stored, attributes included, so the
    result holds exactly what a single run over all their images writes. The files must have been
    written with the same parameters (root `meta`) and hold disjoint keys, and each key's data must
    match the checksum its writer stored (a corrupted chunk is never published). Returns the key count."""
    out = os.fspath(out)
    partial = out + ".partial"
    paths = [os.fspath(p) for p in paths]
    seen: dict[str, str] = {}
    sums: dict[str, str] = {}
    try:
        with h5py.File(partial, "w", libver=_LIBVER) as dst:
            for path in paths:
                _copy_shard(path, dst, seen, sums, first=paths[0])
            _write_table(dst, sums)
            dst.attrs[_DIGEST] = _digest(dst.attrs.get(_META), sums)
    except BaseException:
        os.remove(partial)   # a merge is cheap to redo; half of one is of no use
        raise
    with open(partial, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(partial, out)
    return len(seen)


def _copy_shard(path: str, dst: h5py.File, seen: dict[str, str], sums: dict[str, str], first: str) -> None:
    with open_h5(path) as src:
        stored = src.attrs.get(_META)
        if path == first and stored is not None:
            dst.attrs[_META] = stored
        if path == first and _STAGE in src.attrs:
            dst.attrs[_STAGE] = src.attrs[_STAGE]
        elif stored != dst.attrs.get(_META):
            raise ValueError(f"{path} was written with other parameters than {first}: "
                             f"{stored} vs {dst.attrs.get(_META)}")
        for key in src:
            if key in seen:
                raise ValueError(f"key {key!r} is in both {seen[key]} and {path}")
            sums[key] = check_dataset(src[key], key, path, stage=src.attrs.get(_STAGE))
            src.copy(src[key], dst, name=key)
            seen[key] = path
