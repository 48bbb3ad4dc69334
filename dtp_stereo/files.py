"""Atomic file writes (the one helper every writer of checkpoints, ONNX files and engines uses)
and the trust rules of the export / engine caches.

A reader never sees a half-written file: the data goes to a temporary file in the same folder,
is flushed to disk (``fsync``) and then renamed over the destination (``os.replace``, atomic on
POSIX and Windows). On any error the temporary file is removed and the destination is left as
it was.

Cache trust (POSIX): a cached ONNX graph or TensorRT engine is code that the node runs, so a
file is reused only if it belongs to the current user (or root) and nobody else can write it,
and a cache folder is used only if nobody else can write it (:func:`untrusted_reason`,
:func:`private_dir`). Anything else is rebuilt, or refused with a message naming the path.
"""

import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Union

__all__ = ["atomic_path", "atomic_write_bytes", "private_dir", "untrusted_reason"]

PathLike = Union[str, Path]


@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """A temporary path next to ``path``; write it inside the ``with``, it becomes ``path``.

    The parent folder is created. The temporary name is ``.<name>.<random>.tmp`` with the
    destination's suffix kept last (``.x.onnx.ab12.tmp.onnx``) for tools that look at it.

    Raises:
        OSError: the folder or the file cannot be written (nothing is left behind).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                               suffix=".tmp" + path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def untrusted_reason(path: PathLike) -> Optional[str]:
    """Why ``path`` (a file or folder) must not be trusted as a cache entry, or None if it may.

    Untrusted: owned by another user than the current one or root, or writable by group or
    others. Always trusted where POSIX ownership does not exist (Windows).
    """
    if not hasattr(os, "getuid"):
        return None
    info = os.stat(path)
    if info.st_uid not in (os.getuid(), 0):
        return f"{path} belongs to another user (uid {info.st_uid})"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path} is writable by other users (mode {stat.filemode(info.st_mode)})"
    return None


def private_dir(path: PathLike) -> Path:
    """Create ``path`` (mode 0700 when new) and check that nobody else can write it.

    Raises:
        PermissionError: the folder belongs to another user or others can write it; the
            message names it and says what to do.
    """
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    reason = untrusted_reason(path)
    if reason:
        raise PermissionError(f"cache folder {reason}: files in it could be replaced by "
                              "another user; use a private folder (engine_cache_dir / "
                              "DTP_STEREO_CACHE)")
    return path
