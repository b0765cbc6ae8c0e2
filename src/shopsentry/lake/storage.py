"""Where the lake's files live: one interface over local folders and object stores.

Every tier (warm, cold) and the backups are a :class:`LakeStorage` rooted at a URL
from :class:`~shopsentry.config.LakeSettings`. The one backend is fsspec, which
already speaks local paths, ``s3://``, ``gs://``, ``abfs://`` and ``memory://``; the
protocol exists so tests and callers name what they need (put, get, list, delete) rather
than fsspec's wide surface, and so DuckDB can be pointed at the same files.

Writes are whole-object: a local file is written beside its target and renamed over it,
an object store's PUT is atomic, so a reader never sees half a file.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    import duckdb

    from shopsentry.config import LakeSettings, Settings

logger = logging.getLogger(__name__)

Tier = Literal["warm", "cold", "backups"]
_CHUNK = 1 << 20


@runtime_checkable
class LakeStorage(Protocol):
    """Objects under one root URL, addressed by ``/``-separated keys."""

    url: str

    def put_file(self, local: Path, key: str) -> None: ...

    def put_bytes(self, key: str, data: bytes) -> None: ...

    def get_bytes(self, key: str) -> bytes: ...

    def get_file(self, key: str, local: Path) -> None: ...

    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int: ...

    def list(self, prefix: str = "") -> list[str]:
        """Every key under ``prefix`` (recursively), sorted."""
        ...

    def delete(self, keys: Iterable[str]) -> None: ...

    def sha256(self, key: str) -> str: ...

    def duckdb_path(self, key: str) -> str:
        """A path DuckDB reads the object at (after :meth:`register` on that connection)."""
        ...

    def register(self, con: duckdb.DuckDBPyConnection) -> None:
        """Let ``con`` read this storage's paths (a no-op for a local folder)."""
        ...


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class FsspecStorage:
    """:class:`LakeStorage` on any fsspec filesystem (a local folder by default)."""

    def __init__(self, url: str) -> None:
        import fsspec

        self.url = url
        fs, root = fsspec.core.url_to_fs(url)
        self._fs: Any = fs
        self._local = "file" in _protocols(fs)
        self._root = str(Path(root).resolve()) if self._local else root.rstrip("/")
        if self._local:
            Path(self._root).mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> str:
        return f"{self._root}/{key}" if key else self._root

    def _key(self, path: str) -> str:
        return path.removeprefix(self._root.removeprefix("/")).removeprefix(self._root).lstrip("/")

    def put_file(self, local: Path, key: str) -> None:
        target = self._path(key)
        if self._local:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            tmp = f"{target}.tmp-{os.getpid()}"
            self._fs.put_file(str(local), tmp)
            os.replace(tmp, target)
        else:
            self._fs.put_file(str(local), target)

    def put_bytes(self, key: str, data: bytes) -> None:
        target = self._path(key)
        if self._local:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(f"{target}.tmp-{os.getpid()}")
            tmp.write_bytes(data)
            os.replace(tmp, target)
        else:
            self._fs.pipe_file(target, data)

    def get_bytes(self, key: str) -> bytes:
        data: bytes = self._fs.cat_file(self._path(key))
        return data

    def get_file(self, key: str, local: Path) -> None:
        local.parent.mkdir(parents=True, exist_ok=True)
        self._fs.get_file(self._path(key), str(local))

    def exists(self, key: str) -> bool:
        return bool(self._fs.exists(self._path(key)))

    def size(self, key: str) -> int:
        return int(self._fs.size(self._path(key)))

    def list(self, prefix: str = "") -> list[str]:
        base = self._path(prefix.rstrip("/"))
        if not self._fs.exists(base):
            return []
        found = self._fs.find(base)
        keys = (self._key(str(p)) for p in found)
        return sorted(k for k in keys if ".tmp-" not in k)

    def delete(self, keys: Iterable[str]) -> None:
        paths = [self._path(k) for k in keys]
        if paths:
            self._fs.rm(paths)

    def sha256(self, key: str) -> str:
        digest = hashlib.sha256()
        with self._fs.open(self._path(key), "rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
        return digest.hexdigest()

    def duckdb_path(self, key: str) -> str:
        if self._local:
            return self._path(key)
        return f"{_protocols(self._fs)[0]}://{self._path(key)}"

    def register(self, con: duckdb.DuckDBPyConnection) -> None:
        if self._local:
            return
        name = _protocols(self._fs)[0]
        if not con.filesystem_is_registered(name):
            con.register_filesystem(self._fs)

    def __repr__(self) -> str:
        return f"FsspecStorage({self.url!r})"


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


@dataclass(frozen=True, slots=True)
class LakeConfig:
    """What the lake jobs need: the lake's settings, its root when ``lake.url`` is unset
    (``lake/`` in the data dir), a local staging directory for the Parquet files being
    written, and the warehouse file whose partitions move between the tiers."""

    lake: LakeSettings
    default_root: Path
    staging_dir: Path
    warehouse: Path

    @classmethod
    def from_settings(cls, settings: Settings) -> LakeConfig:
        return cls(
            lake=settings.lake,
            default_root=settings.data_dir / "lake",
            staging_dir=settings.data_dir / ".lake-staging",
            warehouse=settings.warehouse_path,
        )


def tier_url(config: LakeConfig, tier: Tier) -> str:
    """A tier's URL: its own setting if given, else ``<lake url>/<tier>``, the lake URL
    defaulting to ``lake/`` in the data dir."""
    lake = config.lake
    root = (lake.url or str(config.default_root.resolve())).rstrip("/")
    configured = {"warm": None, "cold": lake.cold_url, "backups": lake.backup_url}[tier]
    return configured or f"{root}/{tier}"


def open_tier(config: LakeConfig, tier: Tier) -> LakeStorage:
    return FsspecStorage(tier_url(config, tier))
