"""keep_freed_memory: freed large blocks are reused instead of mapped anew (fewer page faults), glibc only."""

import platform
import subprocess
import sys

import pytest

from captioning.utils import memory

FAULTS = """
import resource, sys
import numpy as np
from captioning.utils.memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
np.ones(8 << 20).sum()  # a 64 MiB block, freed again
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    np.ones(8 << 20).sum()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_a_freed_block_is_reused_instead_of_mapped_again():
    # glibc maps and unmaps a 64 MiB block every time: each allocation faults its pages in again (at least
    # 32 faults per allocation even with 2 MiB transparent huge pages); kept, the block is reused as it is
    default, kept = faults("default"), faults("keep")
    assert default >= 10 * 32 and kept * 10 < default, (default, kept)


def test_other_platforms_keep_their_allocator(monkeypatch):
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    assert memory.keep_freed_memory() is False
