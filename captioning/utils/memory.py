"""Keep freed memory in the process instead of handing it back to the OS at every free (glibc only).

glibc's malloc serves each large block (from 128 KiB, a threshold it raises up to 32 MiB as blocks are
freed) with its own mmap and unmaps it on free, and gives the top of the heap back once more than its trim
threshold is free there. A CNN forward allocates and frees activation maps of tens of MiB at every layer
and batch, so each one is mapped anew and every page of it faults in zeroed: on the 2-core machine of
docs/benchmarks.md, EfficientNet-Lite0's batch forward spent more time in the kernel than in the
convolutions. With both thresholds at ``LIMIT``, blocks up to that size come from the heap and freed ones
are reused, as a caching allocator on a GPU does. The cost: up to ``LIMIT`` of freed memory stays mapped
to the process (the measured peaks are in docs/benchmarks.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform

log = logging.getLogger(__name__)

LIMIT = 1 << 30  # bytes
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory(limit: int = LIMIT) -> bool:
    """Raise glibc's mmap and trim thresholds to ``limit`` bytes for this process (call it once, early, in
    an entry point); True when they were set, False where malloc is not glibc's (macOS, Windows, musl)."""
    if platform.system() != "Linux" or not platform.libc_ver()[0] == "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        # the mmap threshold first: a high trim threshold alone keeps memory without the reuse
        ok = libc.mallopt(M_MMAP_THRESHOLD, ctypes.c_int(limit)) == 1
        ok = ok and libc.mallopt(M_TRIM_THRESHOLD, ctypes.c_int(limit)) == 1
    except (OSError, AttributeError) as err:  # no libc to load, or one without mallopt
        log.debug("malloc thresholds left as they are: %s", err)
        return False
    if not ok:
        log.debug("glibc refused a malloc threshold of %d bytes; its defaults stay", limit)
    return ok
