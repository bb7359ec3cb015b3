"""Memory: how much this process can still allocate, and refusing work that would not fit."""

from __future__ import annotations

import os

from .errors import ModelError


def _read_int(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as f:
            text = f.read().strip()
        return int(text)
    except (OSError, ValueError):
        return None  # absent, unreadable, or "max" (no limit)


def available_memory() -> int | None:
    """Bytes this process can still allocate: MemAvailable from /proc/meminfo (else the free
    physical pages from os.sysconf), lowered to the room left under a cgroup memory limit.
    None when the system tells nothing."""
    avail = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, OSError, ValueError):
            avail = None
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < (1 << 60):
            room = max(0, limit - usage)
            avail = room if avail is None else min(avail, room)
            break
    return avail


def fmt_bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def check_memory(what: str, need: int, hint: str) -> None:
    """Refuse (ModelError) when ``need`` bytes exceed the available memory; the message gives both."""
    avail = available_memory()
    if avail is not None and need > avail:
        raise ModelError(f"not enough memory for {what}: it needs about {fmt_bytes(need)}, "
                         f"{fmt_bytes(avail)} is available; {hint}")
