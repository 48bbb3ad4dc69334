"""Atomic file writes (the one helper every writer of checkpoints, ONNX files and engines uses)
and the trust rules of the export / engine caches.

A reader never sees a half-written file: the data goes to a temporary file in the same folder,
is flushed to disk (``fsync``) and then renamed over the destination (``os.replace``, atomic on
POSIX and Windows). On any error the temporary file is removed and the destination is left as
it was. A writer killed outright (``kill -9``) cannot clean up, so the temporary name carries
its host and process id, and the next write of the same file removes the temporaries of this
host's writers that are no longer running. The file gets the mode a plain ``open`` would give
(0666 less the umask), or 0600 when ``private`` (cache entries).

Cache trust (POSIX): a cached ONNX graph or TensorRT engine is code that the node runs, so a
file is reused only if it belongs to the current user (or root) and nobody else can write it,
and a cache folder is used only if nobody else can write it (:func:`untrusted_reason`,
:func:`private_dir`). Anything else is rebuilt, or refused with a message naming the path.
"""

import os
import socket
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Union

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "private_dir",
           "remove_stale_temporaries", "untrusted_reason"]

PathLike = Union[str, Path]


def _umask() -> int:
    """The process umask (read without changing it where Linux reports it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: read by setting (not thread-safe, restored at once)
    os.umask(mask)
    return mask


# the writer's host in temporary names: a pid means something only on the machine (and in the
# container, which has its own host name) that wrote it
_HOST = "".join(c for c in socket.gethostname() if c.isascii() and c.isalnum())[:24] or "host"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's) or cannot tell: keep its file
    return True


def remove_stale_temporaries(path: PathLike) -> int:
    """Remove temporaries of ``path`` left by writers that died mid-write; returns how many.

    Only names of the form ``.<name>.<host>-<pid>.<random>.tmp...`` written on this host whose
    process is gone are removed.
    """
    path = Path(path)
    prefix = f".{path.name}."
    removed = 0
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return 0
    for entry in entries:
        rest = entry.name[len(prefix):] if entry.name.startswith(prefix) else ""
        owner, _, tail = rest.partition(".")
        host, _, pid = owner.rpartition("-")
        if host != _HOST or not (pid.isascii() and pid.isdigit()) or ".tmp" not in tail:
            continue  # not ours, or another machine's / container's (its pids are not ours)
        try:
            if int(pid) == os.getpid() or _pid_alive(int(pid)):
                continue
        except (ValueError, OverflowError):
            continue
        try:
            entry.unlink()
            removed += 1
        except OSError:
            pass
    return removed


@contextmanager
def atomic_path(path: PathLike, *, private: bool = False) -> Iterator[Path]:
    """A temporary path next to ``path``; write it inside the ``with``, it becomes ``path``.

    The parent folder is created. The temporary name is ``.<name>.<host>-<pid>.<random>.tmp``
    with the destination's suffix kept last (``.x.onnx.robot-123.ab12.tmp.onnx``) for tools
    that look at it; temporaries of dead writers of the same file on this host are removed
    first. The file's mode is 0666
    less the umask, or 0600 if ``private``.

    Raises:
        OSError: the folder or the file cannot be written (nothing is left behind).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{_HOST}-{os.getpid()}.",
                               suffix=".tmp" + path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o600 if private else 0o666 & ~_umask())
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_bytes(path: PathLike, data: bytes, *, private: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (mode as :func:`atomic_path`); returns ``path``."""
    with atomic_path(path, private=private) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; returns ``path``."""
    return atomic_write_bytes(path, text.encode("utf-8"))


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
