"""Read-only access to a folder of model artifacts: a local path or an ``s3://`` prefix.

An S3 folder is listed once (one paginated ListObjectsV2) and files are fetched on
demand, with the Spark jobs' S3 client (msdlib.io.sources: $AWS_ENDPOINT_URL for moto).
"""
import io
import os
import posixpath
from typing import Any, List, Optional

import pyarrow.parquet as pq
from msdlib.io.sources import s3_client, split_s3_uri


class ArtifactNotFound(FileNotFoundError):
    """A file or folder the model needs is missing."""


class Folder:
    """A folder of files addressed by relative ``a/b/c`` paths."""

    uri: str

    def files(self, relative: str) -> List[str]:
        """Relative paths of the files directly in ``relative`` (sorted)."""
        raise NotImplementedError

    def subfolders(self, relative: str) -> List[str]:
        """Names of the folders directly in ``relative`` (sorted)."""
        raise NotImplementedError

    def read_bytes(self, relative: str) -> bytes:
        raise NotImplementedError

    def read_text(self, relative: str) -> str:
        return self.read_bytes(relative).decode("utf-8")

    def join(self, *parts: str) -> str:
        return self.uri.rstrip("/") + "/" + posixpath.join(*parts)

    def read_parquet(self, relative: str) -> List[dict]:
        """The rows of the parquet part files in ``relative``, as dicts."""
        parts = [name for name in self.files(relative) if name.endswith(".parquet")]
        if not parts:
            raise ArtifactNotFound("no parquet data in {}".format(self.join(relative)))
        rows = []  # type: List[dict]
        for name in parts:
            rows += pq.read_table(io.BytesIO(self.read_bytes(name))).to_pylist()
        return rows


class LocalFolder(Folder):
    def __init__(self, path: str) -> None:
        if path.startswith("file://"):
            path = path[len("file://"):]
        self.uri = os.path.abspath(path)
        if not os.path.isdir(self.uri):
            raise ArtifactNotFound("no folder {}".format(self.uri))

    def _entries(self, relative: str) -> List[os.DirEntry]:
        try:
            return sorted(os.scandir(os.path.join(self.uri, relative)), key=lambda e: e.name)
        except FileNotFoundError as exc:
            raise ArtifactNotFound("no folder {}".format(self.join(relative))) from exc

    def files(self, relative: str) -> List[str]:
        return [posixpath.join(relative, entry.name) for entry in self._entries(relative)
                if entry.is_file()]

    def subfolders(self, relative: str) -> List[str]:
        return [entry.name for entry in self._entries(relative) if entry.is_dir()]

    def read_bytes(self, relative: str) -> bytes:
        try:
            with open(os.path.join(self.uri, relative), "rb") as handle:
                return handle.read()
        except FileNotFoundError as exc:
            raise ArtifactNotFound("no file {}".format(self.join(relative))) from exc


class S3Folder(Folder):
    def __init__(self, uri: str, client: Optional[Any] = None) -> None:
        self.uri = uri.rstrip("/")
        self.bucket, prefix = split_s3_uri(self.uri)
        self.prefix = prefix + "/" if prefix else ""
        self.client = client or s3_client()
        self._keys = self._list()
        if not self._keys:
            raise ArtifactNotFound("nothing under {}".format(self.uri))

    def _list(self) -> List[str]:
        keys = []  # type: List[str]
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            keys += [item["Key"][len(self.prefix):] for item in page.get("Contents", [])]
        return sorted(keys)

    def _below(self, relative: str) -> List[str]:
        start = relative.strip("/") + "/" if relative.strip("/") else ""
        return [key[len(start):] for key in self._keys if key.startswith(start)]

    def files(self, relative: str) -> List[str]:
        return [posixpath.join(relative, rest) for rest in self._below(relative)
                if "/" not in rest]

    def subfolders(self, relative: str) -> List[str]:
        return sorted({rest.split("/", 1)[0] for rest in self._below(relative) if "/" in rest})

    def read_bytes(self, relative: str) -> bytes:
        key = self.prefix + relative.strip("/")
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey as exc:
            raise ArtifactNotFound("no file {}".format(self.join(relative))) from exc


def open_folder(uri: str) -> Folder:
    """A local path (or ``file://``) or an ``s3://`` prefix."""
    return S3Folder(uri) if uri.startswith("s3://") else LocalFolder(uri)
