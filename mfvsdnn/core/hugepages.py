"""Huge pages for large arrays read at random (an HNSW graph and the vectors it points to).

A graph search reads a few thousand vectors at random out of hundreds of MiB; with 4 KiB pages
nearly every one of those reads also misses the TLB and walks the page table. numpy already asks the
kernel for transparent huge pages on its large arrays (so exact search's item matrix has them);
faiss's own arrays get none where THP is "madvise" (Debian's default). ``advise_huge_pages`` asks
for 2 MiB pages over an existing range: madvise(MADV_HUGEPAGE), then MADV_COLLAPSE (Linux 6.1+) to
back it with them now rather than whenever khugepaged gets there. Best effort: on another system, an
older kernel or with THP off the memory stays as it was; the data is never changed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

MADV_HUGEPAGE = 14
MADV_COLLAPSE = 25
HUGE_PAGE = 2 << 20


@functools.cache
def _madvise():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def huge_span(address: int, nbytes: int) -> tuple[int, int]:
    """(start, length) of the whole 2 MiB pages inside [address, address + nbytes); length 0 if none."""
    start = -(-address // HUGE_PAGE) * HUGE_PAGE
    end = (address + nbytes) // HUGE_PAGE * HUGE_PAGE
    return start, max(0, end - start)


def advise_huge_pages(address: int, nbytes: int) -> int:
    """Ask for huge pages over the whole 2 MiB pages of [address, address + nbytes), memory this
    process owns; the bytes advised (0 when the range holds no whole huge page or the system cannot)."""
    madvise = _madvise()
    start, length = huge_span(int(address), int(nbytes))
    if madvise is None or length == 0 or madvise(start, length, MADV_HUGEPAGE) != 0:
        return 0
    madvise(start, length, MADV_COLLAPSE)  # may fail (older kernel, no free huge page): the advice stands
    return length
