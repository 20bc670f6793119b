"""Inter-process locks on files beside what they protect: a second process waits (and says on which lock
file), and the operating system releases a lock whose process died, so a crash never blocks the next run."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

log = logging.getLogger(__name__)


@contextlib.contextmanager
def exclusive(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold the lock file ``path`` (created with its folder) while the block runs; ``what`` names the work
    that the lock serialises in the message logged when another process holds it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(blocking=False)
    except Timeout:
        log.info("waiting for %s: another process holds the lock %s", what, path)
        started = time.perf_counter()
        lock.acquire()
        log.info("lock %s acquired after %.1f s", path, time.perf_counter() - started)
    try:
        yield
    finally:
        lock.release()
