"""Where a search keeps Tune's folders and its trials' saved training state.

A local folder, or any URI pyarrow understands — `s3://bucket/prefix` (an S3-compatible store:
`s3://bucket/prefix?endpoint_override=HOST:PORT&scheme=http`), `gs://bucket/prefix` — which every
node of a cluster reaches, so a trial retried on another machine finds the state it saved.
Credentials come from the environment (AWS_ACCESS_KEY_ID…, an instance profile), never the URI.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow.fs as pafs
import torch

from remedies.errors import ConfigError
from remedies.io import atomic_target


@dataclass(frozen=True)
class Results:
    uri: str  # a local folder (absolute) or a URI, as the user gave it

    @staticmethod
    def parse(arg: str) -> Results:
        if "://" in arg:
            return Results(arg)
        return Results(str(Path(arg).resolve()))

    @property
    def local(self) -> bool:
        return "://" not in self.uri

    def child(self, *parts: str) -> Results:
        """`uri/part/…`, keeping a URI's query (its endpoint) at the end."""
        if self.local:
            return Results(str(Path(self.uri, *parts)))
        head, _, query = self.uri.partition("?")
        joined = "/".join([head.rstrip("/"), *parts])
        return Results(f"{joined}?{query}" if query else joined)

    def filesystem(self):
        """(pyarrow FileSystem, path inside it)."""

        if self.local:
            return pafs.LocalFileSystem(), self.uri
        return pafs.FileSystem.from_uri(self.uri)

    def check(self, field: str = "--results-dir") -> None:
        """One line, before anything is created, when the store cannot be used."""
        shown = self.uri.partition("?")[0]
        if self.local:
            parent = Path(self.uri).parent
            if not parent.is_dir():
                raise ConfigError(field, f"folder {parent} does not exist")
            return

        try:
            fs, path = self.filesystem()
            bucket = path.split("/", 1)[0]
            if fs.get_file_info(bucket).type == pafs.FileType.NotFound:
                raise ConfigError(field, f"{shown}: bucket {bucket!r} does not exist")
            fs.get_file_info(path)
        except ConfigError:
            raise
        except (OSError, ValueError) as e:  # unknown scheme, unreachable endpoint, no access
            why = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            scheme = urlsplit(self.uri).scheme
            msg = f"{shown}: cannot use it ({why}); allowed: a local folder or a URI pyarrow reads"
            raise ConfigError(field, f"{msg} ({scheme}:// given)") from None

    # ------------------------------------------------------------------- whole files
    def write_bytes(self, name: str, data: bytes) -> None:
        """Whole or not at all: a local file through a temporary name; an object store's put
        is atomic by itself."""
        if self.local:
            with atomic_target(Path(self.uri, name)) as tmp:
                tmp.write_bytes(data)
            return
        fs, path = self.filesystem()
        with fs.open_output_stream(f"{path}/{name}") as f:
            f.write(data)

    def read_bytes(self, name: str) -> bytes | None:

        fs, path = self.filesystem()
        target = f"{path}/{name}"
        if fs.get_file_info(target).type == pafs.FileType.NotFound:
            return None
        with fs.open_input_stream(target) as f:
            return f.read()

    def remove(self) -> None:

        fs, path = self.filesystem()
        if fs.get_file_info(path).type != pafs.FileType.NotFound:
            fs.delete_dir(path)

    def save_torch(self, name: str, obj) -> None:

        buf = io.BytesIO()
        torch.save(obj, buf)
        self.write_bytes(name, buf.getvalue())

    def load_torch(self, name: str):

        data = self.read_bytes(name)
        return None if data is None else torch.load(io.BytesIO(data), weights_only=True)
