"""Object stores behind one small interface: a local directory or any S3 endpoint (MinIO, AWS,
moto) through the ``minio`` client. Paths are ``/``-separated keys relative to the store root."""
from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol
from urllib.parse import urlparse

from influent.config import Settings


@dataclass(frozen=True)
class StoredObject:
    path: str
    size: int


class ObjectStore(Protocol):
    url: str

    def put(self, path: str, data: bytes) -> None: ...
    def get(self, path: str) -> bytes: ...
    def delete(self, path: str) -> None: ...
    def list(self, prefix: str = "") -> Iterator[StoredObject]: ...
    def local_path(self, path: str) -> str | None: ...
    def object_url(self, path: str) -> str: ...


class LocalStore:
    """A directory; writes are atomic (temp file + rename), so readers never see half a file."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.url = self.root.as_uri()

    def _full(self, path: str) -> Path:
        full = (self.root / path).resolve()
        if self.root not in full.parents and full != self.root:
            raise ValueError(f"path escapes the store: {path}")
        return full

    def put(self, path: str, data: bytes) -> None:
        full = self._full(path)
        full.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=full.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, full)

    def get(self, path: str) -> bytes:
        return self._full(path).read_bytes()

    def delete(self, path: str) -> None:
        self._full(path).unlink(missing_ok=True)

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        for file in sorted(self.root.rglob("*")):
            if file.is_file() and not file.name.startswith(".tmp-"):
                rel = file.relative_to(self.root).as_posix()
                if rel.startswith(prefix):
                    yield StoredObject(rel, file.stat().st_size)

    def local_path(self, path: str) -> str | None:
        return str(self._full(path))

    def object_url(self, path: str) -> str:
        return f"{self.url}/{path}"


class S3Store:
    """A bucket (and optional key prefix) on an S3-compatible endpoint."""

    def __init__(self, bucket: str, prefix: str, endpoint: str, access_key: str, secret_key: str,
                 region: str):
        from minio import Minio

        parsed = urlparse(endpoint or "https://s3.amazonaws.com")
        self.client = Minio(parsed.netloc, access_key=access_key or None,
                            secret_key=secret_key or None, region=region,
                            secure=parsed.scheme == "https")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}" + (f"/{self.prefix}" if self.prefix else "")
        if not self.client.bucket_exists(bucket):
            self.client.make_bucket(bucket)

    def _key(self, path: str) -> str:
        return f"{self.prefix}/{path}" if self.prefix else path

    def put(self, path: str, data: bytes) -> None:
        self.client.put_object(self.bucket, self._key(path), io.BytesIO(data), len(data),
                               content_type="application/vnd.apache.parquet")

    def get(self, path: str) -> bytes:
        resp = self.client.get_object(self.bucket, self._key(path))
        try:
            return resp.read()
        finally:
            resp.close()
            resp.release_conn()

    def delete(self, path: str) -> None:
        self.client.remove_object(self.bucket, self._key(path))

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        base = self._key(prefix)
        strip = len(self.prefix) + 1 if self.prefix else 0
        for obj in self.client.list_objects(self.bucket, prefix=base, recursive=True):
            yield StoredObject(obj.object_name[strip:], obj.size or 0)

    def local_path(self, path: str) -> str | None:
        return None

    def object_url(self, path: str) -> str:
        return f"{self.url}/{path}"


def open_store(settings: Settings) -> ObjectStore:
    url = settings.object_store_url
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return LocalStore(Path(parsed.path))
    if parsed.scheme == "s3":
        return S3Store(parsed.netloc, parsed.path, settings.s3_endpoint, settings.s3_access_key,
                       settings.s3_secret_key, settings.s3_region)
    if parsed.scheme == "":
        return LocalStore(Path(url))
    raise ValueError(f"unsupported object store URL: {url}")
