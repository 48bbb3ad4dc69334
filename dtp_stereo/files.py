"""Atomic file writes: the one helper every writer of checkpoints, ONNX files and engines uses.

A reader never sees a half-written file: the data goes to a temporary file in the same folder,
is flushed to disk (``fsync``) and then renamed over the destination (``os.replace``, atomic on
POSIX and Windows). On any error the temporary file is removed and the destination is left as
it was.
"""

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union

__all__ = ["atomic_path", "atomic_write_bytes"]

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
