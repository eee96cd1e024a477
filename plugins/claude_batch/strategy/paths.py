"""The path-likes the strategy reads and writes: pathlib.Path, UPath or Airflow's ObjectStoragePath.

Only these methods are used, so local files, ``file://`` and ``s3://`` behave the same.
"""

from __future__ import annotations

from typing import IO, Any, Protocol, Self


class ReadablePath(Protocol):
    """Anything that opens for binary reading."""

    def open(self, mode: str = ..., *args: Any, **kwargs: Any) -> IO[Any]: ...


class OutputDir(Protocol):
    """A directory that makes child paths and can be created."""

    def __truediv__(self, name: str) -> Self: ...

    def mkdir(self, parents: bool = ..., exist_ok: bool = ...) -> None: ...

    def open(self, mode: str = ..., *args: Any, **kwargs: Any) -> IO[Any]: ...
