"""The local object store's core (the `ObjectStore` port without multipart): layout, the
thread pool, sidecars, put/get/stat/list/delete, the trash swept at start, and the
`StoredDigests` capability. Multipart uploads are added in local_multipart.py; import the
store from `avc_common.objects.local`.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import hashlib
import json
import os
import shutil
import stat
import threading
import time
from collections.abc import Callable
from contextlib import aclosing
from typing import Any, TypeVar, TypeVarTuple, Unpack

import anyio
import anyio.to_thread

from avc_common.objects.base import (
    RESERVED_SEGMENT,
    ByteSource,
    InvalidKey,
    ObjectInfo,
    ObjectNotFound,
    ObjectReader,
    ObjectsError,
    ObjectStore,
    SizeMismatch,
    iter_source,
    key_has_prefix,
    resolve_range,
    validate_key,
    validate_prefix,
)
from avc_common.objects.local_files import (
    FaultHook,
    Sink,
    TempFile,
    fingerprint,
    fsync_dir,
    mtime_of,
    prune,
)
from avc_common.objects.local_prefix_hash import (
    PrefixHashes,
)
from avc_common.private_paths import private_dir

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

# A sidecar that does not match its data file means another process is between its two renames
# (or crashed there): retry a little, then describe the file without the sidecar.
_META_ATTEMPTS = 5
_META_RETRY_SECONDS = 0.002
_STALE_TMP_SECONDS = 24 * 3600


class _LocalReader(ObjectReader):
    def __init__(
        self, store: LocalStoreCore, fd: int, info: ObjectInfo, start: int, length: int
    ) -> None:
        super().__init__(info, start, length)
        self._store = store
        self._fd = fd
        self._pos = start

    async def _read(self, max_bytes: int) -> bytes:
        chunk = await self._store._run(os.pread, self._fd, max_bytes, self._pos)
        self._pos += len(chunk)
        return chunk

    async def _release(self) -> None:
        os.close(self._fd)


class LocalStoreCore(ObjectStore):
    """Objects as files under `root`; every filesystem call runs in a bounded thread pool."""

    def __init__(self, root: str | os.PathLike[str], *, max_threads: int = 16) -> None:
        path = os.path.abspath(os.fspath(root))
        private_dir(path)  # users' videos: this user's alone (0700)
        self._root = os.path.realpath(path)
        self._internal = os.path.join(self._root, RESERVED_SEGMENT)
        self._meta_root = os.path.join(self._internal, "meta")
        self._mp_root = os.path.join(self._internal, "multipart")
        self._tmp_root = os.path.join(self._internal, "tmp")
        self._trash_root = os.path.join(self._internal, "trash")
        self._make_internal_dirs()
        # Serialises the rename pairs (sidecar + data) and directory pruning within this process.
        self._lock = threading.Lock()
        self._limiter = anyio.CapacityLimiter(max_threads)
        self._prefixes = PrefixHashes()
        self.fault_hook: FaultHook | None = None
        """Tests only: see FaultHook."""

    @property
    def root(self) -> str:
        return self._root

    async def _run(self, func: Callable[[Unpack[Ts]], T], *args: *Ts) -> T:
        """Returns `func(*args)` run in the pool; OS errors (disk full, permissions) become
        ObjectsError like the S3 adapter's transport errors."""
        try:
            return await anyio.to_thread.run_sync(func, *args, limiter=self._limiter)
        except OSError as exc:
            raise ObjectsError(f"local object storage failed: {exc}") from exc

    # -- lifecycle ---------------------------------------------------------------------------

    async def close(self) -> None:
        await self._run(self._prefixes.close)

    async def start(self) -> None:
        await self._run(self._make_internal_dirs)
        await self._run(self._sweep_tmp)
        await self._run(self._sweep_trash)

    async def ping(self) -> None:
        await self._run(self._sync_ping)

    def _make_internal_dirs(self) -> None:
        for directory in (
            self._root,
            self._internal,
            self._meta_root,
            self._mp_root,
            self._tmp_root,
            self._trash_root,
        ):
            private_dir(directory)

    def _step(self, name: str) -> None:
        hook = self.fault_hook
        if hook is not None:
            hook(name)

    def _sweep_tmp(self) -> None:
        # Only old leftovers: another process sharing the root may be writing the young ones.
        cutoff = time.time() - _STALE_TMP_SECONDS
        with os.scandir(self._tmp_root) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                        os.unlink(entry.path)

    def _sweep_trash(self) -> None:
        # Everything in the trash is garbage (a process died while removing it); another
        # process removing the same dir at once only makes some unlinks find nothing.
        with os.scandir(self._trash_root) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    self._remove_dir(entry.path)

    def _remove_dir(self, directory: str) -> None:
        """Removes a dir of the trash, one entry at a time (a step each, for the fault hook)."""
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return
        except NotADirectoryError:
            names = None
        if names is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(directory)
            return
        for name in sorted(names):
            path = os.path.join(directory, name)
            if os.path.isdir(path) and not os.path.islink(path):
                self._remove_dir(path)
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            self._step("drop:unlinked")
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(directory)  # ENOTEMPTY if another process is sweeping it: see callers
        self._step("drop:removed")

    def _sync_ping(self) -> None:
        for directory in (self._root, self._tmp_root):
            if not os.path.isdir(directory) or not os.access(directory, os.W_OK | os.X_OK):
                raise ObjectsError(f"storage directory {directory} is missing or not writable")

    # -- paths -------------------------------------------------------------------------------

    def _data_path(self, key: str) -> str:
        return os.path.join(self._root, *key.split("/"))

    def _meta_path(self, key: str) -> str:
        return os.path.join(self._meta_root, *key.split("/"))

    def _check_contained(self, path: str, key: str) -> None:
        """Raises InvalidKey if `path`, symlinks resolved, is not an object path under the root."""
        real = os.path.realpath(path)
        inside = real.startswith(self._root + os.sep) or (self._root == os.sep and real != os.sep)
        if not inside or real == self._internal or real.startswith(self._internal + os.sep):
            raise InvalidKey(f"object key {key!r} resolves outside the storage root")

    # -- reading -----------------------------------------------------------------------------

    def _read_meta(self, key: str) -> dict[str, Any] | None:
        try:
            with open(self._meta_path(key), "rb") as f:
                meta = json.loads(f.read())
        except (OSError, ValueError):
            return None
        return meta if isinstance(meta, dict) else None

    def _describe(self, key: str, st: os.stat_result, *, last_attempt: bool) -> ObjectInfo | None:
        """Returns the info of data file `st` if its sidecar matches (or on the last attempt)."""
        meta = self._read_meta(key)
        if meta is not None and meta.get("fingerprint") == fingerprint(st):
            etag, content_type = meta.get("etag"), meta.get("content_type")
            if isinstance(etag, str) and isinstance(content_type, str):
                return ObjectInfo(key, st.st_size, etag, content_type, mtime_of(st))
        if meta is not None and not last_attempt:
            return None
        # No usable sidecar (a crash between renames, or a file copied in by hand).
        etag = hashlib.md5(repr(fingerprint(st)).encode(), usedforsecurity=False).hexdigest()
        return ObjectInfo(key, st.st_size, etag, "application/octet-stream", mtime_of(st))

    def _sync_stored_sha256(self, key: str) -> str | None:
        path = self._data_path(key)
        self._check_contained(path, key)
        with self._lock:
            try:
                st = os.stat(path)
            except (FileNotFoundError, NotADirectoryError):
                raise ObjectNotFound(f"no object {key!r}") from None
            if not stat.S_ISREG(st.st_mode):
                raise ObjectNotFound(f"no object {key!r}")
            meta = self._read_meta(key)
        if meta is None or meta.get("fingerprint") != fingerprint(st):
            return None
        sha256 = meta.get("sha256")
        return sha256 if isinstance(sha256, str) else None

    def _sync_stat(self, key: str) -> ObjectInfo:
        path = self._data_path(key)
        self._check_contained(path, key)
        for attempt in range(_META_ATTEMPTS):
            with self._lock:
                try:
                    st = os.stat(path)
                except (FileNotFoundError, NotADirectoryError):
                    raise ObjectNotFound(f"no object {key!r}") from None
                if not stat.S_ISREG(st.st_mode):
                    raise ObjectNotFound(f"no object {key!r}")
                info = self._describe(key, st, last_attempt=attempt == _META_ATTEMPTS - 1)
            if info is not None:
                return info
            time.sleep(_META_RETRY_SECONDS)
        raise AssertionError("unreachable")  # pragma: no cover

    def _sync_open(
        self, key: str, offset: int, length: int | None
    ) -> tuple[int, ObjectInfo, int, int]:
        path = self._data_path(key)
        self._check_contained(path, key)
        for attempt in range(_META_ATTEMPTS):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                raise ObjectNotFound(f"no object {key!r}") from None
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    raise ObjectNotFound(f"no object {key!r}")
                with self._lock:
                    info = self._describe(key, st, last_attempt=attempt == _META_ATTEMPTS - 1)
                if info is not None:
                    start, count = resolve_range(info.size, offset, length)
                    return fd, info, start, count
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
            time.sleep(_META_RETRY_SECONDS)
        raise AssertionError("unreachable")  # pragma: no cover

    def _sync_keys(self, prefix: str) -> builtins.list[str]:
        base = self._data_path(prefix) if prefix else self._root
        if prefix:
            self._check_contained(base, prefix)
        try:
            st = os.lstat(base)
        except OSError:
            return []
        if stat.S_ISREG(st.st_mode):
            return [prefix]
        if not stat.S_ISDIR(st.st_mode):
            return []
        keys = []
        for dirpath, dirnames, filenames in os.walk(base):
            if dirpath == self._root:
                dirnames[:] = [d for d in dirnames if d != RESERVED_SEGMENT]
            for name in filenames:
                full = os.path.join(dirpath, name)
                try:
                    if not stat.S_ISREG(os.lstat(full).st_mode):
                        continue  # symlinks are never ours
                    key = validate_key(os.path.relpath(full, self._root).replace(os.sep, "/"))
                except (OSError, InvalidKey):
                    continue
                if key_has_prefix(key, prefix):
                    keys.append(key)
        return sorted(keys)

    def _sync_list(self, prefix: str) -> builtins.list[ObjectInfo]:
        infos = []
        for key in self._sync_keys(prefix):
            try:
                infos.append(self._sync_stat(key))
            except ObjectNotFound:
                continue  # deleted while listing
        return infos

    # -- writing -----------------------------------------------------------------------------

    def _write_sidecar(
        self, etag: str, content_type: str, st: os.stat_result, sha256: str | None
    ) -> str:
        meta: dict[str, Any] = {
            "etag": etag,
            "content_type": content_type,
            "fingerprint": fingerprint(st),
        }
        if sha256 is not None:
            meta["sha256"] = sha256
        tmp = TempFile(self._tmp_root)
        try:
            tmp.write(json.dumps(meta).encode())
            tmp.finish()
        except BaseException:
            tmp.discard()
            raise
        return tmp.path

    def _sync_commit(
        self,
        key: str,
        tmp: TempFile,
        content_type: str,
        etag: str,
        sha256: str | None = None,
    ) -> ObjectInfo:
        st = tmp.finish()
        if sha256 is None and tmp.sha256 is not None:
            sha256 = tmp.sha256.hexdigest()
        return self._sync_publish(key, tmp.path, st, content_type, etag, sha256)

    def _sync_publish(
        self,
        key: str,
        path: str,
        st: os.stat_result,
        content_type: str,
        etag: str,
        sha256: str | None,
    ) -> ObjectInfo:
        """Renames the durable file `path` (fingerprint `st`) into place as `key`."""
        sidecar = self._write_sidecar(etag, content_type, st, sha256)
        data_path, meta_path = self._data_path(key), self._meta_path(key)
        try:
            with self._lock:
                try:
                    if os.path.isdir(data_path):
                        raise InvalidKey(f"object key {key!r} is a prefix of existing objects")
                    os.makedirs(os.path.dirname(data_path), exist_ok=True)
                    self._check_contained(data_path, key)
                    os.makedirs(os.path.dirname(meta_path), exist_ok=True)
                    if os.path.isdir(meta_path):  # orphaned sidecars of long-gone `key/...`
                        shutil.rmtree(meta_path)
                except (FileExistsError, NotADirectoryError):
                    raise InvalidKey(
                        f"object key {key!r} runs through an existing object"
                    ) from None
                # Sidecar first: a brand-new object is never visible without its sidecar.
                os.replace(sidecar, meta_path)
                self._step("publish:sidecar")
                os.replace(path, data_path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(sidecar)
            raise
        fsync_dir(os.path.dirname(meta_path))
        fsync_dir(os.path.dirname(data_path))
        self._step("publish:data")
        return ObjectInfo(key, st.st_size, etag, content_type, mtime_of(st))

    async def _fill(self, tmp: Sink, data: ByteSource, size: int | None) -> None:
        async with aclosing(iter_source(data)) as chunks:
            async for chunk in chunks:
                if size is not None and tmp.size + len(chunk) > size:
                    raise SizeMismatch(f"got more than the declared {size} bytes")
                await self._run(tmp.write, chunk)
        if size is not None and tmp.size != size:
            raise SizeMismatch(f"got {tmp.size} bytes, declared {size}")

    async def _discard(self, tmp: TempFile) -> None:
        with anyio.CancelScope(shield=True):
            await self._run(tmp.discard)

    async def put(
        self,
        key: str,
        data: ByteSource,
        *,
        size: int | None = None,
        content_type: str = "application/octet-stream",
    ) -> ObjectInfo:
        validate_key(key)
        if size is not None and size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        await self._run(self._check_contained, self._data_path(key), key)
        tmp = await self._run(functools.partial(TempFile, self._tmp_root, hashed=True))
        try:
            await self._fill(tmp, data, size)
            assert tmp.md5 is not None
            etag = tmp.md5.hexdigest()
            return await self._run(self._sync_commit, key, tmp, content_type, etag)
        except BaseException:
            await self._discard(tmp)
            raise

    async def get(self, key: str, *, offset: int = 0, length: int | None = None) -> ObjectReader:
        validate_key(key)
        fd, info, start, count = await self._run(self._sync_open, key, offset, length)
        return _LocalReader(self, fd, info, start, count)

    async def stored_sha256(self, key: str) -> str | None:
        """StoredDigests: the SHA-256 kept in the object's sidecar (None for a file whose
        sidecar does not describe it, e.g. one copied in by hand)."""
        validate_key(key)
        return await self._run(self._sync_stored_sha256, key)

    async def stat(self, key: str) -> ObjectInfo:
        validate_key(key)
        return await self._run(self._sync_stat, key)

    # -- deleting ----------------------------------------------------------------------------

    def _sync_delete(self, key: str) -> bool:
        data_path, meta_path = self._data_path(key), self._meta_path(key)
        self._check_contained(data_path, key)
        with self._lock:
            try:
                if stat.S_ISDIR(os.lstat(data_path).st_mode):
                    return False
                os.unlink(data_path)
                deleted = True
            except (FileNotFoundError, NotADirectoryError):
                deleted = False
            with contextlib.suppress(FileNotFoundError, NotADirectoryError, IsADirectoryError):
                os.unlink(meta_path)
            prune(os.path.dirname(data_path), self._root)
            prune(os.path.dirname(meta_path), self._meta_root)
        return deleted

    def _sync_delete_prefix(self, prefix: str) -> int:
        return sum(self._sync_delete(key) for key in self._sync_keys(prefix))

    async def delete(self, key: str) -> None:
        validate_key(key)
        await self._run(self._sync_delete, key)

    async def delete_prefix(self, prefix: str) -> int:
        return await self._run(self._sync_delete_prefix, validate_prefix(prefix))

    async def list(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        return await self._run(self._sync_list, validate_prefix(prefix))
