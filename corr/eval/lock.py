"""``run.lock``: one evaluation (or re-scoring) of a run folder at a time.

The lock file names its owner (pid, host, start time) and carries an ``flock`` that the kernel
drops when the owner dies, even on ``kill -9``; a lock left by a dead process is reported as
stale and taken over.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

from ..io import WriteError

LOCK_FILE = "run.lock"

try:
    import fcntl
except ImportError:  # Windows: msvcrt's byte-range lock, also dropped when its owner dies
    fcntl = None
    import msvcrt


class RunLockedError(RuntimeError):
    """Another process is evaluating into (or re-scoring) the same folder."""


class RunLock:
    """Exclusive use of a run folder: ``run.lock`` names the owner (pid, host, start time) and
    carries an ``fcntl.flock`` that the kernel drops when the owner dies, even on ``kill -9``.
    A lock file whose flock is free was left by a dead process: it is reported as stale and
    taken over. Use as a context manager. (The lock is as reliable as ``flock`` on the folder's
    file system: local disks, and NFS that maps it to byte-range locks.)"""

    def __init__(self, folder: str | Path, log: Callable[[str], None] = print) -> None:
        self.path = Path(folder) / LOCK_FILE
        self.log = log
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
            except OSError as err:
                raise WriteError(self.path, err) from None
            try:
                _lock_now(fd)
            except OSError as err:
                owner = _lock_owner(fd)
                os.close(fd)
                if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EDEADLK):
                    raise WriteError(self.path, err) from None
                raise RunLockedError(
                    f"{self.path.parent} is in use by another evaluation ({owner}; see "
                    f"{self.path}); wait for it to finish, or use another --out"
                ) from None
            try:  # released (and removed) between our open and flock: lock the new file
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        stale = _lock_owner(fd)
        if stale != "owner unknown":
            self.log(f"note: {self.path}: stale lock of {stale}, no longer running; taken over")
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        try:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, (json.dumps(info) + "\n").encode())
            os.fsync(fd)
        except OSError as err:
            os.close(fd)
            raise WriteError(self.path, err) from None
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is None:
            return
        try:
            if os.fstat(self.fd).st_ino == os.stat(self.path).st_ino:
                os.unlink(self.path)  # before unlocking: a waiting process then locks a new file
        except OSError:
            pass  # a read-only folder, or removed by hand: the flock goes with the fd anyway
        os.close(self.fd)
        self.fd = None


def _lock_now(fd: int) -> None:
    """Take the exclusive lock of an open lock file, or raise ``OSError`` (EAGAIN) at once."""
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    else:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)


def _lock_owner(fd: int) -> str:
    """``"process PID on HOST since TIME"`` from a lock file's content."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096) or b"null")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info["started"])))
        return f"process {int(info['pid'])} on {info['host']} since {when}"
    except (OSError, ValueError, KeyError, TypeError):
        return "owner unknown"
